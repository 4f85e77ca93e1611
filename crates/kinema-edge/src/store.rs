//! The two tiers together: a byte-weighted memory tier (moka, whose
//! TinyLFU admission turns away one-hit wonders when full) over an
//! optional disk tier, with the rule that decides what reaches the disk.
//!
//! TinyLFU only works if it has counted the uses of what it protects. moka
//! starts counting (and sizes its count sketch from the entries it holds)
//! only once the tier is half full: the uses of the objects cached first,
//! the hot playlist and segments, were never counted, so a flood of one-off
//! keys later outranked them (frequency 1 against 0) and evicted them. The
//! store therefore fills a new tier with placeholders, so the sketch is on
//! from the first request and sized for the tier's capacity, then drops
//! them. Each request also counts once per key: the second looks of
//! the same request (`memory_has`, `insert`) do not record a use.
//!
//! Disk admission: a response is written to disk at its second use (its
//! first hit), or at once when its key was filled before (a doorkeeper of
//! recently seen key hashes remembers keys the memory tier has forgotten).
//! A one-hit wonder thus never costs a disk write. A disk hit is promoted
//! back into memory.
//!
//! The store knows no sockets and no origins: it maps keys to stored
//! responses.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use http::HeaderMap;
use moka::notification::RemovalCause;

use crate::disk::{DiskLookup, DiskTier};
use crate::metrics::Metrics;
use crate::policy;
use crate::stored::StoredResponse;

/// Most variants (Vary) kept per URI, so a response varying on a header
/// with unbounded values cannot fill the cache with one URI.
const MAX_VARIANTS: usize = 8;
/// Keys the doorkeeper remembers before it starts afresh.
const DOORKEEPER_CAPACITY: usize = 200_000;
/// The object size the memory tier's frequency sketch is sized for: the
/// sketch counts about `capacity / SKETCH_OBJECT_BYTES` keys (within
/// [`SKETCH_KEYS`]; moka itself would size it for half the entries of a
/// half-full tier, so this is generous for segments of 1 MB and more).
const SKETCH_OBJECT_BYTES: u64 = 256 * 1024;
const SKETCH_KEYS: (u64, u64) = (128, 1 << 16);

type Variants = Arc<Vec<Arc<StoredResponse>>>;

/// Which tier answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Memory,
    Disk,
}

/// The result of looking a request up.
#[derive(Debug)]
pub enum Lookup {
    Hit(Arc<StoredResponse>, Tier),
    /// Responses are stored for the URI, none for these request headers.
    VaryMiss,
    UriMiss,
}

#[derive(Debug)]
pub struct Store {
    memory: moka::sync::Cache<Arc<str>, Variants>,
    disk: Option<Arc<DiskTier>>,
    doorkeeper: Mutex<HashSet<u64>>,
    hasher: RandomState,
    metrics: Arc<Metrics>,
}

impl Store {
    pub fn new(memory_bytes: u64, disk: Option<Arc<DiskTier>>, metrics: Arc<Metrics>) -> Self {
        let evictions = metrics.clone();
        // Placeholders filling the tier: as many as the keys moka should
        // size its sketch for (it takes entries × fill).
        let placeholders = (memory_bytes / SKETCH_OBJECT_BYTES).clamp(SKETCH_KEYS.0, SKETCH_KEYS.1);
        let placeholder_weight = u32::try_from(memory_bytes / placeholders)
            .unwrap_or(u32::MAX)
            .max(1);
        let memory = moka::sync::Cache::builder()
            .max_capacity(memory_bytes)
            .weigher(move |key: &Arc<str>, variants: &Variants| {
                // Only placeholders hold no variant.
                if variants.is_empty() {
                    return placeholder_weight;
                }
                let bytes: u64 = variants.iter().map(|stored| stored.weight()).sum();
                u32::try_from(bytes + key.len() as u64).unwrap_or(u32::MAX)
            })
            .eviction_listener(move |_key, _value, cause| {
                if cause == RemovalCause::Size {
                    Metrics::bump(&evictions.evictions_memory);
                }
            })
            .build();
        start_counting_uses(&memory, placeholders, u64::from(placeholder_weight));
        Self {
            memory,
            disk,
            doorkeeper: Mutex::new(HashSet::new()),
            hasher: RandomState::new(),
            metrics,
        }
    }

