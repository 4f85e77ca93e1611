//! The disk tier: one file per stored response under a directory, an index
//! of them in memory, least-recently-used eviction to a byte budget.
//!
//! A file is `KNMEDGE1`, the metadata length (u32, little endian), the
//! metadata as JSON (keys, status, headers, times) and the body. Files are
//! written to a temporary name and renamed, so a crash leaves either the old
//! file or the new one; at start the directory is scanned and every whole
//! file is indexed again, so the tier survives a restart. A soft purge
//! leaves a `.stale` marker beside the file, so it survives a restart too.
//!
//! All file work runs on tokio's blocking pool; the index is a std `Mutex`
//! never held across an `.await`.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::metrics::Metrics;
use crate::stored::StoredResponse;

const MAGIC: &[u8; 8] = b"KNMEDGE1";

#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    primary_key: String,
    secondary_key: Vec<(String, Option<String>)>,
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    request_time_ms: u64,
    response_time_ms: u64,
    body_length: u64,
}

#[derive(Debug, Clone)]
struct Entry {
    primary_key: String,
    secondary_key: Vec<(String, Option<String>)>,
    size: u64,
    last_used: u64,
    invalidated: bool,
}

#[derive(Debug, Default)]
struct Index {
    entries: HashMap<String, Entry>,
    by_primary: HashMap<String, Vec<String>>,
    used: u64,
    clock: u64,
}

impl Index {
    fn insert(&mut self, id: String, entry: Entry) {
        self.remove(&id);
        self.used += entry.size;
        self.by_primary
            .entry(entry.primary_key.clone())
            .or_default()
            .push(id.clone());
        self.entries.insert(id, entry);
    }

    fn remove(&mut self, id: &str) -> Option<Entry> {
        let entry = self.entries.remove(id)?;
        self.used -= entry.size;
        if let Some(ids) = self.by_primary.get_mut(&entry.primary_key) {
            ids.retain(|other| other != id);
            if ids.is_empty() {
                self.by_primary.remove(&entry.primary_key);
            }
        }
        Some(entry)
    }
}

/// The disk tier of the cache.
#[derive(Debug)]
pub struct DiskTier {
    dir: PathBuf,
    capacity: u64,
    index: Mutex<Index>,
    metrics: Arc<Metrics>,
}

