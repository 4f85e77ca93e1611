//! The admin surface: the metrics page, the purge API (`PURGE` method and
//! JSON endpoint) and the bearer token that guards it.
//!
//! In a cluster a purge reaches every edge: the edge that receives it
//! purges its own cache, then sends it on to every other live edge of its
//! membership view (`POST /_kinema/purge` with the same bearer token,
//! marked `Kinema-Purge-Scope: node`, through kinema-http's
//! `node_client::send_purge_on`, as the origin's purge is), and answers
//! with each node's outcome. A purge marked `node` is never sent on, so a purge travels one
//! hop and cannot loop. An edge down at that moment misses it (see
//! ARCHITECTURE.md for what it then serves).

use kinema_http::node_client::{PurgeTarget, send_purge_on};

use super::*;

/// The header that asks for a purge of this node only: what a purge sent
/// on to another edge carries, so it is not sent on again.
pub use kinema_http::node_client::PURGE_SCOPE;

/// Where a purge applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PurgeScope {
    /// This edge and every other live edge of its cluster.
    Cluster,
    /// This edge only (`Kinema-Purge-Scope: node`).
    Node,
}

impl PurgeScope {
    fn of(headers: &HeaderMap) -> Self {
        let node = headers
            .get(PURGE_SCOPE)
            .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"node"));
        if node { Self::Node } else { Self::Cluster }
    }
}

