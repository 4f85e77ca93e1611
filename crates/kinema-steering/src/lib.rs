//! Content steering for kinema's cluster: which node a viewer should fetch
//! a video from, told to players in the form they already follow — HLS
//! Content Steering (hls.js, Safari, Media3) and DASH-IF content steering
//! (dash.js).
//!
//! A pure library, called by the servers: no sockets, no clock (callers pass
//! `now`), no randomness (callers draw new session ids) — except its one
//! impure module, [`service`], which is how a server runs it. What it does:
//!
//! - [`rank`]: for a video and a membership [`Snapshot`], the ordered
//!   pathways — live healthy edges in the video's placement order (weighted
//!   rendezvous with bounded load, `kinema-placement`), overloaded edges
//!   demoted to the end, draining and dead ones left out, origins last —
//!   with the [`Reason`] the first is first;
//! - [`steer`]: one request's [`Decision`], keeping a session on its pathway
//!   while that node is healthy and not overloaded, and the steering
//!   manifests (JSON, `VERSION` 1, `TTL` 10–30 s, `RELOAD-URI` carrying
//!   [`session`] state signed with the cluster's keys, so any node continues
//!   any session);
//! - [`hls`] and [`dash`]: the stored multivariant playlist and MPD
//!   rewritten with one variant set / `BaseURL` per pathway, absolute on
//!   each node, keeping a signed-URL `/s/{token}` prefix in every path;
//! - [`network`]: among the video's nodes of similar load, the one that
//!   measured best for the viewer's client prefix first (`kinema-netq`),
//!   a small share of sessions exploring the runner-up;
//! - [`log`]: a record per decision, classified as content miss or health
//!   miss, and counters for `/metrics`;
//! - [`service`]: the impure part — a [`SteeringService`] over the
//!   membership's watch channel and a clock, with per-video rates, random
//!   session ids and ready HTTP responses (`/steer/{id}`, the `302` for
//!   clients that know no steering, the rewritten master or MPD).
//!
//! # How a server uses it
//!
//! ```
//! use std::time::SystemTime;
//! use kinema_cluster::{ClusterKey, ClusterKeys, Role};
//! use kinema_core::VideoId;
//! use kinema_steering::*;
//!
//! let keys = ClusterKeys::new(ClusterKey::new(1, vec![7; 32])?, None)?;
//! let steering = Steering::new(SteeringConfig::default(), keys);
//! // From the membership view: `Snapshot::from_view(&cluster.view())`.
//! let node = |id: &str, url: &str, role| NodeView {
//!     node_id: id.into(),
//!     role,
//!     base_url: BaseUrl::new(url).unwrap(),
//!     status: NodeStatus::Ok,
//!     load: 0.2,
//!     sessions: 3,
//!     capacity_bps: 1_000_000_000,
//!     egress_bps: 0,
//! };
//! let snapshot = Snapshot::new(vec![
//!     node("edge-a", "http://10.0.0.2:8080", Role::Edge),
//!     node("edge-b", "http://10.0.0.3:8080", Role::Edge),
//!     node("origin", "http://10.0.0.1:8080", Role::Origin),
//! ]);
//! let video = VideoId::new("clip")?;
//!
//! // GET /s/{token}/v/clip/master.m3u8: a new session, its pathways, and
//! // the stored master rewritten for them.
//! let query = SteeringQuery::parse("");
//! let decision = steering.decide(&SteeringRequest {
//!     video: &video,
//!     snapshot: &snapshot,
//!     rate: 0.0,
//!     query: &query,
//!     new_session: SessionId(0x5eed), // drawn at random by the server
//!     now: SystemTime::now(),
//! });
//! let prefix = PathPrefix::of_request_path("/s/TOKEN/v/clip/master.m3u8")?;
//! let stored = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000\ng1/v360/index.m3u8\n";
//! let master = steering.rewrite_master(stored, &decision, &prefix)?;
//! assert!(master.contains("#EXT-X-CONTENT-STEERING:SERVER-URI="));
//!
//! // GET /steer/clip?session=…&_HLS_pathway=…: the same session, renewed.
//! let record = decision.record();
//! println!("steering {record}"); // and SteeringCounters::count(&record)
//! let manifest = steering.manifest(&decision, Protocol::Hls).expect("a node serves");
//! assert_eq!(manifest.content_type, "application/json");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! What it deliberately is not: membership (that is `kinema-cluster`),
//! placement (`kinema-placement`), or HTTP (the servers route `/steer/{id}`,
//! set headers, and never answer 404, 410 or 429 for a known video, since
//! players stop steering for good on those).

