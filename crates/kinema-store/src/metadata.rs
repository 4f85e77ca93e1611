//! A video's editable metadata: a title and a description changed after
//! publish without publishing its media again (a generation's files never
//! change). One small JSON object beside the current manifest,
//! `videos/{id}/metadata.json` ([`crate::layout::metadata_key`]), written
//! whole; it goes with the video when it is unpublished.
//!
//! The manifest keeps the title the media were published with. An edited
//! title names the generation it was edited on and wins over the manifest's
//! until a newer generation is published with a title of its own; the
//! description has no place in a manifest and stays until edited. This
//! module holds the type and its bounds; it does no I/O.

use kinema_core::Manifest;
use serde::{Deserialize, Serialize};

/// The object's name inside `videos/{id}/`.
pub const METADATA_FILE: &str = "metadata.json";
/// Longest title, characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest description, characters.
pub const MAX_DESCRIPTION_CHARS: usize = 5_000;
/// Largest metadata object read, bytes: 5,200 characters of up to four
/// UTF-8 bytes each, JSON-escaped, fit well below it.
pub const MAX_METADATA_BYTES: usize = 64 * 1024;

/// What can be edited of a published video.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoMetadata {
    /// A title set after publish; `None`: the manifest's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default)]
    pub description: String,
    /// The generation that was current when `title` was set.
    #[serde(default)]
    pub generation: u64,
}

impl VideoMetadata {
    /// The title to show for `manifest`: the edited one unless a newer
    /// generation was published since the edit.
    pub fn title<'a>(&'a self, manifest: &'a Manifest) -> &'a str {
        match &self.title {
            Some(title) if self.generation >= manifest.generation => title,
            _ => &manifest.title,
        }
    }

    /// Refuses a title or description out of bounds, with a sentence
    /// saying which and what is allowed.
    pub fn check(&self) -> Result<(), String> {
        if let Some(title) = &self.title {
            check_title(title)?;
        }
        check_description(&self.description)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("plain strings and numbers serialize")
    }

    /// Parses and checks a stored object.
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() > MAX_METADATA_BYTES {
            return Err(format!(
                "{} bytes, more than the {MAX_METADATA_BYTES} a metadata object may have",
                bytes.len()
            ));
        }
        let metadata: Self = serde_json::from_slice(bytes).map_err(|error| error.to_string())?;
        metadata.check()?;
        Ok(metadata)
    }
}

/// A title: 1 to [`MAX_TITLE_CHARS`] characters, not only spaces, no
/// control characters.
pub fn check_title(title: &str) -> Result<(), String> {
    if title.trim().is_empty() {
        return Err("the title is empty; give the video a title".into());
    }
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(format!(
            "the title is longer than {MAX_TITLE_CHARS} characters"
        ));
    }
    if title.chars().any(char::is_control) {
        return Err("the title contains a control character (a line break, a tab)".into());
    }
    Ok(())
}

/// A description: at most [`MAX_DESCRIPTION_CHARS`] characters; line
/// breaks and tabs are its only control characters.
pub fn check_description(description: &str) -> Result<(), String> {
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(format!(
            "the description is longer than {MAX_DESCRIPTION_CHARS} characters"
        ));
    }
    if description
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err("the description contains a control character".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        assert!(check_title(&"é".repeat(200)).is_ok());
        assert_eq!(
            check_title(&"é".repeat(201)).unwrap_err(),
            "the title is longer than 200 characters"
        );
        assert!(check_title("  ").unwrap_err().contains("empty"));
        assert!(check_title("a\nb").unwrap_err().contains("control"));
        assert!(check_description(&"x".repeat(5_000)).is_ok());
        assert!(check_description("line\nline\ttab").is_ok());
        assert_eq!(
            check_description(&"x".repeat(5_001)).unwrap_err(),
            "the description is longer than 5000 characters"
        );
        assert!(check_description("bell\u{7}").is_err());
    }

    #[test]
    fn stored_objects_are_checked() {
        let metadata = VideoMetadata {
            title: Some("Edited".into()),
            description: "About it".into(),
            generation: 7,
        };
        assert_eq!(
            String::from_utf8(metadata.to_json()).unwrap(),
            r#"{"title":"Edited","description":"About it","generation":7}"#
        );
        assert_eq!(
            VideoMetadata::from_json(&metadata.to_json()).unwrap(),
            metadata
        );
        assert!(VideoMetadata::from_json(br#"{"title":""}"#).is_err());
        assert!(VideoMetadata::from_json(br#"{"owner":"x"}"#).is_err());
        assert!(VideoMetadata::from_json(&vec![b' '; 70_000]).is_err());
        assert_eq!(
            VideoMetadata::from_json(b"{}").unwrap(),
            VideoMetadata::default()
        );
    }
}
