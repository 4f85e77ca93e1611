//! One emulated viewer: a player's loop as one sequential async task.
//!
//! The viewer fetches the manifest (an HLS multivariant or media playlist,
//! or a DASH MPD, told apart by content type or by the document) and reads
//! it into a [`Presentation`](crate::presentation::Presentation); then
//! for every segment it waits until its buffer has room (unless
//! saturating), re-plans the rung with the ABR rule, fetches the rung's
//! media playlist (HLS) when it first needs it and the rung's init section
//! when it changes rung or pathway, fetches the segment (and
//! the matching audio segment when the rung has a separate audio track),
//! and books its arrival into the playback model. At the end of the video
//! it loops to the first segment, so a short video keeps a viewer busy for
//! a long run. Nothing below the manifest knows which format it plays.
//!
//! Under content steering the presentation has one ladder per pathway and
//! the viewer plays the current pathway's; `pathways` reloads the steering
//! manifest, switches and fails over, keeping rung and position.
//!
//! The manifest request asks the server to admit a viewing session. An
//! origin at capacity refuses it with `503 Service Unavailable` and
//! `Retry-After`; the viewer counts the refusal (not an error), waits as
//! asked and asks again until admitted or until the run ends, as players
//! do. Its startup time runs from its first request, so the wait is part
//! of it.
//!
//! Playback is arithmetic, not a timer: the play head advances with viewer
//! time from an anchor, and a stall is found when a segment arrives after
//! the play head reached the end of the buffer (its length is the time in
//! between). A viewer therefore sleeps only while it waits for buffer room
//! or for its link, and never wakes just to advance a clock.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::abr::{self, AbrInput, AbrKind, ThroughputEstimator};
use crate::client::{ClientSettings, Router, ViewerClient};
use crate::link::Shaper;
use crate::metrics::{LiveCounters, Percentiles, SegmentRecord, ViewerReport};
use crate::presentation::{Part, PathwaySet, Rendition, SegmentRef, Track, TrackSource};
use crate::steering::SteeringState;

mod manifest;
mod pathways;
mod playback;
mod requests;

use playback::Playback;

/// What every viewer of a run shares (read-only, plus atomic counters).
#[derive(Debug)]
pub struct RunShared {
    pub url: Url,
    pub started: Instant,
    pub speed: f64,
    pub abr: AbrKind,
    pub pinned_bitrate: Option<u64>,
    pub buffer_target_seconds: f64,
    pub saturate: bool,
    pub retries: u32,
    pub allow_remote: bool,
    pub latency: Duration,
    pub request_timeout: Duration,
    pub live: LiveCounters,
    pub cancel: CancellationToken,
}

/// One segment to fetch, with what it needs from its track.
struct Pick {
    base: Url,
    init: Option<Part>,
    segment: SegmentRef,
}

impl Pick {
    /// Segment `position` of `track` (which the caller keeps in range;
    /// both readers refuse empty tracks).
    fn of(track: &Track, position: usize) -> Pick {
        Pick {
            base: track.base.clone(),
            init: track.init.clone(),
            segment: track.segment(position).expect("position is in range"),
        }
    }
}

/// A viewer's run-time state; its report is filled as it goes.
struct Viewer<'a> {
    shared: &'a RunShared,
    client: ViewerClient,
    router: Router,
    report: ViewerReport,
    link: Option<u64>,
    /// When the viewer first requested its playlist.
    epoch: Instant,
    /// When the first of the current run of refused manifest requests was
    /// sent; `None` while not refused.
    refused_since: Option<Instant>,
    playback: Playback,
    estimator: ThroughputEstimator,
    current: Option<usize>,
    /// The ladder, ascending; HLS tracks are loaded on first use.
    rungs: Vec<Rendition>,
    audio: Vec<TrackSource>,
    /// Which rung's (and audio track's) init section was fetched last.
    init_loaded: Option<usize>,
    audio_init_loaded: Option<usize>,
    /// The server (`host:port`) the last request went to: a segment's
    /// record names where it came from.
    last_pathway: String,
    bitrate_media_product: f64,
    media_fetched: f64,
    live_bitrate: u64,
    /// Content steering, when the manifest carries it.
    steering: Option<SteeringState>,
    /// Every pathway's set; the current one's ladder and audio are moved
    /// into `rungs` and `audio` while it plays.
    sets: Vec<PathwaySet>,
    /// When the request that failed the current run of pathway failures
    /// was sent; cleared by the next segment that arrives.
    failover_since: Option<Instant>,
}

