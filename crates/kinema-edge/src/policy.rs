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

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use kinema_http::http_date;

/// RFC 9111 §1.2.2: a delta-seconds value larger than the cache can
/// represent is taken as 2^31.
const DELTA_SECONDS_MAX: u64 = 2_147_483_648;

/// The `CDN-Cache-Control` field (RFC 9213), which targets this cache.
pub static CDN_CACHE_CONTROL: HeaderName = HeaderName::from_static("cdn-cache-control");
/// The `Cache-Status` field (RFC 9211).
pub static CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// The value of a directive that takes delta-seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seconds {
    Absent,
    Value(u64),
    /// Not a non-negative integer, or present twice with different values.
    /// RFC 9111 §4.2.1 encourages treating such a response as stale.
    Invalid,
}

/// A parsed `Cache-Control` (or `CDN-Cache-Control`) field: its directives
/// in order, names lowercased, arguments unquoted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directives {
    entries: Vec<(String, Option<String>)>,
}

impl Directives {
    /// Parses every line of `name` in `headers` as one list (RFC 9110 §5.3).
    pub fn from_headers(headers: &HeaderMap, name: &HeaderName) -> Self {
        let mut entries = Vec::new();
        for value in headers.get_all(name) {
            let Ok(text) = value.to_str() else { continue };
            for element in split_list(text) {
                let (key, argument) = match element.split_once('=') {
                    Some((key, argument)) => (key.trim(), Some(unquote(argument.trim()))),
                    None => (element, None),
                };
                if key.is_empty() {
                    continue;
                }
                entries.push((key.to_ascii_lowercase(), argument));
            }
        }
        Self { entries }
    }

    /// Parses `CDN-Cache-Control` (RFC 9213 §2.1), which is a Structured
    /// Fields dictionary: a field that does not parse as one is invalid and
    /// must be ignored as a whole, so this answers `None`.
    pub fn targeted(headers: &HeaderMap) -> Option<Self> {
        if !headers.contains_key(&CDN_CACHE_CONTROL) {
            return None;
        }
        for value in headers.get_all(&CDN_CACHE_CONTROL) {
            let text = value.to_str().ok()?;
            for element in split_list(text) {
                let key = element.split_once('=').map_or(element, |(key, _)| key);
                let key = key.trim();
                // sf-key: lcalpha / "*" first, then lcalpha / DIGIT / "_-.*".
                let first_ok = key
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_lowercase() || b == b'*');
                let rest_ok = key
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.*".contains(&b));
                if !first_ok || !rest_ok {
                    return None;
                }
            }
        }
        Some(Self::from_headers(headers, &CDN_CACHE_CONTROL))
    }

    pub fn has(&self, name: &str) -> bool {
        self.entries.iter().any(|(key, _)| key == name)
    }

    /// The argument of the first occurrence of `name`, if it has one.
    pub fn argument(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(key, _)| key == name)
            .and_then(|(_, argument)| argument.as_deref())
    }

    /// True when `name` is present without a field-name list (`private`,
    /// `no-cache`), as opposed to the qualified `private="Set-Cookie"`.
    pub fn unqualified(&self, name: &str) -> bool {
        self.entries
            .iter()
            .any(|(key, argument)| key == name && argument.is_none())
    }

    /// A delta-seconds directive (RFC 9111 §1.2.2). Duplicates that agree are
    /// fine; duplicates that disagree make the value invalid (§4.2.1 allows
    /// "consider stale", the restrictive reading).
    pub fn seconds(&self, name: &str) -> Seconds {
        let mut found = Seconds::Absent;
        for (key, argument) in &self.entries {
            if key != name {
                continue;
            }
            let value = match argument.as_deref().map(parse_delta_seconds) {
                Some(Some(value)) => Seconds::Value(value),
                _ => return Seconds::Invalid,
            };
            match found {
                Seconds::Absent => found = value,
                previous if previous == value => {}
                _ => return Seconds::Invalid,
            }
        }
        found
    }

    /// The field names a qualified directive lists (`private="a, b"`).
    pub fn field_names(&self, name: &str) -> Vec<HeaderName> {
        self.entries
            .iter()
            .filter(|(key, _)| key == name)
            .filter_map(|(_, argument)| argument.as_deref())
            .flat_map(|list| list.split(','))
            .filter_map(|field| HeaderName::from_bytes(field.trim().as_bytes()).ok())
            .collect()
    }
}

