//! `kinema tokens new | list | revoke`: bearer tokens for the admin API.
//!
//! `new` prints the secret once on stdout; the file (`--tokens`,
//! `KINEMA_TOKENS`, `[auth] tokens`, default `kinema-tokens.toml`) keeps only
//! its SHA-256, so a lost secret is replaced, never recovered.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use kinema_auth::{AdminTokens, AuthConfig, Scope};
use serde::Serialize;

use crate::config::ConfigFile;

#[derive(Debug, Args)]
pub struct TokensArgs {
    #[command(flatten)]
    file: TokensFileArgs,
    #[command(subcommand)]
    action: TokensAction,
}

#[derive(Debug, Args, Serialize)]
struct TokensFileArgs {
    /// Admin token file (hashes only; mode 0600) [default: kinema-tokens.toml]
    #[arg(long, global = true, env = "KINEMA_TOKENS", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    tokens: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ScopeArg {
    /// List and inspect.
    Read,
    /// Also upload, change and delete videos.
    Write,
    /// Also mint signed URLs and manage access.
    Admin,
    /// Only claim and report transcoding tasks (`kinema worker`).
    Worker,
}

impl From<ScopeArg> for Scope {
    fn from(scope: ScopeArg) -> Self {
        match scope {
            ScopeArg::Read => Scope::Read,
            ScopeArg::Write => Scope::Write,
            ScopeArg::Admin => Scope::Admin,
            ScopeArg::Worker => Scope::Worker,
        }
    }
}

#[derive(Debug, Subcommand)]
enum TokensAction {
    /// Make a token; its secret is printed once and never stored.
    New {
        /// What the token may do.
        #[arg(long, value_enum)]
        scope: ScopeArg,
        /// A name to list and revoke it by [default: SCOPE-UNIXTIME]
        #[arg(long)]
        name: Option<String>,
    },
    /// List token names, scopes and creation times (never secrets).
    List,
    /// Delete a token; requests bearing it get 401 from then on (servers
    /// read the file at start).
    Revoke {
        /// The token's name.
        name: String,
    },
}

pub fn run(config_file: &ConfigFile, args: TokensArgs) -> Result<()> {
    let config: AuthConfig = config_file.resolve("auth", &args.file)?;
    let path = &config.tokens;
    let mut tokens = AdminTokens::load(path)?;
    match args.action {
        TokensAction::New { scope, name } => {
            let scope = Scope::from(scope);
            let now = SystemTime::now();
            let name = name.unwrap_or_else(|| {
                let seconds = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
                format!("{scope}-{seconds}")
            });
            let secret = tokens
                .issue(&name, scope, now)
                .with_context(|| format!("cannot add a token to {}", path.display()))?;
            tokens.save(path)?;
            println!("{secret}");
            eprintln!(
                "added token {name:?} (scope {scope}) to {}; the secret above is shown only once. \
                 Send it as `Authorization: Bearer SECRET`",
                path.display()
            );
        }
        TokensAction::List => {
            println!("{:<40} {:<6} created", "name", "scope");
            for token in tokens.tokens() {
                println!(
                    "{:<40} {:<6} {}",
                    token.name,
                    token.scope.as_str(),
                    humantime::format_rfc3339_seconds(token.created)
                );
            }
        }
        TokensAction::Revoke { name } => {
            tokens.revoke(&name)?;
            tokens.save(path)?;
            eprintln!("revoked token {name:?} in {}", path.display());
        }
    }
    Ok(())
}
