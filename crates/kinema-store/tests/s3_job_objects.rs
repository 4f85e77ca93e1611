//! Job objects in a real S3-protocol server (s3s-fs): written from a stream
//! (one PUT or multipart), read back byte-exact to a file, listed, refused
//! past their limit with nothing left behind, and deleted with their job;
//! none of it is ever a video.

mod common;

use bytes::Bytes;
use common::{BUCKET, PREFIX, start};
use kinema_store::{Store, StoreError};

fn pattern(length: usize) -> Vec<u8> {
    (0..length).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// `bytes` as a stream of chunks of `chunk` bytes, as an upload arrives.
fn chunks(
    bytes: &[u8],
    chunk: usize,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + use<> {
    let parts: Vec<Result<Bytes, std::io::Error>> = bytes
        .chunks(chunk)
        .map(|part| Ok(Bytes::copy_from_slice(part)))
        .collect();
    futures::stream::iter(parts)
}

#[tokio::test]
async fn job_objects_round_trip_and_are_deleted_with_their_job() {
    let (server, store) = start().await;
    let jobs = store.job_objects();
    let scratch = tempfile::tempdir().unwrap();
    let small = pattern(1000);
    // Several 8 MiB parts and a short last one.
    let large = pattern(8 * 1024 * 1024 * 2 + 4321);
    assert_eq!(
        jobs.put_stream("j1", "source", chunks(&small, 300), 10_000)
            .await
            .unwrap(),
        1000
    );
    assert_eq!(
        jobs.put_stream("j1", "chunks/0/1.m4s", chunks(&large, 65_536), u64::MAX)
            .await
            .unwrap(),
        large.len() as u64
    );
    let file = scratch.path().join("large");
    assert_eq!(
        jobs.get_to_file("j1", "chunks/0/1.m4s", &file, u64::MAX)
            .await
            .unwrap(),
        Some(large.len() as u64)
    );
    assert!(std::fs::read(&file).unwrap() == large, "changed in transit");
    let copy = scratch.path().join("copy");
    std::fs::write(&copy, &small).unwrap();
    jobs.put_file("j2", "source", &copy).await.unwrap();

    let mut listed = jobs.list("j1").await.unwrap();
    listed.sort_by(|a, b| a.name.cmp(&b.name));
    let names: Vec<(&str, u64)> = listed.iter().map(|o| (o.name.as_str(), o.size)).collect();
    assert_eq!(
        names,
        [("chunks/0/1.m4s", large.len() as u64), ("source", 1000)]
    );
    let mut ids = jobs.jobs().await.unwrap();
    ids.sort();
    assert_eq!(ids, ["j1", "j2"]);
    // Job objects are not videos.
    assert!(store.list_videos().await.unwrap().is_empty());
    let missing = scratch.path().join("missing");
    assert_eq!(
        jobs.get_to_file("j1", "nothing", &missing, 10)
            .await
            .unwrap(),
        None
    );
    assert!(matches!(
        jobs.get_to_file("j1", "source", &missing, 999).await,
        Err(StoreError::TooLarge { limit: 999, .. })
    ));
    // A version tells a rewritten object from the one copied before.
    let before = jobs.version("j1", "source").await.unwrap().unwrap();
    assert_eq!(before.size, 1000);
    assert_eq!(jobs.version("j1", "nothing").await.unwrap(), None);
    jobs.put_stream("j1", "source", chunks(&pattern(999), 300), 10_000)
        .await
        .unwrap();
    let after = jobs.version("j1", "source").await.unwrap().unwrap();
    assert_eq!(after.size, 999);
    assert!(after.e_tag.is_some(), "{after:?}");
    assert_ne!(before.e_tag, after.e_tag);

    jobs.delete_job("j1").await.unwrap();
    assert!(jobs.list("j1").await.unwrap().is_empty());
    assert_eq!(jobs.jobs().await.unwrap(), ["j2"]);
    let on_disk = server
        .bucket_dir(BUCKET)
        .join(PREFIX)
        .join("jobs/j2/source");
    assert_eq!(std::fs::read(on_disk).unwrap(), small);
}

#[tokio::test]
async fn a_stream_past_its_limit_or_failing_leaves_no_object() {
    let (_server, store) = start().await;
    let jobs = store.job_objects();
    let large = pattern(8 * 1024 * 1024 + 1);
    // Refused within the first part, and within a multipart upload.
    for (limit, length) in [(100u64, 1000usize), (large.len() as u64 - 1, large.len())] {
        let refused = jobs
            .put_stream("j3", "source", chunks(&large[..length], 65_536), limit)
            .await;
        assert!(
            matches!(refused, Err(StoreError::TooLarge { limit: l, .. }) if l == limit),
            "{refused:?}"
        );
    }
    let failing = futures::stream::iter(vec![
        Ok(Bytes::from(pattern(9 * 1024 * 1024))),
        Err(std::io::Error::other("the client went away")),
    ]);
    let failed = jobs.put_stream("j3", "source", failing, u64::MAX).await;
    assert!(matches!(failed, Err(StoreError::Io { .. })), "{failed:?}");
    assert!(jobs.list("j3").await.unwrap().is_empty());
    assert!(jobs.jobs().await.unwrap().is_empty());
    for bad in ["../videos", "a/b", ""] {
        assert!(jobs.list(bad).await.is_err(), "{bad:?}");
    }
    assert!(
        jobs.put_stream("j3", "../x", chunks(b"x", 1), 10)
            .await
            .is_err()
    );
}
