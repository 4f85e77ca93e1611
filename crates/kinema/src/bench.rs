//! `kinema bench`: flags of the load client, its capacity search and its
//! synthetic-library generator, resolved into `kinema_bench` configs
//! (`[bench]` and `[bench_capacity]` sections of the config file), run on
//! a tokio runtime of the configured size, and printed.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{ArgAction, Args, Subcommand};
use kinema_bench::{BenchConfig, CapacityConfig};
use serde::Serialize;

use crate::config::ConfigFile;

/// Emulate viewers playing a stream (HLS or DASH) and report what they feel.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BenchCommand {
    #[command(subcommand)]
    action: Option<BenchAction>,
    #[command(flatten)]
    run: BenchArgs,
}

#[derive(Debug, Subcommand)]
enum BenchAction {
    /// Find how many paced viewers of one rung a server carries with no
    /// stall and p99 segment download time under half a segment.
    Capacity(Box<CapacityArgs>),
    /// Publish a synthetic video (HLS playlists, a DASH MPD and files of
    /// exact sizes, not playable media) into a library, for load tests.
    Library(LibraryArgs),
}

#[derive(Debug, Args, Serialize)]
struct BenchArgs {
    /// HLS multivariant (or media) playlist or DASH MPD URL, e.g.
    /// http://127.0.0.1:8080/v/ID/master.m3u8 or .../v/ID/manifest.mpd; the
    /// format is read from the Content-Type or the document itself.
    ///
    /// Viewers follow redirects and content steering as hls.js and dash.js
    /// do: a master with EXT-X-CONTENT-STEERING (or an MPD with
    /// ContentSteering and BaseURL@serviceLocation) plays one pathway at a
    /// time; the steering manifest is reloaded after its TTL; a new priority
    /// moves the viewer (same rung, same position); a failed request
    /// (refused, reset, timed out, or a 5xx after the retries) moves it to
    /// the next pathway for the same segment. The report counts requests,
    /// bytes and errors per server, pathway switches by steering and by
    /// failure, and each viewer's failover stall
    #[arg(env = "KINEMA_BENCH_URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    /// Number of viewers [default: 1]
    #[arg(long, env = "KINEMA_BENCH_VIEWERS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    viewers: Option<u32>,
    /// Start viewers evenly over this time [default: 0s]
    #[arg(long, env = "KINEMA_BENCH_RAMP")]
    #[serde(skip_serializing_if = "Option::is_none")]
    ramp: Option<String>,
    /// Wall-clock length of the run, ramp included [default: 2m]
    #[arg(long, env = "KINEMA_BENCH_DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    duration: Option<String>,
    /// Downlink per viewer: `unlimited`, `3mbit`, `0.3mbit..20mbit`
    /// (log-uniform) or `0.5mbit:30%,3mbit:50%,20mbit:20%` [default: unlimited]
    #[arg(long, env = "KINEMA_BENCH_LINK")]
    #[serde(skip_serializing_if = "Option::is_none")]
    link: Option<String>,
    /// Added delay before every request [default: 0s]
    #[arg(long, env = "KINEMA_BENCH_LATENCY")]
    #[serde(skip_serializing_if = "Option::is_none")]
    latency: Option<String>,
    /// ABR algorithm: throughput or buffer [default: throughput]
    #[arg(long, env = "KINEMA_BENCH_ABR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    abr: Option<String>,
    /// Pin every viewer to the rung closest to this bit rate (no ABR)
    #[arg(long, env = "KINEMA_BENCH_BITRATE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    bitrate: Option<String>,
    /// Buffer level players aim for [default: 30s]
    #[arg(long, env = "KINEMA_BENCH_BUFFER_TARGET")]
    #[serde(skip_serializing_if = "Option::is_none")]
    buffer_target: Option<String>,
    /// Run viewer time this many times faster than real time (links and
    /// play-out scale together; the server carries that much more load) [default: 1]
    #[arg(long, env = "KINEMA_BENCH_SPEED")]
    #[serde(skip_serializing_if = "Option::is_none")]
    speed: Option<f64>,
    /// Fetch segments back to back, without pacing
    #[arg(long, env = "KINEMA_BENCH_SATURATE", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", action = ArgAction::Set)]
    #[serde(skip_serializing_if = "Option::is_none")]
    saturate: Option<bool>,
    /// Longest wait for headers or the next body chunk [default: 10s]
    #[arg(long, env = "KINEMA_BENCH_REQUEST_TIMEOUT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    request_timeout: Option<String>,
    /// Retries of a failed request [default: 3]
    #[arg(long, env = "KINEMA_BENCH_RETRIES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    retries: Option<u32>,
    /// Seed of the link-rate draws [default: 1]
    #[arg(long, env = "KINEMA_BENCH_SEED")]
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
    /// Permit target hosts that are not loopback
    #[arg(long, env = "KINEMA_BENCH_ALLOW_REMOTE", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", action = ArgAction::Set)]
    #[serde(skip_serializing_if = "Option::is_none")]
    allow_remote: Option<bool>,
    /// Show the live progress line [default: true]
    #[arg(long, env = "KINEMA_BENCH_PROGRESS", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", action = ArgAction::Set)]
    #[serde(skip_serializing_if = "Option::is_none")]
    progress: Option<bool>,
    /// Runtime worker threads; 1 is a single-threaded runtime [default: 1]
    #[arg(long, env = "KINEMA_BENCH_THREADS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    threads: Option<usize>,
    /// Write the results as JSON to this file
    #[arg(long, env = "KINEMA_BENCH_JSON")]
    #[serde(skip_serializing_if = "Option::is_none")]
    json: Option<PathBuf>,
    /// Write an HTML report with plots to this file
    #[arg(long, env = "KINEMA_BENCH_REPORT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    report: Option<PathBuf>,
    /// Catalogue mode: N videos, {video} in the URL standing for each
    /// viewer's video (1 to N), drawn by Zipf popularity (see --zipf)
    #[arg(long, env = "KINEMA_BENCH_CATALOGUE", value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    catalogue: Option<u32>,
    /// Exponent α of the catalogue's popularity, P(n) ∝ 1/n^α [default: 0.8]
    #[arg(long, env = "KINEMA_BENCH_ZIPF", value_name = "ALPHA")]
    #[serde(skip_serializing_if = "Option::is_none")]
    zipf: Option<f64>,
}

