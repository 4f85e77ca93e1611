//! `GET /api/catalogue` over real HTTP: answered without a token by the
//! origin's own router, so it is counted in `/metrics` like any request.

mod common;

use common::*;
use http::StatusCode;
use serde_json::Value;

/// The `route="api",status="2xx"` request count, 0 when not yet written.
async fn api_successes(server: &Server) -> f64 {
    let text = get(server, Protocol::Http1, "/metrics").await.body;
    let text = std::str::from_utf8(&text).unwrap().to_string();
    text.lines()
        .find_map(|line| {
            line.strip_prefix("kinema_origin_requests_total{route=\"api\",status=\"2xx\"} ")
                .map(|value| value.trim().parse().unwrap())
        })
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_catalogue_request_is_counted_in_metrics() {
    let library = Library::new().await;
    let server = Server::start(config(&library)).await;
    assert_eq!(api_successes(&server).await, 0.0);
    for protocol in PROTOCOLS {
        let got = get(&server, protocol, "/api/catalogue?sort=title").await;
        assert_eq!(got.status, StatusCode::OK, "{protocol:?}");
        let page: Value = serde_json::from_slice(&got.body).unwrap();
        assert_eq!(page["total"], 1, "{page}");
        assert_eq!(page["videos"][0]["id"], VIDEO, "{page}");
    }
    let refused = get(&server, Protocol::Http1, "/api/catalogue?sort=views").await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(api_successes(&server).await, 2.0);
    let text = get(&server, Protocol::Http1, "/metrics").await.body;
    assert!(
        std::str::from_utf8(&text)
            .unwrap()
            .contains("kinema_origin_requests_total{route=\"api\",status=\"4xx\"} 1"),
        "the refused catalogue request is counted too"
    );
    server.stop().await.unwrap();
}
