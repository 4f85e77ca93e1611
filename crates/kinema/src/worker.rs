//! `kinema worker`: a transcoding worker on a machine of its own. It pulls
//! ingest tasks from a `kinema serve` over HTTP (the worker protocol,
//! `kinema_origin::worker_api`), reads their inputs from and writes their
//! outputs to the library's object store, and reports progress.
//!
//! A worker holds a worker token (scope `worker`: it can claim and report
//! tasks and nothing else) and the object store's credentials, never the
//! queue's database credentials. Each of `concurrency` slots loops: claim →
//! run the task in a scratch directory of its own, with a heartbeat every
//! `heartbeat` carrying progress → complete (or fail, with the reason). A
//! heartbeat that answers "cancelled" or "lease lost" kills the task's
//! ffmpeg at once. A worker that dies simply stops heartbeating: its lease
//! expires and the server hands the task to another.
//!
//! SIGTERM or Ctrl-C stops claiming and lets running tasks finish; a second
//! one stops them too (ffmpeg killed) and reports them failed so they are
//! retried at once elsewhere. This module runs no ffmpeg itself: tasks go
//! through kinema-media ([`tasks`]).

mod client;
mod fenced_store;
mod on_server;
mod sources;
mod tasks;

pub use on_server::take_workers;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use self::client::{Beat, CallError, ClaimedTask, WorkerClient};
use self::tasks::{TaskContext, TaskError};
use crate::config::ConfigFile;

pub const LONG_ABOUT: &str = "Run transcoding tasks for a `kinema serve` whose library is in an \
S3-protocol object store: claim a task over HTTP, read its source from the object store, encode \
it with ffmpeg (kinema-media's pipeline, the same ladder settings as [ingest]), publish to the \
library, report progress every few seconds and the outcome. Any number of workers, on any \
machines, can serve one server.

Example:
  kinema tokens new --scope worker --name encoder-1     # on the server; prints the secret
  kinema worker --server http://origin:8080 --token-file worker.token \\
      --library s3://media/lib --s3-endpoint http://s3:9000

The worker needs the object store's credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or \
AWS_PROFILE) and a worker token (--token, --token-file, KINEMA_WORKER_TOKEN): never the job \
queue's database. A cancel in the web UI reaches a running task at its next heartbeat; a worker \
killed mid-task loses its lease and the task is redone by another. SIGTERM or Ctrl-C stops \
claiming and lets running tasks finish; a second one stops them (retried elsewhere at once).

Every flag can also be set by its KINEMA_* variable or in the [worker] section of kinema.toml.";

/// Settings of `[worker]`; a flag or variable overrides the file.
#[derive(Debug, Args, Serialize)]
pub struct WorkerArgs {
    /// The server's URL, e.g. http://origin:8080
    #[arg(long, env = "KINEMA_WORKER_SERVER", value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    server: Option<String>,

    /// The worker token (`kinema tokens new --scope worker`); prefer
    /// --token-file, which keeps it out of the process list
    #[arg(
        long,
        env = "KINEMA_WORKER_TOKEN",
        value_name = "SECRET",
        hide_env_values = true
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,

    /// A file holding the worker token
    #[arg(long, env = "KINEMA_WORKER_TOKEN_FILE", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    token_file: Option<PathBuf>,

    /// The server's library, s3://BUCKET/PREFIX, where job objects and
    /// published videos live
    #[arg(long, env = "KINEMA_LIBRARY", value_name = "s3://BUCKET/PREFIX")]
    #[serde(skip_serializing_if = "Option::is_none")]
    library: Option<String>,

    #[command(flatten)]
    #[serde(flatten)]
    s3: crate::store::S3Args,

    /// A local directory for sources and encoder output while a task runs
    /// [default: kinema-worker in the system's temporary directory]
    #[arg(long, env = "KINEMA_WORKER_SCRATCH", value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    scratch: Option<PathBuf>,

    /// Tasks run at once (each one ffmpeg using every core it gets) [default: 1]
    #[arg(long, env = "KINEMA_WORKER_CONCURRENCY", value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    concurrency: Option<usize>,

