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
//! `/metrics` on each request, through the wiring's
//! [`NodeClient`] (the edge's client: `http://` and `https://` edges, their
//! certificates verified): at most [`MAX_PROBED_EDGES`] live edges, in
//! parallel, each within [`PROBE_TIMEOUT`] and [`MAX_METRICS_BYTES`]; an
//! edge that does not answer in time shows `"cache": {"error": "..."}`.
//!
//! It is not a monitoring system: nothing is kept between requests.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use kinema_auth::Scope;
use kinema_http::node_client::{NodeClient, NodeMessage};
use kinema_http::{ResponseBody, respond};
use kinema_steering::{NodeStatus, NodeView, SteeringService};
use serde_json::{Value, json};

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
    client: Option<&dyn NodeClient>,
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
            let nodes = describe(snapshot.nodes(), &places, client).await;
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
async fn describe(
    nodes: &[NodeView],
    places: &[MemberPlace],
    client: Option<&dyn NodeClient>,
) -> Vec<Value> {
    let probed: Vec<usize> = nodes
        .iter()
        .enumerate()
        .filter(|(_, node)| node.role.as_str() == "edge" && node.status != NodeStatus::Dead)
        .map(|(index, _)| index)
        .take(MAX_PROBED_EDGES)
        .collect();
    let probes = probed
        .iter()
        .map(|&index| probe_cache(client, nodes[index].base_url.as_str()));
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
async fn probe_cache(client: Option<&dyn NodeClient>, base_url: &str) -> Value {
    let Some(client) = client else {
        return json!({"error": "this origin has no client to reach edges"});
    };
    let mut headers = HeaderMap::new();
    // A node asking: the edge counts it apart from viewers.
    headers.insert(
        http::header::VIA,
        HeaderValue::from_static(kinema_http::via::VIA),
    );
    let message = NodeMessage {
        base_url: base_url.trim_end_matches('/').to_string(),
        method: Method::GET,
        path_and_query: "/metrics".into(),
        headers,
        body: Bytes::new(),
        max_answer: MAX_METRICS_BYTES,
        timeout: PROBE_TIMEOUT,
    };
    match client.exchange(message).await {
        Ok((status, text)) if status == StatusCode::OK => {
            cache_figures(&String::from_utf8_lossy(&text))
        }
        Ok((status, _)) => json!({"error": format!("answered {status}")}),
        Err(problem) => json!({"error": problem.to_string()}),
    }
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
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// The client the wiring hands the origin: the edge's.
    fn client() -> Arc<dyn NodeClient> {
        let settings = kinema_edge::origin::OriginSettings {
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(5),
            origin_ca: None,
        };
        Arc::new(kinema_edge::origin::OriginClient::new(settings, Arc::default()).unwrap())
    }

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
        let client = client();
        let value = probe_cache(Some(client.as_ref()), &format!("http://{address}/")).await;
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
        let client = client();
        let value = probe_cache(Some(client.as_ref()), &format!("http://{address}")).await;
        assert_eq!(value, json!({"error": "no answer within 2s"}));
        silent.abort();
    }

    /// Serves one HTTP/1.1 answer of `body` after reading the request,
    /// and returns the request's head.
    async fn answer_once(
        listener: tokio::net::TcpListener,
        status: &'static str,
        body: Vec<u8>,
    ) -> String {
        let (mut connection, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        while !request.ends_with(b"\r\n\r\n") {
            let mut byte = [0];
            connection.read_exact(&mut byte).await.unwrap();
            request.push(byte[0]);
        }
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = connection.write_all(head.as_bytes()).await;
        let _ = connection.write_all(&body).await;
        let _ = connection.shutdown().await;
        String::from_utf8(request).unwrap()
    }

    #[tokio::test]
    async fn an_oversized_metrics_answer_is_refused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let flood = tokio::spawn(answer_once(
            listener,
            "200 OK",
            vec![b'#'; MAX_METRICS_BYTES + 100],
        ));
        let client = client();
        let value = probe_cache(Some(client.as_ref()), &format!("http://{address}")).await;
        let error = value["error"].as_str().unwrap();
        assert!(
            error.starts_with("the exchange failed") && error.contains("length limit"),
            "{value}"
        );
        flood.abort();
    }

    #[tokio::test]
    async fn metrics_are_read_as_a_kinema_node_and_a_refusal_is_shown() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let text = b"kinema_edge_hit_ratio_memory 0.5\nkinema_edge_memory_bytes 7\n".to_vec();
        let edge = tokio::spawn(answer_once(listener, "200 OK", text));
        let client = client();
        let value = probe_cache(Some(client.as_ref()), &format!("http://{address}/")).await;
        assert_eq!(
            value,
            json!({"hit_ratio": 0.5, "memory_bytes": 7, "disk_bytes": null})
        );
        let request = edge.await.unwrap().to_ascii_lowercase();
        assert!(request.starts_with("get /metrics http/1.1"), "{request}");
        assert!(request.contains("via: 1.1 kinema"), "{request}");

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let edge = tokio::spawn(answer_once(listener, "403 Forbidden", Vec::new()));
        let value = probe_cache(Some(client.as_ref()), &format!("http://{address}")).await;
        assert_eq!(value, json!({"error": "answered 403 Forbidden"}));
        edge.await.unwrap();
    }

    #[tokio::test]
    async fn an_edge_url_that_is_no_url_is_named() {
        let client = client();
        let value = probe_cache(Some(client.as_ref()), "ftp://edge.example").await;
        let error = value["error"].as_str().unwrap();
        assert!(error.starts_with("unusable node url"), "{value}");
        let value = probe_cache(None, "http://edge.example").await;
        assert_eq!(
            value,
            json!({"error": "this origin has no client to reach edges"})
        );
    }
}
