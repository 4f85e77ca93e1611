//! The seam through which one kinema node sends a short message to another
//! (an origin sending a purge on to every edge, reading an edge's
//! `/metrics`): [`NodeClient`] says what such an exchange is, and the edge's
//! pooled client (`kinema_edge::origin::OriginClient`, which reaches
//! `https://` nodes with verified certificates) is the one implementation,
//! so no second HTTP client exists for it.
//!
//! [`send_purge_on`] is the one way a purge travels between nodes, from an
//! edge to the other edges or from the origin to every edge.
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

/// The header that asks a node to purge itself only: what a purge sent on
/// to another node carries, so it is never sent on again (one hop).
pub const PURGE_SCOPE: &str = "kinema-purge-scope";
/// An edge's purge endpoint, which a purge is sent on to.
pub const PURGE_PATH: &str = "/_kinema/purge";
/// Purges sent on at once.
pub const PURGE_CONCURRENCY: usize = 16;
/// How long one node has to answer a purge sent on to it.
pub const PURGE_TIMEOUT: Duration = Duration::from_secs(5);
/// Most bytes of a node's answer to a purge that are read.
const MAX_PURGE_ANSWER: usize = 16 * 1024;
/// Most nodes one purge is sent on to.
pub const MAX_PURGE_TARGETS: usize = 1024;

/// A node a purge is sent on to.
#[derive(Debug, Clone)]
pub struct PurgeTarget {
    /// Its node id.
    pub node: String,
    /// How the answer names it (`edge`).
    pub shown_as: String,
    /// Its public base URL.
    pub base_url: String,
}

/// Sends a purge (its JSON request `body`) on to every target (at most
/// [`MAX_PURGE_TARGETS`]) with the
/// edges' bearer `token`, marked [`PURGE_SCOPE`]` : node`, at most
/// [`PURGE_CONCURRENCY`] at once, each within [`PURGE_TIMEOUT`]; each
/// target's outcome, ordered by node id: `{"node", "edge", "status",
/// "purged"}`, or with `"error"` in place of `"purged"` when it refused or
/// could not be reached.
pub async fn send_purge_on(
    client: &dyn NodeClient,
    token: &str,
    mut targets: Vec<PurgeTarget>,
    body: Bytes,
) -> Vec<serde_json::Value> {
    use futures::StreamExt;
    use http::{HeaderValue, header};
    use serde_json::json;

    if targets.len() > MAX_PURGE_TARGETS {
        tracing::warn!(
            nodes = targets.len(),
            "purge sent on to the first {MAX_PURGE_TARGETS} nodes only"
        );
        targets.truncate(MAX_PURGE_TARGETS);
    }
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(PURGE_SCOPE, HeaderValue::from_static("node"));
    headers.insert(header::VIA, HeaderValue::from_static(crate::via::VIA));
    let Ok(mut bearer) = HeaderValue::from_str(&format!("Bearer {token}")) else {
        let why = "not sent: the purge token is not a valid header value";
        return targets
            .into_iter()
            .map(|target| json!({"node": target.node, "edge": target.shown_as, "error": why}))
            .collect();
    };
    bearer.set_sensitive(true);
    headers.insert(header::AUTHORIZATION, bearer);
    let sends = targets.into_iter().map(|target| {
        let message = NodeMessage {
            base_url: target.base_url,
            method: Method::POST,
            path_and_query: PURGE_PATH.into(),
            headers: headers.clone(),
            body: body.clone(),
            max_answer: MAX_PURGE_ANSWER,
            timeout: PURGE_TIMEOUT,
        };
        let (node, edge) = (target.node, target.shown_as);
        async move {
            match client.exchange(message).await {
                Ok((status, answer)) if status.is_success() => {
                    let purged = serde_json::from_slice::<serde_json::Value>(&answer)
                        .ok()
                        .and_then(|answer| answer.get("purged").cloned())
                        .unwrap_or(serde_json::Value::Null);
                    json!({"node": node, "edge": edge, "status": status.as_u16(), "purged": purged})
                }
                Ok((status, answer)) => {
                    let said = String::from_utf8_lossy(&answer);
                    let said = said.lines().next().unwrap_or("").trim().to_string();
                    tracing::warn!(%node, %edge, %status, said, "a node refused a purge sent on to it");
                    json!({"node": node, "edge": edge, "status": status.as_u16(), "error": said})
                }
                Err(problem) => {
                    tracing::warn!(%node, %edge, error = %problem, "a purge could not be sent on to a node");
                    json!({"node": node, "edge": edge, "error": problem.to_string()})
                }
            }
        }
    });
    let mut outcomes: Vec<serde_json::Value> = futures::stream::iter(sends)
        .buffer_unordered(PURGE_CONCURRENCY)
        .collect()
        .await;
    outcomes.sort_by(|a, b| a["node"].as_str().cmp(&b["node"].as_str()));
    outcomes
}
