//! `kinema serve`'s `[queue]` setting as a user meets it: the flag in
//! `--help` without the password a variable holds, and a queue URL with a
//! local library refused before anything listens, saying why, without the
//! password.

use std::process::{Command, Stdio};

const SECRET_URL: &str = "postgres://kinema:hunter2@127.0.0.1:1/queue";

fn kinema() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kinema"));
    command
        .env_remove("KINEMA_CONFIG")
        .env_remove("KINEMA_QUEUE_URL")
        .stdin(Stdio::null());
    command
}

#[test]
fn help_names_the_flag_and_hides_the_variables_value() {
    let output = kinema()
        .args(["serve", "--help"])
        .env("KINEMA_QUEUE_URL", SECRET_URL)
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("--queue-url <URL>"), "{help}");
    assert!(help.contains("KINEMA_QUEUE_URL"), "{help}");
    assert!(!help.contains("hunter2"), "{help}");
}

#[test]
fn a_queue_url_with_a_local_library_is_refused_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let library = dir.path().join("library");
    std::fs::create_dir(&library).unwrap();
    let output = kinema()
        .current_dir(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--library"])
        .arg(&library)
        .args(["--queue-url", SECRET_URL])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("[queue] url is set but the library is a local directory"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn an_unknown_queue_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let library = dir.path().join("library");
    std::fs::create_dir(&library).unwrap();
    std::fs::write(dir.path().join("kinema.toml"), "[queue]\npool = 4\n").unwrap();
    let output = kinema()
        .current_dir(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--library"])
        .arg(&library)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("[queue]"), "{stderr}");
    assert!(stderr.contains("pool"), "{stderr}");
}
