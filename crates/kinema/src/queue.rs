//! The `[queue]` settings of `kinema serve`: where the ingest job queue
//! that `kinema worker` processes claim from lives. With no URL (the
//! default) it is embedded: one JSON file per job in the ingest workspace,
//! no database. With `url = "postgres://…"` (`--queue-url`,
//! `KINEMA_QUEUE_URL`) it is in PostgreSQL, shared by every server that
//! names the same database. The URL's password is never printed: not in
//! `--help` (the variable's value is hidden), logs or errors.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use kinema_queue::{EmbeddedQueue, PostgresConfig, PostgresQueue, Queue, QueueConfig};
use serde::{Deserialize, Serialize};

use crate::config::ConfigFile;

/// The `[queue]` section's flags.
#[derive(Debug, Default, clap::Args, Serialize)]
pub struct QueueArgs {
    /// PostgreSQL URL of the ingest job queue, postgres://USER:PASSWORD@HOST:PORT/DATABASE; also `url` in the [queue] section of kinema.toml [default: none: the queue is kept in the ingest workspace]
    #[arg(
        long = "queue-url",
        env = "KINEMA_QUEUE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    #[serde(rename = "url", skip_serializing_if = "Option::is_none")]
    url: Option<String>,
}

fn default_pool_size() -> usize {
    8
}

fn default_statement_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_max_attempts() -> u32 {
    QueueConfig::default().max_attempts
}

/// `[queue]`, resolved.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSettings {
    /// A PostgreSQL URL; `None` for the embedded queue.
    #[serde(default)]
    url: Option<String>,
    /// Connections to PostgreSQL held at most (1 to 64).
    #[serde(default = "default_pool_size")]
    pool_size: usize,
    /// Longest a statement, lock wait or connect may take.
    #[serde(default = "default_statement_timeout", with = "humantime_serde")]
    statement_timeout: Duration,
    /// Claims of one task (failures and lost workers alike) before its job
    /// ends failed.
    #[serde(default = "default_max_attempts")]
    max_attempts: u32,
}

impl std::fmt::Debug for QueueSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueSettings")
            .field("url", &self.url.as_deref().map(kinema_queue::redacted_url))
            .field("pool_size", &self.pool_size)
            .field("statement_timeout", &self.statement_timeout)
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

impl QueueSettings {
    /// True when the queue is in PostgreSQL.
    pub fn is_shared(&self) -> bool {
        self.url.is_some()
    }
}

/// `[queue]` of the config file with the flags laid over it.
pub fn resolve(config_file: &ConfigFile, args: &QueueArgs) -> Result<QueueSettings> {
    let section: toml::Table = config_file.resolve("queue", args)?;
    let settings: QueueSettings = config_file.deserialize("queue", section)?;
    if !(1..=100).contains(&settings.max_attempts) {
        anyhow::bail!(
            "[queue] max_attempts: {} is outside 1 to 100",
            settings.max_attempts
        );
    }
    let timeout_bounds = Duration::from_millis(100)..=Duration::from_secs(600);
    if !timeout_bounds.contains(&settings.statement_timeout) {
        anyhow::bail!(
            "[queue] statement_timeout: {} is outside 100ms to 10m",
            humantime::format_duration(settings.statement_timeout)
        );
    }
    Ok(settings)
}

/// Opens the queue the settings name: PostgreSQL (connected and migrated,
/// so a wrong URL stops the server before it listens), or the embedded one
/// in `embedded_dir`.
pub async fn open(settings: &QueueSettings, embedded_dir: &Path) -> Result<Arc<dyn Queue>> {
    let queue = QueueConfig {
        max_attempts: settings.max_attempts,
    };
    Ok(match &settings.url {
        Some(url) => {
            let config = PostgresConfig {
                url: url.clone(),
                pool_size: settings.pool_size,
                statement_timeout: settings.statement_timeout,
                queue,
            };
            Arc::new(PostgresQueue::open(config).await.with_context(|| {
                format!(
                    "cannot open the job queue at {}",
                    kinema_queue::redacted_url(url)
                )
            })?)
        }
        None => Arc::new(
            EmbeddedQueue::open(embedded_dir, queue)
                .await
                .with_context(|| {
                    format!("cannot open the job queue in {}", embedded_dir.display())
                })?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> ConfigFile {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kinema.toml");
        std::fs::write(&path, text).unwrap();
        ConfigFile::load(Some(&path)).unwrap()
    }

    #[test]
    fn no_section_means_the_embedded_queue() {
        let settings = resolve(&ConfigFile::default(), &QueueArgs::default()).unwrap();
        assert!(!settings.is_shared());
        assert_eq!(settings.max_attempts, 3);
    }

    #[test]
    fn the_flag_overrides_the_file_and_the_password_stays_hidden() {
        let config =
            file("[queue]\nurl = \"postgres://k:file-secret@db/q\"\nstatement_timeout = \"3s\"\n");
        let args = QueueArgs {
            url: Some("postgres://k:flag-secret@db2/q".into()),
        };
        let settings = resolve(&config, &args).unwrap();
        assert_eq!(
            settings.url.as_deref(),
            Some("postgres://k:flag-secret@db2/q")
        );
        assert_eq!(settings.statement_timeout, Duration::from_secs(3));
        let shown = format!("{settings:?}");
        assert!(shown.contains("postgres://k:***@db2/q"), "{shown}");
        assert!(!shown.contains("secret"), "{shown}");
    }

    #[test]
    fn unknown_keys_and_bad_bounds_are_refused_by_name() {
        let error = resolve(&file("[queue]\nulr = \"x\"\n"), &QueueArgs::default()).unwrap_err();
        assert!(format!("{error:#}").contains("ulr"), "{error:#}");
        let error =
            resolve(&file("[queue]\nmax_attempts = 0\n"), &QueueArgs::default()).unwrap_err();
        assert!(format!("{error:#}").contains("max_attempts"), "{error:#}");
        let error = resolve(
            &file("[queue]\nstatement_timeout = \"0s\"\n"),
            &QueueArgs::default(),
        )
        .unwrap_err();
        assert_eq!(
            format!("{error:#}"),
            "[queue] statement_timeout: 0s is outside 100ms to 10m"
        );
    }

    #[tokio::test]
    async fn a_wrong_url_is_an_error_that_hides_the_password() {
        let settings = QueueSettings {
            url: Some("postgres://k:hunter2@127.0.0.1:1/q".into()),
            pool_size: 1,
            statement_timeout: Duration::from_secs(2),
            max_attempts: 3,
        };
        let dir = tempfile::tempdir().unwrap();
        let error = open(&settings, dir.path()).await.unwrap_err();
        let text = format!("{error:#}");
        assert!(text.contains("postgres://k:***@127.0.0.1:1/q"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }
}
