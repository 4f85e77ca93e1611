//! `GET /api/cluster` (admin scope): the cluster as this origin sees it,
//! for the admin UI's cluster page.
//!
//! ```text
//! {"cluster": false}                                   no [cluster] section
//! {"cluster": true, "nodes": [{node_id, role, public_url, region,
//!   this_node, status, load, sessions, egress_bps, capacity_bps, cache}]}
//! ```
//!
//! Members come from the steering part's membership snapshot (live and
//! dead members; those that left are not known), egress included as each
//! live member gossiped it; a dead member has none. Each member's region
//! and which member answered (`this_node`) come from the membership's
//! [`MemberPlaces`], which the wiring hands the origin beside steering
//! (`region` is null for a member it does not list).
//! Gossip carries no cache figures, so an edge's are fetched from its
//! `/metrics` on each request: at most [`MAX_PROBED_EDGES`] live edges, in
//! parallel, each within [`PROBE_TIMEOUT`] and [`MAX_METRICS_BYTES`]; an
//! edge that does not answer in time shows `"cache": {"error": "..."}`.
//!
//! It is not a monitoring system: nothing is kept between requests.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Method, StatusCode};
use kinema_auth::Scope;
use kinema_http::{ResponseBody, respond};
use kinema_steering::{NodeStatus, NodeView, SteeringService};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::access::Access;

pub const PATH: &str = "/api/cluster";
/// How long one edge's `/metrics` may take, connecting included.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Most edges whose cache figures one request fetches.
pub const MAX_PROBED_EDGES: usize = 64;
/// Largest `/metrics` response read from an edge, bytes.
pub const MAX_METRICS_BYTES: usize = 1024 * 1024;

type HttpResponse = http::Response<ResponseBody>;

/// Where one member sits, as the membership tells: its region, and whether
/// it is the node that answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberPlace {
    pub node_id: String,
    pub region: String,
    pub is_self: bool,
}

/// Reads every member's [`MemberPlace`] from the membership when asked
/// (on each `GET /api/cluster`), so the answer is as current as the view.
#[derive(Clone)]
pub struct MemberPlaces(Arc<dyn Fn() -> Vec<MemberPlace> + Send + Sync>);

impl MemberPlaces {
    pub fn new(read: impl Fn() -> Vec<MemberPlace> + Send + Sync + 'static) -> Self {
        Self(Arc::new(read))
    }
}

impl std::fmt::Debug for MemberPlaces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemberPlaces")
    }
}

/// The answer to a request for [`PATH`], admin scope required.
pub(crate) async fn answer(
    access: &Access,
    steering: Option<&SteeringService>,
    places: Option<&MemberPlaces>,
    method: &Method,
    headers: &HeaderMap,
) -> HttpResponse {
    let scope = match access.authorize_api(method, headers) {
        Ok(scope) => scope,
        Err(refusal) => return *refusal,
    };
    if !scope.allows(Scope::Admin) {
        return respond::json_error(
            StatusCode::FORBIDDEN,
            "insufficient_scope: the cluster needs an admin token",
            HeaderMap::new(),
        );
    }
    if method != Method::GET && method != Method::HEAD {
        let mut response = respond::json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed",
            HeaderMap::new(),
        );
        response
            .headers_mut()
            .insert(http::header::ALLOW, http::HeaderValue::from_static("GET"));
        return response;
    }
    let mut response = match steering {
        None => respond::json(StatusCode::OK, &json!({"cluster": false}), no_store()),
        Some(steering) => {
            let snapshot = steering.snapshot();
            let places = places.map(|places| (places.0)()).unwrap_or_default();
            let nodes = describe(snapshot.nodes(), &places).await;
            respond::json(
                StatusCode::OK,
                &json!({"cluster": true, "nodes": nodes}),
                no_store(),
            )
        }
    };
    if method == Method::HEAD {
        *response.body_mut() = ResponseBody::Empty;
    }
    response
}

fn no_store() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    headers
}

/// Every node as JSON, live edges' cache figures fetched in parallel.
async fn describe(nodes: &[NodeView], places: &[MemberPlace]) -> Vec<Value> {
    let probed: Vec<usize> = nodes
        .iter()
        .enumerate()
        .filter(|(_, node)| node.role.as_str() == "edge" && node.status != NodeStatus::Dead)
        .map(|(index, _)| index)
        .take(MAX_PROBED_EDGES)
        .collect();
    let probes = probed
        .iter()
        .map(|&index| probe_cache(nodes[index].base_url.as_str()));
    let mut caches: HashMap<usize, Value> = probed
        .iter()
        .copied()
        .zip(futures::future::join_all(probes).await)
        .collect();
    nodes
        .iter()
        .enumerate()
        .map(|(index, node)| {
            let place = places.iter().find(|place| place.node_id == node.node_id);
            json!({
                "node_id": node.node_id,
                "role": node.role.as_str(),
                "public_url": node.base_url.as_str(),
                "region": place.map(|place| place.region.as_str()),
                "this_node": place.is_some_and(|place| place.is_self),
                "status": status_name(node.status),
                "load": if node.load.is_finite() { node.load.clamp(0.0, 1.0) } else { 1.0 },
                "sessions": node.sessions,
                "egress_bps": (node.status != NodeStatus::Dead).then_some(node.egress_bps),
                "capacity_bps": node.capacity_bps,
                "cache": caches.remove(&index).unwrap_or(Value::Null),
            })
        })
        .collect()
}