impl DiskTier {
    /// Opens (creating if needed) the tier in `dir` and indexes what a
    /// previous run left there. Blocking: call from the blocking pool.
    pub fn open(dir: &Path, capacity: u64, metrics: Arc<Metrics>) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let mut index = Index::default();
        for item in fs::read_dir(dir)? {
            let path = item?.path();
            let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
                continue;
            };
            if name.starts_with(".tmp-") {
                // A write interrupted by a crash.
                let _ = fs::remove_file(&path);
                continue;
            }
            let Some(id) = name.strip_suffix(".obj") else {
                continue;
            };
            match read_meta(&path) {
                Ok((meta, size)) => {
                    index.clock += 1;
                    let invalidated = path.with_extension("stale").exists();
                    index.insert(
                        id.to_string(),
                        Entry {
                            primary_key: meta.primary_key,
                            secondary_key: meta.secondary_key,
                            size,
                            last_used: index.clock,
                            invalidated,
                        },
                    );
                }
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "removing unreadable cache file");
                    let _ = fs::remove_file(&path);
                }
            }
        }
        metrics
            .disk_objects
            .store(index.entries.len() as u64, Ordering::Relaxed);
        metrics.disk_bytes.store(index.used, Ordering::Relaxed);
        let tier = Self {
            dir: dir.to_path_buf(),
            capacity,
            index: Mutex::new(index),
            metrics,
        };
        tier.evict_over_capacity();
        Ok(tier)
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.obj"))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        // A panic while holding the lock leaves a consistent index (every
        // mutation is a few map operations), so a poisoned lock is usable.
        self.index
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// True when some response for `primary_key` is on disk.
    pub fn contains(&self, primary_key: &str) -> bool {
        self.lock().by_primary.contains_key(primary_key)
    }

    /// Finds the file of the stored response matching this request's
    /// nominated headers, if any; the caller then reads it with [`read`].
    pub fn find(&self, primary_key: &str, request_headers: &HeaderMap) -> DiskLookup {
        let mut index = self.lock();
        let Some(ids) = index.by_primary.get(primary_key) else {
            return DiskLookup::UriMiss;
        };
        let found = ids.iter().find(|id| {
            index.entries.get(*id).is_some_and(|entry| {
                crate::policy::vary_matches(&entry.secondary_key, request_headers)
            })
        });
        match found.cloned() {
            Some(id) => {
                index.clock += 1;
                let clock = index.clock;
                if let Some(entry) = index.entries.get_mut(&id) {
                    entry.last_used = clock;
                }
                DiskLookup::Found(id)
            }
            None => DiskLookup::VaryMiss,
        }
    }

    /// Reads a stored response. Blocking.
    pub fn read(&self, id: &str) -> io::Result<StoredResponse> {
        let path = self.path(id);
        let result = read_file(&path);
        match result {
            Ok(mut response) => {
                response.invalidated = self
                    .lock()
                    .entries
                    .get(id)
                    .is_some_and(|entry| entry.invalidated);
                response
                    .on_disk
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                Ok(response)
            }
            Err(error) => {
                // Gone or corrupt: forget it so the next request refetches.
                self.remove_ids(&[id.to_string()]);
                Err(error)
            }
        }
    }

    /// Writes a stored response, replacing any with the same keys, then
    /// evicts the least recently used files beyond the budget. Blocking.
    pub fn write(&self, primary_key: &str, response: &StoredResponse) -> io::Result<()> {
        let id = file_id(primary_key, &response.secondary_key);
        let meta = Meta {
            primary_key: primary_key.to_string(),
            secondary_key: response.secondary_key.clone(),
            status: response.status.as_u16(),
            headers: response
                .headers
                .iter()
                .map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec()))
                .collect(),
            request_time_ms: millis(response.request_time),
            response_time_ms: millis(response.response_time),
            body_length: response.body.len() as u64,
        };
        let meta = serde_json::to_vec(&meta).map_err(io::Error::other)?;
        let size = (MAGIC.len() + 4 + meta.len() + response.body.len()) as u64;
        if size > self.capacity {
            return Ok(());
        }
        let temporary = self.dir.join(format!(".tmp-{id}-{}", std::process::id()));
        {
            let mut file = fs::File::create(&temporary)?;
            file.write_all(MAGIC)?;
            file.write_all(&(meta.len() as u32).to_le_bytes())?;
            file.write_all(&meta)?;
            file.write_all(&response.body)?;
        }
        let path = self.path(&id);
        fs::rename(&temporary, &path)?;
        let _ = fs::remove_file(path.with_extension("stale"));
        {
            let mut index = self.lock();
            index.clock += 1;
            let clock = index.clock;
            index.insert(
                id,
                Entry {
                    primary_key: primary_key.to_string(),
                    secondary_key: response.secondary_key.clone(),
                    size,
                    last_used: clock,
                    invalidated: false,
                },
            );
            self.publish_gauges(&index);
        }
        Metrics::bump(&self.metrics.disk_writes);
        self.evict_over_capacity();
        Ok(())
    }

    fn publish_gauges(&self, index: &Index) {
        self.metrics
            .disk_objects
            .store(index.entries.len() as u64, Ordering::Relaxed);
        self.metrics.disk_bytes.store(index.used, Ordering::Relaxed);
    }

    fn evict_over_capacity(&self) {
        let victims: Vec<String> = {
            let index = self.lock();
            if index.used <= self.capacity {
                return;
            }
            // Evict down to 90% so eviction runs once per many writes, not
            // on every one.
            let target = self.capacity / 10 * 9;
            let mut by_age: Vec<(&String, &Entry)> = index.entries.iter().collect();
            by_age.sort_by_key(|(_, entry)| entry.last_used);
            let mut used = index.used;
            let mut victims = Vec::new();
            for (id, entry) in by_age {
                if used <= target {
                    break;
                }
                used -= entry.size;
                victims.push(id.clone());
            }
            victims
        };
        Metrics::add(&self.metrics.evictions_disk, victims.len() as u64);
        self.remove_ids(&victims);
    }

    fn remove_ids(&self, ids: &[String]) {
        let mut index = self.lock();
        for id in ids {
            if index.remove(id).is_some() {
                let path = self.path(id);
                let _ = fs::remove_file(&path);
                let _ = fs::remove_file(path.with_extension("stale"));
            }
        }
        self.publish_gauges(&index);
    }

    /// Removes every response whose primary key `matches`. Blocking.
    pub fn remove_where(&self, matches: impl Fn(&str) -> bool) -> usize {
        let ids: Vec<String> = {
            let index = self.lock();
            index
                .entries
                .iter()
                .filter(|(_, entry)| matches(&entry.primary_key))
                .map(|(id, _)| id.clone())
                .collect()
        };
        self.remove_ids(&ids);
        ids.len()
    }

    /// Marks every response whose primary key `matches` as stale (soft
    /// purge), persistently. Blocking.
    pub fn invalidate_where(&self, matches: impl Fn(&str) -> bool) -> usize {
        let ids: Vec<String> = {
            let mut index = self.lock();
            index
                .entries
                .iter_mut()
                .filter(|(_, entry)| matches(&entry.primary_key))
                .map(|(id, entry)| {
                    entry.invalidated = true;
                    id.clone()
                })
                .collect()
        };
        for id in &ids {
            let _ = fs::File::create(self.path(id).with_extension("stale"));
        }
        ids.len()
    }
}