/// The directives of a response that apply to this cache: `CDN-Cache-Control`
/// when present and valid (RFC 9213 §2.1: it then takes precedence over
/// `Cache-Control` and `Expires`), else `Cache-Control`. The flag says which.
pub fn response_directives(headers: &HeaderMap) -> (Directives, bool) {
    match Directives::targeted(headers) {
        Some(targeted) => (targeted, true),
        None => (
            Directives::from_headers(headers, &header::CACHE_CONTROL),
            false,
        ),
    }
}

/// The directives of a request. `Pragma: no-cache` counts as `no-cache` only
/// when the request has no `Cache-Control` (RFC 9111 §5.4).
pub fn request_directives(headers: &HeaderMap) -> Directives {
    let mut directives = Directives::from_headers(headers, &header::CACHE_CONTROL);
    if !headers.contains_key(header::CACHE_CONTROL) {
        let pragma = Directives::from_headers(headers, &header::PRAGMA);
        if pragma.has("no-cache") {
            directives.entries.push(("no-cache".into(), None));
        }
    }
    directives
}

/// Why a response was not stored; shown in `Cache-Status` as `detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStorable {
    Method,
    Status,
    RequestNoStore,
    NoStore,
    Private,
    Authorization,
    SetCookie,
    VaryStar,
    NoFreshnessInformation,
}

impl NotStorable {
    pub fn detail(self) -> &'static str {
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

    /// True when the response belongs to one requester, so it must not even
    /// be handed to requests that were waiting on the same fill: they go to
    /// the origin themselves.
    pub fn personal(self) -> bool {
        matches!(
            self,
            NotStorable::Private
                | NotStorable::Authorization
                | NotStorable::SetCookie
                | NotStorable::RequestNoStore
                | NotStorable::NoStore
        )
    }
}

/// Status codes cacheable by default, i.e. heuristically cacheable
/// (RFC 9110 §15.1).
pub fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 206 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// Status codes whose semantics this cache understands (for
/// `must-understand`, RFC 9111 §5.2.2.3): the ones RFC 9110 defines.
fn understood(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200..=206 | 300..=305 | 307 | 308 | 400..=417 | 421 | 422 | 426 | 500..=505
    )
}

/// RFC 9111 §3: may a shared cache store this response to this request?
/// Only GET responses are stored; a HEAD is answered from a stored GET.
pub fn storable(
    method: &Method,
    request_headers: &HeaderMap,
    status: StatusCode,
    response_headers: &HeaderMap,
) -> Result<(), NotStorable> {
    if method != Method::GET {
        return Err(NotStorable::Method);
    }
    // Final status only; 206 and 304 are never stored as such (a 304 freshens
    // a stored response instead, §4.3.4; partial content is not combined).
    if status.is_informational()
        || status == StatusCode::PARTIAL_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Err(NotStorable::Status);
    }
    if request_directives(request_headers).has("no-store") {
        return Err(NotStorable::RequestNoStore);
    }
    let (directives, targeted) = response_directives(response_headers);
    // must-understand (§5.2.2.3) overrides no-store for understood statuses
    // and forbids storing the others.
    if directives.has("must-understand") {
        if !understood(status) {
            return Err(NotStorable::Status);
        }
    } else if directives.has("no-store") {
        return Err(NotStorable::NoStore);
    }
    // Unqualified private forbids a shared cache to store (§5.2.2.7); the
    // qualified form only forbids the named fields, which `stored_headers`
    // removes.
    if directives.unqualified("private") {
        return Err(NotStorable::Private);
    }
    // §3.5: a request with Authorization is stored by a shared cache only if
    // the response explicitly allows it.
    if request_headers.contains_key(header::AUTHORIZATION)
        && !(directives.has("must-revalidate")
            || directives.has("public")
            || directives.has("s-maxage"))
    {
        return Err(NotStorable::Authorization);
    }
    // Choice: RFC 9111 allows storing responses that set cookies, but a
    // cookie is almost always meant for one client; a careful CDN does not
    // hand it to others.
    if response_headers.contains_key(header::SET_COOKIE) {
        return Err(NotStorable::SetCookie);
    }
    if vary_names(response_headers).is_none() {
        return Err(NotStorable::VaryStar);
    }
    let explicit = directives.has("public")
        || directives.has("max-age")
        || directives.has("s-maxage")
        || (!targeted && response_headers.contains_key(header::EXPIRES));
    if !explicit && !heuristically_cacheable(status) {
        return Err(NotStorable::NoFreshnessInformation);
    }
    Ok(())
}