/// Bytes per read and the kernel receive buffer of a viewer's connection,
/// for a link of `link` bits per second (`None`: unlimited) at `speed`.
///
/// A shaped link reads chunks of ~100 ms of the link (at least 16 KiB, so
/// thousands of slow viewers cost few system calls; at most 64 KiB, so the
/// shaping stays smooth) and keeps about one second of the link in the
/// kernel: backpressure reaches the server within a second, like an access
/// link's queue, but a server descheduled for a few hundred milliseconds
/// does not show up as a link stall.
///
/// An unlimited link reads 512 KiB at a time into a 512 KiB receive buffer.
/// Both bounds are about one client process standing in for thousands of
/// devices. Left to autotuning, loopback receive buffers grow to megabytes,
/// and a few thousand of them in one kernel reach `net.ipv4.tcp_mem`. The
/// kernel then drops packets, and the retransmission timeouts stall every
/// server alike; each real viewer's device has a kernel of its own. Reads
/// of 64 KiB cost the single client core so much that it, not the server,
/// set the capacity at about 4,000 viewers. The price is client memory:
/// about 600 KiB per downloading viewer.
fn buffer_sizes(link: Option<u64>, speed: f64) -> (usize, u32) {
    const UNLIMITED: usize = 512 * 1024;
    match link {
        Some(bits) => {
            let bytes_per_second = bits as f64 / 8.0 * speed;
            (
                ((bytes_per_second * 0.1) as usize).clamp(16 * 1024, 64 * 1024),
                (bytes_per_second as u32).clamp(128 * 1024, 1024 * 1024),
            )
        }
        None => (UNLIMITED, UNLIMITED as u32),
    }
}

/// Plays until the run is cancelled (deadline or shutdown) or the viewer
/// cannot go on; always returns the viewer's report.
/// `url` is what it plays (the run's, or its catalogue video's, whose rank
/// is `video`).
pub async fn run_viewer(
    shared: Arc<RunShared>,
    index: u32,
    link: Option<u64>,
    url: Url,
    video: Option<u32>,
) -> ViewerReport {
    let shared = &*shared;
    let speed = shared.speed;
    let shaper = link.map(|bits| {
        let wall_bytes_per_second = bits as f64 / 8.0 * speed;
        // A burst of ~20 ms of the link (at least 4 KiB), like the queue
        // of an access link: enough to absorb a read chunk, too little to
        // hide the rate.
        let burst = ((wall_bytes_per_second * 0.02) as u64).max(4096);
        Shaper::new(wall_bytes_per_second, burst)
    });
    let (read_buffer, receive_buffer) = buffer_sizes(link, speed);
    let settings = ClientSettings {
        allow_remote: shared.allow_remote,
        latency: shared.latency.div_f64(speed),
        timeout: shared.request_timeout,
        read_buffer,
        receive_buffer,
    };
    let now = Instant::now();
    let mut viewer = Viewer {
        shared,
        client: ViewerClient::new(settings, shaper),
        router: Router::new(url),
        report: ViewerReport {
            index,
            link_bits_per_second: link,
            video,
            started_at_wall: (now - shared.started).as_secs_f64(),
            ..ViewerReport::default()
        },
        link,
        epoch: now,
        refused_since: None,
        playback: Playback::default(),
        estimator: ThroughputEstimator::default(),
        current: None,
        rungs: Vec::new(),
        audio: Vec::new(),
        init_loaded: None,
        audio_init_loaded: None,
        last_pathway: String::new(),
        bitrate_media_product: 0.0,
        media_fetched: 0.0,
        live_bitrate: 0,
        steering: None,
        sets: Vec::new(),
        failover_since: None,
    };
    shared.live.active_viewers.fetch_add(1, Ordering::Relaxed);
    tokio::select! {
        biased;
        () = shared.cancel.cancelled() => {}
        result = viewer.play() => {
            if let Err(error) = result {
                viewer.report.fatal = Some(error);
            }
        }
    }
    shared.live.active_viewers.fetch_sub(1, Ordering::Relaxed);
    viewer.finish(Instant::now())
}

