//! Conditional requests (RFC 9110 §13): `If-Match`, `If-None-Match`,
//! `If-Modified-Since`, `If-Unmodified-Since` and `If-Range`, evaluated in the
//! order of §13.2.2 against a representation's validators.
//!
//! Pure functions over request headers; shared by the origin and the edge.
//! They decide the outcome (proceed, 304, 412, whether a `Range` applies);
//! building the response is the caller's.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, Method, header};

/// An entity tag (RFC 9110 §8.8.3): the opaque part includes its quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntityTag<'a> {
    pub weak: bool,
    /// `"…"`, quotes included.
    pub opaque: &'a [u8],
}

impl<'a> EntityTag<'a> {
    /// Parses one entity tag: `"xyz"` or `W/"xyz"`; `None` when malformed.
    pub fn parse(text: &'a [u8]) -> Option<Self> {
        let (weak, opaque) = match text.strip_prefix(b"W/") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let well_formed = opaque.len() >= 2
            && opaque[0] == b'"'
            && opaque[opaque.len() - 1] == b'"'
            && opaque[1..opaque.len() - 1]
                .iter()
                .all(|&b| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80);
        well_formed.then_some(Self { weak, opaque })
    }

    /// Strong comparison (§8.8.3.2): both strong and byte-equal.
    pub fn strong_eq(&self, other: &EntityTag<'_>) -> bool {
        !self.weak && !other.weak && self.opaque == other.opaque
    }

    /// Weak comparison (§8.8.3.2): opaque parts equal, weakness ignored.
    pub fn weak_eq(&self, other: &EntityTag<'_>) -> bool {
        self.opaque == other.opaque
    }
}

/// What the server knows of the selected representation.
#[derive(Debug, Clone, Copy, Default)]
pub struct Validators<'a> {
    pub etag: Option<EntityTag<'a>>,
    /// `Last-Modified`, whole seconds (HTTP dates have no finer resolution).
    pub last_modified: Option<SystemTime>,
}

/// The outcome of evaluating preconditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// Perform the method as if there were no conditions.
    Proceed,
    /// 304 Not Modified (only for GET and HEAD).
    NotModified,
    /// 412 Precondition Failed.
    Failed,
}

/// Evaluates the preconditions of a request in RFC 9110 §13.2.2 order, for a
/// representation that exists.
pub fn evaluate(method: &Method, headers: &HeaderMap, validators: &Validators<'_>) -> Precondition {
    let get_or_head = method == Method::GET || method == Method::HEAD;
    // Step 1: If-Match, strong comparison (§13.1.1).
    if headers.contains_key(header::IF_MATCH) {
        let matched = list_matches(headers, header::IF_MATCH, |tag| {
            validators
                .etag
                .is_some_and(|current| current.strong_eq(tag))
        });
        if !matched {
            return Precondition::Failed;
        }
    } else if let Some(since) = header_date(headers, header::IF_UNMODIFIED_SINCE) {
        // Step 2: If-Unmodified-Since, only without If-Match (§13.1.4).
        if let Some(last_modified) = validators.last_modified
            && truncate(last_modified) > since
        {
            return Precondition::Failed;
        }
    }
    // Step 3: If-None-Match, weak comparison (§13.1.2).
    if headers.contains_key(header::IF_NONE_MATCH) {
        let matched = list_matches(headers, header::IF_NONE_MATCH, |tag| {
            validators.etag.is_some_and(|current| current.weak_eq(tag))
        });
        if matched {
            return if get_or_head {
                Precondition::NotModified
            } else {
                Precondition::Failed
            };
        }
    } else if get_or_head
        && let Some(since) = header_date(headers, header::IF_MODIFIED_SINCE)
        && let Some(last_modified) = validators.last_modified
        && truncate(last_modified) <= since
    {
        // Step 4: If-Modified-Since, only for GET/HEAD without If-None-Match
        // (§13.1.3).
        return Precondition::NotModified;
    }
    Precondition::Proceed
}

