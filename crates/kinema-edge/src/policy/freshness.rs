//! RFC 9111 §4.2 and RFC 5861: freshness lifetime, age, and whether a
//! stored response may answer a request (fresh, stale, on error).

use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode, header};
use kinema_http::http_date;

use super::*;

/// Settings of the freshness rules that RFC 9111 leaves to the cache.
#[derive(Debug, Clone, Copy)]
pub struct FreshnessRules {
    /// Heuristic freshness is this fraction of the time since
    /// `Last-Modified` (§4.2.2 suggests 10%).
    pub heuristic_fraction: f64,
    /// And never longer than this.
    pub heuristic_max: Duration,
}

impl Default for FreshnessRules {
    fn default() -> Self {
        Self {
            heuristic_fraction: 0.1,
            heuristic_max: Duration::from_secs(86_400),
        }
    }
}

/// RFC 9111 §4.2.1: the freshness lifetime of a stored response, for a
/// shared cache: s-maxage, else max-age, else Expires − Date, else a
/// heuristic where allowed, else zero.
pub fn freshness_lifetime(
    status: StatusCode,
    headers: &HeaderMap,
    response_time: SystemTime,
    rules: &FreshnessRules,
) -> Duration {
    let (directives, targeted) = response_directives(headers);
    for name in ["s-maxage", "max-age"] {
        match directives.seconds(name) {
            Seconds::Value(seconds) => return Duration::from_secs(seconds),
            Seconds::Invalid => return Duration::ZERO,
            Seconds::Absent => {}
        }
    }
    let date = date_value(headers, response_time);
    if !targeted && headers.contains_key(header::EXPIRES) {
        // §5.3: an invalid date (notably "0") means already expired; two
        // different Expires make the response stale (§4.2.1).
        let mut values = headers.get_all(header::EXPIRES).iter();
        let first = values.next();
        if values.any(|other| Some(other) != first) {
            return Duration::ZERO;
        }
        return match first.and_then(http_date::parse) {
            Some(expires) => expires.duration_since(date).unwrap_or(Duration::ZERO),
            None => Duration::ZERO,
        };
    }
    // §4.2.2: heuristics only when nothing explicit is given, for statuses
    // cacheable by default or marked public, and (our choice, the common
    // one) only from Last-Modified.
    if (heuristically_cacheable(status) || directives.has("public"))
        && let Some(last_modified) = headers
            .get(header::LAST_MODIFIED)
            .and_then(http_date::parse)
        && let Ok(since) = date.duration_since(last_modified)
    {
        return since
            .mul_f64(rules.heuristic_fraction)
            .min(rules.heuristic_max);
    }
    Duration::ZERO
}

/// RFC 9111 §4.2.3: the current age of a stored response.
pub fn current_age(
    headers: &HeaderMap,
    request_time: SystemTime,
    response_time: SystemTime,
    now: SystemTime,
) -> Duration {
    let date = date_value(headers, response_time);
    let apparent_age = response_time.duration_since(date).unwrap_or_default();
    let response_delay = response_time
        .duration_since(request_time)
        .unwrap_or_default();
    let corrected_age_value = age_value(headers) + response_delay;
    let corrected_initial_age = apparent_age.max(corrected_age_value);
    let resident_time = now.duration_since(response_time).unwrap_or_default();
    corrected_initial_age + resident_time
}

/// `Age` of a received message (§5.1): the first member of the list; an
/// invalid value is ignored.
pub fn age_value(headers: &HeaderMap) -> Duration {
    headers
        .get(header::AGE)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.split(',').next())
        .and_then(|first| parse_delta_seconds(first.trim()))
        .map(Duration::from_secs)
        .unwrap_or_default()
}

pub(super) fn date_value(headers: &HeaderMap, response_time: SystemTime) -> SystemTime {
    headers
        .get(header::DATE)
        .and_then(http_date::parse)
        .unwrap_or(response_time)
}

/// What a stored response may do for a request, before asking the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// Fresh and acceptable: serve it.
    Fresh,
    /// Stale, but the client allowed it with `max-stale` (§5.2.1.2).
    StaleAllowedByClient,
    /// Stale within `stale-while-revalidate` (RFC 5861 §3): serve it and
    /// refresh in the background.
    StaleWhileRevalidate,
    /// Must be validated with the origin first. `forced_by_request` is
    /// true when the request's directives, not staleness, force it (for
    /// `Cache-Status: fwd=request`).
    Validate { forced_by_request: bool },
}

