//! Runs one ffmpeg child under supervision.
//!
//! Progress is what the child has written ([`SegmentWatch`], polled every
//! second) and, once ffmpeg prints them, its `-progress pipe:1`
//! blocks (key=value on stdout), whichever is further; both are passed on
//! as [`EncoderProgress`]. Its stderr is
//! kept — the last lines in memory for the error message and job record, all
//! of it in a log file when one is given. The child is killed when the job
//! is cancelled, when its output time stops advancing for the stall timeout,
//! and when this process dies (`PR_SET_PDEATHSIG`), so a crashed ingest never
//! leaves an orphan encoder writing into staging. A child that says it ran
//! out of disk space fails as [`MediaError::StorageFull`], whatever its exit
//! status: some of ffmpeg's muxers (DASH) report a failed write and still
//! exit 0 with their files cut short.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

use crate::MediaError;
use crate::written::SegmentWatch;

/// How often the child's output is looked at (more often when the stall
/// timeout is short, so a poll never comes too late to count).
const WATCH_PERIOD: Duration = Duration::from_secs(1);

/// How many lines of ffmpeg's stderr are kept for error messages.
const LOG_TAIL_LINES: usize = 40;

/// What ffmpeg prints (strerror(ENOSPC); it never sets a locale, so always
/// in English) when a write fails because the disk is full.
const NO_SPACE_MESSAGE: &str = "No space left on device";

/// What ffmpeg prints when it cannot decode its input: a child that exits
/// with one of these before writing any output failed on its source.
const DECODE_FAILURE_MESSAGES: [&str; 5] = [
    "Error while decoding stream",
    "Cannot determine format of input stream",
    "Invalid data found when processing input",
    "Could not find codec parameters",
    "Error while opening decoder",
];

/// ffmpeg's line without its `[level]` and `[component @ 0x…]` prefixes.
fn without_prefixes(line: &str) -> &str {
    let mut rest = line.trim();
    while let Some(after) = rest.strip_prefix('[') {
        match after.split_once(']') {
            Some((_, tail)) => rest = tail.trim_start(),
            None => break,
        }
    }
    rest
}

/// How far the child has got: one `progress=` block of ffmpeg's
/// `-progress` output, or a reading of its written segments.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct EncoderProgress {
    /// Output time reached, seconds.
    pub out_time_seconds: f64,
    /// Encoding speed relative to real time (`speed=2.5x`).
    pub speed: Option<f64>,
    /// True on the last block (`progress=end`).
    pub finished: bool,
}

/// Accumulates `key=value` lines into blocks.
#[derive(Debug, Default)]
pub struct ProgressParser {
    current: EncoderProgress,
}

impl ProgressParser {
    /// Feeds one line; returns a block when the line ends one.
    pub fn line(&mut self, line: &str) -> Option<EncoderProgress> {
        let (key, value) = line.trim().split_once('=')?;
        match key {
            // out_time_us is microseconds; out_time_ms is, despite its name,
            // also microseconds in ffmpeg 5.1, so only out_time_us is read.
            "out_time_us" => {
                if let Ok(micros) = value.parse::<i64>() {
                    self.current.out_time_seconds = micros.max(0) as f64 / 1e6;
                }
            }
            "speed" => {
                self.current.speed = value
                    .trim_end_matches('x')
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|speed| speed.is_finite() && *speed > 0.0);
            }
            "progress" => {
                self.current.finished = value == "end";
                return Some(self.current);
            }
            _ => {}
        }
        None
    }
}

/// How to run and watch the child.
#[derive(Debug, Clone)]
pub struct Supervision {
    /// Stop the child when for this long it has written no new bytes and
    /// its output time has not advanced.
    pub stall_timeout: Duration,
    /// Where to append ffmpeg's whole stderr, if anywhere.
    pub log_file: Option<PathBuf>,
    /// Where the child writes its output: named in the error when it runs
    /// out of disk space there.
    pub output_dir: PathBuf,
}

/// The error for a failed spawn: a missing program gets its own message.
pub(crate) fn spawn_error(program: &Path, error: std::io::Error) -> MediaError {
    if error.kind() == std::io::ErrorKind::NotFound {
        MediaError::ToolMissing {
            program: program.display().to_string(),
        }
    } else {
        MediaError::io(program, error)
    }
}

