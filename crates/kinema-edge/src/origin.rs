//! The client the edge fetches with: one pooled keep-alive HTTP client that
//! sends a request to the upstreams a selector chose ([`crate::upstream`]),
//! in their order, retrying an idempotent fetch on the next one and telling
//! the selector of each failure.
//!
//! It knows nothing of caching, nor of which upstream is best: it sends a
//! request and returns the response head with its streaming body, or says
//! why it could not (connect failure → the caller answers 502, timeout →
//! 504).
//!
//! `https://` upstreams are reached by rustls, verifying the certificate
//! and the host name against the public roots and the `origin_ca` file;
//! ALPN offers h2 and http/1.1, so an upstream that speaks h2 multiplexes
//! every fetch over one connection, and an HTTP/1.1 one keeps its
//! keep-alive pool. A certificate that fails verification is a connect
//! failure (502, the cause in the log), as an unreachable origin is.

use std::error::Error as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::metrics::Metrics;
use crate::upstream::{Upstream, UpstreamFailure, UpstreamSelector};

/// A request body sent to an origin.
pub type OriginBody = UnsyncBoxBody<Bytes, std::io::Error>;

/// Why an origin fetch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    #[error("cannot reach the origin: {0}")]
    Connect(String),
    #[error("the origin did not answer in time")]
    Timeout,
    #[error("the origin connection failed: {0}")]
    Protocol(String),
    /// The client's own request body broke (malformed chunked framing, a
    /// reset) while it was forwarded: the client's fault, not the origin's.
    #[error("the request body is malformed: {0}")]
    RequestBody(String),
}

/// Marks an error of a client's request body forwarded to an origin (the
/// `io::Error` an [`OriginBody`] yields carries it), so that a fetch that
/// failed because of it is told apart from an origin failure.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ClientBodyError(pub String);

/// True when `error` was caused by a [`ClientBodyError`].
fn client_body_failed(error: &hyper_util::client::legacy::Error) -> bool {
    let mut source = error.source();
    while let Some(cause) = source {
        let marked = cause.is::<ClientBodyError>()
            || cause
                .downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::get_ref)
                .is_some_and(|inner| inner.is::<ClientBodyError>());
        if marked {
            return true;
        }
        source = cause.source();
    }
    false
}

