//! Distributed ingest with real processes: `kinema serve` on a library in a
//! real S3-protocol store (s3s-fs), its queue embedded or in a real
//! PostgreSQL, and `kinema worker` processes that claim its tasks over HTTP. An upload is encoded by a worker and published; a
//! worker killed mid-task loses its lease and another redoes the task; a
//! server killed mid-upload leaves no job and no object behind; a worker
//! whose token is revoked is refused and stops; a cancel reaches a running
//! worker at its next heartbeat; a worker told to stop finishes its task
//! first; a long upload is split into chunks that several workers encode at
//! once, assembled into one video; an upload that is not media is refused
//! before any worker sees it.

#[path = "support/workers_support.rs"]
mod workers_support;

use std::time::Duration;

use serde_json::Value;
use workers_support::*;

/// Generous bounds: two cores shared with whatever else runs.
const ENCODE_LIMIT: Duration = Duration::from_secs(240);

#[test]
fn an_upload_is_encoded_by_a_worker_and_published() {
    upload_encoded_and_published(Queue::Embedded);
}

#[test]
fn an_upload_is_encoded_by_a_worker_and_published_with_postgres() {
    upload_encoded_and_published(Queue::Postgres);
}

fn upload_encoded_and_published(queue: Queue) {
    let setup = Setup::with_queue(queue);
    let token = setup.worker_token_file("encoders");
    let (server, address) = setup.serve();
    let workers: Vec<Logged> = (1..=3)
        .map(|n| setup.worker(address, &format!("w{n}"), &token))
        .collect();
    let source = clip(setup.path(), "clip.mp4", "320x180", 3);
    let job = upload(address, &setup.admin, "clip", &source);
    let done = wait_job(
        address,
        &setup.admin,
        &job,
        ENCODE_LIMIT,
        |job| job["state"] != "queued" && job["state"] != "running",
        &workers.iter().chain([&server]).collect::<Vec<_>>(),
    );
    let logs: Vec<String> = workers.iter().map(Logged::log).collect();
    assert_eq!(done["state"], "done", "{done}\n{}", logs.join("\n---\n"));
    assert_eq!(done["video_id"], "clip");
    assert_eq!(done["progress"]["percent"], 100.0);
    assert_eq!(get_status(address, "/v/clip/master.m3u8"), 200);
    assert_eq!(get_status(address, "/v/clip/manifest.mpd"), 200);
    // Exactly one worker ran it; the source is gone with the job done.
    let ran: Vec<&String> = logs
        .iter()
        .filter(|log| log.contains("task done"))
        .collect();
    assert_eq!(ran.len(), 1, "{}", logs.join("\n---\n"));
    assert!(
        setup.job_objects_on_disk().is_empty(),
        "{:?}",
        setup.job_objects_on_disk()
    );
    let (_, listed) = call(address, "GET", "/api/jobs", &setup.admin, b"");
    assert_eq!(listed["jobs"][0]["id"], job.as_str(), "{listed}");
}

#[test]
fn a_worker_killed_mid_task_loses_its_lease_and_another_redoes_it() {
    killed_worker_task_redone(Queue::Embedded);
}

#[test]
fn a_worker_killed_mid_task_loses_its_lease_and_another_redoes_it_with_postgres() {
    killed_worker_task_redone(Queue::Postgres);
}

fn killed_worker_task_redone(queue: Queue) {
    let setup = Setup::with_queue(queue);
    let token = setup.worker_token_file("encoders");
    let (_server, address) = setup.serve();
    let first = setup.worker(address, "first", &token);
    let source = clip(setup.path(), "long.mp4", "640x360", 30);
    let job = upload(address, &setup.admin, "long", &source);
    first.wait_for_line("task claimed", Duration::from_secs(60));
    first.signal("KILL");
    // The others start after the kill, so the task can only be theirs once
    // the first's lease expired.
    let others: Vec<Logged> = ["second", "third"]
        .iter()
        .map(|name| setup.worker(address, name, &token))
        .collect();
    let done = wait_job(
        address,
        &setup.admin,
        &job,
        ENCODE_LIMIT,
        |job| job["state"] != "queued" && job["state"] != "running",
        &others.iter().collect::<Vec<_>>(),
    );
    let logs: Vec<String> = others.iter().map(Logged::log).collect();
    assert_eq!(done["state"], "done", "{done}\n{}", logs.join("\n---\n"));
    assert_eq!(done["attempts"], 2, "{done}");
    assert_eq!(get_status(address, "/v/long/master.m3u8"), 200);
    let (status, video) = call(address, "GET", "/api/videos/long", &setup.admin, b"");
    assert_eq!(status, 200, "{video}");
    let duration = video["duration_seconds"].as_f64().unwrap();
    assert!((duration - 30.0).abs() < 0.5, "{video}");
    assert!(setup.job_objects_on_disk().is_empty());
}