/// Checks that a program can be started (`PROGRAM -version`), so a missing
/// ffmpeg is reported when ingest starts, not minutes into a job.
pub async fn check_tool(program: &Path) -> Result<(), MediaError> {
    let status = tokio::process::Command::new(program)
        .arg("-version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .status()
        .await
        .map_err(|error| spawn_error(program, error))?;
    if status.success() {
        Ok(())
    } else {
        Err(MediaError::ToolMissing {
            program: format!(
                "{} (it exists but `-version` failed: {status})",
                program.display()
            ),
        })
    }
}

pub(crate) fn set_parent_death_signal(command: &mut tokio::process::Command) {
    #[allow(
        unsafe_code,
        reason = "prctl(PR_SET_PDEATHSIG) in the forked child is the only way to have the kernel \
                  kill ffmpeg when kinema dies by SIGKILL; it is async-signal-safe"
    )]
    // SAFETY: the closure runs in the child between fork and exec and only
    // calls async-signal-safe functions (prctl, getppid, kill on ourselves).
    unsafe {
        let parent = std::process::id() as libc::pid_t;
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// Runs `program args`, reporting progress to `on_progress`, until it exits,
/// stalls, or `cancel` fires. `watch`, when given, reads progress from the
/// segments the child writes.
pub async fn run(
    program: &Path,
    args: &[String],
    supervision: &Supervision,
    watch: Option<SegmentWatch>,
    cancel: &CancellationToken,
    mut on_progress: impl FnMut(EncoderProgress),
) -> Result<(), MediaError> {
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    set_parent_death_signal(&mut command);
    tracing::debug!(program = %program.display(), args = ?args, "starting encoder");
    let mut child = command
        .spawn()
        .map_err(|error| spawn_error(program, error))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");

    let log_file = supervision.log_file.clone();
    let stderr_task = tokio::spawn(async move {
        let mut tail = VecDeque::with_capacity(LOG_TAIL_LINES);
        // Scanned on every line, not in the tail: x264's summary can push
        // the write error out of the last lines.
        let mut out_of_space = false;
        let mut decode_failure = None;
        let mut log = match log_file {
            Some(path) => tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .await
                .ok(),
            None => None,
        };
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            out_of_space |= line.contains(NO_SPACE_MESSAGE);
            if decode_failure.is_none()
                && DECODE_FAILURE_MESSAGES
                    .iter()
                    .any(|message| line.contains(message))
            {
                decode_failure = Some(without_prefixes(&line).to_string());
            }
            if let Some(log) = log.as_mut() {
                // A log that cannot be written must not fail the encode.
                let _ = log.write_all(format!("{line}\n").as_bytes()).await;
            }
            if tail.len() == LOG_TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
        if let Some(log) = log.as_mut() {
            let _ = log.flush().await;
        }
        StderrSummary {
            tail: tail.into_iter().collect::<Vec<_>>().join("\n"),
            out_of_space,
            decode_failure,
        }
    });

    let mut parser = ProgressParser::default();
    let mut progress_lines = BufReader::new(stdout).lines();
    // The furthest output time either source reported, and the bytes
    // written: the child is stalled only while neither moves.
    let mut reported = EncoderProgress::default();
    let mut written_bytes = 0u64;
    let mut stalled_since = tokio::time::Instant::now();
    let mut stdout_open = true;
    let mut watch = watch;
    let watch_period = WATCH_PERIOD
        .min(supervision.stall_timeout / 4)
        .max(Duration::from_millis(10));
    let mut watch_timer = tokio::time::interval(watch_period);
    watch_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let outcome = loop {
        let stall_deadline = stalled_since + supervision.stall_timeout;
        tokio::select! {
            () = cancel.cancelled() => break Outcome::Cancelled,
            () = tokio::time::sleep_until(stall_deadline) => break Outcome::Stalled,
            line = progress_lines.next_line(), if stdout_open => match line {
                Ok(Some(line)) => {
                    if let Some(block) = parser.line(&line) {
                        if block.out_time_seconds > reported.out_time_seconds {
                            reported.out_time_seconds = block.out_time_seconds;
                            stalled_since = tokio::time::Instant::now();
                        }
                        reported.speed = block.speed;
                        reported.finished = block.finished;
                        on_progress(reported);
                    }
                }
                _ => stdout_open = false,
            },
            _ = watch_timer.tick(), if watch.is_some() => {
                let Some(mut current) = watch.take() else { continue };
                let reading = tokio::task::spawn_blocking(move || {
                    let written = current.poll();
                    (current, written)
                })
                .await;
                // A panicked poll is a bug; progress then comes from
                // ffmpeg's report alone.
                let Ok((current, written)) = reading else { continue };
                watch = Some(current);
                if written.bytes > written_bytes {
                    written_bytes = written.bytes;
                    stalled_since = tokio::time::Instant::now();
                }
                if written.media_seconds > reported.out_time_seconds {
                    reported.out_time_seconds = written.media_seconds;
                    // ffmpeg's figure, if any, is for an older time.
                    reported.speed = None;
                    on_progress(reported);
                }
            }
            status = child.wait() => break Outcome::Exited(status),
        }
    };
    let status = match outcome {
        Outcome::Exited(status) => Some(status.map_err(|error| MediaError::io(program, error))?),
        Outcome::Cancelled | Outcome::Stalled => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            None
        }
    };
    let StderrSummary {
        tail: log_tail,
        out_of_space,
        decode_failure,
    } = stderr_task.await.unwrap_or_default();
    match (status, outcome_was_cancel(cancel)) {
        (None, true) => Err(MediaError::Cancelled),
        _ if out_of_space => {
            tracing::debug!(%log_tail, "the encoder ran out of disk space");
            Err(MediaError::StorageFull {
                writing: format!("the encoded video ({})", program.display()),
                path: supervision.output_dir.clone(),
            })
        }
        (Some(status), _) if status.success() => Ok(()),
        (Some(_), _) if written_bytes == 0 && decode_failure.is_some() => {
            tracing::debug!(%log_tail, "the encoder could not decode its source");
            Err(MediaError::Undecodable {
                detail: decode_failure.unwrap_or_default(),
            })
        }
        (Some(status), _) => Err(MediaError::Transcode {
            status: status.to_string(),
            log_tail,
        }),
        (None, false) => Err(MediaError::Stalled {
            seconds: supervision.stall_timeout.as_secs(),
            log_tail,
        }),
    }
}

