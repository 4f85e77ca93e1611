//! A steering decision for one request, and the steering manifests that
//! carry it (HLS Content Steering, draft-pantos-hls-rfc8216bis §4.4.6.6 and
//! Apple's steering specification; DASH-IF CTS 001 content steering).
//!
//! Every request gets an answer: a missing, malformed, expired or forged
//! session state starts a new session, an oversized query is read as empty.
//! Players stop steering for good on some statuses (hls.js after a 410 or a
//! 429, dash.js after a 404 or 410), so the endpoint built on this never
//! answers those for a known video.
//!
//! Stickiness: a session stays on the pathway its state names while that
//! node is a live edge in good health and not overloaded for seconds (its
//! sustained load, see `sustained`; its cache holds what the viewer
//! watches); otherwise it moves, and the decision says why.

use std::time::{Duration, SystemTime};

use kinema_cluster::{ClusterKeys, Role};
use kinema_core::VideoId;
use percent_encoding::percent_decode_str;
use serde::Serialize;

use crate::log::{DecisionRecord, Miss};
use crate::pathway::{BaseUrl, PathPrefix, Pathway, PathwayId};
use crate::rank::{NodeStatus, RankConfig, Reason, Snapshot};
use crate::session::{SessionId, SessionState, unix_seconds};
use crate::{Rewrite, SteeringError};

/// Longest query string read; a longer one is read as empty.
pub const MAX_QUERY_LEN: usize = 2048;
/// The content type of a steering manifest (JSON, in both specifications).
pub const CONTENT_TYPE: &str = "application/json";
/// The TTLs a manifest may carry: short enough that a dead node's viewers
/// move within one TTL, long enough that reloads stay cheap.
pub const MIN_TTL: Duration = Duration::from_secs(10);
pub const MAX_TTL: Duration = Duration::from_secs(30);

/// Which player family a steering request comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Hls,
    Dash,
}

/// What a steering request's query says. Nothing in it is trusted but the
/// signed state, and only once verified.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SteeringQuery {
    /// `session`: the encoded state, unverified.
    pub session: Option<String>,
    /// The pathway the player reports it is on: `_HLS_pathway`, or the last
    /// of dash.js's quoted list in `_DASH_pathway`; only if well formed.
    pub reported: Option<PathwayId>,
    /// `_HLS_throughput` / `_DASH_throughput`, bits per second.
    pub throughput: Option<u64>,
    /// `proto=dash` (written by [`Steering::steering_uri`]) or any
    /// `_DASH_` parameter: the player is a DASH player.
    pub protocol: Option<Protocol>,
}

impl SteeringQuery {
    /// Reads a query string (without the `?`). Unknown, repeated-beyond-the-
    /// first and malformed parameters are ignored; a query longer than
    /// [`MAX_QUERY_LEN`] is read as empty.
    pub fn parse(query: &str) -> Self {
        let mut parsed = Self::default();
        if query.len() > MAX_QUERY_LEN {
            return parsed;
        }
        for pair in query.split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let Ok(value) = percent_decode_str(value).decode_utf8() else {
                continue;
            };
            match name {
                "session" if parsed.session.is_none() => parsed.session = Some(value.into()),
                "_HLS_pathway" if parsed.reported.is_none() => {
                    parsed.reported = PathwayId::parse(&value);
                    parsed.protocol.get_or_insert(Protocol::Hls);
                }
                "_DASH_pathway" if parsed.reported.is_none() => {
                    let list = value.trim_matches('"');
                    parsed.reported = list.rsplit(',').next().and_then(PathwayId::parse);
                    parsed.protocol = Some(Protocol::Dash);
                }
                "_HLS_throughput" | "_DASH_throughput" if parsed.throughput.is_none() => {
                    let last = value.trim_matches('"').rsplit(',').next().unwrap_or("");
                    parsed.throughput = (last.len() <= 20).then(|| last.parse().ok()).flatten();
                }
                "proto" => match value.as_ref() {
                    "dash" => parsed.protocol = Some(Protocol::Dash),
                    "hls" => parsed.protocol = Some(Protocol::Hls),
                    _ => {}
                },
                _ => {}
            }
        }
        parsed
    }
}

