//! Ingest's own scratch space on local disk, apart from the store.
//!
//! ```text
//! {workspace}/staging/   videos being assembled, one directory per ingest
//! {workspace}/uploads/   uploaded sources (and sidecar subtitles) of jobs
//! {workspace}/jobs/      one JSON record per job
//! {workspace}/logs/      ffmpeg's log of each job
//! ```
//!
//! The store sees none of this: a video reaches it only through
//! [`kinema_store::Store::publish`] of a finished staging directory. With a
//! local library the workspace is best on the library's file system (the
//! default, `{library}/ingest`), where publishing is a rename; with an
//! object store it is any local directory (`[ingest] workspace`).
//!
//! Nothing here is shared between processes except by name: staging
//! directories carry their owner's pid ([`staging_dir_name`]), so debris of
//! dead processes can be told from work in progress.

use std::path::{Path, PathBuf};

/// The workspace directory of ingest.
#[derive(Debug, Clone)]
pub struct Workspace {
    root: PathBuf,
}

impl Workspace {
    /// Opens (creating if needed) the workspace at `root`.
    pub fn open(root: impl Into<PathBuf>) -> std::io::Result<Self> {
        let workspace = Self { root: root.into() };
        for dir in [
            workspace.staging(),
            workspace.uploads(),
            workspace.jobs(),
            workspace.logs(),
        ] {
            std::fs::create_dir_all(&dir).map_err(|error| {
                std::io::Error::new(error.kind(), format!("{}: {error}", dir.display()))
            })?;
        }
        Ok(workspace)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where videos are assembled before they are published.
    pub fn staging(&self) -> PathBuf {
        self.root.join("staging")
    }

    /// A fresh staging directory for one ingest (not created), named so its
    /// owner can be told alive or dead.
    pub fn staging_dir(&self, unique: &str) -> PathBuf {
        self.staging().join(staging_dir_name(unique))
    }

    pub fn uploads(&self) -> PathBuf {
        self.root.join("uploads")
    }

    pub fn jobs(&self) -> PathBuf {
        self.root.join("jobs")
    }

    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// Removes what dead processes left: staging directories of ingests
    /// whose process is gone (a crash or kill -9) and half-written uploads.
    /// Directories of live processes are left alone: another `kinema
    /// ingest` or `kinema serve` may be using them right now. Call it before
    /// starting any ingest of this process. Blocking.
    pub fn clean_debris(&self) -> std::io::Result<Vec<PathBuf>> {
        let mut removed = Vec::new();
        for entry in std::fs::read_dir(self.staging())? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix("ingest-")
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok())
            else {
                continue;
            };
            // Our own pid here can only be an earlier process's (pids are
            // reused): callers clean before they start any job of their own.
            let alive =
                pid != std::process::id() && Path::new("/proc").join(pid.to_string()).exists();
            if !alive {
                std::fs::remove_dir_all(entry.path())?;
                removed.push(entry.path());
            }
        }
        for entry in std::fs::read_dir(self.uploads())? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with("partial-") {
                std::fs::remove_file(entry.path())?;
                removed.push(entry.path());
            }
        }
        Ok(removed)
    }
}

/// Staging directories of ingests are named `ingest-{pid}-{unique}`.
fn staging_dir_name(unique: &str) -> String {
    format!("ingest-{}-{unique}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debris_of_dead_processes_goes_and_work_of_live_ones_stays() {
        let dir = tempfile::tempdir().unwrap();
        let workspace = Workspace::open(dir.path().join("work")).unwrap();
        // pid 1 is always alive; no process has a pid above the kernel's
        // limit (2^22).
        let live = workspace.staging().join("ingest-1-a");
        let dead = workspace.staging().join("ingest-4194305-b");
        let mine_from_before = workspace
            .staging()
            .join(format!("ingest-{}-c", std::process::id()));
        let unrelated = workspace.staging().join("notes");
        for path in [&live, &dead, &mine_from_before, &unrelated] {
            std::fs::create_dir(path).unwrap();
        }
        let partial = workspace.uploads().join("partial-j1");
        let complete = workspace.uploads().join("j2");
        std::fs::write(&partial, b"half").unwrap();
        std::fs::write(&complete, b"whole").unwrap();

        let mut removed = workspace.clean_debris().unwrap();
        removed.sort();
        let mut expected = vec![dead.clone(), mine_from_before.clone(), partial.clone()];
        expected.sort();
        assert_eq!(removed, expected);
        assert!(live.exists() && unrelated.exists() && complete.exists());
        assert!(!dead.exists() && !mine_from_before.exists() && !partial.exists());
    }

    #[test]
    fn staging_directories_carry_the_pid_of_their_owner() {
        let dir = tempfile::tempdir().unwrap();
        let workspace = Workspace::open(dir.path()).unwrap();
        assert_eq!(
            workspace.staging_dir("clip"),
            dir.path()
                .join("staging")
                .join(format!("ingest-{}-clip", std::process::id()))
        );
        for sub in ["staging", "uploads", "jobs", "logs"] {
            assert!(dir.path().join(sub).is_dir(), "{sub} was not created");
        }
    }
}
