//! The origins behind the edge: one pooled keep-alive HTTP client, a list
//! of origin base URLs with a health flag each, active health checks, and
//! retry of idempotent fetches on the next healthy origin.
//!
//! It knows nothing of caching: it sends a request and returns the response
//! head with its streaming body, or says why it could not (connect failure
//! → the caller answers 502, timeout → 504).

use std::error::Error as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// A request body sent to an origin.
pub type OriginBody = UnsyncBoxBody<Bytes, std::io::Error>;

/// Why an origin fetch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    #[error("cannot reach the origin: {0}")]
    Connect(String),
    #[error("the origin did not answer in time")]
    Timeout,
    #[error("the origin connection failed: {0}")]
    Protocol(String),
    /// The client's own request body broke (malformed chunked framing, a
    /// reset) while it was forwarded: the client's fault, not the origin's.
    #[error("the request body is malformed: {0}")]
    RequestBody(String),
}

/// Marks an error of a client's request body forwarded to an origin (the
/// `io::Error` an [`OriginBody`] yields carries it), so that a fetch that
/// failed because of it is told apart from an origin failure.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ClientBodyError(pub String);

/// True when `error` was caused by a [`ClientBodyError`].
fn client_body_failed(error: &hyper_util::client::legacy::Error) -> bool {
    let mut source = error.source();
    while let Some(cause) = source {
        let marked = cause.is::<ClientBodyError>()
            || cause
                .downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::get_ref)
                .is_some_and(|inner| inner.is::<ClientBodyError>());
        if marked {
            return true;
        }
        source = cause.source();
    }
    false
}

