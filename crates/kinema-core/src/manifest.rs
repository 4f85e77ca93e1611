//! The published-video manifest: `videos/{id}/manifest.json`.
//!
//! The manifest is the catalogue entry of a video and the list of everything
//! that may be served for it. It is written last at publish time, so a video
//! exists exactly when its manifest exists, and only files it lists (with their
//! size and SHA-256) are ever served. Each publish is a new *generation* of the
//! video, whose files live under their own `g{N}/` prefix, so a cache can never
//! mix two publishes of one id. The format carries a version number; readers
//! refuse versions they do not know instead of guessing.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::path::{ObjectPath, PathError, VideoId};

/// File name of the manifest inside a video's directory or prefix.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The manifest format this build reads and writes.
/// Format 2 added `generation`; format 1 videos were laid out without
/// generations and must be ingested again.
pub const MANIFEST_FORMAT_VERSION: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON for format {MANIFEST_FORMAT_VERSION}: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "manifest format version {found} is not supported (this build reads {MANIFEST_FORMAT_VERSION}); unpublish the video and ingest it again"
    )]
    UnsupportedVersion { found: u32 },
    #[error("manifest generation is 0; generations start at 1")]
    ZeroGeneration,
    #[error("manifest lists {0:?} twice")]
    DuplicateFile(String),
    #[error("manifest lists {0:?}, but the manifest itself is never a listed file")]
    ListsItself(String),
    #[error("file {path:?} has checksum {sha256:?}; expected 64 lowercase hex digits")]
    BadChecksum { path: String, sha256: String },
    #[error("rendition id {0:?} must be one path component of [A-Za-z0-9_-]")]
    BadRenditionId(String),
    #[error("rendition id {0:?} appears twice")]
    DuplicateRendition(String),
    #[error(transparent)]
    Path(#[from] PathError),
}

/// Who may watch a video.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessPolicy {
    /// Anyone with the URL.
    #[default]
    Public,
    /// Only requests carrying a valid signed-URL token scoped to the video.
    Signed,
}

impl AccessPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessPolicy::Public => "public",
            AccessPolicy::Signed => "signed",
        }
    }
}

impl std::str::FromStr for AccessPolicy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "public" => Ok(AccessPolicy::Public),
            "signed" => Ok(AccessPolicy::Signed),
            other => Err(format!(
                "access policy {other:?} is neither \"public\" nor \"signed\""
            )),
        }
    }
}

impl std::fmt::Display for AccessPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RenditionKind {
    Video,
    Audio,
}

/// One quality of a video: its own init segment, media segments and playlist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rendition {
    /// Directory name of the rendition inside the video (`v360`, `a64`).
    pub id: String,
    pub kind: RenditionKind,
    /// RFC 6381 codec string, e.g. `avc1.64001e` or `mp4a.40.2`.
    pub codecs: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame_rate: Option<f64>,
    /// Average bit rate over the whole rendition, bits per second.
    pub bitrate: u64,
    /// Highest bit rate of any one segment, bits per second.
    pub peak_bitrate: u64,
    /// Number of media segments (`1.m4s` ..= `{segments}.m4s`).
    pub segments: u32,
}

/// One file of a published video.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: ObjectPath,
    pub size: u64,
    /// SHA-256 of the content, lowercase hex.
    pub sha256: String,
}

impl FileEntry {
    /// A strong entity tag (RFC 9110 §8.8.3) derived from the content
    /// checksum: equal tags mean byte-identical content.
    pub fn etag(&self) -> String {
        format!("\"{}\"", &self.sha256[..32])
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub id: VideoId,
    /// Which publish of `id` this is: chosen when packaging starts (Unix
    /// milliseconds), so it grows with every publish, even one after the id
    /// was deleted, and a newer publish is never taken for an older one.
    /// Every media URL a player follows carries it (`g{N}/…`).
    pub generation: u64,
    pub title: String,
    pub duration_seconds: f64,
    /// Nominal segment duration the ladder was cut at, seconds.
    pub segment_duration_seconds: f64,
    /// Seconds since the Unix epoch at publish time; also the files'
    /// `Last-Modified`, since published files never change.
    pub published_at_unix: u64,
    #[serde(default)]
    pub access: AccessPolicy,
    pub renditions: Vec<Rendition>,
    pub files: Vec<FileEntry>,
}

impl Manifest {
    /// Parses and validates a manifest as read from a store.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ManifestError> {
        #[derive(Deserialize)]
        struct VersionOnly {
            format_version: u32,
        }
        let version: VersionOnly = serde_json::from_slice(bytes)?;
        if version.format_version != MANIFEST_FORMAT_VERSION {
            return Err(ManifestError::UnsupportedVersion {
                found: version.format_version,
            });
        }
        let manifest: Manifest = serde_json::from_slice(bytes)?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// Serialises for publishing (validated first, so nothing invalid is
    /// ever written).
    pub fn to_json(&self) -> Result<Vec<u8>, ManifestError> {
        self.validate()?;
        Ok(serde_json::to_vec_pretty(self)?)
    }

