//! The queue's semantics, one test body per behaviour run against both
//! backends: the embedded one (JSON files in a temporary directory) and
//! PostgreSQL (a real server started for the test from a temporary data
//! directory on a loopback port; `scripts/test` installs it).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kinema_queue::{
    ClaimRequest, EmbeddedQueue, Heartbeat, JobState, NewJob, PostgresConfig, PostgresQueue, Queue,
    QueueConfig, QueueError, TaskSpec, TaskState,
};
use kinema_test_support::PostgresServer;

/// Long enough for any wait on a lease to end; never a measure of speed.
const DEADLINE: Duration = Duration::from_secs(30);
const MAX_ATTEMPTS: u32 = 3;

enum Backend {
    Embedded(tempfile::TempDir),
    Postgres(PostgresServer, String),
}

struct Harness {
    queue: Arc<dyn Queue>,
    backend: Backend,
}

impl Harness {
    async fn embedded() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let queue = EmbeddedQueue::open(&dir.path().join("queue"), config())
            .await
            .unwrap();
        Self {
            queue: Arc::new(queue),
            backend: Backend::Embedded(dir),
        }
    }

    async fn postgres() -> Self {
        let server = tokio::task::spawn_blocking(PostgresServer::start)
            .await
            .unwrap();
        let url = server.url();
        let queue = PostgresQueue::open(postgres_config(&url)).await.unwrap();
        Self {
            queue: Arc::new(queue),
            backend: Backend::Postgres(server, url),
        }
    }

    /// The server process stops and starts again; the queue is opened anew
    /// from what it persisted. For PostgreSQL the queue opened before the
    /// restart is checked to reconnect first.
    async fn restart(&mut self) {
        match &mut self.backend {
            Backend::Embedded(dir) => {
                self.queue = Arc::new(
                    EmbeddedQueue::open(&dir.path().join("queue"), config())
                        .await
                        .unwrap(),
                );
            }
            Backend::Postgres(server, url) => {
                server.stop();
                server.restart();
                // The pool's connections died with the server: the old
                // queue must open new ones instead of failing for good.
                let deadline = Instant::now() + DEADLINE;
                while let Err(error) = self.queue.jobs(10).await {
                    assert!(Instant::now() < deadline, "no reconnect: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                self.queue = Arc::new(PostgresQueue::open(postgres_config(url)).await.unwrap());
            }
        }
    }
}

fn config() -> QueueConfig {
    QueueConfig {
        max_attempts: MAX_ATTEMPTS,
    }
}

fn postgres_config(url: &str) -> PostgresConfig {
    PostgresConfig {
        queue: config(),
        ..PostgresConfig::new(url)
    }
}

fn task(name: &str, kind: &str, depends_on: &[&str], weight_seconds: f64) -> TaskSpec {
    TaskSpec {
        name: name.into(),
        kind: kind.into(),
        payload: serde_json::json!({ "name": name }),
        depends_on: depends_on.iter().map(|d| d.to_string()).collect(),
        weight_seconds,
    }
}

fn job(id: &str, tasks: Vec<TaskSpec>) -> NewJob {
    NewJob {
        id: id.into(),
        source_key: format!("uploads/{id}"),
        settings: serde_json::json!({ "title": id }),
        tasks,
    }
}

/// A chunked job: two chunks and audio, then assemble after all three.
fn chunked(id: &str) -> NewJob {
    job(
        id,
        vec![
            task("chunk-0", "chunk", &[], 12.0),
            task("chunk-1", "chunk", &[], 8.0),
            task("audio", "audio", &[], 20.0),
            task(
                "assemble",
                "assemble",
                &["chunk-0", "chunk-1", "audio"],
                0.0,
            ),
        ],
    )
}

fn request(worker: &str, lease: Duration) -> ClaimRequest {
    ClaimRequest {
        worker: worker.into(),
        lease,
        kinds: Vec::new(),
    }
}

const LONG: Duration = Duration::from_secs(600);
const SHORT: Duration = Duration::from_secs(1);

/// Claims until a claim succeeds (a lease expiring) or the deadline.
async fn claim_when_runnable(queue: &dyn Queue, worker: &str) -> kinema_queue::Claim {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(claim) = queue.claim(&request(worker, LONG)).await.unwrap() {
            return claim;
        }
        assert!(Instant::now() < deadline, "nothing became claimable");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn claim_order_and_dependencies(h: Harness) {
    let q = h.queue.as_ref();
    q.enqueue(chunked("first")).await.unwrap();
    q.enqueue(job("second", vec![task("encode", "encode", &[], 5.0)]))
        .await
        .unwrap();
    let only_assemble = ClaimRequest {
        kinds: vec!["assemble".into()],
        ..request("w", LONG)
    };
    assert_eq!(q.claim(&only_assemble).await.unwrap(), None);
    let mut claims = Vec::new();
    while let Some(claim) = q.claim(&request("w", LONG)).await.unwrap() {
        claims.push(claim);
    }
    let order: Vec<(&str, &str)> = claims
        .iter()
        .map(|c| (c.job_id.as_str(), c.task.as_str()))
        .collect();
    // Assemble waits for its dependencies; the next job's task goes first.
    assert_eq!(
        order,
        [
            ("first", "chunk-0"),
            ("first", "chunk-1"),
            ("first", "audio"),
            ("second", "encode")
        ]
    );
    assert_eq!(claims[0].payload, serde_json::json!({ "name": "chunk-0" }));
    assert_eq!(claims[0].source_key, "uploads/first");
    assert_eq!(claims[0].settings, serde_json::json!({ "title": "first" }));
    assert_eq!(claims[0].attempt, 1);
    for claim in &claims[..2] {
        q.complete(&claim.token, serde_json::json!({ "segments": 3 }))
            .await
            .unwrap();
    }
    assert_eq!(
        q.claim(&only_assemble).await.unwrap(),
        None,
        "audio is not done"
    );
    q.complete(&claims[2].token, serde_json::json!(null))
        .await
        .unwrap();
    let assemble = q
        .claim(&only_assemble)
        .await
        .unwrap()
        .expect("assemble is runnable");
    assert_eq!(assemble.task, "assemble");
    let status = q
        .complete(&assemble.token, serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(status.state, JobState::Done);
    assert_eq!(status.progress, 1.0);
    assert_eq!(
        status.tasks[0].result,
        Some(serde_json::json!({ "segments": 3 }))
    );
    assert_eq!(q.job("second").await.unwrap().state, JobState::Running);
    let jobs = q.jobs(10).await.unwrap();
    let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, ["second", "first"], "newest first");
}

async fn concurrent_claimers_never_share_a_task(h: Harness) {
    let tasks: Vec<TaskSpec> = (0..40)
        .map(|k| task(&format!("chunk-{k}"), "chunk", &[], 1.0))
        .collect();
    h.queue.enqueue(job("many", tasks)).await.unwrap();
    h.queue
        .enqueue(job("more", vec![task("encode", "encode", &[], 1.0)]))
        .await
        .unwrap();
    let mut claimers = Vec::new();
    for worker in 0..16 {
        let queue = h.queue.clone();
        claimers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(claim) = queue
                .claim(&request(&format!("w{worker}"), LONG))
                .await
                .unwrap()
            {
                got.push(format!("{}/{}", claim.job_id, claim.task));
            }
            got
        }));
    }
    let mut all = Vec::new();
    for claimer in claimers {
        all.extend(claimer.await.unwrap());
    }
    let distinct: HashSet<&String> = all.iter().collect();
    assert_eq!(
        distinct.len(),
        all.len(),
        "a task was claimed twice: {all:?}"
    );
    assert_eq!(all.len(), 41);
    assert_eq!(h.queue.claim(&request("late", LONG)).await.unwrap(), None);
}

