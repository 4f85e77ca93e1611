//! The `Cache-Status` field (RFC 9211): this cache's member, and every
//! verdict and reason it names, rendered to text here and nowhere else.
//! The edge decides with the enums; only [`CacheStatus::member`] turns
//! them into the header's words.

use http::{HeaderMap, HeaderValue};

use super::*;
use crate::slice::SliceRefusal;

/// Why a request went forward to the origin: `fwd` (RFC 9211 §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardReason {
    /// The cache was not used for this request (an unsafe method).
    Bypass,
    /// Nothing is stored under the URI.
    UriMiss,
    /// Something is stored under the URI, but for other `Vary` values.
    VaryMiss,
    /// A miss of no finer kind (hit-for-pass, churn).
    Miss,
    /// The request's directives or preconditions asked to go forward.
    Request,
    /// A stale response is stored and was validated.
    Stale,
}

impl ForwardReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ForwardReason::Bypass => "bypass",
            ForwardReason::UriMiss => "uri-miss",
            ForwardReason::VaryMiss => "vary-miss",
            ForwardReason::Miss => "miss",
            ForwardReason::Request => "request",
            ForwardReason::Stale => "stale",
        }
    }
}

/// Why a response from the origin was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStored {
    /// RFC 9111 forbids it ([`storable`]).
    Policy(NotStorable),
    /// Larger than `max_object_size` (and not sliced).
    TooLarge,
    /// A 5xx, which never replaces a stored response stale-if-error may
    /// still serve.
    ServerError,
    /// The origin's 416 to a slice probe: right for the client that asked,
    /// not the object's answer for others.
    RangeNotSatisfiable,
    /// An error status answering a prefetch, which no client asked for.
    PrefetchError,
}

impl NotStored {
    /// True when the response belongs to one requester: not handed to the
    /// requests that waited on the same fill either.
    pub fn personal(self) -> bool {
        match self {
            NotStored::Policy(reason) => reason.personal(),
            NotStored::TooLarge | NotStored::RangeNotSatisfiable => true,
            NotStored::ServerError | NotStored::PrefetchError => false,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NotStored::Policy(reason) => reason.as_str(),
            NotStored::TooLarge => "too-large",
            NotStored::ServerError => "server-error",
            NotStored::RangeNotSatisfiable => "range-not-satisfiable",
            NotStored::PrefetchError => "prefetch-error",
        }
    }
}

impl NotStorable {
    pub fn as_str(self) -> &'static str {
        match self {
            NotStorable::Method => "method",
            NotStorable::Status => "status",
            NotStorable::RequestNoStore => "request-no-store",
            NotStorable::NoStore => "no-store",
            NotStorable::Private => "private",
            NotStorable::Authorization => "authorization",
            NotStorable::SetCookie => "set-cookie",
            NotStorable::VaryStar => "vary-star",
            NotStorable::NoFreshnessInformation => "no-freshness",
        }
    }
}

/// Why an origin fetch failed, as `Cache-Status` tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginFailure {
    Timeout,
    Unreachable,
    Error,
    /// The client's own request body was malformed.
    RequestBody,
}

/// What else this cache did: `detail` (RFC 9211 §2.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// The response was not stored, and why.
    NotStored(NotStored),
    /// The URL recently gave a response that cannot be shared: passed
    /// without coalescing.
    HitForPass,
    /// `only-if-cached` and nothing usable is stored (RFC 9111 §5.2.1.7).
    OnlyIfCached,
    StaleIfError,
    StaleWhileRevalidate,
    /// A waiter whose fill's response is not for it: it fetched its own.
    NotShareable,
    /// A large object, answered from slices.
    Sliced,
    /// The origin would not serve slices of this object.
    SliceRefused,
    /// The object changed more often than a response could be assembled.
    SliceChurn,
    /// The origin's answer to a slice request could not be used.
    UnusableSlice(SliceRefusal),
    Origin(OriginFailure),
}

