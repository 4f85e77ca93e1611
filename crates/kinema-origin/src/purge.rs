//! `POST /api/purge` (admin scope): a purge at the origin, which reaches
//! every edge of its cluster.
//!
//! The body is the edge's purge request, `{"url": "/v/ID/", "prefix":
//! true, "soft": false}` (at most [`MAX_PURGE_BODY`] bytes, no other key,
//! `url` a path starting with `/`).
//!
//! What the origin itself purges: the manifests it holds of the videos the
//! URL names (`/v/{id}…`, or `/s/{token}/v/{id}…`; with `prefix`, every held
//! video whose `/v/{id}/` the URL begins or is begun by), so the next
//! request reads `manifest.json` from the store at once rather than after
//! `manifest_refresh`. It keeps every file it holds: the file cache is keyed
//! by content checksum and a file enters it only once its bytes match the
//! manifest's SHA-256, so no cached file can be stale; a republish or a
//! delete through the API already makes new URLs and forgets the manifest
//! (generations), so a purge there is for the edges' copies, and for a
//! library changed behind the origin's back.
//!
//! Then, in a cluster, the purge is sent on to every edge of the membership
//! view that is not dead (`POST /_kinema/purge` at its public URL with the
//! edges' purge token, `[cluster] purge_token`, and `Kinema-Purge-Scope:
//! node`, so no edge sends it on again: one hop), by kinema-http's
//! `node_client::send_purge_on`, the edges' own way of sending a purge on,
//! through the wiring's [`NodeClient`] (the edge's client: `https://` edges
//! included). The origin purges before it sends, so an edge that misses
//! right after its purge reads the new manifest. The answer lists each
//! edge's outcome; an edge down at that moment is listed with its error
//! and keeps its copies.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use kinema_auth::Scope;
use kinema_core::VideoId;
use kinema_http::node_client::{NodeClient, PurgeTarget, send_purge_on};
use kinema_http::{RequestBody, ResponseBody, respond};
use kinema_steering::{NodeStatus, SteeringService};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::access::Access;
use crate::catalog::Catalog;

pub const PATH: &str = "/api/purge";
/// Largest purge request body, bytes.
pub const MAX_PURGE_BODY: usize = 4096;

type HttpResponse = http::Response<ResponseBody>;

/// How the origin reaches other nodes of its cluster: the client (the
/// edge's, through [`NodeClient`]) and the edges' purge token.
#[derive(Clone)]
pub struct ClusterClient {
    client: Arc<dyn NodeClient>,
    purge_token: Option<String>,
}

impl ClusterClient {
    /// `purge_token` is the edges' (`--purge-token` on each); without one
    /// a purge at the origin reaches no edge, and says so per edge.
    pub fn new(client: Arc<dyn NodeClient>, purge_token: Option<String>) -> Self {
        Self {
            client,
            purge_token: purge_token.filter(|token| !token.is_empty()),
        }
    }

    pub(crate) fn client(&self) -> &dyn NodeClient {
        self.client.as_ref()
    }
}

impl std::fmt::Debug for ClusterClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself.
        f.debug_struct("ClusterClient")
            .field("client", &self.client)
            .field("purge_token", &self.purge_token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// A purge, as the edges' purge API takes it.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct PurgeRequest {
    url: String,
    #[serde(default)]
    prefix: bool,
    #[serde(default)]
    soft: bool,
}

/// What an answer needs of the origin.
pub(crate) struct PurgeParts<'a> {
    pub access: &'a Access,
    pub catalog: &'a Catalog,
    pub steering: Option<&'a SteeringService>,
    pub cluster: Option<&'a ClusterClient>,
}

/// The answer to a request for [`PATH`].
pub(crate) async fn answer(
    parts: PurgeParts<'_>,
    request: http::Request<RequestBody>,
) -> HttpResponse {
    let (head, body) = request.into_parts();
    let scope = match parts.access.authorize_api(&head.method, &head.headers) {
        Ok(scope) => scope,
        Err(refusal) => return *refusal,
    };
    if !scope.allows(Scope::Admin) {
        return error(
            StatusCode::FORBIDDEN,
            "insufficient_scope: a purge needs an admin token",
        );
    }
    if head.method != Method::POST {
        let mut response = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let body = match read_body(body).await {
        Ok(body) => body,
        Err(refusal) => return *refusal,
    };
    let purge = match serde_json::from_slice::<PurgeRequest>(&body) {
        Ok(purge) if purge.url.starts_with('/') => purge,
        Ok(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "purge url must be a path starting with /",
            );
        }
        Err(problem) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "purge request must be JSON like {{\"url\": \"/v/ID/\", \"prefix\": true, \"soft\": false}}: {problem}"
                ),
            );
        }
    };
    let manifests = purge_here(parts.catalog, &purge).await;
    let mut answer = json!({
        "url": purge.url,
        "prefix": purge.prefix,
        "soft": purge.soft,
        "manifests": manifests,
    });
    if let Some(steering) = parts.steering {
        let nodes = send_to_edges(steering, parts.cluster, &purge).await;
        let failed = nodes
            .iter()
            .filter(|node| node.get("error").is_some())
            .count();
        answer["nodes"] = Value::Array(nodes);
        answer["failed"] = failed.into();
    }
    respond::json(StatusCode::OK, &answer, no_store())
}