#[test]
fn a_server_killed_mid_upload_leaves_no_job_and_no_object_after_restart() {
    server_killed_mid_upload(Queue::Embedded);
}

#[test]
fn a_server_killed_mid_upload_leaves_no_job_and_no_object_after_restart_with_postgres() {
    server_killed_mid_upload(Queue::Postgres);
}

fn server_killed_mid_upload(queue: Queue) {
    let setup = Setup::with_queue(queue);
    let (mut server, address) = setup.serve();
    // Past one 8 MiB part: the upload is a multipart upload in flight.
    let _upload = start_upload(address, &setup.admin, 40 * 1024 * 1024, 12 * 1024 * 1024);
    server.signal("KILL");
    server.wait_exit(Duration::from_secs(30));
    // And a source whose job was never recorded: a crash between the two.
    let orphan = setup
        .store
        .bucket_dir(BUCKET)
        .join("lib/jobs/j1234abcd/source");
    std::fs::create_dir_all(orphan.parent().unwrap()).unwrap();
    std::fs::write(&orphan, b"not yet queued").unwrap();
    // The copy the server kept to plan the upload is there, cut short.
    let planning = setup.path().join("ingest/planning");
    let copies = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(&planning)
            .map(|entries| entries.flatten().map(|entry| entry.path()).collect())
            .unwrap_or_default()
    };
    assert_eq!(copies().len(), 1, "{:?}", copies());
    let (_server, address) = setup.serve();
    let (status, listed) = call(address, "GET", "/api/jobs", &setup.admin, b"");
    assert_eq!(status, 200);
    assert_eq!(listed["jobs"], serde_json::json!([]), "{listed}");
    assert!(
        setup.job_objects_on_disk().is_empty(),
        "{:?}",
        setup.job_objects_on_disk()
    );
    assert!(copies().is_empty(), "{:?}", copies());
}

#[test]
fn a_worker_whose_token_is_revoked_is_refused_and_stops() {
    let setup = Setup::new();
    let token = setup.worker_token_file("doomed");
    let (_server, address) = setup.serve();
    let mut worker = setup.worker(address, "doomed", &token);
    let (status, _) = call(
        address,
        "DELETE",
        "/api/admin-tokens/doomed",
        &setup.admin,
        b"",
    );
    assert_eq!(status, 204);
    // Its waiting claim ends within 20 s; the next one is refused.
    let exit = worker.wait_exit(Duration::from_secs(60));
    assert!(!exit.success());
    let log = worker.log();
    assert!(log.contains("refused the worker token"), "{log}");
    assert!(log.contains("401"), "{log}");
}

#[test]
fn a_cancel_reaches_a_running_worker_within_seconds() {
    cancel_reaches_worker(Queue::Embedded);
}

#[test]
fn a_cancel_reaches_a_running_worker_within_seconds_with_postgres() {
    cancel_reaches_worker(Queue::Postgres);
}

fn cancel_reaches_worker(queue: Queue) {
    let setup = Setup::with_queue(queue);
    let token = setup.worker_token_file("encoders");
    let (_server, address) = setup.serve();
    let worker = setup.worker(address, "busy", &token);
    let source = clip(setup.path(), "long.mp4", "640x360", 30);
    let job = upload(address, &setup.admin, "doomed", &source);
    worker.wait_for_line("task claimed", Duration::from_secs(60));
    let (status, answer) = call(
        address,
        "POST",
        &format!("/api/jobs/{job}/cancel"),
        &setup.admin,
        b"",
    );
    assert_eq!(status, 200, "{answer}");
    worker.wait_for_line("its job was cancelled", Duration::from_secs(30));
    let cancelled = wait_job(
        address,
        &setup.admin,
        &job,
        Duration::from_secs(30),
        |job| job["state"] == "cancelled",
        &[&worker],
    );
    assert_eq!(cancelled["video_id"], "doomed");
    assert_eq!(get_status(address, "/v/doomed/master.m3u8"), 404);
    // The worker is free again: it takes the next job.
    let next = upload(
        address,
        &setup.admin,
        "next",
        &clip(setup.path(), "clip.mp4", "320x180", 2),
    );
    let done = wait_job(
        address,
        &setup.admin,
        &next,
        ENCODE_LIMIT,
        |job| job["state"] != "queued" && job["state"] != "running",
        &[&worker],
    );
    assert_eq!(done["state"], "done", "{done}\n{}", worker.log());
}

