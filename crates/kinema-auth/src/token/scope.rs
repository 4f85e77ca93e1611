//! A token's scope: the one path, or the path prefix, it opens, and the
//! clean-path rule every scope and every request path must follow. Nothing
//! here decodes or verifies a token.

use std::fmt;

use kinema_core::VideoId;

use super::{ClaimsError, MAX_SCOPE_LEN};

/// Longest request path checked against a scope.
const MAX_PATH_LEN: usize = 2048;

/// What a token grants access to: one exact path, or — when it ends with
/// `/` — every clean path below it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenScope(pub(super) String);

impl TokenScope {
    pub fn new(scope: impl Into<String>) -> Result<Self, ClaimsError> {
        let scope = scope.into();
        let valid = scope.len() <= MAX_SCOPE_LEN
            && match scope.strip_suffix('/') {
                // "/" alone covers the whole server.
                Some("") => true,
                Some(prefix) => is_clean_path(prefix),
                None => is_clean_path(&scope),
            };
        if valid {
            Ok(Self(scope))
        } else {
            Err(ClaimsError::BadScope(scope))
        }
    }

    /// Every file of one video: `/v/{id}/`.
    pub fn video(id: &VideoId) -> Self {
        Self(format!("/v/{id}/"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether a request path (already checked to be clean) lies in scope.
    pub(super) fn covers(&self, path: &str) -> bool {
        if self.0.ends_with('/') {
            path.starts_with(self.0.as_str())
        } else {
            path == self.0
        }
    }
}

impl fmt::Display for TokenScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Bytes a path segment may contain: RFC 3986 unreserved characters. Video
/// ids and object paths use a subset, so no legitimate request is refused.
fn is_segment_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~')
}

/// An absolute path whose segments are all non-empty, not `.` or `..`, and
/// made of unreserved bytes only (so nothing is percent-encoded).
pub(super) fn is_clean_path(path: &str) -> bool {
    let Some(relative) = path.strip_prefix('/') else {
        return false;
    };
    path.len() <= MAX_PATH_LEN
        && relative.split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment.bytes().all(is_segment_byte)
        })
}
