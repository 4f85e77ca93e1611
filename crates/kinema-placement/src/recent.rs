//! The assignments a deciding node made lately, which the loads it reads
//! from membership do not show yet.
//!
//! Loads reach a decider late: each node republishes its figures about
//! once a second, gossip carries them in a few hundred milliseconds, and a
//! decider rebuilds its view of them every half second or so. A crowd of
//! new sessions arriving within that time would all be placed against the
//! same loads: every one of them sees the video's head below its bound,
//! and the head ends far above it. So a decider remembers each assignment
//! it makes for a `window` as long as that delay, and adds them to the
//! loads it reads ([`RecentAssignments::count`]). An assignment that has
//! reached the published load before its window ends is counted twice
//! until then; that errs towards spreading, never towards piling up.
//!
//! Bounded: at most `capacity` assignments are remembered, the oldest
//! dropped first (a crowd beyond it is counted as the loads show it).
//! Pure, like the rest of the crate: the caller passes the time, and time
//! that goes backwards counts as no time passing.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use crate::{NodeId, PlacementError};

/// Longest window accepted: far beyond any delay membership has.
pub const MAX_RECENT_WINDOW: Duration = Duration::from_secs(60);
/// Most assignments one [`RecentAssignments`] may be asked to remember.
pub const MAX_RECENT_CAPACITY: usize = 1 << 20;

/// The assignments made within the last `window`, per node.
#[derive(Debug, Clone)]
pub struct RecentAssignments {
    window: Duration,
    capacity: usize,
    /// (when, node), oldest first; times never decrease along it.
    made: VecDeque<(Duration, NodeId)>,
    per_node: HashMap<NodeId, u64>,
}

impl RecentAssignments {
    /// Remembers each assignment for `window` (above zero, at most
    /// [`MAX_RECENT_WINDOW`]), at most `capacity` of them (1 to
    /// [`MAX_RECENT_CAPACITY`]).
    pub fn new(window: Duration, capacity: usize) -> Result<Self, PlacementError> {
        if window.is_zero() || window > MAX_RECENT_WINDOW {
            return Err(PlacementError::RecentWindow(window));
        }
        if capacity == 0 || capacity > MAX_RECENT_CAPACITY {
            return Err(PlacementError::RecentCapacity(capacity));
        }
        Ok(Self {
            window,
            capacity,
            made: VecDeque::new(),
            per_node: HashMap::new(),
        })
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    /// Records one assignment to `node` at `now`.
    pub fn record(&mut self, node: &NodeId, now: Duration) {
        self.expire(now);
        if self.made.len() == self.capacity {
            self.drop_oldest();
        }
        // Time that went backwards counts as no time passing, which keeps
        // the queue in order and every entry for at least its window.
        let at = self.made.back().map_or(now, |(last, _)| now.max(*last));
        self.made.push_back((at, node.clone()));
        *self.per_node.entry(node.clone()).or_insert(0) += 1;
    }

    /// The assignments to `node` made within the window before `now`.
    pub fn count(&mut self, node: &NodeId, now: Duration) -> u64 {
        self.expire(now);
        self.per_node.get(node).copied().unwrap_or(0)
    }

    /// Every node with assignments within the window before `now`, and
    /// how many.
    pub fn counts(&mut self, now: Duration) -> &HashMap<NodeId, u64> {
        self.expire(now);
        &self.per_node
    }

    /// Assignments remembered now (not expired as of the last call).
    pub fn len(&self) -> usize {
        self.made.len()
    }

    pub fn is_empty(&self) -> bool {
        self.made.is_empty()
    }

    fn expire(&mut self, now: Duration) {
        while let Some((at, _)) = self.made.front() {
            if now.saturating_sub(*at) < self.window {
                break;
            }
            self.drop_oldest();
        }
    }

    fn drop_oldest(&mut self) {
        let Some((_, node)) = self.made.pop_front() else {
            return;
        };
        if let Some(count) = self.per_node.get_mut(&node) {
            *count -= 1;
            if *count == 0 {
                self.per_node.remove(&node);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> NodeId {
        NodeId::new(name).unwrap()
    }

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    #[test]
    fn window_and_capacity_are_bounded() {
        assert_eq!(
            RecentAssignments::new(Duration::ZERO, 10).unwrap_err(),
            PlacementError::RecentWindow(Duration::ZERO)
        );
        assert!(RecentAssignments::new(MAX_RECENT_WINDOW + ms(1), 10).is_err());
        assert_eq!(
            RecentAssignments::new(ms(2000), 0).unwrap_err(),
            PlacementError::RecentCapacity(0)
        );
        assert!(RecentAssignments::new(ms(2000), MAX_RECENT_CAPACITY + 1).is_err());
        assert!(RecentAssignments::new(MAX_RECENT_WINDOW, MAX_RECENT_CAPACITY).is_ok());
    }

    #[test]
    fn an_assignment_counts_for_its_window_and_no_longer() {
        let mut recent = RecentAssignments::new(ms(2000), 100).unwrap();
        let (a, b) = (id("edge-a"), id("edge-b"));
        recent.record(&a, ms(10_000));
        recent.record(&a, ms(10_500));
        recent.record(&b, ms(11_000));
        assert_eq!(recent.count(&a, ms(11_000)), 2);
        assert_eq!(recent.count(&b, ms(11_000)), 1);
        assert_eq!(recent.count(&id("edge-c"), ms(11_000)), 0);
        // 10.0 s + 2 s: the first has left the window, the others not.
        assert_eq!(recent.count(&a, ms(12_000)), 1);
        assert_eq!(recent.count(&a, ms(12_499)), 1);
        assert_eq!(recent.count(&a, ms(12_500)), 0);
        assert_eq!(recent.count(&b, ms(12_999)), 1);
        assert_eq!(recent.counts(ms(13_000)).len(), 0);
        assert!(recent.is_empty());
    }

    #[test]
    fn the_oldest_go_first_beyond_the_capacity() {
        let mut recent = RecentAssignments::new(ms(2000), 3).unwrap();
        let (a, b) = (id("edge-a"), id("edge-b"));
        recent.record(&a, ms(1));
        recent.record(&a, ms(2));
        recent.record(&b, ms(3));
        recent.record(&b, ms(4));
        assert_eq!(recent.len(), 3);
        assert_eq!(recent.count(&a, ms(5)), 1);
        assert_eq!(recent.count(&b, ms(5)), 2);
        let counts = recent.counts(ms(5));
        assert_eq!(counts.get(&a), Some(&1));
        assert_eq!(counts.get(&b), Some(&2));
    }

    #[test]
    fn time_going_backwards_counts_as_no_time() {
        let mut recent = RecentAssignments::new(ms(2000), 10).unwrap();
        let a = id("edge-a");
        recent.record(&a, ms(5000));
        // Recorded as at 5 s: it stays until 7 s, not only until 5 s.
        recent.record(&a, ms(3000));
        assert_eq!(recent.count(&a, ms(4000)), 2);
        assert_eq!(recent.count(&a, ms(6999)), 2);
        assert_eq!(recent.count(&a, ms(7000)), 0);
    }
}
