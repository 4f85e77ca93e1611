//! The key ring: HMAC-SHA256 keys that sign and verify URL tokens.
//!
//! Several keys are active at once. New tokens are signed with the newest
//! active key; tokens are accepted under any key that is not retired. So a
//! rotation is: add a key (new URLs use it at once), wait for the longest
//! token lifetime, retire the old key. Nothing is ever asked of a central
//! service: every node with a copy of the file verifies on its own.
//!
//! The file is TOML, one `[[key]]` table per key, readable only by its owner
//! (see `private_file`). This module does not distribute the file between
//! nodes; copying it is the operator's job (config management, a secret store).

use std::fmt;
use std::path::Path;
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::private_file::{PrivateFileError, read_private, write_private};
use crate::token::{from_unix_seconds, unix_seconds};

/// Shortest secret accepted: the HMAC-SHA256 block of security it needs.
pub const MIN_SECRET_LEN: usize = 32;
/// Length of the secrets `kinema keys new` generates.
const NEW_SECRET_LEN: usize = 32;
/// Longest key id; ids travel inside every token, so they stay short.
pub const MAX_KEY_ID_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    #[error(transparent)]
    File(#[from] PrivateFileError),
    #[error("key ring {path} is not valid: {message}")]
    Parse { path: String, message: String },
    #[error("key ring {path}: key {id:?}: {message}")]
    BadKey {
        path: String,
        id: String,
        message: String,
    },
    #[error("key ring {path} has key id {id:?} twice")]
    DuplicateId { path: String, id: String },
    #[error("no key {0:?} in the key ring; `kinema keys list` shows the ids")]
    NoSuchKey(String),
    #[error("key id {0:?} must be 1 to {MAX_KEY_ID_LEN} characters of a-z, A-Z, 0-9, '-', '_'")]
    BadKeyId(String),
}

