//! Settings from three sources, one precedence: command-line flag, then
//! `KINEMA_*` environment variable (both handled by clap), then the section
//! of the TOML config file named after the subcommand, then the default.
//!
//! Each subcommand has a clap `Args` struct whose fields are all `Option`s
//! and serialise only when set, and a library `Config` struct that
//! deserialises with defaults and `deny_unknown_fields`. The set flags are
//! laid over the file's section and the result deserialised once, so every
//! error — from the file or a flag — names the key and what is wrong.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The config file: `--config PATH` / `KINEMA_CONFIG`, else `kinema.toml` in
/// the working directory if it exists, else none.
#[derive(Debug, Default)]
pub struct ConfigFile {
    path: Option<PathBuf>,
    table: toml::Table,
}

impl ConfigFile {
    pub fn load(explicit: Option<&Path>) -> Result<Self> {
        let path = match explicit {
            Some(path) => path.to_path_buf(),
            None => {
                let default = PathBuf::from("kinema.toml");
                if !default.exists() {
                    return Ok(Self::default());
                }
                default
            }
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let table: toml::Table = toml::from_str(&text)
            .with_context(|| format!("config file {} is not valid TOML", path.display()))?;
        Ok(Self {
            path: Some(path),
            table,
        })
    }

    /// Resolves the settings of one subcommand: `[section]` of the file with
    /// the flags that were given laid over it.
    pub fn resolve<T: DeserializeOwned>(&self, section: &str, flags: &impl Serialize) -> Result<T> {
        let mut merged = match self.table.get(section) {
            None => toml::Table::new(),
            Some(toml::Value::Table(table)) => table.clone(),
            Some(_) => bail!(
                "{}: `{section}` must be a table ([{section}])",
                self.describe()
            ),
        };
        let flags = toml::Table::try_from(flags).context("cannot represent command-line flags")?;
        merged.extend(flags);
        self.deserialize(section, merged)
    }

    /// Deserialises settings of `[section]` (resolved, and perhaps with some
    /// keys taken out), with errors that name the key as `resolve`'s do.
    pub fn deserialize<T: DeserializeOwned>(&self, section: &str, table: toml::Table) -> Result<T> {
        // serde_path_to_error keeps the key path that a plain deserialise
        // drops, so `ttl = "soon"` is reported as `[auth] ttl: ...`.
        serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|error| {
            let key = error.path().to_string();
            let message = error.inner().message().to_string();
            if key == "." {
                anyhow::anyhow!("{}: [{section}] {message}", self.describe())
            } else {
                anyhow::anyhow!("{}: [{section}] {key}: {message}", self.describe())
            }
        })
    }

    fn describe(&self) -> String {
        match &self.path {
            Some(path) => format!("config ({}, flags, KINEMA_* variables)", path.display()),
            None => "config (flags, KINEMA_* variables)".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Example {
        listen: String,
        #[serde(default = "default_workers")]
        workers: u32,
    }

    fn default_workers() -> u32 {
        4
    }

    #[derive(Serialize)]
    struct Flags {
        #[serde(skip_serializing_if = "Option::is_none")]
        listen: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        workers: Option<u32>,
    }

    fn file(text: &str) -> ConfigFile {
        ConfigFile {
            path: Some("kinema.toml".into()),
            table: toml::from_str(text).unwrap(),
        }
    }

    #[test]
    fn flags_override_file_and_defaults_fill_the_rest() {
        let config = file("[serve]\nlisten = \"a\"\nworkers = 2\n");
        let flags = Flags {
            listen: Some("b".into()),
            workers: None,
        };
        let resolved: Example = config.resolve("serve", &flags).unwrap();
        assert_eq!(
            resolved,
            Example {
                listen: "b".into(),
                workers: 2
            }
        );
        let flags = Flags {
            listen: None,
            workers: None,
        };
        let resolved: Example = file("[serve]\nlisten = \"a\"\n")
            .resolve("serve", &flags)
            .unwrap();
        assert_eq!(resolved.workers, 4);
    }

    #[test]
    fn errors_name_the_key() {
        let flags = Flags {
            listen: None,
            workers: None,
        };
        let error = file("[serve]\nlisten = \"a\"\nwrokers = 2\n")
            .resolve::<Example>("serve", &flags)
            .unwrap_err()
            .to_string();
        assert!(error.contains("wrokers"), "{error}");
        let error = file("[serve]\nlisten = 5\n")
            .resolve::<Example>("serve", &flags)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("listen") || error.contains("string"),
            "{error}"
        );
        let error = file("serve = 1\n")
            .resolve::<Example>("serve", &flags)
            .unwrap_err()
            .to_string();
        assert!(error.contains("[serve]"), "{error}");
    }
}
