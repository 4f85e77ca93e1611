//! Reading rows into the queue's types, and the steps that several
//! operations take inside their transaction: locking a lease's job and
//! task, failing a job, locking a job.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::db_error;
use crate::model::{self, TaskFigures};
use crate::{JobState, JobStatus, LeaseToken, QueueError, TaskState, TaskStatus};

pub(super) const JOB_COLUMNS: &str = "id, source_key, settings, state, error, \
     extract(epoch FROM created_at)::bigint, extract(epoch FROM updated_at)::bigint";
pub(super) const TASK_COLUMNS: &str = "job_id, name, kind, payload, depends_on, weight_seconds, state, attempts, progress, \
     worker, error, result";

fn corrupt(what: &str) -> QueueError {
    QueueError::Backend(format!(
        "postgresql: unreadable {what} in the queue's tables"
    ))
}

pub(super) fn task_status(row: &Row) -> Result<TaskStatus, QueueError> {
    let depends_on: serde_json::Value = row.get(4);
    let attempts: i32 = row.get(7);
    Ok(TaskStatus {
        name: row.get(1),
        kind: row.get(2),
        payload: row.get(3),
        depends_on: serde_json::from_value(depends_on).map_err(|_| corrupt("dependencies"))?,
        weight_seconds: row.get(5),
        state: TaskState::parse(row.get(6)).ok_or_else(|| corrupt("task state"))?,
        attempts: attempts.max(0) as u32,
        progress: row.get(8),
        worker: row.get(9),
        error: row.get(10),
        result: row.get(11),
    })
}

pub(super) fn job_status(row: &Row, tasks: Vec<TaskStatus>) -> Result<JobStatus, QueueError> {
    let stored = JobState::parse(row.get(3)).ok_or_else(|| corrupt("job state"))?;
    let figures: Vec<TaskFigures> = tasks
        .iter()
        .map(|task| TaskFigures {
            state: task.state,
            weight_seconds: task.weight_seconds,
            progress: task.progress,
            attempts: task.attempts,
        })
        .collect();
    let created: i64 = row.get(5);
    let updated: i64 = row.get(6);
    Ok(JobStatus {
        id: row.get(0),
        source_key: row.get(1),
        settings: row.get(2),
        state: model::shown_state(stored, &figures),
        progress: model::job_progress(&figures),
        attempts: model::job_attempts(&figures),
        error: row.get(4),
        created_at_unix: created.max(0) as u64,
        updated_at_unix: updated.max(0) as u64,
        tasks,
    })
}

pub(super) async fn load_job(
    client: &impl GenericClient,
    job_id: &str,
) -> Result<JobStatus, QueueError> {
    let row = client
        .query_opt(
            &format!("SELECT {JOB_COLUMNS} FROM kinema_queue_jobs WHERE id = $1"),
            &[&job_id],
        )
        .await
        .map_err(db_error)?
        .ok_or_else(|| QueueError::NotFound(job_id.to_string()))?;
    let tasks = client
        .query(
            &format!(
                "SELECT {TASK_COLUMNS} FROM kinema_queue_tasks WHERE job_id = $1 ORDER BY idx"
            ),
            &[&job_id],
        )
        .await
        .map_err(db_error)?
        .iter()
        .map(task_status)
        .collect::<Result<Vec<_>, _>>()?;
    job_status(&row, tasks)
}

/// Within a transaction: locks the job a token's task belongs to, then the
/// task, and checks the lease is still held. Gives the job id and the
/// task's index, or why the token is no longer good.
pub(super) async fn lock_held(
    transaction: &deadpool_postgres::Transaction<'_>,
    token: &LeaseToken,
) -> Result<(String, i32, Option<String>), QueueError> {
    let job_id: String = transaction
        .query_opt(
            "SELECT job_id FROM kinema_queue_tasks WHERE lease_token = $1",
            &[&token.as_str()],
        )
        .await
        .map_err(db_error)?
        .ok_or(QueueError::LeaseLost)?
        .get(0);
    let job = transaction
        .query_one(
            "SELECT state, publish_token FROM kinema_queue_jobs WHERE id = $1 FOR UPDATE",
            &[&job_id],
        )
        .await
        .map_err(db_error)?;
    match JobState::parse(job.get(0)) {
        Some(JobState::Cancelled) => return Err(QueueError::Cancelled(job_id)),
        Some(JobState::Queued) => {}
        _ => return Err(QueueError::LeaseLost),
    }
    let task = transaction
        .query_opt(
            "SELECT idx FROM kinema_queue_tasks
             WHERE job_id = $1 AND lease_token = $2 AND state = 'running'
               AND lease_expires_at >= now()
             FOR UPDATE",
            &[&job_id, &token.as_str()],
        )
        .await
        .map_err(db_error)?
        .ok_or(QueueError::LeaseLost)?;
    Ok((job_id, task.get(0), job.get(1)))
}

/// Within a transaction holding the job row: ends the job failed with
/// `reason`; its unfinished tasks are cancelled and their leases dropped.
pub(super) async fn fail_job(
    transaction: &deadpool_postgres::Transaction<'_>,
    job_id: &str,
    reason: &str,
) -> Result<(), QueueError> {
    transaction
        .execute(
            "UPDATE kinema_queue_tasks
             SET state = CASE WHEN state IN ('queued', 'running') THEN 'cancelled' ELSE state END,
                 lease_token = NULL, lease_expires_at = NULL
             WHERE job_id = $1",
            &[&job_id],
        )
        .await
        .map_err(db_error)?;
    transaction
        .execute(
            "UPDATE kinema_queue_jobs
             SET state = 'failed', error = $2, publish_token = NULL, updated_at = now()
             WHERE id = $1",
            &[&job_id, &reason],
        )
        .await
        .map_err(db_error)?;
    Ok(())
}

/// Within a transaction: locks a job's row and gives its stored state.
pub(super) async fn lock_job(
    transaction: &deadpool_postgres::Transaction<'_>,
    job_id: &str,
) -> Result<JobState, QueueError> {
    let row = transaction
        .query_opt(
            "SELECT state FROM kinema_queue_jobs WHERE id = $1 FOR UPDATE",
            &[&job_id],
        )
        .await
        .map_err(db_error)?
        .ok_or_else(|| QueueError::NotFound(job_id.to_string()))?;
    JobState::parse(row.get(0)).ok_or_else(|| corrupt("job state"))
}
