//! One viewer's HTTP: a keep-alive HTTP/1.1 connection per server (as a
//! browser keeps one per origin), redirects followed up to a bound, the
//! added request latency of the viewer's link, and response bodies read
//! through the viewer's [`Shaper`].
//!
//! [`Router`] owns the "which server, which URL" decision: today it resolves
//! a manifest's URI against the URL the manifest actually came from (after
//! redirects), as RFC 8216 asks, or against a DASH track's resolved
//! `BaseURL`. Content steering needs nothing here: every pathway's URIs
//! are written out in the manifest, and the viewer picks the pathway's set
//! (`steering`).
//!
//! This module does not retry: retrying is a player policy, decided by the
//! viewer from the [`FetchError`] kind.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpSocket;
use url::Url;

use crate::hls::ByteRange;
use crate::link::Shaper;
use crate::metrics::LiveCounters;

/// Redirect hops followed per request, like browsers' bound (Fetch allows 20;
/// a streaming origin needs far fewer).
pub const MAX_REDIRECTS: usize = 5;

#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    /// An unexpected status; `retry_after` is the wait the response's
    /// `Retry-After` header asked for, when it had a usable one.
    #[error("{url}: http status {status}")]
    Status {
        url: Url,
        status: u16,
        retry_after: Option<Duration>,
    },
    #[error("{url}: {message}")]
    Transport { url: Url, message: String },
    #[error("{url}: no progress for {timeout:?}")]
    Timeout { url: Url, timeout: Duration },
    #[error("{url}: more than {MAX_REDIRECTS} redirects")]
    TooManyRedirects { url: Url },
    #[error("{url}: {message}")]
    Refused { url: Url, message: String },
}

impl FetchError {
    /// Whether trying again could help: server errors, broken connections
    /// and timeouts may pass; a 404 or a refused host will not.
    pub fn is_retryable(&self) -> bool {
        match self {
            FetchError::Status { status, .. } => *status >= 500 || *status == 429,
            FetchError::Transport { .. } | FetchError::Timeout { .. } => true,
            FetchError::TooManyRedirects { .. } | FetchError::Refused { .. } => false,
        }
    }

    /// The wait a `503 Service Unavailable` with a usable `Retry-After`
    /// asks for (RFC 9110 §15.6.4): the server is there but has no room
    /// now. Whether that refuses a session or fails a request is the
    /// viewer's call.
    pub fn unavailable_for(&self) -> Option<Duration> {
        match self {
            FetchError::Status {
                status: 503,
                retry_after,
                ..
            } => *retry_after,
            _ => None,
        }
    }

    /// A short form for counting errors by kind in reports.
    pub fn kind(&self) -> String {
        match self {
            FetchError::Status { status, .. } => format!("http {status}"),
            FetchError::Transport { .. } => "connection error".into(),
            FetchError::Timeout { .. } => "timeout".into(),
            FetchError::TooManyRedirects { .. } => "too many redirects".into(),
            FetchError::Refused { .. } => "refused".into(),
        }
    }
}

/// Resolves URIs found in playlists to the URL to request.
#[derive(Debug, Clone)]
pub struct Router {
    /// Where the multivariant playlist was finally found.
    base: Url,
}

impl Router {
    pub fn new(base: Url) -> Self {
        Self { base }
    }

    /// Records the multivariant playlist's final URL.
    pub fn update(&mut self, final_url: Url) {
        self.base = final_url;
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    /// The URL of `uri` as written in the playlist fetched from
    /// `playlist_url` (RFC 3986 §5: a relative reference drops the base's
    /// query).
    pub fn locate(&self, uri: &str, playlist_url: &Url) -> Result<Url, FetchError> {
        playlist_url.join(uri).map_err(|error| FetchError::Refused {
            url: playlist_url.clone(),
            message: format!("playlist uri {uri:?} is not a valid reference: {error}"),
        })
    }
}

/// The wait a `Retry-After` value asks for, read at `now` (RFC 9110
/// §10.2.3): delta-seconds, or an HTTP-date (all three formats a recipient
/// must accept, §5.6.7) less `now`, zero when it has passed. Anything else
/// is `None`, as if the header were absent: a client cannot honour a wait
/// it cannot read.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_digit()) {
        // Digits that overflow are still a (very long) delay.
        let seconds = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Checks that a URL may be loaded: `http` only, and a loopback host unless
/// remote targets were explicitly allowed. Resolves the host.
pub async fn resolve_target(url: &Url, allow_remote: bool) -> Result<SocketAddr, FetchError> {
    if url.scheme() != "http" {
        return Err(FetchError::Refused {
            url: url.clone(),
            message: format!(
                "scheme {:?} is not supported; use an http:// URL",
                url.scheme()
            ),
        });
    }
    let host = url.host_str().ok_or_else(|| FetchError::Refused {
        url: url.clone(),
        message: "url has no host".into(),
    })?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = url.port_or_known_default().unwrap_or(80);
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|error| FetchError::Transport {
            url: url.clone(),
            message: format!("cannot resolve host {host:?}: {error}"),
        })?
        .collect();
    let Some(first) = addresses.first().copied() else {
        return Err(FetchError::Transport {
            url: url.clone(),
            message: format!("host {host:?} resolves to no address"),
        });
    };
    if !allow_remote && !addresses.iter().all(|address| address.ip().is_loopback()) {
        return Err(FetchError::Refused {
            url: url.clone(),
            message: format!(
                "host {host:?} is not a loopback address; kinema bench loads only 127.0.0.0/8 and ::1 unless --allow-remote is given"
            ),
        });
    }
    Ok(first)
}

