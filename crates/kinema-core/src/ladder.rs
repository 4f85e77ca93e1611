//! The rendition ladder: which qualities a video is encoded at, planned from
//! the shape of its source.
//!
//! This is pure data and arithmetic (no probing, no ffmpeg): the ingest
//! pipeline measures the source, hands a [`SourceShape`] to [`plan`], and
//! turns the resulting [`LadderPlan`] into one ffmpeg command. Keeping the
//! rules here makes them unit-testable as plain functions:
//!
//! - never above the source's resolution or frame rate (upscaling spends bits
//!   on nothing);
//! - aspect ratio kept, every dimension even (H.264 4:2:0 needs even sizes);
//! - a rung's "p" is the *short* side, so a portrait phone video's 720p rung is
//!   720×1280, not 405×720;
//! - one constant output frame rate for every rung, and a keyframe interval of
//!   exactly one segment, so all renditions cut at the same instants and a
//!   player can switch quality at any segment boundary.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LadderError {
    #[error("the ladder has no video rungs; configure at least one")]
    EmptyLadder,
    #[error("rung {height}p has height {height}; rung heights must be even and at least 2")]
    BadRungHeight { height: u32 },
    #[error("rung {height}p has a bit rate of 0; give it a bit rate in bits per second")]
    ZeroBitrate { height: u32 },
    #[error("rung {height}p appears twice in the ladder")]
    DuplicateRung { height: u32 },
    #[error("segment duration must be between 1 and 60 seconds, not {0}")]
    BadSegmentDuration(u32),
    #[error("audio bit rate must be between 16000 and 512000 bits per second, not {0}")]
    BadAudioBitrate(u64),
    #[error(
        "thin_audio_bitrate must be 0 (none) or from 16000 up to below audio_bitrate ({audio}), \
         not {thin}"
    )]
    BadThinAudioBitrate { thin: u64, audio: u64 },
    #[error(
        "surround_bitrate must be 0 (none) or between 64000 and 640000 bits per second, not {0}"
    )]
    BadSurroundBitrate(u64),
    #[error("av1_bitrate_percent must be between 10 and 100, not {0}")]
    BadAv1BitratePercent(u32),
    #[error("maximum frame rate must be between 1 and 240, not {0}")]
    BadMaxFrameRate(u32),
    #[error("source video is {width}x{height}; both dimensions must be at least 2")]
    SourceTooSmall { width: u32, height: u32 },
    #[error("source frame rate {0} is not usable; it must be positive and finite")]
    BadSourceFrameRate(FrameRate),
    #[error("source has neither a video nor an audio stream")]
    NothingToEncode,
}

/// A frame rate as an exact fraction (`30000/1001` for NTSC 29.97).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameRate {
    pub num: u32,
    pub den: u32,
}

impl FrameRate {
    pub const fn new(num: u32, den: u32) -> Self {
        Self { num, den }
    }

    pub fn as_f64(self) -> f64 {
        if self.den == 0 {
            return 0.0;
        }
        f64::from(self.num) / f64::from(self.den)
    }

    /// Parses ffprobe's `num/den` notation (`25/1`, `30000/1001`, `0/0`).
    pub fn parse(text: &str) -> Option<Self> {
        let (num, den) = text.split_once('/').unwrap_or((text, "1"));
        let rate = Self::new(num.trim().parse().ok()?, den.trim().parse().ok()?);
        (rate.num > 0 && rate.den > 0).then_some(rate)
    }
}

impl fmt::Display for FrameRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.den == 1 {
            write!(f, "{}", self.num)
        } else {
            write!(f, "{}/{}", self.num, self.den)
        }
    }
}

/// One quality of the configured ladder: a short-side height and the average
/// video bit rate to encode it at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RungSpec {
    /// The short side in pixels (`720` for 1280×720 and for 720×1280).
    pub height: u32,
    /// Average video bit rate, bits per second.
    pub bitrate: u64,
}

