//! The cluster key ring and the datagram authenticator: every gossip datagram
//! carries, after chitchat's own bytes, the id of the key that signed it and an
//! HMAC-SHA256 tag over the key id and those bytes.
//!
//! ```text
//! [ chitchat payload (≥ 1 byte) ][ key id: 1 byte ][ HMAC-SHA256 tag: 32 bytes ]
//! ```
//!
//! A node signs with its current key and also accepts a second one, so a key
//! rotates without a partition: every node first holds the old key as current
//! and the new one as second, then the new one as current and the old one as
//! second, then the new one alone.
//!
//! This is not encryption (gossip carries nothing secret: addresses and load
//! figures) and has no replay window: chitchat ignores state and heartbeats
//! older than what it holds, so a replayed datagram changes nothing.
//! What it refuses is anyone without the key joining or feeding the cluster.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::ClusterError;

/// Bytes the authenticator adds to each datagram.
pub const TRAILER_LEN: usize = 1 + TAG_LEN;
const TAG_LEN: usize = 32;
/// The shortest secret accepted: a cluster key must be as strong as the tag.
pub const MIN_KEY_LEN: usize = 32;
/// The longest secret accepted; longer keys add nothing to HMAC-SHA256.
pub const MAX_KEY_LEN: usize = 64;
/// Separates these tags from any other use of the same secret.
const DOMAIN: &[u8] = b"kinema-gossip-v1\0";
/// Separates [`ClusterKeys::sign`] tags from gossip tags: the two domains
/// differ within their first bytes, so no input of one is an input of the other.
const SIGNED_DOMAIN: &[u8] = b"kinema-signed-v1\0";
/// Bytes of a [`ClusterKeys::sign`] signature: the key id, then the tag.
pub const SIGNATURE_LEN: usize = 1 + TAG_LEN;

/// One cluster key: a small id carried in every datagram, and its secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterKey {
    id: u8,
    secret: Vec<u8>,
}

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret, not even in a debug log.
        f.debug_struct("ClusterKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl ClusterKey {
    pub fn new(id: u8, secret: Vec<u8>) -> Result<Self, ClusterError> {
        if secret.len() < MIN_KEY_LEN || secret.len() > MAX_KEY_LEN {
            return Err(ClusterError::Key(format!(
                "cluster key {id} has {} bytes; use {MIN_KEY_LEN} to {MAX_KEY_LEN} random bytes",
                secret.len()
            )));
        }
        Ok(Self { id, secret })
    }

    pub fn id(&self) -> u8 {
        self.id
    }

    fn mac(&self) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.secret).expect("hmac takes keys of any length");
        mac.update(DOMAIN);
        mac.update(&[self.id]);
        mac
    }

    fn signing_mac(&self, purpose: &str) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.secret).expect("hmac takes keys of any length");
        mac.update(SIGNED_DOMAIN);
        // The purpose's length first, so no purpose is a prefix of another's input.
        mac.update(&(purpose.len() as u64).to_be_bytes());
        mac.update(purpose.as_bytes());
        mac.update(&[self.id]);
        mac
    }
}

/// The keys a node holds: the one it signs with, and at most one more it
/// also accepts during a rotation (the previous key, or the next one before
/// it becomes current).
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterKeys {
    current: ClusterKey,
    previous: Option<ClusterKey>,
}

impl std::fmt::Debug for ClusterKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterKeys")
            .field("current", &self.current.id)
            .field("previous", &self.previous.as_ref().map(|key| key.id))
            .finish()
    }
}

impl ClusterKeys {
    pub fn new(current: ClusterKey, previous: Option<ClusterKey>) -> Result<Self, ClusterError> {
        if let Some(previous) = &previous
            && previous.id == current.id
        {
            return Err(ClusterError::Key(format!(
                "the current and previous cluster keys both have id {}; give the new key another id",
                current.id
            )));
        }
        Ok(Self { current, previous })
    }

