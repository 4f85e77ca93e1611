//! Steering at an edge in a cluster: `GET|HEAD /steer/{id}` answered by
//! the [`SteeringService`] of the edge's [`crate::ClusterPart`], and a
//! viewer's stable master playlist or MPD answered rewritten with one
//! pathway per node. Without a cluster part neither exists: `/steer/…` is
//! proxied like any other path and masters are served as stored.
//!
//! Which ids are steered: any well-formed video id. An edge holds no
//! catalogue, and asking the origin for each steering reload would put a
//! request per viewer every TTL on it; steering an id that is no video
//! costs a small JSON answer, while the media requests that follow still
//! get the origin's 404. A malformed id is never a video: 404.
//!
//! Which requests are rewritten: a GET or HEAD of `/v/{id}/master.m3u8` or
//! `/v/{id}/manifest.mpd` (also under `/s/{token}/`) that did not come
//! through a kinema node (no kinema `Via`). The stored file is fetched and
//! cached as any other object; only the answer is rewritten, and sent
//! `no-store` since it carries a session. Generation URLs (`/v/{id}/g{N}/…`)
//! and media playlists are never rewritten: they are what the pathways
//! point into. A file the service cannot rewrite is served as stored.

use super::*;

use http_body_util::Limited;
use kinema_core::VideoId;
use kinema_steering::{ManifestKind, SteeringService};

/// Largest stored master or MPD rewritten; a larger one of known length is
/// served as stored, one streamed past it is answered 502 (a real one is a
/// few kilobytes).
pub(super) const MAX_STEERED_MANIFEST: u64 = 1024 * 1024;

/// What a viewer's session starts with: a video's stable master or MPD.
pub(super) struct SessionStart {
    pub kind: ManifestKind,
    pub video: VideoId,
}

/// The session a request starts, if it is a viewer's GET or HEAD of a
/// video's stable master playlist or MPD (see the module doc).
pub(super) fn session_start(request: &RequestContext) -> Option<SessionStart> {
    if request.method != Method::GET && request.method != Method::HEAD {
        return None;
    }
    let path = request.path_and_query.split('?').next()?;
    let object = kinema_auth::split_signed_path(path).map_or(path, |(_, rest)| rest);
    let (id, file) = object.strip_prefix("/v/")?.split_once('/')?;
    let kind = match file {
        "master.m3u8" => ManifestKind::Master,
        "manifest.mpd" => ManifestKind::Mpd,
        _ => return None,
    };
    if crate::upstream::through_kinema(&request.headers) {
        return None;
    }
    let video = VideoId::new(id).ok()?;
    Some(SessionStart { kind, video })
}

