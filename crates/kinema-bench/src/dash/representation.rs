//! One AdaptationSet's Representations resolved into tracks: what a
//! Representation inherits from the levels above it (`BaseURL`,
//! `SegmentTemplate`, the period's length), and its segment addresses from
//! a template's `duration` or `SegmentTimeline`, with their initialization
//! section. The choice of set and the ladder are `mod.rs`'s and
//! `selection.rs`'s.

use roxmltree::Node;
use url::Url;

use super::MAX_SEGMENTS;
use super::selection::bandwidth_of;
use super::template::TemplateFields;
use super::template::UrlTemplate;
use super::timeline::{TemplateSegments, Timeline, parse_timeline};
use super::xml::{
    at, attribute_u64, base_url, elements, malformed, parse_range, refuse_remote, unsupported,
};
use crate::BenchError;
use crate::presentation::{Part, Segments, Track};

/// What a Representation's track needs from above it.
pub(super) struct Inherited<'a, 'input> {
    pub(super) base: Url,
    pub(super) template: TemplateFields<'a, 'input>,
    /// Length of the period, seconds, when the MPD gives it.
    pub(super) period_seconds: Option<f64>,
}

fn track_of(
    representation: Node,
    id: &str,
    bandwidth: u64,
    above: &Inherited,
) -> Result<Track, BenchError> {
    let base = base_url(&above.base, representation)?;
    let fields = above.template.inherit(representation)?;
    let Some(template) = fields.node else {
        let addressing = ["SegmentBase", "SegmentList"].into_iter().find(|name| {
            representation
                .ancestors()
                .take(3)
                .any(|level| elements(level, name).next().is_some())
        });
        return Err(match addressing {
            Some(name) => unsupported(format!(
                "{}: is addressed by {name}, which kinema bench does not play; package it with SegmentTemplate",
                at(representation)
            )),
            None => malformed(format!(
                "{}: has no SegmentTemplate, here or in its AdaptationSet or Period",
                at(representation)
            )),
        });
    };
    let in_template = |detail: String| malformed(format!("{}: {detail}", at(template)));
    let media_text = fields
        .media
        .ok_or_else(|| in_template("has no media attribute".into()))?;
    let media = UrlTemplate::parse(media_text).map_err(in_template)?;
    let timescale = fields.timescale.unwrap_or(1);
    if timescale == 0 {
        return Err(in_template("timescale must be above 0".into()));
    }
    let offset = fields.presentation_time_offset.unwrap_or(0);
    let period_end = above
        .period_seconds
        .map(|seconds| offset as f64 + seconds * timescale as f64);
    let timeline = match (fields.timeline, fields.duration) {
        // Both should not be given (§5.3.9.2); the timeline is the more
        // exact, and what dash.js follows.
        (Some(timeline), _) => Timeline::Runs(parse_timeline(timeline, period_end)?),
        (None, Some(0)) => return Err(in_template("duration must be above 0".into())),
        (None, Some(duration)) => {
            let period = above.period_seconds.ok_or_else(|| {
                in_template(
                    "duration needs the period's length, but the MPD has no mediaPresentationDuration and the Period no duration"
                        .into(),
                )
            })?;
            let segment_seconds = duration as f64 / timescale as f64;
            // The epsilon keeps a period of exactly N segments (in float)
            // from growing an empty N+1th.
            let count = (period / segment_seconds - 1e-9).ceil().max(1.0);
            if count > MAX_SEGMENTS as f64 {
                return Err(in_template(format!(
                    "{period} s in segments of {segment_seconds} s is more than {MAX_SEGMENTS} segments"
                )));
            }
            let count = count as u64;
            Timeline::Fixed {
                start: offset,
                duration,
                count,
                last_seconds: period - (count - 1) as f64 * segment_seconds,
            }
        }
        (None, None) => {
            return Err(in_template(
                "has neither a SegmentTimeline nor a duration, so its segments cannot be counted"
                    .into(),
            ));
        }
    };
    let segments = TemplateSegments {
        media,
        representation_id: id.to_string(),
        bandwidth,
        start_number: fields.start_number.unwrap_or(1),
        timescale,
        timeline,
    };
    if segments.len() > 1 && !segments.media.varies_per_segment() {
        return Err(in_template(format!(
            "media template {media_text:?} has neither $Number$ nor $Time$, so every segment would be the same URL"
        )));
    }
    let init = match (fields.initialization, fields.initialization_element) {
        (Some(text), _) => {
            let template = UrlTemplate::parse(text).map_err(in_template)?;
            if template.varies_per_segment() {
                return Err(in_template(format!(
                    "initialization template {text:?} may not use $Number$ or $Time$"
                )));
            }
            Some(Part {
                uri: template.render(id, 0, bandwidth, 0),
                range: None,
            })
        }
        (None, Some(element)) => Some(Part {
            // Without sourceURL the init section is a range of the base.
            uri: element
                .attribute("sourceURL")
                .unwrap_or_default()
                .to_string(),
            range: element
                .attribute("range")
                .map(|range| parse_range(element, range))
                .transpose()?,
        }),
        (None, None) => None,
    };
    Ok(Track {
        base,
        init,
        segments: Segments::Template(segments),
    })
}

/// One Representation, read.
pub(super) struct Read {
    pub(super) id: String,
    pub(super) bandwidth: u64,
    pub(super) resolution: Option<(u32, u32)>,
    pub(super) track: Track,
}

pub(super) fn read_set(set: Node, above: &Inherited) -> Result<Vec<Read>, BenchError> {
    refuse_remote(set)?;
    let inherited = Inherited {
        base: base_url(&above.base, set)?,
        template: above.template.inherit(set)?,
        period_seconds: above.period_seconds,
    };
    let mut read = Vec::new();
    for representation in elements(set, "Representation") {
        let id = representation.attribute("id").ok_or_else(|| {
            malformed(format!(
                "{}: has no id (ISO/IEC 23009-1 requires one)",
                at(representation)
            ))
        })?;
        let bandwidth = bandwidth_of(representation)?;
        let dimension = |name: &str| -> Result<Option<u32>, BenchError> {
            let node = if representation.has_attribute(name) {
                representation
            } else {
                set
            };
            attribute_u64(node, name)?
                .map(|value| {
                    u32::try_from(value).map_err(|_| {
                        malformed(format!("{}: {name}={value} is too large", at(node)))
                    })
                })
                .transpose()
        };
        let resolution = match (dimension("width")?, dimension("height")?) {
            (Some(width), Some(height)) => Some((width, height)),
            _ => None,
        };
        read.push(Read {
            id: id.to_string(),
            bandwidth,
            resolution,
            track: track_of(representation, id, bandwidth, &inherited)?,
        });
    }
    Ok(read)
}
