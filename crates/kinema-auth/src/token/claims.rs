//! What a signer puts in a token before it is encoded: the claims, their
//! builder checks, and the Unix-second clock helpers the crate shares. The
//! wire encoding is in `payload`.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnet::IpNet;

use super::{MAX_SCOPE_LEN, MAX_SESSION_LEN, TokenScope};

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

/// What a token says, before signing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub(super) scope: TokenScope,
    pub(super) expires_at: u64,
    pub(super) not_before: Option<u64>,
    pub(super) client: Option<IpNet>,
    pub(super) session: Option<String>,
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
}