/// Step 5 of §13.2.2: whether a `Range` may be honoured given `If-Range`
/// (§13.1.5). True when there is no `If-Range`; otherwise only when it names
/// the current representation: an entity tag by strong comparison, or a date
/// exactly equal to `Last-Modified`. A weak or malformed validator never
/// matches, so the whole representation is sent.
pub fn if_range_allows(headers: &HeaderMap, validators: &Validators<'_>) -> bool {
    let Some(value) = headers.get(header::IF_RANGE) else {
        return true;
    };
    let value = value.as_bytes();
    if value.starts_with(b"\"") || value.starts_with(b"W/") {
        return match (EntityTag::parse(value), validators.etag) {
            (Some(requested), Some(current)) => current.strong_eq(&requested),
            _ => false,
        };
    }
    let Some(date) = std::str::from_utf8(value)
        .ok()
        .and_then(crate::http_date::parse_text)
    else {
        return false;
    };
    validators
        .last_modified
        .is_some_and(|last_modified| truncate(last_modified) == date)
}

/// True when any entity tag listed in the header field matches (`*`
/// matches any existing representation). Malformed members are skipped.
fn list_matches(
    headers: &HeaderMap,
    name: header::HeaderName,
    mut matches: impl FnMut(&EntityTag<'_>) -> bool,
) -> bool {
    for value in headers.get_all(name) {
        let value = value.as_bytes();
        if trim(value) == b"*" {
            return true;
        }
        for member in split_tags(value) {
            if let Some(tag) = EntityTag::parse(member)
                && matches(&tag)
            {
                return true;
            }
        }
    }
    false
}

/// Splits a comma-separated entity-tag list; commas may appear inside the
/// quotes of an opaque tag, so split only outside quotes.
fn split_tags(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = value;
    std::iter::from_fn(move || {
        loop {
            if rest.is_empty() {
                return None;
            }
            let mut in_quotes = false;
            let mut end = rest.len();
            for (index, &byte) in rest.iter().enumerate() {
                match byte {
                    b'"' => in_quotes = !in_quotes,
                    b',' if !in_quotes => {
                        end = index;
                        break;
                    }
                    _ => {}
                }
            }
            let member = trim(&rest[..end]);
            rest = if end < rest.len() {
                &rest[end + 1..]
            } else {
                &[]
            };
            if !member.is_empty() {
                return Some(member);
            }
        }
    })
}

fn trim(bytes: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// An HTTP-date header; an invalid date makes the condition ignored, as
/// §13.1.3 and §13.1.4 require.
fn header_date(headers: &HeaderMap, name: header::HeaderName) -> Option<SystemTime> {
    crate::http_date::parse(headers.get(name)?)
}

/// Drops sub-second precision: `Last-Modified` is sent in whole seconds, so
/// comparisons must be made at that resolution.
fn truncate(time: SystemTime) -> SystemTime {
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) => UNIX_EPOCH + Duration::from_secs(since.as_secs()),
        Err(_) => time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const TAG: &[u8] = b"\"abc\"";

    fn validators() -> Validators<'static> {
        Validators {
            etag: EntityTag::parse(TAG),
            last_modified: Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        }
    }

    fn date(offset: i64) -> String {
        let secs = (1_700_000_000i64 + offset) as u64;
        httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs))
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn check(method: Method, pairs: &[(&'static str, &str)], expected: Precondition) {
        assert_eq!(
            evaluate(&method, &headers(pairs), &validators()),
            expected,
            "{method} {pairs:?}"
        );
    }

    #[test]
    fn no_conditions_proceed() {
        check(Method::GET, &[], Precondition::Proceed);
    }

    #[test]
    fn if_none_match_uses_weak_comparison() {
        check(
            Method::GET,
            &[("if-none-match", "\"abc\"")],
            Precondition::NotModified,
        );
        check(
            Method::HEAD,
            &[("if-none-match", "W/\"abc\"")],
            Precondition::NotModified,
        );
        check(
            Method::GET,
            &[("if-none-match", "\"x\", \"abc\"")],
            Precondition::NotModified,
        );
        check(
            Method::GET,
            &[("if-none-match", "*")],
            Precondition::NotModified,
        );
        check(
            Method::GET,
            &[("if-none-match", "\"x\"")],
            Precondition::Proceed,
        );
        check(
            Method::POST,
            &[("if-none-match", "\"abc\"")],
            Precondition::Failed,
        );
        // Two header lines are one list.
        check(
            Method::GET,
            &[("if-none-match", "\"x\""), ("if-none-match", "\"abc\"")],
            Precondition::NotModified,
        );
    }

    #[test]
    fn if_match_uses_strong_comparison() {
        check(
            Method::GET,
            &[("if-match", "\"abc\"")],
            Precondition::Proceed,
        );
        check(Method::GET, &[("if-match", "*")], Precondition::Proceed);
        check(
            Method::GET,
            &[("if-match", "W/\"abc\"")],
            Precondition::Failed,
        );
        check(
            Method::GET,
            &[("if-match", "\"other\"")],
            Precondition::Failed,
        );
        check(
            Method::GET,
            &[("if-match", "garbage")],
            Precondition::Failed,
        );
    }

    #[test]
    fn if_modified_since_compares_whole_seconds() {
        check(
            Method::GET,
            &[("if-modified-since", &date(0))],
            Precondition::NotModified,
        );
        check(
            Method::GET,
            &[("if-modified-since", &date(10))],
            Precondition::NotModified,
        );
        check(
            Method::GET,
            &[("if-modified-since", &date(-1))],
            Precondition::Proceed,
        );
        check(
            Method::GET,
            &[("if-modified-since", "yesterday")],
            Precondition::Proceed,
        );
        // Ignored for methods other than GET and HEAD.
        check(
            Method::POST,
            &[("if-modified-since", &date(0))],
            Precondition::Proceed,
        );
        let fractional = Validators {
            last_modified: Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_900)),
            ..validators()
        };
        assert_eq!(
            evaluate(
                &Method::GET,
                &headers(&[("if-modified-since", &date(0))]),
                &fractional
            ),
            Precondition::NotModified
        );
    }

    #[test]
    fn if_none_match_takes_precedence_over_if_modified_since() {
        check(
            Method::GET,
            &[("if-none-match", "\"x\""), ("if-modified-since", &date(0))],
            Precondition::Proceed,
        );
    }

    #[test]
    fn if_unmodified_since_only_without_if_match() {
        check(
            Method::GET,
            &[("if-unmodified-since", &date(-1))],
            Precondition::Failed,
        );
        check(
            Method::GET,
            &[("if-unmodified-since", &date(0))],
            Precondition::Proceed,
        );
        check(
            Method::GET,
            &[("if-unmodified-since", "bogus")],
            Precondition::Proceed,
        );
        check(
            Method::GET,
            &[("if-match", "\"abc\""), ("if-unmodified-since", &date(-1))],
            Precondition::Proceed,
        );
    }

    #[test]
    fn if_match_failure_wins_over_if_none_match() {
        check(
            Method::GET,
            &[("if-match", "\"other\""), ("if-none-match", "\"abc\"")],
            Precondition::Failed,
        );
    }

    #[test]
    fn if_range_matches_strong_tag_or_exact_date() {
        let v = validators();
        assert!(if_range_allows(&headers(&[]), &v));
        assert!(if_range_allows(&headers(&[("if-range", "\"abc\"")]), &v));
        assert!(!if_range_allows(&headers(&[("if-range", "W/\"abc\"")]), &v));
        assert!(!if_range_allows(&headers(&[("if-range", "\"old\"")]), &v));
        assert!(if_range_allows(&headers(&[("if-range", &date(0))]), &v));
        assert!(!if_range_allows(&headers(&[("if-range", &date(5))]), &v));
        assert!(!if_range_allows(&headers(&[("if-range", "nonsense")]), &v));
    }

    #[test]
    fn entity_tags_parse_strictly() {
        assert_eq!(
            EntityTag::parse(b"W/\"a\""),
            Some(EntityTag {
                weak: true,
                opaque: b"\"a\""
            })
        );
        for bad in [&b"a"[..], b"\"a", b"\"a\"b\"", b"w/\"a\"", b""] {
            assert_eq!(EntityTag::parse(bad), None, "{bad:?}");
        }
        let tags: Vec<&[u8]> = split_tags(b" \"a,b\" , W/\"c\",,").collect();
        assert_eq!(tags, vec![&b"\"a,b\""[..], b"W/\"c\""]);
    }
}
