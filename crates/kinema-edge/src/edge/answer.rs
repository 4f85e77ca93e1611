//! Answers built from a response head and body, stored or filling: client
//! conditionals (304/412), ranges (206/416, multipart) and HEAD.

use super::*;

/// Where a response's body comes from.
pub(super) struct FillBody(pub(super) Arc<Fill>);

/// Builds the answer to a GET/HEAD from a response head and body: client
/// conditionals (RFC 9110 §13.2.2, 304), ranges (§14, 206/416), HEAD.
pub(super) async fn respond(
    request: &Incoming_,
    status: StatusCode,
    mut headers: HeaderMap,
    body: FillBody,
) -> Response<ResponseBody> {
    if status == StatusCode::OK
        && let Some(answer) = precondition_answer(request, &headers)
    {
        return answer;
    }
    if request.method == Method::HEAD {
        let mut response = Response::new(ResponseBody::Empty);
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        return response;
    }
    if status == StatusCode::OK
        && let Some(range_header) = request.headers.get(header::RANGE)
    {
        // A single range of an object of known length is cut from the fill
        // as it streams in: a range on a miss does not wait for the whole
        // object.
        let length = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|text| text.parse::<u64>().ok());
        if let Some(length) = length
            && conditional::if_range_allows(&request.headers, &validators(&headers))
            && let RangeRequest::Single(range) = range::parse(range_header.as_bytes(), length)
        {
            if let Ok(value) = HeaderValue::from_str(&range::content_range(&range, length)) {
                headers.insert(header::CONTENT_RANGE, value);
            }
            headers.insert(
                header::CONTENT_LENGTH,
                HeaderValue::from(range.end - range.start),
            );
            let stream = slice::cut(body.0.body(), range.start, range.end - range.start);
            let mut response = Response::new(ResponseBody::Stream(stream));
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            *response.headers_mut() = headers;
            return response;
        }
        // Otherwise (several ranges, unknown length) wait for the whole
        // (bounded-size) object, then cut it like a hit. A body handed to
        // this reader alone may be of any size and is never buffered: it
        // is sent whole, as RFC 9110 §14.2 lets a server ignore Range.
        if !body.0.handed_over() {
            return match body.0.whole_body().await {
                Ok(whole) => ranged(request, status, headers, whole, None),
                Err(error) => error_response(&error, "miss"),
            };
        }
    }
    let stream = body.0.body();
    headers.remove(header::CONTENT_RANGE);
    let mut response = Response::new(ResponseBody::Stream(stream));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// Answers from a stored response.
pub(super) fn serve_stored(
    request: &Incoming_,
    stored: &StoredResponse,
    status: CacheStatus,
) -> Response<ResponseBody> {
    let mut headers = stored.headers.clone();
    set_age(&mut headers, stored.age(SystemTime::now()));
    status.apply(&mut headers);
    if stored.status == StatusCode::OK
        && let Some(answer) = precondition_answer(request, &headers)
    {
        return answer;
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(stored.body.len()));
    if request.method == Method::HEAD {
        let mut response = Response::new(ResponseBody::Empty);
        *response.status_mut() = stored.status;
        *response.headers_mut() = headers;
        return response;
    }
    ranged(
        request,
        stored.status,
        headers,
        stored.body.clone(),
        stored.file.as_ref(),
    )
}

