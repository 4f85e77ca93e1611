//! Large objects served from slices, so that a seek fetches only the
//! slices it covers and a range on a miss does not wait for the whole object.
//!
//! An object above `slice_threshold` (learnt from a `200`'s
//! `Content-Length`, whose body is then abandoned), or one first requested
//! with a `Range` (learnt from the `206` of the slice the range starts in),
//! is fetched from the origin as aligned `Range` requests of `slice_size`
//! bytes. Each slice is checked ([`crate::slice::check_slice`]), stored as
//! its own entry under `KEY#slice=N` and filled through the same coalescing
//! as whole objects (the fill's side is `origin_fill`'s `absorb_slice`), so
//! concurrent seeks into one region cost one origin request. A client
//! response, full or ranged, is decided by kinema-http's responder and
//! assembled from the slices it covers, streamed in order as each one
//! arrives; the next slice is fetched while the current one is sent.
//!
//! Versions never mix: the response's headers come from its first slice,
//! and every further slice must carry the same validators and length. When
//! one does not, the object changed at the origin: every stored slice of it
//! is dropped and the response is cut short (an error ends the stream, so
//! the client sees a truncated body, never a spliced one).

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use http::{HeaderMap, Response, header};
use kinema_http::ResponseBody;
use kinema_http::range::RangeRequest;
use kinema_http::respond::{self, Answer, Body, Part, Representation};

use super::{
    Edge, FillAnswer, FillJob, Joined, RequestContext, SliceStart, Step, error_response,
    not_in_cache, set_age,
};
use crate::fill::{Fill, FillHead, Slicing};
use crate::metrics::Metrics;
use crate::origin::OriginError;
use crate::policy::{self, CacheStatus, Detail, Directives, ForwardReason, Reuse};
use crate::slice::{self, Piece, SliceMeta, Version};
use crate::store::{Lookup, Tier};
use crate::stored::StoredResponse;

type ByteStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// Where a slice's bytes come from.
#[derive(Clone)]
enum SliceBody {
    Stored(Bytes),
    Filling(Arc<Fill>),
}

impl SliceBody {
    /// The bytes at `within` (offsets in the slice), as they arrive.
    fn part(&self, within: Range<u64>) -> ByteStream {
        match self {
            SliceBody::Stored(bytes) => {
                // The stored body's length was checked against its
                // Content-Range, and `within` lies inside that range.
                let bytes = bytes.slice(within.start as usize..within.end as usize);
                futures::stream::once(async move { Ok(bytes) }).boxed()
            }
            SliceBody::Filling(fill) => {
                slice::cut(fill.body(), within.start, within.end - within.start)
            }
        }
    }
}

/// A slice at hand: stored, or being filled.
pub(super) struct ObtainedSlice {
    meta: SliceMeta,
    headers: HeaderMap,
    request_time: SystemTime,
    response_time: SystemTime,
    body: SliceBody,
    cache_status: CacheStatus,
    /// The tier it was found in; `None` when it comes from the origin.
    tier: Option<Tier>,
    /// The fill this request joined rather than started: it may have begun
    /// before the version this request already knows.
    joined: Option<Arc<Fill>>,
}

impl ObtainedSlice {
    pub(super) fn from_fill(
        fill: Arc<Fill>,
        head: &FillHead,
        meta: &SliceMeta,
        waiter: bool,
    ) -> Self {
        let mut cache_status = CacheStatus::forward(ForwardReason::UriMiss);
        cache_status.forward_status = Some(head.status.as_u16());
        cache_status.stored = head.stored;
        cache_status.collapsed = waiter;
        Self {
            meta: meta.clone(),
            headers: head.headers.clone(),
            request_time: head.request_time,
            response_time: head.response_time,
            joined: waiter.then(|| fill.clone()),
            body: SliceBody::Filling(fill),
            cache_status,
            tier: None,
        }
    }

