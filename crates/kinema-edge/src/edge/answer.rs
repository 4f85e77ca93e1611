//! The response phase: answers built from a response head and body,
//! stored or filling, with their `Age` and `Cache-Status`, by kinema-http's
//! responder: client conditionals (304/412), ranges (206/416, multipart)
//! and HEAD. Only a complete (`200`) response is a representation to
//! answer them from; anything else is sent as it is. Then the last touches
//! every response gets ([`Edge::response_filter`]), and the edge's error
//! answers.

use super::*;

/// Where a response's body comes from.
pub(super) struct FillBody(pub(super) Arc<Fill>);

/// Builds the answer to a GET/HEAD from a response head and a body being
/// filled (RFC 9110 §13.2.2, §14, §9.3.2).
pub(super) async fn respond(
    request: &RequestContext,
    status: StatusCode,
    headers: HeaderMap,
    body: FillBody,
) -> Response<ResponseBody> {
    let fill = body.0;
    if status != StatusCode::OK {
        return as_is(request, status, headers, fill.body());
    }
    let Some(length) = content_length(&headers) else {
        // Of unknown length: the preconditions now, a range once the whole
        // (bounded-size) body is in. A body handed to this reader alone may
        // be of any size and is never buffered: it is sent whole, as RFC
        // 9110 §14.2 lets a server ignore Range.
        let representation = Representation::of_head(&headers, 0, &request.headers);
        if let Some(answer) = respond::precondition_answer(
            &request.method,
            &request.headers,
            &representation.validators(),
            &headers,
        ) {
            return answer;
        }
        if request.method == Method::GET
            && request.headers.contains_key(header::RANGE)
            && !fill.handed_over()
        {
            return match fill.whole_body().await {
                Ok(whole) => answer_held(request, headers, &whole, None),
                Err(error) => error_response(&error, ForwardReason::Miss),
            };
        }
        return as_is(request, status, headers, fill.body());
    };
    let representation = Representation::of_head(&headers, length, &request.headers);
    // Several ranges need the whole body, which a body handed to this
    // reader alone is never buffered into: it is sent whole instead.
    let without_range;
    let mut request_headers = &request.headers;
    if fill.handed_over()
        && matches!(
            respond::wanted_ranges(
                &request.method,
                request_headers,
                &representation.validators(),
                length
            ),
            RangeRequest::Multiple(_)
        )
    {
        let mut headers = request.headers.clone();
        headers.remove(header::RANGE);
        without_range = headers;
        request_headers = &without_range;
    }
    let planned = match respond::answer(&request.method, request_headers, representation, headers) {
        Answer::Complete(response) => return response,
        Answer::Content(planned) => planned,
    };
    match planned.body() {
        Body::Nothing => planned.into_response_with(ResponseBody::Empty),
        // One range is cut from the fill as it streams in: a range on a
        // miss does not wait for the whole object.
        Body::Range(range) => {
            let (skip, take) = (range.start, range.end - range.start);
            let stream = if skip == 0 && take == length {
                fill.body()
            } else {
                slice::cut(fill.body(), skip, take)
            };
            planned.into_response_with(ResponseBody::Stream(stream))
        }
        Body::Parts(_) => match fill.whole_body().await {
            Ok(whole) => planned.into_response(Held {
                bytes: &whole,
                file: None,
            }),
            Err(error) => error_response(&error, ForwardReason::Miss),
        },
    }
}

/// A response that is not a representation to answer ranges or
/// conditionals from, sent as it is (HEAD: without its body).
fn as_is(
    request: &RequestContext,
    status: StatusCode,
    mut headers: HeaderMap,
    body: BodyStream,
) -> Response<ResponseBody> {
    let body = if request.method == Method::HEAD {
        ResponseBody::Empty
    } else {
        headers.remove(header::CONTENT_RANGE);
        ResponseBody::Stream(body)
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok())
}

/// Answers from a stored response, its age as of `now`.
pub(super) fn serve_stored(
    request: &RequestContext,
    stored: &StoredResponse,
    status: CacheStatus,
    now: SystemTime,
) -> Response<ResponseBody> {
    let mut headers = stored.headers.clone();
    set_age(&mut headers, stored.age(now));
    status.apply(&mut headers);
    if stored.status == StatusCode::OK {
        return answer_held(request, headers, &stored.body, stored.file.as_ref());
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(stored.body.len()));
    let body = if request.method == Method::HEAD {
        ResponseBody::Empty
    } else {
        respond::Content::range(
            Held {
                bytes: &stored.body,
                file: stored.file.as_ref(),
            },
            0..stored.body.len() as u64,
        )
    };
    let mut response = Response::new(body);
    *response.status_mut() = stored.status;
    *response.headers_mut() = headers;
    response
}

/// Answers from a complete response held whole: `file`, when given, holds
/// the same bytes and is what a whole or single-range answer is sent from.
fn answer_held(
    request: &RequestContext,
    headers: HeaderMap,
    whole: &Bytes,
    file: Option<&SharedFile>,
) -> Response<ResponseBody> {
    let representation = Representation::of_head(&headers, whole.len() as u64, &request.headers);
    match respond::answer(&request.method, &request.headers, representation, headers) {
        Answer::Complete(response) => response,
        Answer::Content(planned) => planned.into_response(Held { bytes: whole, file }),
    }
}