/// Forgets the manifests of the videos `purge` names; how many.
async fn purge_here(catalog: &Catalog, purge: &PurgeRequest) -> usize {
    let url = without_token(&purge.url);
    let mut ids = catalog.known_ids();
    if let Some(named) = named_video(url) {
        ids.push(named.to_string());
    }
    ids.sort();
    ids.dedup();
    let mut count = 0;
    for id in ids {
        if !names_video(url, purge.prefix, &id) {
            continue;
        }
        if let Ok(id) = VideoId::new(&id) {
            catalog.invalidate(&id).await;
            count += 1;
        }
    }
    tracing::info!(url = %purge.url, prefix = purge.prefix, manifests = count, "purge at the origin");
    count
}

/// A signed URL's path without its `/s/{token}` prefix.
fn without_token(url: &str) -> &str {
    match url.strip_prefix("/s/") {
        Some(rest) => rest.find('/').map_or("", |slash| &rest[slash..]),
        None => url,
    }
}

/// The video id of a `/v/{id}` or `/v/{id}/…` path.
fn named_video(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("/v/")?;
    let id = rest.split('/').next().unwrap_or("");
    (!id.is_empty()).then_some(id)
}

/// Whether a purge of `url` (a prefix or not) covers video `id`.
fn names_video(url: &str, prefix: bool, id: &str) -> bool {
    let root = format!("/v/{id}/");
    if url.starts_with(&root) || url == &root[..root.len() - 1] {
        return true;
    }
    prefix && root.starts_with(url)
}

/// Sends `purge` to every edge of the membership view that is not dead;
/// each edge's outcome, ordered by node id.
async fn send_to_edges(
    steering: &SteeringService,
    cluster: Option<&ClusterClient>,
    purge: &PurgeRequest,
) -> Vec<Value> {
    let snapshot = steering.snapshot();
    let targets: Vec<PurgeTarget> = snapshot
        .nodes()
        .iter()
        .filter(|node| node.role.as_str() == "edge" && node.status != NodeStatus::Dead)
        .map(|node| PurgeTarget {
            node: node.node_id.to_string(),
            shown_as: node.base_url.as_str().to_string(),
            base_url: node.base_url.as_str().to_string(),
        })
        .collect();
    let token = cluster.and_then(|cluster| cluster.purge_token.as_deref());
    let (Some(cluster), Some(token)) = (cluster, token) else {
        let why = "not sent: the origin has no [cluster] purge_token (the edges' --purge-token)";
        return targets
            .into_iter()
            .map(|target| json!({"node": target.node, "edge": target.shown_as, "error": why}))
            .collect();
    };
    let body = Bytes::from(serde_json::to_vec(purge).unwrap_or_default());
    send_purge_on(cluster.client(), token, targets, body).await
}

async fn read_body(mut body: RequestBody) -> Result<Bytes, Box<HttpResponse>> {
    let mut collected = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk =
            chunk.map_err(|_| Box::new(error(StatusCode::BAD_REQUEST, "the body ended early")))?;
        if collected.len() + chunk.len() > MAX_PURGE_BODY {
            return Err(Box::new(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the purge request is larger than {MAX_PURGE_BODY} bytes"),
            )));
        }
        collected.extend_from_slice(&chunk);
    }
    Ok(collected.freeze())
}

fn error(status: StatusCode, message: &str) -> HttpResponse {
    respond::json_error(status, message, HeaderMap::new())
}

fn no_store() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_purge_names_the_videos_under_its_url() {
        assert!(names_video("/v/clip/", true, "clip"));
        assert!(names_video("/v/clip/v180/1.m4s", false, "clip"));
        assert!(names_video("/v/clip", false, "clip"));
        assert!(!names_video("/v/clip", false, "clipper"));
        // A prefix short of a whole id covers every id it begins.
        assert!(names_video("/v/cl", true, "clip"));
        assert!(names_video("/v/", true, "clip"));
        assert!(names_video("/", true, "clip"));
        assert!(!names_video("/v/cl", false, "clip"));
        assert!(!names_video("/v/other/", true, "clip"));
        assert!(!names_video("/ui/", true, "clip"));
        assert_eq!(without_token("/s/abc.def/v/clip/1.m4s"), "/v/clip/1.m4s");
        assert_eq!(without_token("/s/abc"), "");
        assert_eq!(without_token("/v/clip/"), "/v/clip/");
        assert_eq!(named_video("/v/clip/master.m3u8"), Some("clip"));
        assert_eq!(named_video("/v/"), None);
        assert_eq!(named_video("/ui/"), None);
    }
}
