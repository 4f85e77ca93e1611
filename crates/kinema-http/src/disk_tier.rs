//! A disk tier for a cache: one file per stored object under a directory,
//! an index of them in memory, least-recently-used eviction to a byte
//! budget. The edge keeps responses in it, the origin the files of a store
//! with no local disk (S3); each says what metadata it stores beside a body
//! ([`Metadata`]), and what counts it keeps ([`DiskTierEvents`]).
//!
//! A file is an 8-byte magic naming its user (`KNMEDGE1`), the metadata
//! length (u32, little endian), the metadata as JSON (the key, the body's
//! length and the user's metadata) and the body. Files are written to a
//! temporary name and renamed, so a crash leaves either the old file or the
//! new one; at start the directory is scanned and every whole file is
//! indexed again, so the tier survives a restart. A file marked stale
//! (a soft purge) has a `.stale` marker beside it, which survives a restart
//! too.
//!
//! Every method that touches a file blocks: call it from tokio's blocking
//! pool (`spawn_blocking`). The index is a std `Mutex` never held across
//! file I/O or an `.await`. What this is not: an admission policy (which
//! objects deserve the disk is the caller's), nor a reader of only part of
//! a file.

use std::collections::HashMap;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a user of the tier stores beside each body.
pub trait Metadata: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// What the index keeps of a file's metadata in memory, to choose among
    /// the files of one key without reading them (the edge's Vary values).
    type Indexed: Clone + Debug + Send + Sync + 'static;

    fn indexed(&self) -> Self::Indexed;

    /// Bytes telling this file apart from the others stored under the same
    /// key, hashed into its name: a write with the same key and variant
    /// replaces the file.
    fn variant(&self) -> Vec<u8> {
        Vec::new()
    }
}

/// What the tier reports as it works, for its user's metrics.
pub trait DiskTierEvents: Debug + Send + Sync + 'static {
    /// The tier now holds `files` files of `bytes` bytes in all.
    fn holding(&self, files: u64, bytes: u64);
    /// A file was written.
    fn written(&self);
    /// `files` files were evicted to stay within the budget.
    fn evicted(&self, files: u64);
}

/// The envelope every file's JSON metadata is: the key and body length the
/// tier needs, with the user's fields beside them.
#[derive(Serialize)]
struct EnvelopeRef<'a, M> {
    primary_key: &'a str,
    body_length: u64,
    #[serde(flatten)]
    meta: &'a M,
}

#[derive(Deserialize)]
struct Envelope<M> {
    primary_key: String,
    body_length: u64,
    #[serde(flatten)]
    meta: M,
}

#[derive(Debug, Clone)]
struct Entry<I> {
    primary_key: String,
    indexed: I,
    size: u64,
    last_used: u64,
    invalidated: bool,
}

#[derive(Debug)]
struct Index<I> {
    entries: HashMap<String, Entry<I>>,
    by_primary: HashMap<String, Vec<String>>,
    used: u64,
    clock: u64,
}

impl<I> Default for Index<I> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            by_primary: HashMap::new(),
            used: 0,
            clock: 0,
        }
    }
}

impl<I> Index<I> {
    fn insert(&mut self, id: String, entry: Entry<I>) {
        self.remove(&id);
        self.used += entry.size;
        self.by_primary
            .entry(entry.primary_key.clone())
            .or_default()
            .push(id.clone());
        self.entries.insert(id, entry);
    }

    fn remove(&mut self, id: &str) -> Option<Entry<I>> {
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

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }
}

/// What the index knows for a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Find {
    /// The id of a matching file, for [`DiskTier::read`].
    Found(String),
    /// Files are stored for the key, none matching.
    VariantMiss,
    KeyMiss,
}

/// One stored file, read whole.
#[derive(Debug)]
pub struct DiskFile<M> {
    pub meta: M,
    pub body: Bytes,
    /// Marked stale by [`DiskTier::invalidate_where`].
    pub invalidated: bool,
    /// The file, open for reading: `body` lies at `body_offset` in it.
    pub file: File,
    pub body_offset: u64,
    /// Its modification time before it was read.
    pub modified: Option<SystemTime>,
}

