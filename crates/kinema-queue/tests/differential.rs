//! Both backends are one queue: random sequences of operations (claims with
//! and without a kind, completes, failures retryable or not, heartbeats,
//! publishes, cancels, retries, stale tokens included) are run against the
//! embedded queue and PostgreSQL side by side, and after every step their
//! answers and every job's status must be the same.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kinema_queue::{
    ClaimRequest, EmbeddedQueue, JobStatus, LeaseToken, NewJob, PostgresConfig, PostgresQueue,
    Queue, QueueConfig, QueueError, TaskSpec,
};
use kinema_test_support::PostgresServer;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

const KINDS: [&str; 3] = ["chunk", "audio", "assemble"];

#[derive(Debug, Clone)]
enum Op {
    Claim { kind: Option<usize> },
    Complete(usize),
    Fail(usize, bool),
    Heartbeat(usize, u8),
    BeginPublish(usize),
    Cancel(usize),
    Retry(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => proptest::option::of(0..KINDS.len()).prop_map(|kind| Op::Claim { kind }),
        3 => any::<usize>().prop_map(Op::Complete),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(k, r)| Op::Fail(k, r)),
        1 => (any::<usize>(), 0..=10u8).prop_map(|(k, p)| Op::Heartbeat(k, p)),
        1 => any::<usize>().prop_map(Op::BeginPublish),
        1 => (0..2usize).prop_map(Op::Cancel),
        1 => (0..2usize).prop_map(Op::Retry),
    ]
}

/// A job of 1 to 5 tasks, each depending on some of those before it.
fn job(id: &'static str) -> impl Strategy<Value = NewJob> {
    proptest::collection::vec((0..KINDS.len(), any::<u8>(), 0..20u32), 1..=5).prop_map(
        move |specs| NewJob {
            id: id.into(),
            source_key: format!("jobs/{id}/source"),
            settings: serde_json::json!({ "job": id }),
            tasks: specs
                .iter()
                .enumerate()
                .map(|(k, (kind, deps, weight))| TaskSpec {
                    name: format!("t{k}"),
                    kind: KINDS[*kind].into(),
                    payload: serde_json::json!({ "k": k }),
                    depends_on: (0..k)
                        .filter(|d| deps & (1 << d) != 0)
                        .map(|d| format!("t{d}"))
                        .collect(),
                    weight_seconds: f64::from(*weight),
                })
                .collect(),
        },
    )
}

/// What an answer says, without what differs by backend (tokens, times).
fn outcome<T>(result: Result<T, QueueError>, shape: impl FnOnce(T) -> String) -> String {
    match result {
        Ok(value) => shape(value),
        Err(QueueError::Backend(error)) => panic!("backend failure: {error}"),
        Err(error) => format!("error {}", error_kind(&error)),
    }
}

fn error_kind(error: &QueueError) -> &'static str {
    match error {
        QueueError::NotFound(_) => "not found",
        QueueError::AlreadyExists(_) => "exists",
        QueueError::WrongState { .. } => "wrong state",
        QueueError::LeaseLost => "lease lost",
        QueueError::Cancelled(_) => "cancelled",
        QueueError::PublishTaken(_) => "publish taken",
        QueueError::Invalid { .. } => "invalid",
        QueueError::Backend(_) => "backend",
    }
}

fn shown(status: &JobStatus) -> String {
    let tasks: Vec<String> = status
        .tasks
        .iter()
        .map(|t| {
            format!(
                "{}:{}:{:?}:a{}:p{:.6}:{:?}:{:?}:{:?}",
                t.name, t.kind, t.state, t.attempts, t.progress, t.worker, t.error, t.result
            )
        })
        .collect();
    format!(
        "{} {:?} p{:.9} a{} {:?} [{}]",
        status.id,
        status.state,
        status.progress,
        status.attempts,
        status.error,
        tasks.join(" ")
    )
}