/// How steering answers.
#[derive(Debug, Clone)]
pub struct SteeringConfig {
    pub rank: RankConfig,
    ttl: Duration,
    session_lifetime: Duration,
}

impl SteeringConfig {
    /// `ttl` within 10–30 s; `session_lifetime` at least two TTLs and at
    /// most a day (a state is renewed at every reload, so this is how long
    /// a player may go without reloading and keep its session).
    pub fn new(
        rank: RankConfig,
        ttl: Duration,
        session_lifetime: Duration,
    ) -> Result<Self, SteeringError> {
        if ttl < MIN_TTL || ttl > MAX_TTL || ttl.subsec_nanos() != 0 {
            return Err(SteeringError::Config(format!(
                "steering TTL {ttl:?} must be whole seconds from 10 to 30"
            )));
        }
        if session_lifetime < ttl * 2 || session_lifetime > crate::session::MAX_LIFETIME {
            return Err(SteeringError::Config(format!(
                "session lifetime {session_lifetime:?} must be from two TTLs to 24 h"
            )));
        }
        Ok(Self {
            rank,
            ttl,
            session_lifetime,
        })
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

/// TTL 10 s, sessions good for 10 minutes without a reload.
impl Default for SteeringConfig {
    fn default() -> Self {
        Self {
            rank: RankConfig::default(),
            ttl: MIN_TTL,
            session_lifetime: Duration::from_secs(600),
        }
    }
}

/// One request to steer.
#[derive(Debug, Clone, Copy)]
pub struct SteeringRequest<'a> {
    pub video: &'a VideoId,
    pub snapshot: &'a Snapshot,
    /// The video's recent request rate per second (its `CrowdRate`).
    pub rate: f64,
    pub query: &'a SteeringQuery,
    /// The id a new session gets (the caller draws it at random).
    pub new_session: SessionId,
    pub now: SystemTime,
}

/// What was decided for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub video: VideoId,
    pub session: SessionId,
    /// Whether a valid state continued an existing session.
    pub resumed: bool,
    /// The pathway the player says it is on, and the throughput it
    /// measured (bits/s), as it reported them: for the log, and for
    /// network-aware ranking to come.
    pub reported: Option<PathwayId>,
    pub throughput_bps: Option<u64>,
    /// Best first; the first is the session's pathway. Empty only when the
    /// snapshot holds no node that can serve.
    pub pathways: Vec<Pathway>,
    /// The pathway the session had (from its verified state), if any.
    pub previous: Option<PathwayId>,
    pub reason: Reason,
    pub miss: Miss,
    /// The state to hand back, if a pathway was chosen.
    pub state: Option<SessionState>,
}

impl Decision {
    pub fn chosen(&self) -> Option<&Pathway> {
        self.pathways.first()
    }

    /// Where the next steering request should go: the best pathway other
    /// than the session's own (a steering server that dies with the node it
    /// steers away from would leave the player unsteered), else its own.
    pub fn steering_base(&self) -> Option<&BaseUrl> {
        self.pathways
            .get(1)
            .or(self.pathways.first())
            .map(|pathway| &pathway.base_url)
    }

    /// Where a client that knows no steering is sent (`302`): `path` (with
    /// its query, starting with `/`) on the chosen node; `None` when nothing
    /// was chosen, or `path` does not start with `/` or holds a space or
    /// control character.
    pub fn redirect(&self, path: &str) -> Option<String> {
        let chosen = self.chosen()?;
        let plain = path.starts_with('/') && path.bytes().all(|b| b.is_ascii_graphic());
        plain.then(|| chosen.base_url.join(path))
    }

    /// The decision as logged and counted.
    pub fn record(&self) -> DecisionRecord {
        DecisionRecord {
            video: self.video.clone(),
            session: self.session,
            chosen: self.chosen().map(|p| (p.id.clone(), p.node_id.clone())),
            previous: self.previous.clone(),
            reason: self.reason,
            miss: self.miss,
            resumed: self.resumed,
            reported: self.reported.clone(),
            throughput_bps: self.throughput_bps,
        }
    }
}

/// A steering manifest, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SteeringManifest {
    pub body: Vec<u8>,
    pub content_type: &'static str,
}

