//! `kinema serve`: the origin server over a library (a directory, or a
//! bucket and prefix in an S3-protocol object store).
//!
//! This module only turns flags, `KINEMA_*` variables and the `[serve]`
//! section into a `kinema_origin::Config`, binds the listener, and stops the
//! server on SIGTERM or SIGINT (it then drains and exits 0).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{ArgAction, Args};
use serde::Serialize;

use crate::config::ConfigFile;

/// The long `--help` text of `kinema serve`.
pub const LONG_ABOUT: &str = "Serve a video library over HTTP/1.1 and HTTP/2 (h2c).

URLs: /v/{id}/master.m3u8 (HLS), /v/{id}/manifest.mpd (DASH), /v/{id}/{rendition}/{number}.m4s, \
/healthz, /metrics (Prometheus), / and /ui/... (web UI), /api/... (admin API, bearer tokens \
from `kinema tokens`). Signed videos are served only under /s/{token}/v/{id}/... (`kinema sign`).

Overload: a player's first request (master.m3u8 or manifest.mpd) starts a viewing session, \
admitted only while the server has room for the video's top bit rate (--max-egress, --max-load); \
otherwise 503 with Retry-After, so admitted viewers keep playing. Everything else is always served.

HTTPS: --tls-cert FILE --tls-key FILE (or --tls-self-signed); SIGHUP reloads the certificate, \
the key ring and the admin tokens without dropping connections.

Cluster (--cluster-* flags or [cluster]): the origin gossips its figures, answers \
/steer/{id} (HLS or DASH content steering; no token needed) and sends a viewer's request for a \
master.m3u8 or manifest.mpd to the edge steering chooses (302, path and token kept); edges, \
which send Via: 1.1 kinema, and generation URLs get the stored files.

Example: kinema serve --library ./library --listen 127.0.0.1:8080

The library may also be s3://BUCKET/PREFIX in an S3-protocol object store (--s3-endpoint, \
--s3-region, --s3-path-style; credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or \
AWS_PROFILE). It is contacted once at start: wrong credentials, a missing bucket or an unreachable \
endpoint stop the server with the setting to fix. Files read from S3 (up to --max-cached-file-size) are kept in a disk \
cache (--disk-cache DIR, default kinema-cache beside the ingest workspace; --disk-cache-size, default \
20GiB), so it is fetched once; while S3 is down what is cached is still served and the rest gets \
503 + Retry-After.

