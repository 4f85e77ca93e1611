//! A bench run: start viewers over the ramp, show progress, stop them all
//! at the deadline (or on shutdown), and gather their reports.
//!
//! One loop multiplexes the spawning schedule, the one-second progress tick,
//! the deadline and the viewers' completions, so the whole run costs one
//! timer beside the viewers' own.

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rand::SeedableRng;
use serde::Serialize;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::BenchError;
use crate::catalogue::{PLACEHOLDER, Zipf};
use crate::client::resolve_target;
use crate::config::BenchConfig;
use crate::metrics::{LiveCounters, Summary, ViewerReport};
use crate::viewer::{RunShared, run_viewer};

/// One sample of the progress line, kept for the report's time plots.
#[derive(Debug, Clone, Serialize)]
pub struct TimelineSample {
    pub wall_seconds: f64,
    pub active_viewers: u64,
    pub mbit_per_second: f64,
    /// Mean bit rate of the rung each active viewer not waiting to be
    /// admitted fetched last.
    pub mean_selected_bitrate: f64,
    pub stalls: u64,
    pub errors: u64,
    /// Refused session starts so far (503 with `Retry-After`).
    pub refusals: u64,
    /// Viewers refused and waiting to ask again.
    pub refused_viewers: u64,
}

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub config: BenchConfig,
    pub summary: Summary,
    pub timeline: Vec<TimelineSample>,
    pub viewers: Vec<ViewerReport>,
}

