//! kinema's edge cache: an HTTP caching proxy in front of one or more
//! origins, faithful to RFC 9111 (with RFC 5861 stale extensions, RFC 9213
//! `CDN-Cache-Control` and RFC 9211 `Cache-Status`), made for video.
//!
//! - [`policy`]: the caching rules as pure functions;
//! - [`store`], [`disk`], [`stored`]: the memory and disk tiers;
//! - [`fill`]: request coalescing (one origin fetch per key at a time);
//! - [`slice`](mod@slice): large objects cached as aligned byte-range slices;
//! - [`playlist`]: where a finished media playlist's segments end;
//! - [`upstream`]: which upstreams a miss is fetched from (the selector);
//! - [`cluster`]: the edge in a cluster (fills from a video's placement
//!   parent, steering);
//! - [`origin`]: the pooled client that fetches, with retries;
//! - [`edge`]: the request handler tying them together, purge and metrics.
//!
//! It is not an origin (it serves nothing of its own but metrics and the
//! purge API) and holds no sockets of its own: the listener is kinema-http's.

pub mod cluster;
pub mod disk;
pub mod edge;
pub mod fill;
pub mod key;
mod keys;
pub mod metrics;
pub mod origin;
pub mod playlist;
pub mod policy;
pub mod slice;
pub mod store;
pub mod stored;
#[cfg(test)]
mod test_support;
pub mod upstream;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytesize::ByteSize;
use kinema_http::{Clock, ServerStats};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use cluster::ClusterPart;
pub use edge::{Edge, EdgeHandler, EdgeSettings};

use crate::cluster::PlacementUpstreams;
use crate::metrics::Metrics;
use crate::origin::{OriginClient, OriginSettings};
use crate::policy::FreshnessRules;
use crate::store::Store;
use crate::upstream::{HealthChecks, RoundRobin, UpstreamSelector};

/// What can go wrong starting or running the edge.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(String),
    #[error("cannot open the disk cache {path}: {source}")]
    Disk {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the listener failed: {0}")]
    Serve(#[source] std::io::Error),
    #[error(transparent)]
    Tls(#[from] kinema_http::tls::TlsError),
}

/// Settings of `kinema edge` (the `[edge]` table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on (used by the binary; `run` takes a listener).
    pub listen: SocketAddr,
    /// Origin base URLs, `http://HOST:PORT`; fetches go round-robin to the
    /// healthy ones and idempotent ones are retried on the next.
    pub origin: Vec<String>,
    /// Size of the memory tier.
    pub cache_memory: ByteSize,
    /// Disk tier as `DIR:SIZE` (e.g. `/var/cache/kinema:20GiB`); none when
    /// absent.
    pub cache_disk: Option<String>,
    /// Responses larger than this are passed through, not stored (unless
    /// they are sliced, see `slice_threshold`).
    pub max_object_size: ByteSize,
    /// Complete responses larger than this (with a `Content-Length` and a
    /// strong validator) are cached as slices of `slice_size` bytes fetched
    /// with `Range` requests; a `Range` request on a miss fetches only the
    /// slice it starts in. `0` turns slicing off.
    pub slice_threshold: ByteSize,
    /// Size of one slice; at most `max_object_size`.
    pub slice_size: ByteSize,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Until an origin's response head arrives, and between body chunks.
    #[serde(with = "humantime_serde")]
    pub origin_timeout: Duration,
    /// Serve a stale response this long past its freshness when the origin
    /// fails, even without `stale-if-error` (never against
    /// must-revalidate and the like, nor in place of a refusal carrying
    /// `Retry-After`). A day by default: VOD playlists live for seconds
    /// (`max-age=7`) but their content never changes, so an origin outage
    /// would otherwise stop every player within seconds.
    #[serde(with = "humantime_serde")]
    pub stale_grace: Duration,
    /// Cap of heuristic freshness (RFC 9111 §4.2.2).
    #[serde(with = "humantime_serde")]
    pub heuristic_max: Duration,
    /// Segments after `n` prefetched when `…/{n}.m4s` is served.
    pub prefetch_segments: u32,
    /// Bearer token of the purge API; purge is disabled without one.
    pub purge_token: Option<String>,
    /// Key ring file (kinema-auth) to verify signed URLs at the edge and
    /// share one cached copy among all tokens; without it tokens are left
    /// to the origin and stay in the cache key.
    pub keys: Option<PathBuf>,
    /// Clock skew tolerated when verifying tokens.
    #[serde(with = "humantime_serde")]
    pub token_skew: Duration,
    /// The query of a video object (`/v/…`, also signed): `ignore` drops
    /// it, `refuse` answers 400, `keep` keeps it in the cache key (`CMCD=`
    /// never counts).
    pub query_policy: key::QueryPolicy,
    pub health_check_path: String,
    #[serde(with = "humantime_serde")]
    pub health_check_interval: Duration,
    /// Listener limits and timeouts (`[edge.server]`).
    pub server: kinema_http::server::ServerConfig,
    /// PEM certificate chain (leaf first); with `tls_key`, serve HTTPS only
    /// (ALPN h2, http/1.1). The same keys as `[serve]`'s.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert` (ECDSA or RSA).
    pub tls_key: Option<PathBuf>,
    /// Serve HTTPS with a certificate made at start for localhost,
    /// 127.0.0.1 and ::1 (local use).
    pub tls_self_signed: bool,
    /// Also listen for plain HTTP here and redirect every request to HTTPS.
    pub redirect_http: Option<SocketAddr>,
    /// Send `Strict-Transport-Security` (one year) on HTTPS responses.
    pub hsts: bool,
    /// PEM file of CA certificates trusted for `https://` origins and
    /// parent edges, beside the public roots (a private CA).
    pub origin_ca: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            origin: Vec::new(),
            cache_memory: ByteSize::mib(512),
            cache_disk: None,
            max_object_size: ByteSize::mib(64),
            slice_threshold: ByteSize::mib(16),
            slice_size: ByteSize::mib(4),
            connect_timeout: Duration::from_secs(2),
            origin_timeout: Duration::from_secs(10),
            stale_grace: Duration::from_secs(86_400),
            heuristic_max: Duration::from_secs(86_400),
            prefetch_segments: 2,
            purge_token: None,
            keys: None,
            token_skew: Duration::from_secs(30),
            query_policy: key::QueryPolicy::Ignore,
            health_check_path: "/healthz".into(),
            health_check_interval: Duration::from_secs(2),
            server: kinema_http::server::ServerConfig::default(),
            tls_cert: None,
            tls_key: None,
            tls_self_signed: false,
            redirect_http: None,
            hsts: false,
            origin_ca: None,
        }
    }
}

