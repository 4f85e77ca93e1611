//! The capacity search: how many paced viewers of one rung a server carries.
//!
//! A trial passes when every viewer was admitted, no viewer stalled, none
//! failed, no segment failed, and the p99 segment download time is under
//! half the segment duration (the margin a player needs to ride out a
//! hiccup). A server that refuses sessions (503 with `Retry-After`) may
//! keep its admitted viewers smooth; it carries only those it admits, so a
//! viewer never admitted fails the trial. Refusals that end in admission
//! do not: their wait shows in startup time. The search doubles the
//! count while trials pass (coarse), then bisects between the last pass and
//! the first failure until the bracket is within the precision. The answer
//! is the largest count that passed. Trials are `settle` apart, so that a
//! server working off one trial's viewers does not meet the next one's.

use std::future::Future;

use serde::Serialize;

use crate::BenchError;
use crate::config::CapacityConfig;
use crate::metrics::Summary;
use crate::run::run;

/// One trial's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    pub viewers: u32,
    pub passed: bool,
    /// Why it failed, in words.
    pub reason: Option<String>,
    pub summary: Summary,
}

#[derive(Debug, Clone, Serialize)]
pub struct CapacityReport {
    pub config: CapacityConfig,
    /// The largest count that passed; 0 if even the first trial failed.
    pub capacity: u32,
    /// True when `max` viewers passed (the server may carry more).
    pub reached_max: bool,
    pub trials: Vec<Trial>,
}

/// Whether a trial's summary meets the bar; `Err` says why not.
pub fn judge(summary: &Summary, segment_seconds: f64) -> Result<(), String> {
    if summary.viewers_failed > 0 {
        return Err(format!("{} viewers could not play", summary.viewers_failed));
    }
    if summary.viewers_never_admitted > 0 {
        return Err(format!(
            "{} viewers never admitted ({} refused attempts)",
            summary.viewers_never_admitted, summary.refusals
        ));
    }
    if summary.stalls > 0 {
        return Err(format!(
            "{} stalls ({:.1}s)",
            summary.stalls, summary.stalled_seconds
        ));
    }
    if summary.segments_failed > 0 {
        return Err(format!("{} segments failed", summary.segments_failed));
    }
    if summary.segments == 0 {
        return Err("no segment was fetched".into());
    }
    let limit = segment_seconds / 2.0;
    if summary.download_seconds.p99 >= limit {
        return Err(format!(
            "p99 download time {:.3}s ≥ half a segment ({limit:.3}s)",
            summary.download_seconds.p99
        ));
    }
    Ok(())
}

/// The next count to try, or `None` when the search is done.
pub fn next_count(
    last_pass: Option<u32>,
    first_fail: Option<u32>,
    start: u32,
    max: u32,
    precision: f64,
) -> Option<u32> {
    match (last_pass, first_fail) {
        (None, None) => Some(start),
        (Some(pass), None) if pass >= max => None,
        (Some(pass), None) => Some(pass.saturating_mul(2).min(max)),
        (None, Some(fail)) if fail <= 1 => None,
        // Even the first trial failed: search below it.
        (None, Some(fail)) => Some(fail / 2),
        (Some(pass), Some(fail)) => {
            let width = fail.saturating_sub(pass);
            let enough = (f64::from(pass) * precision).max(1.0);
            if f64::from(width) <= enough {
                None
            } else {
                Some(pass + width / 2)
            }
        }
    }
}

