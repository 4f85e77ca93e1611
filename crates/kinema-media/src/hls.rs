//! HLS playlists written from the measured segments (RFC 8216, version 7:
//! fragmented MP4 with `EXT-X-MAP`).
//!
//! ffmpeg's muxers could write these, but (FACTS.md) not right for VOD:
//! they add `EXT-X-PROGRAM-DATE-TIME`, omit `EXT-X-PLAYLIST-TYPE:VOD` and
//! announce the requested rather than the real bit rate. Ours carry the
//! real durations and the measured peak and average bit rates. Every URI is
//! relative, so a signed-URL token or a CDN prefix applies unchanged.

use std::fmt::Write;

use crate::mp4::TrackKind;
use crate::package::MeasuredRendition;

/// Group id of the main audio rendition.
pub const AUDIO_GROUP: &str = "audio";
/// Group id of the thin audio rendition, carried by the lowest variant.
pub const THIN_AUDIO_GROUP: &str = "audio-thin";

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

/// `master.m3u8`: one variant per video rendition, then the main audio
/// rendition alone as an audio-only variant.
///
/// With two audio renditions (the ladder's thin audio), each is a group of
/// its own: the lowest video variant carries the thin one, so its
/// `BANDWIDTH` fits the thinnest links, and every other variant the main
/// one.
pub fn multivariant_playlist(renditions: &[MeasuredRendition]) -> String {
    let mut audios: Vec<&MeasuredRendition> = renditions
        .iter()
        .filter(|rendition| rendition.kind() == TrackKind::Audio)
        .collect();
    // Thickest first: the main audio, then the thin one.
    audios.sort_by_key(|audio| std::cmp::Reverse(audio.average_bitrate()));
    let main_audio = audios.first().copied();
    let thin_audio = audios.get(1).copied();
    let group_of = |audio: &MeasuredRendition| {
        if Some(audio.id.as_str()) == thin_audio.map(|thin| thin.id.as_str()) {
            THIN_AUDIO_GROUP
        } else {
            AUDIO_GROUP
        }
    };
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for audio in main_audio.iter().chain(thin_audio.iter()) {
        let _ = writeln!(
            out,
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"{}\",NAME=\"audio\",LANGUAGE=\"und\",\
             DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"{}\",URI=\"{}/index.m3u8\"",
            group_of(audio),
            audio.track.channels,
            audio.id
        );
    }
    let videos = renditions
        .iter()
        .filter(|rendition| rendition.kind() == TrackKind::Video);
    for (index, video) in videos.enumerate() {
        let audio = match thin_audio {
            Some(thin) if index == 0 => Some(thin),
            _ => main_audio,
        };
        // A variant's bit rate includes the audio a player fetches with it.
        let (peak, average, codecs) = match audio {
            Some(audio) => (
                video.peak_bitrate() + audio.peak_bitrate(),
                video.average_bitrate() + audio.average_bitrate(),
                format!("{},{}", video.track.codecs, audio.track.codecs),
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
        if let Some(audio) = audio {
            let _ = write!(out, ",AUDIO=\"{}\"", group_of(audio));
        }
        let _ = write!(out, "\n{}/index.m3u8\n", video.id);
    }
    if let Some(audio) = main_audio {
        let _ = write!(
            out,
            "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={},CODECS=\"{}\",AUDIO=\"{AUDIO_GROUP}\"\n{}/index.m3u8\n",
            audio.peak_bitrate(),
            audio.average_bitrate(),
            audio.track.codecs,
            audio.id
        );
    }
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
            &multivariant_playlist(&[low, high, audio]),
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
    fn silent_video_has_no_audio_group() {
        let video = rendition("v360", TrackKind::Video, &[(2000, 10_000)]);
        let playlist = multivariant_playlist(&[video]);
        assert!(!playlist.contains("AUDIO"), "{playlist}");
        assert!(
            playlist.contains("CODECS=\"avc1.64001e\",RESOLUTION=640x360"),
            "{playlist}"
        );
    }
}
