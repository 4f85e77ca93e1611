//! Signed session state, carried in the steering URL's query
//! (`?session=<payload>.<signature>`), so that whichever node a player's
//! next steering request reaches continues the same session: same id, same
//! pathway while that pathway stays healthy.
//!
//! ```text
//! payload   = base64url( "1|{video}|{session:016x}|{pathway}|{issued}|{expires}" )
//! signature = base64url( ClusterKeys::sign("kinema-steering-session", payload text) )
//! ```
//!
//! Times are Unix seconds. The state authenticates; it hides nothing (no
//! secret is in it). Anything wrong with a state — too long, malformed,
//! forged, for another video, expired, issued in the future beyond the
//! allowed clock skew — makes [`SessionState::verify`] answer `None`, and
//! the caller starts a new session: a player never sees an error for it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kinema_cluster::ClusterKeys;
use kinema_core::VideoId;

use crate::pathway::PathwayId;

/// What the signatures are for (see [`ClusterKeys::sign`]).
const PURPOSE: &str = "kinema-steering-session";
/// Longest encoded state looked at; longer is refused before any decoding.
pub const MAX_STATE_LEN: usize = 400;
/// How far in the future an issue time may be (clocks of nodes differ).
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(60);
/// Longest lifetime a state may claim.
pub const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// A viewing session's id, chosen by the caller at random for a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(pub u64);

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Seconds since the Unix epoch of `time` (0 before it).
pub fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// One session's state: which video, which session, which pathway it was
/// given, when, and until when the state is good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionState {
    pub video: VideoId,
    pub session: SessionId,
    pub pathway: PathwayId,
    pub issued_at: u64,
    pub expires_at: u64,
}

impl SessionState {
    fn payload(&self) -> String {
        format!(
            "1|{}|{}|{}|{}|{}",
            self.video, self.session, self.pathway, self.issued_at, self.expires_at
        )
    }

    /// The state as a query value: `<payload>.<signature>`, base64url
    /// (nothing in it needs percent-encoding).
    pub fn encode(&self, keys: &ClusterKeys) -> String {
        let payload = self.payload();
        let signature = keys.sign(PURPOSE, payload.as_bytes());
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload.as_bytes()),
            URL_SAFE_NO_PAD.encode(signature)
        )
    }

    /// The state `encoded` carries, if it is well formed, signed by a key
    /// of `keys`, for `video`, and good at `now`; else `None`.
    pub fn verify(
        encoded: &str,
        keys: &ClusterKeys,
        video: &VideoId,
        now: SystemTime,
    ) -> Option<Self> {
        if encoded.len() > MAX_STATE_LEN {
            return None;
        }
        let (payload, signature) = encoded.split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        if !keys.verify(PURPOSE, &payload, &signature) {
            return None;
        }
        let payload = String::from_utf8(payload).ok()?;
        let mut fields = payload.split('|');
        let (
            Some("1"),
            Some(video_text),
            Some(session),
            Some(pathway),
            Some(issued),
            Some(expires),
            None,
        ) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        )
        else {
            return None;
        };
        if video_text != video.as_str() || session.len() != 16 {
            return None;
        }
        let state = Self {
            video: video.clone(),
            session: SessionId(u64::from_str_radix(session, 16).ok()?),
            pathway: PathwayId::parse(pathway)?,
            issued_at: decimal(issued)?,
            expires_at: decimal(expires)?,
        };
        let now = unix_seconds(now);
        let good = state.issued_at <= now.saturating_add(MAX_CLOCK_SKEW.as_secs())
            && now < state.expires_at
            && state.issued_at < state.expires_at
            && state.expires_at - state.issued_at <= MAX_LIFETIME.as_secs();
        good.then_some(state)
    }
}

