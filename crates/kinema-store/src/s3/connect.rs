//! Building the `object_store` client from the settings, and turning a
//! failed first contact into a message that names the setting to fix.

use std::fmt;

use object_store::aws::{AmazonS3, AmazonS3Builder, Checksum};
use object_store::{BackoffConfig, ClientOptions, RetryConfig};

use super::S3Config;
use super::credentials::{self, CREDENTIAL_VARIABLES};
use crate::StoreError;

/// Where a library lives in an object store: `s3://bucket/prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// Key prefix without leading or trailing `/` ("" for the bucket's root).
    pub prefix: String,
}

impl S3Location {
    /// Parses `s3://bucket` or `s3://bucket/some/prefix`.
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| format!("{url:?} is not an s3://bucket/prefix URL"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        // S3's bucket naming rules, so a typo fails here and not as an
        // unreadable signature error.
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && !bucket.starts_with(['-', '.'])
            && !bucket.ends_with(['-', '.']);
        if !bucket_ok {
            return Err(format!(
                "{url:?}: bucket {bucket:?} is not a valid bucket name (3 to 63 lowercase letters, digits, '-' or '.')"
            ));
        }
        let prefix = prefix.trim_matches('/');
        let prefix_ok = prefix
            .split('/')
            .all(|part| part != "." && part != ".." && !part.contains(['\\', '?', '#', '%', '*']))
            && !prefix.contains("//");
        if !prefix_ok {
            return Err(format!(
                "{url:?}: prefix {prefix:?} must be plain path segments"
            ));
        }
        Ok(Self {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }
}

impl fmt::Display for S3Location {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() {
            write!(formatter, "s3://{}", self.bucket)
        } else {
            write!(formatter, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

fn config_error(setting: &str, message: impl Into<String>) -> StoreError {
    StoreError::Config {
        setting: setting.to_string(),
        message: message.into(),
    }
}

/// The client for `config`: timeouts and bounded retries on every request,
/// SHA-256 checksums on every upload, rustls (with ring) for https.
pub(super) fn build(config: &S3Config) -> Result<AmazonS3, StoreError> {
    // object_store's HTTP client is built with rustls but no crypto provider
    // of its own (aws-lc-rs stays out of the build); ring is the one the
    // rest of kinema uses. Installing it fails only when a provider is
    // already installed, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let mut endpoint = configured_endpoint(config);
    let path_style = config.path_style.unwrap_or(endpoint.is_some());
    if let Some(url) = &endpoint {
        let parsed = url::Url::parse(url).map_err(|error| {
            config_error("s3_endpoint", format!("{url:?} is not a URL: {error}"))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(config_error(
                "s3_endpoint",
                format!("{url:?} must be an http:// or https:// URL with a host"),
            ));
        }
        if !path_style {
            endpoint = Some(virtual_host_endpoint(&parsed, &config.location.bucket));
        }
    }
    let allow_http = endpoint
        .as_deref()
        .is_some_and(|url| url.starts_with("http://"));
    let timeouts = config.timeouts;
    let client_options = ClientOptions::new()
        .with_connect_timeout(timeouts.connect)
        .with_read_timeout(timeouts.read)
        .with_timeout(timeouts.request)
        .with_allow_http(allow_http);
    let retry = RetryConfig {
        backoff: BackoffConfig {
            init_backoff: std::time::Duration::from_millis(100),
            max_backoff: std::time::Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: timeouts.max_retries,
        retry_timeout: timeouts.retry_timeout,
    };
    // from_env: AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    // AWS_SESSION_TOKEN and the rest of the standard variables; what the
    // configuration says explicitly is laid over them.
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(&config.location.bucket)
        .with_client_options(client_options)
        .with_retry(retry)
        .with_checksum_algorithm(Checksum::SHA256)
        .with_virtual_hosted_style_request(!path_style);
    if let Some(endpoint) = endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    if let Some(region) = &config.region {
        builder = builder.with_region(region);
    }
    let credentials = match &config.credentials {
        Some(credentials) => Some(credentials.clone()),
        None => credentials::from_profile()
            .map_err(|message| config_error(CREDENTIAL_VARIABLES, message))?,
    };
    if let Some(credentials) = credentials {
        builder = builder
            .with_access_key_id(&credentials.access_key_id)
            .with_secret_access_key(credentials.secret_access_key());
        if let Some(token) = credentials.session_token() {
            builder = builder.with_token(token);
        }
    }
    builder.build().map_err(|error| {
        config_error(
            "library",
            format!("cannot use {}: {error}", config.location),
        )
    })
}

/// `s3_endpoint`, else the endpoint the AWS SDKs read from the environment
/// (`AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`), so either way the addressing
/// and plain-http rules below apply to it.
fn configured_endpoint(config: &S3Config) -> Option<String> {
    config.endpoint.clone().or_else(|| {
        ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
            .into_iter()
            .find_map(|name| std::env::var(name).ok().filter(|value| !value.is_empty()))
    })
}

/// `https://bucket.host/` from `https://host/`: object_store takes a
/// virtual-host endpoint with the bucket already in it.
fn virtual_host_endpoint(endpoint: &url::Url, bucket: &str) -> String {
    let host = endpoint.host_str().unwrap_or_default();
    if host.starts_with(&format!("{bucket}.")) {
        return endpoint.as_str().trim_end_matches('/').to_string();
    }
    let mut with_bucket = endpoint.clone();
    // Only fails for URLs that cannot have a host, excluded above.
    let _ = with_bucket.set_host(Some(&format!("{bucket}.{host}")));
    with_bucket.as_str().trim_end_matches('/').to_string()
}

/// The error for a store that did not answer the first listing as it
/// should, naming what to fix: the credentials, the bucket (`library`), or
/// the endpoint.
pub(super) fn explain_open_failure(config: &S3Config, error: object_store::Error) -> StoreError {
    let text = format!("{error}");
    let endpoint = configured_endpoint(config).unwrap_or_else(|| "AWS S3".to_string());
    // With no keys in the environment or a profile, object_store asks the
    // instance metadata service; off EC2 that fails, and the message should
    // say what was missing, not where it looked last.
    if text.contains("169.254.169.254") || text.contains("/latest/api/token") {
        return config_error(
            CREDENTIAL_VARIABLES,
            format!(
                "no credentials for {}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with ~/.aws/credentials (the instance metadata service gave none: {error})",
                config.location
            ),
        );
    }
    let credentials_refused = matches!(
        error,
        object_store::Error::Unauthenticated { .. } | object_store::Error::PermissionDenied { .. }
    ) || [
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "403 Forbidden",
    ]
    .iter()
    .any(|code| text.contains(code));
    if credentials_refused {
        return config_error(
            CREDENTIAL_VARIABLES,
            format!(
                "{endpoint} refused the credentials for {}: check the access key and secret ({error})",
                config.location
            ),
        );
    }
    let missing_bucket =
        matches!(error, object_store::Error::NotFound { .. }) || text.contains("NoSuchBucket");
    if missing_bucket {
        return config_error(
            "library",
            format!(
                "bucket {:?} does not exist at {endpoint}; create it or fix the library URL {}",
                config.location.bucket, config.location
            ),
        );
    }
    if configured_endpoint(config).is_some() {
        config_error(
            "s3_endpoint",
            format!("cannot list {} at {endpoint}: {error}", config.location),
        )
    } else {
        config_error(
            "s3_region",
            format!("cannot list {} on AWS S3: {error}", config.location),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_urls() {
        assert_eq!(
            S3Location::parse("s3://media/kinema/lib/").unwrap(),
            S3Location {
                bucket: "media".into(),
                prefix: "kinema/lib".into()
            }
        );
        assert_eq!(S3Location::parse("s3://media").unwrap().prefix, "");
        assert_eq!(
            S3Location::parse("s3://media/x").unwrap().to_string(),
            "s3://media/x"
        );
        for bad in [
            "media/x",
            "s3://",
            "s3://Media/x",
            "s3://me/x",
            "s3://-media/x",
            "s3://media/a//b",
            "s3://media/a/../b",
        ] {
            assert!(S3Location::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn virtual_host_endpoints_carry_the_bucket() {
        let endpoint = url::Url::parse("https://s3.example.com:9000").unwrap();
        assert_eq!(
            virtual_host_endpoint(&endpoint, "media"),
            "https://media.s3.example.com:9000"
        );
        let endpoint = url::Url::parse("https://media.s3.example.com/").unwrap();
        assert_eq!(
            virtual_host_endpoint(&endpoint, "media"),
            "https://media.s3.example.com"
        );
    }
}
