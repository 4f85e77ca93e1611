//! `kinema bench` as a user runs it: its flags (the boolean ones as bare
//! flags, as the README writes them), its `KINEMA_BENCH_*` variables and
//! its `[bench]` config section, with a flag over the environment over the
//! file. The settings a run used are read back from its `--json` report.
//! The target is a loopback port nobody listens on: every request fails at
//! once, and the run still reports.

use std::path::Path;
use std::process::Command;

/// Runs `kinema bench` for one viewer and one second against a closed
/// loopback port, and returns the settings its JSON report says it used.
fn settings(dir: &Path, flags: &[&str], env: &[(&str, &str)]) -> serde_json::Value {
    let report = dir.join("report.json");
    let mut command = Command::new(env!("CARGO_BIN_EXE_kinema"));
    command
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .args(["bench", "http://127.0.0.1:1/v/x/master.m3u8"])
        .args(["--viewers", "1", "--duration", "1s", "--progress", "false"])
        .arg("--json")
        .arg(&report)
        .args(flags)
        .envs(env.iter().copied());
    let output = command.output().unwrap();
    assert!(
        report.is_file(),
        "no report: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    report["config"].clone()
}

#[test]
fn boolean_flags_are_bare_flags_as_the_readme_writes_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = settings(dir.path(), &[], &[]);
    assert_eq!(config["saturate"], false);
    assert_eq!(config["allow_remote"], false);

    let config = settings(dir.path(), &["--saturate", "--allow-remote"], &[]);
    assert_eq!(config["saturate"], true);
    assert_eq!(config["allow_remote"], true);
    // A value is still accepted.
    let config = settings(dir.path(), &["--saturate", "false"], &[]);
    assert_eq!(config["saturate"], false);
}

#[test]
fn a_flag_beats_the_environment_which_beats_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("kinema.toml"),
        "[bench]\nretries = 5\nseed = 7\nabr = \"buffer\"\nbuffer_target = \"12s\"\n",
    )
    .unwrap();
    let config = settings(
        dir.path(),
        &["--retries", "8"],
        &[("KINEMA_BENCH_RETRIES", "6"), ("KINEMA_BENCH_SEED", "9")],
    );
    assert_eq!(config["retries"], 8, "the flag");
    assert_eq!(config["seed"], 9, "the environment over the file");
    assert_eq!(config["abr"], "buffer", "the file");
    assert_eq!(config["buffer_target"], "12s", "the file");
    assert_eq!(config["speed"], 1.0, "the default");

    // The same file named by KINEMA_CONFIG from elsewhere.
    let elsewhere = tempfile::tempdir().unwrap();
    let file = dir.path().join("kinema.toml");
    let config = settings(
        elsewhere.path(),
        &[],
        &[("KINEMA_CONFIG", file.to_str().unwrap())],
    );
    assert_eq!(config["retries"], 5);
    assert_eq!(config["seed"], 7);
}
