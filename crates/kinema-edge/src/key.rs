//! Cache keys and the URL facts the edge derives from a request target.
//!
//! The key is the origin-form target (path and query): the edge fronts one
//! logical origin, so scheme and host add nothing. A signed-URL token
//! (`/s/{token}/v/...`) that the edge has verified is replaced by `*` in
//! the key, so every viewer of a video shares one cached copy, while the
//! key stays distinct from the unsigned `/v/...` (a cached copy of a signed
//! video must never answer an unsigned request). Without a key ring the
//! edge cannot verify, and the token stays in the key: safe (a cached copy
//! only answers holders of the same URL), if wasteful.

/// The prefix of keys of verified signed requests.
pub const SIGNED_PREFIX: &str = "/s/*";

/// The cache key of a request target whose token (if any) was not
/// verified by the edge.
pub fn cache_key(path_and_query: &str) -> String {
    path_and_query.to_string()
}

/// The cache key of a signed request whose token the edge verified:
/// `rest` is the target after `/s/{token}`.
pub fn signed_cache_key(rest: &str) -> String {
    format!("{SIGNED_PREFIX}{rest}")
}

/// The path a `Location` / `Content-Location` value names when it is on the
/// same origin as the request (RFC 9111 §4.4 invalidates only those):
/// a relative reference resolved against the request path, or an absolute
/// URL whose authority is the request's `Host`.
pub fn same_origin_path(value: &str, host: Option<&str>, request_path: &str) -> Option<String> {
    let value = value.trim();
    if let Some(rest) = value
        .strip_prefix("http://")
        .or_else(|| value.strip_prefix("https://"))
    {
        let (authority, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, "/"),
        };
        return (Some(authority) == host).then(|| path.to_string());
    }
    if value.starts_with("//") || value.contains("://") {
        return None;
    }
    if value.starts_with('/') {
        return Some(value.to_string());
    }
    // A relative path: resolve against the request path's directory
    // (RFC 3986 §5.2.3, without dot-segment games the origin would reject).
    let path = request_path.split('?').next().unwrap_or("/");
    let directory = &path[..path.rfind('/').map_or(0, |slash| slash + 1)];
    Some(format!("{directory}{value}"))
}

/// Splits a CMAF segment target `…/{n}.m4s[?query]` into the part before
/// the number, the number, and the rest, for prefetching `n+1…`.
pub fn segment_number(path_and_query: &str) -> Option<(&str, u64, &str)> {
    let path_end = path_and_query.find('?').unwrap_or(path_and_query.len());
    let path = &path_and_query[..path_end];
    let stem = path.strip_suffix(".m4s")?;
    let start = stem.rfind('/')? + 1;
    let digits = &stem[start..];
    if digits.is_empty() || digits.len() > 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number = digits.parse().ok()?;
    Some((
        &path_and_query[..start],
        number,
        &path_and_query[stem.len()..],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_numbers_are_found_only_in_segment_paths() {
        assert_eq!(
            segment_number("/v/abc/720p/12.m4s"),
            Some(("/v/abc/720p/", 12, ".m4s"))
        );
        assert_eq!(
            segment_number("/s/tok/v/abc/360p/3.m4s?x=1"),
            Some(("/s/tok/v/abc/360p/", 3, ".m4s?x=1"))
        );
        assert_eq!(segment_number("/v/abc/720p/init.mp4"), None);
        assert_eq!(segment_number("/v/abc/720p/a1.m4s"), None);
        assert_eq!(segment_number("/v/abc/720p/.m4s"), None);
    }

    #[test]
    fn same_origin_locations() {
        let host = Some("edge.example:8080");
        assert_eq!(
            same_origin_path("http://edge.example:8080/v/a/x", host, "/api/x"),
            Some("/v/a/x".into())
        );
        assert_eq!(
            same_origin_path("http://other.example/v/a/x", host, "/api/x"),
            None
        );
        assert_eq!(
            same_origin_path("/v/b", host, "/api/x"),
            Some("/v/b".into())
        );
        assert_eq!(
            same_origin_path("y?z", host, "/api/x?q"),
            Some("/api/y?z".into())
        );
        assert_eq!(same_origin_path("//other/x", host, "/api/x"), None);
    }
}