    /// This worker's name in the server's jobs [default: HOST-PID]
    #[arg(long, env = "KINEMA_WORKER_NAME", value_name = "NAME")]
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,

    /// How long a claimed task stays this worker's without a heartbeat
    /// [default: 30s]
    #[arg(long, env = "KINEMA_WORKER_LEASE", value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    lease: Option<String>,

    /// How often a running task reports progress and hears of a cancel
    /// [default: 3s]
    #[arg(long, env = "KINEMA_WORKER_HEARTBEAT", value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    heartbeat: Option<String>,
}

/// The worker's own settings (the library's are taken out first).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkerConfig {
    server: Option<String>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    scratch: Option<PathBuf>,
    #[serde(default = "default_concurrency")]
    concurrency: usize,
    name: Option<String>,
    #[serde(default = "default_lease", with = "humantime_serde")]
    lease: Duration,
    #[serde(default = "default_heartbeat", with = "humantime_serde")]
    heartbeat: Duration,
}

fn default_concurrency() -> usize {
    1
}

fn default_lease() -> Duration {
    Duration::from_secs(30)
}

fn default_heartbeat() -> Duration {
    Duration::from_secs(3)
}

/// Most tasks one worker process runs at once.
const MAX_CONCURRENCY: usize = 64;
/// Longest token accepted from a file, bytes.
const MAX_TOKEN_BYTES: u64 = 1024;

/// Everything the slots share.
#[derive(Debug)]
struct Worker {
    name: String,
    /// The library this worker reads and publishes to (`s3://…`).
    library: String,
    lease: Duration,
    heartbeat: Duration,
    scratch: PathBuf,
    context: TaskContext,
    /// Stop claiming (first signal).
    stop_claiming: CancellationToken,
    /// Stop running tasks too (second signal).
    stop_tasks: CancellationToken,
}

fn read_token(config: &WorkerConfig) -> Result<String> {
    let token = match (&config.token, &config.token_file) {
        (Some(token), _) => token.clone(),
        (None, Some(path)) => {
            let size = std::fs::metadata(path)
                .with_context(|| format!("cannot read the token file {}", path.display()))?
                .len();
            if size > MAX_TOKEN_BYTES {
                bail!(
                    "token file {} is {size} bytes; a token is one line of under {MAX_TOKEN_BYTES}",
                    path.display()
                );
            }
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the token file {}", path.display()))?
        }
        (None, None) => bail!(
            "no worker token: pass --token-file FILE (or --token, KINEMA_WORKER_TOKEN, token in \
             [worker]); make one on the server with `kinema tokens new --scope worker`"
        ),
    };
    let token = token.trim().to_string();
    if token.is_empty() || token.contains(char::is_whitespace) {
        bail!("the worker token must be one word (the secret `kinema tokens new` printed)");
    }
    Ok(token)
}

