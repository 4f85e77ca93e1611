//! Bearer tokens for the admin API (`/api/*`).
//!
//! A token is 32 random bytes shown once, when it is made; the tokens file
//! keeps only its SHA-256. A plain hash is enough (no slow password hash)
//! because the secret is high-entropy: nobody can guess their way to it, so
//! the only thing the hash has to resist is inversion.
//!
//! Scopes are ordered `read < write < admin`: a route needs a minimum scope
//! and any token at or above it passes. `worker` stands apart from that
//! order: a transcoding worker's token claims and reports tasks and nothing
//! else (no listing, no upload, no token management), so one leaked from a
//! worker machine cannot publish or unpublish videos; an `admin` token may
//! do what a worker does.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::private_file::{PrivateFileError, read_private, write_private};
use crate::token::{from_unix_seconds, unix_seconds};

/// Every secret starts with this, so a leaked one is easy to search for in
/// logs and repositories.
pub const SECRET_PREFIX: &str = "kinema_";
const SECRET_BYTES: usize = 32;
/// Longest token name.
pub const MAX_NAME_LEN: usize = 64;

/// What a bearer token may do. `Read < Write < Admin` are ordered;
/// `Worker` is allowed only the worker routes (and admin those too), which
/// [`Scope::allows`] decides: compare scopes with it, never with `<`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// List and inspect videos, jobs, metrics.
    Read,
    /// Also upload, ingest, change and delete videos.
    Write,
    /// Also manage tokens and access policy.
    Admin,
    /// Only claim and report transcoding tasks (`/api/worker/…`).
    Worker,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
            Scope::Worker => "worker",
        }
    }

    /// Whether a token of this scope may use a route that needs `required`.
    pub fn allows(self, required: Scope) -> bool {
        match (self, required) {
            (Scope::Worker, required) => required == Scope::Worker,
            (scope, Scope::Worker) => scope == Scope::Admin,
            (scope, required) => scope >= required,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = AdminTokensError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "read" => Ok(Scope::Read),
            "write" => Ok(Scope::Write),
            "admin" => Ok(Scope::Admin),
            "worker" => Ok(Scope::Worker),
            other => Err(AdminTokensError::BadScope(other.to_string())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AdminTokensError {
    #[error(transparent)]
    File(#[from] PrivateFileError),
    #[error("tokens file {path} is not valid: {message}")]
    Parse { path: String, message: String },
    #[error("tokens file {path}: token {name:?}: {message}")]
    BadEntry {
        path: String,
        name: String,
        message: String,
    },
    #[error("scope {0:?} is not one of read, write, admin, worker")]
    BadScope(String),
    #[error("a token named {0:?} already exists; pick another --name or revoke it first")]
    DuplicateName(String),
    #[error(
        "token name {0:?} must be 1 to {MAX_NAME_LEN} characters of a-z, A-Z, 0-9, '-', '_', '.'"
    )]
    BadName(String),
    #[error("no token named {0:?}; `kinema tokens list` shows the names")]
    NoSuchToken(String),
}

/// Why a request's `Authorization` header was not accepted. Servers answer
/// all of these with the same bare 401; the variants exist for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BearerError {
    #[error("no authorization header")]
    Missing,
    #[error("authorization header is not `Bearer <token>`")]
    Malformed,
    #[error("unknown bearer token")]
    Unknown,
}

/// One stored token: a name for humans, a scope, the hash of the secret.
#[derive(Debug, Clone)]
pub struct AdminToken {
    pub name: String,
    pub scope: Scope,
    pub created: SystemTime,
    hash: [u8; 32],
}

/// The set of admin tokens a server accepts.
#[derive(Debug, Clone, Default)]
pub struct AdminTokens {
    tokens: Vec<AdminToken>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default, rename = "token")]
    tokens: Vec<TokenRecord>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRecord {
    name: String,
    scope: Scope,
    /// Hex SHA-256 of the secret.
    sha256: String,
    created: String,
}

const FILE_HEADER: &str = "# kinema admin API tokens: SHA-256 hashes only, the secrets are shown once.\n\
# Manage with `kinema tokens new --scope read|write|admin|worker --name NAME | list | revoke NAME`.\n\n";

fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl AdminTokens {
    pub fn empty() -> Self {
        Self::default()
    }

    /// Loads the tokens file; a missing file means no tokens, so every
    /// `/api/*` request is refused until one is made.
    pub fn load(path: &Path) -> Result<Self, AdminTokensError> {
        match read_private(path)? {
            None => Ok(Self::empty()),
            Some(text) => Self::parse(&text, &path.display().to_string()),
        }
    }

    pub fn parse(text: &str, origin: &str) -> Result<Self, AdminTokensError> {
        let file: TokensFile = toml::from_str(text).map_err(|error| AdminTokensError::Parse {
            path: origin.to_string(),
            message: error.message().to_string(),
        })?;
        let mut tokens: Vec<AdminToken> = Vec::with_capacity(file.tokens.len());
        for record in file.tokens {
            let bad = |message: &str| AdminTokensError::BadEntry {
                path: origin.to_string(),
                name: record.name.clone(),
                message: message.to_string(),
            };
            if !valid_name(&record.name) {
                return Err(bad(
                    "name must be 1 to 64 characters of a-z, A-Z, 0-9, '-', '_', '.'",
                ));
            }
            if tokens.iter().any(|token| token.name == record.name) {
                return Err(bad("the name appears twice"));
            }
            let hash: [u8; 32] = hex::decode(&record.sha256)
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
                .ok_or_else(|| bad("sha256 must be 64 hex digits"))?;
            let created = humantime::parse_rfc3339(&record.created)
                .map_err(|_| bad("created is not an RFC 3339 UTC time"))?;
            tokens.push(AdminToken {
                name: record.name.clone(),
                scope: record.scope,
                created,
                hash,
            });
        }
        Ok(Self { tokens })
    }

    pub fn to_toml(&self) -> String {
        let file = TokensFile {
            tokens: self
                .tokens
                .iter()
                .map(|token| TokenRecord {
                    name: token.name.clone(),
                    scope: token.scope,
                    sha256: hex::encode(token.hash),
                    created: humantime::format_rfc3339_seconds(token.created).to_string(),
                })
                .collect(),
        };
        let body = toml::to_string(&file).expect("a tokens file always serialises");
        format!("{FILE_HEADER}{body}")
    }

    /// Writes the file atomically with mode 0600: hashes are not secrets,
    /// but whoever can write the file can grant themselves admin.
    pub fn save(&self, path: &Path) -> Result<(), AdminTokensError> {
        Ok(write_private(path, &self.to_toml())?)
    }

    /// Makes a token and returns its secret; only its hash is kept.
    pub fn issue(
        &mut self,
        name: &str,
        scope: Scope,
        now: SystemTime,
    ) -> Result<String, AdminTokensError> {
        if !valid_name(name) {
            return Err(AdminTokensError::BadName(name.to_string()));
        }
        if self.tokens.iter().any(|token| token.name == name) {
            return Err(AdminTokensError::DuplicateName(name.to_string()));
        }
        let mut random = [0u8; SECRET_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut random);
        let secret = format!("{SECRET_PREFIX}{}", URL_SAFE_NO_PAD.encode(random));
        // Second precision, like the file, without formatting a time a
        // broken clock may have put past year 9999.
        let created = from_unix_seconds(unix_seconds(now)).unwrap_or(now);
        self.tokens.push(AdminToken {
            name: name.to_string(),
            scope,
            created,
            hash: hash_secret(&secret),
        });
        Ok(secret)
    }

    /// Removes a token; requests bearing it are refused from then on.
    pub fn revoke(&mut self, name: &str) -> Result<AdminToken, AdminTokensError> {
        let index = self
            .tokens
            .iter()
            .position(|token| token.name == name)
            .ok_or_else(|| AdminTokensError::NoSuchToken(name.to_string()))?;
        Ok(self.tokens.remove(index))
    }

    pub fn tokens(&self) -> &[AdminToken] {
        &self.tokens
    }

    /// Checks an `Authorization` header value (`None` when absent) and
    /// returns the token's scope.
    ///
    /// The presented secret is hashed, then compared with every stored hash
    /// in constant time and without stopping at a match, so the time taken
    /// says nothing about which bytes or which entry matched.
    pub fn verify_bearer(&self, header: Option<&[u8]>) -> Result<Scope, BearerError> {
        let header = header.ok_or(BearerError::Missing)?;
        let header = std::str::from_utf8(header).map_err(|_| BearerError::Malformed)?;
        let (scheme, secret) = header
            .trim()
            .split_once(' ')
            .ok_or(BearerError::Malformed)?;
        // RFC 9110 §11.1: the scheme is case-insensitive.
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(BearerError::Malformed);
        }
        let secret = secret.trim_start();
        if secret.is_empty() || secret.contains(char::is_whitespace) {
            return Err(BearerError::Malformed);
        }
        let presented = hash_secret(secret);
        let mut found = None;
        for token in &self.tokens {
            if bool::from(token.hash.ct_eq(&presented)) {
                found = Some(token.scope);
            }
        }
        found.ok_or(BearerError::Unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, UNIX_EPOCH};

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_750_000_000)
    }

    fn bearer(secret: &str) -> Vec<u8> {
        format!("Bearer {secret}").into_bytes()
    }

    #[test]
    fn scopes_are_ordered_read_write_admin() {
        assert!(Scope::Read < Scope::Write && Scope::Write < Scope::Admin);
        assert!(Scope::Admin.allows(Scope::Read));
        assert!(Scope::Write.allows(Scope::Write));
        assert!(!Scope::Read.allows(Scope::Write));
        assert!(!Scope::Write.allows(Scope::Admin));
        assert_eq!("write".parse::<Scope>().unwrap(), Scope::Write);
        let error = "root".parse::<Scope>().unwrap_err().to_string();
        assert!(error.contains("read, write, admin"), "{error}");
    }

    #[test]
    fn a_worker_token_passes_only_worker_routes() {
        for required in [Scope::Read, Scope::Write, Scope::Admin] {
            assert!(!Scope::Worker.allows(required), "{required}");
        }
        assert!(Scope::Worker.allows(Scope::Worker));
        assert!(Scope::Admin.allows(Scope::Worker));
        assert!(!Scope::Write.allows(Scope::Worker));
        assert!(!Scope::Read.allows(Scope::Worker));
        assert_eq!("worker".parse::<Scope>().unwrap(), Scope::Worker);
        let mut tokens = AdminTokens::empty();
        let secret = tokens.issue("encoder-1", Scope::Worker, now()).unwrap();
        let text = tokens.to_toml();
        assert!(text.contains("scope = \"worker\""), "{text}");
        let loaded = AdminTokens::parse(&text, "tokens.toml").unwrap();
        assert_eq!(
            loaded.verify_bearer(Some(&bearer(&secret))),
            Ok(Scope::Worker)
        );
    }

    #[test]
    fn issued_tokens_verify_with_their_scope() {
        let mut tokens = AdminTokens::empty();
        let reader = tokens.issue("dashboard", Scope::Read, now()).unwrap();
        let writer = tokens.issue("uploader", Scope::Write, now()).unwrap();
        let admin = tokens.issue("ops", Scope::Admin, now()).unwrap();
        assert!(reader.starts_with(SECRET_PREFIX));
        assert!(reader.len() > 40);
        assert_eq!(
            tokens.verify_bearer(Some(&bearer(&reader))),
            Ok(Scope::Read)
        );
        assert_eq!(
            tokens.verify_bearer(Some(&bearer(&writer))),
            Ok(Scope::Write)
        );
        assert_eq!(
            tokens.verify_bearer(Some(&bearer(&admin))),
            Ok(Scope::Admin)
        );
        let lowercase = format!("bearer {admin}");
        assert_eq!(
            tokens.verify_bearer(Some(lowercase.as_bytes())),
            Ok(Scope::Admin)
        );
    }

    #[test]
    fn wrong_missing_and_malformed_headers_are_refused() {
        let mut tokens = AdminTokens::empty();
        let secret = tokens.issue("ops", Scope::Admin, now()).unwrap();
        assert_eq!(tokens.verify_bearer(None), Err(BearerError::Missing));
        let mut altered = secret.clone();
        altered.pop();
        altered.push('x');
        for header in [
            bearer(&altered),
            bearer(&secret[..secret.len() - 1]),
            bearer(&format!("{secret}x")),
            bearer("kinema_"),
        ] {
            assert_eq!(
                tokens.verify_bearer(Some(&header)),
                Err(BearerError::Unknown)
            );
        }
        for header in [
            secret.clone().into_bytes(),
            format!("Basic {secret}").into_bytes(),
            b"Bearer".to_vec(),
            b"Bearer ".to_vec(),
            format!("Bearer {secret} extra").into_bytes(),
            vec![0xff, 0xfe],
        ] {
            assert_eq!(
                tokens.verify_bearer(Some(&header)),
                Err(BearerError::Malformed),
                "{:?}",
                String::from_utf8_lossy(&header)
            );
        }
    }

    #[test]
    fn the_file_keeps_only_hashes_and_survives_a_round_trip() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("tokens.toml");
        let mut tokens = AdminTokens::load(&path).unwrap();
        assert!(tokens.tokens().is_empty());
        let secret = tokens.issue("ci", Scope::Write, now()).unwrap();
        tokens.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&secret), "{text}");
        assert!(
            !text.contains(secret.trim_start_matches(SECRET_PREFIX)),
            "{text}"
        );
        assert!(text.contains(&hex::encode(hash_secret(&secret))), "{text}");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let loaded = AdminTokens::load(&path).unwrap();
        assert_eq!(
            loaded.verify_bearer(Some(&bearer(&secret))),
            Ok(Scope::Write)
        );
        assert_eq!(loaded.tokens()[0].name, "ci");
        assert_eq!(loaded.tokens()[0].created, now());
    }

    #[test]
    fn revoked_tokens_stop_working() {
        let mut tokens = AdminTokens::empty();
        let keep = tokens.issue("keep", Scope::Read, now()).unwrap();
        let drop = tokens.issue("drop", Scope::Admin, now()).unwrap();
        tokens.revoke("drop").unwrap();
        assert_eq!(
            tokens.verify_bearer(Some(&bearer(&drop))),
            Err(BearerError::Unknown)
        );
        assert_eq!(tokens.verify_bearer(Some(&bearer(&keep))), Ok(Scope::Read));
        let error = tokens.revoke("drop").unwrap_err().to_string();
        assert!(error.contains("kinema tokens list"), "{error}");
    }

    #[test]
    fn names_are_unique_and_validated() {
        let mut tokens = AdminTokens::empty();
        tokens.issue("a", Scope::Read, now()).unwrap();
        assert!(matches!(
            tokens.issue("a", Scope::Admin, now()),
            Err(AdminTokensError::DuplicateName(_))
        ));
        for name in ["", "a b", "a/b", &"x".repeat(65)] {
            assert!(matches!(
                tokens.issue(name, Scope::Read, now()),
                Err(AdminTokensError::BadName(_))
            ));
        }
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let cases = [
            (
                "[[token]]\nname = \"a\"\nscope = \"root\"\nsha256 = \"00\"\ncreated = \"2025-01-01T00:00:00Z\"\n",
                "root",
            ),
            (
                "[[token]]\nname = \"a\"\nscope = \"read\"\nsha256 = \"00\"\ncreated = \"2025-01-01T00:00:00Z\"\n",
                "64 hex",
            ),
            (
                "[[token]]\nname = \"a\"\nscope = \"read\"\nsha256 = \"00\"\n",
                "created",
            ),
        ];
        for (text, expected) in cases {
            let error = AdminTokens::parse(text, "tokens.toml")
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{expected:?} not in {error:?}");
        }
    }

    #[test]
    fn a_world_writable_tokens_file_is_refused() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("tokens.toml");
        AdminTokens::empty().save(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let error = AdminTokens::load(&path).unwrap_err().to_string();
        assert!(error.contains("chmod 600"), "{error}");
    }
}