#[derive(Debug, Args, Serialize)]
struct CapacityArgs {
    /// HLS multivariant playlist or DASH MPD URL
    #[arg(env = "KINEMA_CAPACITY_URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    /// The rung every viewer plays, e.g. 3mbit (closest rung is used)
    #[arg(long, env = "KINEMA_CAPACITY_BITRATE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    bitrate: Option<String>,
    /// Viewers in the first trial; doubled while trials pass [default: 50]
    #[arg(long, env = "KINEMA_CAPACITY_START")]
    #[serde(skip_serializing_if = "Option::is_none")]
    start: Option<u32>,
    /// Never try more viewers than this [default: 20000]
    #[arg(long, env = "KINEMA_CAPACITY_MAX")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max: Option<u32>,
    /// Wall-clock length of each trial, ramp included [default: 60s]
    #[arg(long, env = "KINEMA_CAPACITY_TRIAL_DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    trial_duration: Option<String>,
    /// Ramp of each trial [default: 20s]
    #[arg(long, env = "KINEMA_CAPACITY_RAMP")]
    #[serde(skip_serializing_if = "Option::is_none")]
    ramp: Option<String>,
    /// Pause between trials, for the server to finish the last one's
    /// viewers [default: 5s]
    #[arg(long, env = "KINEMA_CAPACITY_SETTLE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    settle: Option<String>,
    /// Stop when the bracket is narrower than this fraction [default: 0.05]
    #[arg(long, env = "KINEMA_CAPACITY_PRECISION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    precision: Option<f64>,
    /// Downlink per viewer [default: unlimited]
    #[arg(long, env = "KINEMA_CAPACITY_LINK")]
    #[serde(skip_serializing_if = "Option::is_none")]
    link: Option<String>,
    /// Added delay before every request [default: 0s]
    #[arg(long, env = "KINEMA_CAPACITY_LATENCY")]
    #[serde(skip_serializing_if = "Option::is_none")]
    latency: Option<String>,
    /// Buffer level players aim for [default: 30s]
    #[arg(long, env = "KINEMA_CAPACITY_BUFFER_TARGET")]
    #[serde(skip_serializing_if = "Option::is_none")]
    buffer_target: Option<String>,
    /// Viewer-time speed-up [default: 1]
    #[arg(long, env = "KINEMA_CAPACITY_SPEED")]
    #[serde(skip_serializing_if = "Option::is_none")]
    speed: Option<f64>,
    /// Longest wait for headers or the next body chunk [default: 10s]
    #[arg(long, env = "KINEMA_CAPACITY_REQUEST_TIMEOUT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    request_timeout: Option<String>,
    /// Retries of a failed request [default: 3]
    #[arg(long, env = "KINEMA_CAPACITY_RETRIES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    retries: Option<u32>,
    /// Seed of the link-rate draws [default: 1]
    #[arg(long, env = "KINEMA_CAPACITY_SEED")]
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
    /// Permit target hosts that are not loopback
    #[arg(long, env = "KINEMA_CAPACITY_ALLOW_REMOTE", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", action = ArgAction::Set)]
    #[serde(skip_serializing_if = "Option::is_none")]
    allow_remote: Option<bool>,
    /// Show progress on stderr [default: true]
    #[arg(long, env = "KINEMA_CAPACITY_PROGRESS", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", action = ArgAction::Set)]
    #[serde(skip_serializing_if = "Option::is_none")]
    progress: Option<bool>,
    /// Runtime worker threads [default: 1]
    #[arg(long, env = "KINEMA_CAPACITY_THREADS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    threads: Option<usize>,
    /// Write the trials as JSON to this file
    #[arg(long, env = "KINEMA_CAPACITY_JSON")]
    #[serde(skip_serializing_if = "Option::is_none")]
    json: Option<PathBuf>,
    /// Catalogue mode: N videos, {video} in the URL standing for each
    /// viewer's video (1 to N), drawn by Zipf popularity (see --zipf)
    #[arg(long, env = "KINEMA_CAPACITY_CATALOGUE", value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    catalogue: Option<u32>,
    /// Exponent α of the catalogue's popularity, P(n) ∝ 1/n^α [default: 0.8]
    #[arg(long, env = "KINEMA_CAPACITY_ZIPF", value_name = "ALPHA")]
    #[serde(skip_serializing_if = "Option::is_none")]
    zipf: Option<f64>,
}

