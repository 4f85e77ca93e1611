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
use crate::hls::ByteRange;
use crate::presentation::{Format, Part, Presentation, Rendition, Segments, Track, TrackSource};

mod duration;
mod steering;
mod template;
mod timeline;

pub use duration::parse_duration;
pub use template::UrlTemplate;
pub use timeline::TemplateSegments;

use template::TemplateFields;
use timeline::{Timeline, parse_timeline};

/// Most segments one Representation may list: a day of 0.1 s segments.
/// A larger timeline is a mistake (or an attack), not a video.
pub const MAX_SEGMENTS: u64 = 1_000_000;
const XLINK_NAMESPACE: &str = "http://www.w3.org/1999/xlink";

fn malformed(detail: impl Into<String>) -> BenchError {
    BenchError::Mpd(detail.into())
}

fn unsupported(detail: impl Into<String>) -> BenchError {
    BenchError::MpdUnsupported(detail.into())
}

/// Where an element is, for messages: `line 7: Representation "v360"`.
fn at(node: Node) -> String {
    let line = node.document().text_pos_at(node.range().start).row;
    let name = node.tag_name().name();
    match node.attribute("id") {
        Some(id) => format!("line {line}: {name} {id:?}"),
        None => format!("line {line}: {name}"),
    }
}

/// Child elements called `name` (any namespace: MPDs are written both with
/// and without the DASH namespace).
fn elements<'a, 'input>(
    node: Node<'a, 'input>,
    name: &'static str,
) -> impl Iterator<Item = Node<'a, 'input>> {
    node.children()
        .filter(move |child| child.is_element() && child.tag_name().name() == name)
}

fn attribute_u64(node: Node, name: &str) -> Result<Option<u64>, BenchError> {
    node.attribute(name)
        .map(|value| {
            value.trim().parse::<u64>().map_err(|_| {
                malformed(format!(
                    "{}: {name}={value:?} is not a whole number",
                    at(node)
                ))
            })
        })
        .transpose()
}

fn attribute_duration(node: Node, name: &str) -> Result<Option<f64>, BenchError> {
    node.attribute(name)
        .map(|value| {
            parse_duration(value)
                .map_err(|detail| malformed(format!("{}: {name}: {detail}", at(node))))
        })
        .transpose()
}

fn refuse_remote(node: Node) -> Result<(), BenchError> {
    if node.attribute((XLINK_NAMESPACE, "href")).is_some() {
        return Err(unsupported(format!(
            "{}: remote elements (xlink:href) are not supported; inline them in the MPD",
            at(node)
        )));
    }
    Ok(())
}

/// Resolves the first `BaseURL` child of `element` against `parent`.
fn base_url(parent: &Url, element: Node) -> Result<Url, BenchError> {
    let Some(node) = elements(element, "BaseURL").next() else {
        return Ok(parent.clone());
    };
    let reference = node.text().unwrap_or_default().trim();
    parent.join(reference).map_err(|error| {
        malformed(format!(
            "{}: BaseURL {reference:?} is not a valid reference from {parent}: {error}",
            at(node)
        ))
    })
}

