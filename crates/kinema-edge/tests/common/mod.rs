//! Test support shared by the edge's integration tests: a service started on
//! port 0 and stopped through a channel (the edge, the real origin, or a
//! scripted hyper origin), the edge's metrics, and a small HTTP/1.1 client.
//! Not a fake of anything the edge does: every test talks real HTTP to it.

#![allow(dead_code, reason = "each test binary uses a different part")]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub mod scripted;

/// Resolves when the test stops the service.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A service running as a task on a loopback port, as its `run(config,
/// listener, shutdown)` is meant to be started.
pub struct Service<E> {
    pub address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), E>>,
}

impl<E: std::fmt::Debug + Send + 'static> Service<E> {
    /// Binds `127.0.0.1:0` and spawns `serve` on it.
    pub async fn spawn<F>(serve: impl FnOnce(TcpListener, Shutdown) -> F) -> Self
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown: Shutdown = Box::pin(async move {
            let _ = stopped.await;
        });
        Self {
            address,
            stop: Some(stop),
            task: tokio::spawn(serve(listener, shutdown)),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Shuts the service down and waits for it: it must end cleanly.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

/// The edge under test.
pub type Edge = Service<kinema_edge::Error>;

impl Edge {
    pub async fn start(config: kinema_edge::Config) -> Self {
        Self::spawn(|listener, shutdown| kinema_edge::run(config, listener, shutdown)).await
    }

    pub async fn metric(&self, name: &str) -> u64 {
        let (_, _, body) = get(self.address, "/_kinema/metrics", &[]).await;
        let text = String::from_utf8(body.to_vec()).unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
            .parse()
            .unwrap()
    }

    /// Polls a metric until it reaches `value` (with a deadline).
    pub async fn wait_metric(&self, name: &str, value: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if self.metric(name).await >= value {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} never reached {value}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A scripted origin's server: HTTP/1.1 on `listener`, each request answered
/// by `handler`, until `shutdown`; then its open connections are dropped.
pub async fn serve_http1<H, F, B>(
    listener: TcpListener,
    mut shutdown: Shutdown,
    handler: H,
) -> Result<(), Infallible>
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (stream, _) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted.unwrap(),
        };
        let handler = handler.clone();
        connections.spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let answer = handler(request);
                async move { Ok::<_, Infallible>(answer.await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
    connections.abort_all();
    Ok(())
}

/// Sends one request on a fresh connection; the response's body unread.
pub async fn send(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response<Incoming> {
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("http://{address}{path}"));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    client
        .request(
            builder
                .body(Full::new(Bytes::copy_from_slice(body)))
                .unwrap(),
        )
        .await
        .unwrap()
}

/// Sends one request and reads the whole response.
pub async fn request(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (StatusCode, HeaderMap, Bytes) {
    let (parts, body) = send(address, method, path, headers, body)
        .await
        .into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

pub async fn get(
    address: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Bytes) {
    request(address, "GET", path, headers, b"").await
}

/// The edge's `Cache-Status` (RFC 9211), empty when absent.
pub fn cache_status(headers: &HeaderMap) -> &str {
    headers
        .get("cache-status")
        .map_or("", |value| value.to_str().unwrap())
}
