//! The public catalogue: `GET /api/catalogue`, the one `/api` endpoint that
//! needs no token, so anyone can browse what the library publishes.
//!
//! ```text
//! GET /api/catalogue?q=&sort=newest|title|duration&page=1&per_page=24
//! → {"videos": [{id, title, duration_seconds, published_at, published_at_unix,
//!                poster, ladder: [{width, height, bitrate}], private}],
//!    "total", "page", "per_page", "pages", "sort", "q"}
//! ```
//!
//! `q` matches titles (and ids) as a case-insensitive substring. Signed
//! videos are listed only to a caller whose `Authorization: Bearer` admin
//! token is valid, marked `"private": true` and without a poster URL (their
//! images need a signed URL, which `POST /api/tokens` mints); a token that
//! is sent but not valid is refused like any `/api` request, so a client
//! learns its sign-in failed instead of seeing less.
//!
//! Thousands of videos list without reading thousands of manifests per
//! request: a [`Summaries`] index keeps what a listing shows of each video
//! in memory. It lists the store at most every [`LIST_EVERY`], reads the
//! manifests of ids it has not seen, drops ids no longer listed, and
//! re-reads a bounded number of its oldest entries per refresh, so a video
//! republished under the same id shows its new title within a few
//! refreshes. Concurrent refreshes coalesce on one lock. This is not the
//! serving path's catalog (`catalog.rs`), which holds whole file tables.
//!
//! The origin routes the path here before the API's authorization, so a
//! catalogue request is counted in `/metrics` and the access log like any
//! other; [`Summaries`] lives in the origin's state.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant, UNIX_EPOCH};

use futures::StreamExt;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use kinema_core::{AccessPolicy, Manifest, RenditionKind, VideoId};
use kinema_http::{ResponseBody, respond};
use kinema_store::{Store, StoreError, VideoMetadata};
use percent_encoding::percent_decode_str;
use serde_json::{Value, json};

use crate::access::Access;

/// The endpoint's path.
pub const CATALOGUE_PATH: &str = "/api/catalogue";
/// How old a listing may be before a request lists the store again.
pub const LIST_EVERY: Duration = Duration::from_secs(2);
/// An entry older than this is read again (at most [`REREAD_PER_REFRESH`]
/// of them per refresh), to pick up a video republished under its id.
const REREAD_AFTER: Duration = Duration::from_secs(30);
const REREAD_PER_REFRESH: usize = 64;
/// Manifest reads in flight during one refresh.
const READS_IN_FLIGHT: usize = 16;
/// Longest query string accepted, bytes.
pub const MAX_QUERY_BYTES: usize = 1024;
/// Longest search text, characters.
pub const MAX_SEARCH_CHARS: usize = 200;
pub const DEFAULT_PER_PAGE: usize = 24;
pub const MAX_PER_PAGE: usize = 100;
const MAX_PAGE: usize = 1_000_000;
const SORTS: &str = "newest, title, duration";

type HttpResponse = http::Response<ResponseBody>;

/// What a listing shows of one video.
#[derive(Debug, Clone)]
struct Summary {
    id: VideoId,
    title: String,
    description: String,
    /// `title` lowercased, what sorting by title compares.
    title_key: String,
    /// `title` and the id lowercased, what `q` is matched against.
    search_text: String,
    duration_seconds: f64,
    published_at_unix: u64,
    private: bool,
    has_poster: bool,
    /// Video rungs, highest first: (width, height, bit rate).
    ladder: Vec<(Option<u32>, Option<u32>, u64)>,
    read_at: Instant,
}

impl Summary {
    fn of(manifest: &Manifest, metadata: &VideoMetadata, now: Instant) -> Self {
        let title = metadata.title(manifest);
        let mut ladder: Vec<_> = manifest
            .renditions
            .iter()
            .filter(|rendition| rendition.kind == RenditionKind::Video)
            .map(|rendition| (rendition.width, rendition.height, rendition.bitrate))
            .collect();
        ladder.sort_by_key(|rung| std::cmp::Reverse(rung.2));
        Self {
            id: manifest.id.clone(),
            title: title.to_string(),
            description: metadata.description.clone(),
            title_key: title.to_lowercase(),
            search_text: format!("{title}\n{}", manifest.id).to_lowercase(),
            duration_seconds: manifest.duration_seconds,
            published_at_unix: manifest.published_at_unix,
            private: manifest.access == AccessPolicy::Signed,
            has_poster: manifest
                .files
                .iter()
                .any(|file| file.path.as_str() == "thumbs/poster.jpg"),
            ladder,
            read_at: now,
        }
    }

