//! What the token and key endpoints use: `POST /api/tokens`, which mints a
//! signed URL for a web backend from a bounded JSON request, and the
//! serialised edits of the key ring and the admin tokens file behind
//! `/api/keys` and `/api/admin-tokens`, each read from its file, changed,
//! saved, and then served.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use ipnet::IpNet;
use kinema_auth::{AdminTokens, Claims, KeyRing, TokenScope};
use kinema_core::{ObjectPath, VideoId};
use kinema_http::{ConnectionInfo, RequestBody, ResponseBody};
use serde::Deserialize;

use super::{Access, AccessError, bad, json, read, write};

/// Lifetime of a minted URL when the request names none.
pub const DEFAULT_MINT_TTL: Duration = Duration::from_secs(2 * 60 * 60);
/// Longest lifetime a minted URL may have: a leaked URL should not outlive
/// a key rotation by much.
pub const MAX_MINT_TTL: Duration = Duration::from_secs(31 * 24 * 60 * 60);
/// Largest `POST /api/tokens` body read.
const MAX_MINT_BODY: usize = 16 * 1024;
impl Access {
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
