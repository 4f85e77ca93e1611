//! The queue's operations in SQL. Each is one transaction; those that
//! change a job's state lock its job row first, then task rows (see the
//! module above for why that order).

use super::rows::{
    JOB_COLUMNS, TASK_COLUMNS, fail_job, job_status, load_job, lock_held, lock_job, task_status,
};
use super::{PostgresQueue, db_error};
use crate::model;
use crate::{
    Claim, ClaimRequest, Heartbeat, JobState, JobStatus, LeaseToken, MAX_LIST, NewJob, Queue,
    QueueError, TaskStatus,
};

impl PostgresQueue {
    /// Fails the jobs whose task lost its worker at its last attempt (its
    /// lease expired): they are passed over by claims, so nothing else
    /// would end them.
    async fn fail_exhausted(&self) -> Result<(), QueueError> {
        let max_attempts = self.config.max_attempts as i32;
        let mut client = self.client().await?;
        let exhausted = client
            .query(
                "SELECT t.job_id, t.idx FROM kinema_queue_tasks t
                 JOIN kinema_queue_jobs j ON j.id = t.job_id
                 WHERE j.state = 'queued' AND t.state = 'running'
                   AND t.lease_expires_at < now() AND t.attempts >= $1
                 LIMIT 16",
                &[&max_attempts],
            )
            .await
            .map_err(db_error)?;
        for row in exhausted {
            let (job_id, idx): (String, i32) = (row.get(0), row.get(1));
            let transaction = client.transaction().await.map_err(db_error)?;
            transaction
                .execute(
                    "SELECT 1 FROM kinema_queue_jobs WHERE id = $1 FOR UPDATE",
                    &[&job_id],
                )
                .await
                .map_err(db_error)?;
            let still = transaction
                .query_opt(
                    "UPDATE kinema_queue_tasks
                     SET state = 'failed', error = 'its lease expired: the worker stopped answering',
                         lease_token = NULL, lease_expires_at = NULL
                     WHERE job_id = $1 AND idx = $2 AND state = 'running'
                       AND lease_expires_at < now() AND attempts >= $3
                     RETURNING name, attempts",
                    &[&job_id, &idx, &max_attempts],
                )
                .await
                .map_err(db_error)?;
            if let Some(task) = still {
                let (name, attempts): (String, i32) = (task.get(0), task.get(1));
                let reason = format!(
                    "task {name} lost its worker {attempts} times (its lease expired); not retried again"
                );
                fail_job(&transaction, &job_id, &reason).await?;
            }
            transaction.commit().await.map_err(db_error)?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Queue for PostgresQueue {
    async fn enqueue(&self, job: NewJob) -> Result<JobStatus, QueueError> {
        model::validate_job(&job)?;
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(db_error)?;
        let inserted = transaction
            .execute(
                "INSERT INTO kinema_queue_jobs (id, source_key, settings, state)
                 VALUES ($1, $2, $3, 'queued') ON CONFLICT (id) DO NOTHING",
                &[&job.id, &job.source_key, &job.settings],
            )
            .await
            .map_err(db_error)?;
        if inserted == 0 {
            return Err(QueueError::AlreadyExists(job.id));
        }
        let insert_task = transaction
            .prepare(
                "INSERT INTO kinema_queue_tasks
                 (job_id, idx, name, kind, payload, depends_on, weight_seconds, state)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued')",
            )
            .await
            .map_err(db_error)?;
        for (index, task) in job.tasks.iter().enumerate() {
            let depends_on = serde_json::json!(task.depends_on);
            transaction
                .execute(
                    &insert_task,
                    &[
                        &job.id,
                        &(index as i32),
                        &task.name,
                        &task.kind,
                        &task.payload,
                        &depends_on,
                        &task.weight_seconds,
                    ],
                )
                .await
                .map_err(db_error)?;
        }
        let status = load_job(&transaction, &job.id).await?;
        transaction.commit().await.map_err(db_error)?;
        Ok(status)
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<Option<Claim>, QueueError> {
        model::validate_claim(request)?;
        self.fail_exhausted().await?;
        let max_attempts = self.config.max_attempts as i32;
        let lease_seconds = request.lease.as_secs_f64();
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(db_error)?;
        let candidate = transaction
            .query_opt(
                "SELECT t.job_id, t.idx FROM kinema_queue_tasks t
                 JOIN kinema_queue_jobs j ON j.id = t.job_id
                 WHERE j.state = 'queued'
                   AND (t.state = 'queued' OR (t.state = 'running' AND t.lease_expires_at < now()))
                   AND t.attempts < $1
                   AND (cardinality($2::text[]) = 0 OR t.kind = ANY($2::text[]))
                   AND NOT EXISTS (
                       SELECT 1 FROM kinema_queue_tasks d
                       WHERE d.job_id = t.job_id AND t.depends_on ? d.name AND d.state <> 'done')
                 ORDER BY j.seq, t.idx
                 LIMIT 1
                 FOR UPDATE OF t SKIP LOCKED",
                &[&max_attempts, &request.kinds],
            )
            .await
            .map_err(db_error)?;
        let Some(candidate) = candidate else {
            return Ok(None);
        };
        let (job_id, idx): (String, i32) = (candidate.get(0), candidate.get(1));
        let token = LeaseToken::generate();
        let task = transaction
            .query_one(
                "UPDATE kinema_queue_tasks
                 SET state = 'running', attempts = attempts + 1, progress = 0, worker = $3,
                     lease_token = $4, lease_seconds = $5,
                     lease_expires_at = now() + make_interval(secs => $5)
                 WHERE job_id = $1 AND idx = $2
                 RETURNING name, kind, payload, attempts",
                &[
                    &job_id,
                    &idx,
                    &request.worker,
                    &token.as_str(),
                    &lease_seconds,
                ],
            )
            .await
            .map_err(db_error)?;
        let job = transaction
            .query_one(
                "SELECT source_key, settings FROM kinema_queue_jobs WHERE id = $1",
                &[&job_id],
            )
            .await
            .map_err(db_error)?;
        transaction.commit().await.map_err(db_error)?;
        let attempt: i32 = task.get(3);
        Ok(Some(Claim {
            token,
            job_id,
            source_key: job.get(0),
            settings: job.get(1),
            task: task.get(0),
            kind: task.get(1),
            payload: task.get(2),
            attempt: attempt.max(0) as u32,
            lease: request.lease,
        }))
    }

    async fn heartbeat(&self, token: &LeaseToken, progress: f64) -> Result<Heartbeat, QueueError> {
        let progress = model::check_progress(progress)?;
        let client = self.client().await?;
        let extended = client
            .execute(
                "UPDATE kinema_queue_tasks t
                 SET progress = $2, lease_expires_at = now() + make_interval(secs => t.lease_seconds)
                 FROM kinema_queue_jobs j
                 WHERE j.id = t.job_id AND j.state = 'queued'
                   AND t.lease_token = $1 AND t.state = 'running' AND t.lease_expires_at >= now()",
                &[&token.as_str(), &progress],
            )
            .await
            .map_err(db_error)?;
        if extended == 1 {
            return Ok(Heartbeat::Continue);
        }
        let cancelled = client
            .query_opt(
                "SELECT 1 FROM kinema_queue_tasks t JOIN kinema_queue_jobs j ON j.id = t.job_id
                 WHERE t.lease_token = $1 AND j.state = 'cancelled'",
                &[&token.as_str()],
            )
            .await
            .map_err(db_error)?;
        match cancelled {
            Some(_) => Ok(Heartbeat::Cancelled),
            None => Err(QueueError::LeaseLost),
        }
    }

    async fn begin_publish(&self, token: &LeaseToken) -> Result<(), QueueError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(db_error)?;
        let (job_id, _, publisher) = lock_held(&transaction, token).await?;
        match publisher {
            Some(holder) if holder != token.as_str() => {
                return Err(QueueError::PublishTaken(job_id));
            }
            _ => {}
        }
        transaction
            .execute(
                "UPDATE kinema_queue_jobs SET publish_token = $2 WHERE id = $1",
                &[&job_id, &token.as_str()],
            )
            .await
            .map_err(db_error)?;
        transaction.commit().await.map_err(db_error)
    }

    async fn complete(
        &self,
        token: &LeaseToken,
        result: serde_json::Value,
    ) -> Result<JobStatus, QueueError> {
        model::check_result(&result)?;
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(db_error)?;
        let (job_id, idx, _) = lock_held(&transaction, token).await?;
        transaction
            .execute(
                "UPDATE kinema_queue_tasks
                 SET state = 'done', progress = 1, error = NULL, result = $3,
                     lease_token = NULL, lease_expires_at = NULL
                 WHERE job_id = $1 AND idx = $2",
                &[&job_id, &idx, &result],
            )
            .await
            .map_err(db_error)?;
        // The job row is locked: no other completion of this job can be
        // counting at the same time, so exactly one sees the last task done.
        transaction
            .execute(
                "UPDATE kinema_queue_jobs
                 SET updated_at = now(),
                     state = CASE WHEN NOT EXISTS (
                         SELECT 1 FROM kinema_queue_tasks
                         WHERE job_id = $1 AND state <> 'done') THEN 'done' ELSE state END
                 WHERE id = $1",
                &[&job_id],
            )
            .await
            .map_err(db_error)?;
        let status = load_job(&transaction, &job_id).await?;
        transaction.commit().await.map_err(db_error)?;
        Ok(status)
    }

    async fn fail(
        &self,
        token: &LeaseToken,
        reason: &str,
        retryable: bool,
    ) -> Result<JobStatus, QueueError> {
        let reason = model::truncate_reason(reason);
        let max_attempts = self.config.max_attempts as i32;
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(db_error)?;
        let (job_id, idx, _) = lock_held(&transaction, token).await?;
        let attempts: i32 = transaction
            .query_one(
                "UPDATE kinema_queue_tasks
                 SET state = 'queued', error = $3, lease_token = NULL, lease_expires_at = NULL
                 WHERE job_id = $1 AND idx = $2
                 RETURNING attempts",
                &[&job_id, &idx, &reason],
            )
            .await
            .map_err(db_error)?
            .get(0);
        if !retryable || attempts >= max_attempts {
            transaction
                .execute(
                    "UPDATE kinema_queue_tasks SET state = 'failed' WHERE job_id = $1 AND idx = $2",
                    &[&job_id, &idx],
                )
                .await
                .map_err(db_error)?;
            fail_job(&transaction, &job_id, &reason).await?;
        } else {
            transaction
                .execute(
                    "UPDATE kinema_queue_jobs SET updated_at = now() WHERE id = $1",
                    &[&job_id],
                )
                .await
                .map_err(db_error)?;
        }
        let status = load_job(&transaction, &job_id).await?;
        transaction.commit().await.map_err(db_error)?;
        Ok(status)
    }

    async fn cancel(&self, job_id: &str) -> Result<JobStatus, QueueError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(db_error)?;
        let state = lock_job(&transaction, job_id).await?;
        if !state.is_active() {
            return Err(QueueError::WrongState {
                id: job_id.to_string(),
                state,
                allowed: "queued or running",
                action: "cancelled",
            });
        }
        // Running tasks keep their lease token, so their next heartbeat
        // answers "cancelled" rather than "lease lost".
        transaction
            .execute(
                "UPDATE kinema_queue_tasks SET state = 'cancelled'
                 WHERE job_id = $1 AND state IN ('queued', 'running')",
                &[&job_id],
            )
            .await
            .map_err(db_error)?;
        transaction
            .execute(
                "UPDATE kinema_queue_jobs SET state = 'cancelled', updated_at = now() WHERE id = $1",
                &[&job_id],
            )
            .await
            .map_err(db_error)?;
        let status = load_job(&transaction, job_id).await?;
        transaction.commit().await.map_err(db_error)?;
        Ok(status)
    }

    async fn retry(&self, job_id: &str) -> Result<JobStatus, QueueError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(db_error)?;
        let state = lock_job(&transaction, job_id).await?;
        if !matches!(state, JobState::Failed | JobState::Cancelled) {
            return Err(QueueError::WrongState {
                id: job_id.to_string(),
                state,
                allowed: "failed or cancelled",
                action: "retried",
            });
        }
        transaction
            .execute(
                "UPDATE kinema_queue_tasks
                 SET lease_token = NULL, lease_expires_at = NULL,
                     state = CASE WHEN state = 'done' THEN 'done' ELSE 'queued' END,
                     attempts = CASE WHEN state = 'done' THEN attempts ELSE 0 END,
                     progress = CASE WHEN state = 'done' THEN progress ELSE 0 END,
                     worker = CASE WHEN state = 'done' THEN worker END,
                     error = CASE WHEN state = 'done' THEN error END,
                     result = CASE WHEN state = 'done' THEN result END
                 WHERE job_id = $1",
                &[&job_id],
            )
            .await
            .map_err(db_error)?;
        transaction
            .execute(
                "UPDATE kinema_queue_jobs
                 SET state = 'queued', error = NULL, publish_token = NULL, updated_at = now()
                 WHERE id = $1",
                &[&job_id],
            )
            .await
            .map_err(db_error)?;
        let status = load_job(&transaction, job_id).await?;
        transaction.commit().await.map_err(db_error)?;
        Ok(status)
    }

    async fn job(&self, job_id: &str) -> Result<JobStatus, QueueError> {
        let client = self.client().await?;
        load_job(&client, job_id).await
    }

    async fn jobs(&self, limit: usize) -> Result<Vec<JobStatus>, QueueError> {
        let limit = limit.min(MAX_LIST) as i64;
        let client = self.client().await?;
        let jobs = client
            .query(
                &format!("SELECT {JOB_COLUMNS} FROM kinema_queue_jobs ORDER BY seq DESC LIMIT $1"),
                &[&limit],
            )
            .await
            .map_err(db_error)?;
        let ids: Vec<String> = jobs.iter().map(|row| row.get(0)).collect();
        let tasks = client
            .query(
                &format!(
                    "SELECT {TASK_COLUMNS} FROM kinema_queue_tasks
                     WHERE job_id = ANY($1) ORDER BY job_id, idx"
                ),
                &[&ids],
            )
            .await
            .map_err(db_error)?;
        let mut by_job: std::collections::HashMap<String, Vec<TaskStatus>> =
            std::collections::HashMap::new();
        for row in &tasks {
            let job_id: String = row.get(0);
            by_job.entry(job_id).or_default().push(task_status(row)?);
        }
        jobs.iter()
            .map(|row| {
                let id: String = row.get(0);
                job_status(row, by_job.remove(&id).unwrap_or_default())
            })
            .collect()
    }
}