    /// Finds the stored response that matches this request's nominated
    /// headers, in memory first, then on disk.
    pub async fn lookup(&self, key: &str, request_headers: &HeaderMap) -> Lookup {
        let mut vary_miss = false;
        if let Some(variants) = self.memory.get(key) {
            if let Some(found) = variants
                .iter()
                .find(|stored| policy::vary_matches(&stored.secondary_key, request_headers))
            {
                self.admit_on_reuse(key, found);
                return Lookup::Hit(found.clone(), Tier::Memory);
            }
            vary_miss = true;
        }
        let Some(disk) = &self.disk else {
            return if vary_miss {
                Lookup::VaryMiss
            } else {
                Lookup::UriMiss
            };
        };
        match disk.find(key, request_headers) {
            DiskLookup::Found(id) => {
                let tier = disk.clone();
                match tokio::task::spawn_blocking(move || tier.read(&id)).await {
                    Ok(Ok(stored)) => {
                        let stored = Arc::new(stored);
                        self.insert_memory(key, stored.clone());
                        Lookup::Hit(stored, Tier::Disk)
                    }
                    Ok(Err(error)) => {
                        tracing::warn!(key, %error, "disk tier read failed");
                        Lookup::UriMiss
                    }
                    Err(_) => Lookup::UriMiss,
                }
            }
            DiskLookup::VaryMiss => Lookup::VaryMiss,
            DiskLookup::UriMiss if vary_miss => Lookup::VaryMiss,
            DiskLookup::UriMiss => Lookup::UriMiss,
        }
    }

    /// True when the memory tier holds a response for this request
    /// (synchronous: used under the coalescing lock).
    pub fn memory_has(&self, key: &str, request_headers: &HeaderMap) -> bool {
        // `contains_key` first: a miss here is the same request's second
        // look, and must not count again in the admission's frequencies.
        if !self.memory.contains_key(key) {
            return false;
        }
        self.memory.get(key).is_some_and(|variants| {
            variants
                .iter()
                .any(|stored| policy::vary_matches(&stored.secondary_key, request_headers))
        })
    }

    /// Whether the memory tier holds anything under `key`, without
    /// counting a use of it (a look on the request's behalf, not a use).
    pub fn memory_contains(&self, key: &str) -> bool {
        self.memory.contains_key(key)
    }

    /// Whether the memory tier has room to spare: below seven eighths of
    /// its capacity (as its last applied inserts and evictions tell). In
    /// a tier with no room a new object is kept only if the admission
    /// prefers it to what it would evict, so a segment of a video watched
    /// once is fetched, served and turned away.
    pub fn has_room(&self) -> bool {
        let capacity = self.memory.policy().max_capacity().unwrap_or(u64::MAX);
        self.memory.weighted_size() < capacity - capacity / 8
    }

    /// Stores a response fetched from the origin.
    pub fn insert(&self, key: &str, stored: Arc<StoredResponse>) {
        Metrics::bump(&self.metrics.stored);
        self.insert_memory(key, stored.clone());
        if self.disk.is_some() && self.seen_before(key) {
            self.write_to_disk(key, &stored);
        }
    }

    /// Replaces a stored response by its freshened version (after a 304).
    pub fn replace(&self, key: &str, stored: Arc<StoredResponse>) {
        self.insert_memory(key, stored.clone());
        if self.disk.as_ref().is_some_and(|disk| disk.contains(key)) {
            self.write_to_disk(key, &stored);
        }
    }

