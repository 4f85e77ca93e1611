//! What the S3 tests share: a real s3s-fs with a bucket, a store on it,
//! staged videos and their manifests, and what s3s-fs holds on disk.

#![allow(
    dead_code,
    reason = "each test binary uses its own part of these helpers"
)]

use std::path::{Path, PathBuf};

use kinema_core::{AccessPolicy, MANIFEST_FORMAT_VERSION, Manifest, ObjectPath, VideoId};
use kinema_store::s3::{S3Config, S3Credentials, S3Location};
use kinema_store::{S3Store, StoreOptions, describe_files, layout};
use kinema_test_support::S3Server;

pub const BUCKET: &str = "media";
pub const PREFIX: &str = "kinema/lib";

pub fn id(name: &str) -> VideoId {
    VideoId::new(name).unwrap()
}

pub fn object(path: &str) -> ObjectPath {
    ObjectPath::new(path).unwrap()
}

pub fn config(server: &S3Server, library: &str) -> S3Config {
    S3Config {
        endpoint: Some(server.endpoint()),
        region: Some("us-east-1".into()),
        credentials: Some(S3Credentials::new(
            server.access_key(),
            server.secret_key(),
            None,
        )),
        ..S3Config::new(S3Location::parse(library).unwrap())
    }
}

/// A server with the bucket, and a store on `s3://media/kinema/lib`.
pub async fn start() -> (S3Server, S3Store) {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let store = S3Store::open(
        config(&server, &format!("s3://{BUCKET}/{PREFIX}")),
        StoreOptions::default(),
    )
    .await
    .unwrap();
    (server, store)
}

pub fn now_ms() -> u64 {
    layout::unix_millis(std::time::SystemTime::now())
}

/// Stages `files` (path, bytes) in a new directory under `root`.
pub fn stage(root: &Path, files: &[(&str, &[u8])]) -> PathBuf {
    let staged = tempfile::Builder::new()
        .prefix("staged-")
        .tempdir_in(root)
        .unwrap()
        .keep();
    for (path, bytes) in files {
        let path = staged.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    staged
}

pub async fn manifest_for(name: &str, generation: u64, staged: &Path) -> Manifest {
    Manifest {
        format_version: MANIFEST_FORMAT_VERSION,
        id: id(name),
        generation,
        title: name.into(),
        duration_seconds: 4.0,
        segment_duration_seconds: 4.0,
        published_at_unix: 1,
        access: AccessPolicy::Public,
        renditions: vec![],
        files: describe_files(staged).await.unwrap(),
    }
}

/// Deterministic bytes that no part boundary can hide a shift in.
pub fn pattern(length: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    (0..length)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Every object file s3s-fs holds for the library, relative to its prefix
/// (s3s-fs keeps one file per key under the bucket's directory).
pub fn stored_keys(server: &S3Server) -> Vec<String> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, base, out);
            } else {
                out.push(
                    path.strip_prefix(base)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    let base = server.bucket_dir(BUCKET).join(PREFIX);
    let mut keys = Vec::new();
    walk(&base, &base, &mut keys);
    keys.retain(|key| key.starts_with("videos/"));
    keys.sort();
    keys
}
