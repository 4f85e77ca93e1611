//! Cross-origin access to media (the Fetch standard's CORS protocol), so a
//! player on another site can load playlists and segments.
//!
//! With the default `*`, every media response carries the same constant
//! headers, which keeps responses identical for every requester and so
//! cacheable by any shared cache. With a list of origins, the allowed one is
//! echoed and `Vary: Origin` tells caches the response depends on it.

use http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_METHOD, ALLOW,
    ORIGIN, VARY,
};
use http::{HeaderMap, HeaderValue};

/// Response headers a script may read besides the CORS-safelisted ones.
const EXPOSE: &str = "Content-Range, Content-Length, Accept-Ranges, ETag, Last-Modified, Age";
/// Request headers a player may send cross-origin: ranges and revalidation.
const ALLOW_HEADERS: &str =
    "Range, If-Range, If-None-Match, If-Modified-Since, If-Match, If-Unmodified-Since";
pub const ALLOWED_METHODS: &str = "GET, HEAD, OPTIONS";

#[derive(Debug, Clone)]
pub struct Cors {
    /// `None` means any origin (`*`).
    allowed: Option<Vec<HeaderValue>>,
}

impl Cors {
    pub fn new(origins: &[String]) -> Result<Self, String> {
        if origins.iter().any(|origin| origin == "*") {
            return Ok(Self { allowed: None });
        }
        let allowed = origins
            .iter()
            .map(|origin| {
                let trimmed = origin.trim_end_matches('/');
                HeaderValue::from_str(trimmed)
                    .map_err(|_| format!("cors_allowed_origins: {origin:?} is not a valid origin"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            allowed: Some(allowed),
        })
    }

    /// Adds the CORS headers of an actual (non-preflight) response.
    pub fn apply(&self, request: &HeaderMap, response: &mut HeaderMap) {
        match &self.allowed {
            None => {
                response.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
                response.insert(
                    ACCESS_CONTROL_EXPOSE_HEADERS,
                    HeaderValue::from_static(EXPOSE),
                );
            }
            Some(allowed) => {
                response.append(VARY, HeaderValue::from_static("Origin"));
                if let Some(origin) = request.get(ORIGIN)
                    && allowed.contains(origin)
                {
                    response.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
                    response.insert(
                        ACCESS_CONTROL_EXPOSE_HEADERS,
                        HeaderValue::from_static(EXPOSE),
                    );
                }
            }
        }
    }

    /// Headers of the answer to `OPTIONS`: a CORS preflight when the request
    /// carries `Access-Control-Request-Method`, else a plain `Allow`.
    pub fn preflight(&self, request: &HeaderMap) -> HeaderMap {
        let mut response = HeaderMap::with_capacity(6);
        response.insert(ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
        if !request.contains_key(ACCESS_CONTROL_REQUEST_METHOD) {
            return response;
        }
        let allow_origin = match &self.allowed {
            None => Some(HeaderValue::from_static("*")),
            Some(allowed) => {
                response.append(VARY, HeaderValue::from_static("Origin"));
                request
                    .get(ORIGIN)
                    .filter(|origin| allowed.contains(origin))
                    .cloned()
            }
        };
        // An origin that is not allowed gets no CORS headers, which the
        // browser treats as a refusal.
        if let Some(origin) = allow_origin {
            response.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            response.insert(
                ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(ALLOWED_METHODS),
            );
            response.insert(
                ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(ALLOW_HEADERS),
            );
            response.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(origin: Option<&'static str>, preflight: bool) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(origin) = origin {
            headers.insert(ORIGIN, HeaderValue::from_static(origin));
        }
        if preflight {
            headers.insert(
                ACCESS_CONTROL_REQUEST_METHOD,
                HeaderValue::from_static("GET"),
            );
        }
        headers
    }

    #[test]
    fn wildcard_answers_everyone_the_same() {
        let cors = Cors::new(&["*".into()]).unwrap();
        let mut response = HeaderMap::new();
        cors.apply(&request(None, false), &mut response);
        assert_eq!(response[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert!(
            response[ACCESS_CONTROL_EXPOSE_HEADERS]
                .to_str()
                .unwrap()
                .contains("Content-Range")
        );
        assert!(!response.contains_key(VARY));
    }

    #[test]
    fn listed_origins_are_echoed_others_refused() {
        let cors = Cors::new(&["https://a.example/".into()]).unwrap();
        let mut response = HeaderMap::new();
        cors.apply(&request(Some("https://a.example"), false), &mut response);
        assert_eq!(response[ACCESS_CONTROL_ALLOW_ORIGIN], "https://a.example");
        assert_eq!(response[VARY], "Origin");
        let mut response = HeaderMap::new();
        cors.apply(&request(Some("https://evil.example"), false), &mut response);
        assert!(!response.contains_key(ACCESS_CONTROL_ALLOW_ORIGIN));
        let preflight = cors.preflight(&request(Some("https://evil.example"), true));
        assert!(!preflight.contains_key(ACCESS_CONTROL_ALLOW_ORIGIN));
        let preflight = cors.preflight(&request(Some("https://a.example"), true));
        assert_eq!(preflight[ACCESS_CONTROL_ALLOW_ORIGIN], "https://a.example");
        assert!(
            preflight[ACCESS_CONTROL_ALLOW_HEADERS]
                .to_str()
                .unwrap()
                .contains("Range")
        );
        assert!(Cors::new(&["bad\norigin".into()]).is_err());
    }
}
