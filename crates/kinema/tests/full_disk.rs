//! A full disk fails an ingest cleanly. The real binary runs with its
//! library on a small tmpfs, mounted in a private mount namespace (util-linux
//! `unshare`; as root, or unprivileged through a user namespace) that a
//! sleeping process holds open: `kinema` runs inside it through `nsenter`,
//! and the test reads the library and fills or frees its space through
//! `/proc/{holder}/root`. Whatever the stage the disk fills at, the run
//! must fail with an error naming the full disk, what was being written and
//! where; publish nothing; give back every byte it took; and leave the
//! library able to ingest once there is room again.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use kinema_auth::{AdminTokens, KeyRing, Scope};
use serde_json::Value;

/// A tmpfs of a fixed size on `mount_point`, seen only by the processes of
/// one private mount namespace.
struct SmallDisk {
    holder: Child,
    mount_point: PathBuf,
    /// Not root: the namespace is entered through its user namespace.
    unprivileged: bool,
}

impl SmallDisk {
    fn mount(mount_point: &Path, size: &str) -> Self {
        std::fs::create_dir_all(mount_point).unwrap();
        // /proc/self belongs to this process's effective user.
        let unprivileged = std::fs::metadata("/proc/self").unwrap().uid() != 0;
        let mut unshare = Command::new("unshare");
        if unprivileged {
            unshare.args(["--map-root-user", "--mount"]);
        } else {
            unshare.args(["--mount", "--propagation", "private"]);
        }
        let mut holder = unshare
            .args([
                "sh",
                "-c",
                "mount -t tmpfs -o size=\"$1\" kinema-full-disk \"$2\" && echo mounted && exec sleep 600",
                "sh",
                size,
            ])
            .arg(mount_point)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run unshare (util-linux): {error}"));
        let mut line = String::new();
        let _ = BufReader::new(holder.stdout.take().unwrap()).read_line(&mut line);
        if line.trim() != "mounted" {
            let _ = holder.kill();
            let mut stderr = String::new();
            let _ = holder.stderr.take().unwrap().read_to_string(&mut stderr);
            let _ = holder.wait();
            panic!(
                "cannot mount a {size} tmpfs on {} in a private mount namespace; this test needs \
                 root (unshare --mount) or unprivileged user namespaces (unshare -rm): {stderr}",
                mount_point.display()
            );
        }
        Self {
            holder,
            mount_point: mount_point.to_path_buf(),
            unprivileged,
        }
    }

    /// `kinema` run inside the namespace, with settings from the test alone.
    fn kinema(&self) -> Command {
        let mut command = Command::new("nsenter");
        command.arg(format!("--target={}", self.holder.id()));
        if self.unprivileged {
            command.args(["--user", "--preserve-credentials"]);
        }
        command.args(["--mount", "--"]);
        command.arg(env!("CARGO_BIN_EXE_kinema"));
        for (name, _) in std::env::vars() {
            if name.starts_with("KINEMA_") {
                command.env_remove(name);
            }
        }
        command.env("KINEMA_LOG", "warn").env("NO_COLOR", "1");
        command
    }

    /// Where the test sees `relative` (a path under the mount point).
    fn path(&self, relative: &str) -> PathBuf {
        let inside = self.mount_point.join(relative);
        Path::new(&format!("/proc/{}/root", self.holder.id()))
            .join(inside.strip_prefix("/").unwrap())
    }

    fn page_size(&self) -> u64 {
        rustix::fs::statvfs(self.path("")).unwrap().f_frsize
    }

    fn available(&self) -> u64 {
        let stats = rustix::fs::statvfs(self.path("")).unwrap();
        stats.f_bavail * stats.f_frsize
    }

    /// Takes all but `free` bytes of the disk with a file of its own.
    fn fill_leaving(&self, free: u64) {
        let filler = self.path("filler");
        let _ = std::fs::remove_file(&filler);
        let available = self.available();
        assert!(
            free <= available,
            "only {available} bytes free, {free} wanted"
        );
        let size = usize::try_from(available - free).unwrap();
        std::fs::write(&filler, vec![0x55u8; size]).unwrap();
        assert_eq!(self.available(), free);
    }