    fn to_json(&self) -> Value {
        let id = &self.id;
        let published = UNIX_EPOCH + Duration::from_secs(self.published_at_unix);
        json!({
            "id": id,
            "title": self.title,
            "description": self.description,
            "duration_seconds": self.duration_seconds,
            "published_at_unix": self.published_at_unix,
            "published_at": humantime::format_rfc3339_seconds(published).to_string(),
            "poster": (self.has_poster && !self.private)
                .then(|| format!("/v/{id}/thumbs/poster.jpg")),
            "ladder": self.ladder.iter().map(|(width, height, bitrate)| json!({
                "width": width, "height": height, "bitrate": bitrate,
            })).collect::<Vec<_>>(),
            "private": self.private,
        })
    }
}

#[derive(Debug)]
struct Snapshot {
    videos: Vec<Arc<Summary>>,
    listed_at: Instant,
}

/// The in-memory index of what the catalogue lists.
#[derive(Debug)]
pub struct Summaries {
    store: Arc<dyn Store>,
    current: RwLock<Option<Arc<Snapshot>>>,
    /// Held by the one refresh running; the edit journal's sequence number
    /// it has read up to ([`crate::edit::edited_since`]).
    refresh: tokio::sync::Mutex<u64>,
}

impl Summaries {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            current: RwLock::new(None),
            refresh: tokio::sync::Mutex::new(crate::edit::edited_since(u64::MAX).1),
        }
    }

    fn fresh(&self, now: Instant) -> Option<Arc<Snapshot>> {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        current
            .as_ref()
            .filter(|snapshot| now.duration_since(snapshot.listed_at) < LIST_EVERY)
            .cloned()
    }

    /// Every listed video's summary, at most [`LIST_EVERY`] old.
    async fn snapshot(&self) -> Result<Arc<Snapshot>, StoreError> {
        if let Some(snapshot) = self.fresh(Instant::now()) {
            return Ok(snapshot);
        }
        let mut journal_seen = self.refresh.lock().await;
        // Another request may have refreshed while this one waited.
        if let Some(snapshot) = self.fresh(Instant::now()) {
            return Ok(snapshot);
        }
        let ids = self.store.list_videos().await?;
        let (edited, journal_next) = crate::edit::edited_since(*journal_seen);
        *journal_seen = journal_next;
        let now = Instant::now();
        let previous: HashMap<VideoId, Arc<Summary>> = self
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|snapshot| {
                snapshot
                    .videos
                    .iter()
                    .map(|summary| (summary.id.clone(), summary.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let mut stale: Vec<&VideoId> = ids
            .iter()
            .filter(|id| {
                previous
                    .get(*id)
                    .is_some_and(|summary| now.duration_since(summary.read_at) >= REREAD_AFTER)
            })
            .collect();
        stale.sort_by_key(|id| previous[*id].read_at);
        stale.truncate(REREAD_PER_REFRESH);
        let to_read: Vec<VideoId> = ids
            .iter()
            .filter(|id| {
                !previous.contains_key(*id)
                    || edited.as_ref().is_none_or(|edited| edited.contains(id))
            })
            .chain(
                stale
                    .into_iter()
                    .filter(|id| edited.as_ref().is_some_and(|edited| !edited.contains(id))),
            )
            .cloned()
            .collect();
        let store = &self.store;
        let read: HashMap<VideoId, Option<Arc<Summary>>> = futures::stream::iter(to_read)
            .map(|id| async move {
                let summary = match store.manifest(&id).await {
                    Ok(manifest) => {
                        // Unreadable metadata shows the video as published.
                        let metadata = match store.metadata(&id).await {
                            Ok(metadata) => metadata,
                            Err(error) => {
                                if !error.is_not_found() {
                                    tracing::warn!(video = %id, %error, "catalogue: cannot read a video's metadata");
                                }
                                VideoMetadata::default()
                            }
                        };
                        Some(Arc::new(Summary::of(&manifest, &metadata, Instant::now())))
                    }
                    // Unpublished between the listing and the read.
                    Err(error) if error.is_not_found() => None,
                    Err(error) => {
                        tracing::warn!(video = %id, %error, "catalogue: cannot read a manifest");
                        None
                    }
                };
                (id, summary)
            })
            .buffer_unordered(READS_IN_FLIGHT)
            .collect()
            .await;
        let videos = ids
            .iter()
            .filter_map(|id| match read.get(id) {
                Some(summary) => summary.clone().or_else(|| previous.get(id).cloned()),
                None => previous.get(id).cloned(),
            })
            .collect();
        let snapshot = Arc::new(Snapshot {
            videos,
            listed_at: Instant::now(),
        });
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(snapshot.clone());
        Ok(snapshot)
    }

    /// One page of the catalogue for `query`, private videos included when
    /// `admin`.
    pub async fn page(&self, query: &Query, admin: bool) -> Result<Value, StoreError> {
        let snapshot = self.snapshot().await?;
        let needle = query.search.to_lowercase();
        let mut matching: Vec<&Summary> = snapshot
            .videos
            .iter()
            .map(Arc::as_ref)
            .filter(|summary| admin || !summary.private)
            .filter(|summary| needle.is_empty() || summary.search_text.contains(&needle))
            .collect();
        match query.sort {
            Sort::Newest => matching.sort_by(|a, b| {
                b.published_at_unix
                    .cmp(&a.published_at_unix)
                    .then_with(|| a.id.as_str().cmp(b.id.as_str()))
            }),
            Sort::Title => matching.sort_by(|a, b| {
                a.title_key
                    .cmp(&b.title_key)
                    .then_with(|| a.id.as_str().cmp(b.id.as_str()))
            }),
            Sort::Duration => matching.sort_by(|a, b| {
                b.duration_seconds
                    .total_cmp(&a.duration_seconds)
                    .then_with(|| a.id.as_str().cmp(b.id.as_str()))
            }),
        }
        let total = matching.len();
        let videos: Vec<Value> = matching
            .iter()
            .skip((query.page - 1).saturating_mul(query.per_page))
            .take(query.per_page)
            .map(|summary| summary.to_json())
            .collect();
        Ok(json!({
            "videos": videos,
            "total": total,
            "page": query.page,
            "per_page": query.per_page,
            "pages": total.div_ceil(query.per_page),
            "sort": query.sort.as_str(),
            "q": query.search,
        }))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    Newest,
    Title,
    Duration,
}

impl Sort {
    fn as_str(self) -> &'static str {
        match self {
            Sort::Newest => "newest",
            Sort::Title => "title",
            Sort::Duration => "duration",
        }
    }
}

/// A parsed, bounded catalogue query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub search: String,
    pub sort: Sort,
    /// From 1.
    pub page: usize,
    pub per_page: usize,
}

impl Query {
    /// Parses `q`, `sort`, `page` and `per_page`; anything else, or a value
    /// out of bounds, is refused with a sentence saying what is allowed.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.len() > MAX_QUERY_BYTES {
            return Err(format!(
                "the query string is longer than {MAX_QUERY_BYTES} bytes"
            ));
        }
        let mut query = Query {
            search: String::new(),
            sort: Sort::Newest,
            page: 1,
            per_page: DEFAULT_PER_PAGE,
        };
        for pair in raw.split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode_str(&value.replace('+', " "))
                .decode_utf8()
                .map_err(|_| format!("{key}: not UTF-8 once percent-decoded"))?
                .into_owned();
            let number = |low: usize, high: usize| -> Result<usize, String> {
                value
                    .parse::<usize>()
                    .ok()
                    .filter(|number| (low..=high).contains(number))
                    .ok_or_else(|| {
                        format!("{key} must be a whole number from {low} to {high}, not {value:?}")
                    })
            };
            match key {
                "q" => {
                    let search = value.trim();
                    if search.chars().count() > MAX_SEARCH_CHARS {
                        return Err(format!("q is longer than {MAX_SEARCH_CHARS} characters"));
                    }
                    query.search = search.to_string();
                }
                "sort" => {
                    query.sort = match value.as_str() {
                        "" | "newest" => Sort::Newest,
                        "title" => Sort::Title,
                        "duration" => Sort::Duration,
                        other => {
                            return Err(format!("unknown sort {other:?}; use one of {SORTS}"));
                        }
                    }
                }
                "page" => query.page = number(1, MAX_PAGE)?,
                "per_page" => query.per_page = number(1, MAX_PER_PAGE)?,
                other => {
                    return Err(format!(
                        "unknown parameter {other:?}; use q, sort ({SORTS}), page and per_page"
                    ));
                }
            }
        }
        Ok(query)
    }
}