async fn expired_lease_is_reclaimed_and_the_stale_worker_refused(h: Harness) {
    let q = h.queue.as_ref();
    q.enqueue(job("slow", vec![task("encode", "encode", &[], 1.0)]))
        .await
        .unwrap();
    let stale = q.claim(&request("dead", SHORT)).await.unwrap().unwrap();
    assert_eq!(q.claim(&request("other", LONG)).await.unwrap(), None);
    let fresh = claim_when_runnable(q, "other").await;
    assert_eq!((fresh.task.as_str(), fresh.attempt), ("encode", 2));
    assert_ne!(fresh.token, stale.token);
    for refused in [
        q.heartbeat(&stale.token, 0.5).await.map(|_| ()),
        q.begin_publish(&stale.token).await,
        q.complete(&stale.token, serde_json::json!({}))
            .await
            .map(|_| ()),
        q.fail(&stale.token, "late", true).await.map(|_| ()),
    ] {
        assert!(matches!(refused, Err(QueueError::LeaseLost)), "{refused:?}");
    }
    assert_eq!(
        q.heartbeat(&fresh.token, 0.5).await.unwrap(),
        Heartbeat::Continue
    );
    q.begin_publish(&fresh.token).await.unwrap();
    let status = q
        .complete(&fresh.token, serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!((status.state, status.attempts), (JobState::Done, 2));
}

async fn publish_begins_once_per_run(h: Harness) {
    let q = h.queue.as_ref();
    q.enqueue(job("pub", vec![task("assemble", "assemble", &[], 0.0)]))
        .await
        .unwrap();
    let first = q.claim(&request("a", SHORT)).await.unwrap().unwrap();
    q.begin_publish(&first.token).await.unwrap();
    // The first holder stalls past its lease while publishing.
    let second = claim_when_runnable(q, "b").await;
    assert!(matches!(
        q.begin_publish(&second.token).await,
        Err(QueueError::PublishTaken(id)) if id == "pub"
    ));
    assert!(matches!(
        q.complete(&first.token, serde_json::json!({})).await,
        Err(QueueError::LeaseLost)
    ));
    let failed = q
        .fail(&second.token, "a publish was interrupted", false)
        .await
        .unwrap();
    assert_eq!(failed.state, JobState::Failed);
    // A retry is a new run: its publish may begin.
    q.retry("pub").await.unwrap();
    let third = q.claim(&request("c", LONG)).await.unwrap().unwrap();
    q.begin_publish(&third.token).await.unwrap();
    q.begin_publish(&third.token).await.unwrap();
    let done = q
        .complete(&third.token, serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(done.state, JobState::Done);
}

async fn max_attempts_end_the_job_failed_with_the_reason(h: Harness) {
    let q = h.queue.as_ref();
    q.enqueue(job(
        "flaky",
        vec![task("a", "chunk", &[], 1.0), task("b", "chunk", &[], 1.0)],
    ))
    .await
    .unwrap();
    let mut status = None;
    for attempt in 1..=MAX_ATTEMPTS {
        // Task a, queued again after each failure, comes before b.
        let claim = q.claim(&request("w", LONG)).await.unwrap().unwrap();
        assert_eq!((claim.task.as_str(), claim.attempt), ("a", attempt));
        let after = q
            .fail(
                &claim.token,
                &format!("ffmpeg exited with 1 (try {attempt})"),
                true,
            )
            .await
            .unwrap();
        let expected = if attempt < MAX_ATTEMPTS {
            JobState::Running
        } else {
            JobState::Failed
        };
        assert_eq!(after.state, expected, "after attempt {attempt}");
        status = Some(after);
    }
    let status = status.unwrap();
    assert_eq!(
        status.error.as_deref(),
        Some("ffmpeg exited with 1 (try 3)")
    );
    assert_eq!(status.tasks[0].state, TaskState::Failed);
    assert_eq!(status.tasks[1].state, TaskState::Cancelled);
    assert_eq!(q.claim(&request("w", LONG)).await.unwrap(), None);

    // A failure that is not retryable ends the job at the first attempt.
    q.enqueue(job("bad-source", vec![task("encode", "encode", &[], 1.0)]))
        .await
        .unwrap();
    let claim = q.claim(&request("w", LONG)).await.unwrap().unwrap();
    let status = q
        .fail(&claim.token, "the source is not a video", false)
        .await
        .unwrap();
    assert_eq!((status.state, status.attempts), (JobState::Failed, 1));

    // A task whose worker dies at every attempt ends failed too.
    q.enqueue(job("crashes", vec![task("encode", "encode", &[], 1.0)]))
        .await
        .unwrap();
    for _ in 0..MAX_ATTEMPTS {
        let deadline = Instant::now() + DEADLINE;
        while q.claim(&request("doomed", SHORT)).await.unwrap().is_none() {
            assert!(Instant::now() < deadline, "the lease never expired");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let deadline = Instant::now() + DEADLINE;
    loop {
        assert_eq!(q.claim(&request("w", LONG)).await.unwrap(), None);
        let status = q.job("crashes").await.unwrap();
        if status.state == JobState::Failed {
            let error = status.error.unwrap();
            assert!(error.contains("lost its worker 3 times"), "{error}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the job never failed: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn cancel_is_seen_at_the_next_heartbeat(h: Harness) {
    let q = h.queue.as_ref();
    q.enqueue(chunked("stop-me")).await.unwrap();
    let running = q.claim(&request("w", LONG)).await.unwrap().unwrap();
    assert_eq!(
        q.heartbeat(&running.token, 0.25).await.unwrap(),
        Heartbeat::Continue
    );
    let status = q.cancel("stop-me").await.unwrap();
    assert_eq!(status.state, JobState::Cancelled);
    assert!(status.tasks.iter().all(|t| t.state == TaskState::Cancelled));
    assert_eq!(
        q.heartbeat(&running.token, 0.5).await.unwrap(),
        Heartbeat::Cancelled
    );
    assert!(matches!(
        q.complete(&running.token, serde_json::json!({})).await,
        Err(QueueError::Cancelled(id)) if id == "stop-me"
    ));
    assert_eq!(
        q.claim(&request("w", LONG)).await.unwrap(),
        None,
        "unclaimed tasks never run"
    );
    assert!(matches!(
        q.cancel("stop-me").await,
        Err(QueueError::WrongState {
            state: JobState::Cancelled,
            ..
        })
    ));
    assert!(matches!(
        q.cancel("nope").await,
        Err(QueueError::NotFound(_))
    ));
}

async fn retry_runs_what_was_not_done(h: Harness) {
    let q = h.queue.as_ref();
    q.enqueue(chunked("again")).await.unwrap();
    assert!(matches!(
        q.retry("again").await,
        Err(QueueError::WrongState {
            state: JobState::Queued,
            ..
        })
    ));
    let first = q.claim(&request("w", LONG)).await.unwrap().unwrap();
    q.complete(&first.token, serde_json::json!({}))
        .await
        .unwrap();
    let second = q.claim(&request("w", LONG)).await.unwrap().unwrap();
    q.fail(&second.token, "the disk is full", false)
        .await
        .unwrap();
    let status = q.retry("again").await.unwrap();
    // Work of the job is kept (chunk-0 is done), so it shows as running.
    assert_eq!(
        (status.state, status.error.as_deref()),
        (JobState::Running, None)
    );
    let states: Vec<TaskState> = status.tasks.iter().map(|t| t.state).collect();
    assert_eq!(
        states,
        [
            TaskState::Done,
            TaskState::Queued,
            TaskState::Queued,
            TaskState::Queued
        ]
    );
    assert_eq!(status.tasks[1].attempts, 0);
    assert!(matches!(
        q.heartbeat(&second.token, 0.1).await,
        Err(QueueError::LeaseLost)
    ));
    let claim = q.claim(&request("w", LONG)).await.unwrap().unwrap();
    assert_eq!((claim.task.as_str(), claim.attempt), ("chunk-1", 1));
    q.cancel("again").await.unwrap();
    // A job none of whose work was kept is queued again.
    q.enqueue(job("whole", vec![task("encode", "encode", &[], 1.0)]))
        .await
        .unwrap();
    let claim = q.claim(&request("w", LONG)).await.unwrap().unwrap();
    assert_eq!(claim.job_id, "whole");
    q.fail(&claim.token, "ffmpeg was killed", false)
        .await
        .unwrap();
    let status = q.retry("whole").await.unwrap();
    assert_eq!((status.state, status.attempts), (JobState::Queued, 0));
    // Cancelled jobs are retried the same way.
    assert_eq!(q.retry("again").await.unwrap().state, JobState::Running);
}

async fn progress_is_the_weighted_sum_over_tasks(h: Harness) {
    let q = h.queue.as_ref();
    let status = q.enqueue(chunked("film")).await.unwrap();
    assert_eq!((status.state, status.progress), (JobState::Queued, 0.0));
    let chunk_0 = q.claim(&request("w", LONG)).await.unwrap().unwrap();
    let chunk_1 = q.claim(&request("w", LONG)).await.unwrap().unwrap();
    q.complete(&chunk_0.token, serde_json::json!({}))
        .await
        .unwrap();
    q.heartbeat(&chunk_1.token, 0.5).await.unwrap();
    let status = q.job("film").await.unwrap();
    assert_eq!(status.state, JobState::Running);
    // (12 s done + 8 s half done) of 40 s.
    assert!(
        (status.progress - 16.0 / 40.0).abs() < 1e-9,
        "{}",
        status.progress
    );
    assert!(matches!(
        q.heartbeat(&chunk_1.token, 1.5).await,
        Err(QueueError::Invalid {
            what: "progress",
            ..
        })
    ));
}

async fn bad_input_is_refused(h: Harness) {
    let q = h.queue.as_ref();
    q.enqueue(job("one", vec![task("encode", "encode", &[], 1.0)]))
        .await
        .unwrap();
    assert!(matches!(
        q.enqueue(job("one", vec![task("encode", "encode", &[], 1.0)]))
            .await,
        Err(QueueError::AlreadyExists(_))
    ));
    assert!(matches!(
        q.enqueue(job("two", vec![task("x", "chunk", &["y"], 1.0)]))
            .await,
        Err(QueueError::Invalid {
            what: "task dependency",
            ..
        })
    ));
    assert!(matches!(
        q.claim(&request("w", Duration::from_secs(7200))).await,
        Err(QueueError::Invalid { what: "lease", .. })
    ));
    let unknown = kinema_queue::LeaseToken::parse(&"0".repeat(32)).unwrap();
    assert!(matches!(
        q.complete(&unknown, serde_json::json!({})).await,
        Err(QueueError::LeaseLost)
    ));
    let claim = q.claim(&request("w", LONG)).await.unwrap().unwrap();
    let huge = serde_json::json!("x".repeat(kinema_queue::MAX_PAYLOAD_BYTES));
    assert!(matches!(
        q.complete(&claim.token, huge).await,
        Err(QueueError::Invalid {
            what: "task result",
            ..
        })
    ));
    assert!(matches!(q.job("two").await, Err(QueueError::NotFound(_))));
}

async fn restart_keeps_jobs_and_leases_expire(mut h: Harness) {
    h.queue.enqueue(chunked("kept")).await.unwrap();
    let held = h.queue.claim(&request("w", SHORT)).await.unwrap().unwrap();
    let done = h.queue.claim(&request("w", LONG)).await.unwrap().unwrap();
    h.queue
        .complete(&done.token, serde_json::json!({ "k": 1 }))
        .await
        .unwrap();
    h.restart().await;
    let status = h.queue.job("kept").await.unwrap();
    assert_eq!(status.state, JobState::Running);
    assert_eq!(status.tasks[1].state, TaskState::Done);
    assert_eq!(status.tasks[1].result, Some(serde_json::json!({ "k": 1 })));
    // The restart ended the worker that held chunk-0: its lease expires and
    // the task is claimed again.
    let mut claimed = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while !claimed
        .iter()
        .any(|c: &kinema_queue::Claim| c.task == held.task)
    {
        assert!(Instant::now() < deadline, "chunk-0 never came back");
        match h.queue.claim(&request("w2", LONG)).await.unwrap() {
            Some(claim) => claimed.push(claim),
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let again = claimed.iter().find(|c| c.task == held.task).unwrap();
    assert_eq!(again.attempt, 2);
}

macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        $(mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn embedded() {
                super::$scenario(super::Harness::embedded().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$scenario(super::Harness::postgres().await).await;
            }
        })*
    };
}

on_both_backends!(
    claim_order_and_dependencies,
    concurrent_claimers_never_share_a_task,
    expired_lease_is_reclaimed_and_the_stale_worker_refused,
    publish_begins_once_per_run,
    max_attempts_end_the_job_failed_with_the_reason,
    cancel_is_seen_at_the_next_heartbeat,
    retry_runs_what_was_not_done,
    progress_is_the_weighted_sum_over_tasks,
    bad_input_is_refused,
    restart_keeps_jobs_and_leases_expire,
);
