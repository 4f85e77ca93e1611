//! A stored response: what the cache keeps of one origin response, and the
//! freshness facts derived from it at a given instant.
//!
//! Immutable once shared (`Arc`): freshening after a 304 or a soft purge
//! builds a new one, so a response being sent is never changed under it.

use std::sync::OnceLock;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use crate::policy::{self, Directives, Freshness, FreshnessRules};

#[derive(Debug)]
pub struct StoredResponse {
    pub status: StatusCode,
    /// Without hop-by-hop fields (RFC 9111 §3.1).
    pub headers: HeaderMap,
    pub body: Bytes,
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

impl StoredResponse {
    pub fn new(
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        request_time: SystemTime,
        response_time: SystemTime,
        secondary_key: Vec<(String, Option<String>)>,
    ) -> Self {
        Self {
            status,
            headers,
            body,
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
