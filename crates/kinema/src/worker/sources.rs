//! The source a worker read last, kept for its next task of the same job.
//!
//! Every task of a chunked job (each chunk, the audio) reads the job's whole
//! source: without this, a worker that runs seven chunks of a film
//! downloads it seven times. The copy is kept in the worker's scratch
//! directory under `sources/`, one job's at a time, and handed to a task by
//! a hard link into the task's own scratch directory, so removing either
//! (the next task's scratch, or the next job's copy) never takes the file
//! from a task still reading it. Before a copy is reused, the object's size
//! and entity tag are read again (one HEAD): a source replaced in the store
//! is downloaded afresh.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use kinema_store::s3::JobObjectVersion;

/// The kept copy and what it is a copy of.
#[derive(Debug)]
struct Kept {
    job: String,
    name: String,
    version: JobObjectVersion,
    path: PathBuf,
}

/// Shared by a worker's slots; its file work runs on tokio's blocking pool
/// (removing a large file can take a while). Clones share the copy.
#[derive(Debug, Clone)]
pub struct SourceCopies(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    kept: Mutex<Option<Kept>>,
}

impl SourceCopies {
    /// Keeps its copies in `dir` (below the worker's scratch directory,
    /// which the worker empties at start).
    pub fn new(dir: PathBuf) -> Self {
        Self(Arc::new(Inner {
            dir,
            kept: Mutex::new(None),
        }))
    }

    /// Links the kept copy of `job`'s object `name` at `version` to `path`;
    /// false (and nothing at `path`) when there is none or it cannot be
    /// linked.
    pub async fn link_to(
        &self,
        job: &str,
        name: &str,
        version: &JobObjectVersion,
        path: &Path,
    ) -> bool {
        let (inner, job, name, version, path) = (
            self.0.clone(),
            job.to_string(),
            name.to_string(),
            version.clone(),
            path.to_path_buf(),
        );
        tokio::task::spawn_blocking(move || inner.link_to(&job, &name, &version, &path))
            .await
            .unwrap_or(false)
    }

    /// Keeps the file at `path`, a whole download of `job`'s object `name`
    /// at `version`, in place of the copy kept before; a copy that cannot
    /// be kept is simply not.
    pub async fn keep(&self, job: &str, name: &str, version: JobObjectVersion, path: &Path) {
        let (inner, job, name, path) = (
            self.0.clone(),
            job.to_string(),
            name.to_string(),
            path.to_path_buf(),
        );
        let _ = tokio::task::spawn_blocking(move || inner.keep(&job, &name, version, &path)).await;
    }
}

impl Inner {
    fn link_to(&self, job: &str, name: &str, version: &JobObjectVersion, path: &Path) -> bool {
        let kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(kept) = kept
            .as_ref()
            .filter(|kept| kept.job == job && kept.name == name && &kept.version == version)
        else {
            return false;
        };
        std::fs::hard_link(&kept.path, path).is_ok()
    }

    fn keep(&self, job: &str, name: &str, version: JobObjectVersion, path: &Path) {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = kept.take() {
            let _ = std::fs::remove_file(&old.path);
        }
        if std::fs::create_dir_all(&self.dir).is_err() {
            return;
        }
        let copy = self.dir.join("source");
        let _ = std::fs::remove_file(&copy);
        if std::fs::hard_link(path, &copy).is_ok() {
            *kept = Some(Kept {
                job: job.to_string(),
                name: name.to_string(),
                version,
                path: copy,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(size: u64, tag: &str) -> JobObjectVersion {
        JobObjectVersion {
            size,
            e_tag: Some(tag.to_string()),
        }
    }

    #[tokio::test]
    async fn a_kept_source_is_linked_only_for_its_job_name_and_version() {
        let scratch = tempfile::tempdir().unwrap();
        let copies = SourceCopies::new(scratch.path().join("sources"));
        let first = scratch.path().join("task1-source");
        std::fs::write(&first, b"film").unwrap();
        let target = scratch.path().join("task2-source");
        assert!(
            !copies
                .link_to("j1", "source", &version(4, "a"), &target)
                .await
        );
        assert!(!target.exists());

        copies.keep("j1", "source", version(4, "a"), &first).await;
        // The task that downloaded it is gone: its scratch is emptied.
        std::fs::remove_file(&first).unwrap();
        // Another job, name, entity tag or size: never linked.
        for (job, name, size, etag) in [
            ("j2", "source", 4, "a"),
            ("j1", "other", 4, "a"),
            ("j1", "source", 4, "b"),
            ("j1", "source", 5, "a"),
        ] {
            assert!(
                !copies
                    .link_to(job, name, &version(size, etag), &target)
                    .await,
                "{job} {name} {size} {etag}"
            );
        }
        assert!(!target.exists());
        assert!(
            copies
                .link_to("j1", "source", &version(4, "a"), &target)
                .await
        );
        assert_eq!(std::fs::read(&target).unwrap(), b"film");

        // The next job's source replaces it; the linked task keeps its file.
        let next = scratch.path().join("task3-source");
        std::fs::write(&next, b"other film").unwrap();
        copies.keep("j2", "source", version(10, "c"), &next).await;
        assert_eq!(std::fs::read(&target).unwrap(), b"film");
        let again = scratch.path().join("task4-source");
        assert!(
            !copies
                .link_to("j1", "source", &version(4, "a"), &again)
                .await
        );
        assert!(
            copies
                .link_to("j2", "source", &version(10, "c"), &again)
                .await
        );
        assert_eq!(std::fs::read(&again).unwrap(), b"other film");
        let held: Vec<_> = std::fs::read_dir(scratch.path().join("sources"))
            .unwrap()
            .collect();
        assert_eq!(held.len(), 1, "one copy kept at a time");
    }
}
