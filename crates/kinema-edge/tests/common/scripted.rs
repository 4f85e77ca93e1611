//! A scriptable origin (hyper) for the edge's tests: it answers by a
//! script of the request and how many times its path was asked, records
//! every request, and can hold its answers until released.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::sync::Notify;

use super::{Service, serve_http1};

pub type Reply = (StatusCode, Vec<(&'static str, String)>, Bytes);

/// A scriptable origin: answers by `script(request, nth request to this
/// path)`, records every request, optionally holds answers until released.
pub struct Origin {
    server: Service<std::convert::Infallible>,
    pub seen: Arc<Mutex<Vec<(Method, String, HeaderMap)>>>,
    gate: Arc<Gate>,
}

#[derive(Default)]
pub struct Gate {
    closed: Mutex<bool>,
    opened: Notify,
}

impl Gate {
    async fn pass(&self) {
        loop {
            let notified = self.opened.notified();
            if !*self.closed.lock().unwrap() {
                return;
            }
            notified.await;
        }
    }
}

impl Origin {
    pub async fn start(
        script: impl Fn(&Request<Incoming>, usize) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let seen: Arc<Mutex<Vec<(Method, String, HeaderMap)>>> = Arc::default();
        let gate: Arc<Gate> = Arc::default();
        let script = Arc::new(script);
        let handler = {
            let seen = seen.clone();
            let gate = gate.clone();
            move |request: Request<Incoming>| {
                let seen = seen.clone();
                let gate = gate.clone();
                let script = script.clone();
                async move {
                    let path = request.uri().path().to_string();
                    let nth = {
                        let mut seen = seen.lock().unwrap();
                        seen.push((
                            request.method().clone(),
                            request.uri().to_string(),
                            request.headers().clone(),
                        ));
                        seen.iter()
                            .filter(|(_, uri, _)| uri.split('?').next() == Some(&path))
                            .count()
                    };
                    if path != "/healthz" {
                        gate.pass().await;
                    }
                    let (status, headers, body) = script(&request, nth);
                    let mut response = Response::new(Full::new(body));
                    *response.status_mut() = status;
                    for (name, value) in headers {
                        response
                            .headers_mut()
                            .append(name, HeaderValue::from_str(&value).unwrap());
                    }
                    response
                }
            }
        };
        let server =
            Service::spawn(|listener, shutdown| serve_http1(listener, shutdown, handler)).await;
        Self { server, seen, gate }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Requests received for `path`, health checks excluded.
    pub fn count(&self, path: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, uri, _)| uri == path)
            .count()
    }

    pub fn last_headers(&self, path: &str) -> HeaderMap {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|(_, uri, _)| uri == path)
            .map(|(_, _, headers)| headers.clone())
            .unwrap()
    }

    pub fn hold(&self) {
        *self.gate.closed.lock().unwrap() = true;
    }

    pub fn release(&self) {
        *self.gate.closed.lock().unwrap() = false;
        self.gate.opened.notify_waiters();
    }

    pub async fn kill(self) {
        self.release();
        self.server.stop().await;
    }
}

pub fn ok(headers: &[(&'static str, &str)], body: &'static str) -> Reply {
    (
        StatusCode::OK,
        headers
            .iter()
            .map(|(name, value)| (*name, value.to_string()))
            .collect(),
        Bytes::from_static(body.as_bytes()),
    )
}
