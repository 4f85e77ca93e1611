//! Node credentials: how a cluster node that verified a signed request
//! tells the next node (a parent edge, the origin) that it did.
//!
//! A token bound to a viewer's address can only be checked by the node the
//! viewer connects to: an edge filling from its parent or the origin is
//! that upstream's client, not the viewer. So the node that verified the
//! token, address included, sends the request on with a credential: an
//! HMAC-SHA256, under the newest key of the shared key ring, over the
//! request's method and target (which holds the token) and the second it
//! was made. An upstream that checks the credential then verifies the
//! token with every check but the address (key, signature, time window,
//! scope): the credential vouches for one request, never grants one.
//!
//! Why the signing key ring and not another cluster secret: a holder of the
//! ring can already mint any token, unbound ones included, so a credential
//! under it grants nothing its holder could not grant anyway; a node
//! without the ring cannot verify tokens, and so has nothing to vouch for.
//! The MAC's input starts with a label no token payload starts with (a
//! token starts with its version byte, 1), so neither can pass for the
//! other.
//!
//! A credential is good for [`CREDENTIAL_LIFETIME`] (plus the skew allowed
//! at both ends) and only for the exact method and target it was made
//! over; a viewer cannot make one, and one a viewer sends is never passed
//! on (servers drop the field from every request they forward). Between
//! nodes over plain HTTP an eavesdropper could replay one, for that target
//! and within that time: what it gains is the address check of a token it
//! already holds. Nodes reached over HTTPS leave nothing to replay.
//!
//! Header value: `1.{key id}.{unix seconds}.{base64url MAC}`.

use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::Mac;

use crate::keyring::{Key, KeyRing, MAX_KEY_ID_LEN};
use crate::token::{SignError, unix_seconds};

/// The request header a node's credential travels in.
pub const CREDENTIAL_HEADER: &str = "kinema-node-credential";

/// How long after it was made a credential is accepted (the skew allowance
/// comes on top, at both ends): long enough for a request to cross one hop
/// and wait for a connection, short enough that a captured one soon dies.
pub const CREDENTIAL_LIFETIME: Duration = Duration::from_secs(30);

/// The credential format this code writes and reads.
const CREDENTIAL_VERSION: &str = "1";
/// Longest header value looked at: version, a key id, 20 digits, a MAC.
const MAX_CREDENTIAL_LEN: usize = 2 + MAX_KEY_ID_LEN + 1 + 20 + 1 + 43;
/// Longest method or target a credential is made over or checked against.
const MAX_TARGET_LEN: usize = 4096;
/// What the MAC input starts with (see the module doc).
const LABEL: &[u8] = b"kinema-node-credential\0";

/// Proof that a node credential over one request verified: what
/// [`crate::token::verify_vouched`] asks for before it skips a token's
/// address check. Only [`check_credential`] makes one.
#[derive(Debug)]
pub struct Vouched(());

/// Why a credential was not accepted. A server that sees one falls back to
/// checking the token against the address the request came from, so these
/// are for logs only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CredentialRefusal {
    #[error("malformed")]
    Malformed,
    #[error("unknown_key")]
    UnknownKey,
    #[error("bad_signature")]
    BadSignature,
    #[error("stale")]
    Stale,
}

fn mac_over(key: &Key, issued: u64, method: &str, target: &str) -> hmac::Hmac<sha2::Sha256> {
    let mut mac = key.mac();
    mac.update(LABEL);
    mac.update(CREDENTIAL_VERSION.as_bytes());
    mac.update(b"\0");
    mac.update(key.id().as_str().as_bytes());
    mac.update(b"\0");
    mac.update(issued.to_string().as_bytes());
    mac.update(b"\0");
    mac.update(method.as_bytes());
    mac.update(b"\0");
    mac.update(target.as_bytes());
    mac
}

/// A credential for `method target` (origin-form, as sent upstream) made
/// `now`, under the ring's newest active key.
pub fn credential(
    keyring: &KeyRing,
    method: &str,
    target: &str,
    now: SystemTime,
) -> Result<String, SignError> {
    let key = keyring.signing_key().ok_or(SignError::NoActiveKey)?;
    let issued = unix_seconds(now);
    let tag = mac_over(key, issued, method, target)
        .finalize()
        .into_bytes();
    Ok(format!(
        "{CREDENTIAL_VERSION}.{}.{issued}.{}",
        key.id(),
        URL_SAFE_NO_PAD.encode(tag)
    ))
}

