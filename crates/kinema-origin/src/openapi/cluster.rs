//! The cluster's part of the admin API's document: `GET /api/cluster` and
//! `POST /api/purge`.

use serde::Serialize;
use utoipa::ToSchema;

use super::ErrorBody;

/// The cluster (`cluster_api.rs`): without a `[cluster]` section only
/// `{"cluster": false}`.
#[derive(Serialize, ToSchema)]
struct ClusterAnswer {
    cluster: bool,
    /// Live and dead members, by node id; absent without a cluster.
    nodes: Option<Vec<ClusterNode>>,
}

#[derive(Serialize, ToSchema)]
struct ClusterNode {
    node_id: String,
    role: ClusterRole,
    public_url: String,
    /// The region (or site) it gossiped; null for a member the membership
    /// does not list.
    region: Option<String>,
    /// True for the node that answered this request.
    this_node: bool,
    status: ClusterStatus,
    /// How busy its serving threads are, 0 to 1.
    load: f64,
    sessions: u64,
    /// Gossiped egress, bits per second; null for a dead member.
    egress_bps: Option<u64>,
    capacity_bps: u64,
    /// A live edge's cache figures, fetched from its `/metrics`; null for
    /// other nodes.
    cache: Option<EdgeCache>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum ClusterRole {
    Origin,
    Edge,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum ClusterStatus {
    Ok,
    Draining,
    Dead,
}

/// Either the figures or, for an edge that did not answer within 2 s,
/// `error`.
#[derive(Serialize, ToSchema)]
struct EdgeCache {
    /// Share of lookups served from memory or disk, 0 to 1.
    hit_ratio: Option<f64>,
    memory_bytes: Option<u64>,
    disk_bytes: Option<u64>,
    error: Option<String>,
}

#[utoipa::path(get, path = "/api/cluster", tag = "cluster",
    responses((status = 200, body = ClusterAnswer), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) fn cluster() {}

/// A purge (`purge.rs`): the edges' purge request.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PurgeRequest {
    /// A path starting with `/`, such as `/v/ID/` or one file's URL.
    #[schema(max_length = 2000, pattern = r"^/")]
    url: String,
    /// Every URL that begins with `url` (default false).
    prefix: Option<bool>,
    /// Mark stale (revalidated next time) rather than remove (default false).
    soft: Option<bool>,
}

/// What the purge did: at this origin, and, in a cluster, at each live edge.
#[derive(Serialize, ToSchema)]
struct PurgeAnswer {
    url: String,
    prefix: bool,
    soft: bool,
    /// Manifests of the videos named that this origin forgot.
    manifests: u64,
    /// Each live edge's outcome, by node id; absent without a cluster.
    nodes: Option<Vec<EdgePurge>>,
    /// How many of `nodes` have an `error`; absent without a cluster.
    failed: Option<u64>,
}

#[derive(Serialize, ToSchema)]
struct EdgePurge {
    node: String,
    /// The edge's public URL.
    edge: String,
    /// The edge's answer, absent when it was not reached.
    status: Option<u16>,
    /// What the edge purged (its answer's `purged`).
    purged: Option<u64>,
    /// Why this edge did not purge.
    error: Option<String>,
}

#[utoipa::path(post, path = "/api/purge", tag = "cluster",
    request_body(content = PurgeRequest, content_type = "application/json"),
    responses(
        (status = 200, body = PurgeAnswer), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 405, body = ErrorBody), (status = 413, body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub(super) fn purge() {}