impl Edge {
    pub(super) fn admin(&self, path: &str) -> Option<Response<ResponseBody>> {
        match path {
            "/_kinema/metrics" | "/metrics" => {
                let mut text = self.metrics.render(Gauges {
                    memory_objects: self.store.memory_objects(),
                    memory_bytes: self.store.memory_bytes(),
                    memory_files: crate::stored::shared_files() as u64,
                    memory_files_cap: crate::stored::shared_file_cap() as u64,
                    origins_healthy: self.upstreams.healthy_count(),
                });
                if let Some(cluster) = &self.cluster {
                    text.push_str(&cluster_metrics(cluster));
                }
                text.push_str(&self.upstreams.metrics_text("kinema_edge"));
                if let Some(network) = &self.network {
                    text.push_str(&network.render("kinema_edge_"));
                }
                let mut response = Response::new(ResponseBody::Full(Bytes::from(text)));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4"),
                );
                response
                    .headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                Some(response)
            }
            "/_kinema/healthz" => Some(plain(StatusCode::OK, "ok\n")),
            _ => None,
        }
    }

    fn authorised(&self, headers: &HeaderMap) -> Result<(), Box<Response<ResponseBody>>> {
        let Some(token) = &self.settings.purge_token else {
            return Err(Box::new(plain(
                StatusCode::FORBIDDEN,
                "purge is disabled; set purge_token in the [edge] config\n",
            )));
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .unwrap_or("");
        if bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
            Ok(())
        } else {
            let mut response = plain(StatusCode::UNAUTHORIZED, "missing or wrong bearer token\n");
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            Err(Box::new(response))
        }
    }

    /// `PURGE /path` (hard), `PURGE /prefix/*` (every key under it);
    /// `Kinema-Purge: soft` marks stale instead of removing.
    pub(super) async fn purge_method(
        &self,
        parts: &http::request::Parts,
    ) -> Response<ResponseBody> {
        if let Err(response) = self.authorised(&parts.headers) {
            return *response;
        }
        let target = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let soft = parts
            .headers
            .get("kinema-purge")
            .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"soft"));
        let (target, prefix) = match target.strip_suffix('*') {
            Some(prefix) => (prefix.to_string(), true),
            None => (target, false),
        };
        let purge = PurgeRequest {
            url: target,
            prefix,
            soft,
        };
        self.purge(purge, PurgeScope::of(&parts.headers)).await
    }

    /// `POST /_kinema/purge` with `{"url": "/v/ID/", "prefix": true,
    /// "soft": false}`.
    pub(super) async fn purge_api(&self, request: Request<RequestBody>) -> Response<ResponseBody> {
        let (parts, body) = request.into_parts();
        if let Err(response) = self.authorised(&parts.headers) {
            return *response;
        }
        let mut collected = Vec::new();
        let mut body = body;
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(chunk) if collected.len() + chunk.len() <= MAX_PURGE_BODY => {
                    collected.extend_from_slice(&chunk)
                }
                Ok(_) => return plain(StatusCode::PAYLOAD_TOO_LARGE, "purge request too large\n"),
                Err(_) => return plain(StatusCode::BAD_REQUEST, "purge request body unreadable\n"),
            }
        }
        match serde_json::from_slice::<PurgeRequest>(&collected) {
            Ok(purge) if purge.url.starts_with('/') => {
                self.purge(purge, PurgeScope::of(&parts.headers)).await
            }
            Ok(_) => plain(
                StatusCode::BAD_REQUEST,
                "purge url must be a path starting with /\n",
            ),
            Err(error) => plain(
                StatusCode::BAD_REQUEST,
                &format!(
                    "purge request must be JSON like {{\"url\": \"/v/ID/\", \"prefix\": true, \"soft\": false}}: {error}\n"
                ),
            ),
        }
    }

    async fn purge(&self, purge: PurgeRequest, scope: PurgeScope) -> Response<ResponseBody> {
        let count = self.purge_here(&purge).await;
        let mut body = serde_json::json!({
            "purged": count,
            "url": purge.url,
            "prefix": purge.prefix,
            "soft": purge.soft,
        });
        if scope == PurgeScope::Cluster && self.cluster.is_some() {
            let nodes = self.fan_out(&purge).await;
            let failed = nodes
                .iter()
                .filter(|node| node.get("error").is_some())
                .count();
            body["nodes"] = serde_json::Value::Array(nodes);
            body["failed"] = failed.into();
        }
        let mut response = Response::new(ResponseBody::Full(Bytes::from(format!("{body}\n"))));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }

    /// Sends `purge` on to every other live edge of the cluster
    /// ([`kinema_http::node_client::send_purge_on`]); each node's outcome,
    /// by node id.
    async fn fan_out(&self, purge: &PurgeRequest) -> Vec<serde_json::Value> {
        let Some(token) = &self.settings.purge_token else {
            return Vec::new();
        };
        let targets: Vec<PurgeTarget> = self
            .upstreams
            .purge_peers()
            .into_iter()
            .map(|(node, upstream)| PurgeTarget {
                node,
                shown_as: upstream.authority().to_string(),
                base_url: upstream.base_url(),
            })
            .collect();
        let body = Bytes::from(serde_json::to_vec(purge).unwrap_or_default());
        let outcomes = send_purge_on(self.client.as_ref(), token, targets, body).await;
        for outcome in &outcomes {
            Metrics::bump(&self.metrics.purge_fanout_sent);
            if outcome.get("error").is_some() {
                Metrics::bump(&self.metrics.purge_fanout_failed);
            }
        }
        outcomes
    }

    /// Purges this edge's cache; how many entries went.
    async fn purge_here(&self, purge: &PurgeRequest) -> usize {
        Metrics::bump(&self.metrics.purges);
        // A URL names its unsigned copy and the copy shared by every
        // verified signed URL of the same path.
        let mut count = 0;
        for target in [
            key::cache_key(&purge.url),
            key::signed_cache_key(&purge.url),
        ] {
            count += match (purge.soft, purge.prefix) {
                (true, prefix) => self.store.invalidate(&target, prefix).await,
                (false, true) => self.store.remove_prefix(&target).await,
                (false, false) => self.store.remove(&target).await,
            };
            // The slices of a sliced object (keys `URL#slice=N`) go with it;
            // a prefix purge already matched them.
            if !purge.prefix {
                let slices = slice::slice_prefix(&target);
                count += if purge.soft {
                    self.store.invalidate(&slices, true).await
                } else {
                    self.store.remove_prefix(&slices).await
                };
            }
            if !purge.soft {
                let forgotten: Vec<Arc<String>> = self
                    .sliced_objects
                    .iter()
                    .filter(|(key, _)| {
                        if purge.prefix {
                            key.starts_with(&target)
                        } else {
                            key.as_str() == target
                        }
                    })
                    .map(|(key, _)| key)
                    .collect();
                for key in forgotten {
                    self.sliced_objects.invalidate(key.as_str());
                }
            }
        }
        count
    }
}

#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct PurgeRequest {
    url: String,
    #[serde(default)]
    prefix: bool,
    #[serde(default)]
    soft: bool,
}

/// The membership counters (`kinema_edge_cluster_…`) and the steering
/// counters (`kinema_edge_steering_…`) of an edge in a cluster, as
/// exposition text to append to the hand-written page.
fn cluster_metrics(cluster: &ClusterPart) -> String {
    let mut text = kinema_cluster::render("kinema_edge", cluster.gossip.clone());
    let mut registry = prometheus_client::registry::Registry::with_prefix("kinema_edge");
    cluster.steering.register(&mut registry);
    // Encoding into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode_registry(&mut text, &registry);
    text
}