/// What the disk index knows for a request.
#[derive(Debug)]
pub enum DiskLookup {
    Found(String),
    VaryMiss,
    UriMiss,
}

fn file_id(primary_key: &str, secondary_key: &[(String, Option<String>)]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(primary_key.as_bytes());
    for (name, value) in secondary_key {
        hasher.update([0]);
        hasher.update(name.as_bytes());
        match value {
            Some(value) => {
                hasher.update([1]);
                hasher.update(value.as_bytes());
            }
            None => hasher.update([2]),
        }
    }
    hex::encode(&hasher.finalize()[..20])
}

fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

fn from_millis(millis: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(millis)
}

fn read_meta(path: &Path) -> io::Result<(Meta, u64)> {
    let mut file = fs::File::open(path)?;
    let size = file.metadata()?.len();
    let mut prefix = [0u8; 12];
    file.read_exact(&mut prefix)?;
    if &prefix[..8] != MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a kinema cache file",
        ));
    }
    let meta_length = u32::from_le_bytes(prefix[8..12].try_into().expect("4 bytes")) as u64;
    if meta_length > size {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "truncated cache file",
        ));
    }
    let mut meta = vec![0u8; meta_length as usize];
    file.read_exact(&mut meta)?;
    let meta: Meta = serde_json::from_slice(&meta).map_err(io::Error::other)?;
    if 12 + meta_length + meta.body_length != size {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "truncated cache file",
        ));
    }
    Ok((meta, size))
}

fn read_file(path: &Path) -> io::Result<StoredResponse> {
    let data = fs::read(path)?;
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    if data.len() < 12 || &data[..8] != MAGIC {
        return Err(invalid("not a kinema cache file"));
    }
    let meta_length = u32::from_le_bytes(data[8..12].try_into().expect("4 bytes")) as usize;
    let meta_end = 12usize
        .checked_add(meta_length)
        .filter(|end| *end <= data.len())
        .ok_or_else(|| invalid("truncated cache file"))?;
    let meta: Meta = serde_json::from_slice(&data[12..meta_end]).map_err(io::Error::other)?;
    if (data.len() - meta_end) as u64 != meta.body_length {
        return Err(invalid("truncated cache file"));
    }
    let mut headers = HeaderMap::with_capacity(meta.headers.len());
    for (name, value) in meta.headers {
        let name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid("bad header name"))?;
        let value = HeaderValue::from_bytes(&value).map_err(|_| invalid("bad header value"))?;
        headers.append(name, value);
    }
    let body = Bytes::from(data).slice(meta_end..);
    Ok(StoredResponse::new(
        StatusCode::from_u16(meta.status).map_err(|_| invalid("bad status"))?,
        headers,
        body,
        from_millis(meta.request_time_ms),
        from_millis(meta.response_time_ms),
        meta.secondary_key,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

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
