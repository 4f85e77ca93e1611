//! The edge's disk tier: kinema-http's [`kinema_http::disk_tier`] (one file
//! per stored response under a directory, an index in memory, LRU eviction
//! to a byte budget, atomic writes, a rescan at start, a soft purge that
//! survives a restart) holding stored responses: each file's metadata is
//! the response's status, headers, exchange times and Vary values, under
//! its URL as the key.
//!
//! Every method that touches a file blocks: callers run it on tokio's
//! blocking pool.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use kinema_http::disk_tier::{self, DiskTierEvents, Find};
use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;
use crate::stored::StoredResponse;

/// What the edge's files start with (the origin's differ, so neither takes
/// the other's files for its own).
const MAGIC: [u8; 8] = *b"KNMEDGE1";

/// A stored response's metadata; the key and body length are the tier's.
#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    secondary_key: Vec<(String, Option<String>)>,
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    request_time_ms: u64,
    response_time_ms: u64,
}

impl disk_tier::Metadata for Meta {
    /// The Vary values, matched against a request's without reading the file.
    type Indexed = Vec<(String, Option<String>)>;

    fn indexed(&self) -> Self::Indexed {
        self.secondary_key.clone()
    }

    fn variant(&self) -> Vec<u8> {
        let mut variant = Vec::new();
        for (name, value) in &self.secondary_key {
            variant.push(0);
            variant.extend_from_slice(name.as_bytes());
            match value {
                Some(value) => {
                    variant.push(1);
                    variant.extend_from_slice(value.as_bytes());
                }
                None => variant.push(2),
            }
        }
        variant
    }
}

impl DiskTierEvents for Metrics {
    fn holding(&self, files: u64, bytes: u64) {
        self.disk_objects.store(files, Ordering::Relaxed);
        self.disk_bytes.store(bytes, Ordering::Relaxed);
    }

    fn written(&self) {
        Metrics::bump(&self.disk_writes);
    }

    fn evicted(&self, files: u64) {
        Metrics::add(&self.evictions_disk, files);
    }
}

/// The disk tier of the cache.
#[derive(Debug)]
pub struct DiskTier(disk_tier::DiskTier<Meta>);

impl DiskTier {
    /// Opens (creating if needed) the tier in `dir` and indexes what a
    /// previous run left there. Blocking: call from the blocking pool.
    pub fn open(dir: &Path, capacity: u64, metrics: Arc<Metrics>) -> io::Result<Self> {
        disk_tier::DiskTier::open(dir, MAGIC, capacity, metrics).map(Self)
    }

    /// True when some response for `primary_key` is on disk.
    pub fn contains(&self, primary_key: &str) -> bool {
        self.0.contains(primary_key)
    }

    /// Finds the file of the stored response matching this request's
    /// nominated headers, if any; the caller then reads it with [`Self::read`].
    pub fn find(&self, primary_key: &str, request_headers: &HeaderMap) -> DiskLookup {
        match self.0.find(primary_key, |secondary_key| {
            crate::policy::vary_matches(secondary_key, request_headers)
        }) {
            Find::Found(id) => DiskLookup::Found(id),
            Find::VariantMiss => DiskLookup::VaryMiss,
            Find::KeyMiss => DiskLookup::UriMiss,
        }
    }

    /// Reads a stored response. Blocking.
    pub fn read(&self, id: &str) -> io::Result<StoredResponse> {
        let file = self.0.read(id)?;
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
        let meta = file.meta;
        let mut headers = HeaderMap::with_capacity(meta.headers.len());
        for (name, value) in meta.headers {
            let name =
                HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid("bad header name"))?;
            let value = HeaderValue::from_bytes(&value).map_err(|_| invalid("bad header value"))?;
            headers.append(name, value);
        }
        let mut response = StoredResponse::new(
            StatusCode::from_u16(meta.status).map_err(|_| invalid("bad status"))?,
            headers,
            file.body,
            from_millis(meta.request_time_ms),
            from_millis(meta.response_time_ms),
            meta.secondary_key,
        );
        response.invalidated = file.invalidated;
        response.on_disk.store(true, Ordering::Relaxed);
        Ok(response)
    }

    /// Writes a stored response, replacing any with the same keys, then
    /// evicts the least recently used files beyond the budget. Blocking.
    pub fn write(&self, primary_key: &str, response: &StoredResponse) -> io::Result<()> {
        let meta = Meta {
            secondary_key: response.secondary_key.clone(),
            status: response.status.as_u16(),
            headers: response
                .headers
                .iter()
                .map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec()))
                .collect(),
            request_time_ms: millis(response.request_time),
            response_time_ms: millis(response.response_time),
        };
        self.0.write(primary_key, &meta, &response.body).map(drop)
    }

    /// Removes every response whose primary key `matches`. Blocking.
    pub fn remove_where(&self, matches: impl Fn(&str) -> bool) -> usize {
        self.0.remove_where(matches)
    }

    /// Marks every response whose primary key `matches` as stale (soft
    /// purge), persistently. Blocking.
    pub fn invalidate_where(&self, matches: impl Fn(&str) -> bool) -> usize {
        self.0.invalidate_where(matches)
    }
}

