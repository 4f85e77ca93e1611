//! The request handler: routing, error responses, the access log and
//! request metrics; the media path (a listed file answered per RFC 9110) is
//! `media`, a cluster's steering and redirects `steer`.
//!
//! Routing is a few prefix comparisons on the raw path; percent-decoding
//! happens once, per path segment, and only when a `%` is present, so the
//! common request allocates nothing to be routed. Constant headers come
//! pre-rendered from the catalog. No lock is held across an `.await`.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, ETAG};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use kinema_http::conditional::{EntityTag, Validators};
use kinema_http::respond;
use kinema_http::{Clock, ConnectionInfo, Handler, RequestBody, ResponseBody};
use percent_encoding::percent_decode_str;
use prometheus_client::registry::Registry;

use crate::Error;
use crate::access::{self, Access};
use crate::admission::{self, Admission, Limits};
use crate::api::Api;
use crate::catalog::Catalog;
use crate::config::Config;
use crate::cors::Cors;
use crate::files::FileCache;
use crate::metrics::{self, Metrics, Readings, RouteKind};
use crate::parts::OriginParts;
use crate::public_catalogue::{self, Summaries};
use crate::web::WebRoot;

mod media;
mod steer;

type HttpResponse = Response<ResponseBody>;

/// How often retired generations past their grace are looked for besides
/// at start (a publish collects its own video's): a small part of any
/// sensible grace.
const COLLECT_RETIRED_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// The origin service: one per listener, shared by every connection.
#[derive(Debug)]
pub struct Origin {
    catalog: Catalog,
    files: FileCache,
    cors: Cors,
    web: WebRoot,
    api: Api,
    /// What `GET /api/catalogue` lists, the one /api path needing no token.
    catalogue: Summaries,
    access: Arc<Access>,
    admission: Arc<Admission>,
    metrics: Arc<Metrics>,
    registry: Registry,
    access_log: bool,
    prefetch: bool,
    /// Bytes per second the library scrub reads; 0: no scrub.
    scrub_rate: u64,
    /// What time it is for a signed URL's token.
    clock: Clock,
    /// In a cluster: `/steer/{id}` and the redirect of a viewer's first
    /// request to the node steering chooses.
    steering: Option<Arc<kinema_steering::SteeringService>>,
    /// Viewers' network quality, fed the CMCD of their media requests.
    network: Option<kinema_netq::Measuring>,
    /// `/api/worker/…`, when this server takes workers.
    workers: Option<crate::worker_api::WorkerApi>,
    /// In a cluster: members' regions and this node's id, for `/api/cluster`.
    member_places: Option<crate::cluster_api::MemberPlaces>,
    /// In a cluster: how the edges are reached (purges, cache figures).
    cluster_client: Option<crate::purge::ClusterClient>,
}

