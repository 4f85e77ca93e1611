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
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use kinema_auth::{AdminTokens, KeyRing, Scope};
use kinema_http::{ResponseBody, respond};

use crate::forwarded::TrustedProxies;

mod mint;
mod signed;

pub use signed::{cap_freshness_at_expiry, refused};

/// The header that carries a refusal's reason, for clients that do not read
/// error bodies (players).
pub const AUTH_ERROR_HEADER: &str = kinema_auth::REFUSAL_HEADER;
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
        let scope = self.authorize_bearer(headers)?;
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

    /// The scope of a request's bearer token, or its refusal: 401 without
    /// detail for a missing or unknown token. The caller checks the scope
    /// against what its route needs.
    pub fn authorize_bearer(
        &self,
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
        Ok(scope)
    }
}

fn bad(status: StatusCode, message: &str) -> Response<ResponseBody> {
    respond::json_error(status, message, HeaderMap::new())
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<ResponseBody> {
    respond::json(status, value, HeaderMap::new())
}
#[cfg(test)]
mod tests;
