//! Filling from the origin: the task that fetches one key (a whole object
//! or one slice), feeds its coalesced fill and stores what may be stored,
//! a slice once it is checked against its `Content-Range` (`absorb_slice`).

use super::*;

impl Edge {
    /// Fetches from the origin for one key and feeds the fill; stores the
    /// response when allowed. Runs in its own task, so a client that goes
    /// away does not cancel the fill the others wait on.
    pub(super) async fn run_fill(
        &self,
        key: &str,
        request: &RequestContext,
        job: FillJob,
        fill: &Arc<Fill>,
    ) {
        let mut headers = self.upstream_headers(request, &Method::GET);
        // The fill is shared and stored: fetch the whole representation
        // unconditionally, whatever this one client asked (RFC 9111 §4.3.1
        // lets a cache send its own validators instead).
        for name in [
            header::RANGE,
            header::IF_RANGE,
            header::IF_NONE_MATCH,
            header::IF_MODIFIED_SINCE,
        ] {
            headers.remove(name);
        }
        let (object_key, candidate, slice_job, prefetch) = match job {
            FillJob::Whole {
                candidate,
                prefetch,
            } => (key.to_string(), candidate, None, prefetch),
            FillJob::Slice {
                object_key,
                index,
                probe,
                ..
            } => {
                // RFC 9110 §14.2: an aligned range, the same for every
                // client, so slices are shared whatever each one asked.
                headers.insert(
                    header::RANGE,
                    slice::range_header(index, self.settings.slice_size),
                );
                Metrics::bump(&self.metrics.slice_fills);
                (object_key, None, Some((index, probe)), false)
            }
        };
        let key = object_key.as_str();
        if let Some(stored) = &candidate {
            Metrics::bump(&self.metrics.revalidations);
            // RFC 9111 §4.3.1: validate with the stored validators.
            if let Some(etag) = stored.headers.get(header::ETAG) {
                headers.insert(header::IF_NONE_MATCH, etag.clone());
            }
            if let Some(modified) = stored.headers.get(header::LAST_MODIFIED) {
                headers.insert(header::IF_MODIFIED_SINCE, modified.clone());
            }
        }
        let request_time = self.clock.now();
        let origin_request = OriginRequest {
            method: Method::GET,
            path_and_query: request.path_and_query.clone(),
            headers,
        };
        let response = match self.fetch(request, origin_request, None).await {
            Ok(response) => response,
            Err(error) => {
                fill.fail(error);
                return;
            }
        };
        let response_time = self.clock.now();
        let (parts, body) = response.into_parts();
        let mut probe_refused_range = false;
        if let Some((index, probe)) = slice_job {
            if parts.status == StatusCode::PARTIAL_CONTENT || !probe {
                self.absorb_slice(
                    key,
                    request,
                    index,
                    (parts, body),
                    fill,
                    (request_time, response_time),
                )
                .await;
                return;
            }
            // A probe answered with anything but a 206 got the object's own
            // answer: a 200 from an origin that ignores ranges (so never
            // slice this one), a 404, a 5xx… It is handled as a fill of the
            // whole object below, except a 416: that answers our aligned
            // range, right for the client that asked (its range starts no
            // earlier) but not for others waiting on the object.
            if parts.status == StatusCode::OK {
                self.unsliceable.insert(key.to_string(), ());
            }
            probe_refused_range = parts.status == StatusCode::RANGE_NOT_SATISFIABLE;
        }
        if parts.status == StatusCode::NOT_MODIFIED
            && let Some(stored) = &candidate
        {
            // RFC 9111 §4.3.4: freshen the stored response with the 304's
            // fields and the new exchange times.
            Metrics::bump(&self.metrics.revalidated_not_modified);
            let mut merged = stored.headers.clone();
            policy::merge_headers(&mut merged, &parts.headers);
            let fresh = Arc::new(stored.derive(merged, request_time, response_time, false));
            let storable =
                policy::storable(&Method::GET, &request.headers, fresh.status, &fresh.headers);
            if storable.is_ok() {
                self.store.replace(key, fresh.clone());
                if fresh.status == StatusCode::OK {
                    self.learn_playlist(key, &fresh.body);
                }
            } else {
                self.store.remove(key).await;
            }
            fill.publish_head(FillHead {
                status: fresh.status,
                headers: fresh.headers.clone(),
                request_time,
                response_time,
                secondary_key: Some(fresh.secondary_key.clone()),
                shared: true,
                stored: storable.is_ok(),
                validated: true,
                detail: storable
                    .err()
                    .map(|reason| Detail::NotStored(NotStored::Policy(reason))),
                slicing: Slicing::Whole,
            });
            fill.seal();
            fill.push(fresh.body.clone());
            fill.complete();
            return;
        }
        let headers = policy::stored_headers(&parts.headers);
        let secondary_key = policy::vary_names(&parts.headers)
            .map(|names| policy::secondary_key(&names, &request.headers));
        let declared_length = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|text| text.parse::<u64>().ok());
        let verdict = self.storability_verdict(
            request,
            &parts,
            declared_length,
            Exchange {
                probe_refused_range,
                revalidating: candidate.is_some(),
                prefetch,
            },
        );
        // A large complete response is not kept whole, so that a seek into
        // it fetches only the slices it covers: its body is abandoned (the
        // connection closes) and every reader is answered from slices
        // fetched by range.
        if slice_job.is_none()
            && let Some(version) = self.slicing_decision(key, &parts, declared_length, verdict)
        {
            if candidate.is_some() {
                self.store.remove(key).await;
            }
            self.sliced_objects
                .insert(key.to_string(), Arc::new(version.clone()));
            fill.publish_head(FillHead {
                status: parts.status,
                headers,
                request_time,
                response_time,
                secondary_key: Some(Vec::new()),
                shared: true,
                stored: false,
                validated: false,
                detail: Some(Detail::Sliced),
                slicing: Slicing::Large(version),
            });
            fill.complete();
            return;
        }
        let personal = verdict.is_err_and(NotStored::personal);
        if hit_for_pass(verdict, parts.status) {
            self.pass_keys.insert(key.to_string(), ());
        }
        // A reader's response is complete as soon as its last byte is sent:
        // with the origin's Content-Length (passed on), when the fill pushes
        // the last declared byte; for a 204, at the head. Both come before
        // the fill completes, so the object is stored before the fill
        // releases what completes it: a client holding a complete response
        // then finds the object stored on its next request (a hit, an
        // answer to only-if-cached) rather than racing this task.
        let mut store_it = verdict.is_ok() && secondary_key.is_some();
        let store_whole = |whole: Bytes| {
            if parts.status == StatusCode::OK {
                self.learn_playlist(key, &whole);
            }
            if let Some(secondary_key) = &secondary_key {
                self.store.insert(
                    key,
                    Arc::new(StoredResponse::new(
                        parts.status,
                        headers.clone(),
                        whole,
                        request_time,
                        response_time,
                        secondary_key.clone(),
                    )),
                );
            }
        };
        let shared = !personal && secondary_key.is_some();
        let head = FillHead {
            status: parts.status,
            headers: headers.clone(),
            request_time,
            response_time,
            secondary_key: secondary_key.clone(),
            shared,
            stored: verdict.is_ok(),
            validated: false,
            detail: verdict.err().map(Detail::NotStored),
            slicing: Slicing::Whole,
        };
        // Only the leader will read a response that is neither shared (its
        // waiters fetch for themselves) nor stored: hand it the origin's
        // body to read at its own pace instead of buffering the whole of
        // it here, so a slow client of a large private download holds back
        // the origin, not the edge's memory (as Varnish's pass streams).
        if !shared && !store_it {
            fill.hand_over(
                head,
                sole_origin_body(body, self.metrics.clone(), self.settings.body_timeout),
            );
            return;
        }
        let mut body = body;
        // No content (a 204, Content-Length: 0): whole already.
        if body.is_end_stream() {
            if store_it {
                store_whole(Bytes::new());
                store_it = false;
            }
            fill.seal();
        }
        fill.publish_head(head);
        loop {
            match self.next_origin_chunk(&mut body, fill).await {
                OriginChunk::Data(data) => {
                    let received = fill.length() + data.len() as u64;
                    if received > self.settings.max_object_size {
                        store_it = false;
                    }
                    // The last declared byte: hyper ends the body here, so
                    // the object is whole; stored before it is pushed.
                    if declared_length == Some(received) {
                        if store_it {
                            store_whole(fill.whole_body_ending_with(&data));
                            store_it = false;
                        }
                        fill.seal();
                    }
                    fill.push(data);
                }
                OriginChunk::End => break,
                // Failed before the object was whole: nothing is stored.
                OriginChunk::Failed => return,
            }
        }
        // Without a Content-Length (chunked) the readers' responses end
        // only when the fill completes, so storing now is in time. With one,
        // a body that ended short is never stored.
        if store_it && declared_length.is_none() {
            store_whole(fill.whole_body_now());
        }
        fill.complete();
    }

    /// The storability verdict on an origin's response to a fill: RFC
    /// 9111's ([`policy::storable`]), then the edge's own limits.
    fn storability_verdict(
        &self,
        request: &RequestContext,
        parts: &http::response::Parts,
        declared_length: Option<u64>,
        exchange: Exchange,
    ) -> Result<(), NotStored> {
        if exchange.probe_refused_range {
            return Err(NotStored::RangeNotSatisfiable);
        }
        // Nobody asked for a prefetch: an error answering it (a segment
        // past the end, an origin in trouble) is not kept for those who
        // ask later.
        if exchange.prefetch && parts.status.as_u16() >= 400 {
            Metrics::bump(&self.metrics.prefetch_errors);
            return Err(NotStored::PrefetchError);
        }
        policy::storable(&Method::GET, &request.headers, parts.status, &parts.headers)
            .map_err(NotStored::Policy)?;
        if declared_length.is_some_and(|length| length > self.settings.max_object_size) {
            return Err(NotStored::TooLarge);
        }
        // A 5xx never replaces a stored response that stale-if-error may
        // still serve.
        if parts.status.is_server_error() && exchange.revalidating {
            return Err(NotStored::ServerError);
        }
        Ok(())
    }

    /// The slicing decision on a complete response (not a slice): the
    /// version to answer it from slices by, when it is large enough (above
    /// `slice_threshold`; stored or too large to store whole) and its
    /// origin serves slices of it.
    fn slicing_decision(
        &self,
        key: &str,
        parts: &http::response::Parts,
        declared_length: Option<u64>,
        verdict: Result<(), NotStored>,
    ) -> Option<Version> {
        if parts.status != StatusCode::OK
            || self.settings.slice_threshold == 0
            || !matches!(verdict, Ok(()) | Err(NotStored::TooLarge))
            || declared_length.is_none_or(|length| length <= self.settings.slice_threshold)
            || self.unsliceable.contains_key(key)
        {
            return None;
        }
        Version::of_whole(&parts.headers).ok()
    }

    /// The next chunk of an origin's body for `fill`, counted as origin
    /// bytes. A frame that does not come within `body_timeout`, or a broken
    /// body, fails the fill (whole objects and slices alike), and the
    /// caller stops.
    pub(super) async fn next_origin_chunk(&self, body: &mut Incoming, fill: &Fill) -> OriginChunk {
        match next_origin_data(body, &self.metrics, self.settings.body_timeout).await {
            Ok(Some(data)) => OriginChunk::Data(data),
            Ok(None) => OriginChunk::End,
            Err(error) => {
                fill.fail(error);
                OriginChunk::Failed
            }
        }
    }
}

