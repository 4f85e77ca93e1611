//! The seam through which one kinema node sends a short message to another
//! (an origin sending a purge on to every edge, reading an edge's
//! `/metrics`): [`NodeClient`] says what such an exchange is, and the edge's
//! pooled client (`kinema_edge::origin::OriginClient`, which reaches
//! `https://` nodes with verified certificates) is the one implementation,
//! so no second HTTP client exists for it.
//!
//! It is not a general HTTP client: one request with a body held in memory,
//! an answer read whole up to a bound, the whole exchange within a time.

use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{HeaderMap, Method, StatusCode};

/// One message to another node.
#[derive(Debug, Clone)]
pub struct NodeMessage {
    /// The node's public base URL (`http://HOST:PORT` or `https://HOST`),
    /// as the membership publishes it.
    pub base_url: String,
    pub method: Method,
    /// Origin-form target, such as `/_kinema/purge`.
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Most bytes of the answer read; a longer answer is an error.
    pub max_answer: usize,
    /// The whole exchange, connecting included.
    pub timeout: Duration,
}

/// Why an exchange with another node failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    /// The base URL is no usable `http://` or `https://` URL.
    #[error("unusable node url: {0}")]
    Url(String),
    /// Refused, unreachable, or a certificate that failed verification.
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("no answer within {}s", .0.as_secs_f64())]
    Timeout(Duration),
    /// The connection broke, or the answer was longer than allowed.
    #[error("the exchange failed: {0}")]
    Exchange(String),
}

/// Sends one [`NodeMessage`] and reads its answer: the status and the
/// body, at most `max_answer` bytes.
pub trait NodeClient: Send + Sync + std::fmt::Debug {
    fn exchange(
        &self,
        message: NodeMessage,
    ) -> BoxFuture<'_, Result<(StatusCode, Bytes), NodeError>>;
}