/// The header fields to store from a response: without hop-by-hop fields
/// (§3.1) and without those a qualified `private` names (§5.2.2.7).
pub fn stored_headers(response_headers: &HeaderMap) -> HeaderMap {
    let mut headers = response_headers.clone();
    strip_hop_by_hop(&mut headers);
    let (directives, _) = response_directives(response_headers);
    for name in directives.field_names("private") {
        headers.remove(name);
    }
    headers
}

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

fn date_value(headers: &HeaderMap, response_time: SystemTime) -> SystemTime {
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

/// The request header names a response varies on, lowercased; `None` for
/// `Vary: *`, which no request ever matches (RFC 9111 §4.1).
pub fn vary_names(headers: &HeaderMap) -> Option<Vec<HeaderName>> {
    let mut names = Vec::new();
    for value in headers.get_all(header::VARY) {
        let text = value.to_str().ok()?;
        for element in split_list(text) {
            if element == "*" {
                return None;
            }
            if let Ok(name) = HeaderName::from_bytes(element.as_bytes())
                && !names.contains(&name)
            {
                names.push(name);
            }
        }
    }
    Some(names)
}

/// The values of the nominated request headers: a stored response's
/// secondary key. Lines are combined and whitespace around list
/// separators dropped (the normalisation §4.1 permits); absent stays absent.
pub fn secondary_key(
    names: &[HeaderName],
    request_headers: &HeaderMap,
) -> Vec<(String, Option<String>)> {
    names
        .iter()
        .map(|name| {
            let mut combined: Option<String> = None;
            for value in request_headers.get_all(name) {
                let text = String::from_utf8_lossy(value.as_bytes());
                let normalised: Vec<&str> = text.split(',').map(str::trim).collect();
                let normalised = normalised.join(",");
                combined = Some(match combined {
                    None => normalised,
                    Some(previous) => format!("{previous},{normalised}"),
                });
            }
            (name.as_str().to_string(), combined)
        })
        .collect()
}

/// True when a request selects a stored response with this secondary key.
pub fn vary_matches(stored: &[(String, Option<String>)], request_headers: &HeaderMap) -> bool {
    let names: Vec<HeaderName> = stored
        .iter()
        .filter_map(|(name, _)| HeaderName::from_bytes(name.as_bytes()).ok())
        .collect();
    names.len() == stored.len() && secondary_key(&names, request_headers) == stored
}

/// Removes hop-by-hop fields (RFC 9110 §7.6.1): those named by
/// `Connection` and the well-known ones, which describe one connection and
/// must not be forwarded or stored.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(split_list)
        .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

/// RFC 9111 §3.2 and §4.3.4: freshens stored headers with those of a 304 (or
/// HEAD) response: every field replaces the stored one, except hop-by-hop
/// fields and those describing the stored body's framing.
pub fn merge_headers(stored: &mut HeaderMap, update: &HeaderMap) {
    let mut update = update.clone();
    strip_hop_by_hop(&mut update);
    for name in [
        header::CONTENT_LENGTH,
        header::CONTENT_RANGE,
        header::CONTENT_ENCODING,
        CACHE_STATUS.clone(),
    ] {
        update.remove(name);
    }
    let mut last: Option<HeaderName> = None;
    for (name, value) in update {
        let name = match name {
            Some(name) => {
                stored.remove(&name);
                last = Some(name.clone());
                name
            }
            None => match &last {
                Some(name) => name.clone(),
                None => continue,
            },
        };
        stored.append(name, value);
    }
}

/// True for methods RFC 9110 §9.2.1 calls safe; the others invalidate
/// (RFC 9111 §4.4).
pub fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// One member of a `Cache-Status` field (RFC 9211), for this cache.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheStatus {
    pub hit: bool,
    /// `fwd`: why the request went forward (`uri-miss`, `vary-miss`,
    /// `miss`, `request`, `stale`, `bypass`).
    pub forward: Option<&'static str>,
    pub forward_status: Option<u16>,
    pub stored: bool,
    pub collapsed: bool,
    pub ttl: Option<i64>,
    pub detail: Option<&'static str>,
}

