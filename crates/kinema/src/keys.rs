//! `kinema keys new | list | retire KID`: the key ring that signs URLs.
//!
//! The ring lives in one file (`--keys`, `KINEMA_KEYS`, `[auth] keys`,
//! default `kinema-keys.toml`) written with mode 0600. This module only
//! turns the command line into calls on `kinema_auth::KeyRing`.

use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use kinema_auth::{AuthConfig, KeyRing};
use serde::Serialize;

use crate::config::ConfigFile;

#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(flatten)]
    file: KeysFileArgs,
    #[command(subcommand)]
    action: KeysAction,
}

/// The settings of `kinema keys` that the `[auth]` section can also hold.
#[derive(Debug, Args, Serialize)]
struct KeysFileArgs {
    /// Key ring file (created with mode 0600 if missing) [default: kinema-keys.toml]
    #[arg(long, global = true, env = "KINEMA_KEYS", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    keys: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum KeysAction {
    /// Add a fresh random key; new URLs are signed with it from now on.
    New,
    /// List the keys: id, creation time, status (signing, active, retired).
    List,
    /// Retire a key: URLs signed with it stop working at once. Retire a key
    /// only after the longest lifetime of the URLs it signed has passed.
    Retire {
        /// The key id, as `kinema keys list` shows it.
        kid: String,
    },
}

pub fn run(config_file: &ConfigFile, args: KeysArgs) -> Result<()> {
    let config: AuthConfig = config_file.resolve("auth", &args.file)?;
    let path = &config.keys;
    match args.action {
        KeysAction::New => {
            let mut ring = KeyRing::load_if_exists(path)?.unwrap_or_else(KeyRing::empty);
            let id = ring.add_new_key(SystemTime::now()).id().clone();
            ring.save(path)?;
            println!("{id}");
            eprintln!(
                "added key {id} to {}; new URLs are signed with it. Copy the file to every \
                 server that verifies URLs before handing such URLs out",
                path.display()
            );
        }
        KeysAction::List => {
            let ring = KeyRing::load(path)?;
            let signing = ring.signing_key().map(|key| key.id().clone());
            println!("{:<34} {:<22} status", "id", "created");
            for key in ring.keys() {
                let status = if key.is_retired() {
                    "retired"
                } else if Some(key.id()) == signing.as_ref() {
                    "signing"
                } else {
                    "active"
                };
                println!(
                    "{:<34} {:<22} {status}",
                    key.id().as_str(),
                    humantime::format_rfc3339_seconds(key.created()).to_string()
                );
            }
        }
        KeysAction::Retire { kid } => {
            let mut ring = KeyRing::load(path)?;
            ring.retire(&kid)
                .with_context(|| format!("cannot retire a key in {}", path.display()))?;
            ring.save(path)?;
            eprintln!("retired key {kid} in {}", path.display());
            if ring.signing_key().is_none() {
                eprintln!(
                    "warning: {} has no active key left; `kinema sign` fails until `kinema keys new`",
                    path.display()
                );
            }
        }
    }
    Ok(())
}
