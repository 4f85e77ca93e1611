//! A viewer's playback model: the play head and buffer in viewer seconds,
//! advanced arithmetically from an anchor rather than by a timer, and the
//! stalls found when a segment arrives after the play head reached the end
//! of the buffer. No I/O and no clock of its own: callers pass the time.

/// Stalls shorter than this are float noise, not something a viewer sees.
const STALL_EPSILON_SECONDS: f64 = 0.001;

/// The play head and buffer, in viewer seconds.
#[derive(Debug, Default)]
pub(super) struct Playback {
    pub(super) started: bool,
    anchor_time: f64,
    anchor_position: f64,
    buffered_end: f64,
}

impl Playback {
    pub(super) fn position(&self, now: f64) -> f64 {
        if !self.started {
            return 0.0;
        }
        (self.anchor_position + (now - self.anchor_time)).min(self.buffered_end)
    }

    pub(super) fn level(&self, now: f64) -> f64 {
        if !self.started {
            return 0.0;
        }
        self.buffered_end - self.position(now)
    }

    /// When the buffer will have drained to `level` (if it is above it).
    pub(super) fn time_at_level(&self, level: f64) -> f64 {
        self.anchor_time + (self.buffered_end - level - self.anchor_position)
    }

    /// The stall in progress at `now`, as (start, length), if any.
    pub(super) fn stall_at(&self, now: f64) -> Option<(f64, f64)> {
        if !self.started {
            return None;
        }
        let unbounded = self.anchor_position + (now - self.anchor_time);
        let length = unbounded - self.buffered_end;
        (length > STALL_EPSILON_SECONDS).then_some((now - length, length))
    }

    /// Books `media_seconds` arriving at `now`; returns the stall it ended.
    pub(super) fn arrive(&mut self, now: f64, media_seconds: f64) -> Option<f64> {
        if !self.started {
            self.started = true;
            self.anchor_time = now;
            self.anchor_position = 0.0;
            self.buffered_end = media_seconds;
            return None;
        }
        let stall = self.stall_at(now);
        if self.anchor_position + (now - self.anchor_time) >= self.buffered_end {
            // Ran dry: playing resumes now from the end of the buffer.
            self.anchor_time = now;
            self.anchor_position = self.buffered_end;
        }
        self.buffered_end += media_seconds;
        stall.map(|(_, length)| length)
    }
}