    fn index(&self, size: u64) -> u64 {
        self.meta.range.start / size
    }
}

/// What looking for a slice found.
enum Obtained {
    Slice(Box<ObtainedSlice>),
    /// A probe met a fill of the whole object (or the origin answered the
    /// probe in full): answer from that fill.
    Whole {
        fill: Arc<Fill>,
        waiter: bool,
    },
    /// A fill of the whole object found it large: this version.
    Large(Version),
    /// The origin's answer cannot be used as a slice.
    Refused,
    /// `only-if-cached` and the slice is not stored.
    NotCached,
}

impl Edge {
    /// Answers a GET or HEAD from slices, starting from what `start`
    /// knows: the response, or the fill of a whole object to answer from
    /// (a probe found it is not sliced), or a pass.
    pub(super) async fn serve_slices(
        self: &Arc<Self>,
        request: &RequestContext,
        start: SliceStart,
    ) -> Step {
        let SliceStart { mut known, first } = start;
        let mut first = first.map(|slice| *slice);
        let directives = &request.directives;
        let size = self.settings.slice_size;
        let key = &request.key;
        // A few rounds at most: learn the version, maybe find the object
        // changed, then serve.
        for _ in 0..4 {
            let wanted = known.as_ref().map(|version| wanted_range(request, version));
            let index = match &wanted {
                Some(wanted) => first_index(wanted, size),
                None => probe_index(request, size),
            };
            let slice = match first.take() {
                Some(slice) if slice.index(size) == index => slice,
                _ => match self
                    .obtain_slice(key, index, request, directives, known.is_none())
                    .await
                {
                    Ok(Obtained::Slice(slice)) => *slice,
                    Ok(Obtained::Large(version)) => {
                        known = Some(version);
                        continue;
                    }
                    Ok(Obtained::Whole { fill, waiter }) => {
                        return Step::FromFill(FillAnswer {
                            fill,
                            waiter,
                            candidate: None,
                            forward: ForwardReason::UriMiss,
                        });
                    }
                    Ok(Obtained::Refused) => {
                        return Step::Pass(
                            CacheStatus::forward(ForwardReason::UriMiss)
                                .with_detail(Detail::SliceRefused),
                        );
                    }
                    Ok(Obtained::NotCached) => return Step::Respond(not_in_cache()),
                    Err(error) => {
                        return Step::Respond(error_response(&error, ForwardReason::UriMiss));
                    }
                },
            };
            match (&known, wanted) {
                (Some(version), Some(_))
                    if *version == slice.meta.version && slice.index(size) == index =>
                {
                    match slice.tier {
                        Some(tier) => self.count_hit(tier),
                        None => Metrics::bump(&self.metrics.misses),
                    }
                    return Step::Respond(self.slice_response(request, version.clone(), slice));
                }
                (Some(version), _) if *version != slice.meta.version => {
                    // The object changed at the origin, or a stored slice is
                    // left over from an older version: drop every slice and
                    // believe the origin (a stored one is fetched afresh).
                    Metrics::bump(&self.metrics.slice_version_changes);
                    self.forget_slices(key).await;
                    if let Some(fill) = &slice.joined {
                        // A fill begun before this request learnt `version`
                        // may be what is out of date: no one joins it again
                        // and it stores nothing; a new fill asks the origin.
                        self.abandon_fill(fill);
                        known = None;
                    } else if slice.tier.is_some() {
                        known = None;
                    } else {
                        known = Some(self.learn_version(key, &slice));
                        first = Some(slice);
                    }
                }
                _ => {
                    // The first slice of an object not seen before tells its
                    // length and validators; the range is then resolved.
                    known = Some(self.learn_version(key, &slice));
                    first = Some(slice);
                }
            }
        }
        Step::Pass(CacheStatus::forward(ForwardReason::Miss).with_detail(Detail::SliceChurn))
    }

