//! The origin server of kinema: serves a video library's published files
//! over HTTP (`/v/{id}/{path}`), with the semantics players and caches rely
//! on (RFC 9110 ranges, conditional requests, CORS), a byte-weighted memory
//! cache of file contents shared by every viewer, and prefetch of the next
//! segment. It also serves `/healthz`, `/metrics`, the web UI and routes
//! `/api/` to the admin API.
//!
//! It does not speak HTTP on sockets: the connection layer
//! ([`kinema_http::server`]) does, and calls [`Origin`] as its
//! [`kinema_http::Handler`]. It does not read files itself either: every
//! read goes through [`kinema_store::Store`].

mod access;
mod admin_access;
mod admission;
pub mod api;
mod catalog;
mod cluster_api;
mod config;
mod cors;
mod disk_cache;
mod edit;
mod files;
mod forwarded;
mod metrics;
mod openapi;
mod origin;
mod parts;
mod policy;
mod public_catalogue;
mod purge;
pub mod remote_ingest;
mod secure;
mod upload_form;
mod web;
pub mod worker_api;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use cluster_api::{MemberPlace, MemberPlaces};
pub use config::Config;
pub use disk_cache::DiskCache;
pub use forwarded::TrustedProxies;
pub use metrics::RouteKind;
pub use origin::Origin;
pub use parts::{MetricsHook, OriginCounters, OriginParts};
pub use purge::ClusterClient;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "library directory {0} does not exist; create it or point --library at an existing library"
    )]
    NoLibrary(PathBuf),
    #[error("cannot open the library: {0}")]
    Store(#[from] kinema_store::StoreError),
    #[error(transparent)]
    WebRoot(#[from] web::WebRootError),
    #[error("{0}")]
    Config(String),
    #[error("cannot load access control: {0}")]
    Access(#[from] access::AccessError),
    #[error(transparent)]
    Tls(#[from] kinema_http::tls::TlsError),
    #[error("the listener failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// Serves `config.library` on `listener` until `shutdown` resolves, then
/// drains in-flight responses (up to `config.drain_timeout`) and returns;
/// [`run_with`] of the parts [`OriginParts::open`] makes.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let parts = OriginParts::open(&config).await?;
    run_with(config, parts, listener, shutdown).await
}

/// Serves an origin of `parts` with the settings of `config` on `listener`
/// until `shutdown` resolves, then drains in-flight responses (up to
/// `config.drain_timeout`) and returns.
///
/// With TLS configured the listener speaks HTTPS only (ALPN h2 or
/// http/1.1), `redirect_http` adds a plain listener that redirects to it,
/// and SIGHUP reloads the certificate, key ring and admin tokens.
pub async fn run_with(
    config: Config,
    parts: OriginParts,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    // The parts' counters, which the wiring may read while this serves.
    let stats = parts.stats();
    let tcp_info = parts.network.as_ref().map(kinema_netq::Measuring::sampling);
    let origin = Arc::new(Origin::new(&config, parts).await?);
    let handler = origin.clone();
    let tls = secure::server_tls(&config)?;
    let reloader = secure::reload_on_sighup(origin.access(), tls.clone()).map_err(Error::Serve)?;
    let address = listener.local_addr().map_err(Error::Serve)?;
    tracing::info!(
        %address,
        library = %config.library.display(),
        tls = tls.is_some(),
        "origin serving"
    );
    // Started before the listeners, and stopped whatever they return.
    let background = origin.start_background();
    let listeners = kinema_http::https::HttpsListeners {
        listener,
        tls,
        redirect_http: config.redirect_http,
        hsts: config.hsts,
        server: config.server_config(),
        stats,
        tcp_info,
    };
    let served = kinema_http::https::serve_https(listeners, handler, shutdown).await;
    reloader.abort();
    for task in &background {
        task.abort();
    }
    served.map_err(Error::Serve)?;
    tracing::info!("origin stopped");
    Ok(())
}
