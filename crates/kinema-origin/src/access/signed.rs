//! Signed-URL verification: the `/s/{token}/…` prefix checked against the
//! key ring for the client a request comes from, the freshness of a signed
//! response capped at its token's expiry, and the 403 a refused signed
//! request gets.

use std::net::IpAddr;
use std::time::SystemTime;

use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Uri};
use kinema_auth::{Refusal, Vouched};
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
    /// The proof that a cluster node (an edge that verified the token with
    /// the viewer's address) vouched for this request: a node credential
    /// (`kinema_auth::node`) over its method and target as received. A
    /// credential that does not check is ignored (logged at debug), and the
    /// token is then checked against the client's address as for anyone.
    pub fn vouched(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        now: SystemTime,
    ) -> Option<Vouched> {
        let value = headers.get(kinema_auth::CREDENTIAL_HEADER)?;
        let target = uri.path_and_query().map_or("/", |target| target.as_str());
        kinema_auth::check_credential(
            &read(&self.keys),
            value.as_bytes(),
            method.as_str(),
            target,
            now,
            self.skew,
        )
        .inspect_err(|refusal| tracing::debug!(%refusal, target, "node credential ignored"))
        .ok()
    }

    /// Checks the token of a `/s/{token}/rest` path for a request from
    /// `client` (see [`Access::client_address`]), or for all but the
    /// address when a node `vouched` for it ([`Access::vouched`]), and
    /// returns `/rest`, the path to serve, with the token's expiry; `now`
    /// is when it is checked.
    pub fn verify_signed<'a>(
        &self,
        path: &'a str,
        client: IpAddr,
        vouched: Option<&Vouched>,
        now: SystemTime,
    ) -> Result<Signed<'a>, Refusal> {
        let (token, rest) = kinema_auth::split_signed_path(path).ok_or(Refusal::Malformed)?;
        let keys = read(&self.keys);
        let claims = match vouched {
            Some(vouched) => {
                kinema_auth::verify_vouched(&keys, token, rest, vouched, now, self.skew)?
            }
            None => kinema_auth::verify(&keys, token, rest, client, now, self.skew)?,
        };
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
