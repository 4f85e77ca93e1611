//! Access control at the origin: the `/s/{token}/…` signed prefix, the
//! per-video policy, bearer tokens on `/api/*`, and `POST /api/tokens`,
//! which mints signed URLs for a web backend.
//!
//! The decisions themselves are `kinema_auth`'s; this module only turns
//! them into HTTP: a refused signed request is a 403 whose JSON body and
//! `Kinema-Auth-Error` header carry one machine-readable reason and nothing
//! else; a refused API request is a bare 401 (no detail, so a prober learns
//! nothing) or, for a known token without the scope, a 403.
//!
//! The key ring and token file are read at start and again by [`Access::reload`]
//! (SIGHUP), so a key rotation needs no restart.
//!
//! A signed response may be stored by caches that never verify tokens (an
//! edge without the key ring stores it under the token's URL), so its
//! freshness is capped at the token's remaining lifetime
//! ([`cap_freshness_at_expiry`]): no cache may serve it past the expiry.
//! The client a token is bound to is the one [`TrustedProxies`] finds
//! behind a trusted proxy, not necessarily the peer.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use ipnet::IpNet;
use kinema_auth::{AdminTokens, Claims, KeyRing, Refusal, Scope, TokenScope};
use kinema_core::{ObjectPath, VideoId};
use kinema_http::{ConnectionInfo, RequestBody, ResponseBody, respond};
use serde::Deserialize;

use crate::forwarded::TrustedProxies;

/// The header that carries a refusal's reason, for clients that do not read
/// error bodies (players).
pub const AUTH_ERROR_HEADER: &str = kinema_auth::REFUSAL_HEADER;
/// Lifetime of a minted URL when the request names none.
pub const DEFAULT_MINT_TTL: Duration = Duration::from_secs(2 * 60 * 60);
/// Longest lifetime a minted URL may have: a leaked URL should not outlive
/// a key rotation by much.
pub const MAX_MINT_TTL: Duration = Duration::from_secs(31 * 24 * 60 * 60);
/// Largest `POST /api/tokens` body read.
const MAX_MINT_BODY: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(transparent)]
    Keys(#[from] kinema_auth::KeyRingError),
    #[error(transparent)]
    Tokens(#[from] kinema_auth::AdminTokensError),
    /// A change refused before anything was written.
    #[error("{0}")]
    Refused(String),
    #[error("the change failed: {0}")]
    Edit(String),
}

/// The origin's access state: shared by every request, swapped whole on
/// reload.
#[derive(Debug)]
pub struct Access {
    keys_path: PathBuf,
    tokens_path: PathBuf,
    keys: RwLock<Arc<KeyRing>>,
    tokens: RwLock<Arc<AdminTokens>>,
    skew: Duration,
    trusted_proxies: TrustedProxies,
    /// Held by the one change of the key ring or tokens file in progress
    /// (`/api/keys`, `/api/admin-tokens`), so two cannot lose each other's.
    editing: tokio::sync::Mutex<()>,
}

/// A request path whose token verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signed<'a> {
    /// The path after `/s/{token}`, to serve.
    pub rest: &'a str,
    /// When the token expires (without the skew allowance).
    pub expires_at: SystemTime,
}

fn read<T>(lock: &RwLock<Arc<T>>) -> Arc<T> {
    // A poisoned lock still holds a whole Arc: a writer only ever swaps it.
    match lock.read() {
        Ok(guard) => Arc::clone(&guard),
        Err(poisoned) => Arc::clone(&poisoned.into_inner()),
    }
}

fn write<T>(lock: &RwLock<Arc<T>>, value: T) {
    let mut guard = match lock.write() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    };
    *guard = Arc::new(value);
}

fn load_keys(path: &Path) -> Result<KeyRing, AccessError> {
    Ok(match KeyRing::load_if_exists(path)? {
        Some(ring) => ring,
        None => {
            tracing::warn!(
                path = %path.display(),
                "no key ring: signed videos cannot be watched until `kinema keys new` creates it"
            );
            KeyRing::empty()
        }
    })
}

fn load_tokens(path: &Path) -> Result<AdminTokens, AccessError> {
    let tokens = AdminTokens::load(path)?;
    if tokens.tokens().is_empty() {
        tracing::warn!(
            path = %path.display(),
            "no admin tokens: every /api request is refused until `kinema tokens new` makes one"
        );
    }
    Ok(tokens)
}

