//! Republishing on the local backend: a new generation assembled in
//! `staging/` from hard links to the old generation's files (a copy where
//! the file system refuses a link) and the replaced contents, then
//! published as any staged generation is.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kinema_core::{Manifest, ObjectPath};

use super::LocalStore;
use super::read::{OpenFailure, open_no_follow};
use crate::{StoreError, layout};

impl LocalStore {
    /// The blocking half of `republish`.
    pub(super) fn republish_blocking(
        &self,
        manifest: &Manifest,
        json: &[u8],
        from: u64,
        replaced: &[(ObjectPath, Bytes)],
    ) -> Result<(), StoreError> {
        let from_manifest = self.generation_manifest(&manifest.id, from)?;
        crate::check_republish(manifest, &from_manifest, replaced)?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let staged = self.staging_root().join(format!(
            "republish-{}-{}-{nanos}",
            manifest.id,
            std::process::id()
        ));
        let result = self
            .stage_copy(manifest, from, replaced, &staged)
            .and_then(|()| self.publish_blocking(manifest, json, &staged));
        if result.is_err() {
            // Gone already when the publish got as far as its rename.
            let _ = std::fs::remove_dir_all(&staged);
        }
        result
    }

    /// Lays out generation `manifest.generation` in `staged`: each replaced
    /// file written, every other one linked to generation `from`'s.
    fn stage_copy(
        &self,
        manifest: &Manifest,
        from: u64,
        replaced: &[(ObjectPath, Bytes)],
        staged: &Path,
    ) -> Result<(), StoreError> {
        std::fs::create_dir(staged).map_err(|e| StoreError::io(staged, e))?;
        for entry in &manifest.files {
            let target = staged.join(entry.path.as_str());
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(|e| StoreError::io(parent, e))?;
            }
            if let Some((_, bytes)) = replaced.iter().find(|(path, _)| path == &entry.path) {
                std::fs::write(&target, bytes).map_err(|e| StoreError::io(&target, e))?;
                continue;
            }
            self.link_or_copy(manifest, from, &entry.path, &target)?;
        }
        Ok(())
    }

    /// Links `target` to `path` of generation `from`, which is opened first
    /// without following links (so a link planted in the library is never
    /// taken for a file); copies it where the file system has no hard links.
    fn link_or_copy(
        &self,
        manifest: &Manifest,
        from: u64,
        path: &ObjectPath,
        target: &Path,
    ) -> Result<(), StoreError> {
        let generation_dir = layout::generation_dir(from);
        let mut components = vec![manifest.id.as_str(), generation_dir.as_str()];
        components.extend(path.as_str().split('/'));
        let mut source_file =
            open_no_follow(&self.videos(), &components).map_err(|failure| match failure {
                OpenFailure::Missing(_) => StoreError::ObjectNotFound {
                    id: manifest.id.clone(),
                    path: path.clone(),
                },
                OpenFailure::Io(at, e) => StoreError::io(at, e),
            })?;
        let source = self.local_path(&layout::object_key(&manifest.id, from, path));
        if std::fs::hard_link(&source, target).is_ok() {
            return Ok(());
        }
        let mut copy = std::fs::File::create(target).map_err(|e| StoreError::io(target, e))?;
        std::io::copy(&mut source_file, &mut copy).map_err(|e| StoreError::io(target, e))?;
        Ok(())
    }
}
