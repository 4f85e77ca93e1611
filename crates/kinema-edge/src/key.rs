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
//!
//! The query of a video object (`/v/…`, also behind `/s/{token}`) is
//! settled by a [`QueryPolicy`] before anything else: the origin serves
//! those objects whatever the query says, so a query that stayed in the key
//! would only let anyone mint unlimited distinct keys (`?cb=1`, `?cb=2`…),
//! each an origin fetch and a cache entry. CMCD (CTA-5004), which players
//! append as `CMCD=…`, never splits the cache under any policy.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// What the edge does with the query of a video object's URL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueryPolicy {
    /// Drop the query: one cache entry and one origin URL per object.
    #[default]
    Ignore,
    /// Answer 400 to a query parameter other than `CMCD`.
    Refuse,
    /// Keep the query in the key and the origin request (all but `CMCD`),
    /// for origins that serve different bytes by query.
    Keep,
}

/// A video object's URL carried a query parameter that
/// [`QueryPolicy::Refuse`] does not accept; holds the parameter's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedQuery(pub String);

/// The query parameter players add for CMCD (CTA-5004 §3.2).
const CMCD_PARAMETER: &str = "CMCD";

/// The request target the edge keys, fetches and prefetches for
/// `path_and_query` under `policy`: unchanged unless it names a video
/// object with a query.
pub fn settle_query(
    path_and_query: &str,
    policy: QueryPolicy,
) -> Result<Cow<'_, str>, RefusedQuery> {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return Ok(Cow::Borrowed(path_and_query));
    };
    let object_path = kinema_auth::split_signed_path(path).map_or(path, |(_, rest)| rest);
    if !object_path.starts_with("/v/") {
        return Ok(Cow::Borrowed(path_and_query));
    }
    let parameters = query.split('&').filter(|pair| !pair.is_empty());
    let is_cmcd = |pair: &&str| pair.split('=').next() == Some(CMCD_PARAMETER);
    match policy {
        QueryPolicy::Ignore => Ok(Cow::Borrowed(path)),
        QueryPolicy::Refuse => match parameters.clone().find(|pair| !is_cmcd(pair)) {
            Some(pair) => Err(RefusedQuery(
                pair.split('=')
                    .next()
                    .unwrap_or(pair)
                    .chars()
                    .take(64)
                    .collect(),
            )),
            None => Ok(Cow::Borrowed(path)),
        },
        QueryPolicy::Keep => {
            let kept: Vec<&str> = parameters.filter(|pair| !is_cmcd(pair)).collect();
            if kept.is_empty() {
                Ok(Cow::Borrowed(path))
            } else {
                Ok(Cow::Owned(format!("{path}?{}", kept.join("&"))))
            }
        }
    }
}

/// The prefix of keys of verified signed requests.
pub const SIGNED_PREFIX: &str = "/s/*";

/// The cache key of a request target whose token (if any) was not
/// verified by the edge.
pub fn cache_key(path_and_query: &str) -> String {
    path_and_query.to_string()
}

/// True for the key of a signed request whose token the edge did not
/// verify (it has no key ring): the token is still in the key.
pub fn is_unverified_signed(key: &str) -> bool {
    key.starts_with("/s/") && !key.starts_with(SIGNED_PREFIX)
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
    fn video_object_queries_are_settled_by_the_policy() {
        use QueryPolicy::{Ignore, Keep, Refuse};
        let settled = |target, policy| settle_query(target, policy).map(Cow::into_owned);
        assert_eq!(settled("/v/a/1.m4s?cb=7", Ignore), Ok("/v/a/1.m4s".into()));
        assert_eq!(
            settled("/s/tok/v/a/1.m4s?cb=7&CMCD=sid%3D%22x%22", Ignore),
            Ok("/s/tok/v/a/1.m4s".into())
        );
        assert_eq!(
            settled("/v/a/1.m4s?CMCD=br%3D800", Refuse),
            Ok("/v/a/1.m4s".into())
        );
        assert_eq!(
            settled("/v/a/1.m4s?CMCD=x&cb=7", Refuse),
            Err(RefusedQuery("cb".into()))
        );
        assert_eq!(
            settled("/v/a/1.m4s?cb=7&CMCD=x", Keep),
            Ok("/v/a/1.m4s?cb=7".into())
        );
        assert_eq!(settled("/v/a/1.m4s?CMCD=x", Keep), Ok("/v/a/1.m4s".into()));
        // Not a video object: the query is the origin's business.
        assert_eq!(
            settled("/api/videos?page=2", Refuse),
            Ok("/api/videos?page=2".into())
        );
        assert_eq!(settled("/v/a/1.m4s", Refuse), Ok("/v/a/1.m4s".into()));
    }

    #[test]
    fn unverified_signed_keys_are_told_apart() {
        assert!(is_unverified_signed(&cache_key("/s/tok/v/a/1.m4s")));
        assert!(!is_unverified_signed(&signed_cache_key("/v/a/1.m4s")));
        assert!(!is_unverified_signed(&cache_key("/v/a/1.m4s")));
    }

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
