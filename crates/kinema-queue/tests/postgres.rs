//! What only the PostgreSQL backend has: a schema migrated at open by
//! servers that may start together, one database shared by several
//! servers' pools, and refusals that never show the password.

use std::collections::HashSet;
use std::time::Duration;

use kinema_queue::{
    ClaimRequest, NewJob, PostgresConfig, PostgresQueue, Queue, QueueError, TaskSpec,
};
use kinema_test_support::PostgresServer;

async fn server() -> PostgresServer {
    tokio::task::spawn_blocking(PostgresServer::start)
        .await
        .unwrap()
}

fn job(id: &str, tasks: usize) -> NewJob {
    NewJob {
        id: id.into(),
        source_key: format!("jobs/{id}/source"),
        settings: serde_json::json!({}),
        tasks: (0..tasks)
            .map(|k| TaskSpec {
                name: format!("chunk-{k}"),
                kind: "chunk".into(),
                payload: serde_json::json!({ "index": k }),
                depends_on: Vec::new(),
                weight_seconds: 6.0,
            })
            .collect(),
    }
}

async fn schema_versions(url: &str) -> Vec<i32> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .query(
            "SELECT version FROM kinema_queue_schema ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn servers_starting_together_migrate_once() {
    let server = server().await;
    let url = server.url();
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PostgresQueue::open(PostgresConfig::new(url)).await })
        })
        .collect();
    for open in opens {
        open.await.unwrap().unwrap();
    }
    assert_eq!(schema_versions(&url).await, [1]);
    // Opening a migrated database changes nothing and keeps its jobs.
    let queue = PostgresQueue::open(PostgresConfig::new(url.clone()))
        .await
        .unwrap();
    queue.enqueue(job("kept", 1)).await.unwrap();
    let again = PostgresQueue::open(PostgresConfig::new(url.clone()))
        .await
        .unwrap();
    assert_eq!(again.job("kept").await.unwrap().tasks.len(), 1);
    assert_eq!(schema_versions(&url).await, [1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_schema_newer_than_this_build_is_refused() {
    let server = server().await;
    let url = server.url();
    PostgresQueue::open(PostgresConfig::new(url.clone()))
        .await
        .unwrap();
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .execute("INSERT INTO kinema_queue_schema (version) VALUES (99)", &[])
        .await
        .unwrap();
    let error = PostgresQueue::open(PostgresConfig::new(url))
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("version 99, newer than this kinema knows"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_sharing_a_database_never_hand_out_a_task_twice() {
    let server = server().await;
    let url = server.url();
    let servers: Vec<PostgresQueue> = vec![
        PostgresQueue::open(PostgresConfig::new(url.clone()))
            .await
            .unwrap(),
        PostgresQueue::open(PostgresConfig {
            pool_size: 3,
            ..PostgresConfig::new(url.clone())
        })
        .await
        .unwrap(),
    ];
    servers[0].enqueue(job("shared-a", 30)).await.unwrap();
    servers[1].enqueue(job("shared-b", 30)).await.unwrap();
    let mut claimers = Vec::new();
    for (k, queue) in servers.iter().enumerate() {
        for worker in 0..8 {
            let queue = queue.clone();
            claimers.push(tokio::spawn(async move {
                let request = ClaimRequest {
                    worker: format!("s{k}-w{worker}"),
                    lease: Duration::from_secs(600),
                    kinds: vec!["chunk".into()],
                };
                let mut got = Vec::new();
                while let Some(claim) = queue.claim(&request).await.unwrap() {
                    got.push(format!("{}/{}", claim.job_id, claim.task));
                    queue
                        .complete(&claim.token, serde_json::json!({}))
                        .await
                        .unwrap();
                }
                got
            }));
        }
    }
    let mut all = Vec::new();
    for claimer in claimers {
        all.extend(claimer.await.unwrap());
    }
    let distinct: HashSet<&String> = all.iter().collect();
    assert_eq!(distinct.len(), all.len(), "a task was handed out twice");
    assert_eq!(all.len(), 60);
    for id in ["shared-a", "shared-b"] {
        let status = servers[0].job(id).await.unwrap();
        assert_eq!(status.state, kinema_queue::JobState::Done, "{id}");
    }
}

#[tokio::test]
async fn an_unreachable_database_is_an_error_without_the_password() {
    // A port nothing listens on: connecting is refused at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = PostgresConfig {
        statement_timeout: Duration::from_secs(2),
        ..PostgresConfig::new(format!("postgres://kinema:hunter2@127.0.0.1:{port}/q"))
    };
    let error = PostgresQueue::open(config.clone()).await.unwrap_err();
    assert!(matches!(error, QueueError::Backend(_)), "{error:?}");
    let text = error.to_string();
    assert!(
        text.contains(&format!("kinema:***@127.0.0.1:{port}")),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!format!("{config:?}").contains("hunter2"));
    let error = PostgresQueue::open(PostgresConfig {
        pool_size: 0,
        ..config
    })
    .await
    .unwrap_err();
    assert!(
        matches!(
            error,
            QueueError::Invalid {
                what: "queue pool size",
                ..
            }
        ),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lock_held_elsewhere_times_out_instead_of_hanging() {
    let server = server().await;
    let url = server.url();
    let queue = PostgresQueue::open(PostgresConfig {
        statement_timeout: Duration::from_secs(1),
        ..PostgresConfig::new(url.clone())
    })
    .await
    .unwrap();
    queue.enqueue(job("held", 1)).await.unwrap();
    // Another session holds the job's row, as a stuck transaction would.
    let (mut client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let transaction = client.transaction().await.unwrap();
    transaction
        .execute(
            "SELECT 1 FROM kinema_queue_jobs WHERE id = 'held' FOR UPDATE",
            &[],
        )
        .await
        .unwrap();
    let cancel = tokio::time::timeout(Duration::from_secs(30), queue.cancel("held"))
        .await
        .expect("the lock wait is bounded by the statement timeout");
    let error = cancel.unwrap_err();
    assert!(matches!(error, QueueError::Backend(_)), "{error:?}");
    assert!(error.to_string().contains("timeout"), "{error}");
    transaction.rollback().await.unwrap();
    // Once the row is free the same call succeeds.
    assert_eq!(
        queue.cancel("held").await.unwrap().state,
        kinema_queue::JobState::Cancelled
    );
}