/// What a successful fetch produced.
#[derive(Debug)]
pub struct Fetched {
    /// The URL that answered (after redirects).
    pub url: Url,
    pub bytes: u64,
    /// The body, when the caller asked to keep it (manifests).
    pub body: Vec<u8>,
    /// The `Content-Type`, when the caller kept the body: it tells an MPD
    /// from a playlist.
    pub content_type: Option<String>,
}

/// How a fetch handles the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyUse {
    /// Count and drop (segments): no copy, no allocation per chunk.
    Discard,
    /// Keep up to this many bytes (manifests).
    Keep(usize),
}

/// Per-viewer link and HTTP settings.
#[derive(Debug, Clone, Copy)]
pub struct ClientSettings {
    pub allow_remote: bool,
    /// Added before every request, already divided by the run's speed.
    pub latency: Duration,
    /// Longest wait for response headers or for the next body chunk.
    pub timeout: Duration,
    /// hyper's read buffer: the largest chunk the shaper is charged at once.
    pub read_buffer: usize,
    /// Kernel receive buffer (`SO_RCVBUF`, which also turns autotuning
    /// off; the kernel caps it at `net.core.rmem_max`).
    pub receive_buffer: u32,
}

struct Connection {
    address: SocketAddr,
    sender: http1::SendRequest<Empty<Bytes>>,
}

/// One viewer's HTTP client.
pub struct ViewerClient {
    settings: ClientSettings,
    shaper: Option<Shaper>,
    connection: Option<Connection>,
    pub connections_opened: u32,
}

impl std::fmt::Debug for ViewerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewerClient")
            .field("settings", &self.settings)
            .field("connected", &self.connection.is_some())
            .finish()
    }
}

impl ViewerClient {
    pub fn new(settings: ClientSettings, shaper: Option<Shaper>) -> Self {
        Self {
            settings,
            shaper,
            connection: None,
            connections_opened: 0,
        }
    }

