//! `kinema edge`: the caching proxy in front of one or more origins.
//!
//! This module only turns flags, `KINEMA_*` variables and the `[edge]`
//! section into a `kinema_edge::Config`, binds the listener, and stops the
//! edge on SIGTERM or SIGINT (it then drains and exits 0).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{ArgAction, Args};
use serde::Serialize;

use crate::config::ConfigFile;

/// The long `--help` text of `kinema edge`.
pub const LONG_ABOUT: &str = "Cache an origin's responses by the rules of RFC 9111 and serve them.

Concurrent misses for one URL make one origin request; stale responses are served within \
stale-while-revalidate / stale-if-error; a memory tier and an optional disk tier (kept across \
restarts) hold what may be stored. Cache-Status (RFC 9211) tells what happened to each request.

Example: kinema edge --origin http://127.0.0.1:8080 --listen 127.0.0.1:8081 \
--cache-memory 1GiB --cache-disk /var/cache/kinema:20GiB

In a cluster (the --cluster-* flags or [cluster]): a miss of a video is filled from its placement \
parent edge before the origins (a request that came through a kinema node only from the origins), \
/steer/{id} is answered here, and a viewer's master playlist or MPD is answered with one pathway per \
node (no-store).

HTTPS: --tls-cert FILE --tls-key FILE (or --tls-self-signed), as kinema serve takes them; SIGHUP \
reloads the certificate. Origins and parent edges may be https:// (public CA roots, plus \
--origin-ca FILE for a private CA); a certificate that fails verification is a 502, its cause logged.

Purge: curl -X PURGE -H 'Authorization: Bearer TOKEN' http://EDGE/v/ID/* (needs --purge-token). \
In a cluster the edge sends it on to every other live edge (same token on every edge) and answers \
each one's outcome; Kinema-Purge-Scope: node purges this edge only. \
Metrics: /metrics or /_kinema/metrics. Every flag can also be set by its KINEMA_* variable or in \
the [edge] section of kinema.toml ([edge.server] holds listener limits). SIGTERM or Ctrl-C \
stops accepting, lets responses in flight finish and exits 0.";

/// Every setting of `[edge]` that has a flag; a flag or variable overrides
/// the file.
#[derive(Debug, Args, Serialize)]
pub struct EdgeArgs {
    /// Origin base URLs, comma-separated (http://HOST:PORT or https://HOST[:PORT]) [required]
    #[arg(
        long,
        env = "KINEMA_EDGE_ORIGIN",
        value_name = "URL[,URL...]",
        value_delimiter = ','
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    origin: Option<Vec<String>>,

    /// Address to listen on [default: 127.0.0.1:8081]
    #[arg(long, env = "KINEMA_EDGE_LISTEN", value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<SocketAddr>,

    /// Size of the memory tier, e.g. 1GiB [default: 512MiB]
    #[arg(long, env = "KINEMA_CACHE_MEMORY", value_name = "SIZE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_memory: Option<String>,

    /// Disk tier directory and size, e.g. /var/cache/kinema:20GiB [default: none]
    #[arg(long, env = "KINEMA_CACHE_DISK", value_name = "DIR:SIZE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_disk: Option<String>,

    /// Larger responses are passed through, not stored [default: 64MiB]
    #[arg(long, env = "KINEMA_MAX_OBJECT_SIZE", value_name = "SIZE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_object_size: Option<String>,

    /// Complete responses larger than this are cached as slices fetched by range; 0 turns slicing off [default: 16MiB]
    #[arg(long, env = "KINEMA_SLICE_THRESHOLD", value_name = "SIZE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    slice_threshold: Option<String>,

    /// Size of one slice of a large object [default: 4MiB]
    #[arg(long, env = "KINEMA_SLICE_SIZE", value_name = "SIZE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    slice_size: Option<String>,

    /// Time to connect to an origin [default: 2s]
    #[arg(long, env = "KINEMA_CONNECT_TIMEOUT", value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    connect_timeout: Option<String>,

    /// Time for an origin's response head, and between body chunks; then 504 [default: 10s]
    #[arg(long, env = "KINEMA_ORIGIN_TIMEOUT", value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    origin_timeout: Option<String>,

    /// Serve stale this long past expiry when the origin fails, beyond stale-if-error [default: 1day]
    #[arg(long, env = "KINEMA_STALE_GRACE", value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    stale_grace: Option<String>,

    // Not `{n}`: clap reads that as a line break in help text.
    /// Segments after n prefetched when …/<n>.m4s is served; 0 disables [default: 2]
    #[arg(long, env = "KINEMA_PREFETCH_SEGMENTS", value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    prefetch_segments: Option<u32>,