pub fn run(config_file: &ConfigFile, args: WorkerArgs) -> Result<()> {
    let mut section: toml::Table = config_file.resolve("worker", &args)?;
    let Some(library) = crate::store::take_store_config("worker", &mut section)? else {
        bail!(
            "no library given: pass --library s3://BUCKET/PREFIX (the server's), set KINEMA_LIBRARY or library in [worker]"
        );
    };
    if crate::store::local_directory(&library)?.is_some() {
        bail!(
            "library {} is a directory; a worker works on a library in an S3-protocol object store \
             (--library s3://BUCKET/PREFIX), which it shares with the server",
            library.library
        );
    }
    let config: WorkerConfig = config_file.deserialize("worker", section)?;
    let Some(server) = config.server.clone() else {
        bail!("no server given: pass --server URL, set KINEMA_WORKER_SERVER or server in [worker]");
    };
    if config.concurrency == 0 || config.concurrency > MAX_CONCURRENCY {
        bail!(
            "config [worker] concurrency: {} is not between 1 and {MAX_CONCURRENCY}",
            config.concurrency
        );
    }
    if config.heartbeat.is_zero() || config.lease < config.heartbeat * 3 {
        bail!(
            "config [worker] lease {} must be at least three heartbeats ({}), so one lost heartbeat \
             does not lose the task",
            humantime::format_duration(config.lease),
            humantime::format_duration(config.heartbeat)
        );
    }
    let token = read_token(&config)?;
    let name = config.name.clone().unwrap_or_else(default_name);
    // The same ladder and encoder settings as the server's uploads.
    let no_flags = toml::Table::new();
    let ingest = crate::ingest::resolve_settings(config_file, &no_flags)?.1;
    let scratch = config
        .scratch
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("kinema-worker"));
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let store = crate::store::open(&library).await?;
        let objects = kinema_store::open_job_objects(&library)
            .await
            .with_context(|| format!("cannot open library {}", library.library))?
            .context("the library is not in an object store")?;
        let client = WorkerClient::new(&server, token)?;
        let scratch = prepare_scratch(&scratch, &name)?;
        let sources = sources::SourceCopies::new(scratch.join("sources"));
        let worker = Arc::new(Worker {
            name,
            library: library.library.clone(),
            lease: config.lease,
            heartbeat: config.heartbeat,
            scratch,
            context: TaskContext {
                store,
                objects,
                client,
                ingest,
                sources,
            },
            stop_claiming: CancellationToken::new(),
            stop_tasks: CancellationToken::new(),
        });
        tokio::spawn(watch_signals(
            worker.stop_claiming.clone(),
            worker.stop_tasks.clone(),
        ));
        tracing::info!(
            worker = %worker.name,
            server = %server,
            library = %library.library,
            concurrency = config.concurrency,
            "worker started"
        );
        let slots: Vec<_> = (0..config.concurrency)
            .map(|slot| tokio::spawn(worker.clone().run_slot(slot)))
            .collect();
        let mut outcome = Ok(());
        for slot in slots {
            match slot.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    // One slot's fatal error (a refused token) stops them all.
                    worker.stop_claiming.cancel();
                    worker.stop_tasks.cancel();
                    outcome = Err(error);
                }
                Err(join) => outcome = Err(anyhow::anyhow!("a worker slot panicked: {join}")),
            }
        }
        tracing::info!(worker = %worker.name, "worker stopped");
        outcome
    })
}

fn default_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "worker".into());
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(100)
        .collect();
    format!("{host}-{}", std::process::id())
}

/// This worker's own scratch directory, emptied of what a previous run of
/// the same name left.
fn prepare_scratch(root: &Path, name: &str) -> Result<PathBuf> {
    let dir = root.join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("cannot empty the scratch directory {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the scratch directory {}", dir.display()))?;
    Ok(dir)
}

/// First SIGTERM/SIGINT: stop claiming; second: stop running tasks.
async fn watch_signals(stop_claiming: CancellationToken, stop_tasks: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot watch SIGTERM and SIGINT; stop the worker with SIGKILL");
        return;
    };
    for token in [stop_claiming, stop_tasks] {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        tracing::info!("stopping: no new tasks are claimed (a second signal stops running ones)");
        token.cancel();
    }
}

