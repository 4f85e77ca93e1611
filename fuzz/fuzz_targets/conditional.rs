//! Conditional requests (RFC 9110 §13): the entity-tag parser and the
//! evaluation of If-Match, If-None-Match, If-Modified-Since,
//! If-Unmodified-Since and If-Range never panic and keep the RFC's
//! invariants.

#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use arbitrary::Arbitrary;
use http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use kinema_http::conditional::{self, EntityTag, Precondition, Validators};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    method: u8,
    etag: Option<Vec<u8>>,
    last_modified: Option<u32>,
    fields: Vec<(u8, Vec<u8>)>,
}

const FIELDS: [HeaderName; 5] = [
    header::IF_MATCH,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_UNMODIFIED_SINCE,
    header::IF_RANGE,
];

fn check_tag(text: &[u8]) {
    let Some(tag) = EntityTag::parse(text) else {
        return;
    };
    assert_eq!(tag.weak, text.starts_with(b"W/"));
    assert!(text.ends_with(tag.opaque));
    assert!(tag.opaque.len() >= 2 && tag.opaque.starts_with(b"\"") && tag.opaque.ends_with(b"\""));
    assert!(tag.weak_eq(&tag));
    assert_eq!(tag.strong_eq(&tag), !tag.weak);
}

fuzz_target!(|input: Input| {
    let method = match input.method % 4 {
        0 => Method::GET,
        1 => Method::HEAD,
        2 => Method::PUT,
        _ => Method::DELETE,
    };
    if let Some(etag) = &input.etag {
        check_tag(etag);
    }
    let mut headers = HeaderMap::new();
    for (which, value) in &input.fields {
        check_tag(value);
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(FIELDS[usize::from(*which) % FIELDS.len()].clone(), value);
        }
    }
    // A sub-second part must not matter: HTTP dates are whole seconds.
    let last_modified = input
        .last_modified
        .map(|seconds| UNIX_EPOCH + Duration::from_millis(u64::from(seconds) * 1000 + 999));
    let validators = Validators {
        etag: input.etag.as_deref().and_then(EntityTag::parse),
        last_modified,
    };
    let outcome = conditional::evaluate(&method, &headers, &validators);
    let allows_range = conditional::if_range_allows(&headers, &validators);

    let get_or_head = method == Method::GET || method == Method::HEAD;
    if outcome == Precondition::NotModified {
        assert!(get_or_head, "304 to {method}");
    }
    if !FIELDS[..4].iter().any(|name| headers.contains_key(name)) {
        assert_eq!(outcome, Precondition::Proceed);
    }
    if !headers.contains_key(header::IF_RANGE) {
        assert!(allows_range);
    } else if validators.etag.is_none() && validators.last_modified.is_none() {
        assert!(
            !allows_range,
            "If-Range matched a representation without validators"
        );
    }
    // A current strong tag named alone in If-Match always passes step 1,
    // and in If-Range always allows the range.
    if let Some(current) = validators.etag.filter(|tag| !tag.weak)
        && let Ok(value) = HeaderValue::from_bytes(current.opaque)
    {
        let mut named = HeaderMap::new();
        named.insert(header::IF_MATCH, value.clone());
        named.insert(header::IF_RANGE, value);
        assert_eq!(
            conditional::evaluate(&method, &named, &validators),
            Precondition::Proceed
        );
        assert!(conditional::if_range_allows(&named, &validators));
    }
    // Last-Modified itself as If-Modified-Since: not modified since then.
    if let Some(last_modified) = last_modified
        && get_or_head
    {
        let mut since = HeaderMap::new();
        let date = httpdate::fmt_http_date(last_modified);
        since.insert(
            header::IF_MODIFIED_SINCE,
            HeaderValue::from_str(&date).unwrap(),
        );
        assert_eq!(
            conditional::evaluate(&method, &since, &validators),
            Precondition::NotModified
        );
    }
});
