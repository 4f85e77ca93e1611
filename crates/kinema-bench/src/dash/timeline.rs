//! `SegmentTimeline` and `SegmentTemplate@duration` addressing: the runs of
//! segments a Representation lists, and the [`TemplateSegments`] made from
//! them on demand.

use roxmltree::Node;

use super::template::UrlTemplate;
use super::{MAX_SEGMENTS, at, attribute_u64, elements, malformed};
use crate::BenchError;
use crate::presentation::SegmentRef;

/// `count` segments of `duration` ticks from tick `start`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Run {
    first_index: u64,
    start: u64,
    duration: u64,
    count: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Timeline {
    /// `SegmentTemplate@duration`: equal segments covering the period, the
    /// last one cut short where the period ends (§5.3.9.5.3).
    Fixed {
        start: u64,
        duration: u64,
        count: u64,
        last_seconds: f64,
    },
    /// `SegmentTimeline`, as runs of equal durations.
    Runs(Vec<Run>),
}

/// One Representation's segments, made from its template on demand.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateSegments {
    pub(super) media: UrlTemplate,
    pub(super) representation_id: String,
    pub(super) bandwidth: u64,
    pub(super) start_number: u64,
    pub(super) timescale: u64,
    pub(super) timeline: Timeline,
}

impl TemplateSegments {
    pub fn len(&self) -> usize {
        let count = match &self.timeline {
            Timeline::Fixed { count, .. } => *count,
            Timeline::Runs(runs) => runs.last().map_or(0, |run| run.first_index + run.count),
        };
        count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn segment(&self, index: usize) -> Option<SegmentRef> {
        let index = index as u64;
        let (time, ticks, last_seconds) = match &self.timeline {
            Timeline::Fixed {
                start,
                duration,
                count,
                last_seconds,
            } => {
                if index >= *count {
                    return None;
                }
                let last = (index + 1 == *count).then_some(*last_seconds);
                // Saturating: a huge presentationTimeOffset makes a wrong
                // $Time$, never a panic.
                (
                    start.saturating_add(index.saturating_mul(*duration)),
                    *duration,
                    last,
                )
            }
            Timeline::Runs(runs) => {
                let run =
                    runs.get(runs.partition_point(|run| run.first_index + run.count <= index))?;
                let within = index - run.first_index;
                (run.start + within * run.duration, run.duration, None)
            }
        };
        let number = self.start_number.saturating_add(index);
        Some(SegmentRef {
            uri: self
                .media
                .render(&self.representation_id, number, self.bandwidth, time),
            range: None,
            duration_seconds: last_seconds.unwrap_or(ticks as f64 / self.timescale as f64),
        })
    }

    pub fn duration_seconds(&self) -> f64 {
        match &self.timeline {
            Timeline::Fixed {
                duration,
                count,
                last_seconds,
                ..
            } => (count - 1) as f64 * *duration as f64 / self.timescale as f64 + last_seconds,
            Timeline::Runs(runs) => runs
                .iter()
                .map(|run| run.count as f64 * run.duration as f64 / self.timescale as f64)
                .sum(),
        }
    }
}
/// `SegmentTimeline` → runs; `period_end` (ticks) ends an `r="-1"` run that
/// no later `S@t` ends.
pub(super) fn parse_timeline(
    timeline: Node,
    period_end: Option<f64>,
) -> Result<Vec<Run>, BenchError> {
    let entries: Vec<Node> = elements(timeline, "S").collect();
    if entries.is_empty() {
        return Err(malformed(format!("{}: has no S elements", at(timeline))));
    }
    let mut runs = Vec::with_capacity(entries.len());
    let mut next_start = 0u64;
    let mut first_index = 0u64;
    for (position, entry) in entries.iter().enumerate() {
        let duration = attribute_u64(*entry, "d")?
            .filter(|d| *d > 0)
            .ok_or_else(|| malformed(format!("{}: needs a duration d above 0", at(*entry))))?;
        let start = match attribute_u64(*entry, "t")? {
            Some(t) if position > 0 && t < next_start => {
                return Err(malformed(format!(
                    "{}: t={t} starts before the previous segment ends ({next_start})",
                    at(*entry)
                )));
            }
            Some(t) => t,
            None => next_start,
        };
        let repeat = match entry.attribute("r") {
            None => 0,
            Some(value) => value
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|r| *r >= -1)
                .ok_or_else(|| {
                    malformed(format!(
                        "{}: r={value:?} is not a whole number of at least -1",
                        at(*entry)
                    ))
                })?,
        };
        let count = if repeat == -1 {
            // Repeats until the next S@t, or the end of the period (§5.3.9.6).
            let next_t = match entries.get(position + 1) {
                Some(next) => attribute_u64(*next, "t")?,
                None => None,
            };
            let ticks = match (next_t, period_end) {
                (Some(end), _) => end.saturating_sub(start) as f64,
                (None, Some(end)) => end - start as f64,
                (None, None) => {
                    return Err(malformed(format!(
                        "{}: r=-1 repeats to the end of the period, whose length the MPD does not give",
                        at(*entry)
                    )));
                }
            };
            (ticks / duration as f64).ceil().max(1.0) as u64
        } else {
            repeat as u64 + 1
        };
        if count > MAX_SEGMENTS || first_index + count > MAX_SEGMENTS {
            return Err(malformed(format!(
                "{}: lists more than {MAX_SEGMENTS} segments",
                at(timeline)
            )));
        }
        next_start = duration
            .checked_mul(count)
            .and_then(|length| start.checked_add(length))
            .ok_or_else(|| malformed(format!("{}: t + d × (r + 1) overflows", at(*entry))))?;
        runs.push(Run {
            first_index,
            start,
            duration,
            count,
        });
        first_index += count;
    }
    Ok(runs)
}
