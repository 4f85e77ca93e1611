//! The one error type of the ingest pipeline.
//!
//! Variants are what a caller can act on: the source is bad (tell the
//! uploader), a tool is missing or the library's disk is full (tell the
//! operator), the job was cancelled, or something failed while producing or
//! publishing the output.

use std::path::PathBuf;

use kinema_core::VideoId;
use kinema_core::ladder::LadderError;
use kinema_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("{program} was not found on PATH; install ffmpeg (scripts/install-deps does)")]
    ToolMissing { program: String },
    #[error("source file {path} cannot be read: {source}")]
    SourceUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("source file is empty (0 bytes)")]
    EmptySource,
    #[error("source is not a video or audio file: {detail}")]
    NotMedia { detail: String },
    #[error("source is truncated: {detail}")]
    Truncated { detail: String },
    #[error("the title is {chars} characters long; the limit is {limit}")]
    TitleTooLong { chars: usize, limit: usize },
    #[error("source is refused: {detail}")]
    OverLimit { detail: String },
    #[error(
        "source cannot be decoded: {detail}; the file may be damaged, or use a codec this \
         server's ffmpeg cannot decode"
    )]
    Undecodable { detail: String },
    #[error("subtitle file is refused: {detail}")]
    BadSubtitles { detail: String },
    #[error("source has zero duration")]
    ZeroDuration,
    #[error("source has neither a video nor an audio stream")]
    NoStreams,
    #[error("cannot plan renditions: {0}")]
    Ladder(#[from] LadderError),
    #[error("ffmpeg failed ({status}); last lines of its log:\n{log_tail}")]
    Transcode { status: String, log_tail: String },
    #[error(
        "ffmpeg made no progress for {seconds} s and was stopped; last lines of its log:\n{log_tail}"
    )]
    Stalled { seconds: u64, log_tail: String },
    #[error("cancelled")]
    Cancelled,
    #[error("unexpected encoder output: {0}")]
    Output(String),
    #[error("invalid ingest settings: {0}")]
    Settings(String),
    #[error("video {0} already exists; unpublish it first or choose another id")]
    AlreadyExists(VideoId),
    /// The library's file system ran out of space (ENOSPC) while the ingest
    /// wrote its output. Reported this way however the shortage showed
    /// itself — a failed write of ours, ffmpeg's own message, or encoder
    /// output cut short — so the operator sees the cause, not its symptom.
    #[error(
        "disk full (No space left on device) while writing {writing} to {}; \
         free space on the library's disk (or move the library to a larger one) and try again",
        path.display()
    )]
    StorageFull { writing: String, path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl MediaError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        MediaError::Io {
            path: path.into(),
            source,
        }
    }

    /// True when the library's disk is full: nothing is wrong with the
    /// source, and retrying succeeds once there is room.
    pub fn is_storage_full(&self) -> bool {
        matches!(self, MediaError::StorageFull { .. })
    }

    /// True when the source itself is at fault: retrying the same file
    /// cannot succeed, and the uploader (not the operator) must act.
    pub fn is_bad_source(&self) -> bool {
        matches!(
            self,
            MediaError::EmptySource
                | MediaError::NotMedia { .. }
                | MediaError::Truncated { .. }
                | MediaError::OverLimit { .. }
                | MediaError::TitleTooLong { .. }
                | MediaError::Undecodable { .. }
                | MediaError::ZeroDuration
                | MediaError::NoStreams
                | MediaError::BadSubtitles { .. }
                | MediaError::Ladder(_)
        )
    }
}
