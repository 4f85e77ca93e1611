//! The measured choice steering makes among nodes it already judged
//! equivalent by load: the one that measured the best throughput for the
//! viewer's prefix first, except for a small, configurable share of
//! sessions that go to the second-best, so the estimates of the runner-up
//! (or of a node with none yet) stay fresh. Deterministic: the same
//! session, candidates and figures always give the same order.

use crate::summary::PrefixFigures;

/// One node steering considers, with what is known of the viewer's prefix
/// there (from its gossiped summary, or this node's own table).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate<'a> {
    pub node_id: &'a str,
    pub measured: Option<PrefixFigures>,
}

/// Why the first node of a [`MeasuredOrder`] is first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MeasuredReason {
    /// Fewer than two candidates measured this prefix: nothing to
    /// compare, so the caller's order stands.
    Unmeasured,
    /// It measured the best throughput for this prefix.
    Best,
    /// The session was picked to explore: the second-best goes first.
    Exploring,
}

impl MeasuredReason {
    pub fn as_str(self) -> &'static str {
        match self {
            MeasuredReason::Unmeasured => "unmeasured",
            MeasuredReason::Best => "measured-best",
            MeasuredReason::Exploring => "exploring",
        }
    }
}

/// Candidates' indices, first choice first, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeasuredOrder {
    pub order: Vec<usize>,
    pub reason: MeasuredReason,
}

/// Indices of the nodes whose load is within `tolerance` of the least
/// loaded one, in their given order: the nodes of similar load among
/// which measurement may decide. Loads that are not numbers never qualify.
pub fn similar_load(loads: &[f64], tolerance: f64) -> Vec<usize> {
    let least = loads
        .iter()
        .copied()
        .filter(|load| load.is_finite())
        .fold(f64::INFINITY, f64::min);
    loads
        .iter()
        .enumerate()
        .filter(|(_, load)| load.is_finite() && **load <= least + tolerance)
        .map(|(index, _)| index)
        .collect()
}

/// Orders `candidates` (nodes of similar load, in the caller's order of
/// preference) for the session `session_id`: those that measured the
/// prefix by throughput, best first (ties: less RTT inflation, then the
/// caller's order), then the unmeasured in the caller's order. A session
/// whose hash falls in `exploration_share` (0 to 1) swaps the first two.
///
/// With fewer than two measured candidates the caller's order stands: one
/// figure compares with nothing. (A node on a fast path may have no
/// figures at all, its `TCP_INFO` samples dropped as application-limited,
/// while a congested one has some: one measured node is not evidence that
/// it is the better.)
pub fn order_by_measurement(
    candidates: &[Candidate<'_>],
    session_id: &str,
    exploration_share: f64,
) -> MeasuredOrder {
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    if candidates.iter().filter(|c| c.measured.is_some()).count() < 2 {
        return MeasuredOrder {
            order,
            reason: MeasuredReason::Unmeasured,
        };
    }
    // A stable sort keeps the caller's order among equals.
    order.sort_by(
        |&a, &b| match (candidates[a].measured, candidates[b].measured) {
            (Some(x), Some(y)) => y
                .throughput_kbps
                .cmp(&x.throughput_kbps)
                .then(x.rtt_inflation_ms.cmp(&y.rtt_inflation_ms)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        },
    );
    if order.len() >= 2 && explores(session_id, exploration_share) {
        order.swap(0, 1);
        return MeasuredOrder {
            order,
            reason: MeasuredReason::Exploring,
        };
    }
    MeasuredOrder {
        order,
        reason: MeasuredReason::Best,
    }
}

/// Whether `session_id` is among the `share` of sessions that explore:
/// its FNV-1a 64-bit hash, as a fraction of 2^64, below `share`.
pub fn explores(session_id: &str, share: f64) -> bool {
    session_fraction(session_id) < share
}

/// The session's place in [0, 1): the top 53 bits of FNV-1a 64 over its
/// bytes (a fixed, dependency-free hash: every node agrees).
fn session_fraction(session_id: &str) -> f64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in session_id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(throughput_kbps: u64, rtt_inflation_ms: u64) -> Option<PrefixFigures> {
        Some(PrefixFigures {
            throughput_kbps,
            rtt_inflation_ms,
        })
    }

    fn candidate(node_id: &str, measured: Option<PrefixFigures>) -> Candidate<'_> {
        Candidate { node_id, measured }
    }

    #[test]
    fn the_best_measured_node_goes_first_and_the_unmeasured_last() {
        let candidates = [
            candidate("a", None),
            candidate("b", figures(4000, 30)),
            candidate("c", figures(9000, 80)),
            candidate("d", figures(4000, 10)),
            candidate("e", None),
        ];
        let order = order_by_measurement(&candidates, "session", 0.0);
        assert_eq!(order.order, vec![2, 3, 1, 0, 4]);
        assert_eq!(order.reason, MeasuredReason::Best);
    }

    #[test]
    fn without_measurements_the_callers_order_stands() {
        let candidates = [candidate("a", None), candidate("b", None)];
        let order = order_by_measurement(&candidates, "session", 1.0);
        assert_eq!(order.order, vec![0, 1]);
        assert_eq!(order.reason, MeasuredReason::Unmeasured);
    }

    #[test]
    fn an_exploring_session_gets_the_second_best_even_an_unmeasured_one() {
        let candidates = [
            candidate("a", None),
            candidate("b", figures(4000, 30)),
            candidate("c", figures(900, 30)),
        ];
        let order = order_by_measurement(&candidates, "session", 1.0);
        assert_eq!(order.order, vec![2, 1, 0]);
        assert_eq!(order.reason, MeasuredReason::Exploring);
        let best = order_by_measurement(&candidates, "session", 0.0);
        assert_eq!(best.order, vec![1, 2, 0]);
        assert_eq!(best.reason, MeasuredReason::Best);
    }

    #[test]
    fn one_measured_candidate_compares_with_nothing() {
        // The congested node measured, the fast one not (its samples
        // application-limited): the caller's order stands.
        let candidates = [
            candidate("fast", None),
            candidate("congested", figures(900, 200)),
        ];
        let order = order_by_measurement(&candidates, "session", 0.0);
        assert_eq!(order.order, vec![0, 1]);
        assert_eq!(order.reason, MeasuredReason::Unmeasured);
        let alone = order_by_measurement(&candidates[1..], "session", 1.0);
        assert_eq!(alone.order, vec![0]);
        assert_eq!(alone.reason, MeasuredReason::Unmeasured);
    }

    #[test]
    fn exploration_is_a_fixed_hash_of_the_session() {
        // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c (the published test
        // vector): 0.685… of 2^64.
        assert!(explores("a", 0.69));
        assert!(!explores("a", 0.68));
        assert!(!explores("a", 0.0));
        // About the configured share of many sessions explores.
        let exploring = (0..10_000)
            .filter(|i| explores(&format!("session-{i}"), 0.05))
            .count();
        assert!((350..650).contains(&exploring), "{exploring} of 10000");
    }

    #[test]
    fn similar_load_is_within_the_tolerance_of_the_least_loaded() {
        assert_eq!(
            similar_load(&[0.5, 0.2, 0.25, 0.31, f64::NAN], 0.1),
            vec![1, 2]
        );
        assert_eq!(similar_load(&[0.3], 0.0), vec![0]);
        assert!(similar_load(&[], 0.1).is_empty());
    }
}
