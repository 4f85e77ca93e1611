//! Settings of a bench run and of a capacity search, as the binary resolves
//! them from flags, `KINEMA_*` variables and the `[bench]` / `[capacity]`
//! sections of the config file.
//!
//! Deserialising checks types and names; [`BenchConfig::validate`] checks
//! what serde cannot (a positive speed, a parseable http URL), so a bad
//! value is refused before any viewer starts.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::BenchError;
use crate::abr::AbrKind;
pub use kinema_core::Bitrate;

use crate::link::LinkSpec;

fn one_viewer() -> u32 {
    1
}
fn two_minutes() -> Duration {
    Duration::from_secs(120)
}
fn thirty_seconds() -> Duration {
    Duration::from_secs(30)
}
fn five_seconds() -> Duration {
    Duration::from_secs(5)
}
fn ten_seconds() -> Duration {
    Duration::from_secs(10)
}
fn real_time() -> f64 {
    1.0
}
fn three() -> u32 {
    3
}
fn seed() -> u64 {
    1
}
fn yes() -> bool {
    true
}
fn one_thread() -> usize {
    1
}

/// `kinema bench URL ...`: N viewers playing one video.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchConfig {
    /// The HLS multivariant (or media) playlist or DASH MPD to play.
    pub url: String,
    #[serde(default = "one_viewer")]
    pub viewers: u32,
    /// Viewers start evenly spread over this time.
    #[serde(default, with = "humantime_serde")]
    pub ramp: Duration,
    /// Wall-clock length of the run, ramp included.
    #[serde(default = "two_minutes", with = "humantime_serde")]
    pub duration: Duration,
    /// Each viewer's downlink: `unlimited`, `3mbit`, `0.3mbit..20mbit`,
    /// `0.5mbit:30%,3mbit:70%`.
    #[serde(default = "unlimited")]
    pub link: LinkSpec,
    /// Added before every request (one-way delay of the viewer's link).
    #[serde(default, with = "humantime_serde")]
    pub latency: Duration,
    #[serde(default)]
    pub abr: AbrKind,
    /// Pins every viewer to the rung closest to this bit rate (no ABR).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bitrate: Option<Bitrate>,
    #[serde(default = "thirty_seconds", with = "humantime_serde")]
    pub buffer_target: Duration,
    /// Viewer time runs this many times faster than the wall clock: links
    /// carry `speed` times their rate and play-out is `speed` times
    /// faster, so each viewer sees what it would in real time while the
    /// server carries `speed` times the load.
    #[serde(default = "real_time")]
    pub speed: f64,
    /// Fetch segments back to back without waiting for buffer room.
    #[serde(default)]
    pub saturate: bool,
    /// Longest wait for a response's headers or next body chunk.
    #[serde(default = "ten_seconds", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Retries of a failed request (server errors, timeouts, broken
    /// connections) before the segment counts as failed.
    #[serde(default = "three")]
    pub retries: u32,
    /// Seed of the link-rate draws, so runs are repeatable.
    #[serde(default = "seed")]
    pub seed: u64,
    /// Permit hosts other than loopback.
    #[serde(default)]
    pub allow_remote: bool,
    /// Print a progress line on stderr every second.
    #[serde(default = "yes")]
    pub progress: bool,
    /// Runtime worker threads (1: a single-threaded runtime).
    #[serde(default = "one_thread")]
    pub threads: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<PathBuf>,
    /// Catalogue mode: this many videos, `{video}` in the URL standing for a
    /// viewer's video (1 to this), drawn by popularity (`zipf`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalogue: Option<u32>,
    /// The exponent α of the catalogue's Zipf popularity, P(n) ∝ 1/n^α.
    #[serde(default = "zipf_alpha")]
    pub zipf: f64,
}

fn zipf_alpha() -> f64 {
    0.8
}

fn unlimited() -> LinkSpec {
    LinkSpec::Unlimited
}

