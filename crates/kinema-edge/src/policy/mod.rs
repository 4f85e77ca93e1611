//! The caching rules of RFC 9111 (with RFC 5861 stale extensions, RFC 9213
//! `CDN-Cache-Control` and RFC 9211 `Cache-Status`) as pure functions over
//! header maps and instants.
//!
//! Nothing here stores, fetches or waits: the edge asks these functions
//! whether a response may be stored, how long it stays fresh, how old it is
//! and whether a stored response may answer a request, then acts. Keeping
//! the rules pure keeps every one of them unit-testable against the RFC text.
//!
//! Where the RFC leaves a choice, the choice made here is the careful one
//! (named at each place): duplicated or invalid freshness information makes a
//! response stale, `Set-Cookie` responses are not stored, qualified
//! `no-cache` is treated as unqualified.

mod cache_status;
mod directives;
mod freshness;
mod headers;
mod storability;
#[cfg(test)]
mod tests;
mod vary;

pub use self::cache_status::*;
pub use self::directives::*;
pub use self::freshness::*;
pub use self::headers::*;
pub use self::storability::*;
pub use self::vary::*;

use http::HeaderName;

/// The `CDN-Cache-Control` field (RFC 9213), which targets this cache.
pub static CDN_CACHE_CONTROL: HeaderName = HeaderName::from_static("cdn-cache-control");
/// The `Cache-Status` field (RFC 9211).
pub static CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");
