//! The `kinema` binary: one executable, one subcommand per service or tool.
//!
//! This crate only parses the command line and the config file, sets up
//! logging and hands a resolved `Config` to a library crate's `run`. It holds
//! no service logic of its own.

mod bench;
mod cluster;
mod config;
mod edge;
mod ingest;
mod keys;
mod netq;
mod queue;
mod serve;
mod sign;
mod store;
mod tokens;
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::config::ConfigFile;

#[derive(Debug, Parser)]
#[command(
    name = "kinema",
    version,
    about = "kinema: video on demand — ingest, serve, protect, cache and measure"
)]
struct Cli {
    /// TOML config file; each subcommand reads its own section ([serve], ...).
    /// Defaults to ./kinema.toml when that file exists.
    #[arg(long, global = true, env = "KINEMA_CONFIG")]
    config: Option<PathBuf>,

    /// Log filter in tracing's env-filter syntax (e.g. `info`, `kinema=debug`).
    #[arg(long, global = true, env = "KINEMA_LOG", default_value = "info")]
    log: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve a video library over HTTP (HLS, DASH, web UI, /metrics).
    #[command(long_about = serve::LONG_ABOUT)]
    // Boxed: every setting of `[serve]` is a field, which makes it by far
    // the largest variant.
    Serve(Box<serve::ServeArgs>),
    /// Ingest a file: encode an adaptive ladder, package HLS + DASH, publish atomically.
    #[command(long_about = ingest::LONG_ABOUT)]
    Ingest(ingest::IngestArgs),
    /// Manage the key ring that signs URLs: new, list, retire.
    Keys(keys::KeysArgs),
    /// Print a signed URL for a video (/s/{token}/v/{id}/master.m3u8).
    Sign(sign::SignArgs),
    /// Manage admin API bearer tokens: new, list, revoke.
    Tokens(tokens::TokensArgs),
    /// Emulate viewers playing an HLS or DASH stream (link, ABR, buffer) and report what they feel.
    Bench(bench::BenchCommand),
    /// Cache an origin by the rules of RFC 9111: coalescing, tiers, stale, purge.
    #[command(long_about = edge::LONG_ABOUT)]
    Edge(edge::EdgeArgs),
    /// Run transcoding tasks for a server whose library is in S3: claim, encode, publish, report.
    #[command(long_about = worker::LONG_ABOUT)]
    Worker(worker::WorkerArgs),
}

fn main() -> ExitCode {
    let cli = Cli::try_parse().unwrap_or_else(|error| exit_naming_the_variable(error));
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&cli.log))
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kinema: {}", describe(&error));
            ExitCode::FAILURE
        }
    }
}

/// Exits with clap's `error`, adding, for a bad value that came from a
/// `KINEMA_*` variable rather than the command line, which variable it was:
/// clap names only the flag, which the user never typed.
fn exit_naming_the_variable(error: clap::Error) -> ! {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if matches!(
        error.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) && let Some(ContextValue::String(flag)) = error.get(ContextKind::InvalidArg)
        && let Some(variable) = variable_of(&Cli::command(), std::env::args().skip(1), flag)
        && std::env::var_os(&variable).is_some()
    {
        let _ = error.print();
        eprintln!("(the value came from the environment variable {variable})");
        std::process::exit(error.exit_code());
    }
    error.exit()
}

/// The environment variable of the argument clap calls `flag`
/// (`--name <VALUE>`) in the subcommand the command line names (`words`,
/// walked down while they name subcommands: `bench capacity`).
fn variable_of(
    command: &clap::Command,
    mut words: impl Iterator<Item = String>,
    flag: &str,
) -> Option<String> {
    let long = flag.strip_prefix("--")?.split([' ', '=']).next()?;
    let mut command = command;
    while let Some(sub) = words.find_map(|word| command.find_subcommand(&word)) {
        command = sub;
    }
    command
        .get_arguments()
        .find(|arg| arg.get_long() == Some(long))
        .and_then(|arg| arg.get_env())
        .map(|name| name.to_string_lossy().into_owned())
}

/// An error and its causes on one line, each cause once: most of kinema's
/// errors already quote their cause in their own message, which `{:#}`
/// would print a second time.
fn describe(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let config_file = ConfigFile::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve(args) => serve::run(&config_file, *args),
        Command::Ingest(args) => ingest::run(&config_file, args),
        Command::Keys(args) => keys::run(&config_file, args),
        Command::Sign(args) => sign::run(&config_file, args),
        Command::Tokens(args) => tokens::run(&config_file, args),
        Command::Bench(command) => bench::run(command, &config_file),
        Command::Edge(args) => edge::run(&config_file, args),
        Command::Worker(args) => worker::run(&config_file, args),
    }
}