impl Origin {
    /// An origin of `parts` ([`OriginParts`]: store, caches, workspace,
    /// clock, the connection layer's counters it publishes at `/metrics`)
    /// with the settings of `config`; loads the web UI and the key ring.
    pub async fn new(config: &Config, parts: OriginParts) -> Result<Self, Error> {
        let OriginParts {
            store,
            catalog,
            files,
            descriptors,
            metrics,
            workspace,
            clock,
            stats,
            sessions_admitted,
            steering,
            network,
            metrics_hooks,
            workers,
            member_places,
            cluster_client,
        } = parts;
        let cors = Cors::new(&config.cors_allowed_origins).map_err(Error::Config)?;
        if config.max_load.is_nan() || config.max_load <= 0.0 {
            return Err(Error::Config(format!(
                "max_load must be above 0 (1 turns the check off), not {}",
                config.max_load
            )));
        }
        let web_root = config.web_root.clone();
        let web = tokio::task::spawn_blocking(move || WebRoot::load(&web_root))
            .await
            .map_err(|join| Error::Config(format!("loading the web UI panicked: {join}")))??;
        let (keys, tokens, skew) = (config.keys.clone(), config.tokens.clone(), config.auth_skew);
        let proxies = config.trusted_proxies.clone();
        let access =
            tokio::task::spawn_blocking(move || Access::load(&keys, &tokens, skew, proxies))
                .await
                .map_err(|join| {
                    Error::Config(format!("loading the key ring panicked: {join}"))
                })??;
        let admission = Arc::new(Admission::new(
            Limits {
                max_egress: config.max_egress.map(|bitrate| bitrate.0),
                max_load: config.max_load,
            },
            admission::Sources {
                egress_bytes: Box::new({
                    let metrics = metrics.clone();
                    move || metrics.body_bytes_total()
                }),
                load: Box::new({
                    let stats = stats.clone();
                    move || stats.load()
                }),
                admitted: sessions_admitted,
            },
        ));
        let mut registry = metrics::registry(
            metrics.clone(),
            Readings {
                cache_bytes: Box::new({
                    let files = files.clone();
                    move || files.weighted_size()
                }),
                cache_entries: Box::new({
                    let files = files.clone();
                    move || files.entry_count()
                }),
                videos_loaded: Box::new({
                    let catalog = catalog.clone();
                    move || catalog.videos_loaded()
                }),
                corrupt_files: Box::new({
                    let files = files.clone();
                    move || files.corrupt_files()
                }),
                cache_descriptors: Box::new(move || descriptors.held()),
                server: Box::new(move || stats.snapshot()),
                admission: admission.clone(),
            },
        );
        if let Some(steering) = &steering {
            steering.register(&mut registry);
        }
        for hook in metrics_hooks {
            hook(&mut registry);
        }
        let catalogue = Summaries::new(store.clone());
        // Jobs a crashed server left running are recovered as the API starts.
        let api = Api::new(store, catalog.clone(), workspace, config.ingest.clone())
            .await
            .map_err(|error| Error::Config(format!("cannot start ingest jobs: {error}")))?;
        let uploads = workers
            .as_ref()
            .and_then(|workers| workers.uploads().cloned());
        let api = api.with_remote(uploads);
        Ok(Self {
            catalog,
            files,
            cors,
            web,
            api,
            catalogue,
            access: Arc::new(access),
            admission,
            metrics,
            registry,
            access_log: config.access_log,
            prefetch: config.prefetch,
            scrub_rate: config.scrub_rate.as_u64(),
            clock,
            steering,
            network,
            workers,
            member_places,
            cluster_client,
        })
    }

    /// Forgets the cached manifest of `id` so the next request re-reads it;
    /// for code in this process that publishes or unpublishes a video.
    pub async fn invalidate_video(&self, id: &kinema_core::VideoId) {
        self.catalog.invalidate(id).await;
    }

