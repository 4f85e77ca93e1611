//! Bounds on what an uploader can make the server do: sources beyond the
//! configured limits, sources that probe but cannot be decoded, titles too
//! long, failed uploads kept forever, server paths shown in job errors.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use kinema_core::{AccessPolicy, VideoId};
use kinema_media::pipeline::SourceLimits;
use kinema_media::{IngestConfig, IngestService, JobState, MediaError, SubmitRequest};
use support::*;

async fn refused_by(limits: SourceLimits, expected: &str) {
    let library = Library::new();
    let config = IngestConfig {
        limits,
        ..test_config()
    };
    let error = library
        .ingest(&plain_clip(), "bounded", &config)
        .await
        .unwrap_err();
    assert!(matches!(error, MediaError::OverLimit { .. }), "{error}");
    assert_eq!(error.to_string(), expected);
    library.assert_nothing_published().await;
}

#[tokio::test]
async fn sources_beyond_the_limits_are_refused_naming_the_limit() {
    refused_by(
        SourceLimits {
            max_width: 256,
            ..SourceLimits::default()
        },
        "source is refused: its picture is 320x180, beyond the limit of 256x7680 \
         (ingest.limits.max_width, max_height)",
    )
    .await;
    refused_by(
        SourceLimits {
            max_frame_rate: 24,
            ..SourceLimits::default()
        },
        "source is refused: its frame rate is 25.00 fps, beyond the limit of 24 \
         (ingest.limits.max_frame_rate)",
    )
    .await;
    refused_by(
        SourceLimits {
            max_duration: Duration::from_secs(4),
            ..SourceLimits::default()
        },
        "source is refused: it lasts 5 s, beyond the limit of 4s (ingest.limits.max_duration)",
    )
    .await;
}

/// The regression: a source that probes but cannot be decoded failed as
/// "ffmpeg failed (exit status: 69)", blamed on the server, and its upload
/// was kept.
#[tokio::test]
async fn source_that_probes_but_cannot_be_decoded_is_bad_input() {
    let faststart = fixture(
        "faststart.mp4",
        &[
            "-i",
            plain_clip().to_str().unwrap(),
            "-c",
            "copy",
            "-movflags",
            "+faststart",
        ],
    );
    let mut bytes = std::fs::read(faststart).unwrap();
    let media = bytes.windows(4).position(|w| w == b"mdat").unwrap() + 4;
    for (offset, byte) in bytes[media..].iter_mut().enumerate() {
        *byte = (offset.wrapping_mul(131) + 7) as u8;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.mp4");
    std::fs::write(&path, bytes).unwrap();
    let library = Library::new();
    let error = library
        .ingest(&path, "garbage", &test_config())
        .await
        .unwrap_err();
    assert!(matches!(error, MediaError::Undecodable { .. }), "{error}");
    assert!(error.is_bad_source());
    assert!(
        error.to_string().starts_with("source cannot be decoded: "),
        "{error}"
    );
    library.assert_nothing_published().await;
}

async fn start(library: &Library, config: kinema_media::IngestConfig) -> IngestService {
    library.job_service(config).await
}

fn upload(library: &Library, title: Option<String>) -> SubmitRequest {
    let path = library.dir.path().join("incoming.mp4");
    std::fs::copy(plain_clip(), &path).unwrap();
    SubmitRequest {
        source: path,
        owned_source: true,
        video_id: Some(VideoId::new("upload").unwrap()),
        title,
        access: AccessPolicy::Public,
        subtitles: Vec::new(),
    }
}

#[tokio::test]
async fn title_longer_than_the_limit_is_refused_and_its_upload_deleted() {
    let library = Library::new();
    let service = start(&library, test_config()).await;
    let request = upload(&library, Some("t".repeat(300_000)));
    let source = request.source.clone();
    let error = service.submit(request).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "the title is 300000 characters long; the limit is 200"
    );
    assert!(!source.exists());
}

/// A stand-in for ffmpeg that answers `-version` and fails every encode,
/// naming the directory it was told to write to, as ffmpeg does.
fn failing_ffmpeg(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("ffmpeg-that-fails");
    std::fs::write(
        &path,
        "#!/bin/sh\n[ \"$1\" = -version ] && exit 0\n\
         for last; do :; done\necho \"[error] $last: Input/output error\" >&2\nexit 1\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test]
async fn failed_upload_expires_and_its_error_shows_no_server_path() {
    let library = Library::new();
    let tools = tempfile::tempdir().unwrap();
    let config = IngestConfig {
        ffmpeg: failing_ffmpeg(tools.path()),
        failed_upload_ttl: Duration::from_secs(1),
        ..test_config()
    };
    let service = start(&library, config).await;
    let job = service.submit(upload(&library, None)).await.unwrap();
    let failed = service.wait(&job.id).await.unwrap();
    assert_eq!(failed.state, JobState::Failed, "{failed:?}");
    let error = failed.error.unwrap();
    let root = library.dir.path().display().to_string();
    assert!(
        !error.contains(&root) && error.contains("<staging>/"),
        "{error}"
    );

    let upload = library
        .dir
        .path()
        .join("ingest/uploads")
        .join(job.id.as_str());
    let deadline = Instant::now() + Duration::from_secs(30);
    while upload.exists() {
        assert!(
            Instant::now() < deadline,
            "the failed upload was never deleted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let retried = service.retry(&job.id).await.unwrap_err();
    assert!(retried.to_string().contains("upload it again"), "{retried}");
}