/// The freshness facts of one stored response at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    pub lifetime: Duration,
    pub age: Duration,
    /// Marked stale by a soft purge: treated as expired whatever its lifetime.
    pub invalidated: bool,
}

impl Freshness {
    pub fn is_fresh(&self) -> bool {
        !self.invalidated && self.lifetime > self.age
    }

    /// How long past its lifetime the response is (zero when fresh).
    pub fn staleness(&self) -> Duration {
        self.age.saturating_sub(self.lifetime)
    }

    /// Remaining freshness in whole seconds, negative when stale (the
    /// `ttl` parameter of `Cache-Status`, RFC 9211 §2.6).
    pub fn ttl_seconds(&self) -> i64 {
        if self.invalidated {
            return -(self.staleness().as_secs() as i64);
        }
        self.lifetime.as_secs() as i64 - self.age.as_secs() as i64
    }
}

/// True when a response's directives forbid serving it stale (§4.2.4):
/// must-revalidate, proxy-revalidate, s-maxage (which implies
/// proxy-revalidate for a shared cache, §5.2.2.10) or no-cache.
pub fn stale_prohibited(response: &Directives) -> bool {
    response.has("must-revalidate")
        || response.has("proxy-revalidate")
        || response.has("s-maxage")
        || response.has("no-cache")
}

/// RFC 9111 §4 and §5.2.1: may the stored response answer this request
/// without contacting the origin?
pub fn reuse(request: &Directives, response: &Directives, freshness: Freshness) -> Reuse {
    // §5.2.2.4: no-cache (qualified or not; our choice treats the qualified
    // form as unqualified, which is always safe) demands validation.
    if response.has("no-cache") {
        return Reuse::Validate {
            forced_by_request: false,
        };
    }
    // §5.2.1.4: a request no-cache demands validation.
    if request.has("no-cache") {
        return Reuse::Validate {
            forced_by_request: true,
        };
    }
    // §5.2.1.1: max-age bounds the acceptable age.
    match request.seconds("max-age") {
        Seconds::Value(max_age) if freshness.age > Duration::from_secs(max_age) => {
            return Reuse::Validate {
                forced_by_request: true,
            };
        }
        Seconds::Invalid => {
            return Reuse::Validate {
                forced_by_request: true,
            };
        }
        _ => {}
    }
    if freshness.is_fresh() {
        // §5.2.1.3: min-fresh asks for remaining freshness.
        if let Seconds::Value(min_fresh) = request.seconds("min-fresh")
            && freshness.lifetime - freshness.age < Duration::from_secs(min_fresh)
        {
            return Reuse::Validate {
                forced_by_request: true,
            };
        }
        return Reuse::Fresh;
    }
    if stale_prohibited(response) {
        return Reuse::Validate {
            forced_by_request: false,
        };
    }
    let staleness = freshness.staleness();
    // §5.2.1.2: max-stale without a value accepts any staleness.
    if request.has("max-stale") {
        match request.seconds("max-stale") {
            Seconds::Absent => return Reuse::StaleAllowedByClient,
            Seconds::Value(limit) if staleness <= Duration::from_secs(limit) => {
                return Reuse::StaleAllowedByClient;
            }
            _ if request.argument("max-stale").is_none() => {
                return Reuse::StaleAllowedByClient;
            }
            _ => {}
        }
    }
    if let Seconds::Value(window) = response.seconds("stale-while-revalidate")
        && staleness <= Duration::from_secs(window)
    {
        return Reuse::StaleWhileRevalidate;
    }
    Reuse::Validate {
        forced_by_request: false,
    }
}

/// RFC 5861 §4 and RFC 9111 §4.2.4: may a stale response be served because
/// the origin failed (unreachable, timed out, 5xx)? Allowed within the
/// response's or the request's `stale-if-error`, or within the configured
/// grace (a cache that is "disconnected" may serve stale), never when a
/// directive prohibits stale responses.
pub fn stale_on_error_allowed(
    request: &Directives,
    response: &Directives,
    freshness: Freshness,
    grace: Duration,
) -> bool {
    if freshness.is_fresh() {
        return true;
    }
    if stale_prohibited(response) {
        return false;
    }
    let staleness = freshness.staleness();
    let window = |directives: &Directives| match directives.seconds("stale-if-error") {
        Seconds::Value(seconds) => Duration::from_secs(seconds),
        _ => Duration::ZERO,
    };
    let allowed = window(response).max(window(request)).max(grace);
    staleness <= allowed && !allowed.is_zero()
}