    /// Parses a key file: one key a line, `ID HEX-SECRET`, the current key
    /// first and at most one more accepted key after it; `#` starts a
    /// comment.
    pub fn parse(text: &str) -> Result<Self, ClusterError> {
        let mut keys = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = |what: &str| {
                ClusterError::Key(format!(
                    "cluster key file line {}: {what}; expected `ID HEX-SECRET` (id 0-255, {MIN_KEY_LEN}-{MAX_KEY_LEN} bytes as hex)",
                    number + 1
                ))
            };
            let mut fields = line.split_whitespace();
            let (Some(id), Some(secret), None) = (fields.next(), fields.next(), fields.next())
            else {
                return Err(bad("not two fields"));
            };
            let id: u8 = id
                .parse()
                .map_err(|_| bad("the id is not a number 0-255"))?;
            let secret = hex::decode(secret).map_err(|_| bad("the secret is not hex"))?;
            keys.push(ClusterKey::new(id, secret)?);
        }
        let mut keys = keys.into_iter();
        let current = keys
            .next()
            .ok_or_else(|| ClusterError::Key("the cluster key file holds no key".into()))?;
        let previous = keys.next();
        if keys.next().is_some() {
            return Err(ClusterError::Key(
                "the cluster key file holds more than two keys; keep the current and the previous one"
                    .into(),
            ));
        }
        Self::new(current, previous)
    }

    pub fn current(&self) -> &ClusterKey {
        &self.current
    }

    fn by_id(&self, id: u8) -> Option<&ClusterKey> {
        if self.current.id == id {
            return Some(&self.current);
        }
        self.previous.as_ref().filter(|key| key.id == id)
    }

    /// Appends the key id and tag to `datagram`, which holds the payload.
    pub fn seal(&self, datagram: &mut Vec<u8>) {
        let mut mac = self.current.mac();
        mac.update(datagram);
        let tag = mac.finalize().into_bytes();
        datagram.push(self.current.id);
        datagram.extend_from_slice(&tag);
    }

    /// Signs `message` for `purpose` (a constant naming the use, such as
    /// `"steering-session"`) with the current key: the key id, then an
    /// HMAC-SHA256 tag over a domain of its own, the purpose, the key id and
    /// the message. A signature made for one purpose never verifies for
    /// another, nor opens as a gossip datagram.
    pub fn sign(&self, purpose: &str, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        let mut mac = self.current.signing_mac(purpose);
        mac.update(message);
        let mut signature = [0; SIGNATURE_LEN];
        signature[0] = self.current.id;
        signature[1..].copy_from_slice(&mac.finalize().into_bytes());
        signature
    }

    /// Whether `signature` is [`ClusterKeys::sign`] of `message` for
    /// `purpose` under the current or the previous key (constant-time).
    pub fn verify(&self, purpose: &str, message: &[u8], signature: &[u8]) -> bool {
        let Some((&key_id, tag)) = signature.split_first() else {
            return false;
        };
        if tag.len() != TAG_LEN {
            return false;
        }
        let Some(key) = self.by_id(key_id) else {
            return false;
        };
        let mut mac = key.signing_mac(purpose);
        mac.update(message);
        bool::from(mac.finalize().into_bytes().as_slice().ct_eq(tag))
    }

    /// Checks a received datagram against `max_len` and the keys, and returns
    /// the payload it authenticates.
    pub fn open<'a>(&self, datagram: &'a [u8], max_len: usize) -> Result<&'a [u8], Refusal> {
        if datagram.len() > max_len {
            return Err(Refusal::TooLarge);
        }
        if datagram.len() <= TRAILER_LEN {
            return Err(Refusal::TooShort);
        }
        let (payload, trailer) = datagram.split_at(datagram.len() - TRAILER_LEN);
        let key = self.by_id(trailer[0]).ok_or(Refusal::UnknownKey)?;
        let mut mac = key.mac();
        mac.update(payload);
        let expected = mac.finalize().into_bytes();
        if bool::from(expected.as_slice().ct_eq(&trailer[1..])) {
            Ok(payload)
        } else {
            Err(Refusal::BadTag)
        }
    }
}

