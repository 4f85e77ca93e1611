//! Settings of the origin: the `[serve]` section of `kinema.toml`, also
//! settable by flag and `KINEMA_*` variable through the binary.
//!
//! Deserialised once with defaults and `deny_unknown_fields`, so a typo is an
//! error naming the key rather than a silently ignored setting.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use kinema_core::Bitrate;
use kinema_http::server::ServerConfig;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The library directory (`videos/{id}/manifest.json` and its files).
    pub library: PathBuf,
    /// Address the binary binds; [`crate::run`] takes a bound listener, so
    /// this is only read by whoever binds.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Settings of the upload API's ingest jobs. Not a `[serve]` key: the
    /// binary fills it from the `[ingest]` section, shared with
    /// `kinema ingest`.
    #[serde(skip)]
    pub ingest: kinema_media::IngestConfig,
    /// Directory of the web UI's built files, served at `/` and `/ui/…`.
    /// A missing directory disables the UI routes with a warning.
    #[serde(default = "default_web_root")]
    pub web_root: PathBuf,
    /// Memory for cached file contents, weighted by bytes.
    #[serde(default = "default_cache_size")]
    pub cache_size: ByteSize,
    /// Directory of the disk cache under the memory cache, for a library in
    /// S3 (a local library's files are on a local disk already, so it has
    /// none); unset: [`Config::disk_cache_dir`]'s default.
    #[serde(default)]
    pub disk_cache: Option<PathBuf>,
    /// Most bytes the disk cache holds; the least recently used files go
    /// beyond it.
    #[serde(default = "default_disk_cache_size")]
    pub disk_cache_size: ByteSize,
    /// Files larger than this are streamed from the store in chunks instead
    /// of being cached whole.
    #[serde(default = "default_max_cached_file_size")]
    pub max_cached_file_size: ByteSize,
    /// A cached file no request has used for this long leaves the cache
    /// (like nginx's `open_file_cache inactive=`): its memory is freed and
    /// its published file closed, so an unpublished video's disk space is
    /// released.
    #[serde(default = "default_cache_inactive", with = "humantime_serde")]
    pub cache_inactive: Duration,
    /// `Cache-Control: max-age` of playlists and MPDs and of every stable
    /// URL (`/v/{id}/{path}`), which a republish changes; the files at a
    /// generation's URLs (`/v/{id}/g{N}/…`, where playlists point) never
    /// change, so its media is immutable.
    #[serde(default = "default_manifest_max_age", with = "humantime_serde")]
    pub manifest_max_age: Duration,
    /// How long a video's `manifest.json` is trusted in memory before it is
    /// read again, so an unpublished or republished video is noticed.
    #[serde(default = "default_manifest_refresh", with = "humantime_serde")]
    pub manifest_refresh: Duration,
    /// Origins allowed to read media cross-origin (CORS); `*` allows all.
    #[serde(default = "default_cors_allowed_origins")]
    pub cors_allowed_origins: Vec<String>,
    /// One log line per request (method, path, status, bytes, duration).
    #[serde(default = "default_true")]
    pub access_log: bool,
    /// Load segment n+1 into the cache when segment n is requested.
    #[serde(default = "default_true")]
    pub prefetch: bool,
    /// Bytes per second the background scrub reads to re-check every
    /// published file against its manifest's SHA-256; 0 turns it off.
    #[serde(default)]
    pub scrub_rate: ByteSize,
    /// Most egress (e.g. `9gbit`, a little under the network link): a new
    /// viewing session whose bit rate would not fit is refused with 503.
    /// Unset: only `max_load` limits admission.
    #[serde(default)]
    pub max_egress: Option<Bitrate>,
    /// Share of their time the serving threads may be busy before new
    /// viewing sessions are refused with 503 (0.9: 90%); 1 turns the check
    /// off.
    #[serde(default = "default_max_load")]
    pub max_load: f64,
    /// Longest wait for a request's header section (slowloris defence).
    #[serde(default = "server::header_read_timeout", with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// How long an idle keep-alive connection is kept open.
    #[serde(default = "server::idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// How long a request body may go without a byte arriving.
    #[serde(default = "server::body_read_timeout", with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// How long a response write may make no progress before the
    /// connection is closed (a client that stopped reading).
    #[serde(default = "server::write_timeout", with = "humantime_serde")]
    pub write_timeout: Duration,
    /// Largest request header section accepted (larger: 431).
    #[serde(default = "server::max_header_bytes")]
    pub max_header_bytes: ByteSize,
    /// Longest request target accepted (longer: 414).
    #[serde(default = "server::max_uri_bytes")]
    pub max_uri_bytes: ByteSize,
    /// Most connections open at once.
    #[serde(default = "server::max_connections")]
    pub max_connections: usize,
    /// On shutdown, how long in-flight responses may take to finish.
    #[serde(default = "server::drain_timeout", with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Concurrent streams per HTTP/2 connection.
    #[serde(default = "server::http2_max_concurrent_streams")]
    pub http2_max_concurrent_streams: u32,
    /// Threads serving connections, each with its own event loop (0: one
    /// per CPU the process may run on).
    #[serde(default = "server::threads")]
    pub threads: usize,
    /// Key ring that verifies signed URLs (`kinema keys`); a missing file
    /// means no key, so signed videos cannot be watched.
    #[serde(default = "access::keys")]
    pub keys: PathBuf,
    /// Hashes of the admin API's bearer tokens (`kinema tokens`); a missing
    /// file means no token, so every `/api` request gets 401.
    #[serde(default = "access::tokens")]
    pub tokens: PathBuf,
    /// Clock difference tolerated at both ends of a signed URL's validity.
    #[serde(default = "access::skew", with = "humantime_serde")]
    pub auth_skew: Duration,
    /// Proxies (addresses or CIDR networks, e.g. the edges) whose
    /// `Forwarded: for=` / `X-Forwarded-For` name the client, for tokens
    /// bound to a client address and for admission; nobody else's are read.
    #[serde(default)]
    pub trusted_proxies: crate::forwarded::TrustedProxies,
    /// PEM certificate chain (leaf first); with `tls_key`, serve HTTPS only.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert` (ECDSA or RSA).
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Serve HTTPS with a certificate made at start for localhost,
    /// 127.0.0.1 and ::1 (local use; clients must be told to trust it).
    #[serde(default)]
    pub tls_self_signed: bool,
    /// Also listen for plain HTTP on this address and redirect every request
    /// to HTTPS (needs TLS).
    #[serde(default)]
    pub redirect_http: Option<SocketAddr>,
    /// Send `Strict-Transport-Security: max-age=31536000` on HTTPS responses.
    #[serde(default)]
    pub hsts: bool,
}