    fn unfill(&self) {
        std::fs::remove_file(self.path("filler")).unwrap();
    }

    /// Waits (with a deadline) until the disk has `free` bytes available
    /// again: space taken by a file that was written when it was removed is
    /// given back when its last descriptor closes.
    fn assert_space_given_back(&self, free: u64, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.available() != free {
            assert!(
                Instant::now() < deadline,
                "{what}: {} bytes free, {free} before: space was not given back",
                self.available()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn entries(&self, relative: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path(relative))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// A 4 s 320x180 clip; `crf` sets its size (the ingest re-encodes it).
fn clip(dir: &Path, crf: &str) -> PathBuf {
    let path = dir.join(format!("clip-crf{crf}.mp4"));
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=s=320x180:r=25:d=4"])
        .args(["-f", "lavfi", "-i", "sine=d=4"])
        .args(["-c:v", "libx264", "-preset", "veryfast", "-crf", crf])
        .args(["-c:a", "aac", "-b:a", "32k", "-shortest"])
        .arg(&path)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "making the test clip failed");
    path
}

fn ingest(disk: &SmallDisk, source: &Path, id: &str) -> Output {
    disk.kinema()
        .args([
            "ingest",
            "--quiet",
            "--preset",
            "ultrafast",
            "--threads",
            "1",
        ])
        .args(["--id", id, "--library"])
        .arg(&disk.mount_point)
        .arg(source)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The error says the disk is full, with what was being written and where,
/// and says nothing of its symptoms (encoder log lines, malformed files).
fn assert_names_the_full_disk(message: &str, library: &Path) {
    assert!(message.contains("No space left on device"), "{message}");
    assert!(message.contains("disk full"), "{message}");
    assert!(message.contains(" while writing "), "{message}");
    assert!(
        message.contains(&*library.to_string_lossy()),
        "{message} does not say where"
    );
    for symptom in [
        "malformed",
        "unexpected encoder output",
        "ffmpeg failed",
        "[error]",
        "[info]",
    ] {
        assert!(!message.contains(symptom), "{symptom:?} in {message}");
    }
}

#[test]
fn ingest_onto_a_disk_that_fills_up_fails_cleanly_at_every_stage() {
    let work = tempfile::tempdir().unwrap();
    let source = clip(work.path(), "23");
    let library = work.path().join("library");
    let disk = SmallDisk::mount(&library, "2m");

    // What one ingest of the clip takes on this disk (directories take
    // no space on a tmpfs). Every id has the same length, so every
    // manifest has the same size.
    let empty = disk.available();
    let ok = ingest(&disk, &source, "baseline");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let needed = empty - disk.available();
    std::fs::remove_dir_all(disk.path("videos/baseline")).unwrap();
    assert_eq!(disk.available(), empty);
    let page = disk.page_size();
    assert!(needed > 16 * page, "the ingest took only {needed} bytes");

    // The disk fills during encoding (ffmpeg says so, or cuts its segments
    // short without a word), packaging, writing the playlists, or
    // publishing the manifest: free space spread from none to one page
    // short of what the ingest needs.
    let round_down = |bytes: u64| bytes / page * page;
    let frees = [
        0,
        round_down(needed / 3),
        round_down(needed * 2 / 3),
        needed - 3 * page,
        needed - 2 * page,
        needed - page,
    ];
    for (round, free) in frees.into_iter().enumerate() {
        disk.fill_leaving(free);
        let id = format!("full-{round:03}");
        let run = ingest(&disk, &source, &id);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(
            !run.status.success(),
            "{free} bytes free: the ingest succeeded"
        );
        let last = stderr.trim().lines().last().unwrap_or_default();
        assert!(last.starts_with("kinema: ingest of "), "{stderr}");
        assert_names_the_full_disk(&stderr, &library);
        // The ends of the spread are sure to hit the encoder and the
        // publish (manifest.json is the last file written).
        if free == 0 {
            assert!(last.contains("writing the encoded video"), "{last}");
        }
        if free == needed - page {
            assert!(last.contains("writing the video's manifest"), "{last}");
        }
        assert!(
            !disk.path(&format!("videos/{id}")).exists(),
            "{free} bytes free: {id} was published"
        );
        assert!(disk.entries("videos").is_empty());
        assert_eq!(
            disk.entries("ingest/staging"),
            Vec::<String>::new(),
            "{free} bytes free: staging debris left"
        );
        disk.assert_space_given_back(free, &format!("{free} bytes free"));
        disk.unfill();
    }

    // Nothing leaked: with room again, the same library ingests.
    let ok = ingest(&disk, &source, "after-01");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(disk.path("videos/after-01/manifest.json").is_file());
    assert_eq!(disk.available(), empty - needed);
}

/// `kinema serve` on a small disk, with a write-scope admin token.
struct Server {
    child: Child,
    address: SocketAddr,
    secret: String,
    _files: tempfile::TempDir,
}

impl Server {
    fn start(disk: &SmallDisk) -> Self {
        let files = tempfile::tempdir().unwrap();
        let mut ring = KeyRing::empty();
        ring.add_new_key(SystemTime::now());
        ring.save(&files.path().join("keys.toml")).unwrap();
        let mut tokens = AdminTokens::empty();
        let secret = tokens
            .issue("uploader", Scope::Write, SystemTime::now())
            .unwrap();
        tokens.save(&files.path().join("tokens.toml")).unwrap();
        let mut child = disk
            .kinema()
            .env("KINEMA_LOG", "info")
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--web-root",
                "/nonexistent",
            ])
            .arg("--library")
            .arg(&disk.mount_point)
            .arg("--keys")
            .arg(files.path().join("keys.toml"))
            .arg("--tokens")
            .arg(files.path().join("tokens.toml"))
            .args(["--access-log", "false"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (lines_sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if lines_sender.send(line).is_err() {
                    // Keep draining, so the server never blocks on its log.
                    continue;
                }
            }
        });
        let address = loop {
            let Ok(line) = lines.recv_timeout(Duration::from_secs(30)) else {
                let _ = child.kill();
                let _ = child.wait();
                panic!("kinema serve did not log its address within 30 s");
            };
            if line.contains("origin serving")
                && let Some(rest) = line.split("address=").nth(1)
            {
                let address: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                    .collect();
                break address.parse().unwrap();
            }
        };
        Self {
            child,
            address,
            secret,
            _files: files,
        }
    }

    /// One request on its own connection. The body is written by another
    /// thread while the response is read: a server that refuses an upload
    /// answers before it has read it all.
    fn call(&self, method: &str, target: &str, body: Vec<u8>) -> (u16, Value) {
        let stream = TcpStream::connect(self.address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut writer = stream.try_clone().unwrap();
        let head = format!(
            "{method} {target} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {}\r\n\
             Content-Type: video/mp4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.secret,
            body.len()
        );
        let sender = std::thread::spawn(move || {
            // Fails once the server has answered and closed; that is fine.
            let _ = writer
                .write_all(head.as_bytes())
                .and_then(|()| writer.write_all(&body));
        });
        let mut reader = BufReader::new(stream);
        let mut status_line = String::new();
        reader.read_line(&mut status_line).unwrap();
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).unwrap();
        drop(reader);
        let _ = sender.join();
        let value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()))
        };
        (status, value)
    }

    /// Polls a job until it leaves queued/running.
    fn finished_job(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (status, body) = self.call("GET", &format!("/api/jobs/{id}"), vec![]);
            assert_eq!(status, 200, "{body}");
            let state = body["job"]["state"].as_str().unwrap();
            if state != "queued" && state != "running" {
                return body["job"].clone();
            }
            assert!(Instant::now() < deadline, "job stuck: {body}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn upload_into_a_full_library_is_refused_with_507_and_leaves_nothing() {
    let work = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(&work.path().join("library"), "1m");
    let server = Server::start(&disk);
    let page = disk.page_size();

    // The upload fills the disk while it streams in.
    let free = 32 * page;
    disk.fill_leaving(free);
    let (status, body) = server.call("POST", "/api/videos?id=big", vec![7u8; 512 * 1024]);
    assert_eq!(status, 507, "{body}");
    let message = body["error"].as_str().unwrap();
    assert!(message.contains("No space left on device"), "{message}");
    assert!(
        message.contains("the partial upload was removed"),
        "{message}"
    );
    assert_eq!(disk.entries("ingest/uploads"), Vec::<String>::new());
    disk.assert_space_given_back(free, "after the refused upload");

    // The upload fits to the byte, its job record does not: refused too,
    // with no job left behind (one would hold the video id forever).
    let upload = 4 * page;
    disk.fill_leaving(upload);
    let (status, body) = server.call(
        "POST",
        "/api/videos?id=exact",
        vec![7u8; usize::try_from(upload).unwrap()],
    );
    assert_eq!(status, 507, "{body}");
    let message = body["error"].as_str().unwrap();
    assert!(
        message.contains("No space left on device") && message.contains("ingest/jobs"),
        "{message}"
    );
    assert_eq!(disk.entries("ingest/uploads"), Vec::<String>::new());
    assert_eq!(disk.entries("ingest/jobs"), Vec::<String>::new());
    disk.assert_space_given_back(upload, "after the refused job");

    // The server goes on serving.
    let (status, body) = server.call("GET", "/api/jobs", vec![]);
    assert_eq!(
        (status, &body["jobs"]),
        (200, &Value::Array(vec![])),
        "{body}"
    );
    let (status, _) = server.call("GET", "/healthz", vec![]);
    assert_eq!(status, 200);
    disk.unfill();
    let (status, body) = server.call("POST", "/api/videos?id=exact", b"not a video".to_vec());
    assert_eq!(status, 202, "the id must be free again: {body}");
}

#[test]
fn a_job_that_fills_the_disk_fails_with_the_reason_and_publishes_nothing() {
    let work = tempfile::tempdir().unwrap();
    let source = std::fs::read(clip(work.path(), "40")).unwrap();
    let library = work.path().join("library");
    let disk = SmallDisk::mount(&library, "1m");
    let server = Server::start(&disk);

    // Room for the upload, its job record and log, not for the video.
    let page = disk.page_size();
    let free = (source.len() as u64).div_ceil(page) * page + 24 * page;
    disk.fill_leaving(free);
    let (status, body) = server.call("POST", "/api/videos?id=filler&title=Fills", source);
    assert_eq!(status, 202, "{body}");
    let id = body["job"]["id"].as_str().unwrap().to_string();
    let job = server.finished_job(&id);
    assert_eq!(job["state"], "failed", "{job}");
    let error = job["error"].as_str().unwrap();
    // A job's error names the place, never the server's path to it.
    assert_names_the_full_disk(error, Path::new("<staging>"));
    assert!(!error.contains(&*library.to_string_lossy()), "{error}");
    let (status, body) = server.call("GET", "/api/videos", vec![]);
    assert_eq!(
        (status, &body["videos"]),
        (200, &Value::Array(vec![])),
        "{body}"
    );
    assert!(disk.entries("videos").is_empty());
    assert_eq!(
        disk.entries("ingest/staging"),
        Vec::<String>::new(),
        "staging debris left"
    );

    // The upload was kept (the source is fine), so once there is room the
    // job succeeds on retry.
    disk.unfill();
    let (status, body) = server.call("POST", &format!("/api/jobs/{id}/retry"), vec![]);
    assert_eq!(status, 202, "{body}");
    let job = server.finished_job(&id);
    assert_eq!(job["state"], "done", "{job}");
    let (status, body) = server.call("GET", "/api/videos/filler", vec![]);
    assert_eq!(
        (status, &body["title"]),
        (200, &Value::from("Fills")),
        "{body}"
    );
}
