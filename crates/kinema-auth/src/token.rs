//! Signed-URL tokens: `/s/{token}/v/{id}/master.m3u8`.
//!
//! The token sits in the path, not the query string, because a player
//! resolves a playlist's relative URIs against the playlist's path and drops
//! its query (RFC 3986 §5.2): with the token in the path, every child
//! playlist, init file, segment and thumbnail request carries it, with no
//! playlist rewriting.
//!
//! A token is base64url (no padding) of a versioned binary payload followed
//! by an HMAC-SHA256 over that payload:
//!
//! ```text
//! u8   version (1)
//! u8   flags: bit 0 not-before, bit 1 client network, bit 2 session id
//! u8   key id length, then the key id
//! u64  expiry, Unix seconds, big-endian
//! u64  not-before, Unix seconds                       (if flag bit 0)
//! u8   scope length, then the scope (a path or path prefix)
//! u8   4 or 6, the address bytes, u8 prefix length    (if flag bit 1)
//! u8   session id length, then the session id         (if flag bit 2)
//! [32] HMAC-SHA256(key, everything above)
//! ```
//!
//! Verification is local and refuses with one machine-readable [`Refusal`].
//! It checks, in order: the encoding, the key, the MAC (in constant time),
//! the time window, the scope, the client address — so nothing in an
//! unauthenticated payload influences anything but a `malformed`,
//! `unknown_key` or `bad_signature` answer.
//!
//! Paths are never normalised: a request path with an empty, `.` or `..`
//! segment, a `%`, a backslash or any byte outside `[A-Za-z0-9._~-]` is out of
//! scope, so `/s/T/v/a/../b/x` cannot open video `b`.
//!
//! This module signs and verifies; the scope and its clean-path rule are in
//! `scope`, the claims a signer sets in `claims`, and the byte layout above
//! in `payload`.

mod claims;
mod payload;
mod scope;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::Mac;
use ipnet::IpNet;

use crate::keyring::KeyRing;

pub use claims::{Claims, ClaimsError};
pub(crate) use claims::{from_unix_seconds, unix_seconds};
use payload::decode_payload;
pub use scope::TokenScope;
use scope::is_clean_path;

/// The payload format version this code writes and reads.
pub const TOKEN_VERSION: u8 = 1;
const MAC_LEN: usize = 32;
/// Longest scope; a scope is a short path prefix such as `/v/{id}/`.
pub const MAX_SCOPE_LEN: usize = 255;
/// Longest session id.
pub const MAX_SESSION_LEN: usize = 64;
/// Longest token text looked at; anything longer is malformed before any
/// decoding work is spent on it.
pub const MAX_TOKEN_LEN: usize = 1024;

/// Why a token was not accepted. `as_str` is the machine-readable reason
/// servers return (in a header and a JSON body); it says nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Refusal {
    /// Past its expiry (plus the skew allowance).
    #[error("expired")]
    Expired,
    /// Before its not-before time (minus the skew allowance).
    #[error("not_yet_valid")]
    NotYetValid,
    /// The MAC does not match the payload under the named key.
    #[error("bad_signature")]
    BadSignature,
    /// Not a token of a format this code reads.
    #[error("malformed")]
    Malformed,
    /// The requested path is not inside the token's scope, or is not a
    /// clean path at all.
    #[error("out_of_scope")]
    OutOfScope,
    /// The key id is not in the ring, or its key is retired.
    #[error("unknown_key")]
    UnknownKey,
    /// The token is bound to a client address or network the request did
    /// not come from.
    #[error("address_mismatch")]
    AddressMismatch,
    /// The video is signed and the request carried no token at all.
    /// `verify` never returns it; servers use it so every refusal of a
    /// signed video has a reason.
    #[error("missing_token")]
    MissingToken,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Expired => "expired",
            Refusal::NotYetValid => "not_yet_valid",
            Refusal::BadSignature => "bad_signature",
            Refusal::Malformed => "malformed",
            Refusal::OutOfScope => "out_of_scope",
            Refusal::UnknownKey => "unknown_key",
            Refusal::AddressMismatch => "address_mismatch",
            Refusal::MissingToken => "missing_token",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("the key ring has no active key; add one with `kinema keys new`")]
    NoActiveKey,
}