impl OriginError {
    /// RFC 9110 §15.6.3 (502) for an unreachable or broken origin,
    /// §15.6.5 (504) for one that did not answer in time.
    pub fn status(&self) -> StatusCode {
        match self {
            OriginError::Timeout => StatusCode::GATEWAY_TIMEOUT,
            OriginError::RequestBody(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::BAD_GATEWAY,
        }
    }
}

/// Settings of the origin client.
#[derive(Debug, Clone)]
pub struct OriginSettings {
    pub connect_timeout: Duration,
    /// Until the response head arrives.
    pub response_timeout: Duration,
    /// PEM file of CA certificates trusted beside the public roots.
    pub origin_ca: Option<PathBuf>,
}

/// The pooled client every upstream fetch goes through.
#[derive(Debug)]
pub struct OriginClient {
    client: Client<HttpsConnector<HttpConnector>, OriginBody>,
    settings: OriginSettings,
    metrics: Arc<Metrics>,
}

/// What to send; the path is the origin-form target (`/v/x/1.m4s?q`).
#[derive(Debug)]
pub struct OriginRequest {
    pub method: Method,
    pub path_and_query: String,
    pub headers: HeaderMap,
}

/// The most bytes an `origin_ca` file may hold: a bundle of CA
/// certificates, not a data file.
const MAX_CA_FILE: u64 = 1024 * 1024;

/// The rustls client setup for `https://` upstreams: the public roots
/// (Mozilla's, from webpki-root-certs) plus the certificates of
/// `origin_ca`, no client certificate.
pub fn client_tls(origin_ca: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().cloned());
    if let Some(path) = origin_ca {
        for certificate in read_ca_file(path)? {
            roots.add(certificate).map_err(|error| {
                format!(
                    "origin_ca {}: a certificate cannot be trusted: {error}",
                    path.display()
                )
            })?;
        }
    }
    // ring, named as kinema-http's server names it, so the choice does not
    // depend on which rustls features other crates switch on.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("cannot build the tls client: {error}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn read_ca_file(path: &Path) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let size = std::fs::metadata(path)
        .map_err(|error| format!("cannot read origin_ca {}: {error}", path.display()))?
        .len();
    if size > MAX_CA_FILE {
        return Err(format!(
            "origin_ca {} is {size} bytes; a CA bundle is at most {MAX_CA_FILE}",
            path.display()
        ));
    }
    let pem = std::fs::read(path)
        .map_err(|error| format!("cannot read origin_ca {}: {error}", path.display()))?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| format!("origin_ca {} is not valid PEM: {error}", path.display()))?;
    if certificates.is_empty() {
        return Err(format!(
            "origin_ca {} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certificates)
}

impl OriginClient {
    /// A client for `http://` and `https://` upstreams; fails only when
    /// the `origin_ca` file cannot be read.
    pub fn new(settings: OriginSettings, metrics: Arc<Metrics>) -> Result<Self, String> {
        let tls = client_tls(settings.origin_ca.as_deref())?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(settings.connect_timeout));
        connector.set_nodelay(true);
        // The TLS layer below takes https:// URLs; plain ones pass through.
        connector.enforce_http(false);
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(connector);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .build(connector);
        Ok(Self {
            client,
            settings,
            metrics,
        })
    }

    /// Sends a request to `upstreams` in order (a selector's choice). An
    /// idempotent request without a body that fails to connect, times out
    /// or gets 502/503/504 (from another edge: any 5xx without
    /// `Retry-After`) is retried on the next, each at most once; every
    /// failure is reported to `selector`.
    pub async fn send(
        &self,
        request: OriginRequest,
        body: Option<OriginBody>,
        upstreams: &[Upstream],
        selector: &dyn UpstreamSelector,
    ) -> Result<Response<Incoming>, OriginError> {
        let retryable = body.is_none() && request.method.is_idempotent();
        let mut body = body;
        let mut last_error = OriginError::Connect("no origin".into());
        for (attempt, upstream) in upstreams.iter().enumerate() {
            if attempt > 0 {
                Metrics::bump(&self.metrics.origin_retries);
            }
            let uri = upstream
                .uri(request.path_and_query.as_str())
                .map_err(|error| OriginError::Protocol(error.to_string()))?;
            let mut outgoing =
                Request::builder()
                    .method(request.method.clone())
                    .uri(uri)
                    .body(body.take().unwrap_or_else(|| {
                        Empty::new().map_err(|never| match never {}).boxed_unsync()
                    }))
                    .map_err(|error| OriginError::Protocol(error.to_string()))?;
            *outgoing.headers_mut() = request.headers.clone();
            if let Ok(host) = HeaderValue::from_str(upstream.authority().as_str()) {
                outgoing.headers_mut().insert(header::HOST, host);
            }
            Metrics::bump(&self.metrics.origin_requests);
            let result = tokio::time::timeout(
                self.settings.response_timeout,
                self.client.request(outgoing),
            )
            .await;
            let error = match result {
                Ok(Ok(response)) => {
                    let status = response.status();
                    let last = attempt + 1 == upstreams.len();
                    if retryable && !last && fails_over(upstream, &response) {
                        Metrics::bump(&self.metrics.origin_errors);
                        selector.report_failure(upstream, UpstreamFailure::Status(status));
                        last_error = OriginError::Protocol(format!("origin answered {status}"));
                        continue;
                    }
                    return Ok(response);
                }
                // Neither the origin's failure nor worth a retry.
                Ok(Err(error)) if client_body_failed(&error) => {
                    return Err(OriginError::RequestBody(chain(&error)));
                }
                Ok(Err(error)) if error.is_connect() => {
                    selector.report_failure(upstream, UpstreamFailure::Connect);
                    OriginError::Connect(chain(&error))
                }
                Ok(Err(error)) => {
                    selector.report_failure(upstream, UpstreamFailure::Protocol);
                    OriginError::Protocol(chain(&error))
                }
                Err(_) => {
                    selector.report_failure(upstream, UpstreamFailure::Timeout);
                    OriginError::Timeout
                }
            };
            Metrics::bump(&self.metrics.origin_errors);
            tracing::debug!(origin = %upstream.authority(), %error, "origin fetch failed");
            last_error = error;
            if !retryable {
                break;
            }
        }
        Err(last_error)
    }

    /// Sends `request` with `body` to `upstream` once (no retry, no
    /// selector) and reads at most `max_answer` bytes of the answer, the
    /// whole exchange within `timeout`: a message between kinema nodes,
    /// such as a purge sent on to another edge.
    pub async fn exchange(
        &self,
        upstream: &Upstream,
        request: OriginRequest,
        body: Bytes,
        max_answer: usize,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), OriginError> {
        let uri = upstream
            .uri(request.path_and_query.as_str())
            .map_err(|error| OriginError::Protocol(error.to_string()))?;
        let mut outgoing = Request::builder()
            .method(request.method)
            .uri(uri)
            .body(
                http_body_util::Full::new(body)
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            )
            .map_err(|error| OriginError::Protocol(error.to_string()))?;
        *outgoing.headers_mut() = request.headers;
        if let Ok(host) = HeaderValue::from_str(upstream.authority().as_str()) {
            outgoing.headers_mut().insert(header::HOST, host);
        }
        let exchange = async {
            let response = self.client.request(outgoing).await.map_err(|error| {
                if error.is_connect() {
                    OriginError::Connect(chain(&error))
                } else {
                    OriginError::Protocol(chain(&error))
                }
            })?;
            let status = response.status();
            let answer = http_body_util::Limited::new(response.into_body(), max_answer)
                .collect()
                .await
                .map_err(|error| OriginError::Protocol(format!("the answer: {error}")))?
                .to_bytes();
            Ok((status, answer))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or(Err(OriginError::Timeout))
    }

    /// A health check of `upstream`: a GET of `path` answering 2xx within
    /// the response timeout.
    pub async fn check(&self, upstream: &Upstream, path: &str) -> bool {
        let Ok(uri) = upstream.uri(path) else {
            return false;
        };
        let Ok(request) =
            Request::get(uri).body(Empty::new().map_err(|never| match never {}).boxed_unsync())
        else {
            return false;
        };
        match tokio::time::timeout(self.settings.response_timeout, self.client.request(request))
            .await
        {
            Ok(Ok(response)) => {
                let ok = response.status().is_success();
                // Drain so the connection returns to the pool.
                let _ = response.into_body().collect().await;
                ok
            }
            _ => false,
        }
    }
}

/// The client one kinema node sends another a message with (an origin's
/// purge sent on to the edges, its read of an edge's `/metrics`): the
/// node's base URL as another edge's, one [`OriginClient::exchange`].
impl kinema_http::node_client::NodeClient for OriginClient {
    fn exchange(
        &self,
        message: kinema_http::node_client::NodeMessage,
    ) -> futures::future::BoxFuture<
        '_,
        Result<(StatusCode, Bytes), kinema_http::node_client::NodeError>,
    > {
        use kinema_http::node_client::NodeError;
        Box::pin(async move {
            let upstream = Upstream::peer(&message.base_url).map_err(NodeError::Url)?;
            let request = OriginRequest {
                method: message.method,
                path_and_query: message.path_and_query,
                headers: message.headers,
            };
            let timeout = message.timeout;
            OriginClient::exchange(
                self,
                &upstream,
                request,
                message.body,
                message.max_answer,
                timeout,
            )
            .await
            .map_err(|error| match error {
                OriginError::Connect(detail) => NodeError::Connect(detail),
                OriginError::Timeout => NodeError::Timeout(timeout),
                OriginError::Protocol(detail) | OriginError::RequestBody(detail) => {
                    NodeError::Exchange(detail)
                }
            })
        })
    }
}

/// Whether `upstream`'s response sends an idempotent fetch on to the next
/// upstream: a gateway error (502, 503, 504) from an origin; any 5xx
/// without `Retry-After` from another edge (a parent that cannot fill is
/// skipped for the origin within the same request, while a refusal that
/// names a time is passed on as the origin's own would be).
fn fails_over<B>(upstream: &Upstream, response: &Response<B>) -> bool {
    let status = response.status();
    if upstream.is_peer() {
        status.is_server_error() && !response.headers().contains_key(header::RETRY_AFTER)
    } else {
        matches!(status.as_u16(), 502..=504)
    }
}

fn chain(error: &hyper_util::client::legacy::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_origin_ca_file_is_read_with_bounds_and_clear_errors() {
        let directory = tempfile::tempdir().unwrap();
        let missing = directory.path().join("missing.pem");
        let error = client_tls(Some(&missing)).unwrap_err();
        assert!(error.contains("cannot read origin_ca"), "{error}");

        let not_pem = directory.path().join("not.pem");
        std::fs::write(&not_pem, "a certificate, honestly\n").unwrap();
        let error = client_tls(Some(&not_pem)).unwrap_err();
        assert!(error.contains("holds no PEM certificate"), "{error}");

        let huge = directory.path().join("huge.pem");
        std::fs::write(&huge, vec![b'-'; MAX_CA_FILE as usize + 1]).unwrap();
        let error = client_tls(Some(&huge)).unwrap_err();
        assert!(error.contains("a CA bundle is at most"), "{error}");

        // A PEM block that is no certificate is refused by the trust store.
        let garbage = directory.path().join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let error = client_tls(Some(&garbage)).unwrap_err();
        assert!(error.contains("origin_ca"), "{error}");

        // Without a file: the public roots alone.
        assert!(client_tls(None).is_ok());
    }
}
