//! The one model of a stream that viewers play, whichever format it came
//! in: a ladder of renditions, each a track of an optional init section and
//! numbered segments with their durations, plus the audio tracks played
//! beside them. The HLS reader (`hls`) and the DASH reader (`dash`) both
//! produce it, so the viewer loop, ABR, buffer and metrics never ask which
//! format they play.
//!
//! What it is not: a player's full model. Codecs, languages, subtitles and
//! DRM are dropped; only what decides which bytes to fetch, and when,
//! stays. Segment URIs stay references against their track's base URL and
//! are resolved by the viewer's `Router` at fetch time, as before; DASH
//! segments are not even written out but made from their template when
//! asked for, so a viewer of a two-hour MPD holds a few hundred bytes per
//! rendition, not thousands of URLs.

use url::Url;

use crate::BenchError;
use crate::client::Router;
use crate::dash::TemplateSegments;
use crate::hls::{self, ByteRange, MediaPlaylist, MultivariantPlaylist, Playlist};
use crate::steering::{MAX_PATHWAYS, valid_pathway_id};

/// The formats a viewer plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// RFC 8216: a multivariant or media playlist.
    Hls,
    /// ISO/IEC 23009-1: a static MPD.
    Dash,
}

/// `application/dash+xml` (ISO/IEC 23009-1 Annex C).
const DASH_MEDIA_TYPE: &str = "application/dash+xml";
/// RFC 8216 §4 names the first; the others are what servers still send.
const HLS_MEDIA_TYPES: [&str; 4] = [
    "application/vnd.apple.mpegurl",
    "application/x-mpegurl",
    "audio/mpegurl",
    "audio/x-mpegurl",
];

impl Format {
    /// The format a `Content-Type` names, if it names one.
    fn of_media_type(content_type: &str) -> Option<Format> {
        let essence = content_type.split(';').next()?.trim().to_ascii_lowercase();
        if essence == DASH_MEDIA_TYPE {
            Some(Format::Dash)
        } else if HLS_MEDIA_TYPES.contains(&essence.as_str()) {
            Some(Format::Hls)
        } else {
            None
        }
    }

    /// The format a document's own first bytes show: `#EXTM3U` first,
    /// or an XML document whose root element is `MPD`.
    fn of_document(body: &[u8]) -> Option<Format> {
        let head = &body[..body.len().min(4096)];
        let head = String::from_utf8_lossy(head);
        let head = head.trim_start_matches('\u{feff}').trim_start();
        if head.starts_with("#EXTM3U") {
            return Some(Format::Hls);
        }
        if head.starts_with('<') {
            // The root element follows the XML declaration, comments and
            // processing instructions; it may carry a namespace prefix.
            let root = head
                .match_indices('<')
                .map(|(at, _)| &head[at + 1..])
                .find(|tag| !tag.starts_with('?') && !tag.starts_with('!'))?;
            let name: String = root
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '>' && *c != '/')
                .collect();
            let local = name.rsplit(':').next().unwrap_or_default();
            if local == "MPD" {
                return Some(Format::Dash);
            }
        }
        None
    }

    /// Decides what a fetched manifest is: the `Content-Type` when it names
    /// a streaming format, else the document itself, so a URL need not end
    /// in `.m3u8` or `.mpd`. A type that contradicts the document is the
    /// server's mistake, and is said so rather than guessed around.
    pub fn detect(content_type: Option<&str>, body: &[u8]) -> Result<Format, BenchError> {
        let declared = content_type.and_then(Format::of_media_type);
        let found = Format::of_document(body);
        match (declared, found) {
            (Some(declared), Some(found)) if declared != found => Err(BenchError::Target(format!(
                "the server sent content type {:?} but the document is {}",
                content_type.unwrap_or_default(),
                match found {
                    Format::Hls => "an HLS playlist (it starts with #EXTM3U)",
                    Format::Dash => "a DASH MPD (its root element is MPD)",
                }
            ))),
            (Some(format), _) | (None, Some(format)) => Ok(format),
            (None, None) => {
                let head = String::from_utf8_lossy(&body[..body.len().min(40)]);
                Err(BenchError::Target(format!(
                    "neither an HLS playlist (#EXTM3U) nor a DASH MPD (<MPD>): content type {}, document starts with {head:?}",
                    content_type.map_or("none".to_string(), |t| format!("{t:?}"))
                )))
            }
        }
    }
}

