//! Upstream selection, the phase between a cache miss and the fetch that
//! fills it: which servers a request goes to, in which order, and what a
//! failure of one of them teaches the selector.
//!
//! [`UpstreamSelector`] is the seam. [`RoundRobin`] is today's one
//! implementation (the `--origin` URLs in turn, healthy ones first, each
//! checked periodically); a cluster's selector ranks the nodes of a video's
//! placement order before the origin, which is why a selector is told the
//! video and the object key, not only the path. The selector only chooses:
//! sending, timeouts and retries on the next upstream are the
//! [`crate::origin::OriginClient`]'s.

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use http::uri::{Authority, Scheme};
use http::{StatusCode, Uri};
use tokio_util::sync::CancellationToken;

use crate::origin::OriginClient;

/// One server a miss can be fetched from: an origin, or (in a cluster)
/// another edge. Cheap to clone (shared bytes).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Upstream {
    scheme: Scheme,
    authority: Authority,
    /// Another edge of the cluster rather than an origin: any 5xx it
    /// answers without `Retry-After` sends the fetch on to the next
    /// upstream (see [`crate::origin::OriginClient::send`]).
    peer: bool,
}

impl Upstream {
    /// A base URL such as `http://127.0.0.1:8080` or
    /// `https://origin.example`, without a path.
    pub fn parse(url: &str) -> Result<Self, String> {
        let uri: Uri = url
            .parse()
            .map_err(|error| format!("origin {url:?} is not a URL: {error}"))?;
        let scheme = uri.scheme().cloned().unwrap_or(Scheme::HTTP);
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
            return Err(format!(
                "origin {url:?}: only http:// and https:// origins are supported"
            ));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| format!("origin {url:?} has no host; use http://HOST:PORT"))?;
        if uri.path() != "/" && !uri.path().is_empty() {
            return Err(format!("origin {url:?} must not have a path"));
        }
        Ok(Self {
            scheme,
            authority,
            peer: false,
        })
    }

    /// Another edge of the cluster at `url` (its public base URL), under
    /// the same rules as an origin's URL.
    pub fn peer(url: &str) -> Result<Self, String> {
        Ok(Self {
            peer: true,
            ..Self::parse(url)?
        })
    }

    /// Whether this is another edge rather than an origin.
    pub fn is_peer(&self) -> bool {
        self.peer
    }

    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// Its base URL, `scheme://authority`.
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.authority)
    }

    /// The absolute URI of `path_and_query` on this upstream.
    pub fn uri(&self, path_and_query: &str) -> Result<Uri, http::Error> {
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
    }
}

/// What a selector is told of the request it chooses upstreams for.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamRequest<'a> {
    /// The origin-form target sent upstream (`/v/{id}/…`, or
    /// `/s/{token}/v/{id}/…`).
    pub path_and_query: &'a str,
    /// The cache key of the object being filled (a slice's fill names its
    /// object's key).
    pub key: &'a str,
    /// The video the target names, when it names one: what a placement
    /// ranks nodes by.
    pub video_id: Option<&'a str>,
    /// The request came through a kinema node (its `Via` names one): in a
    /// cluster it is filled from the origins only, never from another edge,
    /// so no two edges can fill from each other in a loop.
    pub through_kinema: bool,
}

impl<'a> UpstreamRequest<'a> {
    /// A request from a viewer (`through_kinema` false).
    pub fn new(path_and_query: &'a str, key: &'a str) -> Self {
        Self {
            path_and_query,
            key,
            video_id: video_id(path_and_query),
            through_kinema: false,
        }
    }
}

pub use kinema_http::via::{VIA, through_kinema};

/// The id of the video a target names: `{id}` of `/v/{id}/…`, also behind
/// `/s/{token}`.
pub fn video_id(path_and_query: &str) -> Option<&str> {
    let path = path_and_query.split('?').next().unwrap_or(path_and_query);
    let object = kinema_auth::split_signed_path(path).map_or(path, |(_, rest)| rest);
    let id = object.strip_prefix("/v/")?.split('/').next()?;
    (!id.is_empty()).then_some(id)
}

/// How an upstream failed a fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamFailure {
    /// No connection could be made.
    Connect,
    /// No response head within the response timeout.
    Timeout,
    /// The connection broke.
    Protocol,
    /// It answered a gateway error (502, 503, 504) and the next was tried.
    Status(StatusCode),
}