/// Whether `path` is one of the /api paths the origin routes to
/// [`answer`] before the API's own authorization: those that need no token
/// (the catalogue), and those that need more than the API's (the admin
/// tokens and keys of [`crate::admin_access`], which check it themselves).
pub fn is_public(path: &str) -> bool {
    path == CATALOGUE_PATH
        || path == crate::openapi::OPENAPI_PATH
        || crate::admin_access::answers(path)
}

/// Answers a request for a path [`is_public`] accepts: `GET`/`HEAD
/// /api/catalogue` from `summaries`, the admin tokens and keys from
/// `access`.
pub async fn answer(
    summaries: &Summaries,
    access: &Access,
    request: http::request::Parts,
) -> HttpResponse {
    if crate::admin_access::answers(request.uri.path()) {
        return crate::admin_access::answer(access, request).await;
    }
    let openapi = request.uri.path() == crate::openapi::OPENAPI_PATH;
    if request.method != Method::GET && request.method != Method::HEAD {
        let mut response = error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed; use GET",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    if openapi {
        let mut response = json_response(StatusCode::OK, crate::openapi::document_json());
        if request.method == Method::HEAD {
            *response.body_mut() = ResponseBody::Empty;
        }
        return response;
    }
    // Only a caller who sends a token is checked; a wrong one is
    // refused as on every other /api path.
    let admin = if request.headers.contains_key(header::AUTHORIZATION) {
        match access.authorize_api(&Method::GET, &request.headers) {
            Ok(_) => true,
            Err(refusal) => return *refusal,
        }
    } else {
        false
    };
    let query = match Query::parse(request.uri.query().unwrap_or("")) {
        Ok(query) => query,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    let mut response = match summaries.page(&query, admin).await {
        Ok(page) => json_response(StatusCode::OK, &page),
        Err(store_error) => {
            tracing::error!(error = %store_error, "catalogue: cannot list the library");
            let mut response = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the library cannot be listed right now; try again shortly",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
            response
        }
    };
    if request.method == Method::HEAD {
        *response.body_mut() = ResponseBody::Empty;
    }
    response
}

fn error(status: StatusCode, message: &str) -> HttpResponse {
    respond::json_error(status, message, HeaderMap::new())
}

/// What an admin sees differs from what everyone sees: no shared cache may
/// keep either ([`respond::json`] sends `no-store`).
fn json_response(status: StatusCode, value: &Value) -> HttpResponse {
    respond::json(status, value, HeaderMap::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_defaults_and_bounds() {
        assert_eq!(
            Query::parse("").unwrap(),
            Query {
                search: String::new(),
                sort: Sort::Newest,
                page: 1,
                per_page: 24
            }
        );
        assert_eq!(
            Query::parse("q=Big+Buck%20bunny&sort=title&page=3&per_page=100").unwrap(),
            Query {
                search: "Big Buck bunny".into(),
                sort: Sort::Title,
                page: 3,
                per_page: 100
            }
        );
        for (raw, says) in [
            (
                "sort=views",
                "unknown sort \"views\"; use one of newest, title, duration",
            ),
            (
                "per_page=101",
                "per_page must be a whole number from 1 to 100",
            ),
            (
                "per_page=0",
                "per_page must be a whole number from 1 to 100",
            ),
            ("page=0", "page must be a whole number from 1 to 1000000"),
            ("page=-1", "page must be a whole number"),
            ("limit=5", "unknown parameter \"limit\""),
            ("q=%FF", "q: not UTF-8"),
        ] {
            let refused = Query::parse(raw).unwrap_err();
            assert!(refused.contains(says), "{raw}: {refused}");
        }
        let long_search = format!("q={}", "a".repeat(201));
        assert!(
            Query::parse(&long_search)
                .unwrap_err()
                .contains("q is longer than 200")
        );
        let long_query = format!("q={}", "a".repeat(1100));
        assert!(
            Query::parse(&long_query)
                .unwrap_err()
                .contains("longer than 1024 bytes")
        );
    }
}
