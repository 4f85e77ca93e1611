//! Measures the CMAF output of one encode: every rendition's init segment
//! and media segments, read box by box ([`crate::mp4`]). The HLS and DASH
//! writers and the manifest are all fed from these measurements.
//!
//! Measuring also checks the promises the ladder made: every video segment
//! starts on a keyframe, every video rendition has the same number of
//! segments starting at the same instants. A violation is an error, so a
//! video that would stall on a quality switch is never published.

use std::path::Path;

use crate::MediaError;
use kinema_core::ladder::AudioRole;

use crate::mp4::{self, TrackInfo, TrackKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeasuredSegment {
    /// Decode time of the first sample, track ticks.
    pub start: u64,
    /// Track ticks.
    pub duration: u64,
    pub size: u64,
    /// Bytes from the segment's start through the end of its first sample
    /// (for video, its keyframe), when the segment declares that sample's
    /// size: what an HLS I-frame playlist names ([`crate::iframes`]).
    pub keyframe_bytes: Option<u64>,
}

/// What the manifests say of an audio rendition beyond its bytes: the
/// source track it came from and what it is for.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioLabel {
    /// Which kept source track (0 is the default one).
    pub track: usize,
    pub role: AudioRole,
    /// BCP 47.
    pub language: String,
    /// What a track menu shows.
    pub name: String,
    pub default: bool,
    pub describes_video: bool,
    pub commentary: bool,
}

/// One rendition as produced.
#[derive(Debug, Clone, PartialEq)]
pub struct MeasuredRendition {
    pub id: String,
    pub track: TrackInfo,
    /// Audio renditions only.
    pub audio: Option<AudioLabel>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub frame_rate: Option<f64>,
    /// `1.m4s` is `segments[0]`.
    pub segments: Vec<MeasuredSegment>,
}

impl MeasuredRendition {
    pub fn kind(&self) -> TrackKind {
        self.track.kind
    }

    pub fn seconds(&self, ticks: u64) -> f64 {
        ticks as f64 / f64::from(self.track.timescale)
    }

    pub fn segment_seconds(&self) -> Vec<f64> {
        self.segments
            .iter()
            .map(|segment| self.seconds(segment.duration))
            .collect()
    }

    pub fn duration_seconds(&self) -> f64 {
        self.seconds(self.segments.iter().map(|segment| segment.duration).sum())
    }

    /// Bits per second over the whole rendition.
    pub fn average_bitrate(&self) -> u64 {
        let bytes: u64 = self.segments.iter().map(|segment| segment.size).sum();
        let seconds = self.duration_seconds();
        if seconds <= 0.0 {
            return 0;
        }
        (bytes as f64 * 8.0 / seconds).ceil() as u64
    }

    /// This rendition's EXT-X-TARGETDURATION: its longest segment rounded up
    /// to whole seconds.
    pub fn target_duration(&self) -> u64 {
        target_duration(std::slice::from_ref(self))
    }

    /// Peak bit rate as RFC 8216 §4.3.4.2 defines `BANDWIDTH`: the largest
    /// bit rate of any run of contiguous segments lasting between 0.5 and
    /// 1.5 times the target duration (so a short final segment is judged
    /// together with its neighbour, not alone).
    pub fn peak_bitrate(&self) -> u64 {
        let target_duration = self.target_duration();
        let low = 0.5 * target_duration as f64;
        let high = 1.5 * target_duration as f64;
        let mut peak = 0.0f64;
        for start in 0..self.segments.len() {
            let mut bytes = 0u64;
            let mut seconds = 0.0;
            for segment in &self.segments[start..] {
                let next = seconds + self.seconds(segment.duration);
                if next > high && seconds > 0.0 {
                    break;
                }
                bytes += segment.size;
                seconds = next;
                if seconds >= low && seconds > 0.0 {
                    peak = peak.max(bytes as f64 * 8.0 / seconds);
                }
            }
        }
        if peak == 0.0 {
            // The whole rendition is shorter than half a target duration.
            return self.average_bitrate();
        }
        peak.ceil() as u64
    }
}

/// The EXT-X-TARGETDURATION of a set of renditions: the longest segment of
/// any of them, rounded up to whole seconds.
pub fn target_duration(renditions: &[MeasuredRendition]) -> u64 {
    renditions
        .iter()
        .flat_map(MeasuredRendition::segment_seconds)
        // Tolerate the float noise of tick arithmetic (4.0000001 is 4).
        .map(|seconds| (seconds - 1e-6).ceil().max(1.0) as u64)
        .max()
        .unwrap_or(1)
}

/// Video geometry the plan promised, attached to the measured files.
#[derive(Debug, Clone, Copy)]
pub struct VideoGeometry {
    pub width: u32,
    pub height: u32,
    pub frame_rate: f64,
}

