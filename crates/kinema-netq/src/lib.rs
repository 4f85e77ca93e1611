//! Network quality of a node's viewers, measured from what their
//! connections already show, never from probe traffic: `TCP_INFO` samples
//! the listener takes after large responses (`kinema_http::tcp_info`) and
//! the CMCD data players send with their requests ([`cmcd`]).
//!
//! - [`cmcd`] parses CMCD from a request's query and headers, tolerantly.
//! - [`aggregate`] keeps per client prefix (/24, /48, [`prefix`]) decayed
//!   estimates of throughput, RTT inflation and buffer starvation, bounded
//!   in memory, pure given timestamps.
//! - [`summary`] is the few hundred bytes a node gossips: its best- and
//!   worst-served prefixes.
//! - [`choose`] orders nodes of similar load by what they measured for a
//!   viewer's prefix, with a deterministic exploration share.
//! - [`observer`] is the shared, clock-reading table a server feeds.
//!
//! What it is not: a prober, a membership layer or the steering policy.
//! Publishing the summary and calling [`choose`] are the cluster's and
//! steering's business.

pub mod aggregate;
pub mod choose;
pub mod cmcd;
pub mod observer;
pub mod prefix;
pub mod summary;

/// Defaults for wiring a server: sample `TCP_INFO` after bodies of at
/// least 256 KiB (a segment, not a playlist: a small body ends before the
/// connection's rate is measured) ...
pub const DEFAULT_MIN_BODY_BYTES: u64 = 256 * 1024;
/// ... one such response in 4 (a viewer fetches a segment every few
/// seconds, so a prefix still gets a sample every few tens of seconds) ...
pub const DEFAULT_ONE_IN: u32 = 4;
/// ... and send 5% of sessions to the second-best node.
pub const DEFAULT_EXPLORATION_SHARE: f64 = 0.05;

pub use aggregate::{Aggregator, AggregatorConfig, PrefixEstimate};
pub use choose::{Candidate, MeasuredOrder, MeasuredReason, order_by_measurement, similar_load};
pub use cmcd::Cmcd;
pub use observer::{Measuring, MeasuringFigures, NetworkQuality};
pub use prefix::ClientPrefix;
pub use summary::{PrefixFigures, Summary};
