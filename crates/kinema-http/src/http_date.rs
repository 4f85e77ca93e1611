//! HTTP dates (RFC 9110 §5.6.7): the one place a header's date is read,
//! so `Last-Modified`, the conditional request fields, `Date` and `Expires`
//! are understood alike by the origin and the edge.
//!
//! Formatting is `httpdate::fmt_http_date`'s; this module only parses.

use std::time::SystemTime;

use http::HeaderValue;

/// The time a header field's HTTP-date names: IMF-fixdate, or one of the
/// two obsolete forms a recipient must accept. Surrounding whitespace is
/// ignored; anything else unparseable is `None`, which callers treat as if
/// the field were absent (RFC 9110 §13.1.3, §13.1.4; RFC 9111 §5.3).
pub fn parse(value: &HeaderValue) -> Option<SystemTime> {
    parse_text(value.to_str().ok()?)
}

/// [`parse`] for a value already in hand as text.
pub fn parse_text(text: &str) -> Option<SystemTime> {
    httpdate::parse_http_date(text.trim()).ok()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn the_three_formats_name_the_same_instant() {
        // RFC 9110 §5.6.7's own example, 784111777 seconds after the epoch.
        let expected = Some(UNIX_EPOCH + Duration::from_secs(784_111_777));
        for text in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            " Sun, 06 Nov 1994 08:49:37 GMT ",
        ] {
            assert_eq!(parse(&HeaderValue::from_static(text)), expected, "{text:?}");
        }
    }

    #[test]
    fn anything_else_is_none() {
        for text in ["", "yesterday", "Sun, 06 Nov 1994 08:49:37", "784111777"] {
            assert_eq!(parse_text(text), None, "{text:?}");
        }
        let not_text = HeaderValue::from_bytes(b"Sun, 06 Nov 1994 \xff").unwrap();
        assert_eq!(parse(&not_text), None);
    }
}