#[derive(Debug, Args)]
struct LibraryArgs {
    /// Library directory (created if missing), or s3://BUCKET/PREFIX
    #[arg(long, env = "KINEMA_LIBRARY", value_name = "DIR|s3://BUCKET/PREFIX")]
    library: String,
    #[command(flatten)]
    s3: crate::store::S3Args,
    /// Video id
    #[arg(long, default_value = "synthetic")]
    id: String,
    /// Rung bit rates, comma-separated
    #[arg(long, default_value = "0.3mbit,0.8mbit,1.5mbit,3mbit,6mbit")]
    bitrates: String,
    /// Segment duration
    #[arg(long, default_value = "4s")]
    segment: String,
    /// Number of segments per rung
    #[arg(long, default_value_t = 15)]
    segments: u32,
}

fn runtime(threads: usize) -> Result<tokio::runtime::Runtime> {
    let runtime = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    };
    runtime.context("cannot start the tokio runtime")
}

async fn ctrl_c() {
    // If the signal handler cannot be installed, run to the deadline.
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

pub fn run(command: BenchCommand, config_file: &ConfigFile) -> Result<()> {
    match command.action {
        None => run_bench(command.run, config_file),
        Some(BenchAction::Capacity(args)) => run_capacity(*args, config_file),
        Some(BenchAction::Library(args)) => run_library(args),
    }
}

fn run_bench(args: BenchArgs, config_file: &ConfigFile) -> Result<()> {
    let config: BenchConfig = config_file.resolve("bench", &args)?;
    let runtime = runtime(config.threads)?;
    let report = runtime.block_on(kinema_bench::run(config, ctrl_c()))?;
    print!("{}", kinema_bench::report::summary_table(&report));
    if let Some(path) = &report.config.json {
        kinema_bench::report::write_json(&report, path)?;
    }
    if let Some(path) = &report.config.report {
        kinema_bench::report::write_html(&report, path)?;
    }
    Ok(())
}

fn run_capacity(args: CapacityArgs, config_file: &ConfigFile) -> Result<()> {
    let config: CapacityConfig = config_file.resolve("bench_capacity", &args)?;
    let runtime = runtime(config.threads)?;
    let report = runtime.block_on(kinema_bench::capacity_search(config, ctrl_c()))?;
    for trial in &report.trials {
        println!(
            "{:>7} viewers  {}  stalls {}  p99 download {:.3}s  {:.1} Mbit/s  client cpu {}{}",
            trial.viewers,
            if trial.passed { "pass" } else { "FAIL" },
            trial.summary.stalls,
            trial.summary.download_seconds.p99,
            trial.summary.mbit_per_second,
            trial
                .summary
                .client_cpu_seconds
                .map(|cpu| format!("{:.0}%", cpu / trial.summary.wall_seconds.max(1e-3) * 100.0))
                .unwrap_or_else(|| "n/a".into()),
            trial
                .reason
                .as_deref()
                .map(|r| format!("  ({r})"))
                .unwrap_or_default()
        );
        // Behind steering, which server the slow downloads came from.
        let by_server = &trial.summary.steering.pathway_download_seconds;
        if by_server.len() > 1 {
            let p99s: Vec<String> = by_server
                .iter()
                .map(|(server, times)| format!("{server} {:.3}s", times.p99))
                .collect();
            println!("{:>16}p99 download by server: {}", "", p99s.join(", "));
        }
    }
    println!(
        "capacity: {} viewers{}",
        report.capacity,
        if report.reached_max {
            " (the configured maximum; the server may carry more)"
        } else {
            ""
        }
    );
    if let Some(path) = &report.config.json {
        let json = serde_json::to_vec_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn run_library(args: LibraryArgs) -> Result<()> {
    let bitrates = args
        .bitrates
        .split(',')
        .map(|rate| kinema_core::bitrate::parse_bitrate(rate).map_err(anyhow::Error::msg))
        .collect::<Result<Vec<u64>>>()
        .context("--bitrates")?;
    let segment: Duration = humantime::parse_duration(&args.segment)
        .with_context(|| format!("--segment {:?} is not a duration like 4s", args.segment))?;
    if segment.is_zero() || args.segments == 0 {
        bail!("--segment and --segments must be above zero");
    }
    let id = kinema_core::VideoId::new(args.id).context("--id")?;
    let video = kinema_bench::synthetic::SyntheticVideo {
        id,
        bitrates,
        segment_seconds: segment.as_secs_f64(),
        segments: args.segments,
    };
    let store_config = crate::store::from_flags(args.library.clone(), &args.s3)?;
    let staging_root = crate::store::staging_root(&store_config)?;
    let runtime = runtime(1)?;
    let manifest = runtime.block_on(async {
        let store = crate::store::open(&store_config).await?;
        let manifest =
            kinema_bench::synthetic::publish(store.as_ref(), &staging_root, &video).await?;
        anyhow::Ok(manifest)
    })?;
    println!(
        "published {} ({}) in {}",
        manifest.id, manifest.title, args.library
    );
    Ok(())
}