impl Config {
    /// Slices must be stored (so at most `max_object_size`) and not so
    /// small that a large object becomes a flood of tiny requests.
    fn check_slices(&self) -> Result<(), Error> {
        if self.slice_threshold.as_u64() == 0 {
            return Ok(());
        }
        let size = self.slice_size.as_u64();
        if size < 64 * 1024 {
            return Err(Error::Config(format!(
                "slice_size {} is too small; use at least 64KiB (e.g. 4MiB)",
                self.slice_size
            )));
        }
        if size > self.max_object_size.as_u64() {
            return Err(Error::Config(format!(
                "slice_size {} is larger than max_object_size {}; lower slice_size",
                self.slice_size, self.max_object_size
            )));
        }
        if self.slice_threshold.as_u64() < size {
            return Err(Error::Config(format!(
                "slice_threshold {} is below slice_size {}; raise it, or set it to 0 to turn slicing off",
                self.slice_threshold, self.slice_size
            )));
        }
        Ok(())
    }

    /// The HTTPS settings, checked the way `kinema serve` checks them.
    pub fn https(&self) -> kinema_http::https::HttpsSettings<'_> {
        kinema_http::https::HttpsSettings {
            tls_cert: self.tls_cert.as_deref(),
            tls_key: self.tls_key.as_deref(),
            tls_self_signed: self.tls_self_signed,
            redirect_http: self.redirect_http,
            hsts: self.hsts,
        }
    }

    /// The disk tier's directory and size, from `DIR:SIZE`.
    pub fn disk(&self) -> Result<Option<(PathBuf, u64)>, Error> {
        let Some(spec) = &self.cache_disk else {
            return Ok(None);
        };
        let (dir, size) = spec.rsplit_once(':').ok_or_else(|| {
            Error::Config(format!(
                "cache_disk {spec:?} must be DIR:SIZE, e.g. /var/cache/kinema:10GiB"
            ))
        })?;
        let size: ByteSize = size.parse().map_err(|error| {
            Error::Config(format!(
                "cache_disk size {size:?} is not a size ({error}); use e.g. 10GiB"
            ))
        })?;
        if dir.is_empty() {
            return Err(Error::Config(
                "cache_disk needs a directory before the colon".into(),
            ));
        }
        Ok(Some((PathBuf::from(dir), size.as_u64())))
    }
}

/// What an edge is composed of besides its settings: its cache (the memory
/// tier over an optional disk tier), the client it fetches with, the
/// selector that chooses the upstreams of each fetch, its metrics, the
/// listener's counters and the clock freshness is judged by; in a cluster
/// also steering. The binary's wiring (and a test) builds them, so each can
/// be swapped (a cluster's placement is a selector); [`Edge::new`] builds
/// none.
#[derive(Debug)]
pub struct EdgeParts {
    pub cache: Store,
    pub client: Arc<OriginClient>,
    pub upstreams: Arc<dyn UpstreamSelector>,
    pub metrics: Arc<Metrics>,
    /// The listener's counters ([`ServerStats::load`] is the node's load).
    pub stats: Arc<ServerStats>,
    pub clock: Clock,
    /// Steering and membership counters, in a cluster; `None` leaves the
    /// edge as a single edge serves.
    pub cluster: Option<ClusterPart>,
    /// This process's network-quality table with the listener's
    /// `TCP_INFO` sampler, fed the CMCD of viewers' requests too; `None`
    /// measures nothing.
    pub network: Option<kinema_netq::Measuring>,
}