impl Detail {
    pub fn as_str(self) -> &'static str {
        match self {
            Detail::NotStored(reason) => reason.as_str(),
            Detail::HitForPass => "hit-for-pass",
            Detail::OnlyIfCached => "only-if-cached",
            Detail::StaleIfError => "stale-if-error",
            Detail::StaleWhileRevalidate => "stale-while-revalidate",
            Detail::NotShareable => "not-shareable",
            Detail::Sliced => "sliced",
            Detail::SliceRefused => "slice-refused",
            Detail::SliceChurn => "slice-churn",
            Detail::UnusableSlice(reason) => reason.as_str(),
            Detail::Origin(OriginFailure::Timeout) => "origin-timeout",
            Detail::Origin(OriginFailure::Unreachable) => "origin-unreachable",
            Detail::Origin(OriginFailure::Error) => "origin-error",
            Detail::Origin(OriginFailure::RequestBody) => "request-body",
        }
    }
}

impl SliceRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            SliceRefusal::NotPartial => "not-partial",
            SliceRefusal::BadContentRange => "bad-content-range",
            SliceRefusal::WrongRange => "wrong-range",
            SliceRefusal::BadLength => "bad-length",
            SliceRefusal::NoLength => "no-length",
            SliceRefusal::Vary => "vary",
            SliceRefusal::WeakEtag => "weak-etag",
            SliceRefusal::BadEtag => "bad-etag",
            SliceRefusal::NoValidator => "no-validator",
            SliceRefusal::NotStorable(reason) => reason.as_str(),
        }
    }
}

/// One member of a `Cache-Status` field (RFC 9211), for this cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStatus {
    pub hit: bool,
    /// `fwd`: why the request went forward.
    pub forward: Option<ForwardReason>,
    pub forward_status: Option<u16>,
    pub stored: bool,
    pub collapsed: bool,
    pub ttl: Option<i64>,
    pub detail: Option<Detail>,
}

impl CacheStatus {
    pub fn hit(ttl: i64) -> Self {
        Self {
            hit: true,
            ttl: Some(ttl),
            ..Self::default()
        }
    }

    pub fn forward(reason: ForwardReason) -> Self {
        Self {
            forward: Some(reason),
            ..Self::default()
        }
    }

    /// This member with `detail` set.
    pub fn with_detail(mut self, detail: Detail) -> Self {
        self.detail = Some(detail);
        self
    }

    /// The field member, e.g. `kinema; fwd=uri-miss; fwd-status=200; stored`.
    pub fn member(&self) -> String {
        use std::fmt::Write as _;
        let mut member = String::with_capacity(64);
        member.push_str("kinema");
        if self.hit {
            member.push_str("; hit");
        }
        if let Some(forward) = self.forward {
            member.push_str("; fwd=");
            member.push_str(forward.as_str());
        }
        if let Some(status) = self.forward_status {
            let _ = write!(member, "; fwd-status={status}");
        }
        if self.stored {
            member.push_str("; stored");
        }
        if self.collapsed {
            member.push_str("; collapsed");
        }
        if let Some(ttl) = self.ttl {
            let _ = write!(member, "; ttl={ttl}");
        }
        if let Some(detail) = self.detail {
            member.push_str("; detail=");
            member.push_str(detail.as_str());
        }
        member
    }

    /// Appends this cache's member to the field: RFC 9211 §2 orders members
    /// from the origin outwards, so ours comes last.
    pub fn apply(&self, headers: &mut HeaderMap) {
        // Usually no cache before us added a member: no list to join.
        if !headers.contains_key(&CACHE_STATUS) {
            if let Ok(value) = HeaderValue::from_maybe_shared(bytes::Bytes::from(self.member())) {
                headers.insert(CACHE_STATUS.clone(), value);
            }
            return;
        }
        let mut value = headers
            .get_all(&CACHE_STATUS)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .collect::<Vec<_>>()
            .join(", ");
        if !value.is_empty() {
            value.push_str(", ");
        }
        value.push_str(&self.member());
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(CACHE_STATUS.clone(), value);
        }
    }
}
