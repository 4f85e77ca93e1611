//! The job service with real ffmpeg: jobs run to done, cancel kills a
//! running encode and publishes nothing, a failed job can be retried, and a
//! restart requeues what a dead process left running and cleans its debris.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use kinema_core::{AccessPolicy, VideoId};
use kinema_media::{IngestService, JobState, JobView, SubmitRequest};
use kinema_store::Store;
use support::*;

async fn start(library: &Library, config: kinema_media::IngestConfig) -> IngestService {
    library.job_service(config).await
}

fn submit(source: &Path, id: &str) -> SubmitRequest {
    SubmitRequest {
        source: source.to_path_buf(),
        owned_source: false,
        video_id: Some(VideoId::new(id).unwrap()),
        title: Some(format!("title of {id}")),
        access: AccessPolicy::Public,
        subtitles: Vec::new(),
    }
}

/// Polls a job until `done` holds for it, for at most two minutes.
async fn until(service: &IngestService, job: &JobView, done: impl Fn(&JobView) -> bool) -> JobView {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let view = service.job(&job.id).await.unwrap();
        if done(&view) {
            return view;
        }
        assert!(Instant::now() < deadline, "job stuck: {view:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn job_runs_to_done_and_is_persisted() {
    let library = Library::new();
    let service = start(&library, test_config()).await;
    let job = service
        .submit(submit(&plain_clip(), "viajob"))
        .await
        .unwrap();
    assert_eq!(job.title, "title of viajob");
    let done = service.wait(&job.id).await.unwrap();
    assert_eq!(done.state, JobState::Done, "{done:?}");
    assert_eq!(done.progress.percent, 100.0);
    let manifest = library
        .store
        .manifest(&VideoId::new("viajob").unwrap())
        .await
        .unwrap();
    assert_eq!(manifest.title, "title of viajob");
    assert!(
        !service.job(&job.id).await.unwrap().log_tail.is_empty(),
        "ffmpeg log kept"
    );
    drop(service);
    // A new process sees the finished job as it was.
    let again = start(&library, test_config()).await;
    assert_eq!(again.jobs()[0].state, JobState::Done);
    let error = again.cancel(&job.id).await.unwrap_err().to_string();
    assert_eq!(
        error,
        format!(
            "job {} is done; only queued or running jobs can be cancelled",
            job.id
        )
    );
    let taken = again
        .submit(submit(&plain_clip(), "viajob"))
        .await
        .unwrap_err();
    assert!(taken.to_string().contains("already exists"), "{taken}");
}

#[tokio::test]
async fn cancel_kills_a_running_encode_and_publishes_nothing() {
    let long = fixture(
        "long-20s.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=320x180:r=25:d=20",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
        ],
    );
    let library = Library::new();
    let config = kinema_media::IngestConfig {
        preset: "veryslow".into(),
        ..test_config()
    };
    let service = start(&library, config).await;
    let job = service.submit(submit(&long, "cancelled")).await.unwrap();
    until(&service, &job, |view| {
        view.progress.stage == kinema_media::Stage::Transcoding
    })
    .await;
    service.cancel(&job.id).await.unwrap();
    let view = service.wait(&job.id).await.unwrap();
    assert_eq!(view.state, JobState::Cancelled, "{view:?}");
    // It says where it stopped, not "queued".
    assert_eq!(
        view.progress.stage,
        kinema_media::Stage::Transcoding,
        "{view:?}"
    );
    assert!(view.progress.eta_seconds.is_none(), "{view:?}");
    library.assert_nothing_published().await;
    // A cancelled job can be queued again (and cancelled again).
    let retried = service.retry(&job.id).await.unwrap();
    assert!(
        matches!(retried.state, JobState::Queued | JobState::Running),
        "{retried:?}"
    );
    service.cancel(&job.id).await.unwrap();
    assert_eq!(
        service.wait(&job.id).await.unwrap().state,
        JobState::Cancelled
    );
    library.assert_nothing_published().await;
}

#[tokio::test]
async fn failed_job_reports_why_and_can_be_retried() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("upload.mp4");
    std::fs::write(&source, "not a video at all\n").unwrap();
    let library = Library::new();
    let service = start(&library, test_config()).await;
    let job = service.submit(submit(&source, "fixed")).await.unwrap();
    let failed = service.wait(&job.id).await.unwrap();
    assert_eq!(failed.state, JobState::Failed);
    assert!(
        failed
            .error
            .as_deref()
            .unwrap()
            .starts_with("source is not a video or audio file"),
        "{failed:?}"
    );
    library.assert_nothing_published().await;
    // The operator replaces the file; retry picks it up.
    std::fs::copy(plain_clip(), &source).unwrap();
    service.retry(&job.id).await.unwrap();
    let done = service.wait(&job.id).await.unwrap();
    assert_eq!(done.state, JobState::Done, "{done:?}");
    assert_eq!(done.error, None);
}

#[tokio::test]
async fn restart_requeues_interrupted_jobs_and_cleans_debris() {
    let library = Library::new();
    let jobs = library.dir.path().join("ingest/jobs");
    std::fs::create_dir_all(&jobs).unwrap();
    let record = |id: &str, video: &str, attempts: u32| {
        serde_json::json!({
            "id": id, "video_id": video, "title": video, "state": "running",
            "source": plain_clip(), "owned_source": false,
            "created_at_unix": 1, "updated_at_unix": 1, "attempts": attempts, "error": null,
        })
    };
    std::fs::write(
        jobs.join("j1.json"),
        record("j1", "interrupted", 1).to_string(),
    )
    .unwrap();
    std::fs::write(
        jobs.join("j2.json"),
        record("j2", "crashloop", 3).to_string(),
    )
    .unwrap();
    // What a killed ingest leaves: a half-written staging directory.
    let debris = library.workspace().staging().join("ingest-99999999-j1");
    std::fs::create_dir_all(debris.join("0")).unwrap();
    std::fs::write(debris.join("0/1.m4s"), b"half").unwrap();

    let service = start(&library, test_config()).await;
    assert!(!debris.exists(), "staging debris was not removed");
    let jobs = service.jobs();
    let crashloop = jobs.iter().find(|job| job.id.as_str() == "j2").unwrap();
    assert_eq!(crashloop.state, JobState::Failed);
    assert!(
        crashloop
            .error
            .as_deref()
            .unwrap()
            .contains("interrupted 3 times")
    );
    let interrupted = jobs.iter().find(|job| job.id.as_str() == "j1").unwrap();
    let done = service.wait(&interrupted.id).await.unwrap();
    assert_eq!(done.state, JobState::Done, "{done:?}");
    assert_eq!(done.attempts, 2);
    assert_eq!(
        library.store.list_videos().await.unwrap(),
        vec![VideoId::new("interrupted").unwrap()]
    );
}