async fn step(queue: &dyn Queue, op: &Op, tokens: &mut Vec<LeaseToken>) -> String {
    let token_at =
        |tokens: &Vec<LeaseToken>, k: usize| tokens.get(k % tokens.len().max(1)).cloned();
    let jobs = ["a", "b"];
    match op {
        Op::Claim { kind } => {
            let request = ClaimRequest {
                worker: "w".into(),
                lease: Duration::from_secs(3600),
                kinds: kind.iter().map(|k| KINDS[*k].to_string()).collect(),
            };
            outcome(queue.claim(&request).await, |claim| match claim {
                Some(claim) => {
                    tokens.push(claim.token.clone());
                    format!(
                        "claimed {}/{} attempt {} {}",
                        claim.job_id, claim.task, claim.attempt, claim.payload
                    )
                }
                None => "nothing".into(),
            })
        }
        Op::Complete(k) => match token_at(tokens, *k) {
            Some(token) => outcome(
                queue
                    .complete(&token, serde_json::json!({ "by": k % 7 }))
                    .await,
                |s| shown(&s),
            ),
            None => "no token".into(),
        },
        Op::Fail(k, retryable) => match token_at(tokens, *k) {
            Some(token) => outcome(queue.fail(&token, "it broke", *retryable).await, |s| {
                shown(&s)
            }),
            None => "no token".into(),
        },
        Op::Heartbeat(k, progress) => match token_at(tokens, *k) {
            Some(token) => outcome(
                queue.heartbeat(&token, f64::from(*progress) / 10.0).await,
                |answer| format!("{answer:?}"),
            ),
            None => "no token".into(),
        },
        Op::BeginPublish(k) => match token_at(tokens, *k) {
            Some(token) => outcome(queue.begin_publish(&token).await, |()| "publishing".into()),
            None => "no token".into(),
        },
        Op::Cancel(j) => outcome(queue.cancel(jobs[*j]).await, |s| shown(&s)),
        Op::Retry(j) => outcome(queue.retry(jobs[*j]).await, |s| shown(&s)),
    }
}

async fn all_jobs(queue: &dyn Queue) -> Vec<String> {
    queue.jobs(10).await.unwrap().iter().map(shown).collect()
}

async fn run_case(url: String, jobs: [NewJob; 2], ops: Vec<Op>) -> Result<(), TestCaseError> {
    let config = QueueConfig { max_attempts: 2 };
    let embedded = EmbeddedQueue::in_memory(config);
    let postgres = PostgresQueue::open(PostgresConfig {
        queue: config,
        pool_size: 2,
        ..PostgresConfig::new(url)
    })
    .await
    .unwrap();
    for job in jobs {
        let one = outcome(embedded.enqueue(job.clone()).await, |s| shown(&s));
        let other = outcome(postgres.enqueue(job).await, |s| shown(&s));
        prop_assert_eq!(one, other);
    }
    let (mut embedded_tokens, mut postgres_tokens) = (Vec::new(), Vec::new());
    for (n, op) in ops.iter().enumerate() {
        let one = step(&embedded, op, &mut embedded_tokens).await;
        let other = step(&postgres, op, &mut postgres_tokens).await;
        prop_assert_eq!(&one, &other, "answer to step {} {:?}", n, op);
        prop_assert_eq!(
            all_jobs(&embedded).await,
            all_jobs(&postgres).await,
            "jobs after step {} {:?}",
            n,
            op
        );
    }
    Ok(())
}

#[test]
fn both_backends_answer_every_sequence_alike() {
    let server = PostgresServer::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cases = AtomicUsize::new(0);
    let mut runner = TestRunner::new(Config {
        cases: 40,
        failure_persistence: None,
        ..Config::default()
    });
    let scenario = (job("a"), job("b"), proptest::collection::vec(op(), 1..40));
    runner
        .run(&scenario, |(a, b, ops)| {
            // A database per case: claims take the oldest job of all.
            let case = cases.fetch_add(1, Ordering::Relaxed);
            let url = server.create_database(&format!("case_{case}"));
            runtime.block_on(run_case(url, [a, b], ops))
        })
        .unwrap();
}