/// Checks a credential (`value`, the header's bytes) for the request
/// `method target` received `now`: its key must be in the ring and not
/// retired, its MAC must match (compared in constant time), and it must
/// have been made within [`CREDENTIAL_LIFETIME`] (± `skew`).
pub fn check_credential(
    keyring: &KeyRing,
    value: &[u8],
    method: &str,
    target: &str,
    now: SystemTime,
    skew: Duration,
) -> Result<Vouched, CredentialRefusal> {
    if value.len() > MAX_CREDENTIAL_LEN
        || method.len() > MAX_TARGET_LEN
        || target.len() > MAX_TARGET_LEN
    {
        return Err(CredentialRefusal::Malformed);
    }
    let text = std::str::from_utf8(value).map_err(|_| CredentialRefusal::Malformed)?;
    let mut fields = text.split('.');
    let (Some(version), Some(key_id), Some(issued), Some(tag), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(CredentialRefusal::Malformed);
    };
    if version != CREDENTIAL_VERSION
        || issued.is_empty()
        || issued.len() > 20
        || !issued.bytes().all(|b| b.is_ascii_digit())
        || (issued.len() > 1 && issued.starts_with('0'))
    {
        return Err(CredentialRefusal::Malformed);
    }
    let issued: u64 = issued.parse().map_err(|_| CredentialRefusal::Malformed)?;
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| CredentialRefusal::Malformed)?;
    let key = keyring
        .verification_key(key_id.as_bytes())
        .ok_or(CredentialRefusal::UnknownKey)?;
    // `verify_slice` compares in constant time.
    mac_over(key, issued, method, target)
        .verify_slice(&tag)
        .map_err(|_| CredentialRefusal::BadSignature)?;
    let now = unix_seconds(now);
    let skew = skew.as_secs();
    let oldest = now.saturating_sub(CREDENTIAL_LIFETIME.as_secs().saturating_add(skew));
    if issued < oldest || issued > now.saturating_add(skew) {
        return Err(CredentialRefusal::Stale);
    }
    Ok(Vouched(()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::KeyId;
    use crate::token::{Claims, Refusal, TokenScope, sign, verify, verify_vouched};
    use std::time::UNIX_EPOCH;

    const NOW: u64 = 1_750_000_000;
    const SKEW: Duration = Duration::from_secs(30);
    const TARGET: &str = "/s/TOKEN/v/abc/v360/3.m4s";

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

    fn check(
        ring: &KeyRing,
        value: &str,
        method: &str,
        target: &str,
        now: u64,
    ) -> Result<(), CredentialRefusal> {
        check_credential(ring, value.as_bytes(), method, target, at(now), SKEW).map(|_| ())
    }

    #[test]
    fn a_credential_is_made_with_the_newest_key_and_checks() {
        let ring = ring();
        let value = credential(&ring, "GET", TARGET, at(NOW)).unwrap();
        assert!(value.starts_with(&format!("1.new.{NOW}.")), "{value}");
        assert_eq!(check(&ring, &value, "GET", TARGET, NOW), Ok(()));
        // Within its lifetime and the skew, at both ends.
        assert_eq!(check(&ring, &value, "GET", TARGET, NOW + 59), Ok(()));
        assert_eq!(check(&ring, &value, "GET", TARGET, NOW - 30), Ok(()));
    }

    #[test]
    fn a_credential_covers_only_its_method_and_target() {
        let ring = ring();
        let value = credential(&ring, "GET", TARGET, at(NOW)).unwrap();
        for (method, target) in [
            ("HEAD", TARGET),
            ("GET", "/s/TOKEN/v/abc/v360/4.m4s"),
            ("GET", "/s/OTHER/v/abc/v360/3.m4s"),
            ("GET", "/s/TOKEN/v/abc/v360/3.m4s?x"),
            ("GET\0/s/TOKEN/v/abc", "v360/3.m4s"),
        ] {
            assert_eq!(
                check(&ring, &value, method, target, NOW),
                Err(CredentialRefusal::BadSignature),
                "{method} {target}"
            );
        }
    }

    #[test]
    fn an_old_or_future_credential_is_stale() {
        let ring = ring();
        let value = credential(&ring, "GET", TARGET, at(NOW)).unwrap();
        // Lifetime 30 s plus skew 30 s.
        assert_eq!(
            check(&ring, &value, "GET", TARGET, NOW + 61),
            Err(CredentialRefusal::Stale)
        );
        assert_eq!(
            check(&ring, &value, "GET", TARGET, NOW - 31),
            Err(CredentialRefusal::Stale)
        );
    }

    #[test]
    fn forged_and_malformed_credentials_are_refused() {
        let ring = ring();
        let value = credential(&ring, "GET", TARGET, at(NOW)).unwrap();
        let mut other = KeyRing::empty();
        other
            .add_key(KeyId::new("new").unwrap(), vec![9; 32], at(NOW - 10))
            .unwrap();
        let foreign = credential(&other, "GET", TARGET, at(NOW)).unwrap();
        assert_eq!(
            check(&ring, &foreign, "GET", TARGET, NOW),
            Err(CredentialRefusal::BadSignature)
        );
        // The time changed under the MAC.
        let moved = value.replacen(&NOW.to_string(), &(NOW + 1).to_string(), 1);
        assert_eq!(
            check(&ring, &moved, "GET", TARGET, NOW),
            Err(CredentialRefusal::BadSignature)
        );
        let unknown = value.replacen("1.new.", "1.gone.", 1);
        assert_eq!(
            check(&ring, &unknown, "GET", TARGET, NOW),
            Err(CredentialRefusal::UnknownKey)
        );
        let long = format!("{value}{}", "A".repeat(200));
        for bad in [
            "",
            "1",
            "2.new.1750000000.AAAA",
            "1.new.0175.AAAA",
            "1.new.+1750000000.AAAA",
            "1.new.99999999999999999999999.AAAA",
            "1.new.1750000000.!!!!",
            "1.new.1750000000.AAAA.extra",
            "yes",
            long.as_str(),
        ] {
            assert_eq!(
                check(&ring, bad, "GET", TARGET, NOW),
                Err(CredentialRefusal::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_retired_key_makes_no_credential_that_checks() {
        let mut ring = ring();
        let value = credential(&ring, "GET", TARGET, at(NOW)).unwrap();
        ring.retire("new").unwrap();
        assert_eq!(
            check(&ring, &value, "GET", TARGET, NOW),
            Err(CredentialRefusal::UnknownKey)
        );
        // The previous key, still in the ring, signs and checks meanwhile.
        let previous = credential(&ring, "GET", TARGET, at(NOW)).unwrap();
        assert!(previous.starts_with("1.old."), "{previous}");
        assert_eq!(check(&ring, &previous, "GET", TARGET, NOW), Ok(()));
    }

    #[test]
    fn vouched_skips_the_address_and_nothing_else() {
        let ring = ring();
        let bound = Claims::new(TokenScope::new("/v/abc/").unwrap(), at(NOW + 60))
            .client("10.1.2.0/24".parse().unwrap());
        let token = sign(&ring, &bound).unwrap();
        let path = "/v/abc/v360/3.m4s";
        let node: std::net::IpAddr = "10.9.9.9".parse().unwrap();
        assert_eq!(
            verify(&ring, &token, path, node, at(NOW), SKEW),
            Err(Refusal::AddressMismatch)
        );
        let target = format!("/s/{token}{path}");
        let value = credential(&ring, "GET", &target, at(NOW)).unwrap();
        let vouched =
            check_credential(&ring, value.as_bytes(), "GET", &target, at(NOW), SKEW).unwrap();
        let claims = verify_vouched(&ring, &token, path, &vouched, at(NOW), SKEW).unwrap();
        assert_eq!(claims.client, Some("10.1.2.0/24".parse().unwrap()));
        // Scope, time and signature are still checked.
        assert_eq!(
            verify_vouched(&ring, &token, "/v/other/1.m4s", &vouched, at(NOW), SKEW),
            Err(Refusal::OutOfScope)
        );
        assert_eq!(
            verify_vouched(&ring, &token, path, &vouched, at(NOW + 90), SKEW),
            Err(Refusal::Expired)
        );
        let mut forged = token.clone().into_bytes();
        let last = forged.len() - 2;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        assert_eq!(
            verify_vouched(&ring, &forged, path, &vouched, at(NOW), SKEW),
            Err(Refusal::BadSignature)
        );
    }
}
