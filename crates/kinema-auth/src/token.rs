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

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::Mac;
use ipnet::IpNet;
use kinema_core::VideoId;

use crate::keyring::{KeyId, KeyRing, MAX_KEY_ID_LEN};

/// The payload format version this code writes and reads.
pub const TOKEN_VERSION: u8 = 1;
const MAC_LEN: usize = 32;
const FLAG_NOT_BEFORE: u8 = 1;
const FLAG_CLIENT: u8 = 1 << 1;
const FLAG_SESSION: u8 = 1 << 2;
const KNOWN_FLAGS: u8 = FLAG_NOT_BEFORE | FLAG_CLIENT | FLAG_SESSION;
/// Longest scope; a scope is a short path prefix such as `/v/{id}/`.
pub const MAX_SCOPE_LEN: usize = 255;
/// Longest session id.
pub const MAX_SESSION_LEN: usize = 64;
/// Longest token text looked at; anything longer is malformed before any
/// decoding work is spent on it.
pub const MAX_TOKEN_LEN: usize = 1024;
/// Longest request path checked against a scope.
const MAX_PATH_LEN: usize = 2048;

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
pub enum ClaimsError {
    #[error(
        "scope {0:?} must be an absolute path of segments of a-z, A-Z, 0-9, '.', '_', '~', '-' \
         (no empty, '.' or '..' segments), at most {MAX_SCOPE_LEN} bytes; end it with '/' to cover \
         everything below"
    )]
    BadScope(String),
    #[error("session id must be 1 to {MAX_SESSION_LEN} bytes of visible ascii")]
    BadSession,
    #[error("not-before must come before the expiry")]
    EmptyWindow,
    #[error(
        "a lifetime of {} puts the expiry past what the clock can represent; use a shorter one \
         (e.g. 2h, 7days)",
        humantime::format_duration(*.0)
    )]
    ExpiryOutOfRange(Duration),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("the key ring has no active key; add one with `kinema keys new`")]
    NoActiveKey,
}

/// What a token grants access to: one exact path, or — when it ends with
/// `/` — every clean path below it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenScope(String);

impl TokenScope {
    pub fn new(scope: impl Into<String>) -> Result<Self, ClaimsError> {
        let scope = scope.into();
        let valid = scope.len() <= MAX_SCOPE_LEN
            && match scope.strip_suffix('/') {
                // "/" alone covers the whole server.
                Some("") => true,
                Some(prefix) => is_clean_path(prefix),
                None => is_clean_path(&scope),
            };
        if valid {
            Ok(Self(scope))
        } else {
            Err(ClaimsError::BadScope(scope))
        }
    }

    /// Every file of one video: `/v/{id}/`.
    pub fn video(id: &VideoId) -> Self {
        Self(format!("/v/{id}/"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether a request path (already checked to be clean) lies in scope.
    fn covers(&self, path: &str) -> bool {
        if self.0.ends_with('/') {
            path.starts_with(self.0.as_str())
        } else {
            path == self.0
        }
    }
}

impl fmt::Display for TokenScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Bytes a path segment may contain: RFC 3986 unreserved characters. Video
/// ids and object paths use a subset, so no legitimate request is refused.
fn is_segment_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~')
}

/// An absolute path whose segments are all non-empty, not `.` or `..`, and
/// made of unreserved bytes only (so nothing is percent-encoded).
fn is_clean_path(path: &str) -> bool {
    let Some(relative) = path.strip_prefix('/') else {
        return false;
    };
    path.len() <= MAX_PATH_LEN
        && relative.split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment.bytes().all(is_segment_byte)
        })
}

/// What a token says, before signing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    scope: TokenScope,
    expires_at: u64,
    not_before: Option<u64>,
    client: Option<IpNet>,
    session: Option<String>,
}

/// Whole seconds since the Unix epoch; 0 for earlier times.
pub(crate) fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|since| since.as_secs())
        .unwrap_or(0)
}

/// The time `seconds` after the Unix epoch, or `None` when the platform's
/// clock type cannot represent it (beyond about 2^63 s on Linux): a token's
/// times are 64 unsigned bits, so this must be checked, never added.
pub(crate) fn from_unix_seconds(seconds: u64) -> Option<SystemTime> {
    UNIX_EPOCH.checked_add(Duration::from_secs(seconds))
}

