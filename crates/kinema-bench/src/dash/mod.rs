//! DASH MPDs as dash.js reads them (ISO/IEC 23009-1, static presentations
//! addressed by `SegmentTemplate`), turned into the [`Presentation`] every
//! viewer plays.
//!
//! What is read:
//!
//! - `MPD@type` (static only), `MPD@mediaPresentationDuration` and the one
//!   `Period`'s `start` and `duration` (ISO 8601 durations such as `PT1M3.5S`);
//! - `BaseURL` at MPD, Period, AdaptationSet and Representation level, each
//!   resolved against the one above it and the outermost against the MPD's
//!   final URL (RFC 3986 §5; the first `BaseURL` of a level, as dash.js
//!   does without DVB priorities);
//! - `SegmentTemplate` at Period, AdaptationSet and Representation level, a
//!   lower level's attributes and `SegmentTimeline` overriding a higher
//!   one's (§5.3.9.1): `media` and `initialization` with `$RepresentationID$`,
//!   `$Number$`, `$Bandwidth$`, `$Time$` (each but the first with an optional
//!   `%0Nd` width) and `$$`; `startNumber`, `timescale`, `duration`,
//!   `presentationTimeOffset`; `SegmentTimeline` with `S@t`, `S@d`, `S@r`
//!   (including `r="-1"`).
//!
//! Which tracks a viewer plays, as dash.js chooses with its defaults: of the
//! video AdaptationSets, the one with the highest `selectionPriority`, then
//! the highest top bandwidth, then the most Representations, then the first
//! (players switch seamlessly only inside one AdaptationSet, so ffmpeg's
//! default of one set per stream is a one-rung ladder to dash.js and here).
//! Its Representations are the ladder. Audio is fetched beside every video
//! segment, as players do, from the audio AdaptationSet chosen the same way;
//! it is not adapted: the set's lowest-bandwidth Representation plays, and
//! its bandwidth is added to every rung's, so a rung's bandwidth is the
//! whole of what the viewer fetches, as HLS's `BANDWIDTH` is. An MPD
//! without video plays its audio Representations as the ladder.
//! Text and image sets are ignored.
//!
//! What it refuses, with a message saying so: live (`type="dynamic"`) and
//! multi-period MPDs, remote (`xlink:href`) elements, and Representations
//! addressed by `SegmentBase` or `SegmentList` (kinema and ffmpeg's dash
//! muxer write `SegmentTemplate`).

use roxmltree::{Document, Node};
use url::Url;

use crate::BenchError;
use crate::presentation::{Format, Presentation, Rendition, TrackSource};

mod duration;
mod representation;
mod selection;
mod steering;
mod template;
#[cfg(test)]
mod tests;
mod timeline;
mod xml;

pub use duration::parse_duration;
pub use template::UrlTemplate;
pub use timeline::TemplateSegments;

use representation::{Inherited, read_set};
use selection::{Kind, choose_set, kind_of};
use template::TemplateFields;
use xml::{
    at, attribute_duration, attribute_u64, base_url, elements, malformed, refuse_remote,
    unsupported,
};

/// Most segments one Representation may list: a day of 0.1 s segments.
/// A larger timeline is a mistake (or an attack), not a video.
pub const MAX_SEGMENTS: u64 = 1_000_000;

/// Reads an MPD fetched from `mpd_url` (its final URL, after redirects).
/// With `ContentSteering` and MPD-level `BaseURL@serviceLocation`s, every
/// service location becomes a pathway of its own (see `steering`).
pub fn parse(text: &str, mpd_url: &Url) -> Result<Presentation, BenchError> {
    let mut presentation = parse_at(text, mpd_url, None)?;
    steering::add_pathways(&mut presentation, text, mpd_url)?;
    Ok(presentation)
}

