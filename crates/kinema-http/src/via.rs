//! The `Via` hop kinema's edges add to what they forward and send
//! (RFC 9110 §7.6.3), and the check that tells a request an edge sent
//! (filling its cache) from a viewer's: origins and edges alike serve a
//! kinema node the stored files and never steer or redirect it.

use http::HeaderMap;
use http::header::VIA as VIA_HEADER;

/// The hop an edge appends to `Via`.
pub const VIA: &str = "1.1 kinema";

/// Whether a `Via` field names a kinema node as a hop (`1.1 kinema`,
/// possibly among other hops, as every kinema edge adds it): the request
/// was sent by an edge filling its cache, not by a viewer.
pub fn through_kinema(headers: &HeaderMap) -> bool {
    headers
        .get_all(VIA_HEADER)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|hop| {
            let mut words = hop.split_whitespace();
            let _protocol = words.next();
            words.next() == Some("kinema")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn via_naming_kinema_is_a_kinema_node() {
        let via = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append(VIA_HEADER, HeaderValue::from_str(value).unwrap());
            }
            through_kinema(&headers)
        };
        assert!(via(&["1.1 kinema"]));
        assert!(via(&["1.0 fred, 1.1 kinema"]));
        assert!(via(&["1.1 squid (squid/6)", "1.1 kinema"]));
        assert!(!via(&[]));
        assert!(!via(&["1.1 kinema-like"]));
        assert!(!via(&["1.1 varnish"]));
        assert!(!via(&["kinema"]));
        // What an edge sends is what it recognises.
        assert!(via(&[VIA]));
    }
}