#[derive(Serialize)]
struct ManifestJson<'a> {
    #[serde(rename = "VERSION")]
    version: u8,
    #[serde(rename = "TTL")]
    ttl: u64,
    #[serde(rename = "RELOAD-URI")]
    reload_uri: &'a str,
    #[serde(rename = "PATHWAY-PRIORITY")]
    pathway_priority: &'a [&'a str],
    /// DASH only: the name the DASH-IF community review draft gave the list
    /// (dash.js 5 and DASH-IF CTS 001 read `PATHWAY-PRIORITY`; some players
    /// read this one), so both find it.
    #[serde(
        rename = "SERVICE-LOCATION-PRIORITY",
        skip_serializing_if = "Option::is_none"
    )]
    service_location_priority: Option<&'a [&'a str]>,
}

/// Steering for one node: its configuration and the cluster's keys.
#[derive(Debug, Clone)]
pub struct Steering {
    config: SteeringConfig,
    keys: ClusterKeys,
}

impl Steering {
    pub fn new(config: SteeringConfig, keys: ClusterKeys) -> Self {
        Self { config, keys }
    }

    pub fn config(&self) -> &SteeringConfig {
        &self.config
    }

    /// Decides the pathways of one request (see the module doc).
    pub fn decide(&self, request: &SteeringRequest<'_>) -> Decision {
        self.decide_measured(request, None)
    }

    /// [`Steering::decide`], a new session on the video's placement head
    /// or a replica going instead to the one of the video's nodes of
    /// similar load that `measured` says measured best for the viewer
    /// ([`crate::network`]); the reason is then [`Reason::Network`].
    pub fn decide_measured(
        &self,
        request: &SteeringRequest<'_>,
        measured: Option<&crate::network::Measured<'_>>,
    ) -> Decision {
        let rank = &self.config.rank;
        let state = request.query.session.as_deref().and_then(|encoded| {
            SessionState::verify(encoded, &self.keys, request.video, request.now)
        });
        let session = state.as_ref().map_or(request.new_session, |s| s.session);
        let previous = state.as_ref().map(|s| s.pathway.clone());
        let ranking = rank.rank(request.video, request.snapshot, request.rate, session);
        let mut pathways = ranking.pathways;
        let mut reason = ranking.reason;
        if let Some(measured) = measured
            && matches!(reason, Reason::Placement | Reason::Replica)
            && crate::network::order_by_network(
                &mut pathways,
                ranking.serving,
                request.snapshot,
                session,
                measured,
            )
        {
            reason = Reason::Network;
        }
        // A verified pathway, or else the one the player says it is on.
        let current = previous.as_ref().or(request.query.reported.as_ref());
        let current_node = current.and_then(|id| request.snapshot.by_pathway(id));
        let keeps = current_node.is_some_and(|node| {
            node.status == NodeStatus::Ok
                && match node.role {
                    Role::Edge => !rank.holds_overload(node),
                    Role::Origin => reason == Reason::OriginOnly,
                }
        });
        if keeps && let Some(node) = current_node {
            let id = PathwayId::of_node(&node.node_id);
            pathways.retain(|p| p.id != id);
            pathways.insert(0, crate::rank::pathway(node));
            pathways = crate::rank::bounded(pathways, rank.max_edges, rank.max_origins);
            if node.role == Role::Edge {
                reason = Reason::Sticky;
            }
        } else if previous.is_some() {
            // The session had a pathway it cannot keep: why it moves.
            match current_node {
                Some(node) if node.status == NodeStatus::Ok && node.role == Role::Edge => {
                    reason = Reason::Load;
                }
                Some(node) if node.role == Role::Origin && node.status == NodeStatus::Ok => {}
                _ if reason != Reason::OriginOnly => reason = Reason::Health,
                _ => {}
            }
        }
        let miss = match reason {
            Reason::Placement | Reason::Replica | Reason::Sticky | Reason::Network => Miss::None,
            Reason::Load => Miss::Content,
            Reason::Health => Miss::Health,
            Reason::OriginOnly if ranking.edges_known => Miss::Health,
            Reason::OriginOnly => Miss::None,
        };
        let issued_at = unix_seconds(request.now);
        let state = pathways.first().map(|chosen| SessionState {
            video: request.video.clone(),
            session,
            pathway: chosen.id.clone(),
            issued_at,
            expires_at: issued_at.saturating_add(self.config.session_lifetime.as_secs()),
        });
        Decision {
            video: request.video.clone(),
            session,
            resumed: previous.is_some(),
            reported: request.query.reported.clone(),
            throughput_bps: request.query.throughput,
            pathways,
            previous,
            reason,
            miss,
            state,
        }
    }