/// An init section: a reference against its track's base, and the byte
/// range of it when the section shares a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub uri: String,
    pub range: Option<ByteRange>,
}

/// One segment as the viewer fetches it.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentRef {
    pub uri: String,
    pub range: Option<ByteRange>,
    pub duration_seconds: f64,
}

/// How a track's segments are known.
#[derive(Debug, Clone, PartialEq)]
pub enum Segments {
    /// Every segment written out (an HLS media playlist).
    Listed(Vec<hls::Segment>),
    /// A DASH `SegmentTemplate`: each segment made from its index.
    Template(TemplateSegments),
}

/// One playable sequence: what a viewer fetches for one rendition.
#[derive(Debug, Clone, PartialEq)]
pub struct Track {
    /// What the segment and init references are relative to: the media
    /// playlist's final URL, or a Representation's resolved `BaseURL`.
    pub base: Url,
    pub init: Option<Part>,
    pub segments: Segments,
}

impl Track {
    /// The track of an HLS media playlist fetched from `url`.
    pub fn from_media_playlist(playlist: MediaPlaylist, url: Url) -> Track {
        Track {
            base: url,
            init: playlist.init.map(|init| Part {
                uri: init.uri,
                range: init.range,
            }),
            segments: Segments::Listed(playlist.segments),
        }
    }

