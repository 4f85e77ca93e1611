//! Pathways: the names players use for "serve me from this node", and where
//! each one is reached.
//!
//! A pathway id is derived from a node id, never chosen: every node names
//! every other node's pathway alike, and a node keeps its pathway across
//! restarts. It is `n` followed by the first ten hex digits of a SHA-256 of
//! the node id, so it is short, lowercase ASCII letters and digits only:
//! legal as an HLS `PATHWAY-ID` (draft-pantos-hls-rfc8216bis §4.4.6.6 allows
//! `[a-zA-Z0-9._-]`) and as a DASH `serviceLocation` token, and it says
//! nothing about the cluster's addresses. Forty bits keep two nodes of one
//! cluster (at most 1,024) from sharing an id with a chance below one in a
//! million; should it happen, the ranking keeps the first by node id.

use std::fmt;

use kinema_cluster::Role;
use sha2::{Digest, Sha256};

use crate::SteeringError;

/// Longest public base URL accepted (as membership allows, 256).
pub const MAX_BASE_URL_LEN: usize = 256;
/// Length of a pathway id: `n` and ten hex digits.
pub const PATHWAY_ID_LEN: usize = 11;

/// The id of one node's pathway, as players see it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PathwayId(String);

impl PathwayId {
    /// The pathway of the node named `node_id`.
    pub fn of_node(node_id: &str) -> Self {
        let digest = Sha256::new()
            .chain_update(b"kinema-pathway\0")
            .chain_update(node_id.as_bytes())
            .finalize();
        let mut id = String::with_capacity(PATHWAY_ID_LEN);
        id.push('n');
        for byte in &digest[..5] {
            id.push_str(&format!("{byte:02x}"));
        }
        Self(id)
    }

    /// A pathway id as a player or a session state names it: `None` unless
    /// it has exactly the form [`PathwayId::of_node`] makes.
    pub fn parse(text: &str) -> Option<Self> {
        let valid = text.len() == PATHWAY_ID_LEN
            && text.starts_with('n')
            && text[1..]
                .bytes()
                .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte));
        valid.then(|| Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PathwayId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A checked public base URL: `http://` or `https://`, then an authority and
/// an optional path, of characters that need no escaping in an HLS
/// quoted-string, an XML text node or a URL (no query, fragment, userinfo,
/// quote or space), without its trailing slashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl(String);

impl BaseUrl {
    pub fn new(url: &str) -> Result<Self, SteeringError> {
        let bad = |why: &str| SteeringError::BaseUrl(format!("{url:?} {why}"));
        if url.len() > MAX_BASE_URL_LEN {
            return Err(bad("is longer than 256 bytes"));
        }
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .ok_or_else(|| bad("is not an http(s) URL"))?;
        let allowed = |byte: u8| byte.is_ascii_alphanumeric() || b"-._~%/:[]".contains(&byte);
        if !rest.bytes().all(allowed) {
            return Err(bad(
                "may hold only letters, digits and -._~%/:[] after the scheme",
            ));
        }
        let trimmed = url.trim_end_matches('/');
        let host = rest.split('/').next().unwrap_or_default();
        if host.is_empty() {
            return Err(bad("has no host"));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The URL without a trailing slash (`http://10.0.0.2:8080`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// This base followed by `path`, which starts with `/`.
    pub fn join(&self, path: &str) -> String {
        format!("{}{path}", self.0)
    }
}

/// One place a player may fetch a video from: a node's pathway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pathway {
    pub id: PathwayId,
    pub node_id: String,
    pub role: Role,
    pub base_url: BaseUrl,
}

/// A request path prefix under which a video's files resolve: the directory
/// of the playlist or MPD as requested (`/v/{id}/`, or `/s/{token}/v/{id}/`
/// for a signed URL, so the token stays in every path on every pathway).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPrefix(String);

/// Longest path prefix accepted (a signed token is at most 1,024 bytes).
pub const MAX_PATH_PREFIX_LEN: usize = 1200;

impl PathPrefix {
    pub fn new(prefix: &str) -> Result<Self, SteeringError> {
        let bad = |why: &str| SteeringError::PathPrefix(why.to_owned());
        if prefix.len() > MAX_PATH_PREFIX_LEN {
            return Err(bad("is longer than 1200 bytes"));
        }
        if !prefix.starts_with('/') || !prefix.ends_with('/') {
            return Err(bad("must start and end with '/'"));
        }
        if prefix.contains("//") {
            return Err(bad("has an empty segment"));
        }
        let allowed = |byte: u8| byte.is_ascii_alphanumeric() || b"-._~%/".contains(&byte);
        if !prefix.bytes().all(allowed) {
            return Err(bad("may hold only letters, digits and -._~%/"));
        }
        Ok(Self(prefix.to_owned()))
    }

    /// The directory of a request path: everything up to its last `/`
    /// (`/s/T/v/a/master.m3u8` → `/s/T/v/a/`).
    pub fn of_request_path(path: &str) -> Result<Self, SteeringError> {
        match path.rfind('/') {
            Some(slash) => Self::new(&path[..=slash]),
            None => Err(SteeringError::PathPrefix("has no '/'".into())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pathway_ids_are_short_stable_and_legal_everywhere() {
        let id = PathwayId::of_node("edge-1");
        assert_eq!(id, PathwayId::of_node("edge-1"));
        assert_ne!(id, PathwayId::of_node("edge-2"));
        assert_eq!(id.as_str().len(), 11);
        assert!(id.as_str().starts_with('n'));
        assert!(
            id.as_str()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        );
        assert_eq!(PathwayId::parse(id.as_str()), Some(id));
    }

    #[test]
    fn pathway_id_parse_takes_only_the_derived_form() {
        for text in [
            "",
            "n",
            "n0123456789a",
            "x0123456789",
            "n012345678G",
            "N0123456789",
            "n01234 6789",
        ] {
            assert_eq!(PathwayId::parse(text), None, "{text:?}");
        }
        assert!(PathwayId::parse("n0123456789").is_some());
    }

    #[test]
    fn base_urls_are_checked_and_trimmed() {
        assert_eq!(
            BaseUrl::new("http://10.0.0.2:8080/").unwrap().as_str(),
            "http://10.0.0.2:8080"
        );
        assert_eq!(
            BaseUrl::new("https://[::1]:8443/cdn")
                .unwrap()
                .join("/v/a/"),
            "https://[::1]:8443/cdn/v/a/"
        );
        for url in [
            "ftp://a",
            "http://",
            "http:///x",
            "http://a?b",
            "http://a#b",
            "http://u@a",
            "http://a\"b",
            "http://a b",
            "http://a<b",
            "http://a&b",
        ] {
            assert!(BaseUrl::new(url).is_err(), "{url:?}");
        }
        assert!(BaseUrl::new(&format!("http://{}", "a".repeat(250))).is_err());
    }

    #[test]
    fn path_prefixes_are_directories_of_safe_characters() {
        assert_eq!(
            PathPrefix::of_request_path("/s/abc-_9/v/clip/master.m3u8")
                .unwrap()
                .as_str(),
            "/s/abc-_9/v/clip/"
        );
        assert_eq!(PathPrefix::new("/v/a/").unwrap().as_str(), "/v/a/");
        for prefix in ["v/a/", "/v/a", "/v//a/", "/v/a\"/", "/v/a?/", "/v/<a>/"] {
            assert!(PathPrefix::new(prefix).is_err(), "{prefix:?}");
        }
        assert!(PathPrefix::new(&format!("/{}/", "a".repeat(1200))).is_err());
        assert!(PathPrefix::of_request_path("master.m3u8").is_err());
    }
}