Every flag can also be set by its KINEMA_* variable or in the [serve] section of kinema.toml \
(same name with underscores: cache_size = \"1GiB\"). SIGTERM or Ctrl-C stops accepting, lets \
responses in flight finish (up to --drain-timeout) and exits 0.";

/// Every setting of `[serve]`; a flag or variable overrides the file.
#[derive(Debug, Args, Serialize)]
pub struct ServeArgs {
    /// Library holding videos/{id}/manifest.json and their files: a
    /// directory, or s3://BUCKET/PREFIX [required]
    #[arg(long, env = "KINEMA_LIBRARY", value_name = "DIR|s3://BUCKET/PREFIX")]
    #[serde(skip_serializing_if = "Option::is_none")]
    library: Option<String>,

    #[command(flatten)]
    #[serde(flatten)]
    s3: crate::store::S3Args,

    /// Address to listen on; port 0 picks a free port (logged) [default: 127.0.0.1:8080]
    #[arg(long, env = "KINEMA_LISTEN", value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<SocketAddr>,

    /// Built web UI served at / and /ui/ [default: web/dist]
    #[arg(long, env = "KINEMA_WEB_ROOT", value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    web_root: Option<PathBuf>,

    /// Memory for cached file contents, e.g. 512MiB [default: 512MiB]
    #[arg(long, env = "KINEMA_CACHE_SIZE", value_name = "SIZE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_size: Option<String>,

    /// Directory of the disk cache that keeps an S3 library's files on local disk, so each is fetched from S3 once (unused for a library directory) [default: kinema-cache beside the ingest workspace, else in the working directory]
    #[arg(long, env = "KINEMA_DISK_CACHE", value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    disk_cache: Option<PathBuf>,

    /// Most bytes the disk cache holds; the least recently used files go beyond it, e.g. 100GiB [default: 20GiB]
    #[arg(long, env = "KINEMA_DISK_CACHE_SIZE", value_name = "SIZE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    disk_cache_size: Option<String>,

    /// Larger files are streamed from disk in chunks instead of cached [default: 16MiB]
    #[arg(long, env = "KINEMA_MAX_CACHED_FILE_SIZE", value_name = "SIZE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_cached_file_size: Option<String>,

    /// A cached file unused this long leaves the cache and its file is closed (an unpublished video's disk space is freed then) [default: 5m]
    #[arg(long, env = "KINEMA_CACHE_INACTIVE", value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_inactive: Option<String>,

    /// Cache-Control max-age of playlists, MPDs and every /v/{id}/… URL
    /// without a generation, e.g. 10s [default: 10s]
    #[arg(long, env = "KINEMA_MANIFEST_MAX_AGE", value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    manifest_max_age: Option<String>,

    /// How often a video's manifest.json is re-read, so unpublished videos vanish [default: 2s]
    #[arg(long, env = "KINEMA_MANIFEST_REFRESH", value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    manifest_refresh: Option<String>,

    /// Origins allowed to fetch media cross-origin, comma-separated; * allows all [default: *]
    #[arg(
        long,
        env = "KINEMA_CORS_ALLOWED_ORIGINS",
        value_name = "ORIGINS",
        value_delimiter = ','
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    cors_allowed_origins: Option<Vec<String>>,

    /// One log line per request: method, path, status, bytes, duration [default: true]
    #[arg(long, env = "KINEMA_ACCESS_LOG", value_name = "BOOL", action = ArgAction::Set)]
    #[serde(skip_serializing_if = "Option::is_none")]
    access_log: Option<bool>,

    /// Load segment n+1 into memory when segment n is requested [default: true]
    #[arg(long, env = "KINEMA_PREFETCH", value_name = "BOOL", action = ArgAction::Set)]
    #[serde(skip_serializing_if = "Option::is_none")]
    prefetch: Option<bool>,

    /// Bytes per second a background scrub reads to re-check every published file's SHA-256 (files found corrupt are refused and counted); 0 turns it off, e.g. 20MiB [default: 0]
    #[arg(long, env = "KINEMA_SCRUB_RATE", value_name = "SIZE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    scrub_rate: Option<String>,

    /// Most egress, e.g. 9gbit (a little under the network link): new viewing sessions that would not fit get 503 + Retry-After [default: unset]
    #[arg(long, env = "KINEMA_MAX_EGRESS", value_name = "BITRATE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_egress: Option<String>,

    /// Share of time the serving threads may be busy before new viewing sessions get 503 + Retry-After; 1 turns it off [default: 0.9]
    #[arg(long, env = "KINEMA_MAX_LOAD", value_name = "SHARE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_load: Option<f64>,

    /// Longest time to receive a request's headers (slowloris defence) [default: 10s]
    #[arg(long, env = "KINEMA_HEADER_READ_TIMEOUT", value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    header_read_timeout: Option<String>,

    /// How long an idle keep-alive connection stays open [default: 60s]
    #[arg(long, env = "KINEMA_IDLE_TIMEOUT", value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    idle_timeout: Option<String>,

    /// How long a request body may stall [default: 60s]
    #[arg(long, env = "KINEMA_BODY_READ_TIMEOUT", value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    body_read_timeout: Option<String>,

    /// How long a response write may stall before the connection is closed [default: 60s]
    #[arg(long, env = "KINEMA_WRITE_TIMEOUT", value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    write_timeout: Option<String>,

    /// Largest request header section; larger gets 431 [default: 16KiB]
    #[arg(long, env = "KINEMA_MAX_HEADER_BYTES", value_name = "SIZE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_header_bytes: Option<String>,

    /// Longest request target; longer gets 414 [default: 8KiB]
    #[arg(long, env = "KINEMA_MAX_URI_BYTES", value_name = "SIZE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_uri_bytes: Option<String>,

    /// Most connections open at once [default: 50000]
    #[arg(long, env = "KINEMA_MAX_CONNECTIONS", value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_connections: Option<usize>,

    /// On SIGTERM/SIGINT, how long responses in flight may take to finish [default: 30s]
    #[arg(long, env = "KINEMA_DRAIN_TIMEOUT", value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    drain_timeout: Option<String>,

    /// Concurrent streams per HTTP/2 connection [default: 128]
    #[arg(long, env = "KINEMA_HTTP2_MAX_CONCURRENT_STREAMS", value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    http2_max_concurrent_streams: Option<u32>,

    /// Threads serving connections, each with its own event loop; 0 means one per CPU the process may use [default: 0]
    #[arg(long, env = "KINEMA_THREADS", value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    threads: Option<usize>,

    /// Key ring that verifies signed URLs (kinema keys) [default: kinema-keys.toml]
    #[arg(long, env = "KINEMA_KEYS", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    keys: Option<PathBuf>,

    /// Admin API bearer-token hashes (kinema tokens) [default: kinema-tokens.toml]
    #[arg(long, env = "KINEMA_TOKENS", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    tokens: Option<PathBuf>,

    /// Clock skew tolerated on signed-URL expiry and not-before [default: 30s]
    #[arg(long, env = "KINEMA_AUTH_SKEW", value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_skew: Option<String>,

    /// Proxies (addresses or CIDRs, comma-separated, e.g. your edges) whose Forwarded / X-Forwarded-For name the client, for address-bound tokens and admission [default: none]
    #[arg(
        long,
        env = "KINEMA_TRUSTED_PROXIES",
        value_name = "CIDRS",
        value_delimiter = ','
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    trusted_proxies: Option<Vec<String>>,

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

    /// The `[cluster]` section's flags.
    #[command(flatten, next_help_heading = "Cluster")]
    #[serde(skip)]
    cluster: crate::cluster::ClusterArgs,

    /// The `[netq]` section's flags.
    #[command(flatten, next_help_heading = "Network quality")]
    #[serde(skip)]
    netq: crate::netq::NetqArgs,

    /// The `[queue]` section's flags.
    #[command(flatten, next_help_heading = "Job queue")]
    #[serde(skip)]
    queue: crate::queue::QueueArgs,
}

pub fn run(config_file: &ConfigFile, args: ServeArgs) -> Result<()> {
    let mut cluster = crate::cluster::resolve(config_file, &args.cluster)?;
    let edge_reach = cluster
        .as_mut()
        .map(crate::cluster::ClusterSettings::take_edge_reach);
    let network = crate::netq::resolve(config_file, &args.netq)?;
    let queue = crate::queue::resolve(config_file, &args.queue)?;
    let mut section: toml::Table = config_file.resolve("serve", &args)?;
    let Some(library) = crate::store::take_store_config("serve", &mut section)? else {
        bail!(
            "no library given: pass --library DIR (or s3://BUCKET/PREFIX), set KINEMA_LIBRARY or library in [serve]"
        );
    };
    let local_library = crate::store::local_directory(&library)?;
    if local_library.is_some() && queue.is_shared() {
        // Only `kinema worker` processes claim from the shared queue, and
        // they read sources from and write videos to an object store.
        bail!(
            "[queue] url is set but the library is a local directory: the PostgreSQL queue feeds \
             `kinema worker` processes, which need the library in an object store \
             (--library s3://BUCKET/PREFIX); drop the queue url to ingest on this server"
        );
    }
    if let Some(directory) = &local_library
        && !directory.is_dir()
    {
        // Serving never creates a library: a typo must not serve nothing.
        bail!(
            "library directory {} does not exist; create it or point --library at an existing library",
            directory.display()
        );
    }
    // The origin's own settings; its `library` is only named in its log.
    section.insert(
        "library".into(),
        toml::Value::String(library.library.clone()),
    );
    let mut config: kinema_origin::Config = config_file.deserialize("serve", section)?;
    // Upload jobs run with the same [ingest] settings as `kinema ingest`
    // (its `library` key is the CLI's; the server's library is [serve]'s).
    let no_flags = toml::Table::new();
    config.ingest = crate::ingest::resolve_settings(config_file, &no_flags)?.1;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener =
            bind(config.listen).with_context(|| format!("cannot listen on {}", config.listen))?;
        // The origin's parts are wired here: the library's store (opened,
        // so a store that refuses stops the server before it listens), the
        // caches over it, the ingest workspace and the system clock.
        // (The origin collects retired generations itself, at start and
        // hourly.)
        let store = crate::store::open(&library).await?;
        let workspace_root = config.ingest.workspace_root(local_library.as_deref());
        let workspace = kinema_media::Workspace::open(&workspace_root).with_context(|| {
            format!(
                "cannot open the ingest workspace {}",
                workspace_root.display()
            )
        })?;
        // A library in S3 gets a disk cache under the memory cache; a
        // library directory's files are on a local disk already.
        let disk_cache = match &local_library {
            Some(_) => {
                if config.disk_cache.is_some() {
                    tracing::info!("disk_cache is unused: the library is a local directory");
                }
                None
            }
            None => {
                let dir = config.disk_cache_dir();
                let disk_cache =
                    kinema_origin::DiskCache::open(&dir, config.disk_cache_size.as_u64())
                        .await
                        .with_context(|| {
                            format!("cannot open the disk cache {}; set disk_cache", dir.display())
                        })?;
                tracing::info!(dir = %dir.display(), size = %config.disk_cache_size, "disk cache open");
                Some(disk_cache)
            }
        };
        let clock = kinema_http::Clock::system();
        let mut parts = kinema_origin::OriginParts::with_disk_cache(
            &config,
            store,
            disk_cache,
            workspace,
            clock.clone(),
        );
        // A library in S3 takes uploads for `kinema worker` processes.
        if local_library.is_none() {
            parts = crate::worker::take_workers(
                parts,
                &library,
                &workspace_root,
                &queue,
                &config.ingest,
            )
            .await?;
        }
        // In a cluster: figures from the origin's own counters, steering
        // over the membership, and the cluster's figures in /metrics.
        // Viewers' networks measured: the listener's sampler, CMCD, and
        // the figures in /metrics.
        if let Some(network) = &network {
            parts = parts
                .with_network(network.measuring.clone())
                .with_metrics(crate::netq::register_metrics(network.measuring.clone()));
        }
        let figures = crate::cluster::Readings::of_origin(parts.counters());
        let cluster = crate::cluster::start_with(
            cluster,
            kinema_cluster::Role::Origin,
            crate::cluster::FiguresFrom::Counters(figures),
            network.as_ref(),
        )
        .await?;
        if let Some(node) = &cluster {
            parts = parts
                .with_steering(node.steering(clock))
                .with_member_places(node.member_places())
                .with_metrics(node.register_metrics());
        }
        if let (Some(_), Some(reach)) = (&cluster, edge_reach) {
            parts = parts.with_cluster_client(edge_client(reach)?);
        }
        let shutdown = crate::cluster::drain_on(shutdown_signal(), cluster.as_ref());
        kinema_origin::run_with(config, parts, listener, shutdown).await?;
        crate::cluster::leave(cluster).await;
        Ok(())
    })
}

/// How the origin reaches its cluster's edges: the edge's own client
/// (`https://` edges verified against the public roots and `edge_ca`),
/// with the edges' purge token.
fn edge_client(reach: crate::cluster::EdgeReach) -> Result<kinema_origin::ClusterClient> {
    let settings = kinema_edge::origin::OriginSettings {
        connect_timeout: std::time::Duration::from_secs(2),
        response_timeout: std::time::Duration::from_secs(5),
        origin_ca: reach.edge_ca,
    };
    let client = kinema_edge::origin::OriginClient::new(settings, Default::default())
        .map_err(|error| anyhow::anyhow!("[cluster] edge_ca: {error}"))?;
    let token = reach.purge_token.map(|token| token.reveal().to_string());
    Ok(kinema_origin::ClusterClient::new(
        std::sync::Arc::new(client),
        token,
    ))
}

/// A listener with a deep accept queue: a burst of viewers connecting at
/// once waits in the kernel instead of being refused.
fn bind(address: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(address)?;
    socket.listen(4096)
}

/// Resolves on SIGTERM (what service managers send) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot watch SIGTERM; only Ctrl-C stops the server");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: draining"),
        () = terminate => tracing::info!("SIGTERM: draining"),
    }
}