/// Runs the search. `segment_seconds` is the rung's segment duration (read
/// from the first trial's media when `None`); `shutdown` stops it early
/// with what was found so far.
pub async fn search(
    config: CapacityConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<CapacityReport, BenchError> {
    config.validate()?;
    let mut shutdown = std::pin::pin!(shutdown);
    let mut trials = Vec::new();
    let (mut last_pass, mut first_fail): (Option<u32>, Option<u32>) = (None, None);
    let mut stopped = false;
    while let Some(viewers) = next_count(
        last_pass,
        first_fail,
        config.start,
        config.max,
        config.precision,
    ) {
        if stopped {
            break;
        }
        if !trials.is_empty() {
            tokio::select! {
                () = tokio::time::sleep(config.settle) => {}
                () = &mut shutdown => break,
            }
        }
        if config.progress {
            eprintln!("capacity: trial with {viewers} viewers");
        }
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let trial = run(config.trial(viewers), async {
            let _ = stop_rx.await;
        });
        tokio::pin!(trial);
        let report = tokio::select! {
            report = &mut trial => report?,
            () = &mut shutdown => {
                stopped = true;
                let _ = stop_tx.send(());
                trial.await?
            }
        };
        let segment_seconds = report
            .viewers
            .iter()
            .flat_map(|viewer| viewer.records.first())
            .map(|record| record.media_seconds)
            .next()
            .unwrap_or(0.0);
        let verdict = if stopped {
            Err("interrupted".to_string())
        } else {
            judge(&report.summary, segment_seconds)
        };
        if config.progress {
            match &verdict {
                Ok(()) => eprintln!("capacity: {viewers} viewers pass"),
                Err(reason) => eprintln!("capacity: {viewers} viewers fail: {reason}"),
            }
        }
        if !stopped {
            match verdict {
                Ok(()) => last_pass = Some(viewers),
                Err(_) => first_fail = Some(viewers),
            }
        }
        trials.push(Trial {
            viewers,
            passed: verdict.is_ok(),
            reason: verdict.err(),
            summary: report.summary,
        });
    }
    let capacity = last_pass.unwrap_or(0);
    Ok(CapacityReport {
        reached_max: capacity >= config.max,
        capacity,
        config,
        trials,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The search on a server whose true capacity is 730 viewers.
    #[test]
    fn search_brackets_the_capacity() {
        let capacity = 730;
        let (mut pass, mut fail) = (None, None);
        let mut tried = Vec::new();
        while let Some(count) = next_count(pass, fail, 50, 20_000, 0.05) {
            tried.push(count);
            if count <= capacity {
                pass = Some(count);
            } else {
                fail = Some(count);
            }
        }
        assert_eq!(&tried[..6], &[50, 100, 200, 400, 800, 600]);
        let found = pass.unwrap();
        assert!(found <= capacity && f64::from(capacity - found) <= 0.05 * f64::from(found) + 1.0);
        assert!(tried.len() < 12, "{tried:?}");
    }

    #[test]
    fn search_goes_below_a_failing_start_and_stops_at_max() {
        assert_eq!(next_count(None, Some(50), 50, 100, 0.05), Some(25));
        assert_eq!(next_count(None, Some(1), 50, 100, 0.05), None);
        assert_eq!(next_count(Some(64), None, 50, 100, 0.05), Some(100));
        assert_eq!(next_count(Some(100), None, 50, 100, 0.05), None);
    }

    #[test]
    fn judge_applies_the_bar() {
        let good = Summary {
            segments: 10,
            download_seconds: crate::metrics::Percentiles {
                p99: 1.0,
                ..Default::default()
            },
            ..Summary::default()
        };
        assert!(judge(&good, 4.0).is_ok());
        assert!(judge(&good, 2.0).unwrap_err().contains("p99"));
        let stalled = Summary {
            stalls: 2,
            ..good.clone()
        };
        assert!(judge(&stalled, 4.0).unwrap_err().contains("stalls"));
        // Refused and then admitted passes; refused to the end fails.
        let refused_then_admitted = Summary {
            refusals: 40,
            viewers_with_refusals: 20,
            ..good.clone()
        };
        assert!(judge(&refused_then_admitted, 4.0).is_ok());
        let never_admitted = Summary {
            viewers_never_admitted: 3,
            ..refused_then_admitted
        };
        let reason = judge(&never_admitted, 4.0).unwrap_err();
        assert_eq!(reason, "3 viewers never admitted (40 refused attempts)");
    }
}
