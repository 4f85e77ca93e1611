//! Tests of [`Admission`](super::Admission): admitting and refusing
//! sessions against measured egress and load, and the reservations they
//! take, with time and the measurements chosen by each test.

use super::reservations::{MAX_RESERVATIONS_PER_PREFIX, RESERVATION};
use super::*;

const MBIT: u64 = 1_000_000;

/// A client address in a network of its own.
fn viewer(network: u8) -> IpAddr {
    IpAddr::from([10, 0, network, 1])
}

fn limits(max_egress: Option<u64>, max_load: f64) -> Limits {
    Limits {
        max_egress,
        max_load,
    }
}
/// Admission with a load that tests set (per mille) and an egress
/// counter they advance.
fn admission(
    limits: Limits,
    egress_bytes: Arc<AtomicU64>,
    load_per_mille: Arc<AtomicU64>,
) -> Admission {
    Admission::new(
        limits,
        Sources {
            egress_bytes: Box::new(move || egress_bytes.load(Relaxed)),
            load: Box::new(move || load_per_mille.load(Relaxed) as f64 / 1000.0),
            admitted: Arc::default(),
        },
    )
}

#[test]
fn admitted_sessions_reserve_their_bitrate_and_refusals_spread_retries() {
    let admission = admission(limits(Some(5 * MBIT), 1.0), Arc::default(), Arc::default());
    assert_eq!(admission.admit(viewer(1), "v", 2 * MBIT), Ok(()));
    assert_eq!(admission.admit(viewer(2), "v", 2 * MBIT), Ok(()));
    let mut retry_afters = Vec::new();
    for _ in 0..5 {
        let refusal = admission.admit(viewer(3), "v", 2 * MBIT).unwrap_err();
        assert_eq!(refusal.reason, Reason::Egress);
        retry_afters.push(refusal.retry_after);
    }
    retry_afters.sort_unstable();
    assert_eq!(retry_afters, vec![3, 4, 5, 6, 7]);
    assert_eq!(admission.admit(viewer(4), "v", MBIT), Ok(()));
    assert_eq!(admission.admitted(), 3);
    assert_eq!(admission.refused(Reason::Egress), 5);
    assert_eq!(admission.refused(Reason::Load), 0);
    // Once the reservations lapse, with nothing measured, room again.
    admission.sample_at(Instant::now() + RESERVATION);
    assert_eq!(admission.admit(viewer(5), "v", 4 * MBIT), Ok(()));
}

#[test]
fn the_sampled_egress_rate_follows_the_bytes_sent_smoothed() {
    let bytes = Arc::new(AtomicU64::new(0));
    let admission = admission(limits(Some(100 * MBIT), 1.0), bytes.clone(), Arc::default());
    let start = Instant::now();
    // 25 MB a second: 200 Mbit/s, approached over a few periods.
    let mut seen = Vec::new();
    for step in 1..=20u32 {
        bytes.store(u64::from(step) * 12_500_000, Relaxed);
        admission.sample_at(start + SAMPLE_PERIOD * step);
        seen.push(admission.egress());
    }
    assert!(seen.windows(2).all(|pair| pair[0] < pair[1]), "{seen:?}");
    assert!(seen[0] < 100 * MBIT, "{seen:?}");
    let last = seen[19];
    assert!(last > 190 * MBIT && last <= 200 * MBIT, "{seen:?}");
    assert_eq!(
        admission.admit(viewer(6), "v", 1).unwrap_err().reason,
        Reason::Egress
    );
}

#[test]
fn a_sustained_load_refuses_and_a_burst_does_not() {
    let load = Arc::new(AtomicU64::new(1000));
    let admission = admission(limits(None, 0.9), Arc::default(), load.clone());
    let start = Instant::now();
    admission.sample_at(start + SAMPLE_PERIOD);
    assert_eq!(
        admission.admit(viewer(7), "v", MBIT),
        Ok(()),
        "load {}",
        admission.load()
    );
    for step in 2..=12u32 {
        admission.sample_at(start + SAMPLE_PERIOD * step);
    }
    assert!(admission.load() > 0.9, "{}", admission.load());
    assert_eq!(
        admission.admit(viewer(8), "v", MBIT).unwrap_err().reason,
        Reason::Load
    );
    assert_eq!(admission.refused(Reason::Load), 1);
}
fn prefix(address: &str) -> ClientPrefix {
    ClientPrefix::of(address.parse().unwrap())
}
/// 150 master playlist requests a second from one address used to
/// reserve 600 sessions' bit rates and refuse 79% of real viewers.
#[test]
fn a_flood_of_session_starts_from_one_network_reserves_once() {
    let admission = admission(limits(Some(5 * MBIT), 1.0), Arc::default(), Arc::default());
    let start = Instant::now();
    for request in 0..600u32 {
        let host = (request % 250) as u8 + 1;
        let at = start + Duration::from_millis(u64::from(request) * 6);
        assert_eq!(
            admission.admit_at(prefix(&format!("203.0.113.{host}")), "v", 2 * MBIT, at),
            Ok(()),
            "request {request}"
        );
    }
    let at = start + Duration::from_millis(3600);
    // Its one reservation lapsed unconfirmed; even counted, it leaves
    // room for two real viewers of 2 Mbit/s under 5.
    assert!(admission.reserved() <= 2 * MBIT);
    assert_eq!(
        admission.admit_at(prefix("198.51.100.7"), "v", 2 * MBIT, at),
        Ok(())
    );
    assert_eq!(
        admission.admit_at(prefix("192.0.2.7"), "v", 2 * MBIT, at),
        Ok(())
    );
    // Room is still judged: a third real viewer does not fit.
    assert_eq!(
        admission
            .admit_at(prefix("100.64.0.7"), "v", 2 * MBIT, at)
            .unwrap_err()
            .reason,
        Reason::Egress
    );
}

#[test]
fn a_network_holds_a_few_reservations_across_videos() {
    let admission = admission(
        limits(Some(100 * MBIT), 1.0),
        Arc::default(),
        Arc::default(),
    );
    let now = Instant::now();
    for video in 0..20 {
        let video = format!("video{video}");
        assert_eq!(
            admission.admit_at(prefix("203.0.113.9"), &video, MBIT, now),
            Ok(())
        );
    }
    assert_eq!(
        admission.reserved(),
        MAX_RESERVATIONS_PER_PREFIX as u64 * MBIT
    );
    // Another network is not affected.
    assert_eq!(
        admission.admit_at(prefix("192.0.2.1"), "video0", MBIT, now),
        Ok(())
    );
    assert_eq!(
        admission.reserved(),
        (MAX_RESERVATIONS_PER_PREFIX as u64 + 1) * MBIT
    );
}
#[test]
fn segment_requests_confirm_and_then_skip_the_lock() {
    let admission = admission(limits(Some(10 * MBIT), 1.0), Arc::default(), Arc::default());
    let client: IpAddr = "192.0.2.1".parse().unwrap();
    assert!(!admission.any_unconfirmed.load(Relaxed));
    admission.admit(client, "v", MBIT).unwrap();
    assert!(admission.any_unconfirmed.load(Relaxed));
    admission.media_fetched("192.0.2.77".parse().unwrap(), "v");
    assert!(!admission.any_unconfirmed.load(Relaxed));
    assert_eq!(admission.reserved(), MBIT);
}