/// Chooses the upstreams a request is fetched from. Called once per
/// origin fetch (never on a hit), so it may allocate.
pub trait UpstreamSelector: Debug + Send + Sync + 'static {
    /// The upstreams to try, in order: an idempotent fetch that fails on
    /// one is retried on the next, each at most once. Never empty.
    fn select(&self, request: &UpstreamRequest<'_>) -> Vec<Upstream>;

    /// Whether a fetch for `request` goes to another edge first. A request
    /// through a kinema node never joins such a fill in flight: two edges
    /// whose views disagree (each the other's parent for a moment) would
    /// otherwise each wait for the other's fill.
    fn fills_from_peer(&self, request: &UpstreamRequest<'_>) -> bool {
        let _ = request;
        false
    }

    /// `upstream` failed a fetch; a selector may stop choosing it first.
    fn report_failure(&self, upstream: &Upstream, failure: UpstreamFailure);

    /// Upstreams believed healthy (the `origins_healthy` gauge).
    fn healthy_count(&self) -> u64;

    /// The other edges of the cluster a purge received here is sent on
    /// to, with their node ids: every live edge but this one, from the
    /// latest membership view. None outside a cluster.
    fn purge_peers(&self) -> Vec<(String, Upstream)> {
        Vec::new()
    }

    /// The selector's own counters, as exposition text samples named
    /// under `prefix` (`kinema_edge`); none unless it has some.
    fn metrics_text(&self, prefix: &str) -> String {
        let _ = prefix;
        String::new()
    }

    /// The selector's own background work (health checks) until
    /// `shutdown`; none unless it has some.
    fn run_checks(
        self: Arc<Self>,
        client: Arc<OriginClient>,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, ()> {
        let _ = (client, shutdown);
        Box::pin(async {})
    }
}

/// Settings of the health checks of [`RoundRobin`].
#[derive(Debug, Clone)]
pub struct HealthChecks {
    pub path: String,
    pub interval: Duration,
}

#[derive(Debug)]
struct Member {
    upstream: Upstream,
    healthy: AtomicBool,
}

/// The `--origin` URLs in turn: healthy ones round-robin from the next
/// index, then the unhealthy ones (a check may be wrong; trying beats a
/// sure 502). An upstream that cannot be connected to is unhealthy until
/// its next successful health check.
#[derive(Debug)]
pub struct RoundRobin {
    members: Vec<Member>,
    next: AtomicUsize,
    checks: HealthChecks,
}

impl RoundRobin {
    pub fn new(urls: &[String], checks: HealthChecks) -> Result<Self, String> {
        if urls.is_empty() {
            return Err("no origin given; use --origin http://HOST:PORT".into());
        }
        let members = urls
            .iter()
            .map(|url| {
                Ok(Member {
                    upstream: Upstream::parse(url)?,
                    healthy: AtomicBool::new(true),
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            members,
            next: AtomicUsize::new(0),
            checks,
        })
    }
}

impl UpstreamSelector for RoundRobin {
    fn select(&self, _request: &UpstreamRequest<'_>) -> Vec<Upstream> {
        let count = self.members.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % count;
        let rotated = (0..count).map(|offset| &self.members[(start + offset) % count]);
        let (healthy, unhealthy): (Vec<&Member>, Vec<&Member>) =
            rotated.partition(|member| member.healthy.load(Ordering::Relaxed));
        healthy
            .into_iter()
            .chain(unhealthy)
            .map(|member| member.upstream.clone())
            .collect()
    }

    fn report_failure(&self, upstream: &Upstream, failure: UpstreamFailure) {
        if failure != UpstreamFailure::Connect {
            return;
        }
        for member in &self.members {
            if member.upstream == *upstream {
                member.healthy.store(false, Ordering::Relaxed);
            }
        }
    }

    fn healthy_count(&self) -> u64 {
        self.members
            .iter()
            .filter(|member| member.healthy.load(Ordering::Relaxed))
            .count() as u64
    }

    /// Checks every origin periodically: a GET of the health path
    /// answering 2xx within the response timeout is healthy.
    fn run_checks(
        self: Arc<Self>,
        client: Arc<OriginClient>,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let mut interval = tokio::time::interval(self.checks.interval);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = interval.tick() => {}
                }
                for member in &self.members {
                    let healthy = client.check(&member.upstream, &self.checks.path).await;
                    let was = member.healthy.swap(healthy, Ordering::Relaxed);
                    if was != healthy {
                        tracing::info!(
                            origin = %member.upstream.authority,
                            healthy,
                            "origin health changed"
                        );
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_robin(urls: &[&str]) -> RoundRobin {
        let urls: Vec<String> = urls.iter().map(|url| url.to_string()).collect();
        RoundRobin::new(
            &urls,
            HealthChecks {
                path: "/healthz".into(),
                interval: Duration::from_secs(2),
            },
        )
        .unwrap()
    }

    fn authorities(upstreams: &[Upstream]) -> Vec<&str> {
        upstreams
            .iter()
            .map(|upstream| upstream.authority().as_str())
            .collect()
    }

    #[test]
    fn round_robin_rotates_and_puts_unreachable_origins_last() {
        let selector = round_robin(&["http://a:1", "http://b:2", "http://c:3"]);
        let request = UpstreamRequest::new("/v/x/1.m4s", "/v/x/1.m4s");
        assert_eq!(
            authorities(&selector.select(&request)),
            ["a:1", "b:2", "c:3"]
        );
        assert_eq!(
            authorities(&selector.select(&request)),
            ["b:2", "c:3", "a:1"]
        );
        let b = Upstream::parse("http://b:2").unwrap();
        // Only a failed connection says the origin is down.
        selector.report_failure(&b, UpstreamFailure::Timeout);
        assert_eq!(selector.healthy_count(), 3);
        selector.report_failure(&b, UpstreamFailure::Connect);
        assert_eq!(selector.healthy_count(), 2);
        assert_eq!(
            authorities(&selector.select(&request)),
            ["c:3", "a:1", "b:2"]
        );
        assert_eq!(
            authorities(&selector.select(&request)),
            ["a:1", "c:3", "b:2"]
        );
    }

    #[test]
    fn origin_urls_are_checked() {
        let checks = HealthChecks {
            path: "/healthz".into(),
            interval: Duration::from_secs(2),
        };
        let refused = |url: &str| RoundRobin::new(&[url.to_string()], checks.clone()).unwrap_err();
        assert!(refused("ftp://a:1").contains("only http:// and https://"));
        assert!(RoundRobin::new(&["https://a:1".to_string()], checks.clone()).is_ok());
        assert!(refused("http://a:1/base").contains("must not have a path"));
        assert!(
            RoundRobin::new(&[], checks.clone())
                .unwrap_err()
                .contains("--origin")
        );
    }

    #[test]
    fn the_video_a_target_names() {
        assert_eq!(video_id("/v/abc/360p/1.m4s?x=1"), Some("abc"));
        assert_eq!(video_id("/s/tok/v/abc/master.m3u8"), Some("abc"));
        assert_eq!(video_id("/v//1.m4s"), None);
        assert_eq!(video_id("/api/videos"), None);
    }
}
