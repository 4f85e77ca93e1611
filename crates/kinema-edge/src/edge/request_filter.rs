//! The request filter, the first phase: what the edge answers itself (its
//! metrics, health and purge), the CMCD a player sent (recorded in the
//! network-quality table, then dropped from the target with the rest of
//! the query: never in a cache key, never sent upstream), the query
//! policy, a signed URL's token and the cache key, all settled into the
//! [`RequestContext`]; then which requests skip the cache.

use super::*;

/// What the request filter made of a request.
pub(super) enum Filtered {
    /// On to the cache: the context, and the request body when the request
    /// is forwarded with it (an unsafe method).
    Proceed(RequestContext, Option<RequestBody>),
    /// Answered by the filter itself (admin surface, purge, a refusal).
    Answered(Response<ResponseBody>),
}

impl Edge {
    /// The request filter: settles the request's target, key and token
    /// into a context, or answers the request itself.
    pub(super) async fn request_filter(
        &self,
        request: Request<RequestBody>,
        connection: ConnectionInfo,
    ) -> Filtered {
        let path = request.uri().path();
        if (path.starts_with("/_kinema/") || path == "/metrics")
            && let Some(response) = self.admin(path)
        {
            return Filtered::Answered(response);
        }
        if let Some(id) = path.strip_prefix("/steer/")
            && let Some(response) = self.steer(
                request.method(),
                id,
                request.uri().query(),
                connection.peer.ip(),
            )
        {
            return Filtered::Answered(response);
        }
        if request.method().as_str() == "PURGE" {
            let (parts, _) = request.into_parts();
            return Filtered::Answered(self.purge_method(&parts).await);
        }
        if path.starts_with("/_kinema/purge") && request.method() == Method::POST {
            return Filtered::Answered(self.purge_api(request).await);
        }
        let (parts, body) = request.into_parts();
        if let Some(network) = &self.network
            && (parts.method == Method::GET || parts.method == Method::HEAD)
        {
            network.record_request(connection.peer.ip(), parts.uri.query(), &parts.headers);
        }
        let path_and_query = parts
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_string(), |p| p.as_str().to_string());
        // Settled before the key and the origin request are derived, so the
        // origin, the store and prefetch all see the one canonical target.
        let path_and_query = match key::settle_query(&path_and_query, self.settings.query_policy) {
            Ok(target) => target.into_owned(),
            Err(key::RefusedQuery(name)) => {
                return Filtered::Answered(plain(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "query parameter {name:?} is not accepted on video objects (query_policy = refuse); remove it\n"
                    ),
                ));
            }
        };
        // A node that verified this request's token (address included)
        // vouches for it: the token is then checked for all but the address.
        let vouched = self.vouched(&parts);
        let peer = connection.peer.ip();
        let (key, token_expiry) = match self.request_key(&path_and_query, peer, vouched.as_ref()) {
            Ok(found) => found,
            Err(refusal) => return Filtered::Answered(refused(refusal)),
        };
        let cached = parts.method == Method::GET || parts.method == Method::HEAD;
        let context = RequestContext {
            // Only a GET or HEAD is answered by the cache, by its rules.
            directives: if cached {
                policy::request_directives(&parts.headers)
            } else {
                Directives::default()
            },
            method: parts.method,
            path_and_query,
            headers: parts.headers,
            key,
            client: Some(connection.peer.ip()),
            token_expiry,
        };
        Filtered::Proceed(context, (!cached).then_some(body))
    }

    /// The rest of the request filter, for what got past it: which
    /// requests the cache cannot answer and passes.
    pub(super) fn cache_filter(&self, request: &RequestContext) -> Step {
        if request.method != Method::GET && request.method != Method::HEAD {
            return Step::Pass(CacheStatus::forward(ForwardReason::Bypass));
        }
        // Preconditions only an origin can evaluate (RFC 9111 §4.3.2) make
        // the request unsuitable for a stored response: pass it.
        if request.headers.contains_key(header::IF_MATCH)
            || request.headers.contains_key(header::IF_UNMODIFIED_SINCE)
        {
            return Step::Pass(CacheStatus::forward(ForwardReason::Request));
        }
        if self.pass_keys.contains_key(&request.key) {
            return Step::Pass(
                CacheStatus::forward(ForwardReason::Miss).with_detail(Detail::HitForPass),
            );
        }
        Step::Lookup
    }

    /// The proof that a cluster node vouched for this request (a node
    /// credential over its method and target as received, see
    /// `kinema_auth::node`), if the edge has the key ring to check it; a
    /// credential that does not check is ignored (logged), so the token is
    /// checked against the peer's address as for any viewer.
    pub(super) fn vouched(&self, parts: &http::request::Parts) -> Option<kinema_auth::Vouched> {
        let keyring = self.settings.keyring.as_ref()?.current();
        let value = parts.headers.get(kinema_auth::CREDENTIAL_HEADER)?;
        let target = parts
            .uri
            .path_and_query()
            .map_or("/", |target| target.as_str());
        kinema_auth::check_credential(
            &keyring,
            value.as_bytes(),
            parts.method.as_str(),
            target,
            self.clock.now(),
            self.settings.token_skew,
        )
        .inspect_err(|refusal| tracing::debug!(%refusal, target, "node credential ignored"))
        .ok()
    }

    /// The cache key of a request target, verifying a signed URL's token
    /// when the edge has the key ring (kinema-auth) for `client`, or for
    /// all but the address when a node `vouched` for the request; with the
    /// verified token's expiry.
    pub(super) fn request_key(
        &self,
        path_and_query: &str,
        client: IpAddr,
        vouched: Option<&kinema_auth::Vouched>,
    ) -> Result<(String, Option<SystemTime>), Refusal> {
        let Some(keyring) = &self.settings.keyring else {
            return Ok((key::cache_key(path_and_query), None));
        };
        let keyring = &*keyring.current();
        let Some((token, rest)) = kinema_auth::split_signed_path(path_and_query) else {
            return Ok((key::cache_key(path_and_query), None));
        };
        let path = rest.split('?').next().unwrap_or(rest);
        let (now, skew) = (self.clock.now(), self.settings.token_skew);
        let claims = match vouched {
            Some(vouched) => kinema_auth::verify_vouched(keyring, token, path, vouched, now, skew)?,
            None => kinema_auth::verify(keyring, token, path, client, now, skew)?,
        };
        Ok((key::signed_cache_key(rest), Some(claims.expires_at)))
    }
}

/// 403 for a signed URL the edge refuses, with the machine-readable
/// reason and nothing else (as the origin answers).
fn refused(refusal: Refusal) -> Response<ResponseBody> {
    let body = serde_json::json!({"error": refusal.as_str()});
    let mut response = Response::new(ResponseBody::Full(Bytes::from(format!("{body}\n"))));
    *response.status_mut() = StatusCode::FORBIDDEN;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        kinema_auth::REFUSAL_HEADER,
        HeaderValue::from_static(refusal.as_str()),
    );
    response
}