pub mod dash;
pub mod hls;
pub mod log;
pub mod network;
pub mod pathway;
pub mod rank;
pub mod service;
pub mod session;
pub mod steer;
mod sustained;

pub use log::{DecisionRecord, Miss, SteeringCounters};
pub use network::{Measured, NetworkChoice};
pub use pathway::{BaseUrl, PathPrefix, Pathway, PathwayId};
pub use rank::{NodeStatus, NodeView, RankConfig, Ranking, Reason, Snapshot};
pub use service::{ManifestKind, NetworkSource, SteeringService};
pub use session::{SessionId, SessionState};
pub use steer::{
    Decision, Protocol, Steering, SteeringConfig, SteeringManifest, SteeringQuery, SteeringRequest,
};
pub use sustained::SUSTAINED_LOAD_HALF_LIFE;

/// What a caller can get wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SteeringError {
    /// A setting is out of range; the message says which and why.
    #[error("steering config: {0}")]
    Config(String),
    /// A node's public URL cannot serve as a pathway's base.
    #[error("base URL {0}")]
    BaseUrl(String),
    /// A request path prefix is unusable.
    #[error("path prefix {0}")]
    PathPrefix(String),
    /// A stored playlist or MPD cannot be rewritten; it is served as stored.
    #[error("cannot rewrite for steering: {0}")]
    Rewrite(String),
}

/// Where a stored playlist or MPD is rewritten to point.
#[derive(Debug, Clone, Copy)]
pub struct Rewrite<'a> {
    /// The directory of the request, token included (`/s/{token}/v/{id}/`).
    pub prefix: &'a PathPrefix,
    /// The decision's pathways, best first (at most [`rank::MAX_PATHWAYS`]).
    pub pathways: &'a [Pathway],
    /// The steering URL ([`Steering::steering_uri`]).
    pub server_uri: &'a str,
}

/// Longest steering URL written into a playlist or MPD.
pub const MAX_SERVER_URI_LEN: usize = 2048;

impl Rewrite<'_> {
    fn check(&self) -> Result<(), SteeringError> {
        if self.pathways.is_empty() || self.pathways.len() > rank::MAX_PATHWAYS {
            return Err(SteeringError::Rewrite(format!(
                "{} pathways; give 1 to {}",
                self.pathways.len(),
                rank::MAX_PATHWAYS
            )));
        }
        let uri = self.server_uri;
        if uri.is_empty()
            || uri.len() > MAX_SERVER_URI_LEN
            || uri
                .bytes()
                .any(|b| b == b'"' || b == b'<' || b == b'>' || !b.is_ascii_graphic())
        {
            return Err(SteeringError::Rewrite(
                "the steering URL is empty, longer than 2048 bytes, or holds a quote, angle bracket, space or control character".into(),
            ));
        }
        Ok(())
    }

    /// `relative` (a URI of the stored file) made absolute on `pathway`.
    fn absolute(&self, pathway: &Pathway, relative: &str) -> Result<String, SteeringError> {
        let scheme = relative
            .split_once(':')
            .is_some_and(|(before, _)| !before.contains('/'));
        if relative.is_empty() || relative.starts_with('/') || scheme {
            return Err(SteeringError::Rewrite(format!(
                "URI {relative:?} is not relative to the stored file"
            )));
        }
        if relative
            .bytes()
            .any(|b| b == b'"' || b == b'<' || b == b'>' || b == b'&' || !b.is_ascii_graphic())
        {
            return Err(SteeringError::Rewrite(format!(
                "URI {relative:?} holds a character it should not"
            )));
        }
        Ok(pathway
            .base_url
            .join(&format!("{}{relative}", self.prefix.as_str())))
    }
}