/// `a-b` (inclusive, as HTTP) → a byte range.
fn parse_range(node: Node, text: &str) -> Result<ByteRange, BenchError> {
    let bad = || malformed(format!("{}: range {text:?} is not FIRST-LAST", at(node)));
    let (first, last) = text.trim().split_once('-').ok_or_else(bad)?;
    let first: u64 = first.parse().map_err(|_| bad())?;
    let last: u64 = last.parse().map_err(|_| bad())?;
    if last < first {
        return Err(bad());
    }
    Ok(ByteRange {
        offset: first,
        length: last - first + 1,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Video,
    Audio,
    Other,
}

/// What an AdaptationSet carries: `contentType`, else the MIME type of the
/// set or of its first Representation, else `ContentComponent`, else the
/// codec's four-character code.
fn kind_of(set: Node) -> Kind {
    let from_word = |word: &str| match word {
        "video" => Kind::Video,
        "audio" => Kind::Audio,
        _ => Kind::Other,
    };
    if let Some(content_type) = set.attribute("contentType") {
        return from_word(content_type);
    }
    let first = elements(set, "Representation").next();
    let inherited = |name: &str| {
        set.attribute(name)
            .or_else(|| first.and_then(|r| r.attribute(name)))
    };
    if let Some(mime) = inherited("mimeType") {
        return from_word(mime.split('/').next().unwrap_or_default());
    }
    if let Some(component) =
        elements(set, "ContentComponent").find_map(|component| component.attribute("contentType"))
    {
        return from_word(component);
    }
    let codec = inherited("codecs").unwrap_or_default();
    let fourcc = codec.split('.').next().unwrap_or_default();
    match fourcc {
        "avc1" | "avc3" | "hvc1" | "hev1" | "dvh1" | "dvhe" | "vp08" | "vp09" | "av01" => {
            Kind::Video
        }
        "mp4a" | "ac-3" | "ec-3" | "ac-4" | "opus" | "Opus" | "flac" | "fLaC" => Kind::Audio,
        _ => Kind::Other,
    }
}

fn bandwidth_of(representation: Node) -> Result<u64, BenchError> {
    attribute_u64(representation, "bandwidth")?.ok_or_else(|| {
        malformed(format!(
            "{}: has no bandwidth attribute (ISO/IEC 23009-1 requires one)",
            at(representation)
        ))
    })
}

/// dash.js's default choice among sets of one kind: highest
/// `selectionPriority` (default 1), then highest top bandwidth, then most
/// Representations, then the first.
fn choose_set<'a, 'input>(
    sets: &[Node<'a, 'input>],
) -> Result<Option<Node<'a, 'input>>, BenchError> {
    let mut best: Option<((u64, u64, usize), Node)> = None;
    for set in sets {
        let priority = attribute_u64(*set, "selectionPriority")?.unwrap_or(1);
        let mut top = 0;
        let mut count = 0;
        for representation in elements(*set, "Representation") {
            top = top.max(bandwidth_of(representation)?);
            count += 1;
        }
        if count == 0 {
            continue;
        }
        let key = (priority, top, count);
        if best.as_ref().is_none_or(|(best_key, _)| key > *best_key) {
            best = Some((key, *set));
        }
    }
    Ok(best.map(|(_, set)| set))
}

/// What a Representation's track needs from above it.
struct Inherited<'a, 'input> {
    base: Url,
    template: TemplateFields<'a, 'input>,
    /// Length of the period, seconds, when the MPD gives it.
    period_seconds: Option<f64>,
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
struct Read {
    id: String,
    bandwidth: u64,
    resolution: Option<(u32, u32)>,
    track: Track,
}

fn read_set(set: Node, above: &Inherited) -> Result<Vec<Read>, BenchError> {
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

#[cfg(test)]
mod tests {
    use super::duration::{SECONDS_IN_MONTH, SECONDS_IN_YEAR};
    use super::*;

    /// Found by fuzzing: a video bandwidth near u64::MAX plus the audio's
    /// overflowed (a panic in debug builds) while the ladder was summed.
    #[test]
    fn bandwidths_near_the_top_of_u64_saturate_instead_of_overflowing() {
        let mpd = r#"<MPD mediaPresentationDuration="PT4S"><Period>
  <SegmentTemplate media="$RepresentationID$/$Number$.m4s" duration="1"/>
  <AdaptationSet contentType="video"><Representation id="v" bandwidth="18446744073709551615"/></AdaptationSet>
  <AdaptationSet contentType="audio"><Representation id="a" bandwidth="64000"/></AdaptationSet>
</Period></MPD>"#;
        let presentation = parse(mpd, &url("http://127.0.0.1/v/x/manifest.mpd")).unwrap();
        assert_eq!(presentation.renditions[0].bandwidth, u64::MAX);
    }

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    fn track(presentation: &Presentation, rung: usize) -> &Track {
        presentation.renditions[rung].media.loaded().unwrap()
    }

    /// Checks every segment of `track` as (URI, duration rounded to the
    /// microsecond), in order.
    #[track_caller]
    fn assert_segments(track: &Track, expected: &[(&str, f64)]) {
        let segments: Vec<(String, f64)> = (0..track.len())
            .map(|index| {
                let segment = track.segment(index).unwrap();
                (segment.uri, (segment.duration_seconds * 1e6).round() / 1e6)
            })
            .collect();
        let expected: Vec<(String, f64)> = expected
            .iter()
            .map(|(uri, seconds)| (uri.to_string(), *seconds))
            .collect();
        assert_eq!(segments, expected);
    }

    fn error(text: &str) -> String {
        parse(text, &url("http://127.0.0.1/v/clip/manifest.mpd"))
            .unwrap_err()
            .to_string()
    }

    /// What kinema-media's `dash::mpd` writes (its snapshot test, with a
    /// second video rung).
    const KINEMA: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="urn:mpeg:dash:profile:isoff-live:2011" type="static" mediaPresentationDuration="PT9.000S" maxSegmentDuration="PT5S" minBufferTime="PT5S">
  <Period id="0" start="PT0S">
    <AdaptationSet id="0" contentType="video" mimeType="video/mp4" segmentAlignment="true" startWithSAP="1" maxWidth="1280" maxHeight="720">
      <Representation id="v720" codecs="avc1.64001f" bandwidth="2500000" width="1280" height="720" sar="1:1" frameRate="25">
        <SegmentTemplate timescale="1000" initialization="v720/init.mp4" media="v720/$Number$.m4s" startNumber="1">
          <SegmentTimeline>
            <S t="0" d="4000" r="1"/>
            <S d="1000"/>
          </SegmentTimeline>
        </SegmentTemplate>
      </Representation>
      <Representation id="v360" codecs="avc1.64001e" bandwidth="800000" width="640" height="360" sar="1:1" frameRate="25">
        <SegmentTemplate timescale="1000" initialization="v360/init.mp4" media="v360/$Number$.m4s" startNumber="1">
          <SegmentTimeline>
            <S t="0" d="4000" r="1"/>
            <S d="1000"/>
          </SegmentTimeline>
        </SegmentTemplate>
      </Representation>
    </AdaptationSet>
    <AdaptationSet id="1" contentType="audio" mimeType="audio/mp4" lang="und" segmentAlignment="true" startWithSAP="1">
      <Representation id="a64" codecs="mp4a.40.2" bandwidth="64338" audioSamplingRate="48000">
        <AudioChannelConfiguration schemeIdUri="urn:mpeg:dash:23003:3:audio_channel_configuration:2011" value="2"/>
        <SegmentTemplate timescale="1000" initialization="a64/init.mp4" media="a64/$Number$.m4s" startNumber="1">
          <SegmentTimeline>
            <S t="0" d="4021"/>
            <S d="3979"/>
            <S d="1000"/>
          </SegmentTimeline>
        </SegmentTemplate>
      </Representation>
    </AdaptationSet>
  </Period>
</MPD>
"#;

    #[test]
    fn reads_the_mpd_kinema_writes() {
        let presentation =
            parse(KINEMA, &url("http://127.0.0.1:8080/v/clip/manifest.mpd")).unwrap();
        assert_eq!(presentation.format, Format::Dash);
        assert_eq!(presentation.duration_seconds, Some(9.0));
        let ids: Vec<&str> = presentation
            .renditions
            .iter()
            .map(|r| r.id.as_str())
            .collect();
        assert_eq!(ids, ["v360", "v720"], "ascending by bandwidth");
        // Video plus the audio played beside it.
        assert_eq!(presentation.renditions[0].bandwidth, 800_000 + 64_338);
        assert_eq!(presentation.renditions[1].resolution, Some((1280, 720)));
        let low = track(&presentation, 0);
        assert_eq!(
            low.base.as_str(),
            "http://127.0.0.1:8080/v/clip/manifest.mpd"
        );
        assert_eq!(low.init.as_ref().unwrap().uri, "v360/init.mp4");
        assert_segments(
            low,
            &[
                ("v360/1.m4s", 4.0),
                ("v360/2.m4s", 4.0),
                ("v360/3.m4s", 1.0),
            ],
        );
        assert_eq!(low.duration_seconds(), 9.0);
        assert_eq!(presentation.audio.len(), 1);
        assert!(presentation.renditions.iter().all(|r| r.audio == Some(0)));
        let audio = presentation.audio[0].loaded().unwrap();
        assert_eq!(audio.init.as_ref().unwrap().uri, "a64/init.mp4");
        assert_segments(
            audio,
            &[
                ("a64/1.m4s", 4.021),
                ("a64/2.m4s", 3.979),
                ("a64/3.m4s", 1.0),
            ],
        );
    }

    /// What ffmpeg 5.1 `-f dash` writes around the one Period of a 5 s
    /// clip: the same in each of its modes, so only the Period is spelled
    /// out per fixture.
    macro_rules! ffmpeg_mpd {
        ($period:literal) => {
            concat!(
                r#"<?xml version="1.0" encoding="utf-8"?>
<MPD xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
	xmlns="urn:mpeg:dash:schema:mpd:2011"
	xmlns:xlink="http://www.w3.org/1999/xlink"
	xsi:schemaLocation="urn:mpeg:DASH:schema:MPD:2011 http://standards.iso.org/ittf/PubliclyAvailableStandards/MPEG-DASH_schema_files/DASH-MPD.xsd"
	profiles="urn:mpeg:dash:profile:isoff-live:2011"
	type="static"
	mediaPresentationDuration="PT5.0S"
	maxSegmentDuration="PT2.0S"
	minBufferTime="PT4.0S">
	<ProgramInformation>
	</ProgramInformation>
	<ServiceDescription id="0">
	</ServiceDescription>
	<Period id="0" start="PT0.0S">
"#,
                $period,
                "\t</Period>\n</MPD>\n"
            )
        };
    }

    /// The video segments both ffmpeg MPDs describe, with a timeline or
    /// with a duration: 5 s in 2 s segments, the third cut short where
    /// the period ends.
    const FFMPEG_VIDEO_SEGMENTS: [(&str, f64); 3] = [
        ("chunk-stream0-00001.m4s", 2.0),
        ("chunk-stream0-00002.m4s", 2.0),
        ("chunk-stream0-00003.m4s", 1.0),
    ];

    /// ffmpeg 5.1 `-f dash -seg_duration 2` of a 5 s clip, two video
    /// streams and one audio (its default: one AdaptationSet per stream).
    const FFMPEG_TIMELINE: &str = ffmpeg_mpd!(
        r#"		<AdaptationSet id="0" contentType="video" startWithSAP="1" segmentAlignment="true" bitstreamSwitching="true" frameRate="25/1" maxWidth="320" maxHeight="180" par="16:9">
			<Representation id="0" mimeType="video/mp4" codecs="avc1.42c00d" bandwidth="200000" width="320" height="180" sar="1:1">
				<SegmentTemplate timescale="12800" initialization="init-stream$RepresentationID$.m4s" media="chunk-stream$RepresentationID$-$Number%05d$.m4s" startNumber="1">
					<SegmentTimeline>
						<S t="0" d="25600" r="1" />
						<S d="12800" />
					</SegmentTimeline>
				</SegmentTemplate>
			</Representation>
		</AdaptationSet>
		<AdaptationSet id="1" contentType="video" startWithSAP="1" segmentAlignment="true" bitstreamSwitching="true" frameRate="25/1" maxWidth="160" maxHeight="90" par="16:9">
			<Representation id="1" mimeType="video/mp4" codecs="avc1.42c00c" bandwidth="100000" width="160" height="90" sar="1:1">
				<SegmentTemplate timescale="12800" initialization="init-stream$RepresentationID$.m4s" media="chunk-stream$RepresentationID$-$Number%05d$.m4s" startNumber="1">
					<SegmentTimeline>
						<S t="0" d="25600" r="1" />
						<S d="12800" />
					</SegmentTimeline>
				</SegmentTemplate>
			</Representation>
		</AdaptationSet>
		<AdaptationSet id="2" contentType="audio" startWithSAP="1" segmentAlignment="true" bitstreamSwitching="true">
			<Representation id="2" mimeType="audio/mp4" codecs="mp4a.40.2" bandwidth="64000" audioSamplingRate="44100">
				<AudioChannelConfiguration schemeIdUri="urn:mpeg:dash:23003:3:audio_channel_configuration:2011" value="1" />
				<SegmentTemplate timescale="44100" initialization="init-stream$RepresentationID$.m4s" media="chunk-stream$RepresentationID$-$Number%05d$.m4s" startNumber="1">
					<SegmentTimeline>
						<S t="0" d="88064" />
						<S d="89088" />
						<S d="43348" />
					</SegmentTimeline>
				</SegmentTemplate>
			</Representation>
		</AdaptationSet>
"#
    );

    #[test]
    fn reads_ffmpegs_segment_timeline() {
        let presentation = parse(FFMPEG_TIMELINE, &url("http://127.0.0.1/d/manifest.mpd")).unwrap();
        // Two video AdaptationSets: dash.js plays the one with the higher
        // top bandwidth, a one-rung ladder.
        assert_eq!(presentation.renditions.len(), 1);
        let rung = &presentation.renditions[0];
        assert_eq!(rung.id, "0");
        assert_eq!(rung.bandwidth, 200_000 + 64_000);
        assert_eq!(rung.resolution, Some((320, 180)));
        let video = track(&presentation, 0);
        assert_eq!(video.init.as_ref().unwrap().uri, "init-stream0.m4s");
        assert_segments(video, &FFMPEG_VIDEO_SEGMENTS);
        let audio = presentation.audio[0].loaded().unwrap();
        assert_segments(
            audio,
            &[
                ("chunk-stream2-00001.m4s", 1.996916),
                ("chunk-stream2-00002.m4s", 2.020136),
                ("chunk-stream2-00003.m4s", 0.982948),
            ],
        );
    }

    /// ffmpeg 5.1 `-f dash -seg_duration 2 -use_timeline 0` of a 5 s clip.
    const FFMPEG_DURATION: &str = ffmpeg_mpd!(
        r#"		<AdaptationSet id="0" contentType="video" startWithSAP="1" segmentAlignment="true" bitstreamSwitching="true" frameRate="25/1" maxWidth="320" maxHeight="180" par="16:9">
			<Representation id="0" mimeType="video/mp4" codecs="avc1.42c00d" bandwidth="200000" width="320" height="180" sar="1:1">
				<SegmentTemplate timescale="1000000" duration="2000000" initialization="init-stream$RepresentationID$.m4s" media="chunk-stream$RepresentationID$-$Number%05d$.m4s" startNumber="1">
				</SegmentTemplate>
			</Representation>
		</AdaptationSet>
		<AdaptationSet id="1" contentType="audio" startWithSAP="1" segmentAlignment="true" bitstreamSwitching="true">
			<Representation id="1" mimeType="audio/mp4" codecs="mp4a.40.2" bandwidth="64000" audioSamplingRate="44100">
				<AudioChannelConfiguration schemeIdUri="urn:mpeg:dash:23003:3:audio_channel_configuration:2011" value="1" />
				<SegmentTemplate timescale="1000000" duration="2000000" initialization="init-stream$RepresentationID$.m4s" media="chunk-stream$RepresentationID$-$Number%05d$.m4s" startNumber="1">
				</SegmentTemplate>
			</Representation>
		</AdaptationSet>
"#
    );

    #[test]
    fn reads_ffmpegs_segment_duration() {
        let presentation = parse(FFMPEG_DURATION, &url("http://127.0.0.1/d/manifest.mpd")).unwrap();
        let video = track(&presentation, 0);
        // A duration gives no count: the period's end cuts the third short.
        assert_segments(video, &FFMPEG_VIDEO_SEGMENTS);
        assert_eq!(video.segment(3), None);
        assert_eq!(video.duration_seconds(), 5.0);
        let audio = presentation.audio[0].loaded().unwrap();
        assert_eq!(audio.segment(2).unwrap().uri, "chunk-stream1-00003.m4s");
    }

    #[test]
    fn base_urls_resolve_level_by_level_like_rfc_3986() {
        let mpd = r#"<MPD type="static" mediaPresentationDuration="PT4S">
  <BaseURL>http://127.0.0.2/root/</BaseURL>
  <Period>
    <BaseURL>p1/</BaseURL>
    <AdaptationSet mimeType="video/mp4">
      <BaseURL>../video/</BaseURL>
      <SegmentTemplate media="$RepresentationID$-$Number$.m4s" initialization="$RepresentationID$-init.m4s" duration="2"/>
      <Representation id="hd" bandwidth="3000000">
        <BaseURL>720/?token=t</BaseURL>
      </Representation>
      <Representation id="sd" bandwidth="800000">
        <BaseURL>/elsewhere/</BaseURL>
      </Representation>
      <Representation id="same" bandwidth="100000"/>
    </AdaptationSet>
  </Period>
</MPD>"#;
        let presentation = parse(mpd, &url("http://127.0.0.1/v/clip/manifest.mpd")).unwrap();
        let base = |rung: usize| track(&presentation, rung).base.to_string();
        assert_eq!(base(0), "http://127.0.0.2/root/video/");
        assert_eq!(base(1), "http://127.0.0.2/elsewhere/");
        assert_eq!(base(2), "http://127.0.0.2/root/video/720/?token=t");
        // A segment reference resolves against its base (a relative
        // reference drops the base's query).
        let hd = track(&presentation, 2);
        let first = hd.base.join(&hd.segment(0).unwrap().uri).unwrap();
        assert_eq!(first.as_str(), "http://127.0.0.2/root/video/720/hd-1.m4s");

        // A relative MPD BaseURL resolves against the MPD's own URL.
        let mpd = r#"<MPD mediaPresentationDuration="PT2S"><BaseURL>media</BaseURL><Period>
  <AdaptationSet contentType="video"><Representation id="r" bandwidth="1">
    <SegmentTemplate media="r/$Number$.m4s" duration="2"/>
  </Representation></AdaptationSet></Period></MPD>"#;
        let presentation = parse(mpd, &url("http://127.0.0.1/v/clip/manifest.mpd?x=1")).unwrap();
        assert_eq!(
            track(&presentation, 0).base.as_str(),
            "http://127.0.0.1/v/clip/media"
        );
    }

    #[test]
    fn templates_format_numbers_times_and_bandwidths() {
        let render = |text: &str| {
            UrlTemplate::parse(text)
                .unwrap()
                .render("v 1", 42, 800_000, 90_000)
        };
        assert_eq!(render("$RepresentationID$/$Number$.m4s"), "v 1/42.m4s");
        assert_eq!(render("seg-$Number%05d$.m4s"), "seg-00042.m4s");
        assert_eq!(render("seg-$Number%01d$.m4s"), "seg-42.m4s");
        assert_eq!(
            render("$Bandwidth$/$Time%010d$.m4s"),
            "800000/0000090000.m4s"
        );
        assert_eq!(render("price$$-$Time$"), "price$-90000");
        assert_eq!(render("plain.mp4"), "plain.mp4");
        let error = |text: &str| UrlTemplate::parse(text).unwrap_err();
        assert!(error("seg-$Number.m4s").contains("never closed"));
        assert!(error("$SubNumber$.m4s").contains("$SubNumber$"));
        assert!(error("$Number%5d$.m4s").contains("%0[width]d"));
        assert!(error("$Number%05x$.m4s").contains("%0[width]d"));
        assert!(error("$RepresentationID%02d$").contains("no format tag"));
        assert!(error("$Number%0999d$").contains("wider"));
    }

    #[test]
    fn iso_8601_durations() {
        let cases = [
            ("PT1M3.5S", 63.5),
            ("PT9.040S", 9.04),
            ("PT0S", 0.0),
            ("PT0H0M10.000S", 10.0),
            ("P1DT2H", 93_600.0),
            ("P0Y0M0DT0H1M0S", 60.0),
            ("PT2H", 7200.0),
            ("P1Y", SECONDS_IN_YEAR),
            ("P1M", SECONDS_IN_MONTH),
            ("PT1M", 60.0),
            (" PT5S ", 5.0),
        ];
        for (text, seconds) in cases {
            let parsed = parse_duration(text).unwrap();
            assert!((parsed - seconds).abs() < 1e-9, "{text}: {parsed}");
        }
        for (text, why) in [
            ("", "start with P"),
            ("5S", "start with P"),
            ("P", "no component"),
            ("PT", "T is not followed"),
            ("PT1.5", "no designator"),
            ("PT5S3M", "out of order"),
            ("P1W", "unknown"),
            ("-PT1S", "negative"),
            ("PT1..5S", "not a number"),
            ("P1H", "unknown or out of order"),
        ] {
            let error = parse_duration(text).unwrap_err();
            assert!(error.contains(why), "{text}: {error}");
        }
    }

    #[test]
    fn timeline_repeats_to_the_next_start_or_the_period_end() {
        let mpd = r#"<MPD mediaPresentationDuration="PT10S"><Period>
  <AdaptationSet contentType="video">
    <SegmentTemplate timescale="10" media="$Time$.m4s" presentationTimeOffset="100">
      <SegmentTimeline>
        <S t="100" d="20" r="-1"/>
        <S t="140" d="15"/>
        <S t="160" d="20" r="-1"/>
      </SegmentTimeline>
    </SegmentTemplate>
    <Representation id="v" bandwidth="1000"/>
  </AdaptationSet></Period></MPD>"#;
        let presentation = parse(mpd, &url("http://127.0.0.1/m.mpd")).unwrap();
        // 100..140 in 2 s steps, 1.5 s at 140, a 0.5 s gap, then 2 s
        // segments from 160 to the period's end at 100 + 10 s × 10 = 200.
        assert_segments(
            track(&presentation, 0),
            &[
                ("100.m4s", 2.0),
                ("120.m4s", 2.0),
                ("140.m4s", 1.5),
                ("160.m4s", 2.0),
                ("180.m4s", 2.0),
            ],
        );
    }

    #[test]
    fn the_set_dash_js_would_choose_is_played() {
        let mpd = r#"<MPD mediaPresentationDuration="PT2S"><Period>
  <SegmentTemplate media="$RepresentationID$/$Number$.m4s" duration="1"/>
  <AdaptationSet contentType="video"><Representation id="big" bandwidth="9000000"/></AdaptationSet>
  <AdaptationSet contentType="video" selectionPriority="2">
    <Representation id="a" bandwidth="300000"/><Representation id="b" bandwidth="600000"/>
  </AdaptationSet>
  <AdaptationSet contentType="text"><Representation id="subs" bandwidth="1"/></AdaptationSet>
  <AdaptationSet mimeType="audio/mp4">
    <Representation id="a128" bandwidth="128000"/><Representation id="a64" bandwidth="64000"/>
  </AdaptationSet>
</Period></MPD>"#;
        let presentation = parse(mpd, &url("http://127.0.0.1/m.mpd")).unwrap();
        let ladder: Vec<(&str, u64)> = presentation
            .renditions
            .iter()
            .map(|r| (r.id.as_str(), r.bandwidth))
            .collect();
        // selectionPriority first; the audio set's lowest Representation.
        assert_eq!(ladder, [("a", 364_000), ("b", 664_000)]);
        let audio = presentation.audio[0].loaded().unwrap();
        assert_eq!(audio.segment(1).unwrap().uri, "a64/2.m4s");

        // Audio only: the audio Representations are the ladder.
        let mpd = r#"<MPD mediaPresentationDuration="PT2S"><Period>
  <AdaptationSet codecs="mp4a.40.2"><SegmentTemplate media="$RepresentationID$/$Number$.m4s" duration="1"/>
    <Representation id="a128" bandwidth="128000"/><Representation id="a64" bandwidth="64000"/>
  </AdaptationSet></Period></MPD>"#;
        let presentation = parse(mpd, &url("http://127.0.0.1/m.mpd")).unwrap();
        assert_eq!(presentation.renditions.len(), 2);
        assert!(presentation.audio.is_empty());
        assert_eq!(presentation.renditions[0].audio, None);
    }

    #[test]
    fn initialization_element_with_a_range() {
        let mpd = r#"<MPD mediaPresentationDuration="PT2S"><Period><AdaptationSet contentType="video">
  <Representation id="v" bandwidth="1"><BaseURL>v.mp4</BaseURL>
    <SegmentTemplate media="v-$Number$.m4s" duration="1"><Initialization range="0-999"/></SegmentTemplate>
  </Representation></AdaptationSet></Period></MPD>"#;
        let presentation = parse(mpd, &url("http://127.0.0.1/m.mpd")).unwrap();
        let init = track(&presentation, 0).init.clone().unwrap();
        assert_eq!(init.uri, "");
        assert_eq!(
            init.range,
            Some(ByteRange {
                offset: 0,
                length: 1000
            })
        );
    }

    /// A minimal valid MPD with `representation` and `template` swapped in.
    fn with(representation: &str, template: &str) -> String {
        format!(
            r#"<MPD mediaPresentationDuration="PT4S"><Period><AdaptationSet contentType="video">
<Representation {representation}>{template}</Representation></AdaptationSet></Period></MPD>"#
        )
    }

    /// [`with`] a valid Representation (`id="v" bandwidth="1"`) holding
    /// `template`.
    fn with_template(template: &str) -> String {
        with(r#"id="v" bandwidth="1""#, template)
    }

    #[test]
    fn malformed_mpds_are_clear_errors() {
        let ok_template = r#"<SegmentTemplate media="$Number$.m4s" duration="2"/>"#;
        assert!(parse(&with_template(ok_template), &url("http://127.0.0.1/m.mpd")).is_ok());
        let cases: Vec<(String, &str)> = vec![
            ("<MPD><Period>".into(), "not well-formed XML"),
            ("<html/>".into(), "root element is <html>"),
            ("<MPD type=\"dynamic\"/>".into(), "live"),
            ("<MPD type=\"vod\"/>".into(), "neither static nor dynamic"),
            ("<MPD/>".into(), "no Period"),
            ("<MPD><Period/><Period/></MPD>".into(), "2 periods"),
            ("<MPD><Period/></MPD>".into(), "no AdaptationSet with video or audio"),
            (
                "<MPD mediaPresentationDuration=\"5 seconds\"/>".into(),
                "mediaPresentationDuration: \"5 seconds\" is not an ISO 8601 duration",
            ),
            (with(r#"id="v""#, ok_template), "line 2: Representation \"v\": has no bandwidth"),
            (with(r#"id="v" bandwidth="fast""#, ok_template), "bandwidth=\"fast\" is not a whole number"),
            (with(r#"bandwidth="1""#, ok_template), "has no id"),
            (with_template(""), "has no SegmentTemplate"),
            (
                with_template(r#"<SegmentBase indexRange="0-99"/>"#),
                "SegmentBase, which kinema bench does not play",
            ),
            (
                with_template(r#"<SegmentTemplate duration="2"/>"#),
                "has no media attribute",
            ),
            (
                with_template(r#"<SegmentTemplate media="$Number$.m4s"/>"#),
                "neither a SegmentTimeline nor a duration",
            ),
            (
                with_template(r#"<SegmentTemplate media="$Number$.m4s" duration="2" timescale="0"/>"#),
                "timescale must be above 0",
            ),
            (
                with_template(r#"<SegmentTemplate media="all.m4s" duration="1"/>"#),
                "neither $Number$ nor $Time$",
            ),
            (
                with_template(r#"<SegmentTemplate media="$Number$.m4s" initialization="$Number$.mp4" duration="1"/>"#),
                "may not use $Number$",
            ),
            (
                with_template(r#"<SegmentTemplate media="$Nmber$.m4s" duration="1"/>"#),
                "$Nmber$ is not an identifier",
            ),
            (
                with_template(r#"<SegmentTemplate media="$Number$.m4s"><SegmentTimeline/></SegmentTemplate>"#),
                "has no S elements",
            ),
            (
                with_template(r#"<SegmentTemplate media="$Number$.m4s"><SegmentTimeline><S t="0"/></SegmentTimeline></SegmentTemplate>"#),
                "S: needs a duration d above 0",
            ),
            (
                with_template(r#"<SegmentTemplate media="$Number$.m4s"><SegmentTimeline><S t="10" d="10"/><S t="5" d="10"/></SegmentTimeline></SegmentTemplate>"#),
                "starts before the previous segment ends (20)",
            ),
            (
                with_template(r#"<SegmentTemplate media="$Number$.m4s"><SegmentTimeline><S d="10" r="-2"/></SegmentTimeline></SegmentTemplate>"#),
                "S: r=\"-2\" is not",
            ),
            (
                with_template(r#"<SegmentTemplate media="$Number$.m4s"><SegmentTimeline><S d="1" r="5000000"/></SegmentTimeline></SegmentTemplate>"#),
                "more than 1000000 segments",
            ),
            (
                with_template(r#"<SegmentTemplate media="$Number$.m4s"><SegmentTimeline><S t="18446744073709551615" d="10" r="1"/></SegmentTimeline></SegmentTemplate>"#),
                "overflows",
            ),
            (
                "<MPD><Period><AdaptationSet contentType=\"video\"><Representation id=\"v\" bandwidth=\"1\"><SegmentTemplate media=\"$Number$.m4s\" duration=\"2\"/></Representation></AdaptationSet></Period></MPD>".into(),
                "needs the period's length",
            ),
            (
                "<MPD><Period><AdaptationSet contentType=\"video\"><Representation id=\"v\" bandwidth=\"1\"><SegmentTemplate media=\"$Number$.m4s\"><SegmentTimeline><S d=\"1\" r=\"-1\"/></SegmentTimeline></SegmentTemplate></Representation></AdaptationSet></Period></MPD>".into(),
                "whose length the MPD does not give",
            ),
            (
                "<MPD xmlns:xlink=\"http://www.w3.org/1999/xlink\"><Period xlink:href=\"http://127.0.0.1/p.xml\"/></MPD>".into(),
                "xlink:href",
            ),
        ];
        for (mpd, expected) in cases {
            let message = error(&mpd);
            assert!(
                message.contains(expected),
                "{mpd}\n→ {message}\n(expected {expected:?})"
            );
        }
    }
}
