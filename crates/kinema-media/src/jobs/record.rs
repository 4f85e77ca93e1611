//! The job records: a job's id and state, what is persisted of it, and the
//! persistence itself. Each record is a JSON file in the workspace's
//! `jobs/` directory, written atomically (temporary file, fsync, rename,
//! directory fsync) and read back on start, skipping what a crash left
//! half-written. Also the progress a record implies once its job stopped.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use kinema_core::{AccessPolicy, VideoId};
use serde::{Deserialize, Serialize};

use super::{JobError, io_error};
use crate::pipeline::{Progress, Stage};
use crate::subtitles::{SidecarSubtitle, SkippedSubtitle};

/// A job id: time-ordered, unique within a library.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(String);

impl JobId {
    pub(super) fn generate() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        Self(format!("j{nanos:x}{:x}{count:x}", std::process::id()))
    }

    /// Accepts only ids of the form this module generates, so an id from a
    /// URL can be joined to a directory safely.
    pub fn parse(text: &str) -> Option<Self> {
        let valid = text.len() <= 64
            && text.starts_with('j')
            && text[1..].bytes().all(|b| b.is_ascii_hexdigit())
            && text.len() > 1;
        valid.then(|| Self(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl JobState {
    pub(super) fn is_active(self) -> bool {
        matches!(self, JobState::Queued | JobState::Running)
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        })
    }
}

/// What is persisted of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct JobRecord {
    pub(super) id: JobId,
    pub(super) video_id: VideoId,
    pub(super) title: String,
    /// Absent in job files written before policies existed: public.
    #[serde(default)]
    pub(super) access: AccessPolicy,
    pub(super) state: JobState,
    pub(super) source: PathBuf,
    /// True for uploads: the source file is ours to delete.
    pub(super) owned_source: bool,
    pub(super) created_at_unix: u64,
    pub(super) updated_at_unix: u64,
    pub(super) attempts: u32,
    pub(super) error: Option<String>,
    /// Sidecar subtitle files (uploads are owned like the source).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) subtitles: Vec<SidecarSubtitle>,
    /// Bitmap subtitle tracks the last successful run could not publish.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) skipped_subtitles: Vec<SkippedSubtitle>,
    /// Where a failed or cancelled job stopped (its stage and percent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) stopped_at: Option<Progress>,
}

/// The progress a job's record implies: done at 100%, a failed or
/// cancelled job where it stopped, anything else queued at 0%.
pub(super) fn progress_for(record: &JobRecord) -> Progress {
    match (record.state, record.stopped_at) {
        (JobState::Done, _) => Progress::at(Stage::Done, 100.0),
        (JobState::Failed | JobState::Cancelled, Some(stopped_at)) => stopped_at,
        _ => Progress::at(Stage::Queued, 0.0),
    }
}

/// Where a job stopped: its stage and percent, with no speed or time left.
pub(super) fn stopped(progress: Progress) -> Progress {
    Progress::at(progress.stage, progress.percent)
}

pub(super) fn write_record(jobs_dir: &Path, record: &JobRecord) -> Result<(), JobError> {
    use std::io::Write;
    let path = jobs_dir.join(format!("{}.json", record.id));
    let tmp = jobs_dir.join(format!(".{}.json.tmp", record.id));
    let json = serde_json::to_vec_pretty(record).map_err(|e| io_error(&path, e.into()))?;
    let written = std::fs::File::create(&tmp).and_then(|mut file| {
        file.write_all(&json)?;
        file.sync_all()
    });
    if let Err(error) = written {
        // A write cut short (a full disk) must not keep the space it took.
        let _ = std::fs::remove_file(&tmp);
        return Err(io_error(&tmp, error));
    }
    std::fs::rename(&tmp, &path).map_err(|e| io_error(&path, e))?;
    std::fs::File::open(jobs_dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| io_error(jobs_dir, e))
}

pub(super) fn load_records(jobs_dir: &Path) -> Result<Vec<JobRecord>, JobError> {
    let mut records = Vec::new();
    for entry in std::fs::read_dir(jobs_dir).map_err(|e| io_error(jobs_dir, e))? {
        let entry = entry.map_err(|e| io_error(jobs_dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            // A temporary file of a write the crash interrupted.
            let _ = std::fs::remove_file(entry.path());
            continue;
        }
        if !name.ends_with(".json") {
            continue;
        }
        let bytes = std::fs::read(entry.path()).map_err(|e| io_error(&entry.path(), e))?;
        match serde_json::from_slice::<JobRecord>(&bytes) {
            Ok(record) => records.push(record),
            Err(error) => {
                tracing::warn!(file = %entry.path().display(), %error, "skipping an unreadable job record");
            }
        }
    }
    records.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(records)
}

/// Reads a job file's bytes as loading does and writes the record back as
/// [`write_record`] does; `None` for a file loading skips. For the fuzz
/// targets (`fuzz/` at the workspace root), which cannot see [`JobRecord`].
#[doc(hidden)]
pub fn reserialize_job_record(bytes: &[u8]) -> Option<Vec<u8>> {
    let record = serde_json::from_slice::<JobRecord>(bytes).ok()?;
    Some(serde_json::to_vec_pretty(&record).expect("a job record serialises"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_are_unique_and_parse_back() {
        let a = JobId::generate();
        let b = JobId::generate();
        assert_ne!(a, b);
        assert_eq!(JobId::parse(a.as_str()), Some(a));
        for bad in ["", "j", "x123", "j12/..", "j12g", "../j1"] {
            assert_eq!(JobId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn records_are_written_atomically_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let record = JobRecord {
            id: JobId::generate(),
            video_id: VideoId::new("clip").unwrap(),
            title: "Clip".into(),
            access: AccessPolicy::Signed,
            state: JobState::Running,
            source: "/tmp/x.mp4".into(),
            owned_source: false,
            created_at_unix: 1,
            updated_at_unix: 2,
            attempts: 1,
            error: None,
            subtitles: vec![SidecarSubtitle {
                path: "/tmp/x.fr.srt".into(),
                language: "fr".into(),
                forced: true,
                hearing_impaired: false,
            }],
            skipped_subtitles: vec![SkippedSubtitle {
                language: "de".into(),
                codec: "hdmv_pgs_subtitle".into(),
            }],
            stopped_at: Some(Progress::at(Stage::Transcoding, 42.0)),
        };
        write_record(dir.path(), &record).unwrap();
        std::fs::write(dir.path().join(".junk.json.tmp"), b"{").unwrap();
        std::fs::write(dir.path().join("broken.json"), b"{").unwrap();
        assert_eq!(load_records(dir.path()).unwrap(), vec![record]);
        assert!(!dir.path().join(".junk.json.tmp").exists());
    }
}