impl Claims {
    /// A token for `scope` valid until `expires_at` (second precision).
    pub fn new(scope: TokenScope, expires_at: SystemTime) -> Self {
        Self {
            scope,
            expires_at: unix_seconds(expires_at),
            not_before: None,
            client: None,
            session: None,
        }
    }

    /// A token for `scope` valid for `ttl` from `now`; an error, not a
    /// panic, when `now + ttl` is beyond what the clock can represent.
    pub fn expiring_in(
        scope: TokenScope,
        now: SystemTime,
        ttl: Duration,
    ) -> Result<Self, ClaimsError> {
        let expires_at = now
            .checked_add(ttl)
            .ok_or(ClaimsError::ExpiryOutOfRange(ttl))?;
        Ok(Self::new(scope, expires_at))
    }

    /// Not valid before `not_before` (second precision).
    pub fn not_before(mut self, not_before: SystemTime) -> Result<Self, ClaimsError> {
        let not_before = unix_seconds(not_before);
        if not_before >= self.expires_at {
            return Err(ClaimsError::EmptyWindow);
        }
        self.not_before = Some(not_before);
        Ok(self)
    }

    /// Only for requests from this network (a single address is a /32 or
    /// /128). IPv4-mapped IPv6 networks are stored as IPv4.
    pub fn client(mut self, network: IpNet) -> Self {
        let network = match network {
            IpNet::V6(v6) => match v6.addr().to_ipv4_mapped() {
                Some(v4) if v6.prefix_len() >= 96 => {
                    IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96)
                        .expect("prefix in range")
                        .trunc()
                }
                _ => IpNet::V6(v6.trunc()),
            },
            IpNet::V4(v4) => IpNet::V4(v4.trunc()),
        };
        self.client = Some(network);
        self
    }

    /// Tags the token with a session id (for logs and per-session limits).
    pub fn session(mut self, session: impl Into<String>) -> Result<Self, ClaimsError> {
        let session = session.into();
        if session.is_empty()
            || session.len() > MAX_SESSION_LEN
            || !session.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(ClaimsError::BadSession);
        }
        self.session = Some(session);
        Ok(self)
    }

    fn encode_payload(&self, key_id: &KeyId) -> Vec<u8> {
        let mut payload = Vec::with_capacity(64 + self.scope.0.len());
        let mut flags = 0;
        if self.not_before.is_some() {
            flags |= FLAG_NOT_BEFORE;
        }
        if self.client.is_some() {
            flags |= FLAG_CLIENT;
        }
        if self.session.is_some() {
            flags |= FLAG_SESSION;
        }
        payload.push(TOKEN_VERSION);
        payload.push(flags);
        // Lengths fit a byte: key ids, scopes and sessions are bounded on
        // construction.
        payload.push(key_id.as_str().len() as u8);
        payload.extend_from_slice(key_id.as_str().as_bytes());
        payload.extend_from_slice(&self.expires_at.to_be_bytes());
        if let Some(not_before) = self.not_before {
            payload.extend_from_slice(&not_before.to_be_bytes());
        }
        payload.push(self.scope.0.len() as u8);
        payload.extend_from_slice(self.scope.0.as_bytes());
        if let Some(network) = self.client {
            match network {
                IpNet::V4(v4) => {
                    payload.push(4);
                    payload.extend_from_slice(&v4.addr().octets());
                }
                IpNet::V6(v6) => {
                    payload.push(6);
                    payload.extend_from_slice(&v6.addr().octets());
                }
            }
            payload.push(network.prefix_len());
        }
        if let Some(session) = &self.session {
            payload.push(session.len() as u8);
            payload.extend_from_slice(session.as_bytes());
        }
        payload
    }
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

/// Reads the token payload; `Malformed` on anything but an exact encoding.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], Refusal> {
        if self.bytes.len() < count {
            return Err(Refusal::Malformed);
        }
        let (head, tail) = self.bytes.split_at(count);
        self.bytes = tail;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, Refusal> {
        Ok(self.take(1)?[0])
    }

    fn u64(&mut self) -> Result<u64, Refusal> {
        let bytes: [u8; 8] = self.take(8)?.try_into().expect("took 8 bytes");
        Ok(u64::from_be_bytes(bytes))
    }

    fn text(&mut self, max: usize) -> Result<&'a str, Refusal> {
        let length = self.byte()? as usize;
        if length == 0 || length > max {
            return Err(Refusal::Malformed);
        }
        std::str::from_utf8(self.take(length)?).map_err(|_| Refusal::Malformed)
    }
}

