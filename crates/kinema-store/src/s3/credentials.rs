//! Credentials for the object store: given explicitly, from the standard
//! environment variables (read by `object_store` itself), or from a profile
//! of the shared credentials file (`~/.aws/credentials`), read here.
//!
//! Only the static keys of a profile are read (`aws_access_key_id`,
//! `aws_secret_access_key`, `aws_session_token`); profiles that delegate to
//! SSO, a role or a process are not followed: export their credentials as
//! variables instead.

use std::fmt;
use std::path::PathBuf;

/// The settings a credentials error names.
pub(super) const CREDENTIAL_VARIABLES: &str =
    "credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN or AWS_PROFILE)";

/// A shared credentials file larger than this is refused rather than read.
const MAX_CREDENTIALS_FILE: u64 = 1024 * 1024;

/// An access key pair, with its session token for temporary credentials.
/// `Debug` shows the key id only.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    pub access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

impl S3Credentials {
    pub fn new(
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        session_token: Option<String>,
    ) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token,
        }
    }

    pub fn secret_access_key(&self) -> &str {
        &self.secret_access_key
    }

    pub fn session_token(&self) -> Option<&str> {
        self.session_token.as_deref()
    }
}

impl fmt::Debug for S3Credentials {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

fn variable(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// The credentials of the shared credentials file's profile, when the
/// environment does not give keys itself: `AWS_PROFILE` (else `default`) in
/// `AWS_SHARED_CREDENTIALS_FILE` (else `~/.aws/credentials`). `Ok(None)`
/// when the environment has keys, or there is no file and no profile was
/// asked for (then object_store looks further: instance metadata, web
/// identity).
pub(super) fn from_profile() -> Result<Option<S3Credentials>, String> {
    if variable("AWS_ACCESS_KEY_ID").is_some() {
        return Ok(None);
    }
    let asked = variable("AWS_PROFILE");
    let profile = asked.clone().unwrap_or_else(|| "default".to_string());
    let file = match variable("AWS_SHARED_CREDENTIALS_FILE") {
        Some(path) => PathBuf::from(path),
        None => match variable("HOME") {
            Some(home) => PathBuf::from(home).join(".aws").join("credentials"),
            None if asked.is_some() => {
                return Err(format!(
                    "AWS_PROFILE={profile}, but HOME is unset, so there is no ~/.aws/credentials"
                ));
            }
            None => return Ok(None),
        },
    };
    let text = match read_bounded(&file) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound && asked.is_none() => {
            return Ok(None);
        }
        Err(error) => return Err(format!("cannot read {}: {error}", file.display())),
    };
    match parse_profile(&text, &profile) {
        Ok(Some(credentials)) => Ok(Some(credentials)),
        Ok(None) if asked.is_none() => Ok(None),
        Ok(None) => Err(format!(
            "{} has no profile [{profile}] (AWS_PROFILE)",
            file.display()
        )),
        Err(message) => Err(format!("{}: {message}", file.display())),
    }
}

fn read_bounded(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mut text = String::new();
    file.take(MAX_CREDENTIALS_FILE + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_CREDENTIALS_FILE {
        return Err(std::io::Error::other(
            "larger than 1 MiB; not a credentials file",
        ));
    }
    Ok(text)
}

/// The keys of `[profile]` in an INI-style credentials file; `Ok(None)` when
/// the section is absent.
fn parse_profile(text: &str, profile: &str) -> Result<Option<S3Credentials>, String> {
    let mut in_section = false;
    let mut found = false;
    let (mut key_id, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(section) = line
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
        {
            in_section = section.trim() == profile;
            found |= in_section;
            continue;
        }
        if !in_section {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim().to_string();
        match key.trim().to_ascii_lowercase().as_str() {
            "aws_access_key_id" => key_id = Some(value),
            "aws_secret_access_key" => secret = Some(value),
            "aws_session_token" => token = Some(value).filter(|token| !token.is_empty()),
            _ => {}
        }
    }
    if !found {
        return Ok(None);
    }
    match (key_id, secret) {
        (Some(key_id), Some(secret)) if !key_id.is_empty() && !secret.is_empty() => {
            Ok(Some(S3Credentials::new(key_id, secret, token)))
        }
        _ => Err(format!(
            "profile [{profile}] has no aws_access_key_id and aws_secret_access_key (profiles using SSO, roles or processes are not read: export their credentials as AWS_* variables)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
# comment
[default]
aws_access_key_id = AKDEFAULT
aws_secret_access_key = secret/default

[media]
aws_access_key_id=AKMEDIA
aws_secret_access_key=secret+media
aws_session_token = token
region = eu-west-1

[sso]
sso_start_url = https://example.com
";

    #[test]
    fn reads_the_named_profile_only() {
        let default = parse_profile(FILE, "default").unwrap().unwrap();
        assert_eq!(default.access_key_id, "AKDEFAULT");
        assert_eq!(default.secret_access_key(), "secret/default");
        assert_eq!(default.session_token(), None);
        let media = parse_profile(FILE, "media").unwrap().unwrap();
        assert_eq!(media.access_key_id, "AKMEDIA");
        assert_eq!(media.secret_access_key(), "secret+media");
        assert_eq!(media.session_token(), Some("token"));
        assert!(parse_profile(FILE, "absent").unwrap().is_none());
        let error = parse_profile(FILE, "sso").unwrap_err();
        assert!(error.contains("[sso]"), "{error}");
    }

    #[test]
    fn debug_hides_the_secret() {
        let credentials = S3Credentials::new("AK", "very-secret", Some("tok".into()));
        let shown = format!("{credentials:?}");
        assert!(shown.contains("AK"), "{shown}");
        assert!(
            !shown.contains("very-secret") && !shown.contains("tok"),
            "{shown}"
        );
    }
}
