//! The library settings every subcommand that opens a library shares —
//! `library` (a directory or `s3://bucket/prefix`) and the S3 keys — as
//! flags, `KINEMA_*` variables and keys of the subcommand's section, and
//! the one call that opens the store they name.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{ArgAction, Args};
use kinema_store::{Library, Store, StoreConfig};
use serde::Serialize;

/// `--s3-endpoint`, `--s3-region`, `--s3-path-style`: how to reach an
/// `s3://` library (credentials come from the standard AWS variables).
#[derive(Debug, Default, Args, Serialize)]
pub struct S3Args {
    /// S3 service URL for an s3://bucket/prefix library, e.g.
    /// http://127.0.0.1:9000 (Garage, Ceph RGW, MinIO, s3s-fs) [default:
    /// AWS_ENDPOINT_URL, else AWS S3]
    #[arg(long, env = "KINEMA_S3_ENDPOINT", value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    s3_endpoint: Option<String>,

    /// S3 region [default: AWS_REGION, else us-east-1]
    #[arg(long, env = "KINEMA_S3_REGION", value_name = "REGION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    s3_region: Option<String>,

    /// Path-style S3 requests (endpoint/bucket/key) rather than virtual-host
    /// ones (bucket.endpoint/key) [default: true with --s3-endpoint, false for AWS]
    #[arg(long, env = "KINEMA_S3_PATH_STYLE", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", action = ArgAction::Set)]
    #[serde(skip_serializing_if = "Option::is_none")]
    s3_path_style: Option<bool>,

    /// How long a replaced video's old generation stays servable, so viewers
    /// who loaded its playlists finish; longer than --manifest-max-age plus
    /// a session, e.g. 6h [default: 6h]
    #[arg(long, env = "KINEMA_RETIRED_GRACE", value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    retired_grace: Option<String>,
}

/// The keys of a config section that are the library's, not the service's.
const STORE_KEYS: [&str; 5] = [
    "library",
    "s3_endpoint",
    "s3_region",
    "s3_path_style",
    "retired_grace",
];

/// Takes the library settings out of a resolved `[section]` (flags laid
/// over the file), leaving the service's own keys. `None` when no library
/// is given; S3 keys without a library are an error naming them.
pub fn take_store_config(section: &str, table: &mut toml::Table) -> Result<Option<StoreConfig>> {
    let mut settings = toml::Table::new();
    for key in STORE_KEYS {
        if let Some(value) = table.remove(key) {
            settings.insert(key.to_string(), value);
        }
    }
    if !settings.contains_key("library") {
        if let Some(key) = settings.keys().next() {
            bail!(
                "config [{section}] {key} is set, but no library is: pass --library s3://BUCKET/PREFIX, set KINEMA_LIBRARY or library in [{section}]"
            );
        }
        return Ok(None);
    }
    serde_path_to_error::deserialize(toml::Value::Table(settings))
        .map(Some)
        .map_err(|error| {
            anyhow::anyhow!(
                "config [{section}] {}: {}",
                error.path(),
                error.inner().message()
            )
        })
}

/// The library's settings from the flags alone (`kinema bench library`,
/// which reads no config section).
pub fn from_flags(library: String, s3: &S3Args) -> Result<StoreConfig> {
    let retired_grace = s3
        .retired_grace
        .as_deref()
        .map(humantime::parse_duration)
        .transpose()
        .context("--retired-grace")?;
    Ok(StoreConfig {
        library,
        s3_endpoint: s3.s3_endpoint.clone(),
        s3_region: s3.s3_region.clone(),
        s3_path_style: s3.s3_path_style,
        retired_grace,
    })
}

/// The directory of a local library, `None` for an object store.
pub fn local_directory(config: &StoreConfig) -> Result<Option<PathBuf>> {
    match config.library().context("library")? {
        Library::Directory(path) => Ok(Some(path)),
        Library::S3(_) => Ok(None),
    }
}

/// Opens the library: a directory (created if missing), or an object store
/// contacted once, so a wrong credential, bucket or endpoint stops the
/// command here with the setting to fix.
pub async fn open(config: &StoreConfig) -> Result<Arc<dyn Store>> {
    kinema_store::open(config)
        .await
        .with_context(|| format!("cannot open library {}", config.library))
}

/// Starts the collection the store wants at start ([`Store::collect_retired`]:
/// generations replaced longer than the grace ago, and what crashed
/// publishes left) in the background, logging what it deleted; a failure is
/// logged and left for the next start.
pub fn collect_in_background(store: Arc<dyn Store>) {
    tokio::spawn(async move { kinema_store::collect_retired_logged(store.as_ref()).await });
}

/// Where a file-based step stages a video before publishing it: inside a
/// library directory (the publish is then a rename, on the same file
/// system), or in a temporary directory for an object store (the publish
/// uploads and removes it).
pub fn staging_root(config: &StoreConfig) -> Result<PathBuf> {
    let root = match local_directory(config)? {
        Some(directory) => kinema_store::LocalStore::open(&directory)
            .with_context(|| format!("cannot open library {}", directory.display()))?
            .staging_root(),
        None => std::env::temp_dir().join("kinema-staging"),
    };
    std::fs::create_dir_all(&root)
        .with_context(|| format!("cannot create the staging directory {}", root.display()))?;
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn store_keys_leave_the_section() {
        let mut section = table(
            "library = \"s3://media/lib\"\ns3_endpoint = \"http://127.0.0.1:9000\"\ns3_path_style = false\nlisten = \"127.0.0.1:0\"\n",
        );
        let store = take_store_config("serve", &mut section).unwrap().unwrap();
        assert_eq!(store.library, "s3://media/lib");
        assert_eq!(store.s3_endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(store.s3_path_style, Some(false));
        assert_eq!(section, table("listen = \"127.0.0.1:0\"\n"));

        let mut section = table("listen = \"127.0.0.1:0\"\n");
        assert!(take_store_config("serve", &mut section).unwrap().is_none());

        let mut section = table("s3_region = \"eu-west-1\"\n");
        let error = take_store_config("ingest", &mut section)
            .unwrap_err()
            .to_string();
        assert!(error.contains("[ingest] s3_region"), "{error}");

        // The grace of replaced generations is the library's, for every
        // backend.
        let mut section = table("library = \"./library\"\nretired_grace = \"90m\"\n");
        let store = take_store_config("serve", &mut section).unwrap().unwrap();
        assert_eq!(
            store.options().retired_grace,
            std::time::Duration::from_secs(90 * 60)
        );
        assert!(section.is_empty());

        let mut section = table("library = \"s3://media\"\ns3_path_style = \"yes\"\n");
        let error = take_store_config("serve", &mut section)
            .unwrap_err()
            .to_string();
        assert!(error.contains("s3_path_style"), "{error}");
    }
}