/// A key id: 1 to 32 characters of `[A-Za-z0-9_-]`, unique in its ring.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    pub fn new(id: impl Into<String>) -> Result<Self, KeyRingError> {
        let id = id.into();
        let valid = !id.is_empty()
            && id.len() <= MAX_KEY_ID_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if valid {
            Ok(Self(id))
        } else {
            Err(KeyRingError::BadKeyId(id))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One signing key. Its secret never appears in `Debug` output or logs.
#[derive(Clone)]
pub struct Key {
    id: KeyId,
    secret: Vec<u8>,
    created: SystemTime,
    retired: bool,
}

impl Key {
    pub fn id(&self) -> &KeyId {
        &self.id
    }

    pub fn created(&self) -> SystemTime {
        self.created
    }

    pub fn is_retired(&self) -> bool {
        self.retired
    }

    /// A MAC keyed with this key's secret.
    pub(crate) fn mac(&self) -> Hmac<Sha256> {
        // HMAC accepts keys of any length, so this cannot fail.
        Hmac::<Sha256>::new_from_slice(&self.secret).expect("hmac takes keys of any length")
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .field("created", &humantime::format_rfc3339_seconds(self.created))
            .field("retired", &self.retired)
            .finish()
    }
}

/// All keys of a ring, in file order.
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    keys: Vec<Key>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyRingFile {
    #[serde(default, rename = "key")]
    keys: Vec<KeyRecord>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyRecord {
    id: String,
    /// base64url without padding.
    secret: String,
    /// RFC 3339, UTC.
    created: String,
    #[serde(default)]
    retired: bool,
}

const FILE_HEADER: &str = "# kinema signing keys (secret: keep this file mode 0600).\n\
# Manage with `kinema keys new | list | retire KID`; verification accepts\n\
# every key that is not retired, signing uses the newest active one.\n\n";

impl KeyRing {
    /// An empty ring (no key signs or verifies anything).
    pub fn empty() -> Self {
        Self::default()
    }

    /// Loads a key ring file; a missing file is an error naming the command
    /// that creates it.
    pub fn load(path: &Path) -> Result<Self, KeyRingError> {
        match Self::load_if_exists(path)? {
            Some(ring) => Ok(ring),
            None => Err(PrivateFileError::Read {
                path: path.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such file; create it with `kinema keys new`",
                ),
            }
            .into()),
        }
    }

    /// Loads a key ring file, or `None` when it does not exist yet.
    pub fn load_if_exists(path: &Path) -> Result<Option<Self>, KeyRingError> {
        match read_private(path)? {
            None => Ok(None),
            Some(text) => Self::parse(&text, &path.display().to_string()).map(Some),
        }
    }

    /// Parses the text of a key ring; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, KeyRingError> {
        let file: KeyRingFile = toml::from_str(text).map_err(|error| KeyRingError::Parse {
            path: origin.to_string(),
            message: error.message().to_string(),
        })?;
        let mut keys: Vec<Key> = Vec::with_capacity(file.keys.len());
        for record in file.keys {
            let bad = |message: String| KeyRingError::BadKey {
                path: origin.to_string(),
                id: record.id.clone(),
                message,
            };
            let id = KeyId::new(record.id.clone()).map_err(|error| bad(error.to_string()))?;
            if keys.iter().any(|key| key.id == id) {
                return Err(KeyRingError::DuplicateId {
                    path: origin.to_string(),
                    id: record.id,
                });
            }
            let secret = URL_SAFE_NO_PAD
                .decode(record.secret.trim())
                .map_err(|_| bad("secret is not base64url without padding".to_string()))?;
            if secret.len() < MIN_SECRET_LEN {
                return Err(bad(format!(
                    "secret has {} bytes; at least {MIN_SECRET_LEN} random bytes are needed",
                    secret.len()
                )));
            }
            let created = humantime::parse_rfc3339(&record.created).map_err(|_| {
                bad(format!(
                    "created {:?} is not an RFC 3339 UTC time such as 2025-01-31T12:00:00Z",
                    record.created
                ))
            })?;
            keys.push(Key {
                id,
                secret,
                created,
                retired: record.retired,
            });
        }
        Ok(Self { keys })
    }

    /// The file text of this ring.
    pub fn to_toml(&self) -> String {
        let file = KeyRingFile {
            keys: self
                .keys
                .iter()
                .map(|key| KeyRecord {
                    id: key.id.0.clone(),
                    secret: URL_SAFE_NO_PAD.encode(&key.secret),
                    created: humantime::format_rfc3339_seconds(key.created).to_string(),
                    retired: key.retired,
                })
                .collect(),
        };
        let body = toml::to_string(&file).expect("a key ring always serialises");
        format!("{FILE_HEADER}{body}")
    }

    /// Writes the ring atomically with mode 0600.
    pub fn save(&self, path: &Path) -> Result<(), KeyRingError> {
        Ok(write_private(path, &self.to_toml())?)
    }

    /// Adds a fresh key (random id and 32-byte secret from the operating
    /// system's generator) created at `now`, and returns it.
    pub fn add_new_key(&mut self, now: SystemTime) -> &Key {
        let mut random = rand::rngs::OsRng;
        let id = loop {
            let mut id_bytes = [0u8; 4];
            random.fill_bytes(&mut id_bytes);
            let id = KeyId(format!("k{}", hex::encode(id_bytes)));
            if !self.keys.iter().any(|key| key.id == id) {
                break id;
            }
        };
        let mut secret = vec![0u8; NEW_SECRET_LEN];
        random.fill_bytes(&mut secret);
        self.insert(id, secret, now)
    }

    /// Adds a key with a given secret (tests, and keys shared from elsewhere).
    pub fn add_key(
        &mut self,
        id: KeyId,
        secret: Vec<u8>,
        created: SystemTime,
    ) -> Result<&Key, KeyRingError> {
        if self.keys.iter().any(|key| key.id == id) {
            return Err(KeyRingError::DuplicateId {
                path: "key ring".to_string(),
                id: id.0,
            });
        }
        if secret.len() < MIN_SECRET_LEN {
            return Err(KeyRingError::BadKey {
                path: "key ring".to_string(),
                id: id.0,
                message: format!("secret needs at least {MIN_SECRET_LEN} bytes"),
            });
        }
        Ok(self.insert(id, secret, created))
    }

    fn insert(&mut self, id: KeyId, secret: Vec<u8>, created: SystemTime) -> &Key {
        // Stored with second precision, like the file, so a ring compares
        // equal to itself after a save and a load.
        // Whole seconds of a representable time are representable; the
        // fallback only keeps this free of unchecked arithmetic.
        let created = from_unix_seconds(unix_seconds(created)).unwrap_or(created);
        self.keys.push(Key {
            id,
            secret,
            created,
            retired: false,
        });
        self.keys.last().expect("just pushed")
    }

    /// Marks a key retired: tokens under it are refused from then on.
    /// Retiring a retired key changes nothing.
    pub fn retire(&mut self, id: &str) -> Result<&Key, KeyRingError> {
        let key = self
            .keys
            .iter_mut()
            .find(|key| key.id.0 == id)
            .ok_or_else(|| KeyRingError::NoSuchKey(id.to_string()))?;
        key.retired = true;
        Ok(key)
    }

    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// The key new tokens are signed with: the newest active one (ties go to
    /// the later in the file).
    pub fn signing_key(&self) -> Option<&Key> {
        self.keys
            .iter()
            .filter(|key| !key.retired)
            .max_by_key(|key| key.created)
    }

    /// The key a token names, if it may still verify tokens.
    pub fn verification_key(&self, id: &[u8]) -> Option<&Key> {
        self.keys
            .iter()
            .find(|key| !key.retired && key.id.0.as_bytes() == id)
    }
}

