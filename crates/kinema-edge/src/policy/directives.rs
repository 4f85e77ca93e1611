//! `Cache-Control` and `CDN-Cache-Control` parsed into directives
//! (RFC 9111 §5.2, RFC 9213), and the list and delta-seconds syntax they use.

use http::{HeaderMap, HeaderName, header};

use super::*;

/// RFC 9111 §1.2.2: a delta-seconds value larger than the cache can
/// represent is taken as 2^31.
pub(super) const DELTA_SECONDS_MAX: u64 = 2_147_483_648;

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

/// delta-seconds (§1.2.2), accepting the quoted form recipients ought to
/// accept (§5.2); `None` when not a non-negative integer.
pub(super) fn parse_delta_seconds(text: &str) -> Option<u64> {
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

pub(super) fn unquote(text: &str) -> String {
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
pub(super) fn split_list(text: &str) -> Vec<&str> {
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
