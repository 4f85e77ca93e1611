//! Publishing to the local backend: a staged directory (copied into the
//! library's own `staging/` first when it is on another file system) is
//! checked against its manifest, fsynced, renamed into place as a new
//! generation, and made current by replacing the top manifest; plus the
//! atomic file writes and fsyncs that publishing, unpublishing and metadata
//! writes share.

use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use kinema_core::{MANIFEST_FILE, Manifest};

use super::LocalStore;
use super::collect::empty_trash;
use crate::{StoreError, layout};

impl LocalStore {
    /// The blocking half of `publish`. A staged directory on another file
    /// system (an ingest workspace on another disk) is copied into the
    /// library's own `staging/` first, since only from there is a
    /// generation's arrival one rename; the copy stands in for it from then
    /// on, and the original is consumed either way.
    pub(super) fn publish_blocking(
        &self,
        manifest: &Manifest,
        json: &[u8],
        staged_dir: &Path,
    ) -> Result<(), StoreError> {
        use std::os::unix::fs::MetadataExt;
        let device = |path: &Path| {
            std::fs::metadata(path)
                .map(|meta| meta.dev())
                .map_err(|e| StoreError::io(path, e))
        };
        if device(staged_dir)? == device(&self.root)? {
            return self.publish_same_fs(manifest, json, staged_dir);
        }
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let copy = self.staging_root().join(format!(
            "copy-{}-{}-{nanos}",
            manifest.id,
            std::process::id()
        ));
        let result =
            copy_tree(staged_dir, &copy).and_then(|()| self.publish_same_fs(manifest, json, &copy));
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&copy);
        }
        let _ = std::fs::remove_dir_all(staged_dir);
        result
    }

    /// Publishes `staged_dir`, which is on the library's file system.
    fn publish_same_fs(
        &self,
        manifest: &Manifest,
        json: &[u8],
        staged_dir: &Path,
    ) -> Result<(), StoreError> {
        check_staged_files(manifest, staged_dir)?;
        write_file_atomically(&staged_dir.join(MANIFEST_FILE), json)?;
        fsync_tree(staged_dir)?;

        let _writing = self
            .writing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let id = &manifest.id;
        crate::check_replaces(manifest, self.current_manifest(id))?;
        let video_dir = self.video_dir(id);
        let mut made_video_dir = false;
        match std::fs::symlink_metadata(&video_dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(StoreError::io(
                    &video_dir,
                    std::io::Error::other("not a directory; remove it"),
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(&video_dir).map_err(|e| StoreError::io(&video_dir, e))?;
                made_video_dir = true;
                fsync_dir(&self.videos())?;
            }
            Err(e) => return Err(StoreError::io(&video_dir, e)),
        }
        let target = self.local_path(&layout::generation_prefix(id, manifest.generation));
        if std::fs::symlink_metadata(&target).is_ok() {
            // Left by a publish of the same generation that crashed before
            // its top manifest: never overwritten, so a cache that saw it
            // cannot see other bytes under the same URL.
            return Err(StoreError::StaleGeneration {
                id: id.clone(),
                generation: manifest.generation,
                current: manifest.generation,
            });
        }
        // rename(2) of a directory onto a missing name is atomic: the
        // generation appears whole with its manifest.
        std::fs::rename(staged_dir, &target).map_err(|e| StoreError::io(&target, e))?;
        // Last: the video now is this generation.
        let current = self.local_path(&layout::current_manifest_key(id));
        if let Err(error) = fsync_dir(&video_dir).and_then(|()| replace_file(&current, json)) {
            // The video stays what it was. The generation nobody can see
            // goes, so a full disk gets its space back, and so does a video
            // directory this publish made.
            let trash = self.trash_path(&format!("{id}.g{}", manifest.generation));
            if std::fs::rename(&target, &trash).is_ok() {
                let _ = empty_trash(&trash);
            }
            if made_video_dir {
                let _ = std::fs::remove_dir(&video_dir);
            }
            return Err(error);
        }
        // Published; only whether the rename is durable yet is in question.
        fsync_dir(&video_dir)?;
        if let Err(error) = self.collect_video(id) {
            tracing::warn!(%id, error = %error, "collecting retired generations failed");
        }
        Ok(())
    }
}

/// Checks the staged files against the manifest's sizes.
fn check_staged_files(manifest: &Manifest, staged_dir: &Path) -> Result<(), StoreError> {
    for entry in &manifest.files {
        let path = staged_dir.join(entry.path.as_str());
        let meta =
            std::fs::symlink_metadata(&path).map_err(|e| StoreError::StagedFileMismatch {
                path: entry.path.to_string(),
                detail: e.to_string(),
            })?;
        if !meta.is_file() || meta.len() != entry.size {
            return Err(StoreError::StagedFileMismatch {
                path: entry.path.to_string(),
                detail: format!(
                    "expected a regular file of {} bytes, found {} bytes",
                    entry.size,
                    meta.len()
                ),
            });
        }
    }
    Ok(())
}

/// Writes `path` as a whole: a temp file beside it, fsynced, renamed over
/// it, and the directory fsynced, so a crash leaves the old file or the new.
pub(super) fn write_file_atomically(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    replace_file(path, bytes)?;
    fsync_dir(path.parent().expect("a file in a directory"))
}

/// Replaces `path` by a temp file beside it, written, fsynced and renamed
/// over it (the directory is not fsynced). An error means `path` is as it
/// was, and the temp file is gone.
fn replace_file(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let directory = path.parent().expect("a file in a directory");
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("file");
    let temporary = directory.join(format!(".{name}.tmp"));
    let written = std::fs::File::create(&temporary)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        })
        .map_err(|e| StoreError::io(&temporary, e))
        .and_then(|()| std::fs::rename(&temporary, path).map_err(|e| StoreError::io(path, e)));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}
/// Copies a staged directory (directories and regular files only; a
/// staged video has nothing else) to `to`, which must not exist.
fn copy_tree(from: &Path, to: &Path) -> Result<(), StoreError> {
    std::fs::create_dir(to).map_err(|e| StoreError::io(to, e))?;
    for entry in std::fs::read_dir(from).map_err(|e| StoreError::io(from, e))? {
        let entry = entry.map_err(|e| StoreError::io(from, e))?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let file_type = entry.file_type().map_err(|e| StoreError::io(&source, e))?;
        if file_type.is_dir() {
            copy_tree(&source, &target)?;
        } else if file_type.is_file() {
            std::fs::copy(&source, &target).map_err(|e| StoreError::io(&target, e))?;
        } else {
            return Err(StoreError::StagedFileMismatch {
                path: source.to_string_lossy().into_owned(),
                detail: "not a regular file".into(),
            });
        }
    }
    Ok(())
}

fn fsync_tree(dir: &Path) -> Result<(), StoreError> {
    for entry in std::fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))? {
        let entry = entry.map_err(|e| StoreError::io(dir, e))?;
        let path = entry.path();
        let file_type = entry.file_type().map_err(|e| StoreError::io(&path, e))?;
        if file_type.is_dir() {
            fsync_tree(&path)?;
        } else {
            std::fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|e| StoreError::io(&path, e))?;
        }
    }
    fsync_dir(dir)
}

pub(super) fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| StoreError::io(dir, e))
}