impl BenchConfig {
    /// A config with every default, for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            viewers: one_viewer(),
            ramp: Duration::ZERO,
            duration: two_minutes(),
            link: unlimited(),
            latency: Duration::ZERO,
            abr: AbrKind::default(),
            bitrate: None,
            buffer_target: thirty_seconds(),
            speed: real_time(),
            saturate: false,
            request_timeout: ten_seconds(),
            retries: three(),
            seed: seed(),
            allow_remote: false,
            progress: true,
            threads: one_thread(),
            json: None,
            report: None,
            catalogue: None,
            zipf: zipf_alpha(),
        }
    }

    /// Checks what the types cannot; returns the parsed URL.
    pub fn validate(&self) -> Result<Url, BenchError> {
        let invalid = |key: &str, detail: String| BenchError::Config {
            key: key.to_string(),
            detail,
        };
        let placeholder = crate::catalogue::PLACEHOLDER;
        match self.catalogue {
            Some(videos) if !(1..=crate::catalogue::MAX_VIDEOS).contains(&videos) => {
                return Err(invalid(
                    "catalogue",
                    format!(
                        "{videos} must be from 1 to {}",
                        crate::catalogue::MAX_VIDEOS
                    ),
                ));
            }
            Some(_) if !self.url.contains(placeholder) => {
                return Err(invalid(
                    "url",
                    format!(
                        "a catalogue needs {placeholder} in the url where the video goes, e.g. http://127.0.0.1:8080/v/video-{placeholder}/master.m3u8"
                    ),
                ));
            }
            None if self.url.contains(placeholder) => {
                return Err(invalid(
                    "url",
                    format!("{placeholder} in the url needs --catalogue N"),
                ));
            }
            _ => {}
        }
        if !(self.zipf.is_finite() && (0.0..=10.0).contains(&self.zipf)) {
            return Err(invalid(
                "zipf",
                format!("{} must be from 0 to 10", self.zipf),
            ));
        }
        // The first video's URL stands for all of them in the checks.
        let first = self.url.replace(placeholder, "1");
        let url = Url::parse(&first)
            .map_err(|e| invalid("url", format!("{:?} is not a valid url: {e}", self.url)))?;
        if url.scheme() != "http" {
            return Err(invalid(
                "url",
                format!("scheme {:?} is not supported; use http://", url.scheme()),
            ));
        }
        if self.viewers == 0 {
            return Err(invalid("viewers", "must be at least 1".into()));
        }
        if !(self.speed.is_finite() && self.speed > 0.0 && self.speed <= 1000.0) {
            return Err(invalid(
                "speed",
                format!("{} must be above 0 and at most 1000", self.speed),
            ));
        }
        if self.duration.is_zero() {
            return Err(invalid("duration", "must be longer than 0s".into()));
        }
        if self.buffer_target < Duration::from_millis(100) {
            return Err(invalid("buffer_target", "must be at least 100ms".into()));
        }
        if self.request_timeout.is_zero() {
            return Err(invalid("request_timeout", "must be longer than 0s".into()));
        }
        if self.threads == 0 {
            return Err(invalid("threads", "must be at least 1".into()));
        }
        Ok(url)
    }
}

fn fifty() -> u32 {
    50
}
fn twenty_thousand() -> u32 {
    20_000
}
fn one_minute() -> Duration {
    Duration::from_secs(60)
}
fn twenty_seconds() -> Duration {
    Duration::from_secs(20)
}
fn five_percent() -> f64 {
    0.05
}

/// `kinema bench capacity URL --bitrate RUNG`: the largest number of paced
/// viewers of one rung a server carries with no stall and p99 segment
/// download time under half a segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacityConfig {
    pub url: String,
    /// The rung every viewer plays.
    pub bitrate: Bitrate,
    /// Viewers in the first trial; doubled while trials pass.
    #[serde(default = "fifty")]
    pub start: u32,
    /// Never try more viewers than this.
    #[serde(default = "twenty_thousand")]
    pub max: u32,
    /// Wall-clock length of each trial, ramp included.
    #[serde(default = "one_minute", with = "humantime_serde")]
    pub trial_duration: Duration,
    #[serde(default = "twenty_seconds", with = "humantime_serde")]
    pub ramp: Duration,
    /// Pause before every trial but the first: a server still working off
    /// a failed trial's viewers would otherwise fail the next one too.
    #[serde(default = "five_seconds", with = "humantime_serde")]
    pub settle: Duration,
    /// Stop bisecting when the bracket is narrower than this fraction.
    #[serde(default = "five_percent")]
    pub precision: f64,
    #[serde(default = "unlimited")]
    pub link: LinkSpec,
    #[serde(default, with = "humantime_serde")]
    pub latency: Duration,
    #[serde(default = "thirty_seconds", with = "humantime_serde")]
    pub buffer_target: Duration,
    #[serde(default = "real_time")]
    pub speed: f64,
    #[serde(default = "ten_seconds", with = "humantime_serde")]
    pub request_timeout: Duration,
    #[serde(default = "three")]
    pub retries: u32,
    #[serde(default = "seed")]
    pub seed: u64,
    #[serde(default)]
    pub allow_remote: bool,
    #[serde(default = "yes")]
    pub progress: bool,
    #[serde(default = "one_thread")]
    pub threads: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<PathBuf>,
    /// Catalogue mode for every trial (see [`BenchConfig::catalogue`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalogue: Option<u32>,
    #[serde(default = "zipf_alpha")]
    pub zipf: f64,
}

