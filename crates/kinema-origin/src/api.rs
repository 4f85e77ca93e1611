//! The admin API under `/api/`: JSON over HTTP. This is the placeholder the
//! origin routes to until the API is built out; it answers every request
//! with a JSON 404 so clients get a clear, machine-readable refusal.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use kinema_http::{ConnectionInfo, RequestBody, ResponseBody};

#[derive(Debug)]
pub struct Api {
    #[allow(
        dead_code,
        reason = "the API endpoints that read the store are added next"
    )]
    store: Arc<kinema_store::LocalStore>,
}

impl Api {
    pub fn new(store: Arc<kinema_store::LocalStore>) -> Self {
        Self { store }
    }

    pub async fn handle(
        &self,
        request: http::Request<RequestBody>,
        _connection: ConnectionInfo,
    ) -> http::Response<ResponseBody> {
        let body = serde_json::json!({
            "error": format!("no api endpoint {} {}", request.method(), request.uri().path())
        })
        .to_string();
        let mut response = http::Response::new(ResponseBody::Full(Bytes::from(body)));
        *response.status_mut() = StatusCode::NOT_FOUND;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}
