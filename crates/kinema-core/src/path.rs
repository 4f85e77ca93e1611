//! Names that reach the file system or an object store: video ids and the
//! relative paths of the files of a video.
//!
//! Both are validated on construction so that a value of these types can never
//! name anything outside its video: no `..`, no absolute paths, no separators
//! other than `/`, no control bytes. Code that holds an `ObjectPath` needs no
//! further checks before joining it to a directory.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest video id accepted.
pub const MAX_VIDEO_ID_LEN: usize = 64;
/// Longest relative object path accepted.
pub const MAX_OBJECT_PATH_LEN: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("video id is empty")]
    EmptyId,
    #[error("video id is longer than {MAX_VIDEO_ID_LEN} characters")]
    IdTooLong,
    #[error("video id {0:?} may only contain a-z, A-Z, 0-9, '-' and '_'")]
    IdCharacters(String),
    #[error("object path is empty")]
    EmptyPath,
    #[error("object path is longer than {MAX_OBJECT_PATH_LEN} characters")]
    PathTooLong,
    #[error(
        "object path {0:?} has an empty, '.' or '..' component or a character outside a-z, A-Z, 0-9, '-', '_', '.'"
    )]
    PathComponent(String),
}

fn is_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'
}

/// The id of a video: 1 to 64 characters of `[A-Za-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VideoId(String);

impl VideoId {
    pub fn new(id: impl Into<String>) -> Result<Self, PathError> {
        let id = id.into();
        if id.is_empty() {
            return Err(PathError::EmptyId);
        }
        if id.len() > MAX_VIDEO_ID_LEN {
            return Err(PathError::IdTooLong);
        }
        if !id.bytes().all(is_name_byte) {
            return Err(PathError::IdCharacters(id));
        }
        Ok(Self(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for VideoId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for VideoId {
    type Err = PathError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl Serialize for VideoId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for VideoId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::new(raw).map_err(serde::de::Error::custom)
    }
}

/// A relative path of a file inside one video, such as `v360/12.m4s`.
///
/// Components are non-empty, are not `.` or `..`, and use only
/// `[A-Za-z0-9._-]`; the separator is `/`. Percent-decoding, if any, happens
/// before construction, so an encoded separator or dot cannot slip through.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectPath(String);

impl ObjectPath {
    pub fn new(path: impl Into<String>) -> Result<Self, PathError> {
        let path = path.into();
        if path.is_empty() {
            return Err(PathError::EmptyPath);
        }
        if path.len() > MAX_OBJECT_PATH_LEN {
            return Err(PathError::PathTooLong);
        }
        let valid = path.split('/').all(|component| {
            !component.is_empty()
                && component != "."
                && component != ".."
                && component.bytes().all(|b| is_name_byte(b) || b == b'.')
        });
        if !valid {
            return Err(PathError::PathComponent(path));
        }
        Ok(Self(path))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The file name extension, without the dot (`m4s` for `v360/12.m4s`).
    pub fn extension(&self) -> Option<&str> {
        let file_name = self.0.rsplit('/').next().unwrap_or(&self.0);
        file_name.rsplit_once('.').map(|(_, ext)| ext)
    }

    /// For a numbered media segment `dir/N.m4s`, the path of segment `N + 1`
    /// (used for prefetch); `None` for any other file.
    pub fn next_segment(&self) -> Option<ObjectPath> {
        let (dir, file_name) = self.0.rsplit_once('/')?;
        let number: u64 = file_name.strip_suffix(".m4s")?.parse().ok()?;
        ObjectPath::new(format!("{dir}/{}.m4s", number.checked_add(1)?)).ok()
    }
}

impl fmt::Display for ObjectPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for ObjectPath {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ObjectPath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::new(raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_ids_accept_plain_names_only() {
        assert!(VideoId::new("big-buck_bunny01").is_ok());
        assert_eq!(VideoId::new(""), Err(PathError::EmptyId));
        assert_eq!(VideoId::new("a".repeat(65)), Err(PathError::IdTooLong));
        for bad in ["..", "a/b", "a.b", "a b", "a\0", "é", "%2e"] {
            assert!(VideoId::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn object_paths_refuse_every_escape() {
        for good in [
            "master.m3u8",
            "v360/init.mp4",
            "v360/12.m4s",
            "thumbs/thumbs.vtt",
        ] {
            assert!(ObjectPath::new(good).is_ok(), "{good:?} refused");
        }
        for bad in [
            "",
            "/etc/passwd",
            "..",
            "../x",
            "a/../b",
            "a/./b",
            "a//b",
            "a/",
            "a\\b",
            "a\0b",
            "%2e%2e/x",
            "a b",
            "a/b\n",
            "\u{2215}x",
        ] {
            assert!(ObjectPath::new(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            ObjectPath::new("a".repeat(256)),
            Err(PathError::PathTooLong)
        );
    }

    #[test]
    fn next_segment_only_for_numbered_segments() {
        let path = ObjectPath::new("v360/9.m4s").unwrap();
        assert_eq!(path.next_segment().unwrap().as_str(), "v360/10.m4s");
        assert_eq!(
            ObjectPath::new("v360/init.mp4").unwrap().next_segment(),
            None
        );
        assert_eq!(ObjectPath::new("master.m3u8").unwrap().next_segment(), None);
        assert_eq!(ObjectPath::new("v360/x.m4s").unwrap().next_segment(), None);
    }

    #[test]
    fn extension_of_last_component() {
        assert_eq!(ObjectPath::new("v.1/seg").unwrap().extension(), None);
        assert_eq!(ObjectPath::new("a/b.m4s").unwrap().extension(), Some("m4s"));
    }
}