    fn learn_version(&self, key: &str, slice: &ObtainedSlice) -> Version {
        let version = slice.meta.version.clone();
        // An object that fits in one slice is stored whole instead.
        if version.length > self.settings.slice_size {
            self.sliced_objects
                .insert(key.to_string(), Arc::new(version.clone()));
        }
        version
    }

    /// Finds slice `index` of `key` in the store, or joins (or starts) its
    /// fill. A `probe` is a request for an object whose size is unknown.
    async fn obtain_slice(
        self: &Arc<Self>,
        key: &str,
        index: u64,
        request: &RequestContext,
        directives: &Directives,
        probe: bool,
    ) -> Result<Obtained, OriginError> {
        let slice_key = slice::slice_key(key, index);
        let mut revalidating = false;
        for _ in 0..3 {
            if let Lookup::Hit(stored, tier) = self.store.lookup(&slice_key, &request.headers).await
            {
                if let Some(slice) =
                    self.usable_slice(&slice_key, index, request, directives, &stored, tier)
                {
                    return Ok(Obtained::Slice(Box::new(slice)));
                }
                revalidating = true;
            }
            if directives.has("only-if-cached") {
                return Ok(Obtained::NotCached);
            }
            let job = FillJob::Slice {
                object_key: key.to_string(),
                index,
                probe,
                revalidating,
            };
            let (fill, waiter) = match self.join(&slice_key, request, job) {
                Joined::Stored => continue,
                Joined::Leader(fill) => (fill, false),
                Joined::Waiter(fill) => {
                    Metrics::bump(&self.metrics.coalesced_waiters);
                    (fill, true)
                }
            };
            let head = fill.head().await?;
            return Ok(match &head.slicing {
                Slicing::Slice(meta) => Obtained::Slice(Box::new(ObtainedSlice::from_fill(
                    fill.clone(),
                    &head,
                    meta,
                    waiter,
                ))),
                Slicing::Large(version) => Obtained::Large(version.clone()),
                Slicing::Whole if probe => Obtained::Whole { fill, waiter },
                Slicing::Whole | Slicing::Refused => Obtained::Refused,
            });
        }
        // Stored and evicted three times in a row: pass.
        Ok(Obtained::Refused)
    }

    /// A stored slice, if the request may use it (RFC 9111 §4.2 as for any
    /// stored response) and it is whole and well-formed.
    fn usable_slice(
        self: &Arc<Self>,
        slice_key: &str,
        index: u64,
        request: &RequestContext,
        directives: &Directives,
        stored: &Arc<StoredResponse>,
        tier: Tier,
    ) -> Option<ObtainedSlice> {
        let meta = slice::check_slice(
            stored.status,
            &stored.headers,
            index,
            self.settings.slice_size,
        )
        .ok()?;
        if stored.body.len() as u64 != meta.len() {
            return None;
        }
        let freshness = stored.freshness(self.clock.now(), &self.settings.rules);
        match policy::reuse(directives, stored.directives(), freshness) {
            Reuse::Fresh => {}
            Reuse::StaleAllowedByClient => Metrics::bump(&self.metrics.stale_hits),
            Reuse::StaleWhileRevalidate => {
                Metrics::bump(&self.metrics.stale_hits);
                // RFC 5861 §3: serve it, refresh it in the background.
                let _ = self.join(
                    slice_key,
                    request,
                    FillJob::Slice {
                        object_key: request.key.clone(),
                        index,
                        probe: false,
                        revalidating: true,
                    },
                );
            }
            Reuse::Validate { .. } => return None,
        }
        Some(ObtainedSlice {
            meta,
            headers: stored.headers.clone(),
            request_time: stored.request_time,
            response_time: stored.response_time,
            body: SliceBody::Stored(stored.body.clone()),
            cache_status: CacheStatus::hit(freshness.ttl_seconds()),
            tier: Some(tier),
            joined: None,
        })
    }

