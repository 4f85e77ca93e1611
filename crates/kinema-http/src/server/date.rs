//! The `Date` header value (RFC 9110 §6.6.1), formatted once per second
//! per thread rather than once per response.
//!
//! Thread-local rather than global so that workers never contend on it; a
//! response may carry a date up to a second old, which §6.6.1 allows (it is
//! "the best available approximation").

use std::cell::RefCell;
use std::time::{Duration, UNIX_EPOCH};

/// An IMF-fixdate is always 29 bytes: `Sun, 06 Nov 1994 08:49:37 GMT`.
const DATE_LENGTH: usize = 29;

struct CachedDate {
    second: u64,
    text: [u8; DATE_LENGTH],
}

thread_local! {
    static CACHED: RefCell<CachedDate> = const {
        RefCell::new(CachedDate { second: u64::MAX, text: [b' '; DATE_LENGTH] })
    };
}

/// Appends the current date to `out`.
pub(crate) fn append_date(out: &mut Vec<u8>) {
    // The coarse clock (the kernel's last tick, a few milliseconds old at
    // most) is read without the time-stamp counter: a second's precision is
    // all a Date needs, and this runs once per response.
    let second =
        u64::try_from(rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse).tv_sec)
            .unwrap_or(0);
    CACHED.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.second != second {
            let text = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(second));
            if text.len() == DATE_LENGTH {
                cached.text.copy_from_slice(text.as_bytes());
                cached.second = second;
            } else {
                // Years past 9999 would not fit; write what we have.
                out.extend_from_slice(text.as_bytes());
                return;
            }
        }
        out.extend_from_slice(&cached.text);
    });
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    #[test]
    fn date_is_an_imf_fixdate_of_now() {
        let mut out = Vec::new();
        append_date(&mut out);
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.ends_with(" GMT"), "{text}");
        let parsed = crate::http_date::parse_text(text).unwrap();
        let skew = SystemTime::now().duration_since(parsed).unwrap_or_default();
        assert!(skew.as_secs() <= 2, "{text}");
    }
}