/// The configurable ladder (`[ingest.ladder]` in the config file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LadderConfig {
    pub rungs: Vec<RungSpec>,
    /// AAC stereo bit rate of each audio track's main rendition, bits per
    /// second. The main renditions are shared by every video variant but the
    /// lowest; the default track's is also offered alone as the audio-only
    /// variant.
    pub audio_bitrate: u64,
    /// AAC bit rate of a second, thinner audio rendition that the lowest
    /// video variant carries, so that variant fits a link of a few hundred
    /// kbit/s; 0 for none.
    pub thin_audio_bitrate: u64,
    /// AC-3 bit rate of a 5.1 rendition kept beside the stereo AAC of every
    /// track with six or more channels (for players that decode it: Safari,
    /// TVs); 0 for none.
    pub surround_bitrate: u64,
    /// Nominal segment duration, whole seconds.
    pub segment_seconds: u32,
    /// Also encode every rung in AV1 (libsvtav1), at `av1_bitrate_percent`
    /// of its H.264 bit rate: players that decode AV1 choose those, the
    /// rest keep H.264. Off by default: every AV1 rung is one more encode.
    pub av1: bool,
    /// An AV1 rung's bit rate as a percentage of its H.264 rung's.
    pub av1_bitrate_percent: u32,
    /// Output frame rate ceiling; faster sources are decimated by a whole
    /// factor (59.94 → 29.97) so motion cadence stays even.
    pub max_frame_rate: u32,
}

impl Default for LadderConfig {
    fn default() -> Self {
        Self {
            rungs: vec![
                // With the thin audio, under 200 kbit/s at its peak: what a
                // viewer on a 250 kbit/s link can play.
                RungSpec {
                    height: 144,
                    bitrate: 110_000,
                },
                RungSpec {
                    height: 240,
                    bitrate: 300_000,
                },
                RungSpec {
                    height: 360,
                    bitrate: 700_000,
                },
                RungSpec {
                    height: 480,
                    bitrate: 1_200_000,
                },
                RungSpec {
                    height: 720,
                    bitrate: 2_800_000,
                },
                RungSpec {
                    height: 1080,
                    bitrate: 5_000_000,
                },
            ],
            audio_bitrate: 64_000,
            thin_audio_bitrate: 32_000,
            surround_bitrate: 384_000,
            av1: false,
            av1_bitrate_percent: 60,
            segment_seconds: 4,
            max_frame_rate: 60,
        }
    }
}

impl LadderConfig {
    pub fn validate(&self) -> Result<(), LadderError> {
        if self.rungs.is_empty() {
            return Err(LadderError::EmptyLadder);
        }
        let mut heights = Vec::new();
        for rung in &self.rungs {
            if rung.height < 2 || rung.height % 2 != 0 {
                return Err(LadderError::BadRungHeight {
                    height: rung.height,
                });
            }
            if rung.bitrate == 0 {
                return Err(LadderError::ZeroBitrate {
                    height: rung.height,
                });
            }
            if heights.contains(&rung.height) {
                return Err(LadderError::DuplicateRung {
                    height: rung.height,
                });
            }
            heights.push(rung.height);
        }
        if !(1..=60).contains(&self.segment_seconds) {
            return Err(LadderError::BadSegmentDuration(self.segment_seconds));
        }
        if !(16_000..=512_000).contains(&self.audio_bitrate) {
            return Err(LadderError::BadAudioBitrate(self.audio_bitrate));
        }
        if self.thin_audio_bitrate != 0
            && !(16_000..self.audio_bitrate).contains(&self.thin_audio_bitrate)
        {
            return Err(LadderError::BadThinAudioBitrate {
                thin: self.thin_audio_bitrate,
                audio: self.audio_bitrate,
            });
        }
        if self.surround_bitrate != 0 && !(64_000..=640_000).contains(&self.surround_bitrate) {
            return Err(LadderError::BadSurroundBitrate(self.surround_bitrate));
        }
        if !(10..=100).contains(&self.av1_bitrate_percent) {
            return Err(LadderError::BadAv1BitratePercent(self.av1_bitrate_percent));
        }
        if !(1..=240).contains(&self.max_frame_rate) {
            return Err(LadderError::BadMaxFrameRate(self.max_frame_rate));
        }
        Ok(())
    }
}