impl Config {
    /// The defaults for a library directory.
    pub fn new(library: impl Into<PathBuf>) -> Self {
        Self {
            library: library.into(),
            listen: default_listen(),
            ingest: kinema_media::IngestConfig::default(),
            web_root: default_web_root(),
            cache_size: default_cache_size(),
            disk_cache: None,
            disk_cache_size: default_disk_cache_size(),
            max_cached_file_size: default_max_cached_file_size(),
            cache_inactive: default_cache_inactive(),
            manifest_max_age: default_manifest_max_age(),
            manifest_refresh: default_manifest_refresh(),
            cors_allowed_origins: default_cors_allowed_origins(),
            access_log: true,
            prefetch: true,
            scrub_rate: ByteSize::b(0),
            max_egress: None,
            max_load: default_max_load(),
            header_read_timeout: server::header_read_timeout(),
            idle_timeout: server::idle_timeout(),
            body_read_timeout: server::body_read_timeout(),
            write_timeout: server::write_timeout(),
            max_header_bytes: server::max_header_bytes(),
            max_uri_bytes: server::max_uri_bytes(),
            max_connections: server::max_connections(),
            drain_timeout: server::drain_timeout(),
            http2_max_concurrent_streams: server::http2_max_concurrent_streams(),
            threads: server::threads(),
            keys: access::keys(),
            tokens: access::tokens(),
            auth_skew: access::skew(),
            trusted_proxies: crate::forwarded::TrustedProxies::default(),
            tls_cert: None,
            tls_key: None,
            tls_self_signed: false,
            redirect_http: None,
            hsts: false,
        }
    }

    /// Where the disk cache of a library in S3 lives: `disk_cache` when
    /// set, else `kinema-cache` beside the ingest workspace (in the working
    /// directory when the workspace is not set either).
    pub fn disk_cache_dir(&self) -> PathBuf {
        match &self.disk_cache {
            Some(dir) => dir.clone(),
            None => {
                let workspace = self.ingest.workspace_root(None);
                let beside = workspace.parent().unwrap_or(std::path::Path::new(""));
                beside.join("kinema-cache")
            }
        }
    }