/// Why a received datagram was dropped before chitchat saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// Longer than the configured maximum datagram.
    TooLarge,
    /// Too short to hold a payload, a key id and a tag.
    TooShort,
    /// Signed with a key id this node does not hold (another cluster, or a
    /// rotation that left this node behind).
    UnknownKey,
    /// The tag does not verify: forged, corrupted, or another key with the
    /// same id.
    BadTag,
    /// Authentic, but not a chitchat message (a peer of another version).
    Malformed,
    /// Reached the in-process hand-over socket from anywhere but this node's
    /// own gossip socket (see [`crate::transport`]).
    Injected,
}

impl Refusal {
    pub const ALL: [Refusal; 6] = [
        Refusal::TooLarge,
        Refusal::TooShort,
        Refusal::UnknownKey,
        Refusal::BadTag,
        Refusal::Malformed,
        Refusal::Injected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::TooLarge => "too_large",
            Refusal::TooShort => "too_short",
            Refusal::UnknownKey => "unknown_key",
            Refusal::BadTag => "bad_tag",
            Refusal::Malformed => "malformed",
            Refusal::Injected => "injected",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn key(id: u8, byte: u8) -> ClusterKey {
        ClusterKey::new(id, vec![byte; 32]).unwrap()
    }

    fn sealed(keys: &ClusterKeys, payload: &[u8]) -> Vec<u8> {
        let mut datagram = payload.to_vec();
        keys.seal(&mut datagram);
        datagram
    }

    #[test]
    fn sealed_datagram_opens_to_its_payload() {
        let keys = ClusterKeys::new(key(1, 7), None).unwrap();
        let datagram = sealed(&keys, b"hello");
        assert_eq!(datagram.len(), 5 + 33);
        assert_eq!(datagram[5], 1, "key id follows the payload");
        assert_eq!(keys.open(&datagram, 65_507), Ok(&b"hello"[..]));
    }

    #[test]
    fn previous_key_still_opens_and_current_signs() {
        let old = ClusterKeys::new(key(1, 7), None).unwrap();
        let rotating = ClusterKeys::new(key(2, 9), Some(key(1, 7))).unwrap();
        assert_eq!(rotating.open(&sealed(&old, b"x"), 100), Ok(&b"x"[..]));
        let new = sealed(&rotating, b"y");
        assert_eq!(new[1], 2);
        assert_eq!(old.open(&new, 100), Err(Refusal::UnknownKey));
    }

    #[test]
    fn refusals_by_reason() {
        let keys = ClusterKeys::new(key(1, 7), None).unwrap();
        let other = ClusterKeys::new(key(1, 8), None).unwrap();
        let datagram = sealed(&keys, b"payload");
        assert_eq!(
            keys.open(&datagram, datagram.len() - 1),
            Err(Refusal::TooLarge)
        );
        assert_eq!(keys.open(&datagram[..33], 100), Err(Refusal::TooShort));
        assert_eq!(keys.open(&[], 100), Err(Refusal::TooShort));
        assert_eq!(
            keys.open(&sealed(&other, b"payload"), 100),
            Err(Refusal::BadTag)
        );
        let mut flipped = datagram.clone();
        flipped[0] ^= 1;
        assert_eq!(keys.open(&flipped, 100), Err(Refusal::BadTag));
        let truncated = &datagram[..datagram.len() - 1];
        assert!(keys.open(truncated, 100).is_err());
    }

    #[test]
    fn signatures_verify_for_their_purpose_and_keys_only() {
        let keys = ClusterKeys::new(key(1, 7), None).unwrap();
        let signature = keys.sign("session", b"state");
        assert_eq!(signature.len(), 33);
        assert_eq!(signature[0], 1, "the key id comes first");
        assert!(keys.verify("session", b"state", &signature));
        assert!(!keys.verify("session", b"statf", &signature));
        assert!(!keys.verify("other", b"state", &signature));
        assert!(!keys.verify("session", b"state", &signature[..32]));
        assert!(!keys.verify("session", b"state", &[]));
        let mut flipped = signature;
        flipped[20] ^= 1;
        assert!(!keys.verify("session", b"state", &flipped));
        // Same id, another secret: refused by the tag.
        let other = ClusterKeys::new(key(1, 8), None).unwrap();
        assert!(!other.verify("session", b"state", &signature));
        // A rotation: the previous key still verifies, the current one signs.
        let rotating = ClusterKeys::new(key(2, 9), Some(key(1, 7))).unwrap();
        assert!(rotating.verify("session", b"state", &signature));
        assert_eq!(rotating.sign("session", b"state")[0], 2);
        assert!(!keys.verify("session", b"state", &rotating.sign("session", b"state")));
    }

    #[test]
    fn a_signature_is_no_gossip_tag_and_a_gossip_tag_no_signature() {
        let keys = ClusterKeys::new(key(1, 7), None).unwrap();
        let datagram = sealed(&keys, b"state");
        assert!(!keys.verify("", b"state", &datagram[5..]));
        let mut forged = b"state".to_vec();
        forged.extend_from_slice(&keys.sign("", b"state"));
        assert_eq!(keys.open(&forged, 100), Err(Refusal::BadTag));
    }

    #[test]
    fn key_file_current_then_previous() {
        let text = format!(
            "# rotated\n2 {}\n1 {}  # old\n",
            "ab".repeat(32),
            "cd".repeat(32)
        );
        let keys = ClusterKeys::parse(&text).unwrap();
        assert_eq!(keys.current().id(), 2);
        assert_eq!(keys.previous.as_ref().map(ClusterKey::id), Some(1));
        assert_eq!(keys.current().secret, vec![0xab; 32]);
    }

    #[test]
    fn key_file_errors() {
        for (text, expected) in [
            ("", "holds no key"),
            ("1 abcd", "has 2 bytes"),
            ("300 00", "id is not a number"),
            ("1 zz", "not hex"),
            ("1", "not two fields"),
        ] {
            let error = ClusterKeys::parse(text).unwrap_err().to_string();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
        let same_id = format!("1 {}\n1 {}", "ab".repeat(32), "cd".repeat(32));
        assert!(
            ClusterKeys::parse(&same_id)
                .unwrap_err()
                .to_string()
                .contains("both have id 1")
        );
        let three = format!("1 {0}\n2 {0}\n3 {0}", "ab".repeat(32));
        assert!(
            ClusterKeys::parse(&three)
                .unwrap_err()
                .to_string()
                .contains("more than two")
        );
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let text = format!("{:?}", ClusterKeys::new(key(3, 0xee), None).unwrap());
        assert!(!text.contains("238") && !text.contains("ee"), "{text}");
    }

    /// Arbitrary bytes, and mutations of a valid datagram, never panic and
    /// never open unless they are the untouched datagram.
    #[test]
    fn arbitrary_bytes_never_panic_nor_verify() {
        let keys = ClusterKeys::new(key(1, 7), Some(key(0, 3))).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x6b696e656d61);
        let valid = sealed(&keys, b"a real chitchat payload would be here");
        for round in 0..20_000 {
            let len = rng.gen_range(0..200);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.r#gen()).collect();
            if round % 2 == 0 {
                // Still carries a held key id, so the tag is what refuses it.
                if let Some(last) = bytes.len().checked_sub(TRAILER_LEN) {
                    bytes[last] = 1;
                }
            }
            assert!(
                keys.open(&bytes, 150).is_err(),
                "random bytes verified: {bytes:?}"
            );
            let mut mutated = valid.clone();
            let position = rng.gen_range(0..mutated.len());
            mutated[position] ^= rng.gen_range(1..=255u8);
            assert!(keys.open(&mutated, 150).is_err());
            let cut = rng.gen_range(0..valid.len());
            assert!(keys.open(&valid[..cut], 150).is_err());
        }
        assert!(keys.open(&valid, 150).is_ok());
    }
}