/// Hit-for-pass is for URLs whose responses cannot be shared; a 5xx (an
/// admission refusal, a failure) says nothing of the next one, and passing
/// would bypass the stale copy an outage needs; a 416 to a probe and a
/// prefetch's error say nothing of the URL's other answers.
fn hit_for_pass(verdict: Result<(), NotStored>, status: StatusCode) -> bool {
    match verdict {
        Ok(()) | Err(NotStored::RangeNotSatisfiable | NotStored::PrefetchError) => false,
        Err(_) => !status.is_server_error(),
    }
}

/// What a fill's exchange was, besides the response: what the verdict on
/// storing it depends on.
#[derive(Debug, Clone, Copy)]
struct Exchange {
    /// A slice probe answered 416: right for the client that asked only.
    probe_refused_range: bool,
    /// A stored response is being revalidated.
    revalidating: bool,
    /// A prefetch, asked by no client.
    prefetch: bool,
}

impl Edge {
    /// Feeds a slice fill from the origin's answer to its `Range` request:
    /// checks it, streams it to the readers, stores it (under the object's
    /// own key, as a `200`, when the one slice is the whole object).
    pub(super) async fn absorb_slice(
        &self,
        object_key: &str,
        request: &RequestContext,
        index: u64,
        (parts, body): (http::response::Parts, Incoming),
        fill: &Arc<Fill>,
        (request_time, response_time): (SystemTime, SystemTime),
    ) {
        let checked = slice::check_slice(
            parts.status,
            &parts.headers,
            index,
            self.settings.slice_size,
        )
        .and_then(|meta| {
            // RFC 9111 §3.3: a cache that understands ranges may store
            // partial content; whether it may store at all is decided as
            // for the complete response.
            policy::storable(
                &Method::GET,
                &request.headers,
                StatusCode::OK,
                &parts.headers,
            )
            .map(|()| meta)
            .map_err(SliceRefusal::NotStorable)
        });
        let headers = policy::stored_headers(&parts.headers);
        let meta = match checked {
            Ok(meta) => meta,
            Err(reason) => {
                tracing::warn!(
                    key = object_key,
                    status = %parts.status,
                    reason = reason.as_str(),
                    "unusable answer to a slice request; not slicing this object for a while"
                );
                self.unsliceable.insert(object_key.to_string(), ());
                self.sliced_objects.invalidate(object_key);
                fill.publish_head(FillHead {
                    status: parts.status,
                    headers,
                    request_time,
                    response_time,
                    secondary_key: None,
                    shared: false,
                    stored: false,
                    validated: false,
                    detail: Some(Detail::UnusableSlice(reason)),
                    slicing: Slicing::Refused,
                });
                fill.complete();
                return;
            }
        };
        fill.publish_head(FillHead {
            status: parts.status,
            headers: headers.clone(),
            request_time,
            response_time,
            secondary_key: Some(Vec::new()),
            shared: true,
            stored: true,
            validated: false,
            detail: None,
            slicing: Slicing::Slice(meta.clone()),
        });
        // A client's response assembled from slices is complete as soon as
        // the last byte it wants is sent, which for one ending with this
        // slice is when the fill pushes the slice's last byte, before the
        // origin's body ends (a chunked 206 has its terminator still to
        // come). The slice is therefore stored before that byte is pushed,
        // so the client's next request finds it (see `run_fill`).
        let expected = meta.len();
        let stored_key = if meta.is_whole() {
            object_key.to_string()
        } else {
            slice::slice_key(object_key, index)
        };
        let store_slice = |bytes: Bytes| {
            if fill.abandoned() {
                return;
            }
            let stored = if meta.is_whole() {
                StoredResponse::new(
                    StatusCode::OK,
                    slice::whole_headers(&headers, meta.version.length),
                    bytes,
                    request_time,
                    response_time,
                    Vec::new(),
                )
            } else {
                StoredResponse::new(
                    StatusCode::PARTIAL_CONTENT,
                    headers.clone(),
                    bytes,
                    request_time,
                    response_time,
                    Vec::new(),
                )
            };
            self.store.insert(&stored_key, Arc::new(stored));
        };
        let mut stored = false;
        let mut body = body;
        loop {
            match self.next_origin_chunk(&mut body, fill).await {
                OriginChunk::Data(data) => {
                    let received = fill.length() + data.len() as u64;
                    if received > expected {
                        Metrics::bump(&self.metrics.origin_errors);
                        // The origin contradicts its own Content-Range: keep
                        // nothing of it.
                        if stored {
                            self.store.remove(&stored_key).await;
                        }
                        fill.fail(OriginError::Protocol(
                            "the origin sent more than the content-range it announced".into(),
                        ));
                        return;
                    }
                    if received == expected {
                        store_slice(fill.whole_body_ending_with(&data));
                        stored = true;
                        fill.seal();
                    }
                    fill.push(data);
                }
                OriginChunk::End => break,
                // A failure before the announced range is whole stores
                // nothing; one after it (a chunked body cut before its
                // terminator) leaves the slice stored: whole, as its readers
                // already saw.
                OriginChunk::Failed => return,
            }
        }
        if fill.length() != expected {
            Metrics::bump(&self.metrics.origin_errors);
            fill.fail(OriginError::Protocol(
                "the origin sent less than the content-range it announced".into(),
            ));
            return;
        }
        if !stored {
            // An empty range: no byte to store before.
            store_slice(fill.whole_body_now());
        }
        fill.complete();
    }
}