/// What the planner needs to know of the source video stream, as displayed
/// (width and height already swapped for a 90°/270° rotation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SourceVideo {
    pub width: u32,
    pub height: u32,
    /// The source's average frame rate (for variable-frame-rate sources, the
    /// mean over the stream).
    pub frame_rate: FrameRate,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SourceShape {
    pub video: Option<SourceVideo>,
    /// The channel count of each audio track to keep, in order; empty for a
    /// silent source.
    pub audio_tracks: Vec<u32>,
}

/// The video codecs rungs are encoded with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VideoCodec {
    H264,
    Av1,
}

/// One video rendition to encode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoRung {
    /// Directory and rendition id (`v360`, `v360av1`).
    pub id: String,
    pub codec: VideoCodec,
    pub width: u32,
    pub height: u32,
    /// Target average bit rate, bits per second.
    pub bitrate: u64,
    /// Rate-control ceiling (VBV maximum rate), bits per second.
    pub maxrate: u64,
    /// VBV buffer size, bits.
    pub bufsize: u64,
}

/// What an audio rendition is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AudioRole {
    /// Stereo AAC at `audio_bitrate`: what every variant but the lowest
    /// carries.
    Main,
    /// Stereo AAC at `thin_audio_bitrate`: what the lowest variant carries.
    Thin,
    /// 5.1 AC-3 at `surround_bitrate`, beside the stereo downmix.
    Surround,
}

/// The audio codecs renditions are encoded with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AudioCodec {
    Aac,
    Ac3,
}

impl AudioCodec {
    /// ffmpeg's encoder name.
    pub fn encoder(self) -> &'static str {
        match self {
            AudioCodec::Aac => "aac",
            AudioCodec::Ac3 => "ac3",
        }
    }
}

/// One audio rendition to encode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioRung {
    /// Directory and rendition id: `a64`, `a32`, `a384ac3` for the first
    /// track, with `-{n}` appended for track n ≥ 1 (`a64-1`).
    pub id: String,
    /// Which kept audio track it is made of (an index into
    /// [`SourceShape::audio_tracks`]).
    pub track: usize,
    pub role: AudioRole,
    pub codec: AudioCodec,
    pub bitrate: u64,
    pub channels: u32,
    pub sample_rate: u32,
}

/// Everything the encoder needs to produce aligned renditions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LadderPlan {
    pub segment_seconds: u32,
    /// Constant output frame rate of every video rung (`None` for an
    /// audio-only source).
    pub frame_rate: Option<FrameRate>,
    /// Keyframe interval in frames: one closed GOP per segment.
    pub gop_frames: Option<u32>,
    /// The H.264 rungs, lowest quality first, then the AV1 rungs, lowest
    /// first.
    pub video: Vec<VideoRung>,
    /// Every audio rendition, track by track (main, then thin, then
    /// surround).
    pub audio: Vec<AudioRung>,
}

/// Frame rates that sources commonly carry; an average within 1% of one of
/// them (a variable-frame-rate phone clip averaging 29.91) snaps to it.
const STANDARD_FRAME_RATES: [FrameRate; 9] = [
    FrameRate::new(24000, 1001),
    FrameRate::new(24, 1),
    FrameRate::new(25, 1),
    FrameRate::new(30000, 1001),
    FrameRate::new(30, 1),
    FrameRate::new(48, 1),
    FrameRate::new(50, 1),
    FrameRate::new(60000, 1001),
    FrameRate::new(60, 1),
];

