//! Answers built from a response head and body, stored or filling, by
//! kinema-http's responder: client conditionals (304/412), ranges
//! (206/416, multipart) and HEAD. Only a complete (`200`) response is a
//! representation to answer them from; anything else is sent as it is.

use super::*;

/// Where a response's body comes from.
pub(super) struct FillBody(pub(super) Arc<Fill>);

/// Builds the answer to a GET/HEAD from a response head and a body being
/// filled (RFC 9110 §13.2.2, §14, §9.3.2).
pub(super) async fn respond(
    request: &Incoming_,
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
    request: &Incoming_,
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
    request: &Incoming_,
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
    request: &Incoming_,
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
    #[allow(
        clippy::too_many_arguments,
        reason = "one call site per role; a struct would only rename them"
    )]
    pub(super) async fn answer_from_fill(
        self: &Arc<Self>,
        request: &Incoming_,
        key: &str,
        fill: Arc<Fill>,
        waiter: bool,
        candidate: Option<Arc<StoredResponse>>,
        forward: ForwardReason,
        request_directives: &Directives,
    ) -> Response<ResponseBody> {
        let head = match fill.head().await {
            Ok(head) => head,
            Err(error) => {
                if let Some(response) =
                    self.stale_on_error(request, candidate.as_ref(), request_directives)
                {
                    return response;
                }
                return error_response(&error, forward);
            }
        };
        match &head.slicing {
            Slicing::Whole => {}
            Slicing::Large(version) if self.slicing(request) => {
                return Box::pin(self.serve_slices(
                    request,
                    Some(version.clone()),
                    None,
                    request_directives,
                ))
                .await;
            }
            Slicing::Slice(meta) if self.slicing(request) => {
                let first = slices::ObtainedSlice::from_fill(fill.clone(), &head, meta, waiter);
                return Box::pin(self.serve_slices(
                    request,
                    Some(meta.version.clone()),
                    Some(first),
                    request_directives,
                ))
                .await;
            }
            Slicing::Large(_) | Slicing::Slice(_) | Slicing::Refused => {
                let mut status = CacheStatus::forward(forward);
                status.detail = Some(Detail::SliceRefused);
                return self.pass(request, None, status).await;
            }
        }
        // A 5xx with Retry-After is a deliberate refusal by an origin that
        // is up (overload, admission: RFC 9110 §10.2.3, §15.6.4), not an
        // outage: it reaches the client as it is, never replaced by a
        // stale copy, which would start the very session it refused.
        if head.status.is_server_error()
            && !head.headers.contains_key(header::RETRY_AFTER)
            && let Some(response) =
                self.stale_on_error(request, candidate.as_ref(), request_directives)
        {
            return response;
        }
        let shares = head.shared
            && head
                .secondary_key
                .as_ref()
                .is_some_and(|secondary| policy::vary_matches(secondary, &request.headers));
        if waiter && !shares {
            // Not ours to share (private, or varying on headers this
            // request sends differently): fetch for ourselves.
            let mut status = CacheStatus::forward(forward);
            status.detail = Some(Detail::NotShareable);
            return self.pass(request, None, status).await;
        }
        let mut status = CacheStatus::forward(forward);
        status.forward_status = Some(if head.validated {
            304
        } else {
            head.status.as_u16()
        });
        status.stored = head.stored;
        status.collapsed = waiter;
        status.detail = head.detail;
        let mut headers = head.headers.clone();
        let age = policy::current_age(
            &headers,
            head.request_time,
            head.response_time,
            self.clock.now(),
        );
        set_age(&mut headers, age);
        status.apply(&mut headers);
        let _ = key;
        respond(request, head.status, headers, FillBody(fill)).await
    }
}