pub(super) fn set_age(headers: &mut HeaderMap, age: Duration) {
    headers.insert(header::AGE, HeaderValue::from(age.as_secs()));
}

impl Edge {
    /// The last phase, on every response the phases made: hop-by-hop
    /// fields removed and `Via` added, a signed copy's freshness capped at
    /// its token, client bytes counted, and the next segments prefetched
    /// after a segment is served (when `may_prefetch`, see
    /// [`Edge::may_prefetch`]).
    pub(super) fn response_filter(
        self: &Arc<Self>,
        request: &RequestContext,
        mut response: Response<ResponseBody>,
        may_prefetch: bool,
    ) -> Response<ResponseBody> {
        finish(&mut response);
        if let Some(expires_at) = request.token_expiry {
            cap_signed_freshness(&mut response, expires_at, self.clock.now());
        }
        self.count_client_bytes(&mut response);
        if may_prefetch
            && request.method == Method::GET
            && response.status().is_success()
            && let Some(client) = request.client
        {
            self.clone().prefetch_after(request, client);
        }
        response
    }

    fn count_client_bytes(&self, response: &mut Response<ResponseBody>) {
        match response.body_mut() {
            ResponseBody::Stream(_) => {
                let ResponseBody::Stream(stream) =
                    std::mem::replace(response.body_mut(), ResponseBody::Empty)
                else {
                    return;
                };
                let metrics = self.metrics.clone();
                *response.body_mut() = ResponseBody::Stream(
                    stream
                        .inspect_ok(move |chunk| {
                            Metrics::add(&metrics.client_bytes, chunk.len() as u64)
                        })
                        .boxed(),
                );
            }
            body => Metrics::add(&self.metrics.client_bytes, body.known_length().unwrap_or(0)),
        }
    }
}

/// A verified signed request is answered from the copy every token of its
/// path shares, whose freshness the token that filled it set: capped here
/// at this request's token, since a cache below this edge (a browser, an
/// edge without keys) keeps it under this token's URL (kinema-auth
/// `cache`).
fn cap_signed_freshness(
    response: &mut Response<ResponseBody>,
    expires_at: SystemTime,
    now: SystemTime,
) {
    let seconds_left = expires_at
        .duration_since(now)
        .map_or(0, |left| left.as_secs());
    let headers = response.headers_mut();
    for name in [&header::CACHE_CONTROL, &policy::CDN_CACHE_CONTROL] {
        let Some(value) = headers.get(name) else {
            continue;
        };
        let capped = value
            .to_str()
            .ok()
            .and_then(|text| {
                HeaderValue::from_str(&kinema_auth::cap_cache_control(text, seconds_left)).ok()
            })
            .unwrap_or_else(|| HeaderValue::from_static("no-store"));
        headers.insert(name.clone(), capped);
    }
}

/// Last touches on every response: hop-by-hop fields removed, `Via` added.
fn finish(response: &mut Response<ResponseBody>) {
    let headers = response.headers_mut();
    policy::strip_hop_by_hop(headers);
    headers.append(header::VIA, HeaderValue::from_static(crate::upstream::VIA));
}

/// A one-line plain-text answer no cache keeps, the one shape of an error
/// ([`respond::error`]); `text`'s closing newline is the one it adds.
pub(super) fn plain(status: StatusCode, text: &str) -> Response<ResponseBody> {
    respond::error(status, text.trim_end_matches('\n'), respond::no_store())
}

/// 504 for `only-if-cached` when nothing usable is stored (RFC 9111
/// §5.2.1.7).
pub(super) fn not_in_cache() -> Response<ResponseBody> {
    let mut response = plain(StatusCode::GATEWAY_TIMEOUT, "not in cache\n");
    CacheStatus::default()
        .with_detail(Detail::OnlyIfCached)
        .apply(response.headers_mut());
    response
}

/// 502 for an unreachable or failing origin, 504 for a slow one.
pub(super) fn error_response(
    error: &OriginError,
    forward: ForwardReason,
) -> Response<ResponseBody> {
    if let OriginError::RequestBody(_) = error {
        tracing::debug!(%error, "client request body refused");
    } else {
        tracing::warn!(%error, "origin fetch failed");
    }
    let text = match error {
        OriginError::Timeout => "the origin did not answer in time\n",
        OriginError::RequestBody(_) => {
            "the request body is malformed; send a valid Content-Length or chunked body\n"
        }
        _ => "the origin could not be reached\n",
    };
    let mut response = plain(error.status(), text);
    let mut status = CacheStatus::forward(forward);
    status.detail = Some(Detail::Origin(match error {
        OriginError::Timeout => OriginFailure::Timeout,
        OriginError::Connect(_) => OriginFailure::Unreachable,
        OriginError::Protocol(_) => OriginFailure::Error,
        OriginError::RequestBody(_) => OriginFailure::RequestBody,
    }));
    status.apply(response.headers_mut());
    response
}
