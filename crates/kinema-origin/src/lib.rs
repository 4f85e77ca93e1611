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

pub mod api;
mod catalog;
mod config;
mod cors;
mod files;
mod metrics;
mod origin;
mod web;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use kinema_http::server::ServerStats;
use tokio::net::TcpListener;

pub use config::Config;
pub use metrics::RouteKind;
pub use origin::Origin;

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
    #[error("the listener failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// Serves `config.library` on `listener` until `shutdown` resolves, then
/// drains in-flight responses (up to `config.drain_timeout`) and returns.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let stats = Arc::new(ServerStats::default());
    let origin = Arc::new(Origin::new(&config, stats.clone()).await?);
    tracing::info!(
        address = %listener.local_addr().map_or_else(|e| e.to_string(), |a| a.to_string()),
        library = %config.library.display(),
        "origin serving"
    );
    kinema_http::server::serve_with_stats(
        listener,
        origin,
        config.server_config(),
        None,
        stats,
        shutdown,
    )
    .await
    .map_err(Error::Serve)?;
    tracing::info!("origin stopped");
    Ok(())
}