    /// Starts the periodic work that runs whether or not requests come:
    /// the file cache's `cache_inactive` expiry
    /// ([`FileCache::expire_inactive`]), admission's sampling of the
    /// egress and the load, the deletion of retired generations past
    /// their grace ([`Catalog::collect_retired`], at start and hourly), and
    /// the library scrub ([`FileCache::scrub`]) when `scrub_rate` is not 0.
    pub(crate) fn start_background(&self) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = vec![
            self.files.expire_inactive(),
            self.admission.clone().run_sampler(),
            self.catalog.collect_retired(COLLECT_RETIRED_EVERY),
        ];
        if self.scrub_rate > 0 {
            tasks.push(self.files.scrub(self.catalog.clone(), self.scrub_rate));
        }
        tasks
    }

    /// The key ring and admin tokens, for a reload on SIGHUP.
    pub(crate) fn access(&self) -> Arc<Access> {
        self.access.clone()
    }

    async fn route(
        &self,
        request: Request<RequestBody>,
        connection: ConnectionInfo,
    ) -> (RouteKind, HttpResponse) {
        let path = request.uri().path();
        // The /api paths that need no token (the catalogue, the API's
        // description), before the API's authorization.
        if public_catalogue::is_public(path) {
            // Only the head is read; the (empty) body stream is not `Sync`.
            let (parts, _body) = request.into_parts();
            let answer = public_catalogue::answer(&self.catalogue, &self.access, parts);
            return (RouteKind::Api, Box::pin(answer).await);
        }
        if path == crate::cluster_api::PATH {
            let steering = self.steering.as_deref();
            let (method, headers) = (request.method(), request.headers());
            let places = self.member_places.as_ref();
            let client = self.cluster_client.as_ref().map(|cluster| cluster.client());
            let answer =
                crate::cluster_api::answer(&self.access, steering, places, client, method, headers);
            return (RouteKind::Api, Box::pin(answer).await);
        }
        if path == crate::purge::PATH {
            let parts = crate::purge::PurgeParts {
                access: &self.access,
                catalog: &self.catalog,
                steering: self.steering.as_deref(),
                cluster: self.cluster_client.as_ref(),
            };
            return (
                RouteKind::Api,
                Box::pin(crate::purge::answer(parts, request)).await,
            );
        }
        // Worker tokens pass only here, so these routes check their own scope.
        if crate::worker_api::answers(path) {
            let answer = match &self.workers {
                Some(workers) => Box::pin(workers.answer(&self.access, request)).await,
                None => kinema_http::respond::json(
                    StatusCode::NOT_FOUND,
                    &serde_json::json!({"error": "this server takes no workers"}),
                    http::HeaderMap::new(),
                ),
            };
            return (RouteKind::Api, answer);
        }
        if path == "/api" || path.starts_with("/api/") {
            if let Err(refusal) = self
                .access
                .authorize_api(request.method(), request.headers())
            {
                return (RouteKind::Api, *refusal);
            }
            if path == "/api/tokens" {
                return (
                    RouteKind::Api,
                    Box::pin(self.access.mint(request, connection)).await,
                );
            }
            // Boxed: the API's futures are large and this is not the hot path.
            return (
                RouteKind::Api,
                Box::pin(self.api.handle(request, connection)).await,
            );
        }
        // Only the head is needed from here on; the (empty) body stream is
        // not `Sync`, so a reference to the whole request could not be held
        // across an await.
        let (request, _body) = request.into_parts();
        let path = request.uri.path();
        // Who is asking, behind trusted proxies: what a token may be bound
        // to, and whose sessions admission counts.
        let client = self
            .access
            .client_address(connection.peer.ip(), &request.headers);
        // A player's CMCD says how its network fares (edges strip it).
        if let Some(network) = &self.network
            && (path.starts_with("/v/") || path.starts_with("/s/"))
        {
            network.record_request(client, request.uri.query(), &request.headers);
        }
        // Signed URLs: the token is a path prefix, so every
        // relative URI in a playlist inherits it.
        if path.starts_with("/s/") {
            let now = self.clock.now();
            let vouched = self
                .access
                .vouched(&request.method, &request.uri, &request.headers, now);
            return match self
                .access
                .verify_signed(path, client, vouched.as_ref(), now)
            {
                Ok(signed) => match signed.rest.strip_prefix("/v/") {
                    Some(rest) => {
                        self.media(&request, rest, Some(signed.expires_at), client)
                            .await
                    }
                    None => (
                        RouteKind::Unknown,
                        error(StatusCode::NOT_FOUND, "not found"),
                    ),
                },
                Err(refusal) => {
                    let mut response = access::refused(refusal);
                    self.cors.apply(&request.headers, response.headers_mut());
                    (RouteKind::Unknown, response)
                }
            };
        }
        if let Some(rest) = path.strip_prefix("/v/") {
            return self.media(&request, rest, None, client).await;
        }
        if let (Some(id), Some(steering)) = (path.strip_prefix("/steer/"), &self.steering) {
            return self.steer(steering, &request, id, client).await;
        }
        let kind = match path {
            "/healthz" => RouteKind::Health,
            "/metrics" => RouteKind::Metrics,
            "/" => RouteKind::Ui,
            _ if path.starts_with("/ui/") => RouteKind::Ui,
            _ => {
                return (
                    RouteKind::Unknown,
                    error(StatusCode::NOT_FOUND, "not found"),
                );
            }
        };
        let method = &request.method;
        if method != Method::GET && method != Method::HEAD {
            return (kind, method_not_allowed("GET, HEAD"));
        }
        if kind == RouteKind::Metrics {
            // The caches count entries and bytes lazily; settle them so a
            // scrape sees what they hold now.
            Box::pin(async {
                self.files.settle().await;
                self.catalog.settle().await;
            })
            .await;
        }
        let response = match kind {
            RouteKind::Health => text(StatusCode::OK, "text/plain; charset=utf-8", "ok\n"),
            RouteKind::Metrics => text(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                metrics::render(&self.registry),
            ),
            _ => self.ui(&request, path),
        };
        (kind, strip_body_for_head(method, response))
    }

    fn ui(&self, request: &Parts, path: &str) -> HttpResponse {
        let relative = match path.strip_prefix("/ui/") {
            None | Some("") => Cow::Borrowed("index.html"),
            Some(rest) => match decode_path(rest) {
                Ok(decoded) => decoded,
                Err(status) => return error(status, "bad path"),
            },
        };
        let Some(file) = self.web.file(&relative) else {
            return error(StatusCode::NOT_FOUND, "not found");
        };
        let validators = Validators {
            etag: EntityTag::parse(file.etag.as_bytes()),
            last_modified: None,
        };
        let mut headers = HeaderMap::with_capacity(6);
        headers.insert(ETAG, file.etag.clone());
        // Not content-addressed names, so revalidate every time (cheap: 304).
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
        // Preconditions only: the UI's files are small and sent whole.
        if let Some(answer) =
            respond::precondition_answer(&request.method, &request.headers, &validators, &headers)
        {
            return answer;
        }
        headers.insert(CONTENT_TYPE, file.content_type.clone());
        with_headers(
            StatusCode::OK,
            headers,
            ResponseBody::Full(file.content.clone()),
        )
    }
}