/// Reads `dir/init.mp4` and `dir/1.m4s`, `dir/2.m4s`, … (blocking).
pub fn measure_rendition(
    dir: &Path,
    id: &str,
    geometry: Option<VideoGeometry>,
) -> Result<MeasuredRendition, MediaError> {
    let init_path = dir.join("init.mp4");
    let init = std::fs::read(&init_path).map_err(|error| MediaError::io(&init_path, error))?;
    let track = mp4::parse_init(&init)
        .map_err(|error| MediaError::Output(format!("{id}/init.mp4: {error}")))?;
    let mut segments = Vec::new();
    for number in 1.. {
        let path = dir.join(format!("{number}.m4s"));
        let data = match std::fs::read(&path) {
            Ok(data) => data,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => break,
            Err(error) => return Err(MediaError::io(&path, error)),
        };
        let timing = mp4::parse_segment(&data, &track)
            .map_err(|error| MediaError::Output(format!("{id}/{number}.m4s: {error}")))?;
        if !timing.starts_with_sync_sample {
            return Err(MediaError::Output(format!(
                "{id}/{number}.m4s does not start with a keyframe"
            )));
        }
        segments.push(MeasuredSegment {
            start: timing.base_decode_time,
            duration: timing.duration,
            size: data.len() as u64,
            keyframe_bytes: timing.first_sample_end,
        });
    }
    if segments.is_empty() {
        return Err(MediaError::Output(format!("{id} has no media segments")));
    }
    // Files past the last numbered one would be served by nobody: refuse a
    // gap rather than publish a rendition with a hole.
    let extra = std::fs::read_dir(dir)
        .map_err(|error| MediaError::io(dir, error))?
        .filter_map(Result::ok)
        .count();
    if extra != segments.len() + 1 {
        return Err(MediaError::Output(format!(
            "{id} has {extra} files for {} segments and an init segment: numbering has a gap",
            segments.len()
        )));
    }
    Ok(MeasuredRendition {
        id: id.to_string(),
        track,
        audio: None,
        width: geometry.map(|g| g.width),
        height: geometry.map(|g| g.height),
        frame_rate: geometry.map(|g| g.frame_rate),
        segments,
    })
}

/// Every video rendition must start its segments at the same instants, or a
/// player switching quality would skip or repeat video.
pub fn check_alignment(renditions: &[MeasuredRendition]) -> Result<(), MediaError> {
    let videos: Vec<&MeasuredRendition> = renditions
        .iter()
        .filter(|rendition| rendition.kind() == TrackKind::Video)
        .collect();
    let Some(first) = videos.first() else {
        return Ok(());
    };
    for other in &videos[1..] {
        if other.segments.len() != first.segments.len() {
            return Err(MediaError::Output(format!(
                "{} has {} segments but {} has {}: renditions are not aligned",
                first.id,
                first.segments.len(),
                other.id,
                other.segments.len()
            )));
        }
        for (number, (a, b)) in first.segments.iter().zip(&other.segments).enumerate() {
            let (a_start, b_start) = (first.seconds(a.start), other.seconds(b.start));
            // Half a millisecond: far below one frame at any frame rate.
            if (a_start - b_start).abs() > 0.0005 {
                return Err(MediaError::Output(format!(
                    "segment {} starts at {a_start:.3}s in {} but {b_start:.3}s in {}: renditions are not aligned",
                    number + 1,
                    first.id,
                    other.id
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn rendition(
        id: &str,
        kind: TrackKind,
        segments: &[(u64, u64)],
    ) -> MeasuredRendition {
        let timescale = 1000;
        let mut start = 0;
        MeasuredRendition {
            id: id.into(),
            audio: (kind == TrackKind::Audio).then(|| AudioLabel {
                track: 0,
                role: AudioRole::Main,
                language: "und".into(),
                name: "audio".into(),
                default: true,
                describes_video: false,
                commentary: false,
            }),
            track: TrackInfo {
                kind,
                timescale,
                codecs: match kind {
                    TrackKind::Video => "avc1.64001e".into(),
                    TrackKind::Audio => "mp4a.40.2".into(),
                },
                default_sample_duration: 0,
                default_sample_flags: 0,
                sample_rate: if kind == TrackKind::Audio { 48000 } else { 0 },
                channels: if kind == TrackKind::Audio { 2 } else { 0 },
            },
            width: (kind == TrackKind::Video).then_some(640),
            height: (kind == TrackKind::Video).then_some(360),
            frame_rate: (kind == TrackKind::Video).then_some(25.0),
            segments: segments
                .iter()
                .map(|&(duration, size)| {
                    let segment = MeasuredSegment {
                        start,
                        duration,
                        size,
                        keyframe_bytes: None,
                    };
                    start += duration;
                    segment
                })
                .collect(),
        }
    }

    #[test]
    fn peak_bitrate_judges_a_short_last_segment_with_its_neighbour() {
        // 4 s at 100 kB, 4 s at 200 kB, then 0.5 s at 50 kB (alone it
        // would be 800 kbit/s).
        let video = rendition(
            "v360",
            TrackKind::Video,
            &[(4000, 100_000), (4000, 200_000), (500, 50_000)],
        );
        assert_eq!(video.average_bitrate(), 329_412);
        assert_eq!(video.peak_bitrate(), 444_445);
        assert_eq!(target_duration(&[video]), 4);
        let tiny = rendition("v360", TrackKind::Video, &[(1000, 1000)]);
        assert_eq!(tiny.peak_bitrate(), 8000);
    }

    #[test]
    fn misaligned_renditions_are_refused() {
        let a = rendition("v240", TrackKind::Video, &[(4000, 1), (4000, 1)]);
        let b = rendition("v360", TrackKind::Video, &[(4040, 1), (3960, 1)]);
        let error = check_alignment(&[a.clone(), b]).unwrap_err().to_string();
        assert!(
            error.contains("segment 2 starts at 4.000s in v240 but 4.040s in v360"),
            "{error}"
        );
        let audio = rendition("a64", TrackKind::Audio, &[(4021, 1), (3979, 1), (10, 1)]);
        check_alignment(&[a, audio]).unwrap();
    }
}
