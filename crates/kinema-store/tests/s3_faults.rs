//! The S3 backend when things go wrong (against a real s3s-fs): wrong
//! credentials, a missing bucket or no server at open, and a store that
//! goes down or stops answering after open — every call then fails, within
//! a bounded time.

mod common;

use std::time::Duration;

use common::*;
use kinema_store::s3::{S3Config, S3Credentials};
use kinema_store::{S3Store, Store, StoreError, StoreOptions};
use kinema_test_support::S3Server;

fn config_error(error: StoreError) -> (String, String) {
    match error {
        StoreError::Config { setting, message } => (setting, message),
        other => panic!("expected a configuration error, got {other}"),
    }
}

#[tokio::test]
async fn wrong_credentials_missing_bucket_and_no_server_are_named_at_open() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let library = format!("s3://{BUCKET}/{PREFIX}");

    let wrong_secret = S3Config {
        credentials: Some(S3Credentials::new(
            server.access_key(),
            "not-the-secret",
            None,
        )),
        ..config(&server, &library)
    };
    let (setting, message) = config_error(
        S3Store::open(wrong_secret, StoreOptions::default())
            .await
            .unwrap_err(),
    );
    assert!(
        setting.contains("AWS_SECRET_ACCESS_KEY"),
        "{setting}: {message}"
    );
    let unknown_key = S3Config {
        credentials: Some(S3Credentials::new("nobody", server.secret_key(), None)),
        ..config(&server, &library)
    };
    let (setting, message) = config_error(
        S3Store::open(unknown_key, StoreOptions::default())
            .await
            .unwrap_err(),
    );
    assert!(
        setting.contains("AWS_ACCESS_KEY_ID"),
        "{setting}: {message}"
    );

    let (setting, message) = config_error(
        S3Store::open(config(&server, "s3://absent/lib"), StoreOptions::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(setting, "library", "{message}");
    assert!(message.contains("\"absent\""), "{message}");

    let mut stopped = S3Server::start();
    let down = config(&stopped, &library);
    stopped.stop();
    let endpoint = down.endpoint.clone().unwrap();
    let (setting, message) = config_error(
        S3Store::open(down, StoreOptions::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(setting, "s3_endpoint", "{message}");
    assert!(message.contains(&endpoint), "{message}");
}

#[tokio::test]
async fn every_call_fails_within_bounded_time_when_the_server_is_down() {
    let (mut server, store) = start().await;
    let scratch = tempfile::tempdir().unwrap();
    let staged = stage(scratch.path(), &[("v1/1.m4s", b"0123456789")]);
    let generation = now_ms();
    let manifest = manifest_for("clip", generation, &staged).await;
    store.publish(&manifest, &staged).await.unwrap();
    server.stop();

    let segment = object("v1/1.m4s");
    let clip = id("clip");
    let staged = stage(scratch.path(), &[("v1/1.m4s", b"0123456789")]);
    let newer = manifest_for("clip", generation + 1, &staged).await;
    // Generous: the point is that each call ends, with an error, not how fast.
    let bounded = Duration::from_secs(120);
    let calls = async {
        vec![
            ("list", store.list_videos().await.map(drop)),
            ("manifest", store.manifest(&clip).await.map(drop)),
            (
                "get",
                store.get(&clip, generation, &segment).await.map(drop),
            ),
            (
                "get_range",
                store
                    .get_range(&clip, generation, &segment, 0..4)
                    .await
                    .map(drop),
            ),
            (
                "head",
                store.head(&clip, generation, &segment).await.map(drop),
            ),
            ("publish", store.publish(&newer, &staged).await),
            ("unpublish", store.unpublish(&clip).await),
            ("collect", store.collect_retired().await.map(drop)),
        ]
    };
    let outcomes: Vec<(&str, Result<(), StoreError>)> = tokio::time::timeout(bounded, calls)
        .await
        .expect("store calls must fail, not hang, while the object store is down");
    for (call, outcome) in outcomes {
        let error = outcome.expect_err(call);
        assert!(error.is_unavailable(), "{call}: {error}");
    }
}

/// Copies `from` to `to` until either ends, or, once `stalled` is set,
/// stops copying and holds both open forever.
async fn relay_until_stalled(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut stalled: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let stall = async {
            let _ = stalled.wait_for(|stall| *stall).await;
        };
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            () = stall => break,
        };
        match read {
            Ok(0) | Err(_) => return,
            Ok(n) if to.write_all(&buffer[..n]).await.is_err() => return,
            Ok(_) => {}
        }
    }
    // Stalled: say nothing, close nothing.
    std::future::pending::<()>().await;
    drop((from, to));
}

/// A TCP relay to `upstream` that, once the returned flag is set, stops
/// relaying on every connection (open ones included) while holding them
/// open: a store that accepts requests and never answers.
async fn stalling_relay(
    upstream: std::net::SocketAddr,
) -> (std::net::SocketAddr, tokio::sync::watch::Sender<bool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stall, stalled) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let stalled = stalled.clone();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::join!(
                    relay_until_stalled(client_read, server_write, stalled.clone()),
                    relay_until_stalled(server_read, client_write, stalled),
                );
            });
        }
    });
    (address, stall)
}

#[tokio::test]
async fn every_call_fails_within_bounded_time_when_the_server_stops_answering() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let upstream = server
        .endpoint()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let (relay, stall) = stalling_relay(upstream).await;
    // Short bounds, so the test is quick; the defaults bound the same way.
    let timeouts = kinema_store::s3::S3Timeouts {
        connect: Duration::from_secs(1),
        read: Duration::from_secs(1),
        request: Duration::from_secs(5),
        max_retries: 1,
        retry_timeout: Duration::from_secs(2),
    };
    let store = S3Store::open(
        S3Config {
            endpoint: Some(format!("http://{relay}")),
            timeouts,
            ..config(&server, &format!("s3://{BUCKET}/{PREFIX}"))
        },
        StoreOptions::default(),
    )
    .await
    .unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let staged = stage(scratch.path(), &[("v1/1.m4s", b"0123456789")]);
    let generation = now_ms();
    let manifest = manifest_for("clip", generation, &staged).await;
    store.publish(&manifest, &staged).await.unwrap();
    stall.send(true).unwrap();

    let clip = id("clip");
    let segment = object("v1/1.m4s");
    let calls = async {
        vec![
            ("list", store.list_videos().await.map(drop)),
            ("manifest", store.manifest(&clip).await.map(drop)),
            (
                "get",
                store.get(&clip, generation, &segment).await.map(drop),
            ),
            (
                "get_range",
                store
                    .get_range(&clip, generation, &segment, 0..4)
                    .await
                    .map(drop),
            ),
        ]
    };
    let outcomes: Vec<(&str, Result<(), StoreError>)> =
        tokio::time::timeout(Duration::from_secs(120), calls)
            .await
            .expect("store calls must fail, not hang, while the object store stalls");
    for (call, outcome) in outcomes {
        let error = outcome.expect_err(call);
        assert!(error.is_unavailable(), "{call}: {error}");
    }
}
