//! The PostgreSQL backend: jobs and tasks in two tables, for a queue that
//! workers on many machines share through `kinema serve`.
//!
//! - **Schema** is created and migrated at open: numbered migrations,
//!   applied in one transaction under an advisory lock, recorded in
//!   `kinema_queue_schema`, so opening twice (or from two servers at once)
//!   is harmless.
//! - **Claims** pick the oldest runnable task with `FOR UPDATE SKIP
//!   LOCKED`: concurrent claimers pass over each other's rows instead of
//!   queueing behind them, and never get the same task.
//! - **Leases** are timed by the database's clock (`now()`), never by a
//!   server's or a worker's, so machines whose clocks disagree still agree
//!   on which lease expired.
//! - **Locks** are always taken job row first, then task rows, by every
//!   operation that changes a job's state (complete, fail, cancel, retry);
//!   claims and heartbeats lock task rows only. No two operations wait on
//!   each other in a cycle.
//! - **Bounds:** a pool of at most [`PostgresConfig::pool_size`]
//!   connections, a wait for one bounded by the statement timeout, and
//!   every statement and lock wait bounded by it on the server's side.
//!
//! The URL's password is never logged or put in an error: messages name the
//! server by [`redacted_url`].

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use crate::{QueueConfig, QueueError};

mod ops;
mod rows;
mod schema;

/// How a [`PostgresQueue`] connects.
#[derive(Clone)]
pub struct PostgresConfig {
    /// `postgres://user:password@host:port/database`.
    pub url: String,
    /// Connections held at most (1 to 64).
    pub pool_size: usize,
    /// Longest any statement, lock wait, connect or wait for a pooled
    /// connection may take.
    pub statement_timeout: Duration,
    pub queue: QueueConfig,
}

impl PostgresConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            pool_size: 8,
            statement_timeout: Duration::from_secs(10),
            queue: QueueConfig::default(),
        }
    }
}

impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &redacted_url(&self.url))
            .field("pool_size", &self.pool_size)
            .field("statement_timeout", &self.statement_timeout)
            .field("queue", &self.queue)
            .finish()
    }
}

/// The URL with its password replaced by `***`, for logs and errors.
pub fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<postgres url>".to_string();
    };
    // The last '@' ends the user information even when a password holds
    // an unescaped '@' or '/': better to hide too much than a password.
    match rest.rsplit_once('@') {
        Some((user_info, host_and_rest)) => {
            let user = user_info.split([':', '/']).next().unwrap_or("");
            format!("{scheme}://{user}:***@{host_and_rest}")
        }
        None => url.to_string(),
    }
}

/// The job queue in a PostgreSQL database.
#[derive(Clone)]
pub struct PostgresQueue {
    pool: Pool,
    config: QueueConfig,
    server: String,
}

impl std::fmt::Debug for PostgresQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresQueue")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

pub(crate) fn db_error(error: tokio_postgres::Error) -> QueueError {
    use std::error::Error;
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    QueueError::Backend(format!("postgresql: {text}"))
}

impl PostgresQueue {
    /// Connects (a first connection proves the URL and credentials) and
    /// creates or migrates the schema.
    pub async fn open(config: PostgresConfig) -> Result<Self, QueueError> {
        let server = redacted_url(&config.url);
        if !(1..=64).contains(&config.pool_size) {
            return Err(QueueError::Invalid {
                what: "queue pool size",
                why: format!("{} is outside 1 to 64", config.pool_size),
            });
        }
        let mut pg_config =
            tokio_postgres::Config::from_str(&config.url).map_err(|error| QueueError::Invalid {
                what: "queue url",
                why: format!("{server}: {error}"),
            })?;
        let timeout_ms = config.statement_timeout.as_millis().max(1);
        let options = format!(
            "{} -c statement_timeout={timeout_ms} -c lock_timeout={timeout_ms} -c TimeZone=UTC",
            pg_config.get_options().unwrap_or("")
        );
        pg_config
            .options(options.trim())
            .connect_timeout(config.statement_timeout)
            .application_name("kinema");
        let manager = Manager::from_config(
            pg_config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .wait_timeout(Some(config.statement_timeout))
            .create_timeout(Some(config.statement_timeout))
            .recycle_timeout(Some(config.statement_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|error| QueueError::Backend(format!("{server}: {error}")))?;
        let queue = Self {
            pool,
            config: config.queue,
            server,
        };
        let mut client = queue.client().await?;
        schema::migrate(&mut client).await?;
        tracing::info!(server = %queue.server, "job queue in PostgreSQL");
        Ok(queue)
    }

    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, QueueError> {
        self.pool
            .get()
            .await
            .map_err(|error| QueueError::Backend(format!("postgresql at {}: {error}", self.server)))
    }
}

#[cfg(test)]
mod tests {
    use super::redacted_url;

    #[test]
    fn passwords_never_reach_a_log_line() {
        let cases = [
            (
                "postgres://kinema:s3cret@db.example:5432/kinema",
                "postgres://kinema:***@db.example:5432/kinema",
            ),
            (
                "postgresql://kinema@127.0.0.1/q?sslmode=disable",
                "postgresql://kinema:***@127.0.0.1/q?sslmode=disable",
            ),
            ("postgres://u:p@ss/w@rd@host/db", "postgres://u:***@host/db"),
            ("postgres://127.0.0.1/db", "postgres://127.0.0.1/db"),
            ("host=localhost password=x", "<postgres url>"),
        ];
        for (url, expected) in cases {
            assert_eq!(redacted_url(url), expected, "{url}");
        }
    }
}