fn status_name(status: NodeStatus) -> &'static str {
    match status {
        NodeStatus::Ok => "ok",
        NodeStatus::Draining => "draining",
        NodeStatus::Dead => "dead",
    }
}

/// An edge's cache figures from its `/metrics`, or why there are none.
async fn probe_cache(base_url: &str) -> Value {
    match tokio::time::timeout(PROBE_TIMEOUT, fetch_metrics(base_url)).await {
        Ok(Ok(text)) => cache_figures(&text),
        Ok(Err(reason)) => json!({"error": reason}),
        Err(_) => json!({"error": format!("no answer within {PROBE_TIMEOUT:?}")}),
    }
}

/// `GET {base}/metrics` over plain HTTP/1.0 (one response, no chunking,
/// closed by the server), bounded by [`MAX_METRICS_BYTES`].
async fn fetch_metrics(base_url: &str) -> Result<String, String> {
    let authority = base_url
        .strip_prefix("http://")
        .ok_or("only http:// edges are probed")?
        .split('/')
        .next()
        .unwrap_or("");
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("unusable edge url {base_url}"));
    }
    let address = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let mut stream = tokio::net::TcpStream::connect(&address)
        .await
        .map_err(|error| format!("cannot connect: {error}"))?;
    let request = format!("GET /metrics HTTP/1.0\r\nHost: {authority}\r\nVia: 1.1 kinema\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|error| format!("cannot send: {error}"))?;
    let mut bytes = Vec::new();
    (&mut stream)
        .take(MAX_METRICS_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(|error| format!("cannot read: {error}"))?;
    if bytes.len() > MAX_METRICS_BYTES {
        return Err(format!("metrics larger than {MAX_METRICS_BYTES} bytes"));
    }
    let text = String::from_utf8_lossy(&bytes);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("malformed response")?;
    let status_line = head.lines().next().unwrap_or("");
    if status_line.split_whitespace().nth(1) != Some("200") {
        return Err(format!("answered {status_line}"));
    }
    Ok(body.to_string())
}

/// Hit ratio and tier sizes from an edge's metrics text.
fn cache_figures(text: &str) -> Value {
    let gauge = |name: &str| -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
    };
    let ratio = match (
        gauge("kinema_edge_hit_ratio_memory"),
        gauge("kinema_edge_hit_ratio_disk"),
    ) {
        (Some(memory), Some(disk)) => Some(memory + disk),
        (Some(memory), None) => Some(memory),
        _ => None,
    };
    json!({
        "hit_ratio": ratio,
        "memory_bytes": gauge("kinema_edge_memory_bytes").map(|v| v as u64),
        "disk_bytes": gauge("kinema_edge_disk_bytes").map(|v| v as u64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_figures_add_the_tiers() {
        let text = "kinema_edge_hit_ratio_memory 0.500000\nkinema_edge_hit_ratio_disk 0.250000\n\
                    kinema_edge_memory_bytes 1024\nkinema_edge_memory_bytes_other 9\n\
                    kinema_edge_disk_bytes 0\n";
        assert_eq!(
            cache_figures(text),
            json!({"hit_ratio": 0.75, "memory_bytes": 1024, "disk_bytes": 0})
        );
        assert_eq!(
            cache_figures(""),
            json!({"hit_ratio": null, "memory_bytes": null, "disk_bytes": null})
        );
    }

    #[tokio::test]
    async fn an_edge_that_is_not_there_is_shown_as_such() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let value = probe_cache(&format!("http://{address}/")).await;
        assert!(
            value["error"]
                .as_str()
                .unwrap()
                .starts_with("cannot connect"),
            "{value}"
        );
    }

    #[tokio::test]
    async fn an_edge_that_accepts_but_never_answers_is_given_up_on() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let silent = tokio::spawn(async move {
            let (_connection, _) = listener.accept().await.unwrap();
            std::future::pending::<()>().await
        });
        let value = probe_cache(&format!("http://{address}")).await;
        assert_eq!(value, json!({"error": "no answer within 2s"}));
        silent.abort();
    }

    #[tokio::test]
    async fn an_oversized_metrics_answer_is_refused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let flood = tokio::spawn(async move {
            let (mut connection, _) = listener.accept().await.unwrap();
            // The request first: closing with it unread would reset the
            // connection before the answer is read.
            let mut request = Vec::new();
            while !request.ends_with(b"\r\n\r\n") {
                let mut byte = [0];
                connection.read_exact(&mut byte).await.unwrap();
                request.push(byte[0]);
            }
            let mut answer = b"HTTP/1.0 200 OK\r\n\r\n".to_vec();
            answer.resize(MAX_METRICS_BYTES + 100, b'#');
            let _ = connection.write_all(&answer).await;
            let _ = connection.shutdown().await;
        });
        let value = probe_cache(&format!("http://{address}")).await;
        assert_eq!(
            value,
            json!({"error": format!("metrics larger than {MAX_METRICS_BYTES} bytes")})
        );
        flood.abort();
    }

    #[test]
    fn an_https_edge_is_not_probed() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let value = runtime.block_on(probe_cache("https://edge.example/"));
        assert_eq!(value, json!({"error": "only http:// edges are probed"}));
    }
}
