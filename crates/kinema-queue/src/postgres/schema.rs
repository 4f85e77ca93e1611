//! The queue's schema and its migrations. Each migration is applied once,
//! in order, in the transaction that records its number; an advisory lock
//! keeps two servers starting together from racing. A database migrated by
//! a newer kinema than this one is refused rather than misread.

use crate::QueueError;
use crate::postgres::db_error;

/// Taken with `pg_advisory_xact_lock` while migrating ("kinemaQ" in ASCII).
const MIGRATION_LOCK: i64 = 0x006b_696e_656d_6151;

/// The migrations, numbered from 1 by their place in this list. Never edit
/// one that has shipped: add another.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE kinema_queue_jobs (
    seq BIGSERIAL NOT NULL UNIQUE,
    id TEXT PRIMARY KEY,
    source_key TEXT NOT NULL,
    settings JSONB NOT NULL,
    -- 'queued' while active (running is derived from the tasks), or an end.
    state TEXT NOT NULL,
    error TEXT,
    publish_token TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE kinema_queue_tasks (
    job_id TEXT NOT NULL REFERENCES kinema_queue_jobs (id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload JSONB NOT NULL,
    -- A JSON array of the names of earlier tasks of the job.
    depends_on JSONB NOT NULL,
    weight_seconds DOUBLE PRECISION NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    progress DOUBLE PRECISION NOT NULL DEFAULT 0,
    worker TEXT,
    error TEXT,
    result JSONB,
    lease_token TEXT UNIQUE,
    lease_seconds DOUBLE PRECISION,
    lease_expires_at TIMESTAMPTZ,
    PRIMARY KEY (job_id, idx),
    UNIQUE (job_id, name)
);
CREATE INDEX kinema_queue_tasks_active ON kinema_queue_tasks (job_id, idx)
    WHERE state IN ('queued', 'running');
"#];

/// Brings the schema to the newest version this build knows.
pub(crate) async fn migrate(client: &mut deadpool_postgres::Object) -> Result<(), QueueError> {
    let transaction = client.transaction().await.map_err(db_error)?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(db_error)?;
    transaction
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS kinema_queue_schema (
                 version INTEGER PRIMARY KEY,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
             )",
        )
        .await
        .map_err(db_error)?;
    let current: i32 = transaction
        .query_one(
            "SELECT COALESCE(max(version), 0) FROM kinema_queue_schema",
            &[],
        )
        .await
        .map_err(db_error)?
        .get(0);
    let known = MIGRATIONS.len() as i32;
    if current > known {
        return Err(QueueError::Backend(format!(
            "the queue's schema is at version {current}, newer than this kinema knows ({known}); \
             upgrade kinema"
        )));
    }
    for (number, migration) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = number as i32 + 1;
        transaction
            .batch_execute(migration)
            .await
            .map_err(db_error)?;
        transaction
            .execute(
                "INSERT INTO kinema_queue_schema (version) VALUES ($1)",
                &[&version],
            )
            .await
            .map_err(db_error)?;
        tracing::info!(version, "migrated the job queue's schema");
    }
    transaction.commit().await.map_err(db_error)
}