impl Viewer<'_> {
    fn now(&self) -> f64 {
        self.viewer_seconds(Instant::now())
    }

    /// Wall seconds since the viewer started: the clock of steering's
    /// `TTL` and penalty box, which are the servers' seconds (as
    /// `Retry-After` is) whatever the run's speed.
    fn wall_seconds(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64()
    }

    fn viewer_seconds(&self, instant: Instant) -> f64 {
        instant.saturating_duration_since(self.epoch).as_secs_f64() * self.shared.speed
    }

    fn wall_instant(&self, viewer_seconds: f64) -> Instant {
        self.epoch + Duration::from_secs_f64((viewer_seconds / self.shared.speed).max(0.0))
    }

    async fn play(&mut self) -> Result<(), String> {
        self.load_presentation().await?;
        let ladder: Vec<u64> = self.rungs.iter().map(|rung| rung.bandwidth).collect();
        self.report.sustainable_bitrate = match self.link {
            None => ladder.last().copied().unwrap_or(0),
            Some(link) => ladder
                .iter()
                .copied()
                .filter(|b| *b <= link)
                .max()
                .unwrap_or(0),
        };
        let mut position = 0usize;
        let mut last_segment_seconds = 0.0f64;
        loop {
            // Wait for room for one more segment (a paced player).
            if !self.shared.saturate && self.playback.started {
                let room_at = self
                    .playback
                    .time_at_level(self.shared.buffer_target_seconds - last_segment_seconds);
                if room_at > self.now() {
                    tokio::time::sleep_until(self.wall_instant(room_at)).await;
                }
            }
            self.reload_steering_if_due().await;
            // A pathway's ladder may differ from another's.
            let ladder: Vec<u64> = self.rungs.iter().map(|rung| rung.bandwidth).collect();
            let pinned = self
                .shared
                .pinned_bitrate
                .map(|bits| self.pinned_rung(bits));
            let now = self.now();
            let buffer_seconds = self.playback.level(now);
            let choice = match pinned {
                Some(rung) => rung,
                None => abr::choose(
                    self.shared.abr,
                    &AbrInput {
                        ladder: &ladder,
                        current: self.current,
                        buffer_seconds,
                        buffer_target_seconds: self.shared.buffer_target_seconds,
                        segment_seconds: last_segment_seconds.max(1.0),
                        throughput_bits_per_second: self.estimator.estimate(),
                    },
                ),
            };
            let playlist_requested = Instant::now();
            let choice = match self.ensure_rung_loaded(choice).await {
                Ok(()) => choice,
                // Another pathway serves the same rung at once.
                Err(_) if self.fail_over(playlist_requested) => continue,
                // A rung whose playlist cannot be loaded: stay on the one
                // that works, as players do; with none, give up.
                Err(error) => match self.current {
                    Some(current) if current != choice => current,
                    _ => return Err(error),
                },
            };
            let (video, audio) = {
                let track = self.rungs[choice].media.loaded().expect("loaded above");
                if position >= track.len() {
                    // End of the video: loop to its start.
                    position = 0;
                }
                let video = Pick::of(track, position);
                let audio = self.rungs[choice].audio.map(|index| {
                    let track = self.audio[index].loaded().expect("loaded above");
                    (index, Pick::of(track, position % track.len()))
                });
                (video, audio)
            };

            let requested = Instant::now();
            let requested_at = self.viewer_seconds(requested);
            let buffer_before = self.playback.level(requested_at);
            let mut bytes = 0u64;
            let mut failed = false;
            if self.init_loaded != Some(choice)
                && let Some(init) = &video.init
            {
                match self.fetch_part(&init.uri, &video.base, init.range).await {
                    Ok(fetched) => {
                        bytes += fetched;
                        self.init_loaded = Some(choice);
                    }
                    Err(()) => failed = true,
                }
            }
            if !failed {
                match self
                    .fetch_part(&video.segment.uri, &video.base, video.segment.range)
                    .await
                {
                    Ok(fetched) => bytes += fetched,
                    Err(()) => failed = true,
                }
            }
            if !failed && let Some((track, audio)) = audio {
                if self.audio_init_loaded != Some(track)
                    && let Some(init) = &audio.init
                {
                    match self.fetch_part(&init.uri, &audio.base, init.range).await {
                        Ok(fetched) => {
                            bytes += fetched;
                            self.audio_init_loaded = Some(track);
                        }
                        Err(()) => failed = true,
                    }
                }
                if !failed {
                    match self
                        .fetch_part(&audio.segment.uri, &audio.base, audio.segment.range)
                        .await
                    {
                        Ok(fetched) => bytes += fetched,
                        Err(()) => failed = true,
                    }
                }
            }
            if failed && self.fail_over(requested) {
                // The same segment from the next pathway, now.
                continue;
            }
            position += 1;
            if failed {
                // The player skips what it cannot get; the gap is not
                // buffered, so a stall follows if nothing else arrives.
                self.report.segments_failed += 1;
                continue;
            }

            let arrived = Instant::now();
            let arrived_at = self.viewer_seconds(arrived);
            if let Some(since) = self.failover_since.take() {
                self.report
                    .failover_stall_seconds
                    .push(arrived_at - self.viewer_seconds(since));
            }
            let download_seconds = (arrived_at - requested_at).max(1e-6);
            let media_seconds = video.segment.duration_seconds;
            last_segment_seconds = media_seconds;
            let bitrate = ladder[choice];
            self.estimator
                .sample(media_seconds, bytes as f64 * 8.0 / download_seconds);
            if self.playback.started {
                if let Some(stall) = self.playback.arrive(arrived_at, media_seconds) {
                    self.report.stalls += 1;
                    self.report.stalled_seconds += stall;
                    self.shared.live.stalls.fetch_add(1, Ordering::Relaxed);
                }
            } else {
                self.playback.arrive(arrived_at, media_seconds);
                self.report.startup_seconds = Some(arrived_at);
            }
            if let Some(current) = self.current
                && current != choice
            {
                self.report.switches += 1;
            }
            self.current = Some(choice);
            self.report.segments += 1;
            self.report.highest_bitrate = self.report.highest_bitrate.max(bitrate);
            self.bitrate_media_product += bitrate as f64 * media_seconds;
            self.media_fetched += media_seconds;
            let live = &self.shared.live;
            live.segments.fetch_add(1, Ordering::Relaxed);
            live.selected_bitrate_sum
                .fetch_add(bitrate, Ordering::Relaxed);
            live.selected_bitrate_sum
                .fetch_sub(self.live_bitrate, Ordering::Relaxed);
            self.live_bitrate = bitrate;
            self.report.records.push(SegmentRecord {
                index: (position - 1) as u32,
                bitrate,
                requested_at,
                arrived_at_wall: (arrived - self.shared.started).as_secs_f64(),
                download_seconds,
                media_seconds,
                buffer_before,
                bytes,
                pathway: self.last_pathway.clone(),
            });
        }
    }

    fn finish(mut self, ended: Instant) -> ViewerReport {
        // Still refused when the run ended: refused until then.
        self.end_refusals(ended);
        let now = self.viewer_seconds(ended);
        let report = &mut self.report;
        report.ended_at_wall = (ended - self.shared.started).as_secs_f64();
        report.connections = self.client.connections_opened;
        if let Some((_, length)) = self.playback.stall_at(now) {
            // Waiting for a segment when the run ended: the viewer sat
            // through that stall too.
            report.stalls += 1;
            report.stalled_seconds += length;
        }
        report.played_seconds = self.playback.position(now);
        let watched = report.played_seconds + report.stalled_seconds;
        report.rebuffering_ratio = if watched > 0.0 {
            report.stalled_seconds / watched
        } else {
            0.0
        };
        if self.media_fetched > 0.0 {
            report.average_bitrate = self.bitrate_media_product / self.media_fetched;
        }
        let mut download: Vec<f64> = report.records.iter().map(|r| r.download_seconds).collect();
        let mut ratio: Vec<f64> = report
            .records
            .iter()
            .map(|r| r.download_seconds / r.media_seconds.max(1e-3))
            .collect();
        report.download_seconds = Percentiles::of(&mut download);
        report.download_ratio = Percentiles::of(&mut ratio);
        self.shared
            .live
            .selected_bitrate_sum
            .fetch_sub(self.live_bitrate, Ordering::Relaxed);
        self.report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn playback_counts_a_stall_when_a_segment_arrives_late() {
        let mut playback = Playback::default();
        assert_eq!(playback.arrive(0.7, 4.0), None);
        assert_eq!(playback.level(0.7), 4.0);
        // On time: the next segment arrives with 1 s still buffered.
        assert_eq!(playback.arrive(3.7, 4.0), None);
        assert!((playback.level(3.7) - 5.0).abs() < 1e-9);
        // The buffer runs dry at 8.7; the next segment arrives at 10.2.
        assert!((playback.time_at_level(0.0) - 8.7).abs() < 1e-9);
        let (start, length) = playback.stall_at(10.0).unwrap();
        assert!((start - 8.7).abs() < 1e-9 && (length - 1.3).abs() < 1e-9);
        let stall = playback.arrive(10.2, 4.0).unwrap();
        assert!((stall - 1.5).abs() < 1e-9, "{stall}");
        // Playing resumed at 10.2 from position 8.
        assert!((playback.position(11.2) - 9.0).abs() < 1e-9);
        assert_eq!(playback.stall_at(11.2), None);
    }

    #[test]
    fn every_link_gets_bounded_buffers() {
        // Unlimited links included: autotuned loopback buffers are what
        // pushed a few thousand viewers into the kernel's TCP memory limit.
        for link in [
            None,
            Some(1_000),
            Some(300_000),
            Some(3_000_000),
            Some(10_000_000_000),
        ] {
            for speed in [0.5, 1.0, 20.0] {
                let (read, receive) = buffer_sizes(link, speed);
                assert!(
                    (16 * 1024..=512 * 1024).contains(&read),
                    "{link:?} x{speed}: read {read}"
                );
                assert!(
                    (128 * 1024..=1024 * 1024).contains(&receive),
                    "{link:?} x{speed}: receive buffer {receive}"
                );
            }
        }
        // A faster link never gets a smaller read or receive buffer.
        let slow = buffer_sizes(Some(300_000), 1.0);
        let fast = buffer_sizes(Some(50_000_000), 1.0);
        assert!(fast.0 >= slow.0 && fast.1 >= slow.1, "{slow:?} vs {fast:?}");
        // A shaped link reads in pieces smaller than an unlimited one, so
        // the shaper is charged in small steps.
        assert!(fast.0 < buffer_sizes(None, 1.0).0);
    }
}