    /// Bearer token of the purge API, the same on every edge of a cluster; purge is disabled without one [default: none]
    #[arg(
        long,
        env = "KINEMA_PURGE_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    purge_token: Option<String>,

    /// Query of /v/ objects: ignore (drop it), refuse (400) or keep (in the cache key); CMCD= never counts [default: ignore]
    #[arg(long, env = "KINEMA_QUERY_POLICY", value_name = "POLICY")]
    #[serde(skip_serializing_if = "Option::is_none")]
    query_policy: Option<String>,

    /// Key ring file: verify signed URLs at the edge and share one copy among tokens [default: none]
    #[arg(long, env = "KINEMA_EDGE_KEYS", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    keys: Option<PathBuf>,

    /// PEM certificate chain; with --tls-key the listener speaks HTTPS only (ALPN h2, http/1.1)
    #[arg(long, env = "KINEMA_TLS_CERT", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert (ECDSA or RSA)
    #[arg(long, env = "KINEMA_TLS_KEY", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_key: Option<PathBuf>,

    /// Serve HTTPS with a certificate made at start for localhost (local use) [default: false]
    #[arg(long, env = "KINEMA_TLS_SELF_SIGNED", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", action = ArgAction::Set)]
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_self_signed: Option<bool>,

    /// Also listen for plain HTTP here and redirect every request to HTTPS
    #[arg(long, env = "KINEMA_REDIRECT_HTTP", value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    redirect_http: Option<SocketAddr>,

    /// Send Strict-Transport-Security (max-age one year) on HTTPS responses [default: false]
    #[arg(long, env = "KINEMA_HSTS", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", action = ArgAction::Set)]
    #[serde(skip_serializing_if = "Option::is_none")]
    hsts: Option<bool>,

    /// PEM CA certificates trusted for https:// origins and parent edges, beside the public roots (a private CA) [default: none]
    #[arg(long, env = "KINEMA_ORIGIN_CA", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    origin_ca: Option<PathBuf>,

    /// The `[cluster]` section's flags.
    #[command(flatten, next_help_heading = "Cluster")]
    #[serde(skip)]
    cluster: crate::cluster::ClusterArgs,

    /// The `[netq]` section's flags.
    #[command(flatten, next_help_heading = "Network quality")]
    #[serde(skip)]
    netq: crate::netq::NetqArgs,
}

pub fn run(config_file: &ConfigFile, args: EdgeArgs) -> Result<()> {
    let cluster = crate::cluster::resolve(config_file, &args.cluster)?;
    let network = crate::netq::resolve(config_file, &args.netq)?;
    let config: kinema_edge::Config = config_file.resolve("edge", &args)?;
    if config.origin.is_empty() {
        anyhow::bail!(
            "no origin given; use --origin http://HOST:PORT (or origin = [...] in [edge])"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        // The edge's parts are wired here: its cache tiers, the origins it
        // fills from and the system clock.
        let mut parts = kinema_edge::EdgeParts::open(&config).await?;
        // Viewers' networks measured: the listener's sampler and CMCD.
        if let Some(network) = &network {
            parts = parts.with_network(network.measuring.clone());
        }
        // In a cluster: figures from the edge's own counters, misses filled
        // from each video's placement parent, steering, and the cluster's
        // counters in /metrics.
        let counters = parts.counters();
        let cluster = crate::cluster::start_with(
            cluster,
            kinema_cluster::Role::Edge,
            crate::cluster::FiguresFrom::Counters(edge_readings(counters)),
            network.as_ref(),
        )
        .await?;
        if let Some(node) = &cluster {
            let part = kinema_edge::ClusterPart {
                steering: node.steering(parts.clock.clone()),
                gossip: node.counters(),
            };
            parts = parts.with_cluster(&config, node.node_id(), node.subscribe(), part)?;
        }
        let shutdown = crate::cluster::drain_on(shutdown_signal(), cluster.as_ref());
        kinema_edge::run_with(config, parts, listener, shutdown).await?;
        crate::cluster::leave(cluster).await;
        Ok(())
    })
}

/// The edge's counters as the cluster's figures read them: bytes sent to
/// clients, viewers that fetched a stable master or MPD (the sessions: those
/// of the last minute), the listener's load.
fn edge_readings(counters: kinema_edge::EdgeCounters) -> crate::cluster::Readings {
    let (bytes, sessions, load) = (counters.clone(), counters.clone(), counters);
    crate::cluster::Readings {
        bytes_sent: Box::new(move || bytes.bytes_sent()),
        sessions_started: Box::new(move || sessions.sessions_started()),
        load: Box::new(move || load.load()),
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: draining responses in flight");
}