/// Cuts the requested range out of a whole body (RFC 9110 §14); `file`, when
/// given, holds the same bytes and is what a whole or single-range answer
/// is sent from.
pub(super) fn ranged(
    request: &Incoming_,
    status: StatusCode,
    mut headers: HeaderMap,
    whole: Bytes,
    file: Option<&SharedFile>,
) -> Response<ResponseBody> {
    let length = whole.len() as u64;
    let range_header = request.headers.get(header::RANGE);
    let wanted = match range_header {
        Some(value)
            if status == StatusCode::OK
                && conditional::if_range_allows(&request.headers, &validators(&headers)) =>
        {
            range::parse(value.as_bytes(), length)
        }
        _ => RangeRequest::Full,
    };
    headers.remove(header::CONTENT_LENGTH);
    let mut response = match wanted {
        RangeRequest::Full => {
            let body = match file {
                Some(file) => ResponseBody::File(file.slice(0..length)),
                None => ResponseBody::Full(whole),
            };
            let mut response = Response::new(body);
            *response.status_mut() = status;
            response
        }
        RangeRequest::Single(range) => {
            if let Ok(value) = HeaderValue::from_str(&range::content_range(&range, length)) {
                headers.insert(header::CONTENT_RANGE, value);
            }
            let body = match file {
                Some(file) => ResponseBody::File(file.slice(range.clone())),
                None => ResponseBody::Full(whole.slice(range.start as usize..range.end as usize)),
            };
            let mut response = Response::new(body);
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            response
        }
        RangeRequest::Multiple(ranges) => {
            let layout = multipart_layout(&mut headers, &ranges, length);
            let mut parts = Vec::with_capacity(ranges.len() * 2 + 1);
            for (part_header, range) in layout.part_headers.iter().zip(&ranges) {
                parts.push(part_header.clone());
                parts.push(whole.slice(range.start as usize..range.end as usize));
            }
            parts.push(layout.closing.clone());
            let mut response = Response::new(ResponseBody::Parts(parts));
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            response
        }
        RangeRequest::Unsatisfiable => {
            if let Ok(value) = HeaderValue::from_str(&range::unsatisfied_content_range(length)) {
                headers.insert(header::CONTENT_RANGE, value);
            }
            let mut response = Response::new(ResponseBody::Empty);
            *response.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            response
        }
    };
    *response.headers_mut() = headers;
    response
}

pub(super) fn validators(headers: &HeaderMap) -> Validators<'_> {
    Validators {
        etag: headers
            .get(header::ETAG)
            .and_then(|value| EntityTag::parse(value.as_bytes())),
        last_modified: headers
            .get(header::LAST_MODIFIED)
            .and_then(kinema_http::http_date::parse),
    }
}

/// RFC 9111 §4.3.2: a cache evaluates If-None-Match / If-Modified-Since
/// of a request against the response it would send.
pub(super) fn evaluate_conditionals(request: &Incoming_, headers: &HeaderMap) -> Precondition {
    // Most requests carry no precondition: then nothing is parsed.
    if ![
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
        header::IF_MATCH,
        header::IF_UNMODIFIED_SINCE,
    ]
    .iter()
    .any(|name| request.headers.contains_key(name))
    {
        return Precondition::Proceed;
    }
    conditional::evaluate(&request.method, &request.headers, &validators(headers))
}

/// Lays out a `multipart/byteranges` answer (RFC 9110 §14.6) for `ranges`
/// of a representation of `length` bytes with `headers`: each part keeps
/// the representation's type, and the response takes the multipart type.
pub(super) fn multipart_layout(
    headers: &mut HeaderMap,
    ranges: &[std::ops::Range<u64>],
    length: u64,
) -> range::Multipart {
    let part_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_string();
    let boundary = format!("kinema-{:016x}", length ^ 0x6b69_6e65_6d61);
    let layout = range::multipart(&boundary, &part_type, ranges, length);
    if let Ok(value) = HeaderValue::from_str(&layout.content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    layout
}

/// The answer to a request whose preconditions rule out the response it
/// would get (with these `headers`): a 304 or a 412; `None` to serve it.
pub(super) fn precondition_answer(
    request: &Incoming_,
    headers: &HeaderMap,
) -> Option<Response<ResponseBody>> {
    match evaluate_conditionals(request, headers) {
        // Cloned only for a 304, whose head is the response's.
        Precondition::NotModified => Some(not_modified(headers.clone())),
        Precondition::Failed => Some(plain(
            StatusCode::PRECONDITION_FAILED,
            "precondition failed\n",
        )),
        Precondition::Proceed => None,
    }
}

/// RFC 9110 §15.4.5: a 304 carries the fields a 200 would have, without
/// the body's framing.
pub(super) fn not_modified(mut headers: HeaderMap) -> Response<ResponseBody> {
    for name in [
        header::CONTENT_LENGTH,
        header::CONTENT_RANGE,
        header::TRANSFER_ENCODING,
    ] {
        headers.remove(name);
    }
    let mut response = Response::new(ResponseBody::Empty);
    *response.status_mut() = StatusCode::NOT_MODIFIED;
    *response.headers_mut() = headers;
    response
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
        forward: &'static str,
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
                status.detail = Some("slice-refused");
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
            status.detail = Some("not-shareable");
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
            SystemTime::now(),
        );
        set_age(&mut headers, age);
        status.apply(&mut headers);
        let _ = key;
        respond(request, head.status, headers, FillBody(fill)).await
    }
}