impl OriginError {
    /// RFC 9110 §15.6.3 (502) for an unreachable or broken origin,
    /// §15.6.5 (504) for one that did not answer in time.
    pub fn status(&self) -> StatusCode {
        match self {
            OriginError::Timeout => StatusCode::GATEWAY_TIMEOUT,
            OriginError::RequestBody(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::BAD_GATEWAY,
        }
    }
}

#[derive(Debug)]
struct Origin {
    scheme: Scheme,
    authority: Authority,
    healthy: AtomicBool,
}

/// Settings of the origin client.
#[derive(Debug, Clone)]
pub struct OriginSettings {
    pub connect_timeout: Duration,
    /// Until the response head arrives.
    pub response_timeout: Duration,
    pub health_check_path: String,
    pub health_check_interval: Duration,
}

#[derive(Debug)]
pub struct Origins {
    origins: Vec<Origin>,
    client: Client<HttpConnector, OriginBody>,
    next: AtomicUsize,
    settings: OriginSettings,
    metrics: Arc<Metrics>,
}

/// What to send; the path is the origin-form target (`/v/x/1.m4s?q`).
#[derive(Debug)]
pub struct OriginRequest {
    pub method: Method,
    pub path_and_query: String,
    pub headers: HeaderMap,
}

impl Origins {
    /// `urls` are base URLs such as `http://127.0.0.1:8080`; only `http`
    /// is supported (the edge and its origins share a trusted network).
    pub fn new(
        urls: &[String],
        settings: OriginSettings,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        if urls.is_empty() {
            return Err("no origin given; use --origin http://HOST:PORT".into());
        }
        let mut origins = Vec::new();
        for url in urls {
            let uri: Uri = url
                .parse()
                .map_err(|error| format!("origin {url:?} is not a URL: {error}"))?;
            let scheme = uri.scheme().cloned().unwrap_or(Scheme::HTTP);
            if scheme != Scheme::HTTP {
                return Err(format!(
                    "origin {url:?}: only http:// origins are supported"
                ));
            }
            let authority = uri
                .authority()
                .cloned()
                .ok_or_else(|| format!("origin {url:?} has no host; use http://HOST:PORT"))?;
            if uri.path() != "/" && !uri.path().is_empty() {
                return Err(format!("origin {url:?} must not have a path"));
            }
            origins.push(Origin {
                scheme,
                authority,
                healthy: AtomicBool::new(true),
            });
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(settings.connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .build(connector);
        Ok(Self {
            origins,
            client,
            next: AtomicUsize::new(0),
            settings,
            metrics,
        })
    }

    pub fn healthy_count(&self) -> u64 {
        self.origins
            .iter()
            .filter(|origin| origin.healthy.load(Ordering::Relaxed))
            .count() as u64
    }

    /// Sends a request. An idempotent request without a body that fails to
    /// connect, times out or gets 502/503/504 is retried on the next origin,
    /// healthy ones first, each origin at most once.
    pub async fn send(
        &self,
        request: OriginRequest,
        body: Option<OriginBody>,
    ) -> Result<Response<Incoming>, OriginError> {
        let retryable = body.is_none() && request.method.is_idempotent();
        let order = self.order();
        let mut body = body;
        let mut last_error = OriginError::Connect("no origin".into());
        for (attempt, index) in order.iter().enumerate() {
            let origin = &self.origins[*index];
            if attempt > 0 {
                Metrics::bump(&self.metrics.origin_retries);
            }
            let uri = Uri::builder()
                .scheme(origin.scheme.clone())
                .authority(origin.authority.clone())
                .path_and_query(request.path_and_query.as_str())
                .build()
                .map_err(|error| OriginError::Protocol(error.to_string()))?;
            let mut outgoing =
                Request::builder()
                    .method(request.method.clone())
                    .uri(uri)
                    .body(body.take().unwrap_or_else(|| {
                        Empty::new().map_err(|never| match never {}).boxed_unsync()
                    }))
                    .map_err(|error| OriginError::Protocol(error.to_string()))?;
            *outgoing.headers_mut() = request.headers.clone();
            if let Ok(host) = HeaderValue::from_str(origin.authority.as_str()) {
                outgoing.headers_mut().insert(header::HOST, host);
            }
            Metrics::bump(&self.metrics.origin_requests);
            let result = tokio::time::timeout(
                self.settings.response_timeout,
                self.client.request(outgoing),
            )
            .await;
            let error = match result {
                Ok(Ok(response)) => {
                    let status = response.status();
                    let last = attempt + 1 == order.len();
                    if retryable && !last && matches!(status.as_u16(), 502..=504) {
                        Metrics::bump(&self.metrics.origin_errors);
                        last_error = OriginError::Protocol(format!("origin answered {status}"));
                        continue;
                    }
                    return Ok(response);
                }
                // Neither the origin's failure nor worth a retry.
                Ok(Err(error)) if client_body_failed(&error) => {
                    return Err(OriginError::RequestBody(chain(&error)));
                }
                Ok(Err(error)) if error.is_connect() => {
                    origin.healthy.store(false, Ordering::Relaxed);
                    OriginError::Connect(chain(&error))
                }
                Ok(Err(error)) => OriginError::Protocol(chain(&error)),
                Err(_) => OriginError::Timeout,
            };
            Metrics::bump(&self.metrics.origin_errors);
            tracing::debug!(origin = %origin.authority, %error, "origin fetch failed");
            last_error = error;
            if !retryable {
                break;
            }
        }
        Err(last_error)
    }

    /// Origins to try: healthy ones round-robin from the next index, then
    /// the unhealthy ones (a check may be wrong; trying beats a sure 502).
    fn order(&self) -> Vec<usize> {
        let count = self.origins.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % count;
        let rotated: Vec<usize> = (0..count).map(|offset| (start + offset) % count).collect();
        let (mut healthy, unhealthy): (Vec<usize>, Vec<usize>) = rotated
            .into_iter()
            .partition(|index| self.origins[*index].healthy.load(Ordering::Relaxed));
        healthy.extend(unhealthy);
        healthy
    }

    /// Checks every origin periodically until `shutdown`: a GET of the
    /// health path answering 2xx within the response timeout is healthy.
    pub async fn check_health(self: Arc<Self>, shutdown: CancellationToken) {
        let mut interval = tokio::time::interval(self.settings.health_check_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = interval.tick() => {}
            }
            for origin in &self.origins {
                let Ok(uri) = Uri::builder()
                    .scheme(origin.scheme.clone())
                    .authority(origin.authority.clone())
                    .path_and_query(self.settings.health_check_path.as_str())
                    .build()
                else {
                    continue;
                };
                let request = Request::get(uri)
                    .body(Empty::new().map_err(|never| match never {}).boxed_unsync());
                let Ok(request) = request else { continue };
                let healthy = match tokio::time::timeout(
                    self.settings.response_timeout,
                    self.client.request(request),
                )
                .await
                {
                    Ok(Ok(response)) => {
                        let ok = response.status().is_success();
                        // Drain so the connection returns to the pool.
                        let _ = response.into_body().collect().await;
                        ok
                    }
                    _ => false,
                };
                let was = origin.healthy.swap(healthy, Ordering::Relaxed);
                if was != healthy {
                    tracing::info!(origin = %origin.authority, healthy, "origin health changed");
                }
            }
        }
    }
}

fn chain(error: &hyper_util::client::legacy::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
