//! The admin API against its own OpenAPI document: `GET /api/openapi.json`
//! needs no token, and schemathesis (installed by `scripts/install-deps`)
//! generates requests for every operation from the document and checks the
//! running origin's answers against it: no 5xx, only documented statuses,
//! content types and bodies that match their schemas, bad input refused.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use common::*;
use http::StatusCode;
use kinema_auth::{AdminTokens, KeyRing, Scope};
use serde_json::Value;

/// Where `scripts/install-deps` puts schemathesis (or `KINEMA_SCHEMATHESIS`).
fn schemathesis() -> PathBuf {
    let path = std::env::var_os("KINEMA_SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../target/tools-venv/bin/schemathesis")
        });
    assert!(
        path.exists(),
        "{} is missing; run scripts/install-deps (it installs schemathesis from PyPI)",
        path.display()
    );
    path
}

#[tokio::test]
async fn the_document_is_served_without_a_token() {
    let library = Library::new().await;
    let server = Server::start(config(&library)).await;
    let got = get(&server, Protocol::Http1, "/api/openapi.json").await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.header("content-type"), "application/json");
    let document: Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    assert!(document["paths"]["/api/videos/{id}"]["patch"].is_object());
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_against_the_running_server() {
    let tool = schemathesis();
    let library = Library::new().await;
    library.publish("second").await;
    let files = tempfile::tempdir().unwrap();
    let mut ring = KeyRing::empty();
    ring.add_new_key(SystemTime::now());
    ring.save(&files.path().join("keys.toml")).unwrap();
    let mut tokens = AdminTokens::empty();
    let secret = tokens
        .issue("root", Scope::Admin, SystemTime::now())
        .unwrap();
    tokens.save(&files.path().join("tokens.toml")).unwrap();
    let mut config = config(&library);
    config.keys = files.path().join("keys.toml");
    config.tokens = files.path().join("tokens.toml");
    let server = Server::start(config).await;
    let reports = tempfile::tempdir().unwrap();
    let settings =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/openapi/schemathesis.toml");
    let run = tokio::process::Command::new(&tool)
        .arg("--config-file")
        .arg(&settings)
        .arg("run")
        .arg(format!("http://{}/api/openapi.json", server.addr))
        .arg("--header")
        .arg(format!("Authorization: Bearer {secret}"))
        .args(["--checks", "all"])
        // An upload creates a job at once and its video only when the job
        // is done: nothing is there to read right after the 202.
        .args(["--exclude-checks", "ensure_resource_availability"])
        .args(["--max-examples", "30", "--seed", "1"])
        .args(["--workers", "1", "--no-color", "--request-timeout", "30"])
        .arg("--report-dir")
        .arg(reports.path())
        .current_dir(reports.path())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(600), run)
        .await
        .expect("schemathesis finished within 10 minutes")
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found problems ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    println!(
        "{}",
        stdout.lines().rev().take(12).collect::<Vec<_>>().join("\n")
    );
    server.stop().await.unwrap();
}
