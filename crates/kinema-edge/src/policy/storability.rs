//! RFC 9111 §3: whether a response may be stored, and which of its
//! fields are.

use http::{HeaderMap, Method, StatusCode, header};

use super::*;

/// Why RFC 9111 forbids storing a response; shown in `Cache-Status` as
/// `detail` ([`NotStored::Policy`]).
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
pub(super) fn understood(status: StatusCode) -> bool {
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