    /// GETs `url` (a `range` of it, if given), following redirects; the
    /// body passes through the link shaper and is counted into `live`.
    pub async fn get(
        &mut self,
        url: &Url,
        range: Option<ByteRange>,
        body_use: BodyUse,
        live: &LiveCounters,
    ) -> Result<Fetched, FetchError> {
        let mut url = url.clone();
        for _ in 0..=MAX_REDIRECTS {
            if !self.settings.latency.is_zero() {
                tokio::time::sleep(self.settings.latency).await;
            }
            let response = self.send(&url, range).await?;
            let status = response.status();
            if status.is_redirection() && status != hyper::StatusCode::NOT_MODIFIED {
                let location = response
                    .headers()
                    .get(hyper::header::LOCATION)
                    .and_then(|value| value.to_str().ok())
                    .ok_or_else(|| FetchError::Transport {
                        url: url.clone(),
                        message: format!("redirect {status} without a usable location header"),
                    })?;
                let next = url.join(location).map_err(|error| FetchError::Transport {
                    url: url.clone(),
                    message: format!("redirect to {location:?} is not a valid url: {error}"),
                })?;
                // Drain the (usually tiny) redirect body so the connection
                // stays reusable.
                self.read_body(&url, response.into_body(), BodyUse::Keep(64 * 1024), live)
                    .await?;
                url = next;
                continue;
            }
            let expected = if range.is_some() {
                hyper::StatusCode::PARTIAL_CONTENT
            } else {
                hyper::StatusCode::OK
            };
            if status != expected {
                let retry_after = response
                    .headers()
                    .get(hyper::header::RETRY_AFTER)
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| parse_retry_after(value, SystemTime::now()));
                // Drop the connection rather than read an error body we do
                // not need: the next request opens a fresh one.
                self.connection = None;
                return Err(FetchError::Status {
                    url,
                    status: status.as_u16(),
                    retry_after,
                });
            }
            let content_type = match body_use {
                BodyUse::Keep(_) => response
                    .headers()
                    .get(hyper::header::CONTENT_TYPE)
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_string),
                BodyUse::Discard => None,
            };
            let (bytes, body) = self
                .read_body(&url, response.into_body(), body_use, live)
                .await?;
            return Ok(Fetched {
                url,
                bytes,
                body,
                content_type,
            });
        }
        Err(FetchError::TooManyRedirects { url })
    }

    async fn connect(&mut self, url: &Url) -> Result<(), FetchError> {
        let address = resolve_target(url, self.settings.allow_remote).await?;
        if let Some(connection) = &self.connection
            && connection.address == address
            && !connection.sender.is_closed()
        {
            return Ok(());
        }
        let transport = |message: String| FetchError::Transport {
            url: url.clone(),
            message,
        };
        let socket = if address.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(|e| transport(format!("cannot create socket: {e}")))?;
        // A bounded kernel buffer keeps a slow viewer's backpressure close
        // to the server, as on a real access link.
        socket
            .set_recv_buffer_size(self.settings.receive_buffer)
            .map_err(|e| transport(format!("cannot size receive buffer: {e}")))?;
        let stream = tokio::time::timeout(self.settings.timeout, socket.connect(address))
            .await
            .map_err(|_| FetchError::Timeout {
                url: url.clone(),
                timeout: self.settings.timeout,
            })?
            .map_err(|e| transport(format!("cannot connect to {address}: {e}")))?;
        stream
            .set_nodelay(true)
            .map_err(|e| transport(format!("cannot set TCP_NODELAY: {e}")))?;
        let (sender, connection) = http1::Builder::new()
            .read_buf_exact_size(Some(self.settings.read_buffer))
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| transport(format!("http handshake failed: {e}")))?;
        // The connection task ends when the sender is dropped or the server
        // closes; its error, if any, surfaces on the next request.
        tokio::spawn(async move {
            let _closed = connection.await;
        });
        self.connection = Some(Connection { address, sender });
        self.connections_opened += 1;
        Ok(())
    }

    async fn send(
        &mut self,
        url: &Url,
        range: Option<ByteRange>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, FetchError> {
        let transport = |message: String| FetchError::Transport {
            url: url.clone(),
            message,
        };
        // A keep-alive connection the server closed while idle fails on
        // first use; one fresh connection is what browsers try too.
        for attempt in 0..2 {
            self.connect(url).await?;
            let connection = self.connection.as_mut().expect("connected above");
            let path = match url.query() {
                Some(query) => format!("{}?{query}", url.path()),
                None => url.path().to_string(),
            };
            let authority = match url.port() {
                Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
                None => url.host_str().unwrap_or_default().to_string(),
            };
            let mut request = hyper::Request::get(path)
                .header(hyper::header::HOST, authority)
                .header(hyper::header::USER_AGENT, "kinema-bench");
            if let Some(range) = range {
                request = request.header(
                    hyper::header::RANGE,
                    format!(
                        "bytes={}-{}",
                        range.offset,
                        range.offset + range.length.saturating_sub(1)
                    ),
                );
            }
            let request = request
                .body(Empty::new())
                .map_err(|e| transport(format!("cannot build request: {e}")))?;
            let ready = connection.sender.ready().await;
            let result = match ready {
                Ok(()) => tokio::time::timeout(
                    self.settings.timeout,
                    connection.sender.send_request(request),
                )
                .await
                .map_err(|_| FetchError::Timeout {
                    url: url.clone(),
                    timeout: self.settings.timeout,
                })?,
                Err(error) => Err(error),
            };
            match result {
                Ok(response) => return Ok(response),
                Err(error) => {
                    self.connection = None;
                    let stale =
                        error.is_canceled() || error.is_closed() || error.is_incomplete_message();
                    if attempt == 0 && stale {
                        continue;
                    }
                    return Err(transport(format!("request failed: {error}")));
                }
            }
        }
        Err(transport("connection closed twice in a row".into()))
    }

    async fn read_body(
        &mut self,
        url: &Url,
        mut body: hyper::body::Incoming,
        body_use: BodyUse,
        live: &LiveCounters,
    ) -> Result<(u64, Vec<u8>), FetchError> {
        let mut bytes = 0u64;
        let mut kept = Vec::new();
        loop {
            let frame = match tokio::time::timeout(self.settings.timeout, body.frame()).await {
                Err(_) => {
                    self.connection = None;
                    return Err(FetchError::Timeout {
                        url: url.clone(),
                        timeout: self.settings.timeout,
                    });
                }
                Ok(None) => break,
                Ok(Some(Err(error))) => {
                    self.connection = None;
                    return Err(FetchError::Transport {
                        url: url.clone(),
                        message: format!("body read failed after {bytes} bytes: {error}"),
                    });
                }
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            bytes += data.len() as u64;
            live.add_bytes(data.len() as u64);
            if let BodyUse::Keep(limit) = body_use {
                if kept.len() + data.len() > limit {
                    self.connection = None;
                    return Err(FetchError::Refused {
                        url: url.clone(),
                        message: format!("response is larger than {limit} bytes"),
                    });
                }
                kept.extend_from_slice(&data);
            }
            if let Some(shaper) = &mut self.shaper {
                shaper.consume(data.len()).await;
            }
        }
        Ok((bytes, kept))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refuses_remote_hosts_and_other_schemes() {
        let remote = Url::parse("http://192.0.2.1/v/x/master.m3u8").unwrap();
        let error = resolve_target(&remote, false).await.unwrap_err();
        assert!(matches!(error, FetchError::Refused { .. }));
        assert!(error.to_string().contains("--allow-remote"), "{error}");
        assert!(!error.is_retryable());
        // With the flag, the same address passes the check.
        assert!(resolve_target(&remote, true).await.is_ok());

        let tls = Url::parse("https://127.0.0.1/master.m3u8").unwrap();
        let error = resolve_target(&tls, false).await.unwrap_err();
        assert!(error.to_string().contains("http://"), "{error}");

        let local = Url::parse("http://127.0.0.1:9/master.m3u8").unwrap();
        assert_eq!(
            resolve_target(&local, false).await.unwrap(),
            "127.0.0.1:9".parse().unwrap()
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_dates_and_ignores_the_rest() {
        // Sun, 06 Nov 1994 08:49:37 GMT, RFC 9110's example date.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        let read = |value: &str| parse_retry_after(value, now);
        assert_eq!(read("120"), Some(Duration::from_secs(120)));
        assert_eq!(read(" 0 "), Some(Duration::ZERO));
        assert_eq!(
            read("99999999999999999999999"),
            Some(Duration::from_secs(u64::MAX))
        );
        // The three HTTP-date formats, 30 s ahead of `now`.
        for date in [
            "Sun, 06 Nov 1994 08:50:07 GMT",
            "Sunday, 06-Nov-94 08:50:07 GMT",
            "Sun Nov  6 08:50:07 1994",
        ] {
            assert_eq!(read(date), Some(Duration::from_secs(30)), "{date}");
        }
        // A date already past asks for no wait.
        assert_eq!(read("Sun, 06 Nov 1994 08:00:00 GMT"), Some(Duration::ZERO));
        for garbage in [
            "",
            "soon",
            "1.5",
            "-1",
            "+5",
            "10s",
            "Sun, 32 Nov 1994 08:50:07 GMT",
        ] {
            assert_eq!(read(garbage), None, "{garbage:?}");
        }
    }

    #[test]
    fn only_a_503_with_a_usable_retry_after_is_unavailability() {
        let url = Url::parse("http://127.0.0.1/v/clip/master.m3u8").unwrap();
        let status = |status: u16, retry_after: Option<u64>| FetchError::Status {
            url: url.clone(),
            status,
            retry_after: retry_after.map(Duration::from_secs),
        };
        assert_eq!(
            status(503, Some(2)).unavailable_for(),
            Some(Duration::from_secs(2))
        );
        assert_eq!(status(503, None).unavailable_for(), None);
        assert_eq!(status(429, Some(2)).unavailable_for(), None);
        assert_eq!(status(500, Some(2)).unavailable_for(), None);
        // Either way a 503 stays retryable and counts as one.
        assert!(status(503, None).is_retryable());
        assert_eq!(status(503, Some(2)).kind(), "http 503");
    }

    #[test]
    fn router_resolves_like_rfc_3986() {
        let router =
            Router::new(Url::parse("http://127.0.0.1/v/clip/master.m3u8?token=t").unwrap());
        let playlist = router.base().clone();
        assert_eq!(
            router
                .locate("v360/index.m3u8", &playlist)
                .unwrap()
                .as_str(),
            "http://127.0.0.1/v/clip/v360/index.m3u8"
        );
        assert_eq!(
            router
                .locate("/other/x.m4s?t=1", &playlist)
                .unwrap()
                .as_str(),
            "http://127.0.0.1/other/x.m4s?t=1"
        );
    }
}
