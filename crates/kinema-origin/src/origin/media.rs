//! The media path: a listed file of a video (or of one of its
//! generations) found in the catalogue, refused or admitted, and answered by
//! the shared responder from the file cache or the store.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use http::header::{CACHE_CONTROL, ETAG, LAST_MODIFIED, RETRY_AFTER};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use kinema_http::ResponseBody;
use kinema_http::respond::{self, Answer, Representation};
use kinema_store::StoreError;

use super::{HttpResponse, Origin, decode_path, error, method_not_allowed, with_headers};
use crate::access;
use crate::admission::{self, Refusal};
use crate::catalog::{FileInfo, LookupError, Video};
use crate::cors;
use crate::files::FileError;
use crate::metrics::RouteKind;

impl Origin {
    /// `/v/{id}/{path}` and `/v/{id}/g{N}/{path}`: only files the video's
    /// (or that generation's) manifest lists; a signed
    /// video only when `signed` (the request came through a valid token,
    /// which expires then; the response's freshness ends with it).
    /// `client` starts or plays a session, for admission.
    pub(super) async fn media(
        &self,
        request: &Parts,
        raw: &str,
        signed: Option<SystemTime>,
        client: IpAddr,
    ) -> (RouteKind, HttpResponse) {
        let method = &request.method;
        let mut response = if method == Method::OPTIONS {
            with_headers(
                StatusCode::NO_CONTENT,
                self.cors.preflight(&request.headers),
                ResponseBody::Empty,
            )
        } else if method != Method::GET && method != Method::HEAD {
            method_not_allowed(cors::ALLOWED_METHODS)
        } else {
            match self.lookup(raw).await {
                Ok((video, index, access)) => {
                    let file = &video.files[index];
                    let kind = file.kind;
                    if access == kinema_core::AccessPolicy::Signed && signed.is_none() {
                        let mut response = access::refused(kinema_auth::Refusal::MissingToken);
                        self.cors.apply(&request.headers, response.headers_mut());
                        return (kind, response);
                    }
                    // In a cluster, a viewer's first request goes to the
                    // node steering chooses (which admits it there).
                    if let Some(response) = self.steer_away(request, raw, &video, client) {
                        return (RouteKind::Steering, response);
                    }
                    // A player's first request starts a session: admitted
                    // only while there is room for it (DESIGN §6).
                    if file.starts_session
                        && method == Method::GET
                        && let Err(refusal) =
                            self.admission
                                .admit(client, video.id.as_str(), video.session_bitrate)
                    {
                        let mut response = at_capacity(refusal);
                        self.cors.apply(&request.headers, response.headers_mut());
                        return (kind, response);
                    }
                    // A segment is what makes a session start worth its
                    // reservation.
                    if kind == RouteKind::Segment && method == Method::GET {
                        self.admission.media_fetched(client, video.id.as_str());
                    }
                    let mut response = self.serve_file(request, &video, file).await;
                    if let Some(expires_at) = signed {
                        access::cap_freshness_at_expiry(
                            response.headers_mut(),
                            expires_at,
                            self.clock.now(),
                        );
                    }
                    return (kind, response);
                }
                Err(response) => response,
            }
        };
        if method != Method::OPTIONS {
            self.cors.apply(&request.headers, response.headers_mut());
        }
        (RouteKind::Unknown, response)
    }

    /// Finds the listed file a request path names, and the policy it is
    /// served under, or the error response: 400 for a path that could
    /// never name a file (bad encoding, `..`, separators, characters
    /// outside the allowed set), 404 for a well-formed path that no
    /// published manifest lists.
    async fn lookup(
        &self,
        raw: &str,
    ) -> Result<(Arc<Video>, usize, kinema_core::AccessPolicy), HttpResponse> {
        let decoded = decode_path(raw).map_err(|status| error(status, "bad path"))?;
        let Some((id, path)) = decoded.split_once('/') else {
            return Err(error(StatusCode::NOT_FOUND, "not found"));
        };
        // `g{N}/…` names one generation's file forever; any other path, the
        // current generation's (DESIGN: the stable public URLs).
        let pinned = path.split_once('/').and_then(|(first, rest)| {
            kinema_store::layout::parse_generation_dir(first).map(|generation| (generation, rest))
        });
        let (found, path) = match pinned {
            Some((generation, rest)) => (self.catalog.generation(id, generation).await, rest),
            None => (self.catalog.video(id).await, path),
        };
        let video = match found {
            Ok(video) => video,
            Err(LookupError::BadId(_)) => {
                return Err(error(StatusCode::BAD_REQUEST, "bad video id"));
            }
            Err(LookupError::NotFound) => return Err(error(StatusCode::NOT_FOUND, "not found")),
            Err(LookupError::Store(store_error)) => {
                tracing::error!(video = id, error = %store_error, "cannot read manifest");
                return Err(store_failure(
                    &store_error,
                    "cannot read the video",
                    HeaderMap::with_capacity(4),
                ));
            }
        };
        // A retired generation published public is signed once the video
        // is: a policy change is a new generation, and the old one's URLs
        // must stop playing too (an unreadable current video closes it).
        let mut access = video.access;
        if pinned.is_some() && access == kinema_core::AccessPolicy::Public {
            access = match self.catalog.video(id).await {
                Ok(current) => current.access,
                Err(_) => kinema_core::AccessPolicy::Signed,
            };
        }
        match video.file_index(path) {
            Some(index) => Ok((video, index, access)),
            None if kinema_core::ObjectPath::new(path).is_err() => {
                Err(error(StatusCode::BAD_REQUEST, "bad path"))
            }
            None => Err(error(StatusCode::NOT_FOUND, "not found")),
        }
    }