    pub fn validate(&self) -> Result<(), ManifestError> {
        if self.format_version != MANIFEST_FORMAT_VERSION {
            return Err(ManifestError::UnsupportedVersion {
                found: self.format_version,
            });
        }
        if self.generation == 0 {
            return Err(ManifestError::ZeroGeneration);
        }
        let mut seen = HashSet::new();
        for file in &self.files {
            if file.path.as_str() == MANIFEST_FILE {
                return Err(ManifestError::ListsItself(MANIFEST_FILE.into()));
            }
            if !seen.insert(file.path.as_str()) {
                return Err(ManifestError::DuplicateFile(file.path.to_string()));
            }
            let hex_ok = file.sha256.len() == 64
                && file
                    .sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if !hex_ok {
                return Err(ManifestError::BadChecksum {
                    path: file.path.to_string(),
                    sha256: file.sha256.clone(),
                });
            }
        }
        let mut rendition_ids = HashSet::new();
        for rendition in &self.renditions {
            let valid = !rendition.id.is_empty()
                && rendition.id.len() <= 32
                && rendition
                    .id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid {
                return Err(ManifestError::BadRenditionId(rendition.id.clone()));
            }
            if !rendition_ids.insert(rendition.id.as_str()) {
                return Err(ManifestError::DuplicateRendition(rendition.id.clone()));
            }
        }
        Ok(())
    }

    /// The entry for a path, if the video has such a file.
    pub fn file(&self, path: &ObjectPath) -> Option<&FileEntry> {
        self.files.iter().find(|file| &file.path == path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            format_version: MANIFEST_FORMAT_VERSION,
            id: VideoId::new("clip").unwrap(),
            generation: 1_700_000_000_000,
            title: "Clip".into(),
            duration_seconds: 4.0,
            segment_duration_seconds: 4.0,
            published_at_unix: 1_700_000_000,
            access: AccessPolicy::Public,
            renditions: vec![Rendition {
                id: "v240".into(),
                kind: RenditionKind::Video,
                codecs: "avc1.64000d".into(),
                width: Some(426),
                height: Some(240),
                frame_rate: Some(25.0),
                bitrate: 300_000,
                peak_bitrate: 350_000,
                segments: 1,
            }],
            files: vec![FileEntry {
                path: ObjectPath::new("v240/1.m4s").unwrap(),
                size: 10,
                sha256: "ab".repeat(32),
            }],
        }
    }

    #[test]
    fn times_and_rates_survive_a_publish_exactly() {
        // serde_json's default float parsing may land one unit in the last
        // place away from what it wrote, so a published manifest read back
        // was not the manifest published.
        let mut manifest = sample();
        manifest.duration_seconds = 3.0000000000000002e69;
        manifest.segment_duration_seconds = 7.444444444444443e90;
        manifest.renditions[0].frame_rate = Some(2.6666666666666657e103);
        let read_back = Manifest::from_json(&manifest.to_json().unwrap()).unwrap();
        assert_eq!(read_back, manifest);
    }

    #[test]
    fn round_trips_through_json() {
        let manifest = sample();
        let json = manifest.to_json().unwrap();
        assert_eq!(Manifest::from_json(&json).unwrap(), manifest);
    }

    #[test]
    fn refuses_unknown_format_version() {
        let json = br#"{"format_version": 3, "anything": true}"#;
        assert!(matches!(
            Manifest::from_json(json),
            Err(ManifestError::UnsupportedVersion { found: 3 })
        ));
    }

    #[test]
    fn a_manifest_from_before_generations_says_to_ingest_again() {
        let mut json: serde_json::Value =
            serde_json::from_slice(&sample().to_json().unwrap()).unwrap();
        json["format_version"] = 1.into();
        json.as_object_mut().unwrap().remove("generation");
        let error = Manifest::from_json(&serde_json::to_vec(&json).unwrap()).unwrap_err();
        assert!(matches!(
            error,
            ManifestError::UnsupportedVersion { found: 1 }
        ));
        assert!(error.to_string().contains("ingest it again"), "{error}");
    }

    #[test]
    fn generation_zero_is_refused() {
        let mut manifest = sample();
        manifest.generation = 0;
        assert!(matches!(
            manifest.validate(),
            Err(ManifestError::ZeroGeneration)
        ));
    }

    #[test]
    fn refuses_escaping_paths_and_bad_checksums() {
        let mut json = String::from_utf8(sample().to_json().unwrap()).unwrap();
        json = json.replace("v240/1.m4s", "../1.m4s");
        assert!(matches!(
            Manifest::from_json(json.as_bytes()),
            Err(ManifestError::Json(_))
        ));

        let mut manifest = sample();
        manifest.files[0].sha256 = "XY".repeat(32);
        assert!(matches!(
            manifest.validate(),
            Err(ManifestError::BadChecksum { .. })
        ));

        let mut manifest = sample();
        manifest.files.push(manifest.files[0].clone());
        assert!(matches!(
            manifest.validate(),
            Err(ManifestError::DuplicateFile(_))
        ));
    }

    #[test]
    fn access_policy_parses_its_two_names_only() {
        assert_eq!("signed".parse::<AccessPolicy>(), Ok(AccessPolicy::Signed));
        assert_eq!("public".parse::<AccessPolicy>(), Ok(AccessPolicy::Public));
        let error = "Signed".parse::<AccessPolicy>().unwrap_err();
        assert!(error.contains("\"Signed\""), "{error}");
    }

    #[test]
    fn etag_is_strong_and_checksum_derived() {
        let manifest = sample();
        assert_eq!(manifest.files[0].etag(), format!("\"{}\"", "ab".repeat(16)));
    }
}