impl CacheStatus {
    pub fn hit(ttl: i64) -> Self {
        Self {
            hit: true,
            ttl: Some(ttl),
            ..Self::default()
        }
    }

    pub fn forward(reason: &'static str) -> Self {
        Self {
            forward: Some(reason),
            ..Self::default()
        }
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
            member.push_str(forward);
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
            member.push_str(detail);
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

/// delta-seconds (§1.2.2), accepting the quoted form recipients ought to
/// accept (§5.2); `None` when not a non-negative integer.
fn parse_delta_seconds(text: &str) -> Option<u64> {
    let text = unquote(text.trim());
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(
        text.parse::<u64>()
            .unwrap_or(DELTA_SECONDS_MAX)
            .min(DELTA_SECONDS_MAX),
    )
}

fn unquote(text: &str) -> String {
    match text
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
    {
        Some(inner) => inner.replace("\\\"", "\"").replace("\\\\", "\\"),
        None => text.to_string(),
    }
}

/// Splits a comma-separated list (RFC 9110 §5.6.1), respecting quoted
/// strings so `private="a, b"` stays one element; empty elements dropped.
fn split_list(text: &str) -> Vec<&str> {
    let mut elements = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    for (index, character) in text.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match character {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                elements.push(text[start..index].trim());
                start = index + 1;
            }
            _ => {}
        }
    }
    elements.push(text[start..].trim());
    elements.retain(|element| !element.is_empty());
    elements
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::headers;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + seconds)
    }

    fn date(seconds: u64) -> String {
        httpdate::fmt_http_date(at(seconds))
    }

    fn lifetime(status: u16, pairs: &[(&str, &str)]) -> u64 {
        freshness_lifetime(
            StatusCode::from_u16(status).unwrap(),
            &headers(pairs),
            at(0),
            &FreshnessRules::default(),
        )
        .as_secs()
    }

    #[test]
    fn directives_parse_quoted_arguments_and_lists() {
        let map = headers(&[
            (
                "cache-control",
                "Max-Age=\"60\", private=\"Set-Cookie, X-A\"",
            ),
            ("cache-control", "public"),
        ]);
        let directives = Directives::from_headers(&map, &header::CACHE_CONTROL);
        assert_eq!(directives.seconds("max-age"), Seconds::Value(60));
        assert!(directives.has("public"));
        assert!(!directives.unqualified("private"));
        assert_eq!(directives.field_names("private").len(), 2);
    }

    #[test]
    fn conflicting_or_invalid_max_age_is_invalid() {
        let map = headers(&[("cache-control", "max-age=60, max-age=120")]);
        let directives = Directives::from_headers(&map, &header::CACHE_CONTROL);
        assert_eq!(directives.seconds("max-age"), Seconds::Invalid);
        let map = headers(&[("cache-control", "max-age=60, max-age=60")]);
        let directives = Directives::from_headers(&map, &header::CACHE_CONTROL);
        assert_eq!(directives.seconds("max-age"), Seconds::Value(60));
        assert_eq!(lifetime(200, &[("cache-control", "max-age=abc")]), 0);
        assert_eq!(lifetime(200, &[("cache-control", "max-age=-5")]), 0);
        assert_eq!(
            lifetime(200, &[("cache-control", "max-age=99999999999999999999")]),
            DELTA_SECONDS_MAX
        );
    }

    #[test]
    fn lifetime_precedence_s_maxage_then_max_age_then_expires() {
        let expires = date(300);
        let now = date(0);
        let all = [
            ("cache-control", "max-age=100, s-maxage=50"),
            ("expires", expires.as_str()),
            ("date", now.as_str()),
        ];
        assert_eq!(lifetime(200, &all), 50);
        assert_eq!(
            lifetime(
                200,
                &[
                    ("cache-control", "max-age=100"),
                    ("expires", &expires),
                    ("date", &now)
                ]
            ),
            100
        );
        assert_eq!(lifetime(200, &[("expires", &expires), ("date", &now)]), 300);
        // Without Date, the time the response was received stands in.
        assert_eq!(lifetime(200, &[("expires", &expires)]), 300);
        assert_eq!(lifetime(200, &[("expires", "0"), ("date", &now)]), 0);
        assert_eq!(
            lifetime(200, &[("expires", &expires), ("expires", &date(10))]),
            0
        );
    }

    #[test]
    fn heuristic_only_for_default_cacheable_statuses_with_last_modified() {
        let now = date(100_000);
        let modified = date(0);
        let pairs = [("date", now.as_str()), ("last-modified", modified.as_str())];
        assert_eq!(lifetime(200, &pairs), 10_000);
        assert_eq!(lifetime(404, &pairs), 10_000);
        assert_eq!(lifetime(302, &pairs), 0);
        assert_eq!(lifetime(200, &[("date", now.as_str())]), 0);
        // Capped at a day.
        let long_ago = date(0);
        let much_later = date(10_000_000);
        assert_eq!(
            lifetime(200, &[("date", &much_later), ("last-modified", &long_ago)]),
            86_400
        );
        // No heuristic when explicit information exists.
        assert_eq!(
            lifetime(
                200,
                &[
                    ("cache-control", "max-age=5"),
                    ("date", &now),
                    ("last-modified", &modified)
                ]
            ),
            5
        );
    }

    #[test]
    fn cdn_cache_control_takes_precedence_over_cache_control_and_expires() {
        let expires = date(1000);
        assert_eq!(
            lifetime(
                200,
                &[
                    ("cache-control", "no-store, max-age=5"),
                    ("cdn-cache-control", "max-age=600"),
                    ("expires", &expires)
                ]
            ),
            600
        );
        // A targeted field ignores Expires entirely.
        assert_eq!(
            lifetime(
                200,
                &[("cdn-cache-control", "public"), ("expires", &expires)]
            ),
            0
        );
        // An invalid targeted field is ignored: Cache-Control applies.
        assert_eq!(
            lifetime(
                200,
                &[
                    ("cache-control", "max-age=5"),
                    ("cdn-cache-control", "Max-Age=600")
                ]
            ),
            5
        );
        let response = headers(&[
            ("cache-control", "no-store"),
            ("cdn-cache-control", "max-age=60"),
        ]);
        assert_eq!(
            storable(&Method::GET, &HeaderMap::new(), StatusCode::OK, &response),
            Ok(())
        );
        let response = headers(&[
            ("cache-control", "max-age=60"),
            ("cdn-cache-control", "no-store"),
        ]);
        assert_eq!(
            storable(&Method::GET, &HeaderMap::new(), StatusCode::OK, &response),
            Err(NotStorable::NoStore)
        );
    }

    #[test]
    fn storability_rules() {
        let get = Method::GET;
        let none = HeaderMap::new();
        let store = |request: &HeaderMap, status: u16, response: &[(&str, &str)]| {
            storable(
                &get,
                request,
                StatusCode::from_u16(status).unwrap(),
                &headers(response),
            )
        };
        assert_eq!(store(&none, 200, &[]), Ok(()));
        assert_eq!(
            store(&none, 302, &[]),
            Err(NotStorable::NoFreshnessInformation)
        );
        assert_eq!(store(&none, 302, &[("cache-control", "max-age=5")]), Ok(()));
        assert_eq!(store(&none, 500, &[("cache-control", "max-age=5")]), Ok(()));
        assert_eq!(
            store(&none, 206, &[("cache-control", "max-age=5")]),
            Err(NotStorable::Status)
        );
        assert_eq!(
            store(&none, 200, &[("cache-control", "no-store")]),
            Err(NotStorable::NoStore)
        );
        assert_eq!(
            store(
                &none,
                200,
                &[("cache-control", "no-store, must-understand")]
            ),
            Ok(())
        );
        assert_eq!(
            store(&none, 200, &[("cache-control", "private")]),
            Err(NotStorable::Private)
        );
        assert_eq!(
            store(&none, 200, &[("cache-control", "private=\"set-cookie\"")]),
            Ok(())
        );
        assert_eq!(
            store(&none, 200, &[("vary", "*")]),
            Err(NotStorable::VaryStar)
        );
        assert_eq!(
            store(&none, 200, &[("set-cookie", "a=b")]),
            Err(NotStorable::SetCookie)
        );
        let no_store_request = headers(&[("cache-control", "no-store")]);
        assert_eq!(
            store(&no_store_request, 200, &[]),
            Err(NotStorable::RequestNoStore)
        );
        assert_eq!(
            storable(
                &Method::POST,
                &none,
                StatusCode::OK,
                &headers(&[("cache-control", "max-age=5")])
            ),
            Err(NotStorable::Method)
        );
    }

    #[test]
    fn authorization_needs_explicit_permission() {
        let request = headers(&[("authorization", "Bearer x")]);
        let store = |response: &[(&str, &str)]| {
            storable(&Method::GET, &request, StatusCode::OK, &headers(response))
        };
        assert_eq!(
            store(&[("cache-control", "max-age=60")]),
            Err(NotStorable::Authorization)
        );
        assert_eq!(store(&[("cache-control", "max-age=60, public")]), Ok(()));
        assert_eq!(store(&[("cache-control", "s-maxage=60")]), Ok(()));
        assert_eq!(
            store(&[("cache-control", "max-age=60, must-revalidate")]),
            Ok(())
        );
    }

    #[test]
    fn age_follows_section_4_2_3() {
        // Origin says Age 10; the response took 2 s to arrive and Date is
        // 5 s before it arrived; 20 s resident.
        let map = headers(&[("age", "10"), ("date", &date(95))]);
        let age = current_age(&map, at(98), at(100), at(120));
        assert_eq!(age.as_secs(), 12 + 20);
        // The apparent age wins when larger.
        let map = headers(&[("date", &date(50))]);
        assert_eq!(current_age(&map, at(100), at(100), at(100)).as_secs(), 50);
        // A clock skewed into the future never gives a negative age.
        let map = headers(&[("date", &date(500)), ("age", "bogus")]);
        assert_eq!(current_age(&map, at(100), at(100), at(103)).as_secs(), 3);
        let map = headers(&[("age", "7, 9")]);
        assert_eq!(age_value(&map).as_secs(), 7);
    }

    fn freshness(lifetime: u64, age: u64) -> Freshness {
        Freshness {
            lifetime: Duration::from_secs(lifetime),
            age: Duration::from_secs(age),
            invalidated: false,
        }
    }

    fn directives(text: &str) -> Directives {
        Directives::from_headers(&headers(&[("cache-control", text)]), &header::CACHE_CONTROL)
    }

    #[test]
    fn reuse_matrix() {
        let none = Directives::default();
        let validate = Reuse::Validate {
            forced_by_request: false,
        };
        let forced = Reuse::Validate {
            forced_by_request: true,
        };
        assert_eq!(reuse(&none, &none, freshness(60, 10)), Reuse::Fresh);
        assert_eq!(reuse(&none, &none, freshness(60, 60)), validate);
        assert_eq!(
            reuse(&none, &directives("no-cache"), freshness(60, 0)),
            validate
        );
        assert_eq!(
            reuse(&directives("no-cache"), &none, freshness(60, 0)),
            forced
        );
        assert_eq!(
            reuse(&directives("max-age=5"), &none, freshness(60, 10)),
            forced
        );
        assert_eq!(
            reuse(&directives("max-age=15"), &none, freshness(60, 10)),
            Reuse::Fresh
        );
        assert_eq!(
            reuse(&directives("min-fresh=55"), &none, freshness(60, 10)),
            forced
        );
        assert_eq!(
            reuse(&directives("min-fresh=50"), &none, freshness(60, 10)),
            Reuse::Fresh
        );
        assert_eq!(
            reuse(&directives("max-stale"), &none, freshness(60, 1000)),
            Reuse::StaleAllowedByClient
        );
        assert_eq!(
            reuse(&directives("max-stale=30"), &none, freshness(60, 80)),
            Reuse::StaleAllowedByClient
        );
        assert_eq!(
            reuse(&directives("max-stale=30"), &none, freshness(60, 100)),
            validate
        );
        assert_eq!(
            reuse(
                &directives("max-stale"),
                &directives("must-revalidate"),
                freshness(60, 100)
            ),
            validate
        );
        assert_eq!(
            reuse(
                &directives("max-stale"),
                &directives("s-maxage=60"),
                freshness(60, 100)
            ),
            validate
        );
        let swr = directives("max-age=60, stale-while-revalidate=30");
        assert_eq!(
            reuse(&none, &swr, freshness(60, 80)),
            Reuse::StaleWhileRevalidate
        );
        assert_eq!(reuse(&none, &swr, freshness(60, 100)), validate);
        let mut purged = freshness(60, 10);
        purged.invalidated = true;
        assert_eq!(reuse(&none, &swr, purged), Reuse::StaleWhileRevalidate);
        assert_eq!(reuse(&none, &none, purged), validate);
    }

    #[test]
    fn stale_if_error_windows() {
        let none = Directives::default();
        let sie = directives("max-age=60, stale-if-error=100");
        assert!(stale_on_error_allowed(
            &none,
            &sie,
            freshness(60, 150),
            Duration::ZERO
        ));
        assert!(!stale_on_error_allowed(
            &none,
            &sie,
            freshness(60, 170),
            Duration::ZERO
        ));
        assert!(!stale_on_error_allowed(
            &none,
            &none,
            freshness(60, 70),
            Duration::ZERO
        ));
        assert!(stale_on_error_allowed(
            &none,
            &none,
            freshness(60, 70),
            Duration::from_secs(30)
        ));
        assert!(stale_on_error_allowed(
            &directives("stale-if-error=20"),
            &none,
            freshness(60, 70),
            Duration::ZERO
        ));
        assert!(!stale_on_error_allowed(
            &none,
            &directives("max-age=60, stale-if-error=100, must-revalidate"),
            freshness(60, 70),
            Duration::from_secs(1000)
        ));
    }

    #[test]
    fn vary_keys_and_matching() {
        let response = headers(&[
            ("vary", "Accept-Encoding, accept-language"),
            ("vary", "x-a"),
        ]);
        let names = vary_names(&response).unwrap();
        assert_eq!(names.len(), 3);
        let request = headers(&[("accept-encoding", "gzip,  br"), ("accept-language", "en")]);
        let key = secondary_key(&names, &request);
        assert!(vary_matches(
            &key,
            &headers(&[("accept-encoding", "gzip, br"), ("accept-language", "en")])
        ));
        assert!(!vary_matches(
            &key,
            &headers(&[("accept-encoding", "gzip"), ("accept-language", "en")])
        ));
        assert!(!vary_matches(
            &key,
            &headers(&[
                ("accept-encoding", "gzip, br"),
                ("accept-language", "en"),
                ("x-a", "1")
            ])
        ));
        assert!(vary_names(&headers(&[("vary", "accept, *")])).is_none());
    }

    #[test]
    fn hop_by_hop_fields_are_removed() {
        let mut map = headers(&[
            ("connection", "close, x-private-hop"),
            ("x-private-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("content-type", "video/mp4"),
        ]);
        strip_hop_by_hop(&mut map);
        assert_eq!(map.len(), 1);
        assert!(map.contains_key("content-type"));
    }

    #[test]
    fn merge_replaces_fields_but_keeps_framing() {
        let mut stored = headers(&[
            ("content-length", "100"),
            ("cache-control", "max-age=10"),
            ("x-old", "1"),
        ]);
        let update = headers(&[
            ("content-length", "0"),
            ("cache-control", "max-age=60"),
            ("x-new", "a"),
            ("x-new", "b"),
            ("connection", "close"),
        ]);
        merge_headers(&mut stored, &update);
        assert_eq!(stored["content-length"], "100");
        assert_eq!(stored["cache-control"], "max-age=60");
        assert_eq!(stored["x-old"], "1");
        assert_eq!(stored.get_all("x-new").iter().count(), 2);
        assert!(!stored.contains_key("connection"));
    }

    #[test]
    fn cache_status_members() {
        let mut status = CacheStatus::forward("uri-miss");
        status.forward_status = Some(200);
        status.stored = true;
        status.collapsed = true;
        assert_eq!(
            status.member(),
            "kinema; fwd=uri-miss; fwd-status=200; stored; collapsed"
        );
        let mut map = headers(&[("cache-status", "origin-cache; hit")]);
        CacheStatus::hit(42).apply(&mut map);
        assert_eq!(
            map["cache-status"],
            "origin-cache; hit, kinema; hit; ttl=42"
        );
    }

    #[test]
    fn pragma_no_cache_only_without_cache_control() {
        assert!(request_directives(&headers(&[("pragma", "no-cache")])).has("no-cache"));
        assert!(
            !request_directives(&headers(&[
                ("pragma", "no-cache"),
                ("cache-control", "max-age=5")
            ]))
            .has("no-cache")
        );
    }
}
