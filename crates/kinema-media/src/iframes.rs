//! HLS I-frame playlists for trick play (RFC 8216 §4.3.3.6,
//! `EXT-X-I-FRAMES-ONLY`): one per video rendition, `{id}/iframes.m3u8`,
//! whose entries are byte ranges into the media segments already written.
//! No new media file is made and nothing is read again: every segment
//! starts with a keyframe (the encode's closed GOP of one segment, checked
//! by [`crate::package`]), and measuring it ([`crate::mp4::parse_segment`])
//! found where that keyframe's data ends.
//!
//! An entry is the range from the segment's first byte (its `styp`,
//! `sidx` and `moof`, then the `mdat` header) through the end of the first
//! sample, with `EXT-X-MAP` the rendition's init segment and `EXTINF` the
//! segment's duration (the time until the next I-frame): the form Apple's
//! fMP4 I-frame playlists take. A decoder given init plus range sees a
//! fragment whose other samples are missing and shows the one keyframe.
//!
//! `BANDWIDTH` of an `EXT-X-I-FRAME-STREAM-INF` is measured like a
//! variant's (RFC 8216 §4.3.4.3 refers to §4.3.4.2): the peak over runs of
//! entries, from the ranges' sizes and durations.
//!
//! This module does not write files; the pipeline does.

use std::fmt::Write;

use crate::mp4::TrackKind;
use crate::package::{MeasuredRendition, MeasuredSegment};

/// The I-frame playlist's name inside its rendition's directory.
pub const PLAYLIST: &str = "iframes.m3u8";

/// `video` as its I-frame playlist sees it: each segment reduced to its
/// keyframe's byte range. `None` for an audio rendition, or when a segment
/// did not declare its first sample's size (no range can be named).
fn keyframes_only(video: &MeasuredRendition) -> Option<MeasuredRendition> {
    if video.kind() != TrackKind::Video {
        return None;
    }
    let segments = video
        .segments
        .iter()
        .map(|segment| {
            segment.keyframe_bytes.map(|bytes| MeasuredSegment {
                size: bytes,
                ..*segment
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(MeasuredRendition {
        segments,
        ..video.clone()
    })
}

/// `{id}/iframes.m3u8` of a video rendition, or `None` (see
/// [`keyframes_only`]).
pub fn playlist(video: &MeasuredRendition) -> Option<String> {
    let keyframes = keyframes_only(video)?;
    let mut out = String::new();
    // Version 5 at least for EXT-X-MAP in an I-frame playlist (§7); 7 as
    // the media playlists.
    let _ = write!(
        out,
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{}\n#EXT-X-MEDIA-SEQUENCE:1\n\
         #EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-I-FRAMES-ONLY\n#EXT-X-INDEPENDENT-SEGMENTS\n\
         #EXT-X-MAP:URI=\"init.mp4\"\n",
        video.target_duration()
    );
    for (index, segment) in keyframes.segments.iter().enumerate() {
        let _ = write!(
            out,
            "#EXTINF:{:.6},\n#EXT-X-BYTERANGE:{}@0\n{}.m4s\n",
            keyframes.seconds(segment.duration),
            segment.size,
            index + 1
        );
    }
    out.push_str("#EXT-X-ENDLIST\n");
    Some(out)
}

/// The `EXT-X-I-FRAME-STREAM-INF` lines of `master.m3u8`: one for each
/// video rendition with an I-frame playlist, lowest first as the variants,
/// its URI starting with `base`.
pub fn stream_inf_lines(renditions: &[MeasuredRendition], base: &str) -> String {
    let mut out = String::new();
    for keyframes in renditions.iter().filter_map(keyframes_only) {
        // FRAME-RATE, AUDIO and SUBTITLES are not attributes of this tag.
        let _ = write!(
            out,
            "#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={},CODECS=\"{}\"",
            keyframes.peak_bitrate(),
            keyframes.average_bitrate(),
            keyframes.track.codecs
        );
        if let (Some(width), Some(height)) = (keyframes.width, keyframes.height) {
            let _ = write!(out, ",RESOLUTION={width}x{height}");
        }
        let _ = writeln!(out, ",URI=\"{base}{}/{PLAYLIST}\"", keyframes.id);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::tests::rendition;

    fn check(actual: &str, expected: &str) {
        assert_eq!(actual.trim(), expected.trim(), "\nactual:\n{actual}\n");
    }

    /// A video rendition whose segments' keyframes end at these offsets.
    fn video(id: &str, segments: &[(u64, u64, u64)]) -> MeasuredRendition {
        let sizes: Vec<(u64, u64)> = segments.iter().map(|&(d, s, _)| (d, s)).collect();
        let mut video = rendition(id, TrackKind::Video, &sizes);
        for (segment, &(_, _, keyframe)) in video.segments.iter_mut().zip(segments) {
            segment.keyframe_bytes = Some(keyframe);
        }
        video
    }

    #[test]
    fn playlist_names_each_segments_keyframe_range_with_its_duration() {
        let v360 = video(
            "v360",
            &[
                (4000, 200_000, 20_000),
                (4000, 210_000, 25_000),
                (1500, 60_000, 18_000),
            ],
        );
        check(
            &playlist(&v360).unwrap(),
            r#"
#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:4
#EXT-X-MEDIA-SEQUENCE:1
#EXT-X-PLAYLIST-TYPE:VOD
#EXT-X-I-FRAMES-ONLY
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MAP:URI="init.mp4"
#EXTINF:4.000000,
#EXT-X-BYTERANGE:20000@0
1.m4s
#EXTINF:4.000000,
#EXT-X-BYTERANGE:25000@0
2.m4s
#EXTINF:1.500000,
#EXT-X-BYTERANGE:18000@0
3.m4s
#EXT-X-ENDLIST
"#,
        );
    }

    #[test]
    fn stream_inf_bandwidth_comes_from_the_keyframe_ranges() {
        let v240 = video("v240", &[(4000, 100_000, 10_000), (4000, 100_000, 12_000)]);
        let v360 = video("v360", &[(4000, 200_000, 20_000), (4000, 200_000, 30_000)]);
        let audio = rendition("a128", TrackKind::Audio, &[(4000, 64_000), (4000, 64_000)]);
        // v360: 30,000 bytes in 4 s at the peak = 60,000 bit/s; on average
        // 50,000 bytes in 8 s.
        check(
            &stream_inf_lines(&[v240, v360, audio], "g3/"),
            r#"
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=24000,AVERAGE-BANDWIDTH=22000,CODECS="avc1.64001e",RESOLUTION=640x360,URI="g3/v240/iframes.m3u8"
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=60000,AVERAGE-BANDWIDTH=50000,CODECS="avc1.64001e",RESOLUTION=640x360,URI="g3/v360/iframes.m3u8"
"#,
        );
    }

    #[test]
    fn a_segment_without_a_declared_keyframe_size_gets_no_iframe_playlist() {
        let mut v360 = video("v360", &[(4000, 200_000, 20_000), (4000, 200_000, 30_000)]);
        v360.segments[1].keyframe_bytes = None;
        assert_eq!(playlist(&v360), None);
        assert_eq!(stream_inf_lines(&[v360], ""), "");
    }
}
