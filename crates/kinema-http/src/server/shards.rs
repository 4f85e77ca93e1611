//! The threads connections are served on, and how connections are spread
//! over them.
//!
//! Each shard is a thread running a single-threaded tokio runtime with its
//! own event loop. A connection is served on one shard at a time, as in
//! nginx's worker processes, so serving it never wakes or waits for another
//! thread: with tokio's work-stealing scheduler, futex wake-ups and idle
//! workers searching for tasks cost a playlist request about a tenth of its
//! CPU time on two cores.
//!
//! **Pack, then spread.** A thread that runs out of work sleeps in
//! `epoll_wait`, and waking it again costs a context switch and, from
//! another CPU, an inter-processor interrupt (dear in a virtual machine).
//! Spreading a light load evenly keeps every thread on the edge of
//! sleeping: on two cores shared with other busy processes, two evenly
//! loaded threads slept 31,000 times a second and served 30% fewer
//! requests than one thread holding all the connections. So a new
//! connection goes to the first shard that is not busy (below
//! [`PACK_BELOW`] of its time awake), and only when all are busy to the
//! least busy one. Connections that arrive together land together, so a
//! shard can turn out saturated while another idles; when that happens and
//! some CPU of the machine is idle (so another thread would really run in
//! parallel), the saturated shard sheds a share of its HTTP/1.1 connections,
//! each moving between two requests (when it holds no buffer) to the least
//! busy shard. TLS and HTTP/2 connections stay where they began.
//!
//! A shard's load is the share of wall time its thread was awake (not
//! parked in the event loop), measured by the runtime's park hooks and
//! sampled every [`SAMPLE_PERIOD`].

use std::cell::Cell;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::ServerStats;

/// Work handed to a shard: runs on its thread, inside its runtime.
pub(super) type Admission = Box<dyn FnOnce() + Send>;

/// New connections go to the first shard awake less than this share
/// (per mille) of the last sample period.
const PACK_BELOW: u32 = 750;
/// A shard awake more than this share (per mille) is saturated...
const SATURATED_ABOVE: u32 = 900;
/// ...and sheds connections to one awake less than this share...
const RELIEF_BELOW: u32 = 500;
/// ...when more than this share (per mille) of the machine's CPU time was
/// idle: a CPU the other thread could really run on.
const IDLE_CPU_ABOVE: u32 = 100;
/// How often loads are sampled and shedding decided: long enough that one
/// hiccup of another process does not read as idle CPU.
pub(super) const SAMPLE_PERIOD: Duration = Duration::from_millis(500);
/// Marks a parked thread in [`ShardLoad::awake_since`].
const PARKED: u64 = u64::MAX;

