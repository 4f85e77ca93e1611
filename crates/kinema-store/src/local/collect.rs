//! Collection in the local backend: deleting the generations of a video
//! that the shared layout rules say may go (retired long enough, never the
//! current one), and emptying what was moved into `trash/`.

use std::path::Path;
use std::time::SystemTime;

use kinema_core::VideoId;

use super::LocalStore;
use super::publish::fsync_dir;
use crate::{CollectedGeneration, StoreError, layout};

impl LocalStore {
    /// Deletes the generations of one video that `layout` says may go.
    /// Called with the write lock held.
    pub(super) fn collect_video(
        &self,
        id: &VideoId,
    ) -> Result<Vec<CollectedGeneration>, StoreError> {
        let video_dir = self.video_dir(id);
        let current = match self.current_manifest(id) {
            Ok(manifest) => Some(manifest.generation),
            Err(StoreError::VideoNotFound(_)) => None,
            // Unsure what is current: delete nothing.
            Err(_) => return Ok(Vec::new()),
        };
        let entries = match std::fs::read_dir(&video_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::io(&video_dir, e)),
        };
        let mut present = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io(&video_dir, e))?;
            let is_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
            if let (true, Some(generation)) = (
                is_dir,
                entry
                    .file_name()
                    .to_str()
                    .and_then(layout::parse_generation_dir),
            ) {
                present.push(generation);
            }
        }
        let now = layout::unix_millis(SystemTime::now());
        let mut collected = Vec::new();
        for generation in
            layout::collectable_generations(&present, current, now, self.options.retired_grace)
        {
            let directory = self.local_path(&layout::generation_prefix(id, generation));
            let trash = self.trash_path(&format!("{id}.g{generation}"));
            // Out of `videos/` in one step, so no reader sees a generation
            // half deleted.
            std::fs::rename(&directory, &trash).map_err(|e| StoreError::io(&directory, e))?;
            empty_trash(&trash)?;
            tracing::info!(%id, generation, "collected a retired generation");
            collected.push(CollectedGeneration {
                id: id.clone(),
                generation,
            });
        }
        if !collected.is_empty() {
            fsync_dir(&video_dir)?;
        }
        if current.is_none() {
            // Nothing left of a video nobody publishes: drop its directory
            // (only if empty).
            let _ = std::fs::remove_dir(&video_dir);
        }
        Ok(collected)
    }
}

/// Deletes something moved into `trash/`. Another process's collection
/// may be deleting it too (it empties the trash at start), so what is
/// already gone is not an error.
pub(super) fn empty_trash(path: &Path) -> Result<(), StoreError> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StoreError::io(path, e)),
        _ => Ok(()),
    }
}