impl CapacityConfig {
    /// The bench run of one trial with `viewers` viewers.
    pub fn trial(&self, viewers: u32) -> BenchConfig {
        BenchConfig {
            viewers,
            ramp: self.ramp,
            duration: self.trial_duration,
            link: self.link.clone(),
            latency: self.latency,
            bitrate: Some(self.bitrate),
            buffer_target: self.buffer_target,
            speed: self.speed,
            request_timeout: self.request_timeout,
            retries: self.retries,
            seed: self.seed,
            allow_remote: self.allow_remote,
            progress: self.progress,
            threads: self.threads,
            catalogue: self.catalogue,
            zipf: self.zipf,
            ..BenchConfig::new(self.url.clone())
        }
    }

    pub fn validate(&self) -> Result<(), BenchError> {
        let invalid = |key: &str, detail: String| BenchError::Config {
            key: key.to_string(),
            detail,
        };
        if self.start == 0 || self.start > self.max {
            return Err(invalid(
                "start",
                format!(
                    "{} must be at least 1 and at most max ({})",
                    self.start, self.max
                ),
            ));
        }
        if !(self.precision > 0.0 && self.precision < 1.0) {
            return Err(invalid(
                "precision",
                format!("{} must be between 0 and 1", self.precision),
            ));
        }
        if self.ramp >= self.trial_duration {
            return Err(invalid(
                "ramp",
                "must be shorter than trial_duration, so every trial has a steady phase".into(),
            ));
        }
        self.trial(self.start).validate().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_validation() {
        let config: BenchConfig = serde_json::from_str(
            r#"{"url": "http://127.0.0.1:1/v/a/master.m3u8", "link": "3mbit", "ramp": "5s"}"#,
        )
        .unwrap();
        assert_eq!(config.viewers, 1);
        assert_eq!(config.link, LinkSpec::Fixed(3_000_000));
        assert_eq!(config.ramp, Duration::from_secs(5));
        assert_eq!(config.buffer_target, Duration::from_secs(30));
        assert!(config.validate().is_ok());

        let error = serde_json::from_str::<BenchConfig>(r#"{"url": "x", "viewrs": 3}"#)
            .unwrap_err()
            .to_string();
        assert!(error.contains("viewrs"), "{error}");
        let error = serde_json::from_str::<BenchConfig>(r#"{"url": "x", "link": "fast"}"#)
            .unwrap_err()
            .to_string();
        assert!(error.contains("fast"), "{error}");

        let bad = BenchConfig {
            speed: 0.0,
            ..BenchConfig::new("http://127.0.0.1/")
        };
        assert!(bad.validate().unwrap_err().to_string().contains("speed"));
        let bad = BenchConfig::new("https://127.0.0.1/");
        assert!(bad.validate().unwrap_err().to_string().contains("http://"));
        let bad = BenchConfig::new("not a url");
        assert!(bad.validate().unwrap_err().to_string().contains("url"));
    }

    #[test]
    fn capacity_trials_settle_five_seconds_apart_unless_told() {
        let url = r#""url": "http://127.0.0.1:1/v/a/master.m3u8", "bitrate": "3mbit""#;
        let config: CapacityConfig = serde_json::from_str(&format!("{{{url}}}")).unwrap();
        assert_eq!(config.settle, Duration::from_secs(5));
        let config: CapacityConfig =
            serde_json::from_str(&format!(r#"{{{url}, "settle": "0s"}}"#)).unwrap();
        assert_eq!(config.settle, Duration::ZERO);
    }
}
