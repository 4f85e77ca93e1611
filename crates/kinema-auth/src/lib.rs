//! Access control of kinema: who may watch a signed video, and who may use
//! the admin API.
//!
//! - [`token`]: signed-URL tokens carried in the path (`/s/{token}/v/{id}/…`),
//!   so that every relative URI in a playlist inherits the token. Any node
//!   holding the key ring verifies a token locally, without asking anyone.
//! - [`keyring`]: the HMAC keys that sign and verify those tokens, kept in a
//!   file only its owner can read; several keys are active at once so keys
//!   rotate without invalidating live URLs.
//! - [`admin`]: bearer tokens for `/api/*`, stored as hashes, with scopes
//!   `read < write < admin`.
//! - [`node`]: the credential a cluster node that verified a signed request
//!   sends it on with, so the next node need not see the viewer's address.
//! - [`cache`]: the cap on how long a response to a signed request may be
//!   reused, which every server answering one applies.
//!
//! This crate does no network I/O and knows nothing of HTTP servers: it turns
//! strings and addresses into decisions. The file I/O it does is limited to
//! reading and atomically rewriting its own two private files.

pub mod admin;
pub mod cache;
pub mod keyring;
pub mod node;
mod private_file;
pub mod token;

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use admin::{AdminTokens, AdminTokensError, BearerError, Scope};
pub use cache::cap_cache_control;
pub use keyring::{Key, KeyId, KeyRing, KeyRingError, LiveKeyRing};
pub use node::{CREDENTIAL_HEADER, CredentialRefusal, Vouched, check_credential, credential};
pub use private_file::PrivateFileError;
pub use token::{
    Claims, ClaimsError, Refusal, SignError, TokenScope, VerifiedClaims, sign, split_signed_path,
    verify, verify_vouched,
};

/// The response header in which every kinema server (origin and edge) puts
/// a refused signed request's reason (`Refusal::as_str`), beside a JSON body
/// `{"error": REASON}`, so players and scripts need not parse bodies.
pub const REFUSAL_HEADER: &str = "kinema-auth-error";

/// Default location of the signing key ring.
pub const DEFAULT_KEYS_FILE: &str = "kinema-keys.toml";
/// Default location of the admin token hashes.
pub const DEFAULT_TOKENS_FILE: &str = "kinema-tokens.toml";

/// The `[auth]` section of the config file, shared by `kinema keys`,
/// `kinema sign` and `kinema tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The key ring file (signing keys for signed URLs).
    #[serde(default = "default_keys")]
    pub keys: PathBuf,
    /// The admin token file (hashes of bearer tokens).
    #[serde(default = "default_tokens")]
    pub tokens: PathBuf,
    /// How long a signed URL made by `kinema sign` stays valid.
    #[serde(default = "default_ttl", with = "humantime_serde")]
    pub ttl: Duration,
    /// Clock difference between signer and verifier that is tolerated at
    /// both ends of a token's validity.
    #[serde(default = "default_skew", with = "humantime_serde")]
    pub skew: Duration,
    /// Scheme, host and port put in front of the URLs `kinema sign` prints.
    #[serde(default = "default_base_url")]
    pub base_url: String,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            keys: default_keys(),
            tokens: default_tokens(),
            ttl: default_ttl(),
            skew: default_skew(),
            base_url: default_base_url(),
        }
    }
}

fn default_keys() -> PathBuf {
    PathBuf::from(DEFAULT_KEYS_FILE)
}

fn default_tokens() -> PathBuf {
    PathBuf::from(DEFAULT_TOKENS_FILE)
}

fn default_ttl() -> Duration {
    Duration::from_secs(2 * 60 * 60)
}

/// Thirty seconds covers NTP-synchronised machines with room to spare while
/// keeping an expired URL's afterlife short.
pub const DEFAULT_SKEW: Duration = Duration::from_secs(30);

fn default_skew() -> Duration {
    DEFAULT_SKEW
}

fn default_base_url() -> String {
    "http://127.0.0.1:8080".to_string()
}