/// The cumulative counters a cluster node's figures are computed from.
#[derive(Debug, Clone)]
pub struct EdgeCounters {
    metrics: Arc<Metrics>,
    stats: Arc<ServerStats>,
}

impl EdgeCounters {
    /// Bytes of response bodies sent to clients since start.
    pub fn bytes_sent(&self) -> u64 {
        self.metrics.client_bytes.load(Ordering::Relaxed)
    }

    /// Viewing sessions started since start: GETs of a video's stable
    /// master playlist or MPD from viewers (not through a kinema node).
    pub fn sessions_started(&self) -> u64 {
        self.metrics.sessions_started.load(Ordering::Relaxed)
    }

    /// How busy the serving threads are now, 0 to 1.
    pub fn load(&self) -> f64 {
        self.stats.load()
    }
}

impl EdgeParts {
    /// The parts `config` asks for (opening the disk tier, indexing what it
    /// holds; round-robin over `origin`), with the system clock.
    pub async fn open(config: &Config) -> Result<Self, Error> {
        config.check_slices()?;
        let metrics = Arc::new(Metrics::default());
        let upstreams = RoundRobin::new(
            &config.origin,
            HealthChecks {
                path: config.health_check_path.clone(),
                interval: config.health_check_interval,
            },
        )
        .map_err(Error::Config)?;
        let client = OriginClient::new(
            OriginSettings {
                connect_timeout: config.connect_timeout,
                response_timeout: config.origin_timeout,
                origin_ca: config.origin_ca.clone(),
            },
            metrics.clone(),
        )
        .map_err(Error::Config)?;
        let disk = match config.disk()? {
            None => None,
            Some((path, size)) => {
                let tier_metrics = metrics.clone();
                let dir = path.clone();
                let tier = tokio::task::spawn_blocking(move || {
                    disk::DiskTier::open(&dir, size, tier_metrics)
                })
                .await
                .map_err(|error| Error::Disk {
                    path: path.clone(),
                    source: std::io::Error::other(error),
                })?
                .map_err(|source| Error::Disk { path, source })?;
                Some(Arc::new(tier))
            }
        };
        let cache = Store::new(config.cache_memory.as_u64(), disk, metrics.clone());
        Ok(Self {
            cache,
            client: Arc::new(client),
            upstreams: Arc::new(upstreams),
            metrics,
            stats: Arc::new(ServerStats::default()),
            clock: Clock::system(),
            cluster: None,
            network: None,
        })
    }

    /// These parts measuring viewers' networks with `network`: its sampler
    /// on the listener, and the CMCD of requests recorded in its table.
    pub fn with_network(mut self, network: kinema_netq::Measuring) -> Self {
        self.network = Some(network);
        self
    }

    /// The counters the node's cluster figures are read from.
    pub fn counters(&self) -> EdgeCounters {
        EdgeCounters {
            metrics: self.metrics.clone(),
            stats: self.stats.clone(),
        }
    }

    /// These parts for an edge in a cluster: misses filled from each
    /// video's placement parent among the edges of `view` before the
    /// origins of `config` (this edge being `node_id`), and `part`'s
    /// steering and membership counters.
    pub fn with_cluster(
        mut self,
        config: &Config,
        node_id: &str,
        view: tokio::sync::watch::Receiver<kinema_cluster::MembershipView>,
        part: ClusterPart,
    ) -> Result<Self, Error> {
        let origins = RoundRobin::new(
            &config.origin,
            HealthChecks {
                path: config.health_check_path.clone(),
                interval: config.health_check_interval,
            },
        )
        .map_err(Error::Config)?;
        let upstreams = PlacementUpstreams::new(origins, node_id, view).map_err(Error::Config)?;
        self.upstreams = Arc::new(upstreams);
        self.cluster = Some(part);
        Ok(self)
    }
}

/// Builds the edge from its config and the parts [`EdgeParts::open`] makes,
/// without serving.
pub async fn build(config: &Config) -> Result<Arc<Edge>, Error> {
    let parts = EdgeParts::open(config).await?;
    build_with(config, parts)
}