    /// The connection layer's part of these settings.
    pub fn server_config(&self) -> ServerConfig {
        ServerConfig {
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
            body_read_timeout: self.body_read_timeout,
            write_timeout: self.write_timeout,
            max_header_bytes: self.max_header_bytes,
            max_uri_bytes: self.max_uri_bytes,
            max_connections: self.max_connections,
            drain_timeout: self.drain_timeout,
            http2_max_concurrent_streams: self.http2_max_concurrent_streams,
            threads: self.threads,
        }
    }
}

/// Defaults of the connection layer's settings, taken from its own
/// [`ServerConfig::default`] so the two never disagree.
mod server {
    use super::*;

    pub fn header_read_timeout() -> Duration {
        ServerConfig::default().header_read_timeout
    }
    pub fn idle_timeout() -> Duration {
        ServerConfig::default().idle_timeout
    }
    pub fn body_read_timeout() -> Duration {
        ServerConfig::default().body_read_timeout
    }
    pub fn write_timeout() -> Duration {
        ServerConfig::default().write_timeout
    }
    pub fn max_header_bytes() -> ByteSize {
        ServerConfig::default().max_header_bytes
    }
    pub fn max_uri_bytes() -> ByteSize {
        ServerConfig::default().max_uri_bytes
    }
    pub fn max_connections() -> usize {
        ServerConfig::default().max_connections
    }
    pub fn drain_timeout() -> Duration {
        ServerConfig::default().drain_timeout
    }
    pub fn http2_max_concurrent_streams() -> u32 {
        ServerConfig::default().http2_max_concurrent_streams
    }
    pub fn threads() -> usize {
        ServerConfig::default().threads
    }
}

/// Defaults of the access-control settings, shared with `kinema keys`,
/// `kinema sign` and `kinema tokens` so every command finds the same files.
mod access {
    use super::*;

    pub fn keys() -> PathBuf {
        PathBuf::from(kinema_auth::DEFAULT_KEYS_FILE)
    }
    pub fn tokens() -> PathBuf {
        PathBuf::from(kinema_auth::DEFAULT_TOKENS_FILE)
    }
    pub fn skew() -> Duration {
        kinema_auth::DEFAULT_SKEW
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn default_web_root() -> PathBuf {
    PathBuf::from("web/dist")
}

fn default_cache_size() -> ByteSize {
    ByteSize::mib(512)
}

fn default_disk_cache_size() -> ByteSize {
    ByteSize::gib(20)
}

fn default_max_cached_file_size() -> ByteSize {
    ByteSize::mib(16)
}

fn default_cache_inactive() -> Duration {
    Duration::from_secs(300)
}

fn default_manifest_max_age() -> Duration {
    Duration::from_secs(10)
}

fn default_manifest_refresh() -> Duration {
    Duration::from_secs(2)
}

fn default_cors_allowed_origins() -> Vec<String> {
    vec!["*".to_string()]
}

fn default_max_load() -> f64 {
    0.9
}

fn default_true() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_human_units() {
        let config: Config = serde_json::from_str(
            r#"{"library": "/lib", "cache_size": "64MiB", "manifest_max_age": "2s"}"#,
        )
        .unwrap();
        assert_eq!(config.cache_size, ByteSize::mib(64));
        assert_eq!(config.manifest_max_age, Duration::from_secs(2));
        assert_eq!(config.max_cached_file_size, ByteSize::mib(16));
        assert_eq!(config.cache_inactive, Duration::from_secs(300));
        assert_eq!(config.cors_allowed_origins, vec!["*"]);
        assert!(config.access_log && config.prefetch);
        assert_eq!(config.disk_cache_size, ByteSize::gib(20));
    }

    #[test]
    fn the_disk_cache_defaults_beside_the_ingest_workspace() {
        let mut config = Config::new("s3://media/lib");
        assert_eq!(config.disk_cache_dir(), PathBuf::from("kinema-cache"));
        config.ingest.workspace = Some(PathBuf::from("/var/lib/kinema/work"));
        assert_eq!(
            config.disk_cache_dir(),
            PathBuf::from("/var/lib/kinema/kinema-cache")
        );
        config.disk_cache = Some(PathBuf::from("/cache"));
        assert_eq!(config.disk_cache_dir(), PathBuf::from("/cache"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors_naming_them() {
        let error = serde_json::from_str::<Config>(r#"{"library": "/lib", "cache_sise": 1}"#)
            .unwrap_err()
            .to_string();
        assert!(error.contains("cache_sise"), "{error}");
        let error =
            serde_json::from_str::<Config>(r#"{"library": "/lib", "idle_timeout": "soon"}"#)
                .unwrap_err()
                .to_string();
        assert!(
            error.contains("soon") || error.contains("duration"),
            "{error}"
        );
    }
}