/// Reads an MPD as served through `location`: the MPD-level `BaseURL`
/// with that `serviceLocation` is the one used (the first one without).
pub(crate) fn parse_at(
    text: &str,
    mpd_url: &Url,
    location: Option<&str>,
) -> Result<Presentation, BenchError> {
    let document = Document::parse(text.trim_start_matches('\u{feff}'))
        .map_err(|error| malformed(format!("not well-formed XML: {error}")))?;
    let mpd = document.root_element();
    if mpd.tag_name().name() != "MPD" {
        return Err(malformed(format!(
            "the root element is <{}>, not <MPD>",
            mpd.tag_name().name()
        )));
    }
    match mpd.attribute("type").unwrap_or("static") {
        "static" => {}
        "dynamic" => {
            return Err(unsupported(
                "type=\"dynamic\" (live) presentations are not supported; kinema bench plays static (VOD) MPDs",
            ));
        }
        other => {
            return Err(malformed(format!(
                "MPD@type={other:?} is neither static nor dynamic"
            )));
        }
    }
    let presentation_seconds = attribute_duration(mpd, "mediaPresentationDuration")?;
    let periods: Vec<Node> = elements(mpd, "Period").collect();
    let period = match periods.as_slice() {
        [] => return Err(malformed("the MPD has no Period")),
        [period] => *period,
        more => {
            return Err(unsupported(format!(
                "the MPD has {} periods; kinema bench plays single-period presentations",
                more.len()
            )));
        }
    };
    refuse_remote(period)?;
    let period_start = attribute_duration(period, "start")?.unwrap_or(0.0);
    let period_seconds = attribute_duration(period, "duration")?
        .or_else(|| presentation_seconds.map(|total| total - period_start))
        .filter(|seconds| *seconds > 0.0);
    let mpd_base = match location {
        None => base_url(mpd_url, mpd)?,
        Some(location) => steering::base_url_at(mpd_url, mpd, location)?,
    };
    let above = Inherited {
        base: base_url(&mpd_base, period)?,
        template: TemplateFields::default().inherit(period)?,
        period_seconds,
    };

    let sets: Vec<Node> = elements(period, "AdaptationSet").collect();
    let of_kind = |kind: Kind| -> Vec<Node> {
        sets.iter()
            .copied()
            .filter(|set| kind_of(*set) == kind)
            .collect()
    };
    let video = choose_set(&of_kind(Kind::Video))?;
    let audio = choose_set(&of_kind(Kind::Audio))?;
    let (ladder_set, audio_set) = match (video, audio) {
        (Some(video), audio) => (video, audio),
        (None, Some(audio)) => (audio, None),
        (None, None) => {
            return Err(malformed(format!(
                "{}: no AdaptationSet with video or audio Representations",
                at(period)
            )));
        }
    };
    let mut audio_tracks = Vec::new();
    let mut audio_bandwidth = 0;
    if let Some(set) = audio_set {
        let mut read = read_set(set, &above)?;
        // Stable: of equal bandwidths, the first written.
        read.sort_by_key(|representation| representation.bandwidth);
        if let Some(lowest) = read.into_iter().next() {
            audio_bandwidth = lowest.bandwidth;
            audio_tracks.push(TrackSource::Loaded(lowest.track));
        }
    }
    let mut renditions: Vec<Rendition> = read_set(ladder_set, &above)?
        .into_iter()
        .map(|read| Rendition {
            id: read.id,
            // Both are the MPD's own numbers, up to u64::MAX each.
            bandwidth: read.bandwidth.saturating_add(audio_bandwidth),
            resolution: read.resolution,
            media: TrackSource::Loaded(read.track),
            audio: (!audio_tracks.is_empty()).then_some(0),
            stable_id: None,
        })
        .collect();
    renditions.sort_by_key(|rendition| rendition.bandwidth);
    Ok(Presentation {
        format: Format::Dash,
        renditions,
        audio: audio_tracks,
        steering: None,
        steering_warning: None,
        duration_seconds: presentation_seconds.or(period_seconds.map(|s| s + period_start)),
    })
}
