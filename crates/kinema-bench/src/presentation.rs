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
use crate::hls::{self, ByteRange, MediaPlaylist, MultivariantPlaylist, Playlist, SteeringTag};

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
}

/// What a viewer plays.
#[derive(Debug, Clone, PartialEq)]
pub struct Presentation {
    pub format: Format,
    /// Ascending by bandwidth (stable for equal bandwidths).
    pub renditions: Vec<Rendition>,
    pub audio: Vec<TrackSource>,
    pub steering: Option<SteeringTag>,
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
                }],
                audio: Vec::new(),
                steering: None,
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
    let locate = |uri: &str| {
        router
            .locate(uri, url)
            .map_err(|error| BenchError::Playlist(error.to_string()))
    };
    let mut renditions = Vec::with_capacity(multivariant.variants.len());
    let mut audio_urls: Vec<Url> = Vec::new();
    for variant in &multivariant.variants {
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
        });
    }
    Ok(Presentation {
        format: Format::Hls,
        renditions,
        audio: audio_urls.into_iter().map(TrackSource::Playlist).collect(),
        steering: multivariant.steering,
        duration_seconds: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_comes_from_the_content_type_or_the_document() {
        let mpd = b"<?xml version=\"1.0\"?>\n<!-- kinema -->\n<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\"/>";
        let playlist = b"#EXTM3U\n#EXT-X-VERSION:7\n";
        assert_eq!(Format::detect(None, mpd).unwrap(), Format::Dash);
        assert_eq!(Format::detect(None, playlist).unwrap(), Format::Hls);
        assert_eq!(
            Format::detect(Some("application/octet-stream"), mpd).unwrap(),
            Format::Dash
        );
        // A prefixed root element, a byte-order mark.
        assert_eq!(
            Format::detect(
                None,
                "\u{feff}<mpd:MPD xmlns:mpd=\"urn:mpeg:dash:schema:mpd:2011\"/>".as_bytes()
            )
            .unwrap(),
            Format::Dash
        );
        // The declared type decides when the document does not say.
        assert_eq!(
            Format::detect(Some("application/dash+xml; charset=utf-8"), b"<x/>").unwrap(),
            Format::Dash
        );
        assert_eq!(
            Format::detect(Some("application/vnd.apple.mpegurl"), b"").unwrap(),
            Format::Hls
        );
        let error = Format::detect(Some("application/dash+xml"), playlist)
            .unwrap_err()
            .to_string();
        assert!(error.contains("#EXTM3U"), "{error}");
        let error = Format::detect(Some("text/html"), b"<html><body>")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("neither") && error.contains("text/html"),
            "{error}"
        );
    }

    #[test]
    fn a_multivariant_playlist_becomes_a_ladder_of_playlists_to_load() {
        let url = Url::parse("http://127.0.0.1/v/clip/master.m3u8").unwrap();
        let text = "#EXTM3U
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aac\",NAME=\"en\",DEFAULT=YES,URI=\"a128/index.m3u8\"
#EXT-X-STREAM-INF:BANDWIDTH=3000000,RESOLUTION=1280x720,AUDIO=\"aac\"
v720/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360,AUDIO=\"aac\"
v360/index.m3u8
";
        let presentation =
            from_hls(hls::parse(text).unwrap(), &url, &Router::new(url.clone())).unwrap();
        assert_eq!(presentation.format, Format::Hls);
        let bandwidths: Vec<u64> = presentation
            .renditions
            .iter()
            .map(|r| r.bandwidth)
            .collect();
        assert_eq!(bandwidths, [800_000, 3_000_000]);
        assert_eq!(
            presentation.renditions[0].media,
            TrackSource::Playlist(Url::parse("http://127.0.0.1/v/clip/v360/index.m3u8").unwrap())
        );
        // Both rungs share one audio track.
        assert_eq!(presentation.audio.len(), 1);
        assert!(presentation.renditions.iter().all(|r| r.audio == Some(0)));
    }

    #[test]
    fn a_media_playlist_is_a_loaded_track() {
        let url = Url::parse("http://127.0.0.1/v/clip/v360/index.m3u8").unwrap();
        let text = "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:4,\n1.m4s\n#EXTINF:2.5,\n2.m4s\n#EXT-X-ENDLIST\n";
        let presentation =
            from_hls(hls::parse(text).unwrap(), &url, &Router::new(url.clone())).unwrap();
        let track = presentation.renditions[0].media.loaded().unwrap();
        assert_eq!(track.len(), 2);
        assert_eq!(track.init.as_ref().unwrap().uri, "init.mp4");
        assert_eq!(track.segment(1).unwrap().uri, "2.m4s");
        assert_eq!(track.segment(2), None);
        assert_eq!(track.duration_seconds(), 6.5);
    }
}