impl Access {
    /// Reads the key ring and the admin tokens. A missing file is empty (and
    /// logged); a file others can read, or a broken one, is an error.
    pub fn load(
        keys: &Path,
        tokens: &Path,
        skew: Duration,
        trusted_proxies: TrustedProxies,
    ) -> Result<Self, AccessError> {
        Ok(Self {
            trusted_proxies,
            keys: RwLock::new(Arc::new(load_keys(keys)?)),
            tokens: RwLock::new(Arc::new(load_tokens(tokens)?)),
            keys_path: keys.to_path_buf(),
            tokens_path: tokens.to_path_buf(),
            skew,
            editing: tokio::sync::Mutex::new(()),
        })
    }

    /// Changes the key ring as read from its file now (the file is the
    /// truth: `kinema keys` may have changed it), saves it and serves it;
    /// `change` runs on the blocking pool.
    pub(crate) async fn edit_keys<T: Send + 'static>(
        &self,
        change: impl FnOnce(&mut KeyRing) -> Result<T, AccessError> + Send + 'static,
    ) -> Result<T, AccessError> {
        let _editing = self.editing.lock().await;
        let path = self.keys_path.clone();
        let (ring, answer) = tokio::task::spawn_blocking(move || {
            let mut ring = KeyRing::load_if_exists(&path)?.unwrap_or_else(KeyRing::empty);
            let answer = change(&mut ring)?;
            ring.save(&path)?;
            Ok::<_, AccessError>((ring, answer))
        })
        .await
        .map_err(|join| AccessError::Edit(join.to_string()))??;
        write(&self.keys, ring);
        Ok(answer)
    }

    /// As [`Access::edit_keys`], for the admin tokens.
    pub(crate) async fn edit_tokens<T: Send + 'static>(
        &self,
        change: impl FnOnce(&mut AdminTokens) -> Result<T, AccessError> + Send + 'static,
    ) -> Result<T, AccessError> {
        let _editing = self.editing.lock().await;
        let path = self.tokens_path.clone();
        let (tokens, answer) = tokio::task::spawn_blocking(move || {
            let mut tokens = AdminTokens::load(&path)?;
            let answer = change(&mut tokens)?;
            tokens.save(&path)?;
            Ok::<_, AccessError>((tokens, answer))
        })
        .await
        .map_err(|join| AccessError::Edit(join.to_string()))??;
        write(&self.tokens, tokens);
        Ok(answer)
    }

    /// The key ring being served.
    pub(crate) fn keys(&self) -> Arc<KeyRing> {
        read(&self.keys)
    }

    /// The admin tokens being accepted.
    pub(crate) fn tokens(&self) -> Arc<AdminTokens> {
        read(&self.tokens)
    }

    /// Re-reads both files; on any error nothing changes.
    pub fn reload(&self) -> Result<(), AccessError> {
        let keys = load_keys(&self.keys_path)?;
        let tokens = load_tokens(&self.tokens_path)?;
        write(&self.keys, keys);
        write(&self.tokens, tokens);
        Ok(())
    }

    /// The address a request came from: the peer, or the client a trusted
    /// proxy names (see [`crate::forwarded`]).
    pub fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        self.trusted_proxies.client_address(peer, headers)
    }

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

    /// The scope an `/api` request needs: `POST /api/tokens` hands out
    /// viewing rights, so it needs `write` like every other change; reads
    /// need `read`.
    pub fn required_scope(method: &Method) -> Scope {
        if method == Method::GET || method == Method::HEAD {
            Scope::Read
        } else {
            Scope::Write
        }
    }

    /// Admits an `/api` request or returns its refusal: 401 without detail
    /// for a missing or unknown token, 403 for a token whose scope is too low
    /// (RFC 6750 §3.1).
    pub fn authorize_api(
        &self,
        method: &Method,
        headers: &HeaderMap,
    ) -> Result<Scope, Box<Response<ResponseBody>>> {
        let header = headers
            .get(http::header::AUTHORIZATION)
            .map(HeaderValue::as_bytes);
        let scope = match read(&self.tokens).verify_bearer(header) {
            Ok(scope) => scope,
            Err(error) => {
                tracing::debug!(%error, "api request refused");
                let mut response = json(
                    StatusCode::UNAUTHORIZED,
                    &serde_json::json!({"error": "unauthorized"}),
                );
                response.headers_mut().insert(
                    http::header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer"),
                );
                return Err(Box::new(response));
            }
        };
        if !scope.allows(Self::required_scope(method)) {
            let mut response = json(
                StatusCode::FORBIDDEN,
                &serde_json::json!({"error": "insufficient_scope"}),
            );
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"insufficient_scope\""),
            );
            return Err(Box::new(response));
        }
        Ok(scope)
    }

    /// `POST /api/tokens` with `{"video": ID, "ttl": "2h", "ip": ADDR|CIDR,
    /// "session": S, "file": "master.m3u8"}` (all but `video` optional)
    /// answers `{"url", "path", "token", "expires_at", "key_id"}`.
    pub async fn mint(
        &self,
        request: Request<RequestBody>,
        connection: ConnectionInfo,
    ) -> Response<ResponseBody> {
        if request.method() != Method::POST {
            let mut response = bad(StatusCode::METHOD_NOT_ALLOWED, "use POST");
            response
                .headers_mut()
                .insert(http::header::ALLOW, HeaderValue::from_static("POST"));
            return response;
        }
        let host = request
            .headers()
            .get(http::header::HOST)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string)
            .or_else(|| request.uri().authority().map(|a| a.to_string()));
        let body = match read_body(request.into_body()).await {
            Ok(body) => body,
            Err(response) => return *response,
        };
        let minted: MintRequest = match serde_json::from_slice(&body) {
            Ok(minted) => minted,
            Err(error) => {
                return bad(
                    StatusCode::BAD_REQUEST,
                    &format!("body is not a valid token request: {error}"),
                );
            }
        };
        match self.mint_claims(&minted) {
            Ok((video, file, claims)) => {
                let ring = read(&self.keys);
                let token = match kinema_auth::sign(&ring, &claims) {
                    Ok(token) => token,
                    Err(error) => {
                        tracing::error!(%error, "cannot mint a signed url");
                        return bad(StatusCode::SERVICE_UNAVAILABLE, "no signing key");
                    }
                };
                let key_id = ring
                    .signing_key()
                    .map(|key| key.id().to_string())
                    .unwrap_or_default();
                let path = format!("/s/{token}/v/{video}/{file}");
                let url = match host {
                    Some(host) => {
                        let scheme = if connection.secure { "https" } else { "http" };
                        format!("{scheme}://{host}{path}")
                    }
                    None => path.clone(),
                };
                let expires_at = SystemTime::now() + minted.ttl.unwrap_or(DEFAULT_MINT_TTL);
                json(
                    StatusCode::OK,
                    &serde_json::json!({
                        "url": url,
                        "path": path,
                        "token": token,
                        "expires_at": humantime::format_rfc3339_seconds(expires_at).to_string(),
                        "key_id": key_id,
                    }),
                )
            }
            Err(message) => bad(StatusCode::BAD_REQUEST, &message),
        }
    }

    fn mint_claims(&self, minted: &MintRequest) -> Result<(VideoId, ObjectPath, Claims), String> {
        let video = VideoId::new(minted.video.clone()).map_err(|error| error.to_string())?;
        let file = ObjectPath::new(
            minted
                .file
                .clone()
                .unwrap_or_else(|| "master.m3u8".to_string()),
        )
        .map_err(|error| error.to_string())?;
        let ttl = minted.ttl.unwrap_or(DEFAULT_MINT_TTL);
        if ttl.is_zero() || ttl > MAX_MINT_TTL {
            return Err(format!(
                "ttl must be between 1s and {}",
                humantime::format_duration(MAX_MINT_TTL)
            ));
        }
        let mut claims = Claims::expiring_in(TokenScope::video(&video), SystemTime::now(), ttl)
            .map_err(|error| error.to_string())?;
        if let Some(ip) = &minted.ip {
            let network = ip
                .parse::<IpNet>()
                .or_else(|_| ip.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("ip {ip:?} is neither an address nor a CIDR network"))?;
            claims = claims.client(network);
        }
        if let Some(session) = &minted.session {
            claims = claims
                .session(session.clone())
                .map_err(|error| error.to_string())?;
        }
        Ok((video, file, claims))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MintRequest {
    video: String,
    #[serde(default, with = "humantime_serde")]
    ttl: Option<Duration>,
    #[serde(default)]
    ip: Option<String>,
    #[serde(default)]
    session: Option<String>,
    #[serde(default)]
    file: Option<String>,
}

async fn read_body(mut body: RequestBody) -> Result<Bytes, Box<Response<ResponseBody>>> {
    let mut collected = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk =
            chunk.map_err(|_| Box::new(bad(StatusCode::BAD_REQUEST, "body ended early")))?;
        if collected.len() + chunk.len() > MAX_MINT_BODY {
            return Err(Box::new(bad(
                StatusCode::PAYLOAD_TOO_LARGE,
                "token request body is larger than 16 KiB",
            )));
        }
        collected.extend_from_slice(&chunk);
    }
    Ok(collected.freeze())
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

fn bad(status: StatusCode, message: &str) -> Response<ResponseBody> {
    respond::json_error(status, message, HeaderMap::new())
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<ResponseBody> {
    respond::json(status, value, HeaderMap::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    struct Fixture {
        _directory: tempfile::TempDir,
        access: Access,
        secrets: Vec<(Scope, String)>,
    }

    fn fixture() -> Fixture {
        let directory = tempfile::tempdir().unwrap();
        let keys = directory.path().join("keys.toml");
        let tokens_path = directory.path().join("tokens.toml");
        let mut ring = KeyRing::empty();
        ring.add_new_key(SystemTime::now());
        ring.save(&keys).unwrap();
        let mut tokens = AdminTokens::empty();
        let secrets = [Scope::Read, Scope::Write, Scope::Admin]
            .into_iter()
            .map(|scope| {
                (
                    scope,
                    tokens
                        .issue(scope.as_str(), scope, SystemTime::now())
                        .unwrap(),
                )
            })
            .collect();
        tokens.save(&tokens_path).unwrap();
        let access = Access::load(
            &keys,
            &tokens_path,
            Duration::from_secs(30),
            TrustedProxies::default(),
        )
        .unwrap();
        Fixture {
            _directory: directory,
            access,
            secrets,
        }
    }

    fn headers(authorization: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = authorization {
            headers.insert(
                http::header::AUTHORIZATION,
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    fn connection() -> ConnectionInfo {
        let address: SocketAddr = "127.0.0.1:9".parse().unwrap();
        ConnectionInfo {
            peer: address,
            local: address,
            secure: true,
        }
    }

    async fn body_json(response: Response<ResponseBody>) -> serde_json::Value {
        match response.into_body() {
            ResponseBody::Full(bytes) => serde_json::from_slice(&bytes).unwrap(),
            other => panic!("unexpected body {other:?}"),
        }
    }

    #[test]
    fn api_scope_matrix() {
        let fixture = fixture();
        let methods = [
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::DELETE,
        ];
        for (scope, secret) in &fixture.secrets {
            for method in &methods {
                let result = fixture
                    .access
                    .authorize_api(method, &headers(Some(&format!("Bearer {secret}"))));
                let needs_write = !(method == Method::GET || method == Method::HEAD);
                match result {
                    Ok(granted) => {
                        assert_eq!(granted, *scope);
                        assert!(!needs_write || *scope >= Scope::Write, "{scope} {method}");
                    }
                    Err(response) => {
                        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{scope} {method}");
                        assert!(needs_write && *scope == Scope::Read, "{scope} {method}");
                    }
                }
            }
        }
        for header in [
            None,
            Some("Bearer kinema_nope"),
            Some("Basic abc"),
            Some("Bearer"),
        ] {
            for method in &methods {
                let response = fixture
                    .access
                    .authorize_api(method, &headers(header))
                    .unwrap_err();
                assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
                assert_eq!(response.headers()[http::header::WWW_AUTHENTICATE], "Bearer");
            }
        }
    }

    #[test]
    fn refusals_carry_the_reason_in_header_and_body() {
        let response = refused(Refusal::Expired);
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(response.headers()[AUTH_ERROR_HEADER], "expired");
        assert_eq!(response.headers()[http::header::CACHE_CONTROL], "no-store");
        match response.body() {
            ResponseBody::Full(bytes) => assert_eq!(&bytes[..], br#"{"error":"expired"}"#),
            other => panic!("{other:?}"),
        }
    }

    fn capped(cache_control: &str, left: i64) -> String {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000);
        let expires_at = if left >= 0 {
            now + Duration::from_secs(left as u64)
        } else {
            now - Duration::from_secs(left.unsigned_abs())
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_str(cache_control).unwrap(),
        );
        cap_freshness_at_expiry(&mut headers, expires_at, now);
        headers[http::header::CACHE_CONTROL]
            .to_str()
            .unwrap()
            .to_string()
    }

    /// The rules are `kinema_auth::cap_cache_control`'s; this checks the
    /// header handling around them.
    #[test]
    fn signed_freshness_ends_with_the_token() {
        let segment = "public, max-age=31536000, immutable";
        assert_eq!(capped(segment, 600), "public, max-age=600, immutable");
        assert_eq!(capped(segment, -5), "public, max-age=0, immutable");
        assert_eq!(capped("no-store", 90), "no-store");
    }

    #[tokio::test]
    async fn minted_urls_verify_for_their_video_only() {
        let fixture = fixture();
        let request = Request::post("/api/tokens")
            .header(http::header::HOST, "video.example:8443")
            .body(RequestBody::from_stream(Box::pin(futures::stream::iter([
                Ok(Bytes::from_static(
                    br#"{"video": "clip", "ttl": "10m", "ip": "127.0.0.0/8"}"#,
                )),
            ]))))
            .unwrap();
        let response = fixture.access.mint(request, connection()).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body = body_json(response).await;
        let path = body["path"].as_str().unwrap();
        assert!(path.ends_with("/v/clip/master.m3u8"), "{path}");
        assert_eq!(body["url"], format!("https://video.example:8443{path}"));
        let localhost: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            fixture
                .access
                .verify_signed(path, localhost, SystemTime::now())
                .map(|s| s.rest),
            Ok("/v/clip/master.m3u8")
        );
        let token = body["token"].as_str().unwrap();
        assert_eq!(
            fixture
                .access
                .verify_signed(
                    &format!("/s/{token}/v/other/master.m3u8"),
                    localhost,
                    SystemTime::now(),
                )
                .map(|s| s.rest),
            Err(Refusal::OutOfScope)
        );
        assert_eq!(
            fixture
                .access
                .verify_signed(path, "10.0.0.1".parse().unwrap(), SystemTime::now())
                .map(|s| s.rest),
            Err(Refusal::AddressMismatch)
        );
    }

    #[tokio::test]
    async fn bad_mint_requests_are_400_with_a_reason() {
        let fixture = fixture();
        for (body, expected) in [
            (r#"{"video": "../x"}"#, "video id"),
            (r#"{"video": "a", "ttl": "400days"}"#, "ttl must be"),
            (r#"{"video": "a", "ip": "nowhere"}"#, "neither an address"),
            (
                r#"{"video": "a", "file": "../../etc/passwd"}"#,
                "object path",
            ),
            (r#"{"vidoe": "a"}"#, "vidoe"),
            ("not json", "not a valid token request"),
        ] {
            let request = Request::post("/api/tokens")
                .body(RequestBody::from_stream(Box::pin(futures::stream::iter([
                    Ok(Bytes::from(body)),
                ]))))
                .unwrap();
            let response = fixture.access.mint(request, connection()).await;
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
            let json = body_json(response).await;
            let message = json["error"].as_str().unwrap();
            assert!(
                message.contains(expected),
                "{expected:?} not in {message:?}"
            );
        }
    }

    #[test]
    fn reload_picks_up_a_rotated_ring() {
        let directory = tempfile::tempdir().unwrap();
        let keys = directory.path().join("keys.toml");
        let tokens = directory.path().join("tokens.toml");
        let access =
            Access::load(&keys, &tokens, Duration::ZERO, TrustedProxies::default()).unwrap();
        let mut ring = KeyRing::empty();
        ring.add_new_key(SystemTime::now());
        let claims = Claims::new(
            TokenScope::video(&VideoId::new("a").unwrap()),
            SystemTime::now() + Duration::from_secs(60),
        );
        let token = kinema_auth::sign(&ring, &claims).unwrap();
        let path = format!("/s/{token}/v/a/master.m3u8");
        let localhost: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            access
                .verify_signed(&path, localhost, SystemTime::now())
                .map(|s| s.rest),
            Err(Refusal::UnknownKey)
        );
        ring.save(&keys).unwrap();
        access.reload().unwrap();
        assert_eq!(
            access
                .verify_signed(&path, localhost, SystemTime::now())
                .map(|s| s.rest),
            Ok("/v/a/master.m3u8")
        );
    }
}