/// The constant frame rate to encode a source at: the source rate snapped to
/// a standard rate (or rounded to whole frames per second), then divided by
/// the smallest whole factor that brings it to `max_frame_rate` or below.
pub fn output_frame_rate(source: FrameRate, max_frame_rate: u32) -> Result<FrameRate, LadderError> {
    let value = source.as_f64();
    if !value.is_finite() || value <= 0.0 || source.den == 0 {
        return Err(LadderError::BadSourceFrameRate(source));
    }
    let snapped = STANDARD_FRAME_RATES
        .iter()
        .copied()
        .filter(|standard| (standard.as_f64() - value).abs() <= standard.as_f64() * 0.01)
        .min_by(|a, b| {
            (a.as_f64() - value)
                .abs()
                .total_cmp(&(b.as_f64() - value).abs())
        })
        // Not a standard rate: whole frames per second, at least one (a
        // slideshow at 0.5 fps still gets a frame a second).
        .unwrap_or_else(|| FrameRate::new((value.round() as u32).max(1), 1));
    let max = f64::from(max_frame_rate);
    let mut divisor = 1u32;
    while snapped.as_f64() / f64::from(divisor) > max + 1e-9 {
        divisor += 1;
    }
    Ok(reduce(FrameRate::new(snapped.num, snapped.den * divisor)))
}