thread_local! {
    /// The index of the shard this thread runs, if it is one.
    static CURRENT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// What the accept loop, the sampler and the connections share.
pub(super) struct ShardSet {
    senders: Vec<tokio::sync::mpsc::UnboundedSender<Option<Admission>>>,
    loads: Box<[ShardLoad]>,
    epoch: Instant,
}

#[derive(Default)]
struct ShardLoad {
    /// Nanoseconds since the epoch when the thread last woke; [`PARKED`].
    awake_since: AtomicU64,
    /// Nanoseconds awake, up to the last park.
    awake_total: AtomicU64,
    /// Per mille of the last sample period the thread was awake.
    load: AtomicU32,
    /// Connections served here now.
    connections: AtomicU32,
    /// Connections asked to move elsewhere at their next idle point.
    shed: AtomicU32,
}

impl ShardLoad {
    fn awake_until(&self, now: u64) -> u64 {
        let since = self.awake_since.load(Ordering::Relaxed);
        let running = if since == PARKED {
            0
        } else {
            now.saturating_sub(since)
        };
        self.awake_total.load(Ordering::Relaxed) + running
    }
}

/// The shard threads themselves, owned by the accept loop.
pub(super) struct Shards {
    set: Arc<ShardSet>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Shards {
    /// Starts `count` threads (0: one per CPU available to the process).
    pub(super) fn start(count: usize) -> io::Result<Self> {
        let count = match count {
            0 => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            count => count,
        };
        let mut senders = Vec::with_capacity(count);
        let mut receivers = Vec::with_capacity(count);
        for _ in 0..count {
            let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
            senders.push(sender);
            receivers.push(receiver);
        }
        let set = Arc::new(ShardSet {
            senders,
            loads: (0..count).map(|_| ShardLoad::default()).collect(),
            epoch: Instant::now(),
        });
        let mut threads = Vec::with_capacity(count);
        for (index, mut receiver) in receivers.into_iter().enumerate() {
            let (park, unpark) = (set.clone(), set.clone());
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .on_thread_park(move || {
                    let load = &park.loads[index];
                    let now = park.now();
                    let since = load.awake_since.swap(PARKED, Ordering::Relaxed);
                    if since != PARKED {
                        load.awake_total
                            .fetch_add(now.saturating_sub(since), Ordering::Relaxed);
                    }
                })
                .on_thread_unpark(move || {
                    let now = unpark.now();
                    unpark.loads[index]
                        .awake_since
                        .store(now, Ordering::Relaxed);
                })
                .build()?;
            set.loads[index]
                .awake_since
                .store(set.now(), Ordering::Relaxed);
            let thread = std::thread::Builder::new()
                .name(format!("kinema-http-{index}"))
                .spawn(move || {
                    CURRENT.set(Some(index));
                    runtime.block_on(async {
                        while let Some(Some(admission)) = receiver.recv().await {
                            admission();
                        }
                    });
                    // The listener drained before it stopped the shards: what
                    // is left are aborted connections and reads the blocking
                    // pool will not finish for anyone.
                    runtime.shutdown_timeout(Duration::from_secs(1));
                })?;
            threads.push(thread);
        }
        Ok(Self { set, threads })
    }

    pub(super) fn set(&self) -> &Arc<ShardSet> {
        &self.set
    }

    /// Stops every shard and waits for its thread.
    pub(super) async fn stop(mut self) {
        let threads = std::mem::take(&mut self.threads);
        drop(self);
        let joined = tokio::task::spawn_blocking(move || {
            for thread in threads {
                if thread.join().is_err() {
                    tracing::error!("a connection thread panicked");
                }
            }
        });
        let _ = joined.await;
    }
}

/// Tells every shard to stop (also when the listener's future is dropped
/// rather than run to the end: the shards' own references to the set would
/// otherwise keep them waiting for ever).
impl Drop for Shards {
    fn drop(&mut self) {
        for sender in &self.set.senders {
            let _ = sender.send(None);
        }
    }
}

impl ShardSet {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(PARKED - 1)
    }

    fn loads(&self) -> Vec<u32> {
        self.loads
            .iter()
            .map(|load| load.load.load(Ordering::Relaxed))
            .collect()
    }

    /// Where a new connection goes (the packing rule): `None` when that is
    /// the shard running this code, where it is then already counted and
    /// needs no hand-over; else the shard to [`Self::hand_over`] it to.
    pub(super) fn pick(&self) -> Option<usize> {
        let index = pick_for_new(&self.loads());
        if CURRENT.get() != Some(index) {
            return Some(index);
        }
        self.loads[index]
            .connections
            .fetch_add(1, Ordering::Relaxed);
        None
    }

    /// Runs `work` on shard `index` (not a connection: nothing is counted).
    pub(super) fn run_on(&self, index: usize, work: Admission) {
        let _ = self.senders[index].send(Some(work));
    }

    /// Runs `admission` on shard `index`, counting a connection there.
    pub(super) fn hand_over(&self, index: usize, admission: Admission) {
        let set_load = &self.loads[index];
        set_load.connections.fetch_add(1, Ordering::Relaxed);
        // A shard only stops after the drain; an admission dropped unrun
        // drops its connection, which closes it.
        if self.senders[index].send(Some(admission)).is_err() {
            set_load.connections.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Called on a shard when one of its connections ends.
    pub(super) fn connection_ended(&self) {
        if let Some(index) = CURRENT.get() {
            let _ = self.loads[index].connections.fetch_update(
                Ordering::Relaxed,
                Ordering::Relaxed,
                |count| count.checked_sub(1),
            );
        }
    }

    /// Whether a connection of the current shard, between two requests,
    /// should move to another: true (once per shed connection) while the
    /// sampler asks this shard to shed.
    pub(super) fn should_move(&self) -> bool {
        let Some(index) = CURRENT.get() else {
            return false;
        };
        let shed = &self.loads[index].shed;
        shed.load(Ordering::Relaxed) > 0
            && shed
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
    }

    /// Whether the shard running this code was saturated (awake more than
    /// [`SATURATED_ABOVE`] of the last sample period).
    pub(super) fn current_is_saturated(&self) -> bool {
        CURRENT
            .get()
            .is_some_and(|index| self.loads[index].load.load(Ordering::Relaxed) > SATURATED_ABOVE)
    }

    /// Moves a connection from the current shard to the least busy other
    /// one, where `admission` resumes serving it.
    pub(super) fn move_connection(&self, admission: Admission) {
        let from = CURRENT.get();
        let loads = self.loads();
        let to = least_loaded(&loads, from).unwrap_or(0);
        if let Some(from) = from {
            self.loads[from].connections.fetch_sub(1, Ordering::Relaxed);
        }
        self.hand_over(to, admission);
    }

    /// Samples the shards' loads (published as [`ServerStats::load`]) and
    /// decides shedding, every [`SAMPLE_PERIOD`], for as long as the
    /// listener runs.
    pub(super) async fn balance(self: Arc<Self>, stats: Arc<ServerStats>) {
        let mut previous_awake: Vec<u64> = vec![0; self.loads.len()];
        let mut previous_at = self.now();
        let mut cpu = CpuTimes::read();
        // The first sample one period from now (not at once: a window of
        // microseconds would read a thread that just started as saturated).
        let mut interval =
            tokio::time::interval_at(tokio::time::Instant::now() + SAMPLE_PERIOD, SAMPLE_PERIOD);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let now = self.now();
            let elapsed = now.saturating_sub(previous_at).max(1);
            for (load, previous) in self.loads.iter().zip(&mut previous_awake) {
                let awake = load.awake_until(now);
                let share = awake.saturating_sub(*previous).saturating_mul(1000) / elapsed;
                load.load.store(
                    u32::try_from(share.min(1000)).unwrap_or(1000),
                    Ordering::Relaxed,
                );
                *previous = awake;
            }
            previous_at = now;
            let loads = self.loads();
            let mean = loads.iter().map(|&load| u64::from(load)).sum::<u64>() / loads.len() as u64;
            stats
                .load
                .store(u32::try_from(mean).unwrap_or(1000), Ordering::Relaxed);
            if loads.len() == 1 {
                continue;
            }
            let latest = CpuTimes::read();
            // Unknown (no /proc/stat): assume idle CPU, i.e. spread.
            let idle = match (&cpu, &latest) {
                (Some(before), Some(after)) => after.idle_per_mille_since(before),
                _ => 1000,
            };
            #[cfg(test)]
            let idle = tests::forced_idle_cpu().unwrap_or(idle);
            cpu = latest;
            let connections: Vec<u32> = self
                .loads
                .iter()
                .map(|load| load.connections.load(Ordering::Relaxed))
                .collect();
            for (index, shed) in plan_shedding(&loads, &connections, idle)
                .into_iter()
                .enumerate()
            {
                self.loads[index].shed.store(shed, Ordering::Relaxed);
            }
        }
    }
}

/// The shard a new connection goes to: the first not busy, else the least
/// busy.
fn pick_for_new(loads: &[u32]) -> usize {
    loads
        .iter()
        .position(|&load| load < PACK_BELOW)
        .or_else(|| least_loaded(loads, None))
        .unwrap_or(0)
}

/// The least busy shard other than `except`.
fn least_loaded(loads: &[u32], except: Option<usize>) -> Option<usize> {
    loads
        .iter()
        .enumerate()
        .filter(|&(index, _)| Some(index) != except)
        .min_by_key(|&(_, &load)| load)
        .map(|(index, _)| index)
}

/// How many connections each shard should shed: a quarter of a saturated
/// shard's connections (at least one) while some shard has room and the
/// machine has idle CPU; none otherwise.
fn plan_shedding(loads: &[u32], connections: &[u32], idle_cpu: u32) -> Vec<u32> {
    let room = loads.iter().any(|&load| load < RELIEF_BELOW);
    loads
        .iter()
        .zip(connections)
        .map(|(&load, &count)| {
            if load > SATURATED_ABOVE && room && idle_cpu > IDLE_CPU_ABOVE && count > 1 {
                (count / 4).max(1)
            } else {
                0
            }
        })
        .collect()
}

/// The machine's CPU time so far, from the first line of `/proc/stat`.
struct CpuTimes {
    idle: u64,
    total: u64,
}

impl CpuTimes {
    fn read() -> Option<Self> {
        // procfs is generated in memory: reading it does not wait on a disk.
        let text = std::fs::read_to_string("/proc/stat").ok()?;
        Self::parse(text.lines().next()?)
    }

    /// `cpu  user nice system idle iowait irq softirq steal ...`
    fn parse(line: &str) -> Option<Self> {
        let mut fields = line.split_ascii_whitespace();
        if fields.next()? != "cpu" {
            return None;
        }
        let values: Vec<u64> = fields
            .take(8)
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        if values.len() < 5 {
            return None;
        }
        Some(Self {
            idle: values[3] + values[4],
            total: values.iter().sum(),
        })
    }

    fn idle_per_mille_since(&self, before: &Self) -> u32 {
        let total = self.total.saturating_sub(before.total);
        if total == 0 {
            return 1000;
        }
        let idle = self.idle.saturating_sub(before.idle);
        u32::try_from(idle.saturating_mul(1000) / total)
            .unwrap_or(1000)
            .min(1000)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// What the machine's idle CPU reads as in this process's tests: the
    /// test of shedding must not depend on what else the machine runs.
    static FORCED_IDLE_CPU: AtomicU32 = AtomicU32::new(u32::MAX);

    pub(crate) fn force_idle_cpu(per_mille: u32) {
        FORCED_IDLE_CPU.store(per_mille, Ordering::Relaxed);
    }

    pub(super) fn forced_idle_cpu() -> Option<u32> {
        match FORCED_IDLE_CPU.load(Ordering::Relaxed) {
            u32::MAX => None,
            forced => Some(forced),
        }
    }

    #[test]
    fn new_connections_pack_onto_the_first_shard_with_room() {
        assert_eq!(pick_for_new(&[0, 0, 0]), 0);
        assert_eq!(pick_for_new(&[700, 0, 0]), 0);
        assert_eq!(pick_for_new(&[800, 100, 0]), 1);
        assert_eq!(pick_for_new(&[800, 900, 100]), 2);
        // All busy: the least busy.
        assert_eq!(pick_for_new(&[990, 800, 950]), 1);
        assert_eq!(pick_for_new(&[1000]), 0);
    }

    #[test]
    fn a_saturated_shard_sheds_only_when_there_is_room_and_idle_cpu() {
        // Saturated, a shard with room, idle CPU: a quarter moves.
        assert_eq!(plan_shedding(&[1000, 0], &[64, 0], 500), [16, 0]);
        // At least one.
        assert_eq!(plan_shedding(&[950, 100], &[3, 1], 400), [1, 0]);
        // The machine is busy (another process holds the other CPU):
        // spreading would only add wake-ups.
        assert_eq!(plan_shedding(&[1000, 0], &[64, 0], 50), [0, 0]);
        // No shard has room.
        assert_eq!(plan_shedding(&[1000, 800], &[64, 10], 500), [0, 0]);
        // Not saturated.
        assert_eq!(plan_shedding(&[850, 0], &[64, 0], 500), [0, 0]);
        // A single connection cannot be split.
        assert_eq!(plan_shedding(&[1000, 0], &[1, 0], 500), [0, 0]);
    }

    #[test]
    fn only_a_shard_awake_over_saturated_above_counts_as_saturated() {
        let shards = Shards::start(2).unwrap();
        let set = shards.set().clone();
        set.loads[1]
            .load
            .store(SATURATED_ABOVE + 1, Ordering::Relaxed);
        set.loads[0].load.store(SATURATED_ABOVE, Ordering::Relaxed);
        // Not a serving thread: never saturated.
        assert!(!set.current_is_saturated());
        let on_shard = |index: usize| {
            let set = set.clone();
            std::thread::spawn(move || {
                CURRENT.set(Some(index));
                set.current_is_saturated()
            })
            .join()
            .unwrap()
        };
        assert!(!on_shard(0));
        assert!(on_shard(1));
    }

    #[test]
    fn least_loaded_skips_the_shard_itself() {
        assert_eq!(least_loaded(&[0, 500, 300], Some(0)), Some(2));
        assert_eq!(least_loaded(&[0, 500, 300], None), Some(0));
        assert_eq!(least_loaded(&[10], Some(0)), None);
    }

    #[test]
    fn idle_cpu_comes_from_proc_stat_deltas() {
        let before = CpuTimes::parse("cpu  100 0 50 800 50 0 0 0 0 0").unwrap();
        let after = CpuTimes::parse("cpu  160 0 70 900 50 0 0 0 0 0").unwrap();
        // 180 jiffies passed, 100 of them idle.
        assert_eq!(after.idle_per_mille_since(&before), 555);
        assert!(CpuTimes::parse("cpu0 1 2 3 4 5").is_none());
        assert!(CpuTimes::parse("cpu  1 2 x 4 5").is_none());
        assert!(CpuTimes::parse("cpu  1 2 3").is_none());
    }
}