    /// Starts filling slice `index` in the background unless it is stored,
    /// so it is on its way while the slice before it is sent.
    fn read_ahead(self: &Arc<Self>, request: &RequestContext, index: u64) {
        let edge = self.clone();
        let request = request.clone();
        tokio::spawn(async move {
            let slice_key = slice::slice_key(&request.key, index);
            if matches!(
                edge.store.lookup(&slice_key, &request.headers).await,
                Lookup::Hit(..)
            ) {
                return;
            }
            let job = FillJob::Slice {
                object_key: request.key.clone(),
                index,
                probe: false,
                revalidating: false,
            };
            let _ = edge.join(&slice_key, &request, job);
        });
    }

    /// Drops what the cache knows of a sliced object: its version and every
    /// stored slice.
    pub(super) async fn forget_slices(&self, key: &str) {
        if self.sliced_objects.contains_key(key) {
            self.sliced_objects.invalidate(key);
        }
        self.store.remove_prefix(&slice::slice_prefix(key)).await;
    }

    /// The response to a client: head from the first slice, body assembled
    /// from every slice the answer covers (RFC 9110 §14, §15.3.7), by
    /// kinema-http's responder.
    fn slice_response(
        self: &Arc<Self>,
        request: &RequestContext,
        version: Version,
        first: ObtainedSlice,
    ) -> Response<ResponseBody> {
        let mut headers = first.headers.clone();
        headers.remove(header::CONTENT_RANGE);
        headers.remove(header::CONTENT_LENGTH);
        let age = policy::current_age(
            &headers,
            first.request_time,
            first.response_time,
            self.clock.now(),
        );
        set_age(&mut headers, age);
        first.cache_status.apply(&mut headers);
        let representation = Representation::of_head(&headers, version.length, &request.headers);
        let planned =
            match respond::answer(&request.method, &request.headers, representation, headers) {
                Answer::Complete(response) => return response,
                Answer::Content(planned) => planned,
            };
        if *planned.body() == Body::Nothing {
            return planned.into_response_with(ResponseBody::Empty);
        }
        planned.into_response(Slices {
            edge: self,
            request,
            version,
            first,
        })
    }

    /// The body of a sliced response: each piece in order, each slice
    /// obtained when its turn comes (the next one read ahead).
    fn assemble(
        self: &Arc<Self>,
        request: &RequestContext,
        version: Version,
        pieces: Vec<Piece>,
        first: ObtainedSlice,
    ) -> ByteStream {
        let size = self.settings.slice_size;
        let assembly = Assembly {
            edge: self.clone(),
            directives: request.directives.clone(),
            request: request.clone(),
            version,
            pieces: pieces.into(),
            held: Some((first.index(size), first.body)),
            read_ahead: None,
            current: None,
            failed: false,
        };
        futures::stream::unfold(assembly, |mut assembly| async move {
            loop {
                if let Some(current) = assembly.current.as_mut() {
                    match current.next().await {
                        Some(Ok(chunk)) => return Some((Ok(chunk), assembly)),
                        Some(Err(error)) => {
                            assembly.current = None;
                            assembly.failed = true;
                            return Some((Err(error), assembly));
                        }
                        None => assembly.current = None,
                    }
                }
                if assembly.failed {
                    return None;
                }
                match assembly.pieces.pop_front()? {
                    Piece::Literal(bytes) => return Some((Ok(bytes), assembly)),
                    Piece::Slice { index, within } => match assembly.slice(index).await {
                        Ok(body) => assembly.current = Some(body.part(within)),
                        Err(error) => {
                            assembly.failed = true;
                            return Some((Err(error), assembly));
                        }
                    },
                }
            }
        })
        .boxed()
    }
}

/// The state of one sliced response body.
struct Assembly {
    edge: Arc<Edge>,
    request: RequestContext,
    directives: Directives,
    /// Every slice must be of this version (the first slice's).
    version: Version,
    pieces: VecDeque<Piece>,
    /// The slice last used (a multipart body may need it again).
    held: Option<(u64, SliceBody)>,
    read_ahead: Option<u64>,
    current: Option<ByteStream>,
    failed: bool,
}