fn reduce(rate: FrameRate) -> FrameRate {
    fn gcd(a: u32, b: u32) -> u32 {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    let divisor = gcd(rate.num, rate.den).max(1);
    FrameRate::new(rate.num / divisor, rate.den / divisor)
}

/// Nearest even number to `value`, at least 2.
fn round_even(value: f64) -> u32 {
    ((value / 2.0).round() as u32 * 2).max(2)
}

/// Largest even number not above `value`, at least 2.
fn floor_even(value: u32) -> u32 {
    (value & !1).max(2)
}

/// Plans the renditions of one source.
pub fn plan(source: &SourceShape, config: &LadderConfig) -> Result<LadderPlan, LadderError> {
    config.validate()?;
    if source.video.is_none() && source.audio_tracks.is_empty() {
        return Err(LadderError::NothingToEncode);
    }
    let audio = plan_audio(source, config);
    let Some(video) = source.video else {
        return Ok(LadderPlan {
            segment_seconds: config.segment_seconds,
            frame_rate: None,
            gop_frames: None,
            video: Vec::new(),
            audio,
        });
    };
    if video.width < 2 || video.height < 2 {
        return Err(LadderError::SourceTooSmall {
            width: video.width,
            height: video.height,
        });
    }
    let frame_rate = output_frame_rate(video.frame_rate, config.max_frame_rate)?;
    // One keyframe per segment: every segment of every rung starts with the
    // same frame number. For NTSC rates the segment is then a whole number
    // of frames a little over the nominal duration (120 frames = 4.004 s).
    let gop_frames =
        ((frame_rate.as_f64() * f64::from(config.segment_seconds)).round() as u32).max(1);

    let landscape = video.width >= video.height;
    let (short, long) = if landscape {
        (video.height, video.width)
    } else {
        (video.width, video.height)
    };
    let mut specs: Vec<RungSpec> = config.rungs.clone();
    specs.sort_by_key(|rung| rung.height);
    let mut rungs = Vec::new();
    for spec in specs.iter().filter(|spec| spec.height <= short) {
        let scaled_long = round_even(f64::from(spec.height) * f64::from(long) / f64::from(short))
            .min(floor_even(long));
        rungs.push(make_rung(spec.height, scaled_long, spec.bitrate, landscape));
    }
    if rungs.is_empty() {
        // A source smaller than the lowest rung is encoded once, at its own
        // size (rounded down to even), at the lowest rung's bit rate.
        let lowest = specs[0];
        rungs.push(make_rung(
            floor_even(short),
            floor_even(long),
            lowest.bitrate,
            landscape,
        ));
    }
    // The lowest rung is what a thin link plays: its peak, which its
    // variant's BANDWIDTH announces, is held close to its average.
    rungs[0].maxrate = rungs[0].bitrate * 6 / 5;
    rungs[0].bufsize = rungs[0].bitrate;
    if config.av1 {
        let av1: Vec<VideoRung> = rungs
            .iter()
            .map(|rung| {
                let scale = |value: u64| value * u64::from(config.av1_bitrate_percent) / 100;
                VideoRung {
                    id: format!("{}av1", rung.id),
                    codec: VideoCodec::Av1,
                    bitrate: scale(rung.bitrate),
                    maxrate: scale(rung.maxrate),
                    bufsize: scale(rung.bufsize),
                    ..rung.clone()
                }
            })
            .collect();
        rungs.extend(av1);
    }
    Ok(LadderPlan {
        segment_seconds: config.segment_seconds,
        frame_rate: Some(frame_rate),
        gop_frames: Some(gop_frames),
        video: rungs,
        audio,
    })
}

/// The audio renditions of every kept track: stereo AAC, a thin stereo AAC
/// when there is video for the lowest variant to carry it beside, and 5.1
/// AC-3 for a track of six or more channels.
fn plan_audio(source: &SourceShape, config: &LadderConfig) -> Vec<AudioRung> {
    let mut rungs = Vec::new();
    for (track, &channels) in source.audio_tracks.iter().enumerate() {
        let suffix = if track == 0 {
            String::new()
        } else {
            format!("-{track}")
        };
        // The stereo renditions share channels and sample rate, so a
        // player moving between them appends the same configuration.
        let stereo = |role: AudioRole, bitrate: u64| AudioRung {
            id: format!("a{}{suffix}", bitrate / 1000),
            track,
            role,
            codec: AudioCodec::Aac,
            bitrate,
            channels: 2,
            sample_rate: 48_000,
        };
        rungs.push(stereo(AudioRole::Main, config.audio_bitrate));
        if source.video.is_some() && config.thin_audio_bitrate > 0 {
            rungs.push(stereo(AudioRole::Thin, config.thin_audio_bitrate));
        }
        if channels >= 6 && config.surround_bitrate > 0 {
            rungs.push(AudioRung {
                id: format!("a{}ac3{suffix}", config.surround_bitrate / 1000),
                track,
                role: AudioRole::Surround,
                codec: AudioCodec::Ac3,
                bitrate: config.surround_bitrate,
                channels: 6,
                sample_rate: 48_000,
            });
        }
    }
    rungs
}

fn make_rung(short: u32, long: u32, bitrate: u64, landscape: bool) -> VideoRung {
    let (width, height) = if landscape {
        (long, short)
    } else {
        (short, long)
    };
    VideoRung {
        id: format!("v{short}"),
        codec: VideoCodec::H264,
        width,
        height,
        bitrate,
        // Capped VBR: peaks up to 1.5x the average, smoothed over a two
        // second buffer, so the measured peak BANDWIDTH stays predictable.
        maxrate: bitrate * 3 / 2,
        bufsize: bitrate * 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(width: u32, height: u32, num: u32, den: u32) -> SourceShape {
        SourceShape {
            video: Some(SourceVideo {
                width,
                height,
                frame_rate: FrameRate::new(num, den),
            }),
            audio_tracks: vec![2],
        }
    }

    fn sizes(plan: &LadderPlan) -> Vec<(String, u32, u32)> {
        plan.video
            .iter()
            .map(|rung| (rung.id.clone(), rung.width, rung.height))
            .collect()
    }

    #[test]
    fn full_hd_source_gets_the_whole_default_ladder() {
        let plan = plan(&source(1920, 1080, 25, 1), &LadderConfig::default()).unwrap();
        assert_eq!(
            sizes(&plan),
            vec![
                ("v144".into(), 256, 144),
                ("v240".into(), 426, 240),
                ("v360".into(), 640, 360),
                ("v480".into(), 854, 480),
                ("v720".into(), 1280, 720),
                ("v1080".into(), 1920, 1080),
            ]
        );
        assert_eq!(plan.frame_rate, Some(FrameRate::new(25, 1)));
        assert_eq!(plan.gop_frames, Some(100));
        assert_eq!(plan.segment_seconds, 4);
        let audio = &plan.audio[0];
        assert_eq!((audio.id.as_str(), audio.bitrate), ("a64", 64_000));
        assert_eq!(plan.video[5].bitrate, 5_000_000);
        assert_eq!(plan.video[5].maxrate, 7_500_000);
    }

    /// The thinnest variant: 144p whose peak is held near its average, with
    /// the thin audio beside it, for links of a few hundred kbit/s.
    #[test]
    fn lowest_rung_is_held_near_its_average_and_has_a_thin_audio() {
        let plan = plan(&source(1920, 1080, 25, 1), &LadderConfig::default()).unwrap();
        let lowest = &plan.video[0];
        assert_eq!(
            (lowest.bitrate, lowest.maxrate, lowest.bufsize),
            (110_000, 132_000, 110_000)
        );
        assert_eq!(plan.video[1].maxrate, 450_000);
        let thin = &plan.audio[1];
        assert_eq!(
            (
                thin.id.as_str(),
                thin.role,
                thin.bitrate,
                thin.channels,
                thin.sample_rate
            ),
            ("a32", AudioRole::Thin, 32_000, 2, 48_000)
        );
        assert_eq!(ids(&plan), ["a64", "a32"]);

        let mut audio_only = source(1920, 1080, 25, 1);
        audio_only.video = None;
        assert_eq!(ids(&plan_of(&audio_only)), ["a64"]);
        let mut silent = source(1920, 1080, 25, 1);
        silent.audio_tracks.clear();
        assert!(plan_of(&silent).audio.is_empty());
        let none = LadderConfig {
            thin_audio_bitrate: 0,
            ..LadderConfig::default()
        };
        assert_eq!(
            ids(&super::plan(&source(1920, 1080, 25, 1), &none).unwrap()),
            ["a64"]
        );
        let too_thick = LadderConfig {
            thin_audio_bitrate: 64_000,
            ..LadderConfig::default()
        };
        assert_eq!(
            too_thick.validate().unwrap_err().to_string(),
            "thin_audio_bitrate must be 0 (none) or from 16000 up to below audio_bitrate (64000), not 64000"
        );
    }

    fn ids(plan: &LadderPlan) -> Vec<&str> {
        plan.audio.iter().map(|audio| audio.id.as_str()).collect()
    }

    /// Each kept track gets its own renditions; a 5.1 track keeps an AC-3
    /// 5.1 rendition beside its stereo AAC downmix.
    #[test]
    fn every_audio_track_and_surround() {
        let mut shape = source(1280, 720, 25, 1);
        shape.audio_tracks = vec![2, 6];
        let plan = plan_of(&shape);
        assert_eq!(ids(&plan), ["a64", "a32", "a64-1", "a32-1", "a384ac3-1"]);
        let surround = &plan.audio[4];
        assert_eq!(
            (
                surround.track,
                surround.role,
                surround.codec,
                surround.channels
            ),
            (1, AudioRole::Surround, AudioCodec::Ac3, 6)
        );
        assert!(plan.audio[..2].iter().all(|audio| audio.track == 0));
        let no_surround = LadderConfig {
            surround_bitrate: 0,
            ..LadderConfig::default()
        };
        assert_eq!(
            ids(&super::plan(&shape, &no_surround).unwrap()),
            ["a64", "a32", "a64-1", "a32-1"]
        );
        assert_eq!(
            LadderConfig {
                surround_bitrate: 5,
                ..LadderConfig::default()
            }
            .validate()
            .unwrap_err()
            .to_string(),
            "surround_bitrate must be 0 (none) or between 64000 and 640000 bits per second, not 5"
        );
    }

    #[test]
    fn av1_rungs_follow_the_h264_ones_when_asked_for() {
        let config = LadderConfig {
            av1: true,
            ..LadderConfig::default()
        };
        let plan = plan(&source(640, 360, 25, 1), &config).unwrap();
        let rungs: Vec<(&str, VideoCodec, u64, u32)> = plan
            .video
            .iter()
            .map(|rung| (rung.id.as_str(), rung.codec, rung.bitrate, rung.width))
            .collect();
        assert_eq!(
            rungs,
            [
                ("v144", VideoCodec::H264, 110_000, 256),
                ("v240", VideoCodec::H264, 300_000, 426),
                ("v360", VideoCodec::H264, 700_000, 640),
                ("v144av1", VideoCodec::Av1, 66_000, 256),
                ("v240av1", VideoCodec::Av1, 180_000, 426),
                ("v360av1", VideoCodec::Av1, 420_000, 640),
            ]
        );
        assert!(
            plan_of(&source(640, 360, 25, 1))
                .video
                .iter()
                .all(|rung| rung.codec == VideoCodec::H264)
        );
    }

    fn plan_of(shape: &SourceShape) -> LadderPlan {
        plan(shape, &LadderConfig::default()).unwrap()
    }

    #[test]
    fn never_above_source_resolution() {
        let plan = plan(&source(1280, 720, 30, 1), &LadderConfig::default()).unwrap();
        assert_eq!(plan.video.last().unwrap().id, "v720");
        let plan = super::plan(&source(640, 360, 30, 1), &LadderConfig::default()).unwrap();
        assert_eq!(
            sizes(&plan),
            vec![
                ("v144".into(), 256, 144),
                ("v240".into(), 426, 240),
                ("v360".into(), 640, 360)
            ]
        );
    }

    #[test]
    fn odd_source_dimensions_give_even_rungs_with_the_same_aspect() {
        let plan = plan(&source(321, 241, 25, 1), &LadderConfig::default()).unwrap();
        assert_eq!(
            sizes(&plan),
            vec![("v144".into(), 192, 144), ("v240".into(), 320, 240)]
        );
    }

    #[test]
    fn portrait_rungs_are_named_by_their_short_side() {
        let plan = plan(&source(1080, 1920, 30, 1), &LadderConfig::default()).unwrap();
        assert_eq!(plan.video[4].id, "v720");
        assert_eq!((plan.video[4].width, plan.video[4].height), (720, 1280));
        let plan = super::plan(&source(180, 320, 25, 1), &LadderConfig::default()).unwrap();
        assert_eq!(sizes(&plan), vec![("v144".into(), 144, 256)]);
    }

    #[test]
    fn source_below_the_lowest_rung_is_encoded_at_its_own_size() {
        let plan = plan(&source(161, 91, 25, 1), &LadderConfig::default()).unwrap();
        assert_eq!(sizes(&plan), vec![("v90".into(), 160, 90)]);
        assert_eq!(plan.video[0].bitrate, 110_000);
        assert_eq!(
            super::plan(&source(1, 1, 25, 1), &LadderConfig::default()),
            Err(LadderError::SourceTooSmall {
                width: 1,
                height: 1
            })
        );
    }

    #[test]
    fn frame_rate_is_snapped_and_never_above_the_source_or_the_ceiling() {
        let rate = |num, den, max| output_frame_rate(FrameRate::new(num, den), max).unwrap();
        assert_eq!(rate(30000, 1001, 60), FrameRate::new(30000, 1001));
        // A variable-frame-rate phone clip averaging 29.91 fps.
        assert_eq!(rate(2991, 100, 60), FrameRate::new(30000, 1001));
        assert_eq!(rate(60000, 1001, 30), FrameRate::new(30000, 1001));
        assert_eq!(rate(120, 1, 60), FrameRate::new(60, 1));
        assert_eq!(rate(50, 1, 30), FrameRate::new(25, 1));
        assert_eq!(rate(15, 1, 60), FrameRate::new(15, 1));
        assert_eq!(rate(1, 2, 60), FrameRate::new(1, 1));
        assert_eq!(rate(173, 10, 60), FrameRate::new(17, 1));
        assert!(output_frame_rate(FrameRate::new(0, 1), 60).is_err());
    }

    #[test]
    fn keyframe_interval_is_one_segment_of_frames() {
        let plan = plan(&source(640, 360, 30000, 1001), &LadderConfig::default()).unwrap();
        assert_eq!(plan.gop_frames, Some(120));
        let config = LadderConfig {
            segment_seconds: 2,
            ..LadderConfig::default()
        };
        let plan = super::plan(&source(640, 360, 24, 1), &config).unwrap();
        assert_eq!(plan.gop_frames, Some(48));
    }

    #[test]
    fn audio_only_and_silent_sources() {
        let audio_only = SourceShape {
            video: None,
            audio_tracks: vec![2],
        };
        let plan = plan(&audio_only, &LadderConfig::default()).unwrap();
        assert!(plan.video.is_empty());
        assert_eq!(ids(&plan), ["a64"]);
        let mut silent = source(640, 360, 25, 1);
        silent.audio_tracks.clear();
        assert!(
            super::plan(&silent, &LadderConfig::default())
                .unwrap()
                .audio
                .is_empty()
        );
        let nothing = SourceShape {
            video: None,
            audio_tracks: Vec::new(),
        };
        assert_eq!(
            super::plan(&nothing, &LadderConfig::default()),
            Err(LadderError::NothingToEncode)
        );
    }

    #[test]
    fn bad_ladders_are_refused_with_the_rung_named() {
        let with_rungs = |rungs: Vec<RungSpec>| LadderConfig {
            rungs,
            ..LadderConfig::default()
        };
        assert_eq!(with_rungs(vec![]).validate(), Err(LadderError::EmptyLadder));
        let odd = with_rungs(vec![RungSpec {
            height: 241,
            bitrate: 1,
        }]);
        assert_eq!(
            odd.validate(),
            Err(LadderError::BadRungHeight { height: 241 })
        );
        let twice = with_rungs(vec![
            RungSpec {
                height: 240,
                bitrate: 1,
            };
            2
        ]);
        assert_eq!(
            twice.validate(),
            Err(LadderError::DuplicateRung { height: 240 })
        );
        let zero = with_rungs(vec![RungSpec {
            height: 240,
            bitrate: 0,
        }]);
        assert_eq!(
            zero.validate(),
            Err(LadderError::ZeroBitrate { height: 240 })
        );
        let segment = LadderConfig {
            segment_seconds: 0,
            ..LadderConfig::default()
        };
        assert_eq!(segment.validate(), Err(LadderError::BadSegmentDuration(0)));
        assert!(
            LadderError::BadRungHeight { height: 241 }
                .to_string()
                .contains("241p")
        );
    }

    #[test]
    fn ladder_config_reads_from_toml_like_data_with_defaults() {
        let config: LadderConfig =
            serde_json::from_str(r#"{"rungs":[{"height":360,"bitrate":800000}]}"#).unwrap();
        assert_eq!(config.rungs.len(), 1);
        assert_eq!(config.segment_seconds, 4);
        assert!(serde_json::from_str::<LadderConfig>(r#"{"rung":[]}"#).is_err());
    }

    #[test]
    fn frame_rates_parse_from_ffprobe_notation() {
        assert_eq!(
            FrameRate::parse("30000/1001"),
            Some(FrameRate::new(30000, 1001))
        );
        assert_eq!(FrameRate::parse("25"), Some(FrameRate::new(25, 1)));
        assert_eq!(FrameRate::parse("0/0"), None);
        assert_eq!(FrameRate::new(30000, 1001).to_string(), "30000/1001");
    }
}