    fn insert_memory(&self, key: &str, stored: Arc<StoredResponse>) {
        // A new key is not looked up: that miss would count as one more
        // use of the key in the admission's frequencies (see `Store`).
        let existing = if self.memory.contains_key(key) {
            self.memory.get(key)
        } else {
            None
        };
        let mut variants: Vec<Arc<StoredResponse>> = existing
            .map(|existing| {
                existing
                    .iter()
                    .filter(|other| other.secondary_key != stored.secondary_key)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        if variants.len() >= MAX_VARIANTS {
            variants.remove(0);
        }
        variants.push(stored);
        self.memory.insert(Arc::from(key), Arc::new(variants));
    }

    /// Second use of a response that is only in memory: it has shown it is
    /// not a one-hit wonder, so it earns its place on disk.
    fn admit_on_reuse(&self, key: &str, stored: &Arc<StoredResponse>) {
        if self.disk.is_some() && !stored.on_disk.load(Ordering::Relaxed) {
            self.write_to_disk(key, stored);
        }
    }

    fn seen_before(&self, key: &str) -> bool {
        let hash = self.hasher.hash_one(key);
        let mut doorkeeper = self.doorkeeper.lock().unwrap_or_else(|p| p.into_inner());
        if doorkeeper.contains(&hash) {
            return true;
        }
        if doorkeeper.len() >= DOORKEEPER_CAPACITY {
            doorkeeper.clear();
        }
        doorkeeper.insert(hash);
        false
    }

    fn write_to_disk(&self, key: &str, stored: &Arc<StoredResponse>) {
        let Some(disk) = self.disk.clone() else {
            return;
        };
        if stored.on_disk.swap(true, Ordering::Relaxed) {
            return;
        }
        let key = key.to_string();
        let stored = stored.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(error) = disk.write(&key, &stored) {
                stored.on_disk.store(false, Ordering::Relaxed);
                tracing::warn!(key, %error, "disk tier write failed");
            }
        });
    }

    /// Removes every stored response for `key` (hard purge, invalidation).
    pub async fn remove(&self, key: &str) -> usize {
        let removed = self.memory.remove(key).map_or(0, |variants| variants.len());
        let on_disk = self
            .on_disk(
                move |disk, key| disk.remove_where(|other| other == key),
                key,
            )
            .await;
        removed.max(on_disk)
    }

    /// Removes every stored response whose key starts with `prefix`.
    pub async fn remove_prefix(&self, prefix: &str) -> usize {
        let keys = self.memory_keys(|key| key.starts_with(prefix));
        let mut removed = 0;
        for key in keys {
            removed += self
                .memory
                .remove(&*key)
                .map_or(0, |variants| variants.len());
        }
        let on_disk = self
            .on_disk(
                move |disk, prefix| disk.remove_where(|other| other.starts_with(prefix)),
                prefix,
            )
            .await;
        removed.max(on_disk)
    }

    /// Marks stored responses stale (soft purge): they then need
    /// revalidation, but may still be served within stale-while-revalidate
    /// or stale-if-error. `prefix` selects every key starting with `target`.
    pub async fn invalidate(&self, target: &str, prefix: bool) -> usize {
        let keys = self.memory_keys(|key| {
            if prefix {
                key.starts_with(target)
            } else {
                key == target
            }
        });
        let mut invalidated = 0;
        for key in keys {
            if let Some(variants) = self.memory.get(&*key) {
                let marked: Vec<Arc<StoredResponse>> = variants
                    .iter()
                    .map(|stored| {
                        Arc::new(stored.derive(
                            stored.headers.clone(),
                            stored.request_time,
                            stored.response_time,
                            true,
                        ))
                    })
                    .collect();
                for stored in &marked {
                    // Already on disk, where a marker file records the purge.
                    stored.on_disk.store(true, Ordering::Relaxed);
                }
                invalidated += marked.len();
                self.memory.insert(key, Arc::new(marked));
            }
        }
        let on_disk = self
            .on_disk(
                move |disk, target| {
                    disk.invalidate_where(|other| {
                        if prefix {
                            other.starts_with(target)
                        } else {
                            other == target
                        }
                    })
                },
                target,
            )
            .await;
        invalidated.max(on_disk)
    }

    fn memory_keys(&self, matches: impl Fn(&str) -> bool) -> Vec<Arc<str>> {
        self.memory
            .iter()
            .filter(|(key, _)| matches(key))
            .map(|(key, _)| Arc::clone(&*key))
            .collect()
    }

    async fn on_disk(
        &self,
        work: impl FnOnce(&DiskTier, &str) -> usize + Send + 'static,
        argument: &str,
    ) -> usize {
        let Some(disk) = self.disk.clone() else {
            return 0;
        };
        let argument = argument.to_string();
        tokio::task::spawn_blocking(move || work(&disk, &argument))
            .await
            .unwrap_or(0)
    }

    /// Applies the memory tier's pending admissions and evictions (tests
    /// look at its state right after a burst of inserts).
    pub fn settle(&self) {
        self.memory.run_pending_tasks();
    }