impl Handler for Origin {
    async fn handle(
        &self,
        request: Request<RequestBody>,
        connection: ConnectionInfo,
    ) -> HttpResponse {
        let started = Instant::now();
        let logged = self
            .access_log
            .then(|| (request.method().clone(), request.uri().clone()));
        let (kind, response) = self.route(request, connection).await;
        let elapsed = started.elapsed();
        let status = response.status().as_u16();
        let bytes = match response.body() {
            ResponseBody::Stream(_) => response
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|value| value.to_str().ok()?.parse().ok())
                .unwrap_or(0),
            body => body.known_length().unwrap_or(0),
        };
        self.metrics.record(kind, status, bytes, elapsed);
        if let Some((method, uri)) = logged {
            tracing::info!(
                target: "kinema::access",
                peer = %connection.peer,
                %method,
                path = %uri,
                status,
                bytes,
                duration_us = elapsed.as_micros() as u64,
            );
        }
        response
    }
}

/// Percent-decodes a path once, segment by segment (RFC 3986 §2.4: decode
/// after splitting on `/`), refusing anything that decodes to a separator,
/// a backslash or a NUL: an encoded separator has no legitimate use in
/// these URLs and is the classic traversal disguise.
fn decode_path(raw: &str) -> Result<Cow<'_, str>, StatusCode> {
    if !raw.contains('%') {
        return Ok(Cow::Borrowed(raw));
    }
    let mut decoded = String::with_capacity(raw.len());
    for (index, segment) in raw.split('/').enumerate() {
        if index > 0 {
            decoded.push('/');
        }
        let segment = percent_decode_str(segment)
            .decode_utf8()
            .map_err(|_| StatusCode::BAD_REQUEST)?;
        if segment.contains(['/', '\\', '\0']) {
            return Err(StatusCode::BAD_REQUEST);
        }
        decoded.push_str(&segment);
    }
    Ok(Cow::Owned(decoded))
}

fn with_headers(status: StatusCode, headers: HeaderMap, body: ResponseBody) -> HttpResponse {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

fn text(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> HttpResponse {
    let mut headers = HeaderMap::with_capacity(3);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    with_headers(status, headers, ResponseBody::Full(body.into()))
}

/// An error response with no headers of its own ([`respond::error`]).
fn error(status: StatusCode, message: &'static str) -> HttpResponse {
    respond::error(status, message, HeaderMap::with_capacity(4))
}

fn method_not_allowed(allow: &'static str) -> HttpResponse {
    let mut headers = HeaderMap::with_capacity(3);
    headers.insert(ALLOW, HeaderValue::from_static(allow));
    respond::error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed",
        headers,
    )
}

/// HEAD gets GET's headers (with its `Content-Length`) and no body.
fn strip_body_for_head(method: &Method, mut response: HttpResponse) -> HttpResponse {
    if method == Method::HEAD {
        if let Some(length) = response.body().known_length() {
            response
                .headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from(length));
        }
        *response.body_mut() = ResponseBody::Empty;
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_is_once_and_per_segment() {
        assert_eq!(decode_path("clip/v1/1.m4s").unwrap(), "clip/v1/1.m4s");
        assert_eq!(decode_path("clip/v%31/1.m4s").unwrap(), "clip/v1/1.m4s");
        // Once: a double-encoded dot stays an encoded dot, which no path allows.
        assert_eq!(decode_path("clip/%252e%252e/x").unwrap(), "clip/%2e%2e/x");
        assert_eq!(decode_path("clip/%2e%2e/x").unwrap(), "clip/../x");
        for bad in ["clip%2fmaster.m3u8", "a/%5c..", "a/b%00", "a/%ff%fe"] {
            assert_eq!(decode_path(bad), Err(StatusCode::BAD_REQUEST), "{bad}");
        }
    }
}
