//! Header fields a cache rewrites: hop-by-hop removal (RFC 9110 §7.6.1),
//! 304 merging (RFC 9111 §4.3.4), and the safe methods (RFC 9110 §9.2.1).

use http::{HeaderMap, HeaderName, Method, header};

use super::*;

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