    /// A listed file, answered by the shared responder (preconditions, ranges,
    /// HEAD: RFC 9110 §13.2.2, §14) from the cache or the store.
    async fn serve_file(
        &self,
        request: &Parts,
        video: &Arc<Video>,
        file: &FileInfo,
    ) -> HttpResponse {
        let method = &request.method;
        let mut headers = HeaderMap::with_capacity(12);
        self.cors.apply(&request.headers, &mut headers);
        headers.insert(ETAG, file.etag.clone());
        headers.insert(LAST_MODIFIED, video.last_modified_header.clone());
        headers.insert(CACHE_CONTROL, file.cache_control.clone());
        let representation = Representation {
            etag: Some(file.etag.clone()),
            last_modified: Some(video.last_modified),
            length: file.size,
            content_type: Some(file.content_type.clone()),
            content_length: Some(file.content_length.clone()),
        };
        let planned = match respond::answer(method, &request.headers, representation, headers) {
            Answer::Complete(response) => return response,
            Answer::Content(planned) => planned,
        };
        let content = if self.files.is_cacheable(file) {
            match self.files.get(video, file).await {
                Ok(content) => Some(content),
                Err(file_error) => return self.file_error(request, video, file, file_error),
            }
        } else {
            if let Err(file_error) = self.files.check_size(video, file).await {
                return self.file_error(request, video, file, file_error);
            }
            None
        };
        if self.prefetch && method == Method::GET {
            self.files.prefetch_after(video, file);
        }
        // Cached content is sliced (a reference, no copy: a file slice for
        // the whole or one range, shared bytes for multipart pieces);
        // streamed content is read from the store as the body is sent.
        match &content {
            Some(content) => planned.into_response(content.held()),
            None => planned.into_response(self.files.streamed(video, file)),
        }
    }

    /// The one place a failed read of a listed file becomes a response.
    fn file_error(
        &self,
        request: &Parts,
        video: &Video,
        file: &FileInfo,
        file_error: FileError,
    ) -> HttpResponse {
        let mut headers = respond::no_store();
        self.cors.apply(&request.headers, &mut headers);
        match &file_error {
            FileError::Store(store_error) if store_error.is_not_found() => {
                tracing::warn!(video = %video.id, path = %file.path, error = %file_error, "listed file is missing from the store");
                respond::error(StatusCode::NOT_FOUND, "not found", headers)
            }
            FileError::Store(store_error) => {
                tracing::error!(video = %video.id, path = %file.path, error = %file_error, "cannot read a listed file");
                store_failure(store_error, "cannot read the file", headers)
            }
            _ => {
                tracing::error!(video = %video.id, path = %file.path, error = %file_error, "refusing to serve a listed file");
                respond::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "cannot read the file",
                    headers,
                )
            }
        }
    }
}

/// `Retry-After` seconds of a 503 for a store that is down: about what the
/// store's own retries take, so a player that waits is not refused again
/// at once, nor kept waiting long after the store is back.
const STORE_RETRY_AFTER_SECONDS: u32 = 5;

/// The response to a store that failed a read (its not-found cases are
/// answered as 404 before): 503 with `Retry-After` when the store is
/// unavailable (an object store down or timing out), which a retry may
/// cure and a cache must not keep; 500 for any other failure.
pub(super) fn store_failure(
    store_error: &StoreError,
    message: &'static str,
    mut headers: HeaderMap,
) -> HttpResponse {
    if store_error.is_unavailable() {
        headers.insert(RETRY_AFTER, HeaderValue::from(STORE_RETRY_AFTER_SECONDS));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return respond::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the library's store is unavailable; retry later",
            headers,
        );
    }
    respond::error(StatusCode::INTERNAL_SERVER_ERROR, message, headers)
}

/// 503 with `Retry-After`: no room for another viewing session now.
fn at_capacity(refusal: Refusal) -> HttpResponse {
    let mut headers = HeaderMap::with_capacity(5);
    headers.insert(RETRY_AFTER, HeaderValue::from(refusal.retry_after));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    respond::error(
        StatusCode::SERVICE_UNAVAILABLE,
        match refusal.reason {
            admission::Reason::Egress => {
                "at capacity: no egress left for another viewer; retry later"
            }
            admission::Reason::Load => {
                "at capacity: the server is too busy for another viewer; retry later"
            }
        },
        headers,
    )
}
