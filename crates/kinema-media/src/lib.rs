//! Ingest: turns one source file into a published adaptive stream.
//!
//! The pipeline is probe ([`probe`]) → ladder plan (`kinema_core::ladder`) →
//! one supervised ffmpeg child for every rung ([`transcode`], [`supervise`])
//! → CMAF files measured box by box ([`mp4`]) → HLS and DASH manifests and
//! thumbnails written by us from what was actually produced ([`hls`],
//! [`dash`], [`thumbs`]) → checksums → an atomic publish to the store
//! ([`pipeline`]). [`jobs`] runs that pipeline as persisted, cancellable,
//! retryable jobs with bounded concurrency.
//!
//! This is the only crate of kinema that spawns processes (ffmpeg and
//! ffprobe). It does not serve anything and knows nothing of HTTP.

pub mod chunked;
pub mod config;
pub mod dash;
pub mod download;
mod error;
pub mod hls;
pub mod iframes;
pub mod jobs;
pub mod language;
pub mod mp4;
pub mod package;
pub mod pipeline;
pub mod probe;
pub mod slug;
mod subtitle_tracks;
pub mod subtitles;
pub mod supervise;
pub mod thumbs;
pub mod transcode;
pub mod workspace;
pub mod written;

pub use error::MediaError;
pub use jobs::{IngestService, JobError, JobId, JobState, JobView, SubmitRequest};
pub use pipeline::{IngestConfig, IngestRequest, Ingested, Progress, Stage, ingest};
pub use workspace::Workspace;