/// A key ring file as a server holds it while serving: the ring last read,
/// swapped whole by [`LiveKeyRing::reload`] (a server calls it on SIGHUP),
/// so a rotation reaches a running node without a restart and a request
/// always sees one whole ring.
#[derive(Debug)]
pub struct LiveKeyRing {
    path: std::path::PathBuf,
    ring: std::sync::RwLock<std::sync::Arc<KeyRing>>,
}

impl LiveKeyRing {
    /// Reads the ring at `path` (see [`KeyRing::load`]).
    pub fn load(path: &Path) -> Result<Self, KeyRingError> {
        Ok(Self {
            ring: std::sync::RwLock::new(std::sync::Arc::new(KeyRing::load(path)?)),
            path: path.to_path_buf(),
        })
    }

    /// The ring being served.
    pub fn current(&self) -> std::sync::Arc<KeyRing> {
        // A poisoned lock still holds a whole ring: a writer only swaps it.
        let guard = self
            .ring
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        std::sync::Arc::clone(&guard)
    }

    /// Re-reads the file; on any error the ring served stays as it was.
    pub fn reload(&self) -> Result<(), KeyRingError> {
        let ring = std::sync::Arc::new(KeyRing::load(&self.path)?);
        *self
            .ring
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = ring;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, UNIX_EPOCH};

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn new_keys_are_random_and_the_newest_signs() {
        let mut ring = KeyRing::empty();
        assert!(ring.signing_key().is_none());
        let first = ring.add_new_key(at(1_700_000_000)).id().clone();
        let second = ring.add_new_key(at(1_700_000_100)).id().clone();
        assert_ne!(first, second);
        assert_ne!(ring.keys()[0].secret, ring.keys()[1].secret);
        assert_eq!(ring.keys()[0].secret.len(), 32);
        assert_eq!(ring.signing_key().unwrap().id(), &second);
        ring.retire(second.as_str()).unwrap();
        assert_eq!(ring.signing_key().unwrap().id(), &first);
        assert!(ring.verification_key(second.as_str().as_bytes()).is_none());
        assert!(ring.verification_key(first.as_str().as_bytes()).is_some());
        ring.retire(first.as_str()).unwrap();
        assert!(ring.signing_key().is_none());
    }

    #[test]
    fn retiring_an_unknown_key_names_the_list_command() {
        let mut ring = KeyRing::empty();
        let error = ring.retire("nope").unwrap_err().to_string();
        assert!(error.contains("kinema keys list"), "{error}");
    }

    #[test]
    fn save_and_load_round_trip_with_mode_0600() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("keys.toml");
        let mut ring = KeyRing::empty();
        ring.add_new_key(at(1_700_000_000));
        let retired = ring.add_new_key(at(1_700_000_050)).id().clone();
        ring.retire(retired.as_str()).unwrap();
        ring.save(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let loaded = KeyRing::load(&path).unwrap();
        assert_eq!(loaded.to_toml(), ring.to_toml());
        assert!(loaded.keys()[1].is_retired());
        assert_eq!(loaded.keys()[0].created(), at(1_700_000_000));
    }

