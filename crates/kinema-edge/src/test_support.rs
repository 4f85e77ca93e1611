//! Helpers shared by the unit tests of several modules; compiled only for
//! tests.

use http::{HeaderMap, HeaderName, HeaderValue};

/// A header map with `pairs` appended in order (a name may repeat).
pub(crate) fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    headers
}