#[test]
fn a_worker_told_to_stop_finishes_its_task_first() {
    let setup = Setup::new();
    let token = setup.worker_token_file("encoders");
    let (_server, address) = setup.serve();
    let mut worker = setup.worker(address, "leaving", &token);
    let source = clip(setup.path(), "clip.mp4", "640x360", 10);
    let job = upload(address, &setup.admin, "last", &source);
    worker.wait_for_line("task claimed", Duration::from_secs(60));
    worker.signal("TERM");
    let exit = worker.wait_exit(ENCODE_LIMIT);
    assert!(exit.success(), "{}", worker.log());
    let (status, answer) = call(
        address,
        "GET",
        &format!("/api/jobs/{job}"),
        &setup.admin,
        b"",
    );
    assert_eq!(status, 200);
    assert_eq!(answer["job"]["state"], "done", "{answer}\n{}", worker.log());
    assert_eq!(answer["job"]["attempts"], 1, "{answer}");
    assert_eq!(get_status(address, "/v/last/master.m3u8"), 200);
}

#[test]
fn a_long_upload_is_encoded_in_chunks_by_several_workers_and_published_whole() {
    // 24 s in 8 s chunks of 4 s segments: three chunk tasks, audio, assemble.
    let setup = Setup::with_settings(Queue::Postgres, "[ingest.chunked]\nchunk_seconds = 8");
    let token = setup.worker_token_file("encoders");
    let (server, address) = setup.serve();
    let workers: Vec<Logged> = (1..=3)
        .map(|n| setup.worker(address, &format!("c{n}"), &token))
        .collect();
    let source = clip(setup.path(), "long.mp4", "640x360", 24);
    let job = upload(address, &setup.admin, "chunked", &source);
    server.wait_for_line("upload planned as chunks", Duration::from_secs(60));
    let done = wait_job(
        address,
        &setup.admin,
        &job,
        ENCODE_LIMIT,
        |job| job["state"] != "queued" && job["state"] != "running",
        &workers.iter().chain([&server]).collect::<Vec<_>>(),
    );
    let logs: Vec<String> = workers.iter().map(Logged::log).collect();
    assert_eq!(done["state"], "done", "{done}\n{}", logs.join("\n---\n"));
    // The chunks went to more than one worker at once.
    let mut names: Vec<&str> = done["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    names.sort_unstable();
    names.dedup();
    assert!(names.len() >= 2, "{done}");
    let claimed = logs.iter().filter(|log| log.contains("kind=chunk")).count();
    assert!(claimed >= 2, "{}", logs.join("\n---\n"));
    // Four tasks read the source (three chunks and the audio) on three
    // workers: each worker downloads it at most once, and one that ran two
    // of them used the copy it kept.
    let count = |line: &str| {
        logs.iter()
            .map(|log| log.matches(line).count())
            .sum::<usize>()
    };
    let (downloaded, reused) = (count("source downloaded"), count("source reused"));
    assert_eq!(downloaded + reused, 4, "{}", logs.join("\n---\n"));
    assert!(downloaded <= 3 && reused >= 1, "{}", logs.join("\n---\n"));
    // One video of 24 s in six 4 s segments per rendition, as a whole
    // encode would make it.
    let (status, video) = call(address, "GET", "/api/videos/chunked", &setup.admin, b"");
    assert_eq!(status, 200, "{video}");
    let duration = video["duration_seconds"].as_f64().unwrap();
    assert!((duration - 24.0).abs() < 0.5, "{video}");
    let video_renditions: Vec<&Value> = video["renditions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|rendition| rendition["kind"] == "video")
        .collect();
    assert!(!video_renditions.is_empty(), "{video}");
    for rendition in video_renditions {
        assert_eq!(rendition["segments"], 6, "{rendition}");
    }
    assert_eq!(get_status(address, "/v/chunked/master.m3u8"), 200);
    assert!(
        setup.job_objects_on_disk().is_empty(),
        "{:?}",
        setup.job_objects_on_disk()
    );
}

#[test]
fn an_upload_that_is_not_media_is_refused_and_leaves_nothing() {
    let setup = Setup::new();
    let (_server, address) = setup.serve();
    let (status, answer) = call(
        address,
        "POST",
        "/api/videos?id=junk",
        &setup.admin,
        &vec![0x42u8; 300_000],
    );
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|error| !error.is_empty()),
        "{answer}"
    );
    let (_, listed) = call(address, "GET", "/api/jobs", &setup.admin, b"");
    assert_eq!(listed["jobs"], serde_json::json!([]), "{listed}");
    assert!(
        setup.job_objects_on_disk().is_empty(),
        "{:?}",
        setup.job_objects_on_disk()
    );
}