/// What a verified token said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedClaims {
    pub key_id: String,
    pub scope: TokenScope,
    pub expires_at: SystemTime,
    pub not_before: Option<SystemTime>,
    pub client: Option<IpNet>,
    pub session: Option<String>,
}

/// Signs `claims` with the ring's newest active key.
pub fn sign(keyring: &KeyRing, claims: &Claims) -> Result<String, SignError> {
    let key = keyring.signing_key().ok_or(SignError::NoActiveKey)?;
    let mut token = claims.encode_payload(key.id());
    let mut mac = key.mac();
    mac.update(&token);
    token.extend_from_slice(&mac.finalize().into_bytes());
    Ok(URL_SAFE_NO_PAD.encode(token))
}

/// Splits `/s/{token}/rest` into the token and `/rest` (with its leading
/// slash). `None` when the path is not a signed path at all.
pub fn split_signed_path(path: &str) -> Option<(&str, &str)> {
    let after = path.strip_prefix("/s/")?;
    match after.find('/') {
        Some(slash) => Some((&after[..slash], &after[slash..])),
        None => Some((after, "")),
    }
}

/// Verifies a token for a request.
///
/// `path` is the request path after the `/s/{token}` prefix (e.g.
/// `/v/abc/v360/3.m4s`), without the query string. `client` is the peer
/// address the request came from. The token is valid from `not_before -
/// skew` up to, not including, `expires_at + skew`.
pub fn verify(
    keyring: &KeyRing,
    token: &str,
    path: &str,
    client: IpAddr,
    now: SystemTime,
    skew: Duration,
) -> Result<VerifiedClaims, Refusal> {
    verify_for(keyring, token, path, Some(client), now, skew)
}

/// Verifies a token for a request that another cluster node sent on after
/// it verified the same token itself, with the client address it saw: every
/// check of [`verify`] but the client address, which the node that faced
/// the viewer made. [`Vouched`] exists only once a node credential over
/// this very request verified ([`crate::node::check_credential`]).
pub fn verify_vouched(
    keyring: &KeyRing,
    token: &str,
    path: &str,
    _vouched: &crate::node::Vouched,
    now: SystemTime,
    skew: Duration,
) -> Result<VerifiedClaims, Refusal> {
    verify_for(keyring, token, path, None, now, skew)
}

/// [`verify`], the client address checked only when given.
fn verify_for(
    keyring: &KeyRing,
    token: &str,
    path: &str,
    client: Option<IpAddr>,
    now: SystemTime,
    skew: Duration,
) -> Result<VerifiedClaims, Refusal> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(Refusal::Malformed);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| Refusal::Malformed)?;
    if bytes.len() <= MAC_LEN {
        return Err(Refusal::Malformed);
    }
    let (payload, tag) = bytes.split_at(bytes.len() - MAC_LEN);
    let decoded = decode_payload(payload)?;
    let key = keyring
        .verification_key(decoded.key_id.as_bytes())
        .ok_or(Refusal::UnknownKey)?;
    let mut mac = key.mac();
    mac.update(payload);
    // `verify_slice` compares in constant time (subtle underneath).
    mac.verify_slice(tag).map_err(|_| Refusal::BadSignature)?;

    // A signer may put any 64-bit time in a token; one the clock cannot
    // represent is refused as unreadable rather than overflowing.
    let expires_at = from_unix_seconds(decoded.expires_at).ok_or(Refusal::Malformed)?;
    let not_before = match decoded.not_before {
        Some(seconds) => Some(from_unix_seconds(seconds).ok_or(Refusal::Malformed)?),
        None => None,
    };
    let now = unix_seconds(now);
    let skew = skew.as_secs();
    if now >= decoded.expires_at.saturating_add(skew) {
        return Err(Refusal::Expired);
    }
    if let Some(not_before) = decoded.not_before
        && now < not_before.saturating_sub(skew)
    {
        return Err(Refusal::NotYetValid);
    }
    if !is_clean_path(path) || !decoded.scope.covers(path) {
        return Err(Refusal::OutOfScope);
    }
    if let (Some(network), Some(client)) = (decoded.client, client) {
        // A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d.
        if !network.contains(&client.to_canonical()) {
            return Err(Refusal::AddressMismatch);
        }
    }
    Ok(VerifiedClaims {
        key_id: decoded.key_id.to_string(),
        scope: decoded.scope,
        expires_at,
        not_before,
        client: decoded.client,
        session: decoded.session.map(str::to_string),
    })
}
