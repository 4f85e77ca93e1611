//! Expected values are worked by hand in the comments.

use std::time::{Duration, Instant};

use kinema_http::tcp_info::TcpInfoSample;

use super::*;

const TEN_SECONDS: Duration = Duration::from_secs(10);

fn config(max_prefixes: usize) -> AggregatorConfig {
    AggregatorConfig {
        half_life: TEN_SECONDS,
        max_prefixes,
    }
}

fn prefix(text: &str) -> ClientPrefix {
    text.parse().unwrap()
}

fn tcp(bytes_per_second: u64, min_rtt_ms: u64, smoothed_rtt_ms: u64) -> TcpInfoSample {
    TcpInfoSample {
        delivery_rate_bytes_per_second: bytes_per_second,
        min_rtt: Duration::from_millis(min_rtt_ms),
        smoothed_rtt: Duration::from_millis(smoothed_rtt_ms),
        retransmits: 0,
        app_limited: false,
    }
}

fn close(actual: f64, expected: f64) -> bool {
    (actual - expected).abs() < 1e-9 * expected.abs().max(1.0)
}

#[test]
fn samples_one_half_life_apart_weigh_half_and_one() {
    let start = Instant::now();
    let mut aggregator = Aggregator::new(config(10));
    let home = prefix("203.0.113.0/24");
    // 1 MB/s = 8 Mbit/s, 20 ms of queue.
    aggregator.record_tcp(home, &tcp(1_000_000, 10, 30), start);
    // 0.5 MB/s = 4 Mbit/s, 40 ms of queue, one half-life later.
    aggregator.record_tcp(home, &tcp(500_000, 10, 50), start + TEN_SECONDS);
    let estimate = aggregator.estimate(home, start + TEN_SECONDS).unwrap();
    // (8e6 × 0.5 + 4e6) / (0.5 + 1) = 8e6 / 1.5
    assert!(
        close(estimate.throughput_bps.unwrap(), 8e6 / 1.5),
        "{estimate:?}"
    );
    // (20 × 0.5 + 40) / 1.5 = 50 / 1.5
    assert!(
        close(estimate.rtt_inflation_ms.unwrap(), 50.0 / 1.5),
        "{estimate:?}"
    );
    assert!(close(estimate.throughput_weight, 1.5), "{estimate:?}");
    assert_eq!(estimate.starvation_share, None);
    // Twenty seconds after the last sample: the average stands, its weight
    // has halved twice: 1.5 / 4.
    let later = aggregator.estimate(home, start + TEN_SECONDS * 3).unwrap();
    assert!(close(later.throughput_bps.unwrap(), 8e6 / 1.5));
    assert!(close(later.throughput_weight, 0.375), "{later:?}");
}

#[test]
fn cmcd_throughput_joins_tcp_throughput_and_starvation_is_a_share() {
    let start = Instant::now();
    let mut aggregator = Aggregator::new(config(10));
    let home = prefix("2001:db8:1::/48");
    aggregator.record_tcp(home, &tcp(250_000, 5, 5), start);
    let starved = Cmcd {
        measured_throughput_kbps: Some(1000),
        buffer_length_ms: Some(0),
        buffer_starvation: true,
        ..Cmcd::default()
    };
    let fine = Cmcd {
        buffer_length_ms: Some(12_000),
        ..Cmcd::default()
    };
    aggregator.record_cmcd(home, &starved, start);
    aggregator.record_cmcd(home, &fine, start + TEN_SECONDS);
    let estimate = aggregator.estimate(home, start + TEN_SECONDS).unwrap();
    // Throughput: 2 Mbit/s (TCP) and 1 Mbit/s (mtp) at t = 0, nothing
    // since: (2e6 + 1e6) / 2, weight 2 × 0.5.
    assert!(
        close(estimate.throughput_bps.unwrap(), 1.5e6),
        "{estimate:?}"
    );
    assert!(close(estimate.throughput_weight, 1.0), "{estimate:?}");
    // Starvation: 1 at t = 0, 0 at t = 10 s: (1 × 0.5 + 0) / 1.5.
    assert!(
        close(estimate.starvation_share.unwrap(), 0.5 / 1.5),
        "{estimate:?}"
    );
    assert!(close(estimate.rtt_inflation_ms.unwrap(), 0.0));
}

#[test]
fn app_limited_samples_and_empty_reports_add_nothing() {
    let start = Instant::now();
    let mut aggregator = Aggregator::new(config(10));
    let home = prefix("203.0.113.0/24");
    let mut limited = tcp(9_000_000, 1, 2);
    limited.app_limited = true;
    aggregator.record_tcp(home, &limited, start);
    aggregator.record_cmcd(home, &Cmcd::default(), start);
    assert_eq!(aggregator.estimate(home, start), None);
    assert_eq!(aggregator.app_limited_dropped(), 1);
    assert!(aggregator.is_empty());
}

#[test]
fn a_full_table_evicts_the_least_recently_seen_prefix() {
    let start = Instant::now();
    let mut aggregator = Aggregator::new(config(2));
    let [a, b, c] = [
        prefix("10.0.1.0/24"),
        prefix("10.0.2.0/24"),
        prefix("10.0.3.0/24"),
    ];
    aggregator.record_tcp(a, &tcp(100, 1, 1), start);
    aggregator.record_tcp(b, &tcp(100, 1, 1), start);
    // a is seen again, so b is now the least recently seen.
    aggregator.record_tcp(a, &tcp(100, 1, 1), start);
    aggregator.record_tcp(c, &tcp(100, 1, 1), start);
    assert_eq!(aggregator.len(), 2);
    assert!(aggregator.estimate(a, start).is_some());
    assert!(aggregator.estimate(b, start).is_none());
    assert!(aggregator.estimate(c, start).is_some());
    // With room for none, nothing is kept.
    let mut none = Aggregator::new(config(0));
    none.record_tcp(a, &tcp(100, 1, 1), start);
    assert!(none.is_empty());
}

#[test]
fn a_sample_older_than_the_last_counts_as_the_last() {
    let start = Instant::now();
    let mut aggregator = Aggregator::new(config(10));
    let home = prefix("203.0.113.0/24");
    aggregator.record_tcp(home, &tcp(1000, 1, 1), start + TEN_SECONDS);
    aggregator.record_tcp(home, &tcp(3000, 1, 1), start);
    let estimate = aggregator.estimate(home, start + TEN_SECONDS).unwrap();
    // (8000 + 24000) / 2, no decay between them.
    assert!(
        close(estimate.throughput_bps.unwrap(), 16_000.0),
        "{estimate:?}"
    );
    assert!(close(estimate.throughput_weight, 2.0));
}
