//! An origin built from parts a test hands it (`OriginParts::new`): the
//! store, the ingest workspace and the clock that decides whether a signed
//! URL's token is still good, moved here instead of slept through.

mod common;

use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use common::*;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use kinema_auth::{AdminTokens, Claims, KeyRing, TokenScope};
use kinema_core::{Manifest, ObjectPath, VideoId};
use kinema_http::Clock;
use kinema_origin::OriginParts;
use kinema_store::{CollectedGeneration, ObjectMeta, Store, StoreConfig, StoreError, StoredFile};
use tokio::net::{TcpListener, TcpStream};

/// One HTTP/1.1 GET on a fresh connection: status and the refusal header.
async fn fetch(address: std::net::SocketAddr, target: &str) -> (StatusCode, Option<String>) {
    let stream = TcpStream::connect(address).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = Request::builder()
        .uri(target)
        .header("host", "origin.test")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let refusal = response
        .headers()
        .get(kinema_auth::REFUSAL_HEADER)
        .map(|value| value.to_str().unwrap().to_string());
    let status = response.status();
    response.into_body().collect().await.unwrap();
    (status, refusal)
}

#[tokio::test]
async fn a_token_expires_by_the_clock_the_origin_is_given() {
    let library = Library::new().await;
    let files = tempfile::tempdir().unwrap();
    let started = SystemTime::now();
    let mut ring = KeyRing::empty();
    ring.add_new_key(started);
    ring.save(&files.path().join("keys.toml")).unwrap();
    AdminTokens::empty()
        .save(&files.path().join("tokens.toml"))
        .unwrap();
    let mut config = config(&library);
    config.keys = files.path().join("keys.toml");
    config.tokens = files.path().join("tokens.toml");

    let now = Arc::new(Mutex::new(started));
    let clock = Clock::from_fn({
        let now = now.clone();
        move || *now.lock().unwrap()
    });
    let store = kinema_store::open(&StoreConfig::directory(library.dir.path()))
        .await
        .unwrap();
    let workspace = kinema_media::Workspace::open(files.path().join("ingest")).unwrap();
    let parts = OriginParts::new(&config, store, workspace, clock);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(kinema_origin::run_with(
        config,
        parts,
        listener,
        async move {
            let _ = stopped.await;
        },
    ));

    let claims = Claims::new(
        TokenScope::video(&VideoId::new("clip").unwrap()),
        started + Duration::from_secs(60),
    );
    let token = kinema_auth::sign(&ring, &claims).unwrap();
    let target = format!("/s/{token}/v/clip/master.m3u8");
    assert_eq!(fetch(address, &target).await, (StatusCode::OK, None));
    *now.lock().unwrap() += Duration::from_secs(3600);
    assert_eq!(
        fetch(address, &target).await,
        (StatusCode::FORBIDDEN, Some("expired".to_string()))
    );

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// The library's own store, counting the reads a server makes of
/// generations: listings of a video's generations and reads of one
/// generation's manifest.
#[derive(Debug)]
struct CountingStore {
    inner: Arc<dyn Store>,
    listings: AtomicUsize,
    generation_reads: AtomicUsize,
}

#[async_trait::async_trait]
impl Store for CountingStore {
    async fn list_videos(&self) -> Result<Vec<VideoId>, StoreError> {
        self.inner.list_videos().await
    }
    async fn manifest(&self, id: &VideoId) -> Result<Manifest, StoreError> {
        self.inner.manifest(id).await
    }
    async fn generations(&self, id: &VideoId) -> Result<Vec<u64>, StoreError> {
        self.listings.fetch_add(1, Ordering::SeqCst);
        self.inner.generations(id).await
    }
    async fn manifest_of_generation(
        &self,
        id: &VideoId,
        generation: u64,
    ) -> Result<Manifest, StoreError> {
        self.generation_reads.fetch_add(1, Ordering::SeqCst);
        self.inner.manifest_of_generation(id, generation).await
    }
    async fn get(
        &self,
        id: &VideoId,
        generation: u64,
        path: &ObjectPath,
    ) -> Result<StoredFile, StoreError> {
        self.inner.get(id, generation, path).await
    }
    async fn get_range(
        &self,
        id: &VideoId,
        generation: u64,
        path: &ObjectPath,
        range: Range<u64>,
    ) -> Result<bytes::Bytes, StoreError> {
        self.inner.get_range(id, generation, path, range).await
    }
    async fn head(
        &self,
        id: &VideoId,
        generation: u64,
        path: &ObjectPath,
    ) -> Result<ObjectMeta, StoreError> {
        self.inner.head(id, generation, path).await
    }
    async fn publish(&self, manifest: &Manifest, staged_dir: &Path) -> Result<(), StoreError> {
        self.inner.publish(manifest, staged_dir).await
    }
    async fn unpublish(&self, id: &VideoId) -> Result<(), StoreError> {
        self.inner.unpublish(id).await
    }
    async fn collect_retired(&self) -> Result<Vec<CollectedGeneration>, StoreError> {
        self.inner.collect_retired().await
    }
}

#[tokio::test]
async fn made_up_generation_numbers_cost_no_store_read_and_a_new_one_is_found() {
    let library = Library::new().await;
    let first = library.manifest().await;
    // A retired generation players may still be on.
    let second = library.publish(VIDEO).await;
    let files = tempfile::tempdir().unwrap();
    let store = Arc::new(CountingStore {
        inner: library.store.clone(),
        listings: AtomicUsize::new(0),
        generation_reads: AtomicUsize::new(0),
    });
    let config = config(&library);
    let workspace = kinema_media::Workspace::open(files.path().join("ingest")).unwrap();
    let parts = OriginParts::new(&config, store.clone(), workspace, Clock::system());
    let server = Server::start_with(config, parts).await;
    let pinned = |generation: u64| format!("/v/{VIDEO}/g{generation}/v180/index.m3u8");

    assert_eq!(
        fetch(server.addr, &pinned(second.generation)).await.0,
        StatusCode::OK
    );
    assert_eq!(
        fetch(server.addr, &pinned(first.generation)).await.0,
        StatusCode::OK
    );
    assert_eq!(store.generation_reads.load(Ordering::SeqCst), 1);
    // Numbers never published, older and newer than any there is: each a
    // 404, none read, the newer ones listed again at most once per half
    // second of this loop.
    let started = std::time::Instant::now();
    for offset in 1..=200 {
        for generation in [first.generation - offset, second.generation + offset] {
            assert_eq!(
                fetch(server.addr, &pinned(generation)).await.0,
                StatusCode::NOT_FOUND,
                "g{generation}"
            );
        }
    }
    let half_seconds = (started.elapsed().as_millis() / 500) as usize;
    assert_eq!(store.generation_reads.load(Ordering::SeqCst), 1);
    let listings = store.listings.load(Ordering::SeqCst);
    assert!(
        listings <= 2 + half_seconds,
        "{listings} listings in {half_seconds} half seconds"
    );

    // A generation published behind this server's back (by another
    // process) is found once the listing is half a second old.
    let third = publish_fixture(library.store.as_ref(), &library.staging("third"), VIDEO).await;
    eventually("the new generation is served", async || {
        fetch(server.addr, &pinned(third.generation)).await.0 == StatusCode::OK
    })
    .await;
    server.stop().await.unwrap();
}
