//! The origin's part in a cluster's steering: `GET /steer/{id}`, and the
//! `302` that sends a viewer's first request to the node steering chooses.
//! Both are answered by the [`SteeringService`] the wiring gave the origin
//! ([`crate::OriginParts::with_steering`]); without one, neither exists.
//!
//! Which requests are redirected: a GET or HEAD of a video's stable master
//! playlist or MPD (`/v/{id}/master.m3u8`, `/v/{id}/manifest.mpd`, also
//! under `/s/{token}/`), from a client that did not come through a kinema
//! node. An edge filling its cache says `Via: 1.1 kinema` and gets the
//! stored file, so an edge is never sent to itself; generation URLs
//! (`/v/{id}/g{N}/…`) are never redirected, since they are what the stable
//! files point into.

use std::net::IpAddr;

use http::header::ACCESS_CONTROL_ALLOW_ORIGIN;
use http::request::Parts;
use http::{HeaderMap, Method, StatusCode};
use kinema_http::via::through_kinema;
use kinema_steering::SteeringService;

use super::{HttpResponse, Origin, error, method_not_allowed, strip_body_for_head, with_headers};
use crate::catalog::{LookupError, Video};
use crate::cors;
use crate::metrics::RouteKind;

/// The stable files a viewing session starts with.
const SESSION_STARTS: [&str; 2] = ["master.m3u8", "manifest.mpd"];

impl Origin {
    /// `/steer/{id}`: the steering manifest of a published video (no token
    /// needed: it names nodes, not media); 404 for an id no manifest lists.
    /// `client` (behind trusted proxies) lets what was measured for its
    /// prefix choose among the video's edges.
    pub(super) async fn steer(
        &self,
        steering: &SteeringService,
        request: &Parts,
        id: &str,
        client: IpAddr,
    ) -> (RouteKind, HttpResponse) {
        let method = &request.method;
        if method == Method::OPTIONS {
            return (
                RouteKind::Steering,
                with_headers(
                    StatusCode::NO_CONTENT,
                    self.cors.preflight(&request.headers),
                    kinema_http::ResponseBody::Empty,
                ),
            );
        }
        let mut response = if method != Method::GET && method != Method::HEAD {
            method_not_allowed(cors::ALLOWED_METHODS)
        } else {
            match self.catalog.video(id).await {
                Ok(video) => {
                    steering.steer_for(&video.id, request.uri.query().unwrap_or(""), Some(client))
                }
                Err(LookupError::BadId(_) | LookupError::NotFound) => {
                    error(StatusCode::NOT_FOUND, "no such video")
                }
                Err(LookupError::Store(store_error)) => {
                    tracing::error!(video = id, error = %store_error, "cannot read manifest");
                    super::media::store_failure(
                        &store_error,
                        "cannot read the video",
                        HeaderMap::with_capacity(4),
                    )
                }
            }
        };
        // The origin's CORS policy, not the service's permissive default.
        response.headers_mut().remove(ACCESS_CONTROL_ALLOW_ORIGIN);
        self.cors.apply(&request.headers, response.headers_mut());
        (RouteKind::Steering, strip_body_for_head(method, response))
    }

    /// The `302` to the node steering chooses for a request of `raw`
    /// (`{id}/{path}`, after `/v/`) of `video`, when it is one to redirect
    /// (see the module doc) and that node is not this one.
    pub(super) fn steer_away(
        &self,
        request: &Parts,
        raw: &str,
        video: &Video,
        client: IpAddr,
    ) -> Option<HttpResponse> {
        let steering = self.steering.as_ref()?;
        if request.method != Method::GET && request.method != Method::HEAD {
            return None;
        }
        let path = raw.split_once('/').map(|(_, path)| path)?;
        if !SESSION_STARTS.contains(&path) || through_kinema(&request.headers) {
            return None;
        }
        let path_and_query = request.uri.path_and_query()?.as_str();
        let mut response = steering.redirect_for(&video.id, path_and_query, Some(client))?;
        response.headers_mut().remove(ACCESS_CONTROL_ALLOW_ORIGIN);
        self.cors.apply(&request.headers, response.headers_mut());
        Some(response)
    }
}
