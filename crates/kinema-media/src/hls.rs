//! HLS playlists written from the measured segments (RFC 8216, version 7:
//! fragmented MP4 with `EXT-X-MAP`).
//!
//! ffmpeg's muxers could write these, but (FACTS.md) not right for VOD:
//! they add `EXT-X-PROGRAM-DATE-TIME`, omit `EXT-X-PLAYLIST-TYPE:VOD` and
//! announce the requested rather than the real bit rate. Ours carry the
//! real durations and the measured peak and average bit rates. Every URI is
//! relative, so a signed-URL token or a CDN prefix applies unchanged; the
//! multivariant playlist's URIs start with the generation's directory
//! (`g{N}/`), so it can be fetched at the video's stable URL while every
//! URL a player follows from it names one publish only.

use std::fmt::Write;

use kinema_core::ladder::AudioRole;

use crate::mp4::TrackKind;
use crate::package::{AudioLabel, MeasuredRendition};
use crate::subtitles::SubtitleRendition;

/// Group id of the main (stereo AAC) audio renditions.
pub const AUDIO_GROUP: &str = "audio";
/// Group id of the thin audio renditions, carried by the lowest variant.
pub const THIN_AUDIO_GROUP: &str = "audio-thin";
/// Group id of the 5.1 AC-3 renditions.
pub const SURROUND_AUDIO_GROUP: &str = "audio-ac3";

/// Group id of the subtitle renditions, carried by every variant.
pub const SUBTITLE_GROUP: &str = "subs";

/// `CHARACTERISTICS` of subtitles for the deaf and hard of hearing (Apple's
/// HLS authoring specification: SDH transcribes dialogue and describes
/// music and sound).
const SDH_CHARACTERISTICS: &str =
    "public.accessibility.transcribes-spoken-dialog,public.accessibility.describes-music-and-sound";

/// `{rendition}/index.m3u8`: one rendition's segments.
pub fn media_playlist(rendition: &MeasuredRendition) -> String {
    let target_duration = rendition.target_duration();
    let mut out = String::new();
    let _ = write!(
        out,
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{target_duration}\n\
         #EXT-X-MEDIA-SEQUENCE:1\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-INDEPENDENT-SEGMENTS\n\
         #EXT-X-MAP:URI=\"init.mp4\"\n"
    );
    for (index, seconds) in rendition.segment_seconds().into_iter().enumerate() {
        let _ = write!(out, "#EXTINF:{seconds:.6},\n{}.m4s\n", index + 1);
    }
    out.push_str("#EXT-X-ENDLIST\n");
    out
}

/// The HLS audio group of a role: every track's renditions of one role
/// form one group, whose members are the track choices.
pub fn audio_group(role: AudioRole) -> &'static str {
    match role {
        AudioRole::Main => AUDIO_GROUP,
        AudioRole::Thin => THIN_AUDIO_GROUP,
        AudioRole::Surround => SURROUND_AUDIO_GROUP,
    }
}

/// One audio group's members, in track order, and the figures a variant
/// that carries it adds: the largest peak and average of any member (a
/// viewer may choose any of them) and the members' codecs.
struct AudioGroup<'a> {
    members: Vec<(&'a MeasuredRendition, &'a AudioLabel)>,
    peak: u64,
    average: u64,
    codecs: String,
}

fn audio_groups(renditions: &[MeasuredRendition]) -> Vec<(AudioRole, AudioGroup<'_>)> {
    let mut groups = Vec::new();
    for role in [AudioRole::Main, AudioRole::Thin, AudioRole::Surround] {
        let mut members: Vec<(&MeasuredRendition, &AudioLabel)> = renditions
            .iter()
            .filter_map(|rendition| rendition.audio.as_ref().map(|label| (rendition, label)))
            .filter(|(_, label)| label.role == role)
            .collect();
        if members.is_empty() {
            continue;
        }
        members.sort_by_key(|(_, label)| label.track);
        let mut codecs: Vec<&str> = members
            .iter()
            .map(|(rendition, _)| rendition.track.codecs.as_str())
            .collect();
        codecs.dedup();
        groups.push((
            role,
            AudioGroup {
                peak: members
                    .iter()
                    .map(|(r, _)| r.peak_bitrate())
                    .max()
                    .unwrap_or(0),
                average: members
                    .iter()
                    .map(|(r, _)| r.average_bitrate())
                    .max()
                    .unwrap_or(0),
                codecs: codecs.join(","),
                members,
            },
        ));
    }
    groups
}