impl Edge {
    /// `/steer/{id}` when this edge steers; `None` when it has no steering
    /// part (the path is then proxied as any other).
    /// `client`, the viewer's address, lets what was measured for its
    /// prefix choose among the video's edges.
    pub(super) fn steer(
        &self,
        method: &Method,
        id: &str,
        query: Option<&str>,
        client: IpAddr,
    ) -> Option<Response<ResponseBody>> {
        let steering = &self.cluster.as_ref()?.steering;
        if *method == Method::OPTIONS {
            let mut response = Response::new(ResponseBody::Empty);
            *response.status_mut() = StatusCode::NO_CONTENT;
            let headers = response.headers_mut();
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, HEAD"),
            );
            return Some(response);
        }
        if *method != Method::GET && *method != Method::HEAD {
            let mut response = plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "/steer/{id} answers GET and HEAD only\n",
            );
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return Some(response);
        }
        let Ok(video) = VideoId::new(id) else {
            return Some(plain(StatusCode::NOT_FOUND, "no such video\n"));
        };
        let mut response = steering.steer_for(&video, query.unwrap_or(""), Some(client));
        if *method == Method::HEAD {
            *response.body_mut() = ResponseBody::Empty;
        }
        Some(response)
    }

    /// A viewer's master or MPD, `start` of `request`: the stored file
    /// (from the cache, or filled as any miss) rewritten by `steering` for
    /// a new session and sent `no-store`, or as stored when it cannot be.
    pub(super) async fn steered(
        self: &Arc<Self>,
        request: &RequestContext,
        start: SessionStart,
        steering: &SteeringService,
    ) -> Response<ResponseBody> {
        // The whole stored file is what is rewritten: the viewer's
        // validators and ranges name the stored file, not this answer.
        let mut whole = request.clone();
        whole.method = Method::GET;
        for name in [
            header::IF_NONE_MATCH,
            header::IF_MODIFIED_SINCE,
            header::RANGE,
            header::IF_RANGE,
        ] {
            whole.headers.remove(name);
        }
        let response = self.run_phases(&whole, None).await;
        // A streamed body (a miss's fill) has no known size: read within
        // the bound.
        let small = response
            .body()
            .size_hint()
            .upper()
            .is_none_or(|size| size <= MAX_STEERED_MANIFEST);
        if response.status() != StatusCode::OK || !small {
            return without_body_for_head(&request.method, response);
        }
        let (mut parts, body) = response.into_parts();
        let stored = match Limited::new(body, MAX_STEERED_MANIFEST as usize)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(error) => {
                tracing::debug!(path = %request.path_and_query, %error, "master or MPD broke while read for steering");
                return plain(StatusCode::BAD_GATEWAY, "the upstream response broke\n");
            }
        };
        let request_path = request
            .path_and_query
            .split('?')
            .next()
            .unwrap_or(&request.path_and_query);
        let body = match steering.rewrite_for(
            start.kind,
            &start.video,
            request_path,
            &stored,
            request.client,
        ) {
            Some(rewritten) => {
                let headers = &mut parts.headers;
                for name in [
                    header::ETAG,
                    header::LAST_MODIFIED,
                    header::EXPIRES,
                    header::AGE,
                    header::ACCEPT_RANGES,
                    policy::CDN_CACHE_CONTROL.clone(),
                ] {
                    headers.remove(name);
                }
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                rewritten
            }
            None => stored,
        };
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        let response = Response::from_parts(parts, ResponseBody::Full(body));
        without_body_for_head(&request.method, response)
    }
}

fn without_body_for_head(
    method: &Method,
    mut response: Response<ResponseBody>,
) -> Response<ResponseBody> {
    if *method == Method::HEAD {
        *response.body_mut() = ResponseBody::Empty;
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(method: Method, target: &str, headers: &[(&str, &str)]) -> RequestContext {
        RequestContext {
            method,
            path_and_query: target.into(),
            headers: crate::test_support::headers(headers),
            key: target.into(),
            directives: Directives::default(),
            client: None,
            token_expiry: None,
        }
    }

    fn starts(method: Method, target: &str, headers: &[(&str, &str)]) -> Option<ManifestKind> {
        session_start(&context(method, target, headers)).map(|start| start.kind)
    }

    #[test]
    fn a_session_starts_with_a_viewers_stable_master_or_mpd() {
        assert_eq!(
            starts(Method::GET, "/v/clip/master.m3u8", &[]),
            Some(ManifestKind::Master)
        );
        assert_eq!(
            starts(Method::HEAD, "/v/clip/manifest.mpd?x=1", &[]),
            Some(ManifestKind::Mpd)
        );
        assert_eq!(
            starts(Method::GET, "/s/token/v/clip/master.m3u8", &[]),
            Some(ManifestKind::Master)
        );
        // Through a kinema node, generation URLs, media playlists, other
        // methods and malformed ids: the stored file, no session.
        for (method, target, headers) in [
            (
                Method::GET,
                "/v/clip/master.m3u8",
                &[("via", "1.1 kinema")][..],
            ),
            (Method::GET, "/v/clip/g1700000000000/master.m3u8", &[]),
            (Method::GET, "/v/clip/v180/index.m3u8", &[]),
            (Method::POST, "/v/clip/master.m3u8", &[]),
            (Method::GET, "/v/no.such/master.m3u8", &[]),
            (Method::GET, "/master.m3u8", &[]),
        ] {
            assert_eq!(
                starts(method, target, headers),
                None,
                "{target} {headers:?}"
            );
        }
    }
}
