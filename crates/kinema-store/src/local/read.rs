//! Reads of the local backend: opening a library path without following
//! symbolic links in any component, so a link planted in the library cannot
//! expose a file outside it; a generation's objects, whole or by range; and
//! the manifests (the current one, or one generation's copy), parsed.

use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use kinema_core::{MANIFEST_FILE, Manifest, ObjectPath, VideoId};

use super::LocalStore;
use crate::{StoreError, layout};

/// Why a path could not be opened without following links.
pub(super) enum OpenFailure {
    /// The component at this index (0 = the first) is missing, or is not
    /// what it must be (a directory before the last, a regular file last).
    Missing(usize),
    Io(PathBuf, std::io::Error),
}

/// Opens `base/components…` for reading without following a symbolic link in
/// any component: a link is reported as missing, like anything that is not a
/// directory (before the last) or a regular file (the last).
pub(super) fn open_no_follow(
    base: &Path,
    components: &[&str],
) -> Result<std::fs::File, OpenFailure> {
    let (file_name, directories) = components
        .split_last()
        .expect("a path to open has at least one component");
    let mut current = base.to_path_buf();
    for (index, directory) in directories.iter().enumerate() {
        current.push(directory);
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(OpenFailure::Missing(index)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(OpenFailure::Missing(index));
            }
            Err(e) => return Err(OpenFailure::Io(current, e)),
        }
    }
    current.push(file_name);
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&current);
    let last = directories.len();
    match opened {
        Ok(file) => match file.metadata() {
            Ok(meta) if meta.is_file() => Ok(file),
            Ok(_) => Err(OpenFailure::Missing(last)),
            Err(e) => Err(OpenFailure::Io(current, e)),
        },
        // ELOOP is what O_NOFOLLOW answers for a symbolic link.
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                || e.raw_os_error() == Some(libc::ELOOP) =>
        {
            Err(OpenFailure::Missing(last))
        }
        Err(e) => Err(OpenFailure::Io(current, e)),
    }
}

impl LocalStore {
    /// Opens a file of a generation without following symbolic links in any
    /// component below the library's `videos/` directory.
    pub(super) fn open_object(
        &self,
        id: &VideoId,
        generation: u64,
        path: &ObjectPath,
    ) -> Result<std::fs::File, StoreError> {
        let generation_dir = layout::generation_dir(generation);
        let mut components = vec![id.as_str(), generation_dir.as_str()];
        components.extend(path.as_str().split('/'));
        open_no_follow(&self.videos(), &components).map_err(|failure| match failure {
            OpenFailure::Missing(0) => StoreError::VideoNotFound(id.clone()),
            OpenFailure::Missing(1) => StoreError::GenerationNotFound {
                id: id.clone(),
                generation,
            },
            OpenFailure::Missing(_) => StoreError::ObjectNotFound {
                id: id.clone(),
                path: path.clone(),
            },
            OpenFailure::Io(at, e) => StoreError::io(at, e),
        })
    }

    /// Reads and parses a manifest below `videos/` (`components` from the
    /// video's id on), following no link: a linked video directory,
    /// generation directory or manifest is missing, so a link planted in the
    /// library publishes nothing. `missing` names the error for a missing
    /// component at that index.
    fn read_manifest(
        &self,
        id: &VideoId,
        components: &[&str],
        missing: impl Fn(usize) -> StoreError,
    ) -> Result<Manifest, StoreError> {
        let mut file =
            open_no_follow(&self.videos(), components).map_err(|failure| match failure {
                OpenFailure::Missing(index) => missing(index),
                OpenFailure::Io(at, e) => StoreError::io(at, e),
            })?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| StoreError::io(self.videos().join(components.join("/")), e))?;
        Manifest::from_json(&bytes).map_err(|source| StoreError::BadManifest {
            id: id.clone(),
            source,
        })
    }

    pub(super) fn current_manifest(&self, id: &VideoId) -> Result<Manifest, StoreError> {
        self.read_manifest(id, &[id.as_str(), MANIFEST_FILE], |_| {
            StoreError::VideoNotFound(id.clone())
        })
    }

    pub(super) fn generation_manifest(
        &self,
        id: &VideoId,
        generation: u64,
    ) -> Result<Manifest, StoreError> {
        let generation_dir = layout::generation_dir(generation);
        let manifest = self.read_manifest(
            id,
            &[id.as_str(), generation_dir.as_str(), MANIFEST_FILE],
            |index| match index {
                0 => StoreError::VideoNotFound(id.clone()),
                _ => StoreError::GenerationNotFound {
                    id: id.clone(),
                    generation,
                },
            },
        )?;
        if manifest.generation != generation || &manifest.id != id {
            return Err(StoreError::GenerationNotFound {
                id: id.clone(),
                generation,
            });
        }
        Ok(manifest)
    }
}

/// Reads `range` of an open object (all of it when `None`).
pub(super) fn read_range(
    file: &mut std::fs::File,
    path: &ObjectPath,
    range: Option<Range<u64>>,
) -> Result<Bytes, StoreError> {
    let size = file
        .metadata()
        .map_err(|e| StoreError::io(path.as_str(), e))?
        .len();
    let range = range.unwrap_or(0..size);
    if range.start > range.end || range.end > size {
        return Err(StoreError::RangeOutOfBounds {
            path: path.clone(),
            start: range.start,
            end: range.end,
            size,
        });
    }
    let length = usize::try_from(range.end - range.start)
        .map_err(|e| StoreError::io(path.as_str(), std::io::Error::other(e)))?;
    let mut buffer = vec![0u8; length];
    file.seek(SeekFrom::Start(range.start))
        .map_err(|e| StoreError::io(path.as_str(), e))?;
    file.read_exact(&mut buffer)
        .map_err(|e| StoreError::io(path.as_str(), e))?;
    Ok(Bytes::from(buffer))
}