/// `master.m3u8`.
///
/// Audio: every source track is a member (its own `LANGUAGE`, `NAME`,
/// `DEFAULT`) of each role's group: `audio` (stereo AAC), `audio-thin` (the
/// thin stereo AAC, carried by the lowest video variant of each codec, so its
/// `BANDWIDTH` fits the thinnest links) and `audio-ac3` (5.1 AC-3, for
/// players that decode it). Video: one variant per rendition, the lowest
/// with the thin group and the rest with the main one; with surround
/// audio, every variant again with `audio-ac3`, its
/// `CODECS` naming `ac-3` so players that cannot decode it skip it. Last,
/// the main group alone as the audio-only variant.
///
/// Subtitles: every text track is a member of the `subs` group (never
/// `DEFAULT`, `FORCED=YES` for forced ones, the SDH `CHARACTERISTICS` for
/// hearing-impaired ones), and every variant carries `SUBTITLES="subs"`.
///
/// Every URI starts with `base` (`g{N}/`, the generation's directory).
pub fn multivariant_playlist(
    renditions: &[MeasuredRendition],
    subtitles: &[SubtitleRendition],
    base: &str,
) -> String {
    let groups = audio_groups(renditions);
    let group = |role: AudioRole| {
        groups
            .iter()
            .find(|(group_role, _)| *group_role == role)
            .map(|(_, group)| group)
    };
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for (role, group) in &groups {
        let mut names: Vec<String> = Vec::new();
        for (rendition, label) in &group.members {
            // NAME is unique within a group (RFC 8216 §4.3.4.1.1).
            let mut name = label.name.clone();
            let mut counter = 2;
            while names.contains(&name) {
                name = format!("{} ({counter})", label.name);
                counter += 1;
            }
            names.push(name.clone());
            let yes_no = |flag: bool| if flag { "YES" } else { "NO" };
            let _ = write!(
                out,
                "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"{}\",NAME=\"{name}\",LANGUAGE=\"{}\",\
                 DEFAULT={},AUTOSELECT=YES,CHANNELS=\"{}\"",
                audio_group(*role),
                label.language,
                yes_no(label.default),
                rendition.track.channels,
            );
            if label.describes_video {
                out.push_str(",CHARACTERISTICS=\"public.accessibility.describes-video\"");
            }
            let _ = writeln!(out, ",URI=\"{base}{}/index.m3u8\"", rendition.id);
        }
    }
    let mut subtitle_names: Vec<String> = Vec::new();
    for subtitle in subtitles {
        let mut name = subtitle.name.clone();
        let mut counter = 2;
        while subtitle_names.contains(&name) {
            name = format!("{} ({counter})", subtitle.name);
            counter += 1;
        }
        subtitle_names.push(name.clone());
        let _ = write!(
            out,
            "#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID=\"{SUBTITLE_GROUP}\",NAME=\"{name}\",\
             LANGUAGE=\"{}\",DEFAULT=NO,AUTOSELECT=YES,FORCED={}",
            subtitle.language,
            if subtitle.forced { "YES" } else { "NO" },
        );
        if subtitle.hearing_impaired {
            let _ = write!(out, ",CHARACTERISTICS=\"{SDH_CHARACTERISTICS}\"");
        }
        let _ = writeln!(out, ",URI=\"{base}{}/index.m3u8\"", subtitle.id);
    }
    let subtitles_attribute = if subtitles.is_empty() {
        String::new()
    } else {
        format!(",SUBTITLES=\"{SUBTITLE_GROUP}\"")
    };
    let videos: Vec<&MeasuredRendition> = renditions
        .iter()
        .filter(|rendition| rendition.kind() == TrackKind::Video)
        .collect();
    let write_variant = |out: &mut String, video: &MeasuredRendition, role: Option<AudioRole>| {
        let audio = role.and_then(group);
        // A variant's bit rate includes the audio a player fetches with it.
        let (peak, average, codecs) = match audio {
            Some(audio) => (
                video.peak_bitrate() + audio.peak,
                video.average_bitrate() + audio.average,
                format!("{},{}", video.track.codecs, audio.codecs),
            ),
            None => (
                video.peak_bitrate(),
                video.average_bitrate(),
                video.track.codecs.clone(),
            ),
        };
        let _ = write!(
            out,
            "#EXT-X-STREAM-INF:BANDWIDTH={peak},AVERAGE-BANDWIDTH={average},CODECS=\"{codecs}\""
        );
        if let (Some(width), Some(height)) = (video.width, video.height) {
            let _ = write!(out, ",RESOLUTION={width}x{height}");
        }
        if let Some(frame_rate) = video.frame_rate {
            let _ = write!(out, ",FRAME-RATE={frame_rate:.3}");
        }
        if let (Some(role), Some(_)) = (role, audio) {
            let _ = write!(out, ",AUDIO=\"{}\"", audio_group(role));
        }
        out.push_str(&subtitles_attribute);
        let _ = write!(out, "\n{base}{}/index.m3u8\n", video.id);
    };
    let stereo = group(AudioRole::Main).map(|_| AudioRole::Main);
    // The thin audio goes with the lowest rung of each video codec (the
    // H.264 and the AV1 ladders each have a variant for thin links).
    let mut codecs_seen: Vec<&str> = Vec::new();
    for video in &videos {
        let family = video.track.codecs.split('.').next().unwrap_or_default();
        let lowest_of_its_codec = !codecs_seen.contains(&family);
        codecs_seen.push(family);
        let role = match group(AudioRole::Thin) {
            Some(_) if lowest_of_its_codec => Some(AudioRole::Thin),
            _ => stereo,
        };
        write_variant(&mut out, video, role);
    }
    if group(AudioRole::Surround).is_some() {
        for video in &videos {
            write_variant(&mut out, video, Some(AudioRole::Surround));
        }
    }
    if let Some(main) = group(AudioRole::Main)
        && let Some((audio, _)) = main.members.first()
    {
        let _ = write!(
            out,
            "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={},CODECS=\"{}\",AUDIO=\"{AUDIO_GROUP}\"{subtitles_attribute}\n{base}{}/index.m3u8\n",
            main.peak, main.average, main.codecs, audio.id
        );
    }
    // Trick play: every video rendition's I-frame playlist.
    out.push_str(&crate::iframes::stream_inf_lines(renditions, base));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::tests::rendition;

    fn check(actual: &str, expected: &str) {
        assert_eq!(
            actual, expected,
            "\nactual:\n{actual}\nexpected:\n{expected}"
        );
    }

    #[test]
    fn media_playlist_carries_real_durations() {
        let video = rendition("v360", TrackKind::Video, &[(4000, 1), (4000, 1), (1040, 1)]);
        check(
            &media_playlist(&video),
            "#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:4
#EXT-X-MEDIA-SEQUENCE:1
#EXT-X-PLAYLIST-TYPE:VOD
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MAP:URI=\"init.mp4\"
#EXTINF:4.000000,
1.m4s
#EXTINF:4.000000,
2.m4s
#EXTINF:1.040000,
3.m4s
#EXT-X-ENDLIST
",
        );
    }

    /// An audio rendition of source track `track` in `language`.
    fn audio(
        id: &str,
        track: usize,
        role: AudioRole,
        language: &str,
        bytes_per_4s: u64,
    ) -> MeasuredRendition {
        let mut audio = rendition(
            id,
            TrackKind::Audio,
            &[(4000, bytes_per_4s), (4000, bytes_per_4s)],
        );
        let label = audio.audio.as_mut().unwrap();
        label.track = track;
        label.role = role;
        label.language = language.into();
        label.name = crate::language::name(language).unwrap().into();
        label.default = track == 0;
        if role == AudioRole::Surround {
            audio.track.codecs = "ac-3".into();
            audio.track.channels = 6;
        }
        audio
    }

    #[test]
    fn every_track_is_in_each_group_and_surround_has_variants_of_its_own() {
        let mut low = rendition("v144", TrackKind::Video, &[(4000, 50_000), (4000, 50_000)]);
        low.width = Some(256);
        low.height = Some(144);
        let high = rendition(
            "v360",
            TrackKind::Video,
            &[(4000, 350_000), (4000, 350_000)],
        );
        let renditions = [
            low,
            high,
            audio("a64", 0, AudioRole::Main, "en", 32_000),
            audio("a32", 0, AudioRole::Thin, "en", 16_000),
            audio("a64-1", 1, AudioRole::Main, "fr", 32_000),
            audio("a32-1", 1, AudioRole::Thin, "fr", 16_000),
            audio("a384ac3-1", 1, AudioRole::Surround, "fr", 192_000),
        ];
        check(
            &multivariant_playlist(&renditions, &[], ""),
            "#EXTM3U
#EXT-X-VERSION:7
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"English\",LANGUAGE=\"en\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\",URI=\"a64/index.m3u8\"
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"French\",LANGUAGE=\"fr\",DEFAULT=NO,AUTOSELECT=YES,CHANNELS=\"2\",URI=\"a64-1/index.m3u8\"
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio-thin\",NAME=\"English\",LANGUAGE=\"en\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\",URI=\"a32/index.m3u8\"
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio-thin\",NAME=\"French\",LANGUAGE=\"fr\",DEFAULT=NO,AUTOSELECT=YES,CHANNELS=\"2\",URI=\"a32-1/index.m3u8\"
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio-ac3\",NAME=\"French\",LANGUAGE=\"fr\",DEFAULT=NO,AUTOSELECT=YES,CHANNELS=\"6\",URI=\"a384ac3-1/index.m3u8\"
#EXT-X-STREAM-INF:BANDWIDTH=132000,AVERAGE-BANDWIDTH=132000,CODECS=\"avc1.64001e,mp4a.40.2\",RESOLUTION=256x144,FRAME-RATE=25.000,AUDIO=\"audio-thin\"
v144/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=764000,AVERAGE-BANDWIDTH=764000,CODECS=\"avc1.64001e,mp4a.40.2\",RESOLUTION=640x360,FRAME-RATE=25.000,AUDIO=\"audio\"
v360/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=484000,AVERAGE-BANDWIDTH=484000,CODECS=\"avc1.64001e,ac-3\",RESOLUTION=256x144,FRAME-RATE=25.000,AUDIO=\"audio-ac3\"
v144/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=1084000,AVERAGE-BANDWIDTH=1084000,CODECS=\"avc1.64001e,ac-3\",RESOLUTION=640x360,FRAME-RATE=25.000,AUDIO=\"audio-ac3\"
v360/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=64000,AVERAGE-BANDWIDTH=64000,CODECS=\"mp4a.40.2\",AUDIO=\"audio\"
a64/index.m3u8
",
        );
    }

    #[test]
    fn multivariant_has_audio_group_and_audio_only_variant() {
        let mut low = rendition(
            "v240",
            TrackKind::Video,
            &[(4000, 150_000), (4004, 160_000)],
        );
        let high = rendition(
            "v360",
            TrackKind::Video,
            &[(4000, 350_000), (4004, 300_000)],
        );
        low.width = Some(426);
        low.height = Some(240);
        let audio = rendition("a64", TrackKind::Audio, &[(4000, 32_000), (4011, 32_000)]);
        check(
            &multivariant_playlist(&[low, high, audio], &[], ""),
            "#EXTM3U
#EXT-X-VERSION:7
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"audio\",LANGUAGE=\"und\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\",URI=\"a64/index.m3u8\"
#EXT-X-STREAM-INF:BANDWIDTH=383681,AVERAGE-BANDWIDTH=373759,CODECS=\"avc1.64001e,mp4a.40.2\",RESOLUTION=426x240,FRAME-RATE=25.000,AUDIO=\"audio\"
v240/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=764000,AVERAGE-BANDWIDTH=713589,CODECS=\"avc1.64001e,mp4a.40.2\",RESOLUTION=640x360,FRAME-RATE=25.000,AUDIO=\"audio\"
v360/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=64000,AVERAGE-BANDWIDTH=63913,CODECS=\"mp4a.40.2\",AUDIO=\"audio\"
a64/index.m3u8
",
        );
    }

    #[test]
    fn subtitle_group_is_on_every_variant_with_forced_and_sdh_flags() {
        let video = rendition("v360", TrackKind::Video, &[(4000, 100_000)]);
        let audio = rendition("a64", TrackKind::Audio, &[(4000, 32_000)]);
        let subtitle =
            |id: &str, language: &str, name: &str, forced, hearing_impaired| SubtitleRendition {
                id: id.into(),
                language: language.into(),
                name: name.into(),
                forced,
                hearing_impaired,
            };
        let subtitles = [
            subtitle("sub0", "en", "English", false, false),
            subtitle("sub1", "fr", "French (forced)", true, false),
            subtitle("sub2", "en", "English", false, true),
        ];
        check(
            &multivariant_playlist(&[video, audio], &subtitles, ""),
            "#EXTM3U
#EXT-X-VERSION:7
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"audio\",LANGUAGE=\"und\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\",URI=\"a64/index.m3u8\"
#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID=\"subs\",NAME=\"English\",LANGUAGE=\"en\",DEFAULT=NO,AUTOSELECT=YES,FORCED=NO,URI=\"sub0/index.m3u8\"
#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID=\"subs\",NAME=\"French (forced)\",LANGUAGE=\"fr\",DEFAULT=NO,AUTOSELECT=YES,FORCED=YES,URI=\"sub1/index.m3u8\"
#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID=\"subs\",NAME=\"English (2)\",LANGUAGE=\"en\",DEFAULT=NO,AUTOSELECT=YES,FORCED=NO,CHARACTERISTICS=\"public.accessibility.transcribes-spoken-dialog,public.accessibility.describes-music-and-sound\",URI=\"sub2/index.m3u8\"
#EXT-X-STREAM-INF:BANDWIDTH=264000,AVERAGE-BANDWIDTH=264000,CODECS=\"avc1.64001e,mp4a.40.2\",RESOLUTION=640x360,FRAME-RATE=25.000,AUDIO=\"audio\",SUBTITLES=\"subs\"
v360/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=64000,AVERAGE-BANDWIDTH=64000,CODECS=\"mp4a.40.2\",AUDIO=\"audio\",SUBTITLES=\"subs\"
a64/index.m3u8
",
        );
    }

    #[test]
    fn every_uri_of_the_multivariant_playlist_names_the_generation() {
        let video = rendition("v360", TrackKind::Video, &[(4000, 100_000)]);
        let audio = rendition("a64", TrackKind::Audio, &[(4000, 32_000)]);
        let subtitle = SubtitleRendition {
            id: "sub0".into(),
            language: "en".into(),
            name: "English".into(),
            forced: false,
            hearing_impaired: false,
        };
        let playlist = multivariant_playlist(&[video, audio], &[subtitle], "g17/");
        let mut uris = Vec::new();
        for line in playlist.lines() {
            if let Some((_, rest)) = line.split_once("URI=\"") {
                uris.push(rest.split('"').next().unwrap().to_owned());
            } else if !line.starts_with('#') {
                uris.push(line.to_owned());
            }
        }
        assert_eq!(
            uris,
            [
                "g17/a64/index.m3u8",
                "g17/sub0/index.m3u8",
                "g17/v360/index.m3u8",
                "g17/a64/index.m3u8"
            ],
            "{playlist}"
        );
    }

    #[test]
    fn silent_video_has_no_audio_group() {
        let video = rendition("v360", TrackKind::Video, &[(2000, 10_000)]);
        let playlist = multivariant_playlist(&[video], &[], "");
        assert!(!playlist.contains("AUDIO"), "{playlist}");
        assert!(
            playlist.contains("CODECS=\"avc1.64001e\",RESOLUTION=640x360"),
            "{playlist}"
        );
    }
}