/// Runs `config` until its duration ends or `shutdown` resolves.
pub async fn run(
    config: BenchConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<RunReport, BenchError> {
    let url = config.validate()?;
    // Refuse a remote or unresolvable target once, before any viewer runs.
    resolve_target(&url, config.allow_remote)
        .await
        .map_err(|error| BenchError::Target(error.to_string()))?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(config.seed);
    let viewers = config.viewers;
    let links: Vec<Option<u64>> = (0..viewers).map(|_| config.link.sample(&mut rng)).collect();
    // Catalogue mode: each viewer's video, drawn after the links so a
    // single-video run draws the same links as before.
    let videos: Option<Vec<u32>> = config.catalogue.map(|count| {
        let zipf = Zipf::new(count, config.zipf);
        (0..viewers).map(|_| zipf.sample(&mut rng)).collect()
    });
    let viewer_url = |index: u32| -> Result<(Url, Option<u32>), BenchError> {
        match &videos {
            None => Ok((url.clone(), None)),
            Some(videos) => {
                let rank = videos[index as usize];
                let text = config.url.replace(PLACEHOLDER, &rank.to_string());
                let parsed = Url::parse(&text).map_err(|error| BenchError::Config {
                    key: "url".into(),
                    detail: format!("{text:?} is not a valid url: {error}"),
                })?;
                Ok((parsed, Some(rank)))
            }
        }
    };
    let started = Instant::now();
    let cpu_at_start = process_cpu_seconds();
    let deadline = started + config.duration;
    let shared = Arc::new(RunShared {
        url: url.clone(),
        started,
        speed: config.speed,
        abr: config.abr,
        pinned_bitrate: config.bitrate.map(|b| b.0),
        buffer_target_seconds: config.buffer_target.as_secs_f64(),
        saturate: config.saturate,
        retries: config.retries,
        allow_remote: config.allow_remote,
        latency: config.latency,
        request_timeout: config.request_timeout,
        live: LiveCounters::default(),
        cancel: CancellationToken::new(),
    });
    let mut progress = Progress::new(config.progress, viewers);
    let mut ticker =
        tokio::time::interval_at(started + Duration::from_secs(1), Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut tasks = JoinSet::new();
    let mut reports = Vec::with_capacity(viewers as usize);
    let mut spawned = 0u32;
    let mut timeline = Vec::new();
    let spawn_time =
        |index: u32| started + config.ramp.mul_f64(f64::from(index) / f64::from(viewers));
    loop {
        let cancelled = shared.cancel.is_cancelled();
        if (cancelled || spawned == viewers) && tasks.is_empty() {
            break;
        }
        let next_spawn = (!cancelled && spawned < viewers).then(|| spawn_time(spawned));
        tokio::select! {
            () = tokio::time::sleep_until(deadline), if !cancelled => shared.cancel.cancel(),
            () = &mut shutdown, if !cancelled => shared.cancel.cancel(),
            () = tokio::time::sleep_until(next_spawn.unwrap_or(deadline)), if next_spawn.is_some() => {
                let now = Instant::now();
                while spawned < viewers && spawn_time(spawned) <= now {
                    let (url, video) = viewer_url(spawned)?;
                    tasks.spawn(run_viewer(shared.clone(), spawned, links[spawned as usize], url, video));
                    spawned += 1;
                }
            }
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                match joined {
                    Ok(report) => reports.push(report),
                    Err(error) => return Err(BenchError::ViewerPanicked(error.to_string())),
                }
            }
            _ = ticker.tick() => {
                timeline.push(progress.tick(&shared.live, (Instant::now() - started).as_secs_f64()));
            }
        }
    }
    progress.finish();
    let wall_seconds = (Instant::now() - started).as_secs_f64();
    reports.sort_by_key(|report| report.index);
    let mut summary = Summary::from_viewers(&reports, wall_seconds);
    if let (Some(before), Some(after)) = (cpu_at_start, process_cpu_seconds()) {
        summary.client_cpu_seconds = Some(after - before);
    }
    Ok(RunReport {
        config,
        summary,
        timeline,
        viewers: reports,
    })
}

/// CPU time this process has used so far, summed over its threads from
/// the scheduler's own accounting (`/proc/self/task/*/schedstat`, in
/// nanoseconds); `None` where that is not available. It tells whether a
/// run measured the server or ran out of client.
fn process_cpu_seconds() -> Option<f64> {
    let mut nanoseconds = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let path = task.ok()?.path().join("schedstat");
        let text = std::fs::read_to_string(path).ok()?;
        nanoseconds += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(nanoseconds as f64 / 1e9)
}

/// The live line on stderr: rewritten in place on a terminal, one line
/// every ten seconds otherwise (logs stay readable).
struct Progress {
    enabled: bool,
    terminal: bool,
    viewers: u32,
    last_bytes: u64,
    last_wall: f64,
    ticks: u64,
}

impl Progress {
    fn new(enabled: bool, viewers: u32) -> Self {
        Self {
            enabled,
            terminal: std::io::stderr().is_terminal(),
            viewers,
            last_bytes: 0,
            last_wall: 0.0,
            ticks: 0,
        }
    }

    fn tick(&mut self, live: &LiveCounters, wall_seconds: f64) -> TimelineSample {
        let bytes = live.bytes.load(Ordering::Relaxed);
        let active = live.active_viewers.load(Ordering::Relaxed);
        let stalls = live.stalls.load(Ordering::Relaxed);
        let errors = live.errors.load(Ordering::Relaxed);
        let refusals = live.refusals.load(Ordering::Relaxed);
        let refused_viewers = live.refused_viewers.load(Ordering::Relaxed);
        let interval = (wall_seconds - self.last_wall).max(1e-3);
        let mbit_per_second = (bytes - self.last_bytes) as f64 * 8.0 / interval / 1e6;
        let bitrate_sum = live.selected_bitrate_sum.load(Ordering::Relaxed);
        // Over viewers not waiting to be admitted: a refused viewer has
        // no rung, and counting it in would read as lower quality.
        let admitted = active.saturating_sub(refused_viewers);
        let mean_selected_bitrate = if admitted > 0 {
            bitrate_sum as f64 / admitted as f64
        } else {
            0.0
        };
        self.last_bytes = bytes;
        self.last_wall = wall_seconds;
        self.ticks += 1;
        if self.enabled && (self.terminal || self.ticks.is_multiple_of(10)) {
            // Refusals appear once there are any: against a server without
            // admission control the line stays as it was.
            let refused = if refusals > 0 {
                format!(" · refused {refusals} ({refused_viewers} viewers waiting)")
            } else {
                String::new()
            };
            let line = format!(
                "[{wall_seconds:6.0}s] viewers {active}/{} · stalls {stalls} · errors {errors}{refused} · {mbit_per_second:.1} Mbit/s · mean rung {:.2} Mbit/s",
                self.viewers,
                mean_selected_bitrate / 1e6
            );
            let mut stderr = std::io::stderr().lock();
            let _ = if self.terminal {
                write!(stderr, "\r{line}\x1b[K")
            } else {
                writeln!(stderr, "{line}")
            };
            let _ = stderr.flush();
        }
        TimelineSample {
            wall_seconds,
            active_viewers: active,
            mbit_per_second,
            mean_selected_bitrate,
            stalls,
            errors,
            refusals,
            refused_viewers,
        }
    }

    fn finish(&self) {
        if self.enabled && self.terminal && self.ticks > 0 {
            eprintln!();
        }
    }
}
