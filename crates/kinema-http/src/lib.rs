//! Shared HTTP of kinema, used by the origin and the edge alike: the
//! listener and connection handling (HTTP/1.1 and HTTP/2, limits, graceful
//! drain), the body types handlers exchange with it, and the request
//! semantics of RFC 9110 that every server here needs (ranges, conditional
//! requests, content types), and the disk tier both servers' caches keep
//! files in ([`disk_tier`]).
//!
//! It knows nothing of videos or stores, nor what a cache should keep: a
//! service plugs in through [`Handler`].

pub mod body;
pub mod clock;
pub mod conditional;
pub mod content_type;
pub mod disk_tier;
pub mod http_date;
pub mod https;
pub mod node_client;
pub mod range;
pub mod respond;
pub mod server;
pub mod shared_file;
pub mod tcp_info;
pub mod tls;
pub mod via;

use std::future::Future;
use std::net::SocketAddr;

pub use body::{RequestBody, ResponseBody};
pub use clock::Clock;
pub use server::{
    ServerConfig, ServerStats, ServerStatsSnapshot, serve, serve_sampled, serve_with_stats,
};
pub use shared_file::{FileSlice, SharedFile};

/// What a handler may know about the connection a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionInfo {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// True when the connection is TLS.
    pub secure: bool,
}

/// A service: turns each request into a response. Errors are responses too
/// (a handler decides their status); the connection layer only adds what
/// HTTP framing needs.
pub trait Handler: Send + Sync + 'static {
    fn handle(
        &self,
        request: http::Request<RequestBody>,
        connection: ConnectionInfo,
    ) -> impl Future<Output = http::Response<ResponseBody>> + Send;
}