    /// The URL of the decision's next steering request:
    /// `{base}/steer/{video}?session={state}` (plus `&proto=dash` for DASH),
    /// on [`Decision::steering_base`]. `None` when nothing was chosen.
    pub fn steering_uri(&self, decision: &Decision, protocol: Protocol) -> Option<String> {
        let state = decision.state.as_ref()?;
        let base = decision.steering_base()?;
        let mut uri = base.join(&format!(
            "/steer/{}?session={}",
            decision.video,
            state.encode(&self.keys)
        ));
        if protocol == Protocol::Dash {
            uri.push_str("&proto=dash");
        }
        Some(uri)
    }

    /// The stored multivariant playlist rewritten for `decision`, requested
    /// under `prefix` ([`crate::hls::rewrite_master`]).
    pub fn rewrite_master(
        &self,
        stored: &str,
        decision: &Decision,
        prefix: &PathPrefix,
    ) -> Result<String, SteeringError> {
        self.rewrite(
            stored,
            decision,
            prefix,
            Protocol::Hls,
            crate::hls::rewrite_master,
        )
    }

    /// The stored MPD rewritten for `decision`, requested under `prefix`
    /// ([`crate::dash::rewrite_mpd`]).
    pub fn rewrite_mpd(
        &self,
        stored: &str,
        decision: &Decision,
        prefix: &PathPrefix,
    ) -> Result<String, SteeringError> {
        self.rewrite(
            stored,
            decision,
            prefix,
            Protocol::Dash,
            crate::dash::rewrite_mpd,
        )
    }

    /// `stored` rewritten by `rewriter` for `decision`'s pathways, with the
    /// steering URL of `protocol`.
    fn rewrite(
        &self,
        stored: &str,
        decision: &Decision,
        prefix: &PathPrefix,
        protocol: Protocol,
        rewriter: fn(&str, &Rewrite<'_>) -> Result<String, SteeringError>,
    ) -> Result<String, SteeringError> {
        let server_uri = self
            .steering_uri(decision, protocol)
            .ok_or_else(|| SteeringError::Rewrite("no pathway can serve".into()))?;
        rewriter(
            stored,
            &Rewrite {
                prefix,
                pathways: &decision.pathways,
                server_uri: &server_uri,
            },
        )
    }

    /// The steering manifest of `decision` for `protocol`: `VERSION` 1, the
    /// TTL, `RELOAD-URI` with the renewed state, and the pathways in order
    /// (`PATHWAY-PRIORITY`; for DASH also `SERVICE-LOCATION-PRIORITY`).
    /// `None` when nothing was chosen: both specifications require a
    /// non-empty list, so the caller answers 503 with a `Retry-After`.
    ///
    /// Each answer is for one session: send it with `Cache-Control:
    /// no-store`. Which protocol: [`SteeringQuery::protocol`], HLS when it
    /// says nothing (hls.js always sends `_HLS_pathway`).
    pub fn manifest(&self, decision: &Decision, protocol: Protocol) -> Option<SteeringManifest> {
        let reload_uri = self.steering_uri(decision, protocol)?;
        let priority: Vec<&str> = decision.pathways.iter().map(|p| p.id.as_str()).collect();
        let json = ManifestJson {
            version: 1,
            ttl: self.config.ttl.as_secs(),
            reload_uri: &reload_uri,
            pathway_priority: &priority,
            service_location_priority: (protocol == Protocol::Dash).then_some(&priority[..]),
        };
        let body = serde_json::to_vec(&json).expect("a manifest of strings and numbers serialises");
        Some(SteeringManifest {
            body,
            content_type: CONTENT_TYPE,
        })
    }
}

#[cfg(test)]
#[path = "steer_tests.rs"]
mod tests;
