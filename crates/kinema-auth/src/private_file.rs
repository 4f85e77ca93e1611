//! Files that hold secrets (the key ring) or the power to grant access (the
//! admin token hashes): created with mode 0600, replaced atomically, and
//! refused when anyone but the owner can read or write them.
//!
//! Refusing a too-open file rather than fixing its mode is deliberate: a key
//! that others could read may already be leaked, and the operator has to know.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Permission bits that must be clear on a private file: every group and
/// other bit.
const GROUP_AND_OTHER_BITS: u32 = 0o077;

/// Longest private file read; both files hold at most a few hundred entries.
const MAX_PRIVATE_FILE_LEN: u64 = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PrivateFileError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error(
        "{} has mode {mode:04o}, so users other than its owner can access it; \
         run `chmod 600 {}` (and consider its keys leaked if others could read them)",
        path.display(),
        path.display()
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("{} is not a regular file", path.display())]
    NotAFile { path: PathBuf },
    #[error("{} is larger than {MAX_PRIVATE_FILE_LEN} bytes", path.display())]
    TooLarge { path: PathBuf },
}

/// Reads a private file, or `None` when it does not exist.
pub(crate) fn read_private(path: &Path) -> Result<Option<String>, PrivateFileError> {
    let read_error = |source| PrivateFileError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = match fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(read_error(error)),
    };
    // Check the file that was opened, not the path again, so a swap between
    // the check and the read cannot slip a different file in.
    let metadata = file.metadata().map_err(read_error)?;
    if !metadata.is_file() {
        return Err(PrivateFileError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let mode = metadata.mode() & 0o7777;
    if mode & GROUP_AND_OTHER_BITS != 0 {
        return Err(PrivateFileError::TooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    if metadata.len() > MAX_PRIVATE_FILE_LEN {
        return Err(PrivateFileError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(read_error)?;
    Ok(Some(text))
}

/// Replaces (or creates) a private file atomically: the new contents go to a
/// temporary file created with mode 0600 in the same directory, are synced,
/// and renamed over the old one, so a crash leaves either the old or the new
/// file, never half of one, and the secret is never readable by others even
/// for an instant.
pub(crate) fn write_private(path: &Path, contents: &str) -> Result<(), PrivateFileError> {
    let write_error = |source| PrivateFileError::Write {
        path: path.to_path_buf(),
        source,
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| write_error(io::Error::other("path has no file name")))?;
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut temporary_name = file_name.to_os_string();
    temporary_name.push(format!(".tmp-{}", std::process::id()));
    let temporary = directory.join(temporary_name);
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
        fs::rename(&temporary, path)?;
        // Make the rename itself durable.
        fs::File::open(&directory)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    result.map_err(write_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn written_files_are_owner_only_and_read_back() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("secret.toml");
        write_private(&path, "one").unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        write_private(&path, "two").unwrap();
        assert_eq!(read_private(&path).unwrap().as_deref(), Some("two"));
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(directory.path()).unwrap().count(), 1);
    }

    #[test]
    fn missing_file_is_none() {
        let directory = tempfile::tempdir().unwrap();
        assert!(
            read_private(&directory.path().join("absent"))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn group_or_world_access_is_refused_with_the_fix() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("keys.toml");
        for mode in [0o640, 0o604, 0o660, 0o644, 0o602, 0o620] {
            fs::write(&path, "x").unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let error = read_private(&path).unwrap_err();
            assert!(
                matches!(error, PrivateFileError::TooOpen { mode: found, .. } if found == mode),
                "{error}"
            );
            assert!(error.to_string().contains("chmod 600"), "{error}");
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(read_private(&path).unwrap().as_deref(), Some("x"));
    }

    #[test]
    fn a_directory_is_not_a_private_file() {
        let directory = tempfile::tempdir().unwrap();
        let inner = directory.path().join("inner");
        fs::create_dir(&inner).unwrap();
        fs::set_permissions(&inner, fs::Permissions::from_mode(0o700)).unwrap();
        assert!(matches!(
            read_private(&inner),
            Err(PrivateFileError::NotAFile { .. })
        ));
    }
}
