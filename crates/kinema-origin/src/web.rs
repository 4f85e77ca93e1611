//! The web UI's static files, served at `/` (its `index.html`) and
//! `/ui/{file}`.
//!
//! The directory is read once at startup into memory: only the files found
//! then can be served, so no request path ever reaches the file system and
//! a traversal attempt is just a failed table lookup. Symbolic links and
//! names outside `[A-Za-z0-9._-]` are skipped. A missing directory leaves
//! the UI routes answering 404 (with a warning at startup), so the origin
//! still serves media without a built UI.

use std::collections::HashMap;
use std::path::Path;

use bytes::Bytes;
use http::HeaderValue;
use sha2::{Digest, Sha256};

/// Most bytes of UI loaded into memory; a larger tree is a mistake (a
/// `web_root` pointing at a video library, say), refused at startup.
const MAX_TOTAL_BYTES: u64 = 256 * 1024 * 1024;
const MAX_FILES: usize = 10_000;

#[derive(Debug, Clone)]
pub struct WebFile {
    pub content: Bytes,
    pub content_type: HeaderValue,
    pub etag: HeaderValue,
}

#[derive(Debug, Default)]
pub struct WebRoot {
    /// Keyed by path relative to the root, `/`-separated (`index.html`,
    /// `vendor/hls.min.js`).
    files: HashMap<String, WebFile>,
}

#[derive(Debug, thiserror::Error)]
pub enum WebRootError {
    #[error("web_root {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "web_root {0} holds more than {MAX_FILES} files or {MAX_TOTAL_BYTES} bytes; point web_root at the built UI (web/dist)"
    )]
    TooLarge(String),
}

impl WebRoot {
    /// Reads every regular file under `root` (blocking; call at startup
    /// from the blocking pool).
    pub fn load(root: &Path) -> Result<Self, WebRootError> {
        let mut web = Self::default();
        match std::fs::symlink_metadata(root) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) | Err(_) => {
                tracing::warn!(
                    web_root = %root.display(),
                    "web UI directory not found; / and /ui/ will answer 404 (build it with `npm run build` in web/ or set web_root)"
                );
                return Ok(web);
            }
        }
        let mut total = 0u64;
        web.walk(root, root, &mut total)?;
        tracing::info!(web_root = %root.display(), files = web.files.len(), bytes = total, "web UI loaded");
        Ok(web)
    }

    fn walk(&mut self, root: &Path, dir: &Path, total: &mut u64) -> Result<(), WebRootError> {
        let io = |path: &Path, source| WebRootError::Io {
            path: path.display().to_string(),
            source,
        };
        for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
            let entry = entry.map_err(|e| io(dir, e))?;
            let path = entry.path();
            let name = entry.file_name();
            let valid_name = name.to_str().is_some_and(|name| {
                !name.starts_with('.')
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            });
            // symlink_metadata: a link is neither a file nor a directory
            // here, so it is never followed.
            let file_type = entry.file_type().map_err(|e| io(&path, e))?;
            if !valid_name || file_type.is_symlink() {
                continue;
            }
            if file_type.is_dir() {
                self.walk(root, &path, total)?;
            } else if file_type.is_file() {
                let content = std::fs::read(&path).map_err(|e| io(&path, e))?;
                *total += content.len() as u64;
                if *total > MAX_TOTAL_BYTES || self.files.len() >= MAX_FILES {
                    return Err(WebRootError::TooLarge(root.display().to_string()));
                }
                let relative = path
                    .strip_prefix(root)
                    .map(|relative| relative.to_string_lossy().replace('\\', "/"))
                    .unwrap_or_default();
                let digest = Sha256::digest(&content);
                let etag = format!("\"{}\"", hex::encode(&digest[..16]));
                let file = WebFile {
                    content_type: HeaderValue::from_static(kinema_http::content_type::for_path(
                        &relative,
                    )),
                    etag: HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"\"")),
                    content: Bytes::from(content),
                };
                self.files.insert(relative, file);
            }
        }
        Ok(())
    }

    /// The file at a decoded path relative to the root.
    pub fn file(&self, path: &str) -> Option<&WebFile> {
        self.files.get(path)
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_files_skips_links_and_odd_names() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"secret").unwrap();
        std::fs::create_dir(root.path().join("vendor")).unwrap();
        std::fs::write(root.path().join("index.html"), b"<html>").unwrap();
        std::fs::write(root.path().join("vendor/hls.js"), b"x").unwrap();
        std::fs::write(root.path().join(".hidden"), b"h").unwrap();
        std::fs::write(root.path().join("with space.js"), b"s").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), root.path().join("link"))
            .unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("dir")).unwrap();
        let web = WebRoot::load(root.path()).unwrap();
        assert_eq!(
            web.file("index.html").unwrap().content_type,
            "text/html; charset=utf-8"
        );
        assert_eq!(&web.file("vendor/hls.js").unwrap().content[..], b"x");
        for absent in [
            ".hidden",
            "with space.js",
            "link",
            "dir/secret",
            "../secret",
        ] {
            assert!(web.file(absent).is_none(), "{absent}");
        }
    }

    #[test]
    fn missing_directory_serves_nothing() {
        let web = WebRoot::load(Path::new("/nonexistent/kinema/web")).unwrap();
        assert!(web.is_empty());
    }
}