    #[test]
    fn a_readable_key_file_is_refused() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("keys.toml");
        let mut ring = KeyRing::empty();
        ring.add_new_key(at(1_700_000_000));
        ring.save(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = KeyRing::load(&path).unwrap_err().to_string();
        assert!(error.contains("mode 0644"), "{error}");
        assert!(error.contains("chmod 600"), "{error}");
    }

    #[test]
    fn a_missing_file_says_how_to_create_it() {
        let directory = tempfile::tempdir().unwrap();
        let error = KeyRing::load(&directory.path().join("absent.toml"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("kinema keys new"), "{error}");
    }

    #[test]
    fn bad_files_are_errors_that_say_what_is_wrong() {
        let secret = URL_SAFE_NO_PAD.encode([7u8; 32]);
        let short = URL_SAFE_NO_PAD.encode([7u8; 16]);
        let cases = [
            (
                format!(
                    "[[key]]\nid = \"a\"\nsecret = \"{short}\"\ncreated = \"2025-01-01T00:00:00Z\"\n"
                ),
                "at least 32",
            ),
            (
                "[[key]]\nid = \"a\"\nsecret = \"!!\"\ncreated = \"2025-01-01T00:00:00Z\"\n"
                    .to_string(),
                "base64url",
            ),
            (
                format!(
                    "[[key]]\nid = \"a/b\"\nsecret = \"{secret}\"\ncreated = \"2025-01-01T00:00:00Z\"\n"
                ),
                "a-z",
            ),
            (
                format!("[[key]]\nid = \"a\"\nsecret = \"{secret}\"\ncreated = \"yesterday\"\n"),
                "RFC 3339",
            ),
            (
                format!(
                    "[[key]]\nid = \"a\"\nsecret = \"{secret}\"\ncreated = \"2025-01-01T00:00:00Z\"\n\
                     [[key]]\nid = \"a\"\nsecret = \"{secret}\"\ncreated = \"2025-01-01T00:00:00Z\"\n"
                ),
                "twice",
            ),
            (
                format!(
                    "[[key]]\nid = \"a\"\nsecret = \"{secret}\"\ncreated = \"2025-01-01T00:00:00Z\"\nretierd = true\n"
                ),
                "retierd",
            ),
        ];
        for (text, expected) in cases {
            let error = KeyRing::parse(&text, "keys.toml").unwrap_err().to_string();
            assert!(error.contains(expected), "{expected:?} not in {error:?}");
            assert!(error.contains("keys.toml"), "{error}");
        }
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let mut ring = KeyRing::empty();
        ring.add_key(KeyId::new("k1").unwrap(), vec![0xAB; 32], at(0))
            .unwrap();
        let debug = format!("{ring:?}");
        assert!(debug.contains("redacted"), "{debug}");
        assert!(!debug.contains("171"), "{debug}");
        assert!(!debug.to_lowercase().contains("abab"), "{debug}");
    }

    #[test]
    fn a_live_ring_reloads_whole_or_not_at_all() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("keys.toml");
        let mut ring = KeyRing::empty();
        ring.add_key(KeyId::new("old").unwrap(), vec![1; 32], at(1_000))
            .unwrap();
        ring.save(&path).unwrap();
        let live = LiveKeyRing::load(&path).unwrap();
        ring.add_key(KeyId::new("new").unwrap(), vec![2; 32], at(2_000))
            .unwrap();
        ring.retire("old").unwrap();
        ring.save(&path).unwrap();
        assert!(live.current().verification_key(b"old").is_some());
        live.reload().unwrap();
        assert!(live.current().verification_key(b"old").is_none());
        assert_eq!(live.current().signing_key().unwrap().id().as_str(), "new");
        // A broken file leaves the ring as it was.
        std::fs::write(&path, "not a key ring").unwrap();
        assert!(live.reload().is_err());
        assert_eq!(live.current().signing_key().unwrap().id().as_str(), "new");
    }
}
