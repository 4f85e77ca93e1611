//! A stored response: what the cache keeps of one origin response, and the
//! freshness facts derived from it at a given instant.
//!
//! Immutable once shared (`Arc`): freshening after a 304 or a soft purge
//! builds a new one, so a response being sent is never changed under it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use kinema_http::SharedFile;

use crate::policy::{self, Directives, Freshness, FreshnessRules};

#[derive(Debug)]
pub struct StoredResponse {
    pub status: StatusCode,
    /// Without hop-by-hop fields (RFC 9111 §3.1).
    pub headers: HeaderMap,
    pub body: Bytes,
    /// For bodies of [`SHARED_FILE_MIN`] bytes or more, the same content in
    /// a sealed memory file: `body` is then its read-only mapping, and a hit
    /// is sent with `sendfile` from it on plain HTTP/1.1 (no copy per
    /// viewer), as the origin does.
    pub file: Option<SharedFile>,
    /// The place `file` holds among [`shared_file_cap`] (shared by derived
    /// copies, freed when the last one goes).
    file_slot: Option<Arc<SharedFileSlot>>,
    /// When the request that fetched it was sent, and when its response
    /// arrived (RFC 9111 §4.2.3 `request_time`, `response_time`).
    pub request_time: SystemTime,
    pub response_time: SystemTime,
    /// The nominated request headers' values (Vary), RFC 9111 §4.1.
    pub secondary_key: Vec<(String, Option<String>)>,
    /// Marked stale by a soft purge.
    pub invalidated: bool,
    /// Already written to the disk tier (or read from it).
    pub on_disk: AtomicBool,
    /// Facts derived from the headers, computed on first use: the headers
    /// never change once shared, nor do the edge's freshness rules while it
    /// runs, so a hit parses no `Date` or `Cache-Control` again.
    lifetime: OnceLock<Duration>,
    initial_age: OnceLock<Duration>,
    directives: OnceLock<Directives>,
}

/// Smallest body kept as a [`SharedFile`]: below this the system calls of a
/// separate `sendfile` cost more than copying the bytes.
pub const SHARED_FILE_MIN: usize = 64 * 1024;

/// Stored responses holding a memory file now, in this process.
static SHARED_FILES: AtomicUsize = AtomicUsize::new(0);

/// Most stored responses held in memory files at once: an eighth of the
/// open-file limit (read at the first large response, after the server has
/// raised it). Each memory file is a descriptor for as long as its object
/// is cached; without a cap, a flood of distinct large objects (or a
/// memory tier larger than the limit allows) took every descriptor and
/// left new clients unaccepted. Beyond the cap a response is held as plain
/// bytes: the same body, copied per viewer instead of sent by `sendfile`.
pub fn shared_file_cap() -> usize {
    static CAP: OnceLock<usize> = OnceLock::new();
    *CAP.get_or_init(|| {
        let limit = open_file_limit().unwrap_or(1024);
        usize::try_from(limit / 8).unwrap_or(usize::MAX)
    })
}

/// Stored responses holding a memory file now (for the metrics).
pub fn shared_files() -> usize {
    SHARED_FILES.load(Ordering::Relaxed)
}

/// The soft `RLIMIT_NOFILE` of this process, from `/proc/self/limits`
/// (`u64::MAX` when unlimited).
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    let soft = line
        .strip_prefix("Max open files")?
        .split_whitespace()
        .next()?;
    if soft == "unlimited" {
        return Some(u64::MAX);
    }
    soft.parse().ok()
}

/// One of the [`shared_file_cap`] places; given back on drop.
#[derive(Debug)]
struct SharedFileSlot;

impl SharedFileSlot {
    fn take() -> Option<Self> {
        let cap = shared_file_cap();
        SHARED_FILES
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held < cap).then_some(held + 1)
            })
            .ok()
            .map(|_| SharedFileSlot)
    }
}

impl Drop for SharedFileSlot {
    fn drop(&mut self) {
        SHARED_FILES.fetch_sub(1, Ordering::AcqRel);
    }
}

impl StoredResponse {
    pub fn new(
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        request_time: SystemTime,
        response_time: SystemTime,
        secondary_key: Vec<(String, Option<String>)>,
    ) -> Self {
        // A memory file is an optimisation: beyond the cap, or if the
        // kernel refuses one, the plain buffer serves the same bytes.
        let (file, file_slot) = match (body.len() >= SHARED_FILE_MIN)
            .then(SharedFileSlot::take)
            .flatten()
        {
            Some(slot) => match SharedFile::from_bytes(&body) {
                Ok(file) => (Some(file), Some(Arc::new(slot))),
                Err(_) => (None, None),
            },
            None => (None, None),
        };
        let body = file.as_ref().map_or(body, |file| file.bytes().clone());
        Self {
            status,
            headers,
            body,
            file,
            file_slot,
            request_time,
            response_time,
            secondary_key,
            invalidated: false,
            on_disk: AtomicBool::new(false),
            lifetime: OnceLock::new(),
            initial_age: OnceLock::new(),
            directives: OnceLock::new(),
        }
    }

    /// A copy with other headers and times (after a 304) or marked
    /// invalidated (soft purge); the body is shared, not copied.
    pub fn derive(
        &self,
        headers: HeaderMap,
        request_time: SystemTime,
        response_time: SystemTime,
        invalidated: bool,
    ) -> Self {
        Self {
            status: self.status,
            headers,
            body: self.body.clone(),
            file: self.file.clone(),
            file_slot: self.file_slot.clone(),
            request_time,
            response_time,
            secondary_key: self.secondary_key.clone(),
            invalidated,
            on_disk: AtomicBool::new(false),
            lifetime: OnceLock::new(),
            initial_age: OnceLock::new(),
            directives: OnceLock::new(),
        }
    }

    /// `rules` must be the same on every call (they are the edge's).
    pub fn freshness(&self, now: SystemTime, rules: &FreshnessRules) -> Freshness {
        Freshness {
            lifetime: *self.lifetime.get_or_init(|| {
                policy::freshness_lifetime(self.status, &self.headers, self.response_time, rules)
            }),
            age: self.age(now),
            invalidated: self.invalidated,
        }
    }

    /// RFC 9111 §4.2.3 `current_age`: the corrected initial age (from
    /// `Age`, `Date` and the exchange times, fixed once stored) plus the
    /// time it has been resident since.
    pub fn age(&self, now: SystemTime) -> Duration {
        let initial = *self.initial_age.get_or_init(|| {
            policy::current_age(
                &self.headers,
                self.request_time,
                self.response_time,
                self.response_time,
            )
        });
        initial + now.duration_since(self.response_time).unwrap_or_default()
    }

    pub fn directives(&self) -> &Directives {
        self.directives
            .get_or_init(|| policy::response_directives(&self.headers).0)
    }

    /// Bytes this response holds, for the byte-weighted tiers.
    pub fn weight(&self) -> u64 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 32)
            .sum();
        (self.body.len() + headers + 256) as u64
    }
}
