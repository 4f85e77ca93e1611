//! A stored response: what the cache keeps of one origin response, and the
//! freshness facts derived from it at a given instant.
//!
//! Immutable once shared (`Arc`): freshening after a 304 or a soft purge
//! builds a new one, so a response being sent is never changed under it.

use std::sync::atomic::AtomicBool;
use std::time::SystemTime;

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
        }
    }

    pub fn freshness(&self, now: SystemTime, rules: &FreshnessRules) -> Freshness {
        Freshness {
            lifetime: policy::freshness_lifetime(
                self.status,
                &self.headers,
                self.response_time,
                rules,
            ),
            age: policy::current_age(&self.headers, self.request_time, self.response_time, now),
            invalidated: self.invalidated,
        }
    }

    pub fn directives(&self) -> Directives {
        policy::response_directives(&self.headers).0
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