    /// Objects in the memory tier now. The tier counts inserts and
    /// evictions lazily (moka applies them in batches), so they are applied
    /// first: otherwise a figure read right after a fill says 0.
    pub fn memory_objects(&self) -> u64 {
        self.memory.run_pending_tasks();
        self.memory.entry_count()
    }

    /// Bytes held in the memory tier now, pending inserts and evictions
    /// applied first (see [`Store::memory_objects`]).
    pub fn memory_bytes(&self) -> u64 {
        self.memory.run_pending_tasks();
        self.memory.weighted_size()
    }
}

/// Turns on the memory tier's use counting (see the module's doc): fills
/// the new tier with placeholders under keys no request can have (request
/// targets start with `/`), lets moka see it full, then removes them.
fn start_counting_uses(
    memory: &moka::sync::Cache<Arc<str>, Variants>,
    placeholders: u64,
    placeholder_weight: u64,
) {
    let capacity = memory.policy().max_capacity().unwrap_or(0);
    let count = placeholders.min(capacity / placeholder_weight.max(1));
    let keys: Vec<Arc<str>> = (0..count)
        .map(|n| Arc::from(format!("\0placeholder {n}")))
        .collect();
    let empty: Variants = Arc::new(Vec::new());
    for key in &keys {
        memory.insert(key.clone(), empty.clone());
    }
    memory.run_pending_tasks();
    for key in &keys {
        memory.invalidate(key);
    }
    memory.run_pending_tasks();
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::{HeaderValue, StatusCode};
    use std::time::SystemTime;

    fn stored(
        body: &'static [u8],
        secondary_key: Vec<(String, Option<String>)>,
    ) -> Arc<StoredResponse> {
        Arc::new(StoredResponse::new(
            StatusCode::OK,
            HeaderMap::new(),
            Bytes::from_static(body),
            SystemTime::now(),
            SystemTime::now(),
            secondary_key,
        ))
    }

    async fn wait_for_disk_objects(metrics: &Metrics, count: u64) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while metrics.disk_objects.load(Ordering::Relaxed) != count {
            assert!(
                tokio::time::Instant::now() < deadline,
                "disk write never finished"
            );
            tokio::task::yield_now().await;
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    #[test]
    fn room_runs_out_at_seven_eighths_of_the_memory_tier() {
        let store = Store::new(1 << 20, None, Arc::new(Metrics::default()));
        let object = |n: u8| {
            Arc::new(StoredResponse::new(
                StatusCode::OK,
                HeaderMap::new(),
                Bytes::from(vec![n; 100_000]),
                SystemTime::now(),
                SystemTime::now(),
                vec![],
            ))
        };
        assert!(store.has_room());
        // Each weighs 100,000 + 256 bytes + its key: eight are 802,048 +
        // keys, below 7/8 of 1 MiB (917,504); ten are 1,002,560 + keys.
        for n in 0..8 {
            store.insert(&format!("/segment-{n}"), object(n));
        }
        store.settle();
        assert!(store.has_room(), "{} bytes held", store.memory_bytes());
        assert!(store.memory_contains("/segment-0"));
        assert!(!store.memory_contains("/segment-9"));
        for n in 8..10 {
            store.insert(&format!("/segment-{n}"), object(n));
        }
        store.settle();
        assert_eq!(store.memory_objects(), 10);
        assert!(!store.has_room(), "{} bytes held", store.memory_bytes());
    }

    #[tokio::test]
    async fn one_hit_wonders_stay_off_disk_and_second_use_reaches_it() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::default());
        let disk = Arc::new(DiskTier::open(dir.path(), 1 << 20, metrics.clone()).unwrap());
        let store = Store::new(1 << 20, Some(disk.clone()), metrics.clone());
        store.insert("/once", stored(b"a", vec![]));
        store.insert("/twice", stored(b"b", vec![]));
        assert!(matches!(
            store.lookup("/twice", &HeaderMap::new()).await,
            Lookup::Hit(_, Tier::Memory)
        ));
        wait_for_disk_objects(&metrics, 1).await;
        assert!(disk.contains("/twice"));
        assert!(!disk.contains("/once"));
        // A fresh memory tier over the same disk finds it there.
        let store = Store::new(1 << 20, Some(disk), metrics.clone());
        let Lookup::Hit(found, Tier::Disk) = store.lookup("/twice", &HeaderMap::new()).await else {
            panic!("expected a disk hit")
        };
        assert_eq!(&found.body[..], b"b");
        assert!(matches!(
            store.lookup("/twice", &HeaderMap::new()).await,
            Lookup::Hit(_, Tier::Memory)
        ));
    }

    #[tokio::test]
    async fn hot_objects_outlive_a_flood_of_one_off_keys_inserted_after_them() {
        let metrics = Arc::new(Metrics::default());
        let store = Store::new(1 << 20, None, metrics);
        assert_eq!(store.memory_objects(), 0, "placeholders left behind");
        let segment = |_: u64| stored(&[b's'; 48 * 1024], vec![]);
        // Used a few times while the tier is still nearly empty.
        for key in ["/v/hot/index.m3u8", "/v/hot/1.m4s"] {
            assert!(matches!(
                store.lookup(key, &HeaderMap::new()).await,
                Lookup::UriMiss
            ));
            store.insert(key, segment(0));
            for _ in 0..3 {
                assert!(matches!(
                    store.lookup(key, &HeaderMap::new()).await,
                    Lookup::Hit(..)
                ));
            }
        }
        // Ten tiers' worth of keys each used once, as the edge handles a
        // miss: a lookup, the coalescing check, the insert.
        for n in 0..200 {
            let key = format!("/v/cold/{n}.m4s");
            store.lookup(&key, &HeaderMap::new()).await;
            assert!(!store.memory_has(&key, &HeaderMap::new()));
            store.insert(&key, segment(n));
            store.settle();
        }
        for key in ["/v/hot/index.m3u8", "/v/hot/1.m4s"] {
            assert!(
                matches!(store.lookup(key, &HeaderMap::new()).await, Lookup::Hit(..)),
                "{key} was evicted by one-off keys"
            );
        }
    }

    #[tokio::test]
    async fn the_memory_figures_count_an_object_as_soon_as_it_is_stored() {
        let store = Store::new(1 << 20, None, Arc::new(Metrics::default()));
        store.insert("/v/a/1.m4s", stored(&[b's'; 10_000], vec![]));
        assert_eq!(store.memory_objects(), 1);
        // The body and its key, at least; headers and bookkeeping on top.
        let bytes = store.memory_bytes();
        assert!(
            (10_000..20_000).contains(&bytes),
            "one 10,000-byte object counted as {bytes} bytes"
        );
        assert_eq!(store.remove("/v/a/1.m4s").await, 1);
        assert_eq!((store.memory_objects(), store.memory_bytes()), (0, 0));
    }

    #[tokio::test]
    async fn variants_and_purges() {
        let metrics = Arc::new(Metrics::default());
        let store = Store::new(1 << 20, None, metrics);
        let english = vec![("accept-language".to_string(), Some("en".to_string()))];
        let french = vec![("accept-language".to_string(), Some("fr".to_string()))];
        store.insert("/v/a/1.m4s", stored(b"en", english));
        store.insert("/v/a/1.m4s", stored(b"fr", french));
        store.insert("/v/b/1.m4s", stored(b"b", vec![]));
        let mut request = HeaderMap::new();
        request.insert("accept-language", HeaderValue::from_static("fr"));
        let Lookup::Hit(found, _) = store.lookup("/v/a/1.m4s", &request).await else {
            panic!("expected a hit")
        };
        assert_eq!(&found.body[..], b"fr");
        request.insert("accept-language", HeaderValue::from_static("de"));
        assert!(matches!(
            store.lookup("/v/a/1.m4s", &request).await,
            Lookup::VaryMiss
        ));
        assert_eq!(store.invalidate("/v/a/", true).await, 2);
        request.insert("accept-language", HeaderValue::from_static("en"));
        let Lookup::Hit(found, _) = store.lookup("/v/a/1.m4s", &request).await else {
            panic!("expected a hit")
        };
        assert!(found.invalidated);
        assert_eq!(store.remove_prefix("/v/a/").await, 2);
        assert!(matches!(
            store.lookup("/v/a/1.m4s", &request).await,
            Lookup::UriMiss
        ));
        assert!(matches!(
            store.lookup("/v/b/1.m4s", &HeaderMap::new()).await,
            Lookup::Hit(..)
        ));
        assert_eq!(store.remove("/v/b/1.m4s").await, 1);
    }
}
