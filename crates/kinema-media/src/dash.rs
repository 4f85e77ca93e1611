//! The DASH MPD, written from the measured segments: a static presentation
//! (ISO/IEC 23009-1, live profile for `SegmentTemplate`) over the very same
//! CMAF files the HLS playlists list.
//!
//! Each representation's `SegmentTimeline` gives every segment's real start
//! and duration in track ticks, so DASH players see exactly what HLS players
//! see, including a short last segment and an audio track whose segments
//! end a few milliseconds off the video's.
//!
//! Subtitles are text AdaptationSets of one Representation each, the whole
//! track as one WebVTT file addressed by `BaseURL` (`{id}/sub.vtt`): the
//! form dash.js plays most reliably (it loads a non-fragmented `text/vtt`
//! Representation whole), and any DASH player accepts it.

use std::fmt::Write;

use crate::mp4::TrackKind;
use crate::package::{MeasuredRendition, target_duration};
use crate::subtitles::SubtitleRendition;

/// ISO 8601 duration with millisecond precision (`PT9.040S`).
fn iso_duration(seconds: f64) -> String {
    format!("PT{seconds:.3}S")
}

fn segment_template(out: &mut String, rendition: &MeasuredRendition) {
    let _ = write!(
        out,
        "        <SegmentTemplate timescale=\"{}\" initialization=\"{id}/init.mp4\" media=\"{id}/$Number$.m4s\" startNumber=\"1\">\n          <SegmentTimeline>\n",
        rendition.track.timescale,
        id = rendition.id
    );
    // Runs of equal durations collapse into one S element with a repeat count.
    let mut index = 0;
    let segments = &rendition.segments;
    let mut expected_start = None;
    while index < segments.len() {
        let segment = segments[index];
        let mut repeat = 0;
        while index + repeat + 1 < segments.len()
            && segments[index + repeat + 1].duration == segment.duration
            && segments[index + repeat + 1].start
                == segments[index + repeat].start + segments[index + repeat].duration
        {
            repeat += 1;
        }
        out.push_str("            <S");
        // `t` only where the timeline does not simply continue.
        if expected_start != Some(segment.start) {
            let _ = write!(out, " t=\"{}\"", segment.start);
        }
        let _ = write!(out, " d=\"{}\"", segment.duration);
        if repeat > 0 {
            let _ = write!(out, " r=\"{repeat}\"");
        }
        out.push_str("/>\n");
        let last = segments[index + repeat];
        expected_start = Some(last.start + last.duration);
        index += repeat + 1;
    }
    out.push_str("          </SegmentTimeline>\n        </SegmentTemplate>\n");
}

