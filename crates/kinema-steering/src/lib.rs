//! Content steering for kinema's cluster: which node a viewer should fetch
//! a video from, told to players in the form they already follow — HLS
//! Content Steering (hls.js, Safari, Media3) and DASH-IF content steering
//! (dash.js).
//!
//! A pure library, called by the servers: no sockets, no clock (callers pass
//! `now`), no randomness (callers draw new session ids). What it does:
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
//! - [`log`]: a record per decision, classified as content miss or health
//!   miss, and counters for `/metrics`.
//!
//! What it deliberately is not: membership (that is `kinema-cluster`),
//! placement (`kinema-placement`), or HTTP (the servers route `/steer/{id}`,
//! set headers, and never answer 404, 410 or 429 for a known video, since
//! players stop steering for good on those).

pub mod dash;
pub mod hls;
pub mod log;
pub mod pathway;
pub mod rank;
pub mod session;
pub mod steer;

pub use log::{DecisionRecord, Miss, SteeringCounters};
pub use pathway::{BaseUrl, PathPrefix, Pathway, PathwayId};
pub use rank::{NodeStatus, NodeView, RankConfig, Ranking, Reason, Snapshot};
pub use session::{SessionId, SessionState};
pub use steer::{
    Decision, Protocol, Steering, SteeringConfig, SteeringManifest, SteeringQuery, SteeringRequest,
};

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
