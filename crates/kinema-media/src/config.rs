//! The settings of ingest (`[ingest]` in the config file) and the bounds it
//! puts on what an uploader sends: source limits and the title's length.
//! Pure data and checks; the pipeline applies them.

use std::path::PathBuf;
use std::time::Duration;

use kinema_core::ladder::LadderConfig;
use serde::{Deserialize, Serialize};

use crate::MediaError;
use crate::probe::SourceInfo;

/// Settings of the ingest pipeline (`[ingest]` in the config file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    pub ladder: LadderConfig,
    /// x264 preset: `ultrafast` … `veryslow`.
    pub preset: String,
    /// SVT-AV1 preset of the AV1 rungs (`[ingest.ladder] av1 = true`):
    /// 0 (slowest, smallest) … 13 (fastest).
    pub av1_preset: u8,
    /// Encoder threads; 0 lets ffmpeg choose.
    pub threads: u32,
    /// An encoder that for this long has written no new bytes and whose
    /// output time has not advanced is stopped and the job fails.
    #[serde(with = "humantime_serde")]
    pub stall_timeout: Duration,
    /// The ffmpeg and ffprobe programs (looked up on PATH unless a path).
    pub ffmpeg: PathBuf,
    pub ffprobe: PathBuf,
    /// Jobs that run at once (each is one ffmpeg using every core it gets).
    pub concurrency: usize,
    /// Bounds on what a source may be; beyond them it is refused before
    /// any encoding.
    pub limits: SourceLimits,
    /// Audio tracks to keep, by language (`en`, `fra`); empty keeps every
    /// track.
    pub audio_languages: Vec<String>,
    /// An upload whose job failed (and was not retried) is deleted after
    /// this long; bad sources are deleted at once.
    #[serde(with = "humantime_serde")]
    pub failed_upload_ttl: Duration,
    /// The progressive MP4 (`download.mp4`): remuxed from the rendition
    /// nearest this height, or `off`.
    pub download: crate::download::DownloadSetting,
    /// Ingest's own local directory (staging, uploads, job records; see
    /// [`Workspace`](crate::Workspace)); unset, [`Self::workspace_root`]
    /// picks one.
    pub workspace: Option<PathBuf>,
    /// How a long video is split into chunks encoded by many workers
    /// (`[ingest.chunked]`; see [`crate::chunked`]).
    pub chunked: crate::chunked::ChunkConfig,
}

/// Bounds on a source (`[ingest.limits]`): a decoder fed a 16000×16000
/// picture or a 10,000 fps stream needs gigabytes before the first frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceLimits {
    /// Widest and tallest picture accepted (as coded, before rotation).
    pub max_width: u32,
    pub max_height: u32,
    /// Highest frame rate accepted, frames per second.
    pub max_frame_rate: u32,
    /// Longest duration accepted.
    #[serde(with = "humantime_serde")]
    pub max_duration: Duration,
}

impl Default for SourceLimits {
    fn default() -> Self {
        Self {
            // 8K UHD (7680x4320) in either orientation.
            max_width: 7680,
            max_height: 7680,
            max_frame_rate: 240,
            max_duration: Duration::from_secs(12 * 3600),
        }
    }
}

impl SourceLimits {
    /// Refuses a source beyond a limit, naming the limit and its key.
    pub fn check(&self, source: &SourceInfo) -> Result<(), MediaError> {
        let refuse = |detail: String| Err(MediaError::OverLimit { detail });
        if let Some(video) = &source.video {
            if video.coded_width > self.max_width || video.coded_height > self.max_height {
                return refuse(format!(
                    "its picture is {}x{}, beyond the limit of {}x{} \
                     (ingest.limits.max_width, max_height)",
                    video.coded_width, video.coded_height, self.max_width, self.max_height
                ));
            }
            let frame_rate = video.frame_rate.as_f64();
            if frame_rate > f64::from(self.max_frame_rate) {
                return refuse(format!(
                    "its frame rate is {frame_rate:.2} fps, beyond the limit of {} \
                     (ingest.limits.max_frame_rate)",
                    self.max_frame_rate
                ));
            }
        }
        if source.duration_seconds > self.max_duration.as_secs_f64() {
            return refuse(format!(
                "it lasts {:.0} s, beyond the limit of {} (ingest.limits.max_duration)",
                source.duration_seconds,
                humantime_serde::re::humantime::format_duration(self.max_duration)
            ));
        }
        Ok(())
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            ladder: LadderConfig::default(),
            preset: "veryfast".into(),
            av1_preset: 10,
            threads: 0,
            stall_timeout: Duration::from_secs(120),
            ffmpeg: "ffmpeg".into(),
            ffprobe: "ffprobe".into(),
            concurrency: 1,
            limits: SourceLimits::default(),
            audio_languages: Vec::new(),
            failed_upload_ttl: Duration::from_secs(7 * 24 * 3600),
            download: crate::download::DownloadSetting::default(),
            workspace: None,
            chunked: crate::chunked::ChunkConfig::default(),
        }
    }
}

const PRESETS: [&str; 9] = [
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
];

impl IngestConfig {
    /// Where ingest's workspace is: `workspace` when set; otherwise
    /// `ingest/` inside a local library (its file system, so publishing is
    /// a rename), or `kinema-work` in the working directory when the
    /// library is not a local directory.
    pub fn workspace_root(&self, local_library: Option<&std::path::Path>) -> PathBuf {
        match (&self.workspace, local_library) {
            (Some(workspace), _) => workspace.clone(),
            (None, Some(library)) => library.join("ingest"),
            (None, None) => PathBuf::from("kinema-work"),
        }
    }

    pub fn validate(&self) -> Result<(), MediaError> {
        self.ladder.validate()?;
        if !PRESETS.contains(&self.preset.as_str()) {
            return Err(MediaError::Settings(format!(
                "preset {:?} is not an x264 preset; use one of {}",
                self.preset,
                PRESETS.join(", ")
            )));
        }
        if self.av1_preset > 13 {
            return Err(MediaError::Settings(format!(
                "av1_preset {} is not an SVT-AV1 preset; use 0 (slowest) to 13 (fastest)",
                self.av1_preset
            )));
        }
        self.chunked.validate(self.ladder.segment_seconds)?;
        if self.concurrency == 0 {
            return Err(MediaError::Settings(
                "concurrency must be at least 1".to_string(),
            ));
        }
        Ok(())
    }
}

/// The longest title a video may have, in characters.
pub const MAX_TITLE_CHARS: usize = 200;

/// Refuses a title longer than [`MAX_TITLE_CHARS`].
pub fn check_title(title: &str) -> Result<(), MediaError> {
    let chars = title.chars().count();
    if chars > MAX_TITLE_CHARS {
        return Err(MediaError::TitleTooLong {
            chars,
            limit: MAX_TITLE_CHARS,
        });
    }
    Ok(())
}
