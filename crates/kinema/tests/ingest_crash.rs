//! Crash safety of `kinema ingest`: the real binary is killed with SIGKILL
//! at spread-out moments of an ingest (probing, encoding, packaging,
//! publishing), and after every kill the library must list only videos whose
//! every file is present with its checksum — never a partial video. A
//! following run must clean the debris, leave no orphan ffmpeg writing into
//! staging, and publish the video completely. Ingest's workspace may be on
//! another file system than the library, and still publishes whole.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kinema_core::Manifest;

fn kinema() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kinema"));
    command
        .env_remove("KINEMA_CONFIG")
        .env("KINEMA_LOG", "warn");
    command
}

fn clip(dir: &Path) -> PathBuf {
    clip_of(dir, "320x180", 6)
}

fn clip_of(dir: &Path, size: &str, seconds: u32) -> PathBuf {
    let path = dir.join(format!("crash-{size}-{seconds}.mp4"));
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y"])
        .args(["-f", "lavfi", "-i"])
        .arg(format!("testsrc2=s={size}:r=25:d={seconds}"))
        .args(["-f", "lavfi", "-i"])
        .arg(format!("sine=d={seconds}"))
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "aac",
            "-shortest",
        ])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    path
}

/// Every listed video (a directory with a manifest) is complete: each file
/// the manifest names exists with its size and SHA-256.
fn assert_only_complete_videos(library: &Path) -> usize {
    let mut complete = 0;
    for entry in std::fs::read_dir(library.join("videos")).unwrap() {
        let dir = entry.unwrap().path();
        let Ok(bytes) = std::fs::read(dir.join("manifest.json")) else {
            continue;
        };
        let manifest = Manifest::from_json(&bytes).unwrap();
        let generation = dir.join(kinema_store::layout::generation_dir(manifest.generation));
        for file in &manifest.files {
            let (size, sha256) = kinema_store::checksum_file(&generation.join(file.path.as_str()))
                .unwrap_or_else(|error| panic!("listed video misses {}: {error}", file.path));
            assert_eq!(
                (size, sha256),
                (file.size, file.sha256.clone()),
                "{}",
                file.path
            );
        }
        complete += 1;
    }
    complete
}

fn ffmpeg_writing_into(staging: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        std::fs::read(entry.path().join("cmdline"))
            .map(|cmdline| {
                let text = String::from_utf8_lossy(&cmdline);
                text.starts_with("ffmpeg") && text.contains(&*staging.to_string_lossy())
            })
            .unwrap_or(false)
    })
}

#[test]
fn killing_ingest_at_any_moment_never_lists_a_partial_video() {
    let work = tempfile::tempdir().unwrap();
    let source = clip(work.path());
    let library = work.path().join("library");
    let ingest = |id: &str| {
        let mut command = kinema();
        command
            .args([
                "ingest",
                "--quiet",
                "--preset",
                "ultrafast",
                "--threads",
                "1",
                "--id",
                id,
                "--library",
            ])
            .arg(&library)
            .arg(&source)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    };

    // How long an uninterrupted ingest takes here, to spread the kills over.
    let started = Instant::now();
    assert!(ingest("baseline").status().unwrap().success());
    let full = started.elapsed();
    assert_eq!(assert_only_complete_videos(&library), 1);

    // Kill points spread evenly over (and a little past) a whole ingest.
    let kills = 12;
    for round in 0..kills {
        let id = format!("crash{round}");
        let at = full.mul_f64(round as f64 / (kills - 2) as f64);
        let mut child = ingest(&id).spawn().unwrap();
        let deadline = Instant::now() + at;
        while Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = child.kill();
        child.wait().unwrap();
        // The invariant, right after the kill.
        assert_only_complete_videos(&library);
    }

    // The parent's death took its ffmpeg with it (PR_SET_PDEATHSIG).
    // Ingest stages in its workspace, by default ingest/ in the library.
    let staging = library.join("ingest/staging");
    let deadline = Instant::now() + Duration::from_secs(10);
    while ffmpeg_writing_into(&staging) {
        assert!(
            Instant::now() < deadline,
            "an orphan ffmpeg is still writing into staging"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // A new run cleans the debris of the killed ones and publishes.
    assert!(ingest("after").status().unwrap().success());
    let leftovers: Vec<_> = std::fs::read_dir(&staging).unwrap().collect();
    assert!(leftovers.is_empty(), "staging debris left: {leftovers:?}");
    let listed = assert_only_complete_videos(&library);
    assert!(
        listed >= 2,
        "baseline and after must be listed, got {listed}"
    );
}

/// The earlier check looked for orphans only after the last kill, when
/// encoding had long ended: here kinema is killed while its ffmpeg is seen
/// encoding, and that ffmpeg must be gone at once.
#[test]
fn ffmpeg_dies_with_kinema_killed_mid_encode() {
    let work = tempfile::tempdir().unwrap();
    // Long enough at `medium` on one thread that the encode is seen.
    let source = clip_of(work.path(), "640x360", 40);
    let library = work.path().join("library");
    // Ingest stages in its workspace, by default ingest/ in the library.
    let staging = library.join("ingest/staging");
    let mut child = kinema()
        .args([
            "ingest",
            "--quiet",
            "--preset",
            "medium",
            "--threads",
            "1",
            "--id",
            "midway",
            "--library",
        ])
        .arg(&library)
        .arg(&source)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ffmpeg_writing_into(&staging) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the ingest ended before its ffmpeg was seen"
        );
        assert!(Instant::now() < deadline, "no ffmpeg was seen encoding");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while ffmpeg_writing_into(&staging) {
        assert!(
            Instant::now() < deadline,
            "ffmpeg outlived the kinema that started it"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(assert_only_complete_videos(&library), 0);
}

/// `--workspace` puts ingest's scratch where the user says, here on another
/// file system than the library (/dev/shm, a tmpfs): the video is staged
/// there, published whole into the library (copied across, since a rename
/// cannot cross), and nothing of the work is left in either place.
#[test]
fn a_workspace_on_another_file_system_stages_there_and_publishes_into_the_library() {
    use std::os::unix::fs::MetadataExt;
    let work = tempfile::tempdir().unwrap();
    let workspace = tempfile::tempdir_in("/dev/shm").unwrap();
    let device = |path: &Path| std::fs::metadata(path).unwrap().dev();
    assert_ne!(
        device(work.path()),
        device(workspace.path()),
        "this test needs /dev/shm and the temporary directory on two file systems"
    );
    let source = clip_of(work.path(), "320x180", 2);
    let library = work.path().join("library");
    let output = kinema()
        .args(["ingest", "--quiet", "--id", "far", "--library"])
        .arg(&library)
        .arg("--workspace")
        .arg(workspace.path())
        .arg(&source)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(assert_only_complete_videos(&library), 1);
    for dir in ["staging", "uploads", "jobs", "logs"] {
        assert!(
            workspace.path().join(dir).is_dir(),
            "the workspace has no {dir}/"
        );
    }
    let staged: Vec<_> = std::fs::read_dir(workspace.path().join("staging"))
        .unwrap()
        .collect();
    assert!(staged.is_empty(), "left in the workspace: {staged:?}");
    assert!(
        !library.join("ingest").exists(),
        "the default workspace inside the library was used"
    );
    let copies: Vec<_> = std::fs::read_dir(library.join("staging"))
        .unwrap()
        .collect();
    assert!(
        copies.is_empty(),
        "left in the library's staging: {copies:?}"
    );
}