/// What is kept of the child's stderr.
#[derive(Debug, Default)]
struct StderrSummary {
    /// The last [`LOG_TAIL_LINES`] lines.
    tail: String,
    /// Whether any line reported a write that failed for lack of space.
    out_of_space: bool,
    /// The first line that said the input could not be decoded.
    decode_failure: Option<String>,
}

enum Outcome {
    Exited(std::io::Result<std::process::ExitStatus>),
    Cancelled,
    Stalled,
}

/// A child stopped by us was stopped for cancellation exactly when the
/// token fired; otherwise it was the stall timer.
fn outcome_was_cancel(cancel: &CancellationToken) -> bool {
    cancel.is_cancelled()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_blocks_are_parsed() {
        let mut parser = ProgressParser::default();
        let text = "frame=50\nout_time_us=2000000\nout_time_ms=2000000\nspeed=3.5x\nprogress=continue\n\
                    out_time_us=4000000\nspeed=N/A\nprogress=end\n";
        let blocks: Vec<EncoderProgress> =
            text.lines().filter_map(|line| parser.line(line)).collect();
        assert_eq!(
            blocks,
            vec![
                EncoderProgress {
                    out_time_seconds: 2.0,
                    speed: Some(3.5),
                    finished: false
                },
                EncoderProgress {
                    out_time_seconds: 4.0,
                    speed: None,
                    finished: true
                }
            ]
        );
        // ffmpeg prints a negative time before the first packet.
        assert_eq!(parser.line("out_time_us=-9223372036854775807"), None);
        assert_eq!(
            parser.line("progress=continue").unwrap().out_time_seconds,
            0.0
        );
    }

    #[tokio::test]
    async fn missing_program_is_a_clear_error() {
        let error = check_tool(Path::new("kinema-no-such-ffmpeg"))
            .await
            .unwrap_err();
        assert!(matches!(error, MediaError::ToolMissing { .. }), "{error}");
        assert!(error.to_string().contains("not found on PATH"));
    }

    /// How `sh -c script`, supervised with `stall` as its stall timeout,
    /// fails.
    async fn failure_of_sh(script: &str, stall: Duration) -> MediaError {
        let args = vec!["-c".to_string(), script.to_string()];
        run(
            Path::new("sh"),
            &args,
            &supervision(stall),
            None,
            &CancellationToken::new(),
            |_| {},
        )
        .await
        .unwrap_err()
    }

    fn supervision(stall: Duration) -> Supervision {
        Supervision {
            stall_timeout: stall,
            log_file: None,
            output_dir: PathBuf::from("/library/staging/ingest-1-x"),
        }
    }

    #[tokio::test]
    async fn failure_shows_the_log_tail() {
        let error = failure_of_sh(
            "echo first >&2; echo 'the reason' >&2; exit 3",
            Duration::from_secs(60),
        )
        .await;
        let text = error.to_string();
        assert!(
            text.contains("exit status: 3") && text.contains("the reason"),
            "{text}"
        );
    }

    /// ffmpeg's DASH muxer logs a failed segment write and still exits 0,
    /// leaving the segment cut short; its image muxer exits 1. Either way
    /// the error is the full disk, not the exit status or the log tail.
    #[tokio::test]
    async fn a_child_out_of_disk_space_fails_as_storage_full_whatever_its_status() {
        for exit in ["exit 0", "exit 1"] {
            let script = format!(
                "echo '[error] av_interleaved_write_frame(): No space left on device' >&2; \
                 for i in $(seq 50); do echo \"[info] summary line $i\" >&2; done; {exit}"
            );
            let error = failure_of_sh(&script, Duration::from_secs(60)).await;
            assert!(error.is_storage_full(), "{exit}: {error}");
            assert_eq!(
                error.to_string(),
                "disk full (No space left on device) while writing the encoded video (sh) to \
                 /library/staging/ingest-1-x; free space on the library's disk (or move the \
                 library to a larger one) and try again"
            );
        }
    }

    #[tokio::test]
    async fn a_child_that_cannot_decode_its_input_fails_as_undecodable() {
        let error = failure_of_sh(
            "echo '[h264 @ 0x55a0] [error] Invalid NAL unit size (985481411 > 8327).' >&2; \
             echo '[error] Error while decoding stream #0:0: Invalid data found when processing input' >&2; \
             echo '[info] Conversion failed!' >&2; exit 69",
            Duration::from_secs(60),
        )
        .await;
        assert!(error.is_bad_source(), "{error}");
        assert_eq!(
            error.to_string(),
            "source cannot be decoded: Error while decoding stream #0:0: Invalid data found when \
             processing input; the file may be damaged, or use a codec this server's ffmpeg \
             cannot decode"
        );
    }

    #[tokio::test]
    async fn a_silent_child_is_stopped_as_stalled() {
        let error = failure_of_sh(
            "echo out_time_us=1; echo progress=continue; exec sleep 600",
            Duration::from_millis(300),
        )
        .await;
        assert!(matches!(error, MediaError::Stalled { .. }), "{error}");
    }

    /// The regression: ffmpeg printed no progress block during a whole
    /// encode (its sprite output starts only at the end), and a healthy
    /// encode longer than the stall timeout was killed as stalled.
    #[tokio::test]
    async fn a_child_writing_segments_without_reporting_is_not_stalled() {
        let dir = tempfile::tempdir().unwrap();
        let stream = dir.path().join("0");
        std::fs::create_dir(&stream).unwrap();
        // Fifteen segments 0.2 s apart: 3 s in all, twice the stall timeout.
        let script = format!(
            "for n in $(seq 15); do sleep 0.2; echo data > {0}/$n.m4s.tmp; mv {0}/$n.m4s.tmp {0}/$n.m4s; done",
            stream.display()
        );
        let args = vec!["-c".to_string(), script];
        let mut seen = Vec::new();
        run(
            Path::new("sh"),
            &args,
            &supervision(Duration::from_millis(1500)),
            Some(SegmentWatch::new(vec![stream], 4.0)),
            &CancellationToken::new(),
            |progress| seen.push(progress.out_time_seconds),
        )
        .await
        .unwrap();
        assert!(seen.len() >= 2, "{seen:?}");
        assert!(seen.windows(2).all(|pair| pair[0] < pair[1]), "{seen:?}");
        assert!(
            seen.iter().all(|&seconds| seconds > 0.0 && seconds <= 60.0),
            "{seen:?}"
        );
    }

    #[tokio::test]
    async fn cancel_kills_the_child() {
        let cancel = CancellationToken::new();
        let args: Vec<String> = ["-c", "echo progress=continue; exec sleep 600"]
            .map(String::from)
            .to_vec();
        let trigger = cancel.clone();
        let error = run(
            Path::new("sh"),
            &args,
            &supervision(Duration::from_secs(600)),
            None,
            &cancel,
            move |_| trigger.cancel(),
        )
        .await
        .unwrap_err();
        assert!(matches!(error, MediaError::Cancelled), "{error}");
    }
}
