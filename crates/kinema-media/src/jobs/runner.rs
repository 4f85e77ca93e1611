//! The job runner: takes a concurrency permit, runs the ingest pipeline for
//! one job with its cancellation token, records the outcome (done, failed
//! with a public message, cancelled, with where it stopped), persists every
//! change of state, and deletes an owned source once it is no longer needed.
//! Also the periodic expiry of uploads that failed or cancelled jobs left.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::record::{JobId, JobState, progress_for, stopped, write_record};
use super::{IngestService, JobError, io_error, now_unix};
use crate::MediaError;
use crate::pipeline::{self, IngestRequest, Progress, Stage};

impl IngestService {
    /// Deletes, every so often for as long as the service lives, the
    /// uploads of jobs that failed or were cancelled more than
    /// `failed_upload_ttl` ago: nobody retried them, and each may be
    /// gigabytes.
    pub(super) fn spawn_upload_expiry(&self) {
        let ttl = self.inner.config.failed_upload_ttl;
        let period = (ttl / 4).clamp(Duration::from_millis(100), Duration::from_secs(3600));
        let inner = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let Some(inner) = inner.upgrade() else { return };
                let cutoff = now_unix().saturating_sub(ttl.as_secs());
                let expired: Vec<PathBuf> = {
                    let jobs = inner.jobs.lock().expect("job table lock");
                    jobs.values()
                        .map(|entry| &entry.record)
                        .filter(|record| {
                            record.owned_source
                                && matches!(record.state, JobState::Failed | JobState::Cancelled)
                                && record.updated_at_unix <= cutoff
                        })
                        .flat_map(|record| {
                            let sidecars = record.subtitles.iter().map(|s| s.path.clone());
                            std::iter::once(record.source.clone()).chain(sidecars)
                        })
                        .collect()
                };
                for source in expired {
                    match tokio::fs::remove_file(&source).await {
                        Ok(()) => tracing::info!(
                            path = %source.display(),
                            "deleted the upload of a job that failed or was cancelled \
                             longer ago than failed_upload_ttl"
                        ),
                        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                        Err(error) => tracing::warn!(path = %source.display(), %error,
                            "could not delete an expired upload"),
                    }
                }
            }
        });
    }

    pub(super) fn log_path(&self, id: &JobId) -> PathBuf {
        self.inner.workspace.logs().join(format!("{id}.log"))
    }

    pub(super) fn spawn_runner(&self, id: JobId) {
        let service = self.clone();
        tokio::spawn(async move {
            if let Err(error) = service.run(&id).await {
                tracing::error!(job = %id, error = %error, "ingest job bookkeeping failed");
            }
        });
    }

    async fn run(&self, id: &JobId) -> Result<(), JobError> {
        let Ok(_permit) = self.inner.permits.clone().acquire_owned().await else {
            return Ok(());
        };
        let (request, cancel, owned_source) = {
            let mut jobs = self.inner.jobs.lock().expect("job table lock");
            let Some(entry) = jobs.get_mut(id) else {
                return Ok(());
            };
            // Cancelled while it waited for a permit.
            if entry.record.state != JobState::Queued {
                return Ok(());
            }
            entry.record.state = JobState::Running;
            entry.record.attempts += 1;
            entry.record.updated_at_unix = now_unix();
            entry.progress = Progress::at(Stage::Probing, 0.0);
            (
                IngestRequest {
                    source: entry.record.source.clone(),
                    id: entry.record.video_id.clone(),
                    title: entry.record.title.clone(),
                    access: entry.record.access,
                    log_file: Some(self.log_path(id)),
                    subtitles: entry.record.subtitles.clone(),
                },
                entry.cancel.clone(),
                entry.record.owned_source,
            )
        };
        if let Err(error) = self.persist(id).await {
            // A job that cannot record that it started (the disk is full,
            // say) must not stay running with no runner: it fails, with the
            // reason, and can be retried once there is room.
            {
                let mut jobs = self.inner.jobs.lock().expect("job table lock");
                if let Some(entry) = jobs.get_mut(id) {
                    entry.record.state = JobState::Failed;
                    entry.record.error = Some(self.public_message(&error));
                    entry.record.updated_at_unix = now_unix();
                    entry.record.stopped_at = Some(stopped(entry.progress));
                    entry.progress = progress_for(&entry.record);
                }
            }
            tracing::warn!(job = %id, %error, "ingest job could not start");
            return self.persist(id).await;
        }
        let log_path = self.log_path(id);
        if let Ok(mut log) = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .await
        {
            let _ = log
                .write_all(format!("--- attempt at {} ---\n", now_unix()).as_bytes())
                .await;
        }
        let staging = self.inner.workspace.staging_dir(id.as_str());
        let inner = self.inner.clone();
        let progress_id = id.clone();
        let on_progress = move |progress: Progress| {
            let mut jobs = inner.jobs.lock().expect("job table lock");
            if let Some(entry) = jobs.get_mut(&progress_id) {
                entry.progress = progress;
            }
        };
        let result = pipeline::ingest(
            self.inner.store.as_ref(),
            &staging,
            &self.inner.config,
            &request,
            &cancel,
            &on_progress,
        )
        .await;
        let delete_source = {
            let mut jobs = self.inner.jobs.lock().expect("job table lock");
            let Some(entry) = jobs.get_mut(id) else {
                return Ok(());
            };
            entry.record.updated_at_unix = now_unix();
            let delete_source = match &result {
                Ok(ingested) => {
                    entry.record.state = JobState::Done;
                    entry.record.error = None;
                    entry.record.skipped_subtitles = ingested.skipped_subtitles.clone();
                    true
                }
                Err(MediaError::Cancelled) => {
                    entry.record.state = JobState::Cancelled;
                    false
                }
                Err(error) => {
                    tracing::warn!(job = %id, error = %error, "ingest failed");
                    entry.record.state = JobState::Failed;
                    entry.record.error = Some(self.public_message(&error));
                    // A bad source cannot succeed on retry: free its space.
                    error.is_bad_source()
                }
            };
            entry.record.stopped_at =
                (entry.record.state != JobState::Done).then(|| stopped(entry.progress));
            entry.progress = progress_for(&entry.record);
            delete_source && owned_source
        };
        if delete_source {
            let _ = tokio::fs::remove_file(&request.source).await;
            for sidecar in &request.subtitles {
                let _ = tokio::fs::remove_file(&sidecar.path).await;
            }
        }
        self.persist(id).await
    }

    /// Writes the job's current record atomically.
    pub(super) async fn persist(&self, id: &JobId) -> Result<(), JobError> {
        let _guard = self.inner.persist_lock.lock().await;
        let record = {
            let jobs = self.inner.jobs.lock().expect("job table lock");
            match jobs.get(id) {
                Some(entry) => entry.record.clone(),
                None => return Ok(()),
            }
        };
        let jobs_dir = self.inner.workspace.jobs();
        tokio::task::spawn_blocking(move || write_record(&jobs_dir, &record))
            .await
            .map_err(|join| io_error(Path::new("jobs"), std::io::Error::other(join)))?
    }
}