    /// Number of segments (at least one: both readers refuse empty tracks).
    pub fn len(&self) -> usize {
        match &self.segments {
            Segments::Listed(segments) => segments.len(),
            Segments::Template(template) => template.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Segment `index` (0-based), if the track has that many.
    pub fn segment(&self, index: usize) -> Option<SegmentRef> {
        match &self.segments {
            Segments::Listed(segments) => segments.get(index).map(|segment| SegmentRef {
                uri: segment.uri.clone(),
                range: segment.range,
                duration_seconds: segment.duration_seconds,
            }),
            Segments::Template(template) => template.segment(index),
        }
    }

    /// The sum of the segments' durations.
    pub fn duration_seconds(&self) -> f64 {
        match &self.segments {
            Segments::Listed(segments) => segments.iter().map(|s| s.duration_seconds).sum(),
            Segments::Template(template) => template.duration_seconds(),
        }
    }
}

/// A track as the viewer holds it: loaded, or still to be fetched.
#[derive(Debug, Clone, PartialEq)]
pub enum TrackSource {
    Loaded(Track),
    /// An HLS media playlist, fetched when the viewer first needs this
    /// rendition, as hls.js does. (An MPD carries every track in itself.)
    Playlist(Url),
}

impl TrackSource {
    pub fn loaded(&self) -> Option<&Track> {
        match self {
            TrackSource::Loaded(track) => Some(track),
            TrackSource::Playlist(_) => None,
        }
    }
}

/// One rung of the ladder.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendition {
    /// The variant's URI (HLS) or the Representation's `id` (DASH).
    pub id: String,
    /// Bits per second of everything the viewer fetches for this rung:
    /// HLS `BANDWIDTH` (which covers the variant's audio rendition), or
    /// the DASH video Representation's `bandwidth` plus that of the audio
    /// Representation played beside it. ABR and reports compare it with
    /// links, so it means the same in both formats.
    pub bandwidth: u64,
    pub resolution: Option<(u32, u32)>,
    pub media: TrackSource,
    /// Index into [`Presentation::audio`] of the track fetched beside this
    /// rung's segments.
    pub audio: Option<usize>,
    /// HLS `STABLE-VARIANT-ID`: the same rung on every pathway (DASH
    /// Representations keep their `id` across service locations).
    pub stable_id: Option<String>,
}

/// One pathway's ladder and audio tracks.
#[derive(Debug, Clone, PartialEq)]
pub struct PathwaySet {
    pub id: String,
    pub renditions: Vec<Rendition>,
    pub audio: Vec<TrackSource>,
}

/// A presentation under content steering: where its steering server is,
/// which pathway the manifest starts on, and every pathway's set.
#[derive(Debug, Clone, PartialEq)]
pub struct Steered {
    /// `SERVER-URI` or the `ContentSteering` URL, resolved.
    pub server: Url,
    /// `PATHWAY-ID` or `defaultServiceLocation`.
    pub initial: Option<String>,
    /// At least one, at most [`MAX_PATHWAYS`], ids distinct.
    pub sets: Vec<PathwaySet>,
}

/// What a viewer plays.
#[derive(Debug, Clone, PartialEq)]
pub struct Presentation {
    pub format: Format,
    /// Ascending by bandwidth (stable for equal bandwidths).
    pub renditions: Vec<Rendition>,
    pub audio: Vec<TrackSource>,
    /// Content steering, when the manifest carries steering a viewer can
    /// follow; `renditions` and `audio` are then the initial pathway's.
    pub steering: Option<Steered>,
    /// Why the manifest's steering was ignored, when it was.
    pub steering_warning: Option<String>,
    /// `MPD@mediaPresentationDuration`; HLS says it only in its media
    /// playlists.
    pub duration_seconds: Option<f64>,
}

/// Reads a fetched manifest (`body`, which came from `url` after redirects
/// with `content_type`) into the presentation a viewer plays.
pub fn parse(
    content_type: Option<&str>,
    body: &[u8],
    url: &Url,
    router: &Router,
) -> Result<Presentation, BenchError> {
    match Format::detect(content_type, body)? {
        Format::Hls => {
            let text = String::from_utf8_lossy(body);
            from_hls(hls::parse(&text)?, url, router)
        }
        Format::Dash => {
            let text = std::str::from_utf8(body).map_err(|error| {
                BenchError::Mpd(format!("the document is not UTF-8 text: {error}"))
            })?;
            crate::dash::parse(text, url)
        }
    }
}

/// The presentation of an HLS playlist fetched from `url`.
pub fn from_hls(
    playlist: Playlist,
    url: &Url,
    router: &Router,
) -> Result<Presentation, BenchError> {
    match playlist {
        Playlist::Multivariant(multivariant) => from_multivariant(multivariant, url, router),
        Playlist::Media(media) => {
            // A bare media playlist is a one-rung ladder of unknown
            // bandwidth: estimate it from the segments' durations when they
            // carry byte ranges, else leave it at zero.
            let seconds: f64 = media.segments.iter().map(|s| s.duration_seconds).sum();
            let bytes: u64 = media
                .segments
                .iter()
                .filter_map(|s| s.range.map(|r| r.length))
                .sum();
            let bandwidth = if seconds > 0.0 {
                (bytes as f64 * 8.0 / seconds) as u64
            } else {
                0
            };
            Ok(Presentation {
                format: Format::Hls,
                renditions: vec![Rendition {
                    id: url.to_string(),
                    bandwidth,
                    resolution: None,
                    media: TrackSource::Loaded(Track::from_media_playlist(media, url.clone())),
                    audio: None,
                    stable_id: None,
                }],
                audio: Vec::new(),
                steering: None,
                steering_warning: None,
                duration_seconds: None,
            })
        }
    }
}

fn from_multivariant(
    multivariant: MultivariantPlaylist,
    url: &Url,
    router: &Router,
) -> Result<Presentation, BenchError> {
    let Some(tag) = multivariant.steering.clone() else {
        let (renditions, audio) = ladder_of(&multivariant, None, url, router)?;
        return Ok(Presentation {
            format: Format::Hls,
            renditions,
            audio,
            steering: None,
            steering_warning: None,
            duration_seconds: None,
        });
    };
    // Variants without PATHWAY-ID are on the default pathway ".".
    let mut ids: Vec<String> = Vec::new();
    for variant in &multivariant.variants {
        let id = variant.pathway_id.clone().unwrap_or_else(|| ".".into());
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let problem = if ids.len() > MAX_PATHWAYS {
        Some(format!("more than {MAX_PATHWAYS} pathways"))
    } else if let Some(bad) = ids.iter().find(|id| *id != "." && !valid_pathway_id(id)) {
        Some(format!(
            "pathway id {:?} is not valid",
            bad.chars().take(40).collect::<String>()
        ))
    } else {
        router
            .locate(&tag.server_uri, url)
            .err()
            .map(|error| error.to_string())
    };
    if let Some(problem) = problem {
        // Played as if unsteered: every variant, as before steering.
        let (renditions, audio) = ladder_of(&multivariant, None, url, router)?;
        return Ok(Presentation {
            format: Format::Hls,
            renditions,
            audio,
            steering: None,
            steering_warning: Some(format!("EXT-X-CONTENT-STEERING ignored: {problem}")),
            duration_seconds: None,
        });
    }
    let server = router
        .locate(&tag.server_uri, url)
        .map_err(|error| BenchError::Playlist(error.to_string()))?;
    let mut sets = Vec::with_capacity(ids.len());
    for id in ids {
        let (renditions, audio) = ladder_of(&multivariant, Some(&id), url, router)?;
        sets.push(PathwaySet {
            id,
            renditions,
            audio,
        });
    }
    let initial = tag
        .pathway_id
        .filter(|id| sets.iter().any(|set| set.id == *id));
    let first = initial.as_deref().unwrap_or(&sets[0].id);
    let set = sets
        .iter()
        .find(|set| set.id == first)
        .expect("the first pathway is one of the sets");
    Ok(Presentation {
        format: Format::Hls,
        renditions: set.renditions.clone(),
        audio: set.audio.clone(),
        steering: Some(Steered {
            server,
            initial,
            sets,
        }),
        steering_warning: None,
        duration_seconds: None,
    })
}

/// The ladder of the variants on `pathway` (all of them when `None`) and
/// the audio tracks they name.
fn ladder_of(
    multivariant: &MultivariantPlaylist,
    pathway: Option<&str>,
    url: &Url,
    router: &Router,
) -> Result<(Vec<Rendition>, Vec<TrackSource>), BenchError> {
    let locate = |uri: &str| {
        router
            .locate(uri, url)
            .map_err(|error| BenchError::Playlist(error.to_string()))
    };
    let mut renditions = Vec::with_capacity(multivariant.variants.len());
    let mut audio_urls: Vec<Url> = Vec::new();
    let on_pathway = |variant: &&hls::Variant| match pathway {
        None => true,
        Some(id) => variant.pathway_id.as_deref().unwrap_or(".") == id,
    };
    for variant in multivariant.variants.iter().filter(on_pathway) {
        let audio = match multivariant.audio_for(variant) {
            Some(rendition) => {
                let audio_url = locate(&rendition.uri)?;
                let index = match audio_urls.iter().position(|known| *known == audio_url) {
                    Some(index) => index,
                    None => {
                        audio_urls.push(audio_url);
                        audio_urls.len() - 1
                    }
                };
                Some(index)
            }
            None => None,
        };
        renditions.push(Rendition {
            id: variant.uri.clone(),
            bandwidth: variant.bandwidth,
            resolution: variant.resolution,
            media: TrackSource::Playlist(locate(&variant.uri)?),
            audio,
            stable_id: variant.stable_variant_id.clone(),
        });
    }
    Ok((
        renditions,
        audio_urls.into_iter().map(TrackSource::Playlist).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A master as a kinema edge in a cluster writes it (the steering
    /// crate's fixture, shortened): absolute URIs, a variant set and audio
    /// group per pathway, I-frame and subtitle entries beside them.
    const STEERED: &str = r#"#EXTM3U
#EXT-X-VERSION:7
#EXT-X-CONTENT-STEERING:SERVER-URI="http://10.0.0.3:8080/steer/clip?session=P.S",PATHWAY-ID="n00000000bb"
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio-n00000000aa",NAME="English",DEFAULT=YES,URI="http://10.0.0.2:8080/v/clip/g5/a64/index.m3u8",STABLE-RENDITION-ID="a64"
#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs-n00000000aa",NAME="English",URI="http://10.0.0.2:8080/v/clip/g5/sub0/index.m3u8",STABLE-RENDITION-ID="sub0"
#EXT-X-STREAM-INF:BANDWIDTH=2000000,AUDIO="audio-n00000000aa",SUBTITLES="subs-n00000000aa",PATHWAY-ID="n00000000aa",STABLE-VARIANT-ID="v720"
http://10.0.0.2:8080/v/clip/g5/v720/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=500000,AUDIO="audio-n00000000aa",SUBTITLES="subs-n00000000aa",PATHWAY-ID="n00000000aa",STABLE-VARIANT-ID="v360"
http://10.0.0.2:8080/v/clip/g5/v360/index.m3u8
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=90000,URI="http://10.0.0.2:8080/v/clip/g5/v360/iframes.m3u8",PATHWAY-ID="n00000000aa",STABLE-VARIANT-ID="v360-iframes"
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio-n00000000bb",NAME="English",DEFAULT=YES,URI="http://10.0.0.3:8080/v/clip/g5/a64/index.m3u8",STABLE-RENDITION-ID="a64"
#EXT-X-STREAM-INF:BANDWIDTH=500000,AUDIO="audio-n00000000bb",PATHWAY-ID="n00000000bb",STABLE-VARIANT-ID="v360"
http://10.0.0.3:8080/v/clip/g5/v360/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=2000000,AUDIO="audio-n00000000bb",PATHWAY-ID="n00000000bb",STABLE-VARIANT-ID="v720"
http://10.0.0.3:8080/v/clip/g5/v720/index.m3u8
"#;

    fn read(text: &str) -> Presentation {
        let url = Url::parse("http://10.0.0.3:8080/v/clip/master.m3u8").unwrap();
        parse(None, text.as_bytes(), &url, &Router::new(url.clone())).unwrap()
    }

    fn playlist(source: &TrackSource) -> &str {
        match source {
            TrackSource::Playlist(url) => url.as_str(),
            TrackSource::Loaded(_) => panic!("an HLS track is loaded on first use"),
        }
    }

    #[test]
    fn each_pathway_plays_its_own_variant_set_and_audio_group() {
        let presentation = read(STEERED);
        assert_eq!(presentation.steering_warning, None);
        let steered = presentation.steering.as_ref().unwrap();
        assert_eq!(
            steered.server.as_str(),
            "http://10.0.0.3:8080/steer/clip?session=P.S"
        );
        assert_eq!(steered.initial.as_deref(), Some("n00000000bb"));
        let ids: Vec<&str> = steered.sets.iter().map(|set| set.id.as_str()).collect();
        assert_eq!(ids, ["n00000000aa", "n00000000bb"]);
        for set in &steered.sets {
            let host = if set.id == "n00000000aa" {
                "10.0.0.2"
            } else {
                "10.0.0.3"
            };
            let stable: Vec<_> = set
                .renditions
                .iter()
                .map(|r| r.stable_id.as_deref())
                .collect();
            // Ascending by bandwidth, whatever the order written.
            assert_eq!(stable, [Some("v360"), Some("v720")]);
            assert_eq!(
                playlist(&set.renditions[0].media),
                format!("http://{host}:8080/v/clip/g5/v360/index.m3u8")
            );
            assert_eq!(set.audio.len(), 1, "{set:?}");
            assert_eq!(
                playlist(&set.audio[0]),
                format!("http://{host}:8080/v/clip/g5/a64/index.m3u8")
            );
        }
        // The presentation starts on PATHWAY-ID's set.
        assert!(playlist(&presentation.renditions[1].media).starts_with("http://10.0.0.3:8080/"));
    }

    #[test]
    fn steering_a_viewer_cannot_follow_is_a_warning_and_every_variant_plays() {
        let bad = STEERED.replace("PATHWAY-ID=\"n00000000aa\"", "PATHWAY-ID=\"a b\"");
        let presentation = read(&bad);
        assert!(presentation.steering.is_none());
        assert!(
            presentation
                .steering_warning
                .as_deref()
                .is_some_and(|w| w.contains("not valid")),
            "{:?}",
            presentation.steering_warning
        );
        assert_eq!(presentation.renditions.len(), 4);
        // Without the tag, the same variants are one ladder, as before.
        let plain: String = STEERED
            .lines()
            .filter(|line| !line.starts_with("#EXT-X-CONTENT-STEERING"))
            .map(|line| format!("{line}\n"))
            .collect();
        let presentation = read(&plain);
        assert!(presentation.steering.is_none() && presentation.steering_warning.is_none());
        assert_eq!(presentation.renditions.len(), 4);
    }
}