/// Builds an edge of `parts` with the settings of `config` (loading its key
/// ring), without serving.
pub fn build_with(config: &Config, parts: EdgeParts) -> Result<Arc<Edge>, Error> {
    config.check_slices()?;
    let keyring = match &config.keys {
        None => None,
        Some(path) => Some(Arc::new(
            kinema_auth::LiveKeyRing::load(path)
                .map_err(|error| Error::Config(format!("edge keys: {error}")))?,
        )),
    };
    let settings = EdgeSettings {
        rules: FreshnessRules {
            heuristic_fraction: 0.1,
            heuristic_max: config.heuristic_max,
        },
        stale_grace: config.stale_grace,
        max_object_size: config.max_object_size.as_u64(),
        slice_threshold: config.slice_threshold.as_u64(),
        slice_size: config.slice_size.as_u64(),
        body_timeout: config.origin_timeout,
        prefetch_segments: config.prefetch_segments,
        purge_token: config.purge_token.clone().filter(|token| !token.is_empty()),
        keyring,
        token_skew: config.token_skew,
        query_policy: config.query_policy,
    };
    Ok(Arc::new(Edge::new(settings, parts)))
}

/// Serves the edge on `listener` until `shutdown` resolves, then drains
/// in-flight responses and returns; [`run_with`] of the parts
/// [`EdgeParts::open`] makes.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let parts = EdgeParts::open(&config).await?;
    run_with(config, parts, listener, shutdown).await
}

/// Serves an edge of `parts` with the settings of `config` on `listener`
/// until `shutdown` resolves, then drains in-flight responses and returns.
pub async fn run_with(
    config: Config,
    parts: EdgeParts,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let stats = parts.stats.clone();
    let tls = config.https().server_tls().map_err(|error| match error {
        kinema_http::https::HttpsError::Settings(message) => Error::Config(message),
        kinema_http::https::HttpsError::Tls(error) => Error::Tls(error),
    })?;
    let tcp_info = parts.network.as_ref().map(kinema_netq::Measuring::sampling);
    let edge = build_with(&config, parts)?;
    // SIGHUP swaps the certificate for new handshakes, as on the origin.
    let reloader = match &tls {
        Some(tls) => Some(tls.reload_on_sighup().map_err(Error::Serve)?),
        None => None,
    };
    // SIGHUP also re-reads the key ring: a rotation needs no restart.
    let keys_reloader = match edge.keyring() {
        Some(keyring) => Some(keys::reload_on_sighup(keyring.clone()).map_err(Error::Serve)?),
        None => None,
    };
    let stop_checks = CancellationToken::new();
    tokio::spawn(
        edge.upstreams()
            .clone()
            .run_checks(edge.client().clone(), stop_checks.clone()),
    );
    tracing::info!(
        address = %listener.local_addr().map_or_else(|e| e.to_string(), |a| a.to_string()),
        origins = ?config.origin,
        tls = tls.is_some(),
        "edge serving"
    );
    let listeners = kinema_http::https::HttpsListeners {
        listener,
        tls,
        redirect_http: config.redirect_http,
        hsts: config.hsts,
        server: config.server.clone(),
        stats,
        tcp_info,
    };
    let result = kinema_http::https::serve_https(listeners, Arc::new(EdgeHandler(edge)), shutdown)
        .await
        .map_err(Error::Serve);
    if let Some(reloader) = reloader {
        reloader.abort();
    }
    if let Some(reloader) = keys_reloader {
        reloader.abort();
    }
    stop_checks.cancel();
    tracing::info!("edge stopped");
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_spec_parses_and_errors_say_what_to_do() {
        let mut config = Config {
            cache_disk: Some("/tmp/x:2MiB".into()),
            ..Config::default()
        };
        assert_eq!(
            config.disk().unwrap(),
            Some((PathBuf::from("/tmp/x"), 2 * 1024 * 1024))
        );
        config.cache_disk = Some("/tmp/x".into());
        assert!(config.disk().unwrap_err().to_string().contains("DIR:SIZE"));
        config.cache_disk = Some("/tmp/x:lots".into());
        let error = config.disk().unwrap_err().to_string();
        assert!(error.contains("not a size"), "{error}");
    }

    #[test]
    fn slice_settings_are_checked() {
        let mut config = Config::default();
        assert!(config.check_slices().is_ok());
        config.slice_size = ByteSize::kib(4);
        assert!(
            config
                .check_slices()
                .unwrap_err()
                .to_string()
                .contains("too small")
        );
        config.slice_size = ByteSize::mib(128);
        assert!(
            config
                .check_slices()
                .unwrap_err()
                .to_string()
                .contains("max_object_size")
        );
        config.slice_size = ByteSize::mib(32);
        config.max_object_size = ByteSize::mib(64);
        assert!(
            config
                .check_slices()
                .unwrap_err()
                .to_string()
                .contains("below slice_size")
        );
        config.slice_threshold = ByteSize::b(0);
        assert!(config.check_slices().is_ok());
    }
}
