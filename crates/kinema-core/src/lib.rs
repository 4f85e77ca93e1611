//! Domain types of kinema: what a published video is.
//!
//! This crate is pure data: it does no I/O, spawns nothing and knows no async
//! runtime, so every other crate can depend on it and its rules are unit-tested
//! as plain functions.

pub mod bitrate;
pub mod ladder;
pub mod manifest;
pub mod path;

pub use bitrate::Bitrate;
pub use manifest::{
    AccessPolicy, FileEntry, MANIFEST_FILE, MANIFEST_FORMAT_VERSION, Manifest, ManifestError,
    Rendition, RenditionKind,
};
pub use path::{ObjectPath, PathError, VideoId};
