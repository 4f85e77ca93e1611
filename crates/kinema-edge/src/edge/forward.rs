//! Forwarding to the origin: pass-through of requests the cache does not
//! answer (invalidating after unsafe methods, RFC 9111 §4.4), the headers
//! an origin is sent, and reading origin bodies.

use super::*;

impl Edge {
    /// Forwards a request without caching; unsafe methods that succeed
    /// invalidate what the cache holds for the target (RFC 9111 §4.4).
    pub(super) async fn pass(
        &self,
        request: &RequestContext,
        body: Option<RequestBody>,
        mut status: CacheStatus,
    ) -> Response<ResponseBody> {
        Metrics::bump(&self.metrics.passes);
        let headers = self.upstream_headers(request, &request.method);
        // A broken client body is marked as such, so the failed fetch is
        // answered 400 and not counted against the origin.
        let origin_body = body.map(|body| -> OriginBody {
            StreamBody::new(body.map_ok(Frame::data).map_err(|error| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    ClientBodyError(error.to_string()),
                )
            }))
            .boxed_unsync()
        });
        let has_body = request.headers.contains_key(header::CONTENT_LENGTH)
            || request.headers.contains_key(header::TRANSFER_ENCODING);
        let origin_request = OriginRequest {
            method: request.method.clone(),
            path_and_query: request.path_and_query.clone(),
            headers,
        };
        let response = self
            .fetch(
                request,
                origin_request,
                if has_body { origin_body } else { None },
            )
            .await;
        let response = match response {
            Ok(response) => response,
            Err(error) => {
                return error_response(&error, status.forward.unwrap_or(ForwardReason::Bypass));
            }
        };
        let (parts, body) = response.into_parts();
        if !policy::is_safe(&request.method)
            && (parts.status.is_success() || parts.status.is_redirection())
        {
            self.invalidate_after_unsafe(request, &parts.headers).await;
        }
        let mut headers = parts.headers;
        policy::strip_hop_by_hop(&mut headers);
        status.forward_status = Some(parts.status.as_u16());
        status.apply(&mut headers);
        let mut response = Response::new(incoming_stream(body, self.metrics.clone()));
        *response.status_mut() = parts.status;
        *response.headers_mut() = headers;
        response
    }

    /// RFC 9111 §4.4: the target URI and the same-origin URIs in `Location`
    /// and `Content-Location` are invalidated.
    pub(super) async fn invalidate_after_unsafe(
        &self,
        request: &RequestContext,
        response_headers: &HeaderMap,
    ) {
        let host = request
            .headers
            .get(header::HOST)
            .and_then(|value| value.to_str().ok());
        let mut targets = vec![request.key.clone()];
        for name in [header::LOCATION, header::CONTENT_LOCATION] {
            if let Some(target) = response_headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| key::same_origin_path(value, host, &request.path_and_query))
            {
                targets.push(key::cache_key(&target));
            }
        }
        for target in targets {
            if self.store.remove(&target).await > 0 {
                Metrics::bump(&self.metrics.invalidations);
            }
            self.pass_keys.invalidate(&target);
            self.forget_slices(&target).await;
        }
    }
}

impl Edge {
    /// The request headers of `method` on `request`'s target sent to an
    /// upstream ([`forwarded_headers`]), with this node's credential
    /// (`kinema_auth::node`) when it verified the request's token itself
    /// (its key is a verified signed key): the parent edge or origin then
    /// checks the token for all but the address, which it cannot see.
    pub(super) fn upstream_headers(&self, request: &RequestContext, method: &Method) -> HeaderMap {
        let mut headers = forwarded_headers(request);
        if let Some(keyring) = &self.settings.keyring
            && request.key.starts_with(key::SIGNED_PREFIX)
            && let Ok(credential) = kinema_auth::credential(
                &keyring.current(),
                method.as_str(),
                &request.path_and_query,
                self.clock.now(),
            )
            && let Ok(value) = HeaderValue::from_str(&credential)
        {
            headers.insert(kinema_auth::CREDENTIAL_HEADER, value);
        }
        headers
    }
}

/// The request headers sent to an origin: without hop-by-hop fields, with
/// our `Via` (RFC 9110 §7.6.3), and without any node credential the request
/// came with (only the node that verified a token vouches for it, see
/// [`Edge::upstream_headers`]).
pub(super) fn forwarded_headers(request: &RequestContext) -> HeaderMap {
    let mut headers = request.headers.clone();
    policy::strip_hop_by_hop(&mut headers);
    headers.remove(header::HOST);
    headers.remove(kinema_auth::CREDENTIAL_HEADER);
    headers.append(header::VIA, HeaderValue::from_static(crate::upstream::VIA));
    // The origin sees the edge's address; tell it the client's (RFC 7239
    // §5.2), e.g. for tokens bound to a client network. Appended to both
    // fields, so an origin that trusts this edge finds the same client in
    // each, whatever the client itself wrote to their left.
    if let Some(client) = request.client {
        let client = client.to_canonical();
        let node = match client {
            IpAddr::V4(address) => format!("for={address}"),
            IpAddr::V6(address) => format!("for=\"[{address}]\""),
        };
        if let Ok(value) = HeaderValue::from_str(&node) {
            headers.append(header::FORWARDED, value);
        }
        if let Ok(value) = HeaderValue::from_str(&client.to_string()) {
            headers.append("x-forwarded-for", value);
        }
    }
    headers
}

/// The next data frame of an origin's body, counted as origin bytes;
/// `None` at its end. A frame that does not come within `body_timeout`, or
/// a broken body, is an error (counted as an origin error).
pub(super) async fn next_origin_data(
    body: &mut Incoming,
    metrics: &Metrics,
    body_timeout: Duration,
) -> Result<Option<Bytes>, OriginError> {
    loop {
        match tokio::time::timeout(body_timeout, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                // Trailers are neither stored nor passed on.
                if let Ok(data) = frame.into_data() {
                    Metrics::add(&metrics.origin_bytes, data.len() as u64);
                    return Ok(Some(data));
                }
            }
            Ok(None) => return Ok(None),
            Ok(Some(Err(error))) => {
                Metrics::bump(&metrics.origin_errors);
                return Err(OriginError::Protocol(error.to_string()));
            }
            Err(_) => {
                Metrics::bump(&metrics.origin_errors);
                return Err(OriginError::Timeout);
            }
        }
    }
}

/// An origin's body for the one reader of a fill (see
/// [`Fill::hand_over`]): read only as that reader polls, so the origin
/// connection's flow control paces the origin; it ends with an error when
/// the body breaks or stalls, so the client's response ends broken, not
/// complete and short.
pub(super) fn sole_origin_body(
    body: Incoming,
    metrics: Arc<Metrics>,
    body_timeout: Duration,
) -> BodyStream {
    futures::stream::unfold(Some(body), move |body| {
        let metrics = metrics.clone();
        async move {
            let mut body = body?;
            match next_origin_data(&mut body, &metrics, body_timeout).await {
                Ok(Some(data)) => Some((Ok(data), Some(body))),
                Ok(None) => None,
                Err(error) => Some((Err(std::io::Error::other(error.to_string())), None)),
            }
        }
    })
    .boxed()
}

pub(super) fn incoming_stream(body: Incoming, metrics: Arc<Metrics>) -> ResponseBody {
    let stream = http_body_util::BodyStream::new(body)
        .try_filter_map(|frame| async move { Ok(frame.into_data().ok()) })
        .map_err(std::io::Error::other)
        .inspect_ok(move |chunk| Metrics::add(&metrics.origin_bytes, chunk.len() as u64));
    ResponseBody::Stream(stream.boxed())
}