struct Decoded<'a> {
    key_id: &'a str,
    expires_at: u64,
    not_before: Option<u64>,
    scope: TokenScope,
    client: Option<IpNet>,
    session: Option<&'a str>,
}

fn decode_payload(payload: &[u8]) -> Result<Decoded<'_>, Refusal> {
    let mut reader = Reader { bytes: payload };
    if reader.byte()? != TOKEN_VERSION {
        return Err(Refusal::Malformed);
    }
    let flags = reader.byte()?;
    if flags & !KNOWN_FLAGS != 0 {
        return Err(Refusal::Malformed);
    }
    let key_id = reader.text(MAX_KEY_ID_LEN)?;
    let expires_at = reader.u64()?;
    let not_before = if flags & FLAG_NOT_BEFORE != 0 {
        Some(reader.u64()?)
    } else {
        None
    };
    let scope = TokenScope::new(reader.text(MAX_SCOPE_LEN)?).map_err(|_| Refusal::Malformed)?;
    let client = if flags & FLAG_CLIENT != 0 {
        let address: IpAddr = match reader.byte()? {
            4 => <[u8; 4]>::try_from(reader.take(4)?)
                .expect("took 4 bytes")
                .into(),
            6 => <[u8; 16]>::try_from(reader.take(16)?)
                .expect("took 16 bytes")
                .into(),
            _ => return Err(Refusal::Malformed),
        };
        let prefix = reader.byte()?;
        Some(IpNet::new(address, prefix).map_err(|_| Refusal::Malformed)?)
    } else {
        None
    };
    let session = if flags & FLAG_SESSION != 0 {
        Some(reader.text(MAX_SESSION_LEN)?)
    } else {
        None
    };
    if !reader.bytes.is_empty() {
        return Err(Refusal::Malformed);
    }
    // Only what `Claims` can write is read: an empty window, a network with
    // host bits or in IPv4-mapped form, or a session of other than visible
    // ASCII would be claims no signer meant, or a second encoding of some.
    let canonical_client = client.is_none_or(|network| {
        let mapped = match network {
            IpNet::V6(v6) => v6.prefix_len() >= 96 && v6.addr().to_ipv4_mapped().is_some(),
            IpNet::V4(_) => false,
        };
        network == network.trunc() && !mapped
    });
    if not_before.is_some_and(|not_before| not_before >= expires_at)
        || !canonical_client
        || session.is_some_and(|session| !session.bytes().all(|b| b.is_ascii_graphic()))
    {
        return Err(Refusal::Malformed);
    }
    Ok(Decoded {
        key_id,
        expires_at,
        not_before,
        scope,
        client,
        session,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_750_000_000;
    const SKEW: Duration = Duration::from_secs(30);

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn ring() -> KeyRing {
        let mut ring = KeyRing::empty();
        ring.add_key(KeyId::new("old").unwrap(), vec![1; 32], at(NOW - 1000))
            .unwrap();
        ring.add_key(KeyId::new("new").unwrap(), vec![2; 32], at(NOW - 10))
            .unwrap();
        ring
    }

    fn video(id: &str) -> TokenScope {
        TokenScope::video(&VideoId::new(id).unwrap())
    }

    fn localhost() -> IpAddr {
        "127.0.0.1".parse().unwrap()
    }

    fn check(
        ring: &KeyRing,
        token: &str,
        path: &str,
        client: &str,
        now: u64,
    ) -> Result<VerifiedClaims, Refusal> {
        verify(ring, token, path, client.parse().unwrap(), at(now), SKEW)
    }

    fn token_for(scope: &str, ttl: u64) -> String {
        sign(
            &ring(),
            &Claims::new(TokenScope::new(scope).unwrap(), at(NOW + ttl)),
        )
        .unwrap()
    }

    #[test]
    fn a_valid_token_opens_every_file_of_its_video() {
        let ring = ring();
        let token = sign(&ring, &Claims::new(video("abc"), at(NOW + 3600))).unwrap();
        assert!(token.len() < 120, "{} chars: {token}", token.len());
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{token}"
        );
        for path in [
            "/v/abc/master.m3u8",
            "/v/abc/manifest.mpd",
            "/v/abc/v360/index.m3u8",
            "/v/abc/v360/init.mp4",
            "/v/abc/v360/12.m4s",
            "/v/abc/thumbs/thumbs.vtt",
            // Every generation's files: what the playlists point to.
            "/v/abc/g1765067871000/v360/index.m3u8",
            "/v/abc/g1765067871000/v360/init.mp4",
            "/v/abc/g1765067871000/v360/12.m4s",
            "/v/abc/g1/thumbs/thumbs.vtt",
        ] {
            let claims = check(&ring, &token, path, "127.0.0.1", NOW).unwrap();
            assert_eq!(claims.key_id, "new");
            assert_eq!(claims.scope.as_str(), "/v/abc/");
            assert_eq!(claims.expires_at, at(NOW + 3600));
            assert_eq!(claims.client, None);
        }
    }

    #[test]
    fn token_for_a_never_opens_b() {
        let ring = ring();
        let token = sign(&ring, &Claims::new(video("a"), at(NOW + 3600))).unwrap();
        for path in [
            "/v/b/master.m3u8",
            "/v/ab/master.m3u8",
            "/v/a-b/master.m3u8",
            "/v/A/master.m3u8",
            "/v/master.m3u8",
            "/v/a",
            "/v/b/../a/master.m3u8",
        ] {
            assert_eq!(
                check(&ring, &token, path, "127.0.0.1", NOW),
                Err(Refusal::OutOfScope),
                "{path}"
            );
        }
    }

    #[test]
    fn dot_segment_and_encoding_games_are_out_of_scope() {
        let ring = ring();
        let token = sign(&ring, &Claims::new(video("a"), at(NOW + 3600))).unwrap();
        for path in [
            "/v/a/../b/master.m3u8",
            "/v/a/../../v/b/master.m3u8",
            "/v/a/./master.m3u8",
            "/v/a/x/../../b/1.m4s",
            "/v/a//master.m3u8",
            "/v/a/",
            "/v/a/%2e%2e/b/master.m3u8",
            "/v/a/%2E%2E/b/master.m3u8",
            "/v/a/..%2fb/master.m3u8",
            "/v/a/%252e%252e/b/master.m3u8",
            "/v/a/..\\b\\master.m3u8",
            "/v/a/master.m3u8\0",
            "/v/a/master.m3u8?x=1",
            "/v/a/master.m3u8#x",
            "/v/a/ma ster.m3u8",
            "/v/a/m\u{e9}.m3u8",
            "v/a/master.m3u8",
            "",
            "/",
        ] {
            assert_eq!(
                check(&ring, &token, path, "127.0.0.1", NOW),
                Err(Refusal::OutOfScope),
                "{path:?}"
            );
        }
        let long = format!("/v/a/{}", "x/".repeat(2000));
        assert_eq!(
            check(&ring, &token, &long, "127.0.0.1", NOW),
            Err(Refusal::OutOfScope)
        );
    }

    #[test]
    fn exact_scopes_cover_one_path_only() {
        let ring = ring();
        let token = token_for("/v/a/master.m3u8", 60);
        assert!(check(&ring, &token, "/v/a/master.m3u8", "127.0.0.1", NOW).is_ok());
        assert_eq!(
            check(&ring, &token, "/v/a/master.m3u8x", "127.0.0.1", NOW),
            Err(Refusal::OutOfScope)
        );
        assert_eq!(
            check(&ring, &token, "/v/a/v360/index.m3u8", "127.0.0.1", NOW),
            Err(Refusal::OutOfScope)
        );
    }

    #[test]
    fn scopes_are_validated() {
        for scope in ["/v/a/", "/", "/v/", "/v/a/master.m3u8"] {
            assert!(TokenScope::new(scope).is_ok(), "{scope}");
        }
        for scope in [
            "", "v/a/", "/v/../a/", "/v/./", "//", "/v//a/", "/v/%61/", "/v/a b/",
        ] {
            assert!(
                matches!(TokenScope::new(scope), Err(ClaimsError::BadScope(_))),
                "{scope:?}"
            );
        }
        assert!(TokenScope::new(format!("/{}", "a".repeat(300))).is_err());
    }

    #[test]
    fn expiry_honours_the_skew_exactly_at_the_boundary() {
        let ring = ring();
        let token = token_for("/v/a/", 100);
        let path = "/v/a/master.m3u8";
        // Valid through expiry + skew - 1 s, refused from expiry + skew on.
        assert!(check(&ring, &token, path, "127.0.0.1", NOW + 100).is_ok());
        assert!(check(&ring, &token, path, "127.0.0.1", NOW + 129).is_ok());
        assert_eq!(
            check(&ring, &token, path, "127.0.0.1", NOW + 130),
            Err(Refusal::Expired)
        );
        assert_eq!(
            check(&ring, &token, path, "127.0.0.1", NOW + 100_000),
            Err(Refusal::Expired)
        );
        // Without skew the expiry itself is the first refused second.
        let strict = verify(
            &ring,
            &token,
            path,
            localhost(),
            at(NOW + 100),
            Duration::ZERO,
        );
        assert_eq!(strict, Err(Refusal::Expired));
        let strict = verify(
            &ring,
            &token,
            path,
            localhost(),
            at(NOW + 99),
            Duration::ZERO,
        );
        assert!(strict.is_ok());
    }

    /// A signer may write any 64-bit time into a token; one past what the
    /// clock type holds (about 2^63 s) used to panic inside `verify`.
    #[test]
    fn expiry_beyond_the_clock_is_refused_not_a_panic() {
        let ring = ring();
        let path = "/v/a/master.m3u8";
        for seconds in [1u64 << 63, (1 << 63) + 1, u64::MAX] {
            let claims = Claims {
                scope: video("a"),
                expires_at: seconds,
                not_before: None,
                client: None,
                session: None,
            };
            let token = sign(&ring, &claims).unwrap();
            assert_eq!(
                check(&ring, &token, path, "127.0.0.1", NOW),
                Err(Refusal::Malformed),
                "expiry {seconds}"
            );
            let claims = Claims {
                not_before: Some(seconds),
                expires_at: u64::MAX,
                ..claims
            };
            let token = sign(&ring, &claims).unwrap();
            assert_eq!(
                check(&ring, &token, path, "127.0.0.1", NOW),
                Err(Refusal::Malformed),
                "not-before {seconds}"
            );
        }
        // The largest representable expiry still verifies.
        let far = from_unix_seconds(i64::MAX as u64).unwrap();
        let token = sign(&ring, &Claims::new(video("a"), far)).unwrap();
        assert_eq!(
            check(&ring, &token, path, "127.0.0.1", NOW)
                .unwrap()
                .expires_at,
            far
        );
    }

    #[test]
    fn claims_no_signer_writes_are_malformed_even_when_signed() {
        let ring = ring();
        let path = "/v/a/master.m3u8";
        let base = Claims::new(video("a"), at(NOW + 3600));
        let forms = [
            // Host bits set: `Claims::client` truncates, so a second
            // encoding of 127.0.0.0/8.
            Claims {
                client: Some("127.0.0.1/8".parse().unwrap()),
                ..base.clone()
            },
            // IPv4-mapped: `Claims::client` stores it as 127.0.0.1/32.
            Claims {
                client: Some("::ffff:127.0.0.1/128".parse().unwrap()),
                ..base.clone()
            },
            // An empty window, which verified within the skew.
            Claims {
                not_before: Some(NOW + 3600),
                ..base.clone()
            },
            Claims {
                session: Some("two words".into()),
                ..base.clone()
            },
        ];
        for claims in forms {
            let token = sign(&ring, &claims).unwrap();
            assert_eq!(
                check(&ring, &token, path, "127.0.0.1", NOW + 3600),
                Err(Refusal::Malformed),
                "{claims:?}"
            );
        }
        let canonical = base
            .client("127.0.0.1/8".parse().unwrap())
            .session("s-1")
            .unwrap();
        let token = sign(&ring, &canonical).unwrap();
        assert!(check(&ring, &token, path, "127.0.0.1", NOW).is_ok());
    }

    #[test]
    fn a_lifetime_past_the_clock_is_an_error_not_a_panic() {
        let huge = Duration::from_secs(300_000_000_000 * 31_557_600);
        let error = Claims::expiring_in(video("a"), at(NOW), huge).unwrap_err();
        assert_eq!(error, ClaimsError::ExpiryOutOfRange(huge));
        assert!(error.to_string().contains("use a shorter one"), "{error}");
        let claims = Claims::expiring_in(video("a"), at(NOW), Duration::from_secs(60)).unwrap();
        assert_eq!(claims, Claims::new(video("a"), at(NOW + 60)));
    }

    #[test]
    fn not_before_honours_the_skew_exactly_at_the_boundary() {
        let ring = ring();
        let claims = Claims::new(video("a"), at(NOW + 3600))
            .not_before(at(NOW + 600))
            .unwrap();
        let token = sign(&ring, &claims).unwrap();
        let path = "/v/a/1.m4s";
        assert_eq!(
            check(&ring, &token, path, "127.0.0.1", NOW),
            Err(Refusal::NotYetValid)
        );
        assert_eq!(
            check(&ring, &token, path, "127.0.0.1", NOW + 569),
            Err(Refusal::NotYetValid)
        );
        let claims = check(&ring, &token, path, "127.0.0.1", NOW + 570).unwrap();
        assert_eq!(claims.not_before, Some(at(NOW + 600)));
        assert!(check(&ring, &token, path, "127.0.0.1", NOW + 600).is_ok());
        assert_eq!(
            Claims::new(video("a"), at(NOW)).not_before(at(NOW)),
            Err(ClaimsError::EmptyWindow)
        );
    }

    #[test]
    fn tampered_signature_is_bad_signature() {
        let ring = ring();
        let token = token_for("/v/a/", 60);
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        let last = bytes.len() - 1;
        for index in [last, last - 31, last - 16] {
            let mut tampered = bytes.clone();
            tampered[index] ^= 0x01;
            let tampered = URL_SAFE_NO_PAD.encode(tampered);
            assert_eq!(
                check(&ring, &tampered, "/v/a/1.m4s", "127.0.0.1", NOW),
                Err(Refusal::BadSignature),
                "byte {index}"
            );
        }
        // A truncated MAC leaves a payload that does not parse exactly.
        bytes.truncate(bytes.len() - 1);
        assert_eq!(
            check(
                &ring,
                &URL_SAFE_NO_PAD.encode(&bytes),
                "/v/a/1.m4s",
                "127.0.0.1",
                NOW
            ),
            Err(Refusal::Malformed)
        );
    }

    /// Payload offsets of a token signed by `new` for scope `/v/a/`:
    /// version 0, flags 1, key id length 2, key id 3..6, expiry 6..14,
    /// scope length 14, scope 15..20.
    #[test]
    fn tampered_payload_is_bad_signature() {
        let ring = ring();
        let token = token_for("/v/a/", 60);
        let bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        assert_eq!(&bytes[3..6], b"new");
        assert_eq!(&bytes[15..20], b"/v/a/");
        // Extend the expiry by a year.
        let mut later = bytes.clone();
        later[10] = later[10].wrapping_add(1);
        // Widen the scope to every video: "/v/a/" -> "/v/b/".
        let mut widened = bytes.clone();
        widened[18] = b'b';
        for tampered in [later, widened] {
            let tampered = URL_SAFE_NO_PAD.encode(tampered);
            assert_eq!(
                check(&ring, &tampered, "/v/b/1.m4s", "127.0.0.1", NOW),
                Err(Refusal::BadSignature)
            );
            assert_eq!(
                check(&ring, &tampered, "/v/a/1.m4s", "127.0.0.1", NOW),
                Err(Refusal::BadSignature)
            );
        }
    }

    #[test]
    fn tampered_key_id_is_unknown_key_or_bad_signature() {
        let ring = ring();
        let token = token_for("/v/a/", 60);
        let bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        // A key id the ring does not have.
        let mut unknown = bytes.clone();
        unknown[3..6].copy_from_slice(b"xyz");
        assert_eq!(
            check(
                &ring,
                &URL_SAFE_NO_PAD.encode(unknown),
                "/v/a/1.m4s",
                "127.0.0.1",
                NOW
            ),
            Err(Refusal::UnknownKey)
        );
        // Another key of the ring: the MAC was made with a different secret.
        let mut other = bytes.clone();
        other[2] = 3;
        other.splice(3..6, *b"old");
        assert_eq!(
            check(
                &ring,
                &URL_SAFE_NO_PAD.encode(other),
                "/v/a/1.m4s",
                "127.0.0.1",
                NOW
            ),
            Err(Refusal::BadSignature)
        );
    }

    #[test]
    fn retired_and_unknown_keys_are_refused_and_rotation_keeps_old_tokens() {
        let mut ring = ring();
        let old_token = token_for("/v/a/", 3600);
        // The ring signs with "new"; a token under "old" still verifies.
        let mut old_only = KeyRing::empty();
        old_only
            .add_key(KeyId::new("old").unwrap(), vec![1; 32], at(NOW - 1000))
            .unwrap();
        let under_old = sign(&old_only, &Claims::new(video("a"), at(NOW + 3600))).unwrap();
        assert_eq!(
            check(&ring, &under_old, "/v/a/1.m4s", "127.0.0.1", NOW)
                .unwrap()
                .key_id,
            "old"
        );
        ring.retire("old").unwrap();
        assert_eq!(
            check(&ring, &under_old, "/v/a/1.m4s", "127.0.0.1", NOW),
            Err(Refusal::UnknownKey)
        );
        assert!(check(&ring, &old_token, "/v/a/1.m4s", "127.0.0.1", NOW).is_ok());
        ring.retire("new").unwrap();
        assert_eq!(
            check(&ring, &old_token, "/v/a/1.m4s", "127.0.0.1", NOW),
            Err(Refusal::UnknownKey)
        );
        assert_eq!(
            sign(&ring, &Claims::new(video("a"), at(NOW + 1))),
            Err(SignError::NoActiveKey)
        );
        assert_eq!(
            check(
                &KeyRing::empty(),
                &under_old,
                "/v/a/1.m4s",
                "127.0.0.1",
                NOW
            ),
            Err(Refusal::UnknownKey)
        );
    }

    #[test]
    fn a_different_ring_with_the_same_key_id_is_bad_signature() {
        let token = token_for("/v/a/", 60);
        let mut impostor = KeyRing::empty();
        impostor
            .add_key(KeyId::new("new").unwrap(), vec![9; 32], at(NOW))
            .unwrap();
        assert_eq!(
            check(&impostor, &token, "/v/a/1.m4s", "127.0.0.1", NOW),
            Err(Refusal::BadSignature)
        );
    }

    #[test]
    fn malformed_tokens() {
        let ring = ring();
        let valid = URL_SAFE_NO_PAD.decode(token_for("/v/a/", 60)).unwrap();
        let mut wrong_version = valid.clone();
        wrong_version[0] = 2;
        let mut unknown_flag = valid.clone();
        unknown_flag[1] = 0x80;
        let mut trailing = valid[..valid.len() - MAC_LEN].to_vec();
        trailing.push(0);
        trailing.extend_from_slice(&valid[valid.len() - MAC_LEN..]);
        let encoded = |bytes: Vec<u8>| URL_SAFE_NO_PAD.encode(bytes);
        let cases = [
            String::new(),
            "not base64!".to_string(),
            "AAAA".to_string(),
            format!("{}=", encoded(valid.clone())),
            encoded(wrong_version),
            encoded(unknown_flag),
            encoded(trailing),
            encoded(vec![0; MAC_LEN]),
            "A".repeat(MAX_TOKEN_LEN + 4),
        ];
        for token in cases {
            assert_eq!(
                check(&ring, &token, "/v/a/1.m4s", "127.0.0.1", NOW),
                Err(Refusal::Malformed),
                "{token:?}"
            );
        }
    }

    #[test]
    fn client_binding_to_an_ipv4_address() {
        let ring = ring();
        let claims = Claims::new(video("a"), at(NOW + 60)).client("192.0.2.7/32".parse().unwrap());
        let token = sign(&ring, &claims).unwrap();
        let verified = check(&ring, &token, "/v/a/1.m4s", "192.0.2.7", NOW).unwrap();
        assert_eq!(verified.client, Some("192.0.2.7/32".parse().unwrap()));
        // The same client through a dual-stack socket.
        assert!(check(&ring, &token, "/v/a/1.m4s", "::ffff:192.0.2.7", NOW).is_ok());
        for other in ["192.0.2.8", "10.0.0.1", "::1", "2001:db8::7"] {
            assert_eq!(
                check(&ring, &token, "/v/a/1.m4s", other, NOW),
                Err(Refusal::AddressMismatch),
                "{other}"
            );
        }
    }

    #[test]
    fn client_binding_to_an_ipv6_address_and_networks() {
        let ring = ring();
        let v6 = sign(
            &ring,
            &Claims::new(video("a"), at(NOW + 60)).client("2001:db8::1/128".parse().unwrap()),
        )
        .unwrap();
        assert!(check(&ring, &v6, "/v/a/1.m4s", "2001:db8::1", NOW).is_ok());
        assert_eq!(
            check(&ring, &v6, "/v/a/1.m4s", "2001:db8::2", NOW),
            Err(Refusal::AddressMismatch)
        );
        assert_eq!(
            check(&ring, &v6, "/v/a/1.m4s", "127.0.0.1", NOW),
            Err(Refusal::AddressMismatch)
        );

        let v4_net = sign(
            &ring,
            &Claims::new(video("a"), at(NOW + 60)).client("10.1.2.3/16".parse().unwrap()),
        )
        .unwrap();
        let verified = check(&ring, &v4_net, "/v/a/1.m4s", "10.1.200.9", NOW).unwrap();
        assert_eq!(verified.client, Some("10.1.0.0/16".parse().unwrap()));
        assert_eq!(
            check(&ring, &v4_net, "/v/a/1.m4s", "10.2.0.1", NOW),
            Err(Refusal::AddressMismatch)
        );

        let v6_net = sign(
            &ring,
            &Claims::new(video("a"), at(NOW + 60)).client("2001:db8:aa::/48".parse().unwrap()),
        )
        .unwrap();
        assert!(check(&ring, &v6_net, "/v/a/1.m4s", "2001:db8:aa:ff::9", NOW).is_ok());
        assert_eq!(
            check(&ring, &v6_net, "/v/a/1.m4s", "2001:db8:ab::1", NOW),
            Err(Refusal::AddressMismatch)
        );

        // An IPv4-mapped network given by the signer is stored as IPv4.
        let mapped =
            Claims::new(video("a"), at(NOW + 60)).client("::ffff:192.0.2.0/120".parse().unwrap());
        let token = sign(&ring, &mapped).unwrap();
        let verified = check(&ring, &token, "/v/a/1.m4s", "192.0.2.200", NOW).unwrap();
        assert_eq!(verified.client, Some("192.0.2.0/24".parse().unwrap()));
    }

    #[test]
    fn session_ids_travel_in_the_token() {
        let ring = ring();
        let claims = Claims::new(video("a"), at(NOW + 60))
            .session("viewer-42")
            .unwrap();
        let token = sign(&ring, &claims).unwrap();
        let verified = check(&ring, &token, "/v/a/1.m4s", "127.0.0.1", NOW).unwrap();
        assert_eq!(verified.session.as_deref(), Some("viewer-42"));
        assert_eq!(
            Claims::new(video("a"), at(NOW)).session(""),
            Err(ClaimsError::BadSession)
        );
        assert_eq!(
            Claims::new(video("a"), at(NOW)).session("a b"),
            Err(ClaimsError::BadSession)
        );
        assert_eq!(
            Claims::new(video("a"), at(NOW)).session("x".repeat(65)),
            Err(ClaimsError::BadSession)
        );
    }

    #[test]
    fn checks_run_in_order_so_a_forgery_learns_nothing_about_its_claims() {
        // An expired token for the wrong video from the wrong address, with a
        // broken MAC, is refused as a bad signature, not as expired.
        let ring = ring();
        let claims =
            Claims::new(video("a"), at(NOW - 1000)).client("192.0.2.1/32".parse().unwrap());
        let mut bytes = URL_SAFE_NO_PAD
            .decode(sign(&ring, &claims).unwrap())
            .unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        assert_eq!(
            check(
                &ring,
                &URL_SAFE_NO_PAD.encode(bytes),
                "/v/b/1.m4s",
                "10.0.0.1",
                NOW
            ),
            Err(Refusal::BadSignature)
        );
    }

    #[test]
    fn splitting_signed_paths() {
        assert_eq!(
            split_signed_path("/s/TOKEN/v/a/master.m3u8"),
            Some(("TOKEN", "/v/a/master.m3u8"))
        );
        assert_eq!(split_signed_path("/s/TOKEN"), Some(("TOKEN", "")));
        assert_eq!(split_signed_path("/s//v/a"), Some(("", "/v/a")));
        assert_eq!(split_signed_path("/v/a/master.m3u8"), None);
        assert_eq!(split_signed_path("/sx/T/v"), None);
        assert_eq!(split_signed_path("/s"), None);
    }

    #[test]
    fn refusal_reasons_are_machine_readable() {
        let all = [
            Refusal::Expired,
            Refusal::NotYetValid,
            Refusal::BadSignature,
            Refusal::Malformed,
            Refusal::OutOfScope,
            Refusal::UnknownKey,
            Refusal::AddressMismatch,
            Refusal::MissingToken,
        ];
        let names: Vec<_> = all.iter().map(|refusal| refusal.as_str()).collect();
        assert_eq!(
            names,
            [
                "expired",
                "not_yet_valid",
                "bad_signature",
                "malformed",
                "out_of_scope",
                "unknown_key",
                "address_mismatch",
                "missing_token"
            ]
        );
        for refusal in all {
            assert_eq!(refusal.to_string(), refusal.as_str());
        }
    }
}