impl Assembly {
    async fn slice(&mut self, index: u64) -> Result<SliceBody, std::io::Error> {
        let next = self.pieces.iter().find_map(|piece| match piece {
            Piece::Slice { index: next, .. } if *next != index => Some(*next),
            _ => None,
        });
        if let Some(next) = next
            && self.read_ahead != Some(next)
        {
            self.read_ahead = Some(next);
            self.edge.read_ahead(&self.request, next);
        }
        if let Some((held, body)) = &self.held
            && *held == index
        {
            return Ok(body.clone());
        }
        let size = self.edge.settings.slice_size;
        let obtained = self
            .edge
            .obtain_slice(
                &self.request.key,
                index,
                &self.request,
                &self.directives,
                false,
            )
            .await
            .map_err(std::io::Error::other)?;
        match obtained {
            Obtained::Slice(slice) if slice.meta.version != self.version => {
                Metrics::bump(&self.edge.metrics.slice_version_changes);
                self.edge.forget_slices(&self.request.key).await;
                if let Some(fill) = &slice.joined {
                    self.edge.abandon_fill(fill);
                }
                tracing::warn!(
                    key = self.request.key,
                    "the object changed at the origin while it was being sent; response cut short"
                );
                Err(std::io::Error::other(
                    "the object changed at the origin while it was being sent",
                ))
            }
            Obtained::Slice(slice) if slice.index(size) == index => {
                self.held = Some((index, slice.body.clone()));
                Ok(slice.body)
            }
            _ => Err(std::io::Error::other(
                "the origin stopped serving slices of this object",
            )),
        }
    }
}

/// What a request wants of an object of this version: the slice its
/// answer starts in is fetched first.
fn wanted_range(request: &RequestContext, version: &Version) -> RangeRequest {
    respond::wanted_ranges(
        &request.method,
        &request.headers,
        &version.validators(),
        version.length,
    )
}

/// A sliced object as the responder's content: each range of the answer
/// becomes the slices it covers, obtained in order as the body is sent.
struct Slices<'a> {
    edge: &'a Arc<Edge>,
    request: &'a RequestContext,
    version: Version,
    first: ObtainedSlice,
}

impl respond::Content for Slices<'_> {
    fn range(self, range: Range<u64>) -> ResponseBody {
        self.parts(vec![Part::Range(range)])
    }

    fn parts(self, parts: Vec<Part>) -> ResponseBody {
        let size = self.edge.settings.slice_size;
        let mut pieces = Vec::new();
        for part in parts {
            match part {
                Part::Literal(bytes) => pieces.push(Piece::Literal(bytes)),
                Part::Range(range) => pieces.extend(slice::pieces(range, size)),
            }
        }
        if pieces.is_empty() {
            return ResponseBody::Empty;
        }
        ResponseBody::Stream(
            self.edge
                .assemble(self.request, self.version, pieces, self.first),
        )
    }
}

/// The slice a response starts with.
fn first_index(wanted: &RangeRequest, size: u64) -> u64 {
    match wanted {
        RangeRequest::Single(range) => range.start / size,
        RangeRequest::Multiple(ranges) => ranges.first().map_or(0, |range| range.start / size),
        RangeRequest::Full | RangeRequest::Unsatisfiable => 0,
    }
}

/// The slice to fetch first for an object of unknown size: the one the
/// range starts in, or the first (which tells the length) when the start
/// depends on it or an `If-Range` may turn the answer into the whole.
fn probe_index(request: &RequestContext, size: u64) -> u64 {
    if request.headers.contains_key(header::IF_RANGE) {
        return 0;
    }
    request
        .headers
        .get(header::RANGE)
        .and_then(slice::first_byte)
        .map_or(0, |first| first / size)
}