/// `manifest.mpd` for all renditions and subtitle tracks. A non-empty
/// `base` (`g{N}/`, the generation's directory) is the MPD-level `BaseURL`,
/// so every URL a player resolves from it names one publish only, though
/// the MPD itself is fetched at the video's stable URL.
pub fn mpd(
    renditions: &[MeasuredRendition],
    subtitles: &[SubtitleRendition],
    base: &str,
) -> String {
    let target = target_duration(renditions);
    let duration = renditions
        .iter()
        .map(MeasuredRendition::duration_seconds)
        .fold(0.0, f64::max);
    let mut out = String::new();
    let _ = write!(
        out,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" profiles=\"urn:mpeg:dash:profile:isoff-live:2011\" \
         type=\"static\" mediaPresentationDuration=\"{}\" maxSegmentDuration=\"PT{target}S\" minBufferTime=\"PT{target}S\">\n",
        iso_duration(duration)
    );
    // The schema puts an MPD's BaseURL before its Periods.
    if !base.is_empty() {
        let _ = writeln!(out, "  <BaseURL>{base}</BaseURL>");
    }
    out.push_str("  <Period id=\"0\" start=\"PT0S\">\n");
    // AdaptationSet ids in the order written: video, audio, text.
    let mut next_id = 0usize;
    // One video AdaptationSet per codec (H.264, then AV1): a player
    // switches bit rates within a set, and only between renditions it can
    // decode with one decoder.
    let mut families: Vec<(&str, Vec<&MeasuredRendition>)> = Vec::new();
    for video in renditions.iter().filter(|r| r.kind() == TrackKind::Video) {
        let family = video.track.codecs.split('.').next().unwrap_or_default();
        match families.iter_mut().find(|(name, _)| *name == family) {
            Some((_, members)) => members.push(video),
            None => families.push((family, vec![video])),
        }
    }
    for (_, videos) in &families {
        let max_width = videos.iter().filter_map(|v| v.width).max().unwrap_or(0);
        let max_height = videos.iter().filter_map(|v| v.height).max().unwrap_or(0);
        let _ = writeln!(
            out,
            "    <AdaptationSet id=\"{next_id}\" contentType=\"video\" mimeType=\"video/mp4\" segmentAlignment=\"true\" startWithSAP=\"1\" maxWidth=\"{max_width}\" maxHeight=\"{max_height}\">"
        );
        next_id += 1;
        for video in videos {
            let _ = write!(
                out,
                "      <Representation id=\"{}\" codecs=\"{}\" bandwidth=\"{}\"",
                video.id,
                video.track.codecs,
                video.peak_bitrate()
            );
            if let (Some(width), Some(height)) = (video.width, video.height) {
                let _ = write!(out, " width=\"{width}\" height=\"{height}\" sar=\"1:1\"");
            }
            if let Some(frame_rate) = video.frame_rate {
                let _ = write!(out, " frameRate=\"{}\"", frame_rate_attribute(frame_rate));
            }
            out.push_str(">\n");
            segment_template(&mut out, video);
            out.push_str("      </Representation>\n");
        }
        out.push_str("    </AdaptationSet>\n");
    }
    if families.is_empty() {
        // Audio-only: the audio sets keep ids from 1, as they always had.
        next_id = 1;
    }
    // One AdaptationSet per source track and codec: a track's AAC
    // renditions (main and thin) are bit rates of one set, chosen by the
    // player's ABR; its 5.1 AC-3 is a set of its own, which players that
    // cannot decode it skip.
    let mut sets: Vec<(usize, &str, Vec<&MeasuredRendition>)> = Vec::new();
    for rendition in renditions.iter().filter(|r| r.kind() == TrackKind::Audio) {
        let track = rendition.audio.as_ref().map_or(0, |label| label.track);
        let codecs = rendition.track.codecs.as_str();
        match sets
            .iter_mut()
            .find(|(t, c, _)| *t == track && *c == codecs)
        {
            Some((_, _, members)) => members.push(rendition),
            None => sets.push((track, codecs, vec![rendition])),
        }
    }
    sets.sort_by_key(|(track, _, _)| *track);
    for (_, _, members) in &sets {
        let label = members[0].audio.as_ref();
        let language = label.map_or("und", |label| label.language.as_str());
        let _ = writeln!(
            out,
            "    <AdaptationSet id=\"{next_id}\" contentType=\"audio\" mimeType=\"audio/mp4\" lang=\"{language}\" segmentAlignment=\"true\" startWithSAP=\"1\">"
        );
        next_id += 1;
        // ISO 23009-1 §5.8.5.5: main for the default track, alternate for
        // the others, unless the source says what the track is.
        let role = match label {
            Some(label) if label.describes_video => "description",
            Some(label) if label.commentary => "commentary",
            Some(label) if !label.default => "alternate",
            _ => "main",
        };
        let _ = writeln!(
            out,
            "      <Role schemeIdUri=\"urn:mpeg:dash:role:2011\" value=\"{role}\"/>"
        );
        if let Some(label) = label {
            let _ = writeln!(out, "      <Label>{}</Label>", label.name);
        }
        for audio in members {
            let _ = write!(
                out,
                "      <Representation id=\"{}\" codecs=\"{}\" bandwidth=\"{}\" audioSamplingRate=\"{}\">\n        \
                 <AudioChannelConfiguration schemeIdUri=\"urn:mpeg:dash:23003:3:audio_channel_configuration:2011\" value=\"{}\"/>\n",
                audio.id,
                audio.track.codecs,
                audio.peak_bitrate(),
                audio.track.sample_rate,
                audio.track.channels
            );
            segment_template(&mut out, audio);
            out.push_str("      </Representation>\n");
        }
        out.push_str("    </AdaptationSet>\n");
    }
    for subtitle in subtitles {
        let _ = writeln!(
            out,
            "    <AdaptationSet id=\"{next_id}\" contentType=\"text\" mimeType=\"text/vtt\" lang=\"{}\">",
            subtitle.language
        );
        next_id += 1;
        // ISO 23009-1 §5.8.5.5 (and DASH-IF IOP): forced-subtitle for forced
        // tracks, caption for those made for the hearing impaired.
        let role = if subtitle.forced {
            "forced-subtitle"
        } else if subtitle.hearing_impaired {
            "caption"
        } else {
            "subtitle"
        };
        let _ = write!(
            out,
            "      <Role schemeIdUri=\"urn:mpeg:dash:role:2011\" value=\"{role}\"/>\n      \
             <Label>{}</Label>\n      \
             <Representation id=\"{id}\" bandwidth=\"256\">\n        \
             <BaseURL>{id}/sub.vtt</BaseURL>\n      \
             </Representation>\n    </AdaptationSet>\n",
            subtitle.name,
            id = subtitle.id
        );
    }
    out.push_str("  </Period>\n</MPD>\n");
    out
}