/// A file just written: open for reading, `body` at `body_offset`.
#[derive(Debug)]
pub struct WrittenFile {
    pub id: String,
    pub file: File,
    pub body_offset: u64,
}

/// Temporary files of this process get distinct names, so two writes of one
/// file at once never write into the same temporary file.
static TEMPORARY: AtomicU64 = AtomicU64::new(0);

/// The disk tier of a cache (see the module's doc).
#[derive(Debug)]
pub struct DiskTier<M: Metadata> {
    dir: PathBuf,
    magic: [u8; 8],
    capacity: u64,
    index: Mutex<Index<M::Indexed>>,
    events: Arc<dyn DiskTierEvents>,
}

impl<M: Metadata> DiskTier<M> {
    /// Opens (creating if needed) the tier in `dir`, whose files start with
    /// `magic`, and indexes what a previous run left there; what is not a
    /// whole file of this tier is removed. Blocking.
    pub fn open(
        dir: &Path,
        magic: [u8; 8],
        capacity: u64,
        events: Arc<dyn DiskTierEvents>,
    ) -> io::Result<Self> {
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
            match read_head::<M>(&path, &magic) {
                Ok((envelope, size)) => {
                    let last_used = index.tick();
                    let invalidated = path.with_extension("stale").exists();
                    index.insert(
                        id.to_string(),
                        Entry {
                            primary_key: envelope.primary_key,
                            indexed: envelope.meta.indexed(),
                            size,
                            last_used,
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
        events.holding(index.entries.len() as u64, index.used);
        let tier = Self {
            dir: dir.to_path_buf(),
            magic,
            capacity,
            index: Mutex::new(index),
            events,
        };
        tier.evict_over_capacity();
        Ok(tier)
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.obj"))
    }

    fn lock(&self) -> MutexGuard<'_, Index<M::Indexed>> {
        // A panic while holding the lock leaves a consistent index (every
        // mutation is a few map operations), so a poisoned lock is usable.
        self.index
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// True when some file is stored under `primary_key`.
    pub fn contains(&self, primary_key: &str) -> bool {
        self.lock().by_primary.contains_key(primary_key)
    }

    /// Bytes the tier holds now (files, metadata included).
    pub fn used(&self) -> u64 {
        self.lock().used
    }

    /// Finds a file of `primary_key` whose indexed metadata `matches`, and
    /// counts it as used (for eviction); the caller then reads it with
    /// [`Self::read`].
    pub fn find(&self, primary_key: &str, matches: impl Fn(&M::Indexed) -> bool) -> Find {
        let mut index = self.lock();
        let Some(ids) = index.by_primary.get(primary_key) else {
            return Find::KeyMiss;
        };
        let found = ids.iter().find(|id| {
            index
                .entries
                .get(*id)
                .is_some_and(|entry| matches(&entry.indexed))
        });
        match found.cloned() {
            Some(id) => {
                let clock = index.tick();
                if let Some(entry) = index.entries.get_mut(&id) {
                    entry.last_used = clock;
                }
                Find::Found(id)
            }
            None => Find::VariantMiss,
        }
    }

    /// Reads a stored file whole. One that is gone or not whole is forgotten,
    /// so the next request fetches its object again. Blocking.
    pub fn read(&self, id: &str) -> io::Result<DiskFile<M>> {
        match read_whole::<M>(&self.path(id), &self.magic) {
            Ok(mut file) => {
                file.invalidated = self
                    .lock()
                    .entries
                    .get(id)
                    .is_some_and(|entry| entry.invalidated);
                Ok(file)
            }
            Err(error) => {
                self.remove_ids(&[id.to_string()]);
                Err(error)
            }
        }
    }

    /// Writes `body` with `meta` under `primary_key`, replacing the file of
    /// the same key and variant, then evicts the least recently used files
    /// beyond the budget. `None` when the file alone would exceed the
    /// budget (nothing is written). Blocking.
    pub fn write(
        &self,
        primary_key: &str,
        meta: &M,
        body: &[u8],
    ) -> io::Result<Option<WrittenFile>> {
        let id = file_id(primary_key, &meta.variant());
        let head = serde_json::to_vec(&EnvelopeRef {
            primary_key,
            body_length: body.len() as u64,
            meta,
        })
        .map_err(io::Error::other)?;
        let head_length = u32::try_from(head.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "metadata too large"))?;
        let body_offset = (self.magic.len() + 4 + head.len()) as u64;
        let size = body_offset + body.len() as u64;
        if size > self.capacity {
            return Ok(None);
        }
        let temporary = self.dir.join(format!(
            ".tmp-{id}-{}-{}",
            std::process::id(),
            TEMPORARY.fetch_add(1, Ordering::Relaxed)
        ));
        // Readable too: the caller may send the body from it.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&temporary)?;
        let written = (|| {
            file.write_all(&self.magic)?;
            file.write_all(&head_length.to_le_bytes())?;
            file.write_all(&head)?;
            file.write_all(body)?;
            fs::rename(&temporary, self.path(&id))
        })();
        if let Err(error) = written {
            let _ = fs::remove_file(&temporary);
            return Err(error);
        }
        let _ = fs::remove_file(self.path(&id).with_extension("stale"));
        {
            let mut index = self.lock();
            let last_used = index.tick();
            index.insert(
                id.clone(),
                Entry {
                    primary_key: primary_key.to_string(),
                    indexed: meta.indexed(),
                    size,
                    last_used,
                    invalidated: false,
                },
            );
            self.events.holding(index.entries.len() as u64, index.used);
        }
        self.events.written();
        self.evict_over_capacity();
        Ok(Some(WrittenFile {
            id,
            file,
            body_offset,
        }))
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
            let mut by_age: Vec<(&String, &Entry<M::Indexed>)> = index.entries.iter().collect();
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
        self.events.evicted(victims.len() as u64);
        self.remove_ids(&victims);
    }

    /// Removes the file `id` (one found not to hold what it should).
    /// Blocking.
    pub fn remove(&self, id: &str) {
        self.remove_ids(&[id.to_string()]);
    }

    fn remove_ids(&self, ids: &[String]) {
        let mut removed = Vec::with_capacity(ids.len());
        {
            let mut index = self.lock();
            for id in ids {
                if index.remove(id).is_some() {
                    removed.push(self.path(id));
                }
            }
            self.events.holding(index.entries.len() as u64, index.used);
        }
        for path in removed {
            let _ = fs::remove_file(&path);
            let _ = fs::remove_file(path.with_extension("stale"));
        }
    }

    /// Removes every file whose key `matches`. Blocking.
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

    /// Marks every file whose key `matches` as stale (a soft purge),
    /// persistently. Blocking.
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
            let _ = File::create(self.path(id).with_extension("stale"));
        }
        ids.len()
    }
}

fn file_id(primary_key: &str, variant: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(primary_key.as_bytes());
    hasher.update(variant);
    hex::encode(&hasher.finalize()[..20])
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// The metadata length from a file's first 12 bytes, checking its magic.
fn head_length(prefix: &[u8], magic: &[u8; 8]) -> io::Result<usize> {
    if prefix.len() < 12 || &prefix[..8] != magic {
        return Err(invalid("not a file of this cache"));
    }
    Ok(u32::from_le_bytes(prefix[8..12].try_into().expect("4 bytes")) as usize)
}

/// A file's metadata and size, checking that its body is whole, without
/// reading the body.
fn read_head<M: Metadata>(path: &Path, magic: &[u8; 8]) -> io::Result<(Envelope<M>, u64)> {
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    let mut prefix = [0u8; 12];
    file.read_exact(&mut prefix)?;
    let length = head_length(&prefix, magic)?;
    if length as u64 > size {
        return Err(invalid("truncated cache file"));
    }
    let mut head = vec![0u8; length];
    file.read_exact(&mut head)?;
    let envelope: Envelope<M> = serde_json::from_slice(&head).map_err(io::Error::other)?;
    if 12 + length as u64 + envelope.body_length != size {
        return Err(invalid("truncated cache file"));
    }
    Ok((envelope, size))
}

fn read_whole<M: Metadata>(path: &Path, magic: &[u8; 8]) -> io::Result<DiskFile<M>> {
    let mut file = File::open(path)?;
    let metadata = file.metadata()?;
    let mut data = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
    file.read_to_end(&mut data)?;
    let head_end = 12usize
        .checked_add(head_length(&data, magic)?)
        .filter(|end| *end <= data.len())
        .ok_or_else(|| invalid("truncated cache file"))?;
    let envelope: Envelope<M> =
        serde_json::from_slice(&data[12..head_end]).map_err(io::Error::other)?;
    if (data.len() - head_end) as u64 != envelope.body_length {
        return Err(invalid("truncated cache file"));
    }
    Ok(DiskFile {
        meta: envelope.meta,
        body: Bytes::from(data).slice(head_end..),
        invalidated: false,
        file,
        body_offset: head_end as u64,
        modified: metadata.modified().ok(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Serialize, Deserialize)]
    struct Note {
        language: String,
    }

    impl Metadata for Note {
        type Indexed = String;
        fn indexed(&self) -> String {
            self.language.clone()
        }
        fn variant(&self) -> Vec<u8> {
            self.language.as_bytes().to_vec()
        }
    }

    #[derive(Debug, Default)]
    struct Counts {
        files: AtomicU64,
        bytes: AtomicU64,
        writes: AtomicU64,
        evictions: AtomicU64,
    }

    impl DiskTierEvents for Counts {
        fn holding(&self, files: u64, bytes: u64) {
            self.files.store(files, Ordering::Relaxed);
            self.bytes.store(bytes, Ordering::Relaxed);
        }
        fn written(&self) {
            self.writes.fetch_add(1, Ordering::Relaxed);
        }
        fn evicted(&self, files: u64) {
            self.evictions.fetch_add(files, Ordering::Relaxed);
        }
    }

    const MAGIC: [u8; 8] = *b"KNMTEST1";

    fn note(language: &str) -> Note {
        Note {
            language: language.into(),
        }
    }

    fn open(dir: &Path, capacity: u64, counts: &Arc<Counts>) -> DiskTier<Note> {
        DiskTier::open(dir, MAGIC, capacity, counts.clone()).unwrap()
    }

    #[test]
    fn survives_reopen_and_finds_variants() {
        let dir = tempfile::tempdir().unwrap();
        let counts = Arc::new(Counts::default());
        {
            let tier = open(dir.path(), 1 << 20, &counts);
            tier.write("/a", &note("en"), b"english").unwrap();
            tier.write("/a", &note("fr"), b"french").unwrap();
            // The same key and variant replaces the file.
            tier.write("/a", &note("fr"), b"francais").unwrap();
        }
        let tier = open(dir.path(), 1 << 20, &counts);
        assert_eq!(counts.files.load(Ordering::Relaxed), 2);
        assert_eq!(counts.bytes.load(Ordering::Relaxed), tier.used());
        let Find::Found(id) = tier.find("/a", |language| language == "fr") else {
            panic!("expected the french file")
        };
        let file = tier.read(&id).unwrap();
        assert_eq!(&file.body[..], b"francais");
        assert_eq!(file.meta.language, "fr");
        assert_eq!(
            tier.find("/a", |language| language == "de"),
            Find::VariantMiss
        );
        assert_eq!(tier.find("/b", |_| true), Find::KeyMiss);
    }

    #[test]
    fn the_body_lies_at_its_offset_in_the_file_handed_back() {
        let dir = tempfile::tempdir().unwrap();
        let counts = Arc::new(Counts::default());
        let tier = open(dir.path(), 1 << 20, &counts);
        let written = tier
            .write("/a", &note("en"), b"body bytes")
            .unwrap()
            .unwrap();
        let mut body = [0u8; 10];
        std::os::unix::fs::FileExt::read_exact_at(&written.file, &mut body, written.body_offset)
            .unwrap();
        assert_eq!(&body, b"body bytes");
        let file = tier.read(&written.id).unwrap();
        assert_eq!(file.body_offset, written.body_offset);
        assert_eq!(file.file.metadata().unwrap().len(), file.body_offset + 10);
        assert_eq!(counts.writes.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn evicts_least_recently_used_beyond_capacity() {
        let dir = tempfile::tempdir().unwrap();
        let counts = Arc::new(Counts::default());
        let tier = open(dir.path(), 1000, &counts);
        let body = [7u8; 300];
        tier.write("/1", &note("x"), &body).unwrap();
        tier.write("/2", &note("x"), &body).unwrap();
        // Touch /1 so /2 is the least recently used.
        assert!(matches!(tier.find("/1", |_| true), Find::Found(_)));
        tier.write("/3", &note("x"), &body).unwrap();
        assert!(tier.contains("/1"));
        assert!(!tier.contains("/2"));
        assert!(tier.contains("/3"));
        assert_eq!(counts.evictions.load(Ordering::Relaxed), 1);
        // Larger than the whole budget: not written at all.
        assert!(
            tier.write("/4", &note("x"), &[0u8; 1000])
                .unwrap()
                .is_none()
        );
        assert!(!tier.contains("/4"));
    }

    #[test]
    fn foreign_truncated_and_interrupted_files_are_dropped_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let counts = Arc::new(Counts::default());
        {
            let tier = open(dir.path(), 1 << 20, &counts);
            let written = tier.write("/a", &note("en"), b"whole").unwrap().unwrap();
            tier.write("/b", &note("en"), b"cut short").unwrap();
            let path = dir.path().join(format!("{}.obj", written.id));
            let length = fs::metadata(&path).unwrap().len();
            // Another user's file, and a write a crash interrupted.
            fs::write(dir.path().join("edge.obj"), b"KNMEDGE1garbage").unwrap();
            fs::write(dir.path().join(".tmp-x-1-0"), b"KNMTEST1").unwrap();
            let other = tier.find("/b", |_| true);
            let Find::Found(other) = other else { panic!() };
            let other = dir.path().join(format!("{other}.obj"));
            let file = OpenOptions::new().write(true).open(&other).unwrap();
            file.set_len(fs::metadata(&other).unwrap().len() - 1)
                .unwrap();
            assert_eq!(fs::metadata(&path).unwrap().len(), length);
        }
        let tier = open(dir.path(), 1 << 20, &counts);
        assert!(tier.contains("/a"));
        assert!(!tier.contains("/b"));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn soft_purge_persists_and_removal_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let counts = Arc::new(Counts::default());
        {
            let tier = open(dir.path(), 1 << 20, &counts);
            tier.write("/v/x/1", &note("en"), b"one").unwrap();
            tier.write("/v/y/1", &note("en"), b"two").unwrap();
            assert_eq!(tier.invalidate_where(|key| key.starts_with("/v/x/")), 1);
        }
        let tier = open(dir.path(), 1 << 20, &counts);
        let Find::Found(id) = tier.find("/v/x/1", |_| true) else {
            panic!("expected a stored file")
        };
        assert!(tier.read(&id).unwrap().invalidated);
        tier.remove(&id);
        assert!(!tier.contains("/v/x/1"));
        assert_eq!(tier.remove_where(|key| key.starts_with("/v/")), 1);
        assert_eq!(counts.files.load(Ordering::Relaxed), 0);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