/// A plain decimal of at most 20 digits.
fn decimal(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kinema_cluster::ClusterKey;

    fn keys(byte: u8) -> ClusterKeys {
        ClusterKeys::new(ClusterKey::new(1, vec![byte; 32]).unwrap(), None).unwrap()
    }

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn state() -> SessionState {
        SessionState {
            video: VideoId::new("clip").unwrap(),
            session: SessionId(0xfeed),
            pathway: PathwayId::parse("n0123456789").unwrap(),
            issued_at: 1_000,
            expires_at: 1_600,
        }
    }

    #[test]
    fn state_round_trips_through_its_encoding() {
        let keys = keys(7);
        let encoded = state().encode(&keys);
        // The payload is readable once decoded: checked against the format.
        let (payload, _) = encoded.split_once('.').unwrap();
        assert_eq!(
            URL_SAFE_NO_PAD.decode(payload).unwrap(),
            b"1|clip|000000000000feed|n0123456789|1000|1600"
        );
        assert!(
            encoded
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        );
        let video = VideoId::new("clip").unwrap();
        assert_eq!(
            SessionState::verify(&encoded, &keys, &video, at(1_200)),
            Some(state())
        );
    }

    #[test]
    fn tampered_forged_or_foreign_states_are_new_sessions() {
        let keys = keys(7);
        let video = VideoId::new("clip").unwrap();
        let encoded = state().encode(&keys);
        let (payload, signature) = encoded.split_once('.').unwrap();
        // Another pathway in the payload, the old signature.
        let other = URL_SAFE_NO_PAD.encode(b"1|clip|000000000000feed|n9999999999|1000|1600");
        let tampered = format!("{other}.{signature}");
        assert_eq!(
            SessionState::verify(&tampered, &keys, &video, at(1_200)),
            None
        );
        // Signed with another key.
        let forged = state().encode(&self::keys(8));
        assert_eq!(
            SessionState::verify(&forged, &keys, &video, at(1_200)),
            None
        );
        // For another video.
        let elsewhere = VideoId::new("other").unwrap();
        assert_eq!(
            SessionState::verify(&encoded, &keys, &elsewhere, at(1_200)),
            None
        );
        // Malformed in every way that comes to mind.
        for text in [
            "",
            ".",
            payload,
            &format!("{payload}."),
            &format!(".{signature}"),
            &format!("{payload}.{signature}.x"),
            "!!!.???",
        ] {
            assert_eq!(
                SessionState::verify(text, &keys, &video, at(1_200)),
                None,
                "{text:?}"
            );
        }
    }

    #[test]
    fn expired_future_and_overlong_states_are_new_sessions() {
        let keys = keys(7);
        let video = VideoId::new("clip").unwrap();
        let encoded = state().encode(&keys);
        assert!(SessionState::verify(&encoded, &keys, &video, at(1_599)).is_some());
        assert_eq!(
            SessionState::verify(&encoded, &keys, &video, at(1_600)),
            None
        );
        // Issued 60 s ahead of this node's clock is tolerated, 61 s is not.
        assert!(SessionState::verify(&encoded, &keys, &video, at(940)).is_some());
        assert_eq!(SessionState::verify(&encoded, &keys, &video, at(939)), None);
        let long = SessionState {
            expires_at: 1_000 + 24 * 3600 + 1,
            ..state()
        };
        assert_eq!(
            SessionState::verify(&long.encode(&keys), &keys, &video, at(1_200)),
            None
        );
        let backwards = SessionState {
            expires_at: 900,
            ..state()
        };
        assert_eq!(
            SessionState::verify(&backwards.encode(&keys), &keys, &video, at(800)),
            None
        );
    }

    #[test]
    fn oversize_states_are_refused_before_decoding() {
        let keys = keys(7);
        let video = VideoId::new("clip").unwrap();
        let encoded = state().encode(&keys);
        let padded = format!("{encoded}{}", "A".repeat(MAX_STATE_LEN));
        assert_eq!(
            SessionState::verify(&padded, &keys, &video, at(1_200)),
            None
        );
        // The longest real state (a 64-character video id) fits the bound.
        let longest = SessionState {
            video: VideoId::new("v".repeat(64)).unwrap(),
            session: SessionId(u64::MAX),
            issued_at: u64::MAX / 2,
            expires_at: u64::MAX / 2 + 1,
            ..state()
        };
        assert!(longest.encode(&keys).len() <= MAX_STATE_LEN);
    }
}
