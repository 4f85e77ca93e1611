//! `kinema bench`: a load client that behaves like thousands of viewers and
//! reports what they feel.
//!
//! Each viewer is one async task playing an HLS or DASH stream as a player
//! does (hls.js, dash.js): it has its own downlink (a token bucket on its
//! reads), an ABR rule, a playback buffer and a keep-alive connection, and
//! it records startup time, stalls, bit rate, switches and per-segment
//! download times. Both formats are read into one `presentation` model,
//! so everything after the manifest is the same code. A run
//! starts viewers over a ramp, stops them at a deadline and aggregates
//! their reports into a table, JSON and an HTML page; a capacity search
//! repeats runs to find how many viewers a server carries.
//!
//! What it is not: a media decoder (segments are counted, never parsed), a
//! hammer (paced viewers fetch only when their buffer has room, unless
//! `--saturate`), or a remote load generator (targets are loopback only
//! unless explicitly allowed). It serves nothing, except the synthetic
//! libraries it can publish for tests and benchmarks.

pub mod abr;
pub mod capacity;
pub mod catalogue;
pub mod client;
pub mod config;
pub mod dash;
pub mod hls;
pub mod link;
pub mod metrics;
pub mod presentation;
pub mod report;
pub mod run;
pub mod steering;
pub mod synthetic;
pub mod viewer;

use std::path::PathBuf;

pub use capacity::{CapacityReport, search as capacity_search};
pub use config::{BenchConfig, Bitrate, CapacityConfig};
pub use run::{RunReport, run};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("invalid setting `{key}`: {detail}")]
    Config { key: String, detail: String },
    #[error("cannot load the target: {0}")]
    Target(String),
    #[error("malformed playlist: {0}")]
    Playlist(String),
    #[error("malformed MPD: {0}")]
    Mpd(String),
    /// A well-formed MPD using what the bench does not play (live,
    /// several periods, `SegmentBase`…).
    #[error("unsupported MPD: {0}")]
    MpdUnsupported(String),
    #[error("a viewer task panicked (a bug in kinema bench): {0}")]
    ViewerPanicked(String),
    #[error("cannot write {path}: {detail}")]
    Output { path: PathBuf, detail: String },
    #[error("cannot draw the report's plots: {0}")]
    Plot(String),
    #[error("{path}: {detail}")]
    Io { path: PathBuf, detail: String },
    #[error(transparent)]
    Store(#[from] kinema_store::StoreError),
}
