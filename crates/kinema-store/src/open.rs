//! Opening the store a configuration names: a library directory, or a
//! bucket and prefix in an S3-protocol object store.
//!
//! This is the one place that chooses a backend; everything else holds an
//! `Arc<dyn Store>`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::s3::{S3Config, S3Location, S3Store};
use crate::{LocalStore, Store, StoreError, StoreOptions};

/// The library settings `[serve]` and `[ingest]` share (and their
/// `KINEMA_*` variables and flags).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// A directory (`./library`), or `s3://bucket/prefix`.
    pub library: String,
    /// The S3 service's URL, e.g. `http://127.0.0.1:9000`; unset: AWS S3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_endpoint: Option<String>,
    /// unset: `AWS_REGION` / `AWS_DEFAULT_REGION`, else `us-east-1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_region: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`) instead of virtual-host
    /// (`bucket.endpoint/key`); unset: path style when `s3_endpoint` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_path_style: Option<bool>,
    /// How long a replaced generation stays readable, e.g. `6h`; unset:
    /// [`crate::layout::DEFAULT_RETIRED_GRACE`].
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub retired_grace: Option<Duration>,
}

/// Where a library lives, as [`StoreConfig::library`] names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Library {
    Directory(PathBuf),
    S3(S3Location),
}

impl StoreConfig {
    /// The options these settings give every backend.
    pub fn options(&self) -> StoreOptions {
        StoreOptions {
            retired_grace: self
                .retired_grace
                .unwrap_or(crate::layout::DEFAULT_RETIRED_GRACE),
        }
    }

    /// A library directory with no S3 settings.
    pub fn directory(path: impl Into<PathBuf>) -> Self {
        Self {
            library: path.into().to_string_lossy().into_owned(),
            ..Self::default()
        }
    }

    pub fn library(&self) -> Result<Library, StoreError> {
        let library = self.library.trim();
        if library.is_empty() {
            return Err(StoreError::Config {
                setting: "library".into(),
                message: "is empty; give a directory or s3://bucket/prefix".into(),
            });
        }
        if library.starts_with("s3://") {
            return S3Location::parse(library)
                .map(Library::S3)
                .map_err(|message| StoreError::Config {
                    setting: "library".into(),
                    message,
                });
        }
        if let Some((scheme, _)) = library.split_once("://") {
            return Err(StoreError::Config {
                setting: "library".into(),
                message: format!(
                    "{scheme}:// is not a store kinema knows; give a directory or s3://bucket/prefix"
                ),
            });
        }
        let s3_setting = [
            ("s3_endpoint", self.s3_endpoint.is_some()),
            ("s3_region", self.s3_region.is_some()),
            ("s3_path_style", self.s3_path_style.is_some()),
        ]
        .into_iter()
        .find_map(|(name, set)| set.then_some(name));
        if let Some(setting) = s3_setting {
            return Err(StoreError::Config {
                setting: setting.into(),
                message: format!(
                    "is set, but library {library:?} is a directory; use library = \"s3://bucket/prefix\" or unset {setting}"
                ),
            });
        }
        Ok(Library::Directory(PathBuf::from(library)))
    }
}

/// Opens the library `config` names, with the options it gives.
pub async fn open(config: &StoreConfig) -> Result<Arc<dyn Store>, StoreError> {
    open_with(config, config.options()).await
}

/// Opens the library `config` names. An S3 library is contacted once (a
/// listing of its prefix), so wrong credentials, a missing bucket or an
/// unreachable endpoint fail here with [`StoreError::Config`] naming the
/// setting, before any server starts.
pub async fn open_with(
    config: &StoreConfig,
    options: StoreOptions,
) -> Result<Arc<dyn Store>, StoreError> {
    match config.library()? {
        Library::Directory(path) => Ok(Arc::new(LocalStore::open_with(path, options)?)),
        Library::S3(location) => {
            let s3 = S3Config {
                endpoint: config.s3_endpoint.clone(),
                region: config.s3_region.clone(),
                path_style: config.s3_path_style,
                ..S3Config::new(location)
            };
            Ok(Arc::new(S3Store::open(s3, options).await?))
        }
    }
}

/// The job objects of the library `config` names when it is in S3 (where
/// workers on other machines can reach them); `None` for a directory, whose
/// ingest keeps uploads on its own disk.
pub async fn open_job_objects(
    config: &StoreConfig,
) -> Result<Option<crate::s3::JobObjects>, StoreError> {
    match config.library()? {
        Library::Directory(_) => Ok(None),
        Library::S3(location) => {
            let s3 = S3Config {
                endpoint: config.s3_endpoint.clone(),
                region: config.s3_region.clone(),
                path_style: config.s3_path_style,
                ..S3Config::new(location)
            };
            let store = S3Store::open(s3, config.options()).await?;
            Ok(Some(store.job_objects()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_settings() {
        assert_eq!(
            StoreConfig::directory("./library").library().unwrap(),
            Library::Directory(PathBuf::from("./library"))
        );
        let s3 = StoreConfig {
            library: "s3://media/kinema".into(),
            s3_endpoint: Some("http://127.0.0.1:9000".into()),
            ..StoreConfig::default()
        };
        assert!(
            matches!(s3.library().unwrap(), Library::S3(location) if location.prefix == "kinema")
        );
        let error = StoreConfig {
            library: "./library".into(),
            s3_endpoint: Some("http://127.0.0.1:9000".into()),
            ..StoreConfig::default()
        }
        .library()
        .unwrap_err()
        .to_string();
        assert!(error.starts_with("s3_endpoint"), "{error}");
        let error = StoreConfig::directory("gs://bucket/x")
            .library()
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("library"), "{error}");
    }
}
