//! Signed-URL verification: the `/s/{token}/…` prefix checked against the
//! key ring for the client a request comes from, the freshness of a signed
//! response capped at its token's expiry, and the 403 a refused signed
//! request gets.

use std::net::IpAddr;
use std::time::SystemTime;

use http::{HeaderMap, HeaderValue, Response, StatusCode};
use kinema_auth::Refusal;
use kinema_http::ResponseBody;

use super::{AUTH_ERROR_HEADER, Access, json, read};

/// A request path whose token verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signed<'a> {
    /// The path after `/s/{token}`, to serve.
    pub rest: &'a str,
    /// When the token expires (without the skew allowance).
    pub expires_at: SystemTime,
}
impl Access {
    /// Checks the token of a `/s/{token}/rest` path for a request from
    /// `client` (see [`Access::client_address`]) and returns `/rest`, the
    /// path to serve, with the token's expiry; `now` is when it is checked.
    pub fn verify_signed<'a>(
        &self,
        path: &'a str,
        client: IpAddr,
        now: SystemTime,
    ) -> Result<Signed<'a>, Refusal> {
        let (token, rest) = kinema_auth::split_signed_path(path).ok_or(Refusal::Malformed)?;
        let claims = kinema_auth::verify(&read(&self.keys), token, rest, client, now, self.skew)?;
        Ok(Signed {
            rest,
            expires_at: claims.expires_at,
        })
    }
}

/// Caps the freshness a signed response's `Cache-Control` grants at the
/// token's remaining lifetime, so that no cache — least of all a shared one
/// that cannot verify tokens and keys the copy by the token's URL — serves
/// it after the token expired. `max-age` and `s-maxage` become at most the
/// seconds left (0 once expired); `stale-while-revalidate` and
/// `stale-if-error` go, since they would extend use past the expiry. A
/// verifying edge still shares its one copy between tokens: it checks each
/// request's own token and revalidates the copy (a 304) when it goes stale.
/// Responses that are not stored (`no-store`) are left alone.
pub fn cap_freshness_at_expiry(headers: &mut HeaderMap, expires_at: SystemTime, now: SystemTime) {
    let Some(value) = headers.get(http::header::CACHE_CONTROL) else {
        return;
    };
    let seconds_left = expires_at
        .duration_since(now)
        .map_or(0, |left| left.as_secs());
    let capped = value
        .to_str()
        .ok()
        .and_then(|text| {
            HeaderValue::from_str(&kinema_auth::cap_cache_control(text, seconds_left)).ok()
        })
        .unwrap_or_else(|| HeaderValue::from_static("no-store"));
    headers.insert(http::header::CACHE_CONTROL, capped);
}

/// The response to a refused signed request: 403, the reason in a header
/// and a JSON body, never cached.
pub fn refused(refusal: Refusal) -> Response<ResponseBody> {
    let mut response = json(
        StatusCode::FORBIDDEN,
        &serde_json::json!({"error": refusal.as_str()}),
    );
    response.headers_mut().insert(
        AUTH_ERROR_HEADER,
        HeaderValue::from_static(refusal.as_str()),
    );
    response
}