impl Worker {
    async fn run_slot(self: Arc<Self>, slot: usize) -> Result<()> {
        let mut backoff = Duration::from_millis(500);
        loop {
            if self.stop_claiming.is_cancelled() {
                return Ok(());
            }
            let claimed = tokio::select! {
                () = self.stop_claiming.cancelled() => return Ok(()),
                claimed = self.context.client.claim(&self.name, &tasks::KINDS, self.lease) => claimed,
            };
            match claimed {
                Ok(Some(task)) => {
                    backoff = Duration::from_millis(500);
                    let span = tracing::info_span!("task", job = %task.job_id,
                        task = %task.task, kind = %task.kind, attempt = task.attempt);
                    self.run_task(slot, task).instrument(span).await?;
                }
                Ok(None) => backoff = Duration::from_millis(500),
                Err(refused @ CallError::Refused { .. }) => return Err(refused.into()),
                Err(error) => {
                    tracing::warn!(worker = %self.name, error = %format!("{error:#}"),
                        retry_in = ?backoff, "cannot claim a task");
                    tokio::select! {
                        () = self.stop_claiming.cancelled() => return Ok(()),
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// Runs one claimed task to its end; an error stops the worker.
    async fn run_task(&self, slot: usize, task: ClaimedTask) -> Result<()> {
        tracing::info!(worker = %self.name, "task claimed");
        if task.objects.library.trim_end_matches('/') != self.library.trim_end_matches('/') {
            let reason = format!(
                "worker {} works on library {}, but the server's is {}; give the worker \
                 --library {}",
                self.name, self.library, task.objects.library, task.objects.library
            );
            self.report_failure(&task, &reason, true).await;
            bail!(reason);
        }
        let scratch = self.scratch.join(format!("slot{slot}"));
        let _ = tokio::fs::remove_dir_all(&scratch).await;
        if let Err(error) = tokio::fs::create_dir_all(&scratch).await {
            let reason = format!("the worker cannot create its scratch directory: {error}");
            self.report_failure(&task, &reason, true).await;
            return Ok(());
        }
        let progress = Arc::new(Mutex::new(0.0));
        let cancel = self.stop_tasks.child_token();
        // What the heartbeat learnt, if it stopped the task.
        let heard = Arc::new(Mutex::new(None::<Beat>));
        let heartbeat = tokio::spawn(heartbeat_loop(
            self.context.client.clone(),
            task.lease_token.clone(),
            self.heartbeat,
            Duration::from_secs(task.lease_seconds),
            progress.clone(),
            cancel.clone(),
            heard.clone(),
        ));
        let outcome = tasks::run(&self.context, &task, &scratch, &progress, &cancel).await;
        heartbeat.abort();
        let heard = *heard.lock().unwrap_or_else(PoisonError::into_inner);
        match outcome {
            Ok(result) => match self
                .context
                .client
                .complete(&task.lease_token, result)
                .await
            {
                Ok(()) => tracing::info!("task done"),
                Err(error) => tracing::warn!(error = %format!("{error:#}"),
                    "task done, but the server did not take its completion; it will be redone"),
            },
            Err(TaskError::Stopped) => match heard {
                Some(Beat::Cancelled) => tracing::info!("task stopped: its job was cancelled"),
                Some(Beat::LeaseLost) => {
                    tracing::warn!("task stopped: its lease was lost (another worker has it)");
                }
                _ => {
                    self.report_failure(&task, "the worker running it was stopped", true)
                        .await;
                }
            },
            Err(TaskError::BadSource(reason)) => self.report_failure(&task, &reason, false).await,
            Err(TaskError::Failed(reason)) => self.report_failure(&task, &reason, true).await,
        }
        if let Err(error) = tokio::fs::remove_dir_all(&scratch).await {
            tracing::warn!(path = %scratch.display(), %error, "cannot remove a task's scratch directory");
        }
        Ok(())
    }

    async fn report_failure(&self, task: &ClaimedTask, reason: &str, retryable: bool) {
        tracing::warn!(%reason, retryable, "task failed");
        if let Err(error) = self
            .context
            .client
            .fail(&task.lease_token, reason, retryable)
            .await
        {
            tracing::warn!(error = %format!("{error:#}"),
                "the server did not take the failure; the task's lease will expire");
        }
    }
}

/// Reports progress every `every` until aborted; a cancelled job or a lost
/// lease cancels the task (ffmpeg is killed). A server that cannot be
/// reached for as long as the lease lasts means the lease is lost.
async fn heartbeat_loop(
    client: WorkerClient,
    lease_token: String,
    every: Duration,
    lease: Duration,
    progress: Arc<Mutex<f64>>,
    cancel: CancellationToken,
    heard: Arc<Mutex<Option<Beat>>>,
) {
    let mut last_answer = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(every).await;
        let reported = *progress.lock().unwrap_or_else(PoisonError::into_inner);
        match client.heartbeat(&lease_token, reported).await {
            Ok(Beat::Continue) => last_answer = tokio::time::Instant::now(),
            Ok(beat) => {
                *heard.lock().unwrap_or_else(PoisonError::into_inner) = Some(beat);
                cancel.cancel();
                return;
            }
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "heartbeat failed");
                if last_answer.elapsed() >= lease {
                    *heard.lock().unwrap_or_else(PoisonError::into_inner) = Some(Beat::LeaseLost);
                    cancel.cancel();
                    return;
                }
            }
        }
    }
}