/// `25`, or `30000/1001` for the NTSC rates.
fn frame_rate_attribute(frame_rate: f64) -> String {
    if (frame_rate - frame_rate.round()).abs() < 1e-6 {
        format!("{}", frame_rate.round() as u64)
    } else {
        format!("{}/1001", (frame_rate * 1001.0).round() as u64)
    }
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
    fn the_generation_is_the_mpds_base_url() {
        let video = rendition("v360", TrackKind::Video, &[(4000, 400_000)]);
        let text = mpd(&[video], &[], "g9/");
        assert!(
            text.contains("minBufferTime=\"PT4S\">\n  <BaseURL>g9/</BaseURL>\n  <Period id=\"0\""),
            "{text}"
        );
        assert_eq!(text.matches("<BaseURL>").count(), 1, "{text}");
    }

    #[test]
    fn static_mpd_with_segment_timelines() {
        let video = rendition(
            "v360",
            TrackKind::Video,
            &[(4000, 400_000), (4000, 400_000), (1000, 100_000)],
        );
        let audio = rendition(
            "a64",
            TrackKind::Audio,
            &[(4021, 32_000), (3979, 32_000), (1000, 8_000)],
        );
        check(
            &mpd(&[video, audio], &[], ""),
            r#"<?xml version="1.0" encoding="UTF-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="urn:mpeg:dash:profile:isoff-live:2011" type="static" mediaPresentationDuration="PT9.000S" maxSegmentDuration="PT5S" minBufferTime="PT5S">
  <Period id="0" start="PT0S">
    <AdaptationSet id="0" contentType="video" mimeType="video/mp4" segmentAlignment="true" startWithSAP="1" maxWidth="640" maxHeight="360">
      <Representation id="v360" codecs="avc1.64001e" bandwidth="800000" width="640" height="360" sar="1:1" frameRate="25">
        <SegmentTemplate timescale="1000" initialization="v360/init.mp4" media="v360/$Number$.m4s" startNumber="1">
          <SegmentTimeline>
            <S t="0" d="4000" r="1"/>
            <S d="1000"/>
          </SegmentTimeline>
        </SegmentTemplate>
      </Representation>
    </AdaptationSet>
    <AdaptationSet id="1" contentType="audio" mimeType="audio/mp4" lang="und" segmentAlignment="true" startWithSAP="1">
      <Role schemeIdUri="urn:mpeg:dash:role:2011" value="main"/>
      <Label>audio</Label>
      <Representation id="a64" codecs="mp4a.40.2" bandwidth="64338" audioSamplingRate="48000">
        <AudioChannelConfiguration schemeIdUri="urn:mpeg:dash:23003:3:audio_channel_configuration:2011" value="2"/>
        <SegmentTemplate timescale="1000" initialization="a64/init.mp4" media="a64/$Number$.m4s" startNumber="1">
          <SegmentTimeline>
            <S t="0" d="4021"/>
            <S d="3979"/>
            <S d="1000"/>
          </SegmentTimeline>
        </SegmentTemplate>
      </Representation>
    </AdaptationSet>
  </Period>
</MPD>
"#,
        );
        assert_eq!(frame_rate_attribute(29.97002997), "30000/1001");
    }

    #[test]
    fn subtitles_are_text_sets_with_their_roles() {
        let video = rendition("v360", TrackKind::Video, &[(4000, 400_000)]);
        let subtitle =
            |id: &str, language: &str, name: &str, forced, hearing_impaired| SubtitleRendition {
                id: id.into(),
                language: language.into(),
                name: name.into(),
                forced,
                hearing_impaired,
            };
        let text = mpd(
            &[video],
            &[
                subtitle("sub0", "en", "English", false, false),
                subtitle("sub1", "fr", "French (forced)", true, false),
                subtitle("sub2", "en", "English (SDH)", false, true),
            ],
            "",
        );
        let sets = &text[text.find("    <AdaptationSet id=\"1\"").unwrap()..];
        check(
            sets,
            r#"    <AdaptationSet id="1" contentType="text" mimeType="text/vtt" lang="en">
      <Role schemeIdUri="urn:mpeg:dash:role:2011" value="subtitle"/>
      <Label>English</Label>
      <Representation id="sub0" bandwidth="256">
        <BaseURL>sub0/sub.vtt</BaseURL>
      </Representation>
    </AdaptationSet>
    <AdaptationSet id="2" contentType="text" mimeType="text/vtt" lang="fr">
      <Role schemeIdUri="urn:mpeg:dash:role:2011" value="forced-subtitle"/>
      <Label>French (forced)</Label>
      <Representation id="sub1" bandwidth="256">
        <BaseURL>sub1/sub.vtt</BaseURL>
      </Representation>
    </AdaptationSet>
    <AdaptationSet id="3" contentType="text" mimeType="text/vtt" lang="en">
      <Role schemeIdUri="urn:mpeg:dash:role:2011" value="caption"/>
      <Label>English (SDH)</Label>
      <Representation id="sub2" bandwidth="256">
        <BaseURL>sub2/sub.vtt</BaseURL>
      </Representation>
    </AdaptationSet>
  </Period>
</MPD>
"#,
        );
    }
}