/// What the disk index knows for a request.
#[derive(Debug)]
pub enum DiskLookup {
    Found(String),
    VaryMiss,
    UriMiss,
}

fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

fn from_millis(millis: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(millis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::fs;

    fn response(body: &'static [u8], vary_value: Option<&str>) -> StoredResponse {
        let mut headers = HeaderMap::new();
        headers.insert("cache-control", HeaderValue::from_static("max-age=60"));
        StoredResponse::new(
            StatusCode::OK,
            headers,
            Bytes::from_static(body),
            UNIX_EPOCH + Duration::from_secs(1000),
            UNIX_EPOCH + Duration::from_secs(1001),
            vec![("accept-language".into(), vary_value.map(str::to_string))],
        )
    }

    #[test]
    fn survives_reopen_and_matches_variants() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::default());
        {
            let tier = DiskTier::open(dir.path(), 1 << 20, metrics.clone()).unwrap();
            tier.write("/a", &response(b"english", Some("en"))).unwrap();
            tier.write("/a", &response(b"french", Some("fr"))).unwrap();
        }
        let tier = DiskTier::open(dir.path(), 1 << 20, metrics.clone()).unwrap();
        assert_eq!(metrics.disk_objects.load(Ordering::Relaxed), 2);
        let mut request = HeaderMap::new();
        request.insert("accept-language", HeaderValue::from_static("fr"));
        let DiskLookup::Found(id) = tier.find("/a", &request) else {
            panic!("expected the french variant")
        };
        let stored = tier.read(&id).unwrap();
        assert_eq!(&stored.body[..], b"french");
        assert_eq!(stored.headers["cache-control"], "max-age=60");
        assert_eq!(stored.response_time, UNIX_EPOCH + Duration::from_secs(1001));
        request.insert("accept-language", HeaderValue::from_static("de"));
        assert!(matches!(tier.find("/a", &request), DiskLookup::VaryMiss));
        assert!(matches!(tier.find("/b", &request), DiskLookup::UriMiss));
    }

    #[test]
    fn evicts_least_recently_used_beyond_capacity() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::default());
        let tier = DiskTier::open(dir.path(), 1500, metrics.clone()).unwrap();
        let body: &'static [u8] = &[7u8; 300];
        tier.write("/1", &response(body, None)).unwrap();
        tier.write("/2", &response(body, None)).unwrap();
        // Touch /1 so /2 is the least recently used.
        assert!(matches!(
            tier.find("/1", &HeaderMap::new()),
            DiskLookup::Found(_)
        ));
        tier.write("/3", &response(body, None)).unwrap();
        assert!(tier.contains("/1"));
        assert!(!tier.contains("/2"));
        assert!(tier.contains("/3"));
        assert_eq!(metrics.evictions_disk.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn corrupt_files_are_dropped_at_open_and_soft_purge_persists() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::default());
        {
            let tier = DiskTier::open(dir.path(), 1 << 20, metrics.clone()).unwrap();
            tier.write("/v/x/1.m4s", &response(b"one", None)).unwrap();
            tier.write("/v/y/1.m4s", &response(b"two", None)).unwrap();
            assert_eq!(tier.invalidate_where(|key| key.starts_with("/v/x/")), 1);
        }
        fs::write(dir.path().join("deadbeef.obj"), b"KNMEDGE1garbage").unwrap();
        let tier = DiskTier::open(dir.path(), 1 << 20, metrics.clone()).unwrap();
        assert!(!dir.path().join("deadbeef.obj").exists());
        let DiskLookup::Found(id) = tier.find("/v/x/1.m4s", &HeaderMap::new()) else {
            panic!("expected a stored response")
        };
        assert!(tier.read(&id).unwrap().invalidated);
        assert_eq!(tier.remove_where(|key| key.starts_with("/v/")), 2);
        assert!(!tier.contains("/v/y/1.m4s"));
    }
}
