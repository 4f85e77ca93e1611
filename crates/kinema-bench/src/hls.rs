//! HLS playlists as a player reads them (RFC 8216 and its second edition):
//! the multivariant playlist's variants, audio groups and content-steering
//! tag, and a media playlist's segments with their durations, init section
//! and byte ranges.
//!
//! Only what a player needs to choose and fetch is kept. URIs stay as
//! written; resolving them (against the playlist's final URL, and later
//! against a steering pathway) is the router's job, not the parser's.

use std::collections::HashMap;

use crate::BenchError;

/// `#EXT-X-STREAM-INF`: one rung of the ladder.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    pub uri: String,
    /// Peak bit rate, bits per second (`BANDWIDTH`).
    pub bandwidth: u64,
    pub average_bandwidth: Option<u64>,
    pub resolution: Option<(u32, u32)>,
    pub codecs: Option<String>,
    /// `AUDIO` group id.
    pub audio_group: Option<String>,
    /// `PATHWAY-ID` (content steering); `None` is the default pathway.
    pub pathway_id: Option<String>,
    pub stable_variant_id: Option<String>,
}

/// `#EXT-X-MEDIA:TYPE=AUDIO` with a URI: audio fetched beside the video.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioRendition {
    pub group_id: String,
    pub name: String,
    pub default: bool,
    pub uri: String,
}

/// `#EXT-X-CONTENT-STEERING` (HLS 2nd edition §4.4.6.6).
#[derive(Debug, Clone, PartialEq)]
pub struct SteeringTag {
    pub server_uri: String,
    pub pathway_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MultivariantPlaylist {
    /// Ascending by `BANDWIDTH`.
    pub variants: Vec<Variant>,
    pub audio: Vec<AudioRendition>,
    pub steering: Option<SteeringTag>,
}

impl MultivariantPlaylist {
    /// The audio rendition a player picks for a variant: the group's
    /// `DEFAULT=YES` one, else its first.
    pub fn audio_for(&self, variant: &Variant) -> Option<&AudioRendition> {
        let group = variant.audio_group.as_deref()?;
        let mut members = self.audio.iter().filter(|a| a.group_id == group);
        let first = members.clone().next();
        members.find(|a| a.default).or(first)
    }
}

/// A byte range of a resource: `length` bytes from `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub offset: u64,
    pub length: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub uri: String,
    pub duration_seconds: f64,
    pub range: Option<ByteRange>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct InitSection {
    pub uri: String,
    pub range: Option<ByteRange>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MediaPlaylist {
    pub target_duration_seconds: f64,
    pub init: Option<InitSection>,
    pub segments: Vec<Segment>,
    pub ended: bool,
}

/// Either kind: a URL given to the bench may point at a media playlist
/// directly, which then plays as a one-rung ladder.
#[derive(Debug, Clone, PartialEq)]
pub enum Playlist {
    Multivariant(MultivariantPlaylist),
    Media(MediaPlaylist),
}

fn malformed(detail: impl Into<String>) -> BenchError {
    BenchError::Playlist(detail.into())
}

/// Parses an attribute list (`KEY=value,KEY="quoted, with commas"`).
pub fn parse_attributes(text: &str) -> Result<HashMap<String, String>, BenchError> {
    let mut attributes = HashMap::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once('=')
            .ok_or_else(|| malformed(format!("attribute list {text:?} has a key without '='")))?;
        let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"').ok_or_else(|| {
                malformed(format!("attribute list {text:?} has an unclosed quote"))
            })?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            match after.find(',') {
                Some(comma) => (&after[..comma], &after[comma..]),
                None => (after, ""),
            }
        };
        attributes.insert(key.trim().to_string(), value.to_string());
        rest = after.trim_start_matches(',').trim_start();
    }
    Ok(attributes)
}

fn parse_u64(key: &str, value: &str) -> Result<u64, BenchError> {
    value
        .trim()
        .parse()
        .map_err(|_| malformed(format!("{key}={value:?} is not a whole number")))
}

/// `n[@o]`; without `@o` the range starts where the previous one of the
/// same resource ended.
fn parse_byte_range(text: &str, previous_end: Option<u64>) -> Result<ByteRange, BenchError> {
    let (length, offset) = match text.split_once('@') {
        Some((length, offset)) => (length, Some(parse_u64("BYTERANGE offset", offset)?)),
        None => (text, None),
    };
    let length = parse_u64("BYTERANGE length", length)?;
    let offset = match (offset, previous_end) {
        (Some(offset), _) => offset,
        (None, Some(end)) => end,
        (None, None) => {
            return Err(malformed(format!(
                "byte range {text:?} has no offset and follows no range"
            )));
        }
    };
    Ok(ByteRange { offset, length })
}

/// Lines that are neither blank nor comments/tags: URIs.
fn is_uri_line(line: &str) -> bool {
    !line.is_empty() && !line.starts_with('#')
}

pub fn parse(text: &str) -> Result<Playlist, BenchError> {
    let mut lines = text.lines().map(str::trim);
    if lines.next() != Some("#EXTM3U") {
        return Err(malformed(
            "not an HLS playlist: the first line is not #EXTM3U",
        ));
    }
    if text.contains("#EXT-X-STREAM-INF") {
        parse_multivariant(text).map(Playlist::Multivariant)
    } else {
        parse_media(text).map(Playlist::Media)
    }
}

pub fn parse_multivariant(text: &str) -> Result<MultivariantPlaylist, BenchError> {
    let mut variants = Vec::new();
    let mut audio = Vec::new();
    let mut steering = None;
    let mut pending: Option<HashMap<String, String>> = None;
    for line in text.lines().map(str::trim) {
        if let Some(attributes) = line.strip_prefix("#EXT-X-STREAM-INF:") {
            pending = Some(parse_attributes(attributes)?);
        } else if let Some(attributes) = line.strip_prefix("#EXT-X-MEDIA:") {
            let attributes = parse_attributes(attributes)?;
            if attributes.get("TYPE").map(String::as_str) != Some("AUDIO") {
                continue;
            }
            // An audio rendition without a URI is muxed into the video.
            let Some(uri) = attributes.get("URI") else {
                continue;
            };
            audio.push(AudioRendition {
                group_id: attributes.get("GROUP-ID").cloned().unwrap_or_default(),
                name: attributes.get("NAME").cloned().unwrap_or_default(),
                default: attributes.get("DEFAULT").map(String::as_str) == Some("YES"),
                uri: uri.clone(),
            });
        } else if let Some(attributes) = line.strip_prefix("#EXT-X-CONTENT-STEERING:") {
            let attributes = parse_attributes(attributes)?;
            let server_uri = attributes
                .get("SERVER-URI")
                .cloned()
                .ok_or_else(|| malformed("#EXT-X-CONTENT-STEERING has no SERVER-URI attribute"))?;
            steering = Some(SteeringTag {
                server_uri,
                pathway_id: attributes.get("PATHWAY-ID").cloned(),
            });
        } else if is_uri_line(line) {
            let Some(attributes) = pending.take() else {
                continue;
            };
            let bandwidth = attributes
                .get("BANDWIDTH")
                .ok_or_else(|| malformed(format!("variant {line:?} has no BANDWIDTH")))?;
            let resolution = match attributes.get("RESOLUTION") {
                Some(text) => {
                    let (width, height) = text.split_once('x').ok_or_else(|| {
                        malformed(format!("RESOLUTION={text:?} is not WIDTHxHEIGHT"))
                    })?;
                    Some((
                        parse_u64("RESOLUTION", width)? as u32,
                        parse_u64("RESOLUTION", height)? as u32,
                    ))
                }
                None => None,
            };
            variants.push(Variant {
                uri: line.to_string(),
                bandwidth: parse_u64("BANDWIDTH", bandwidth)?,
                average_bandwidth: attributes
                    .get("AVERAGE-BANDWIDTH")
                    .map(|value| parse_u64("AVERAGE-BANDWIDTH", value))
                    .transpose()?,
                resolution,
                codecs: attributes.get("CODECS").cloned(),
                audio_group: attributes.get("AUDIO").cloned(),
                pathway_id: attributes.get("PATHWAY-ID").cloned(),
                stable_variant_id: attributes.get("STABLE-VARIANT-ID").cloned(),
            });
        }
    }
    if variants.is_empty() {
        return Err(malformed("multivariant playlist lists no variants"));
    }
    // Sorting is stable, so variants of equal bandwidth keep their order.
    variants.sort_by_key(|variant| variant.bandwidth);
    Ok(MultivariantPlaylist {
        variants,
        audio,
        steering,
    })
}

pub fn parse_media(text: &str) -> Result<MediaPlaylist, BenchError> {
    let mut target_duration_seconds = 0.0;
    let mut init = None;
    let mut segments = Vec::new();
    let mut ended = false;
    let mut pending_duration: Option<f64> = None;
    let mut pending_range: Option<ByteRange> = None;
    let mut previous_range_end: Option<u64> = None;
    for line in text.lines().map(str::trim) {
        if let Some(value) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            target_duration_seconds = parse_u64("EXT-X-TARGETDURATION", value)? as f64;
        } else if let Some(value) = line.strip_prefix("#EXTINF:") {
            let duration = value.split(',').next().unwrap_or_default().trim();
            let duration: f64 = duration
                .parse()
                .ok()
                .filter(|d: &f64| d.is_finite() && *d >= 0.0)
                .ok_or_else(|| malformed(format!("#EXTINF:{value} has no valid duration")))?;
            pending_duration = Some(duration);
        } else if let Some(value) = line.strip_prefix("#EXT-X-BYTERANGE:") {
            let range = parse_byte_range(value, previous_range_end)?;
            previous_range_end = Some(range.offset + range.length);
            pending_range = Some(range);
        } else if let Some(attributes) = line.strip_prefix("#EXT-X-MAP:") {
            let attributes = parse_attributes(attributes)?;
            let uri = attributes
                .get("URI")
                .cloned()
                .ok_or_else(|| malformed("#EXT-X-MAP has no URI attribute"))?;
            let range = match attributes.get("BYTERANGE") {
                Some(text) => Some(parse_byte_range(text, Some(0))?),
                None => None,
            };
            init = Some(InitSection { uri, range });
        } else if line == "#EXT-X-ENDLIST" {
            ended = true;
        } else if is_uri_line(line) {
            let duration_seconds = pending_duration
                .take()
                .ok_or_else(|| malformed(format!("segment {line:?} is not preceded by #EXTINF")))?;
            segments.push(Segment {
                uri: line.to_string(),
                duration_seconds,
                range: pending_range.take(),
            });
        }
    }
    if segments.is_empty() {
        return Err(malformed("media playlist lists no segments"));
    }
    Ok(MediaPlaylist {
        target_duration_seconds,
        init,
        segments,
        ended,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASTER: &str = "#EXTM3U
#EXT-X-VERSION:7
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-CONTENT-STEERING:SERVER-URI=\"/steer/clip\",PATHWAY-ID=\"a\"
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aac\",NAME=\"English\",DEFAULT=YES,URI=\"a128/index.m3u8\"
#EXT-X-STREAM-INF:BANDWIDTH=3000000,AVERAGE-BANDWIDTH=2800000,RESOLUTION=1280x720,CODECS=\"avc1.64001f,mp4a.40.2\",AUDIO=\"aac\"
v720/index.m3u8?token=abc
#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360,CODECS=\"avc1.64001e,mp4a.40.2\",AUDIO=\"aac\"
v360/index.m3u8
";

    #[test]
    fn reads_a_multivariant_playlist() {
        let Playlist::Multivariant(playlist) = parse(MASTER).unwrap() else {
            panic!("expected a multivariant playlist");
        };
        assert_eq!(playlist.variants.len(), 2);
        let low = &playlist.variants[0];
        assert_eq!(low.uri, "v360/index.m3u8");
        assert_eq!(low.bandwidth, 800_000);
        assert_eq!(low.resolution, Some((640, 360)));
        let high = &playlist.variants[1];
        assert_eq!(high.average_bandwidth, Some(2_800_000));
        assert_eq!(high.codecs.as_deref(), Some("avc1.64001f,mp4a.40.2"));
        assert_eq!(high.uri, "v720/index.m3u8?token=abc");
        let audio = playlist.audio_for(high).unwrap();
        assert_eq!(audio.uri, "a128/index.m3u8");
        assert_eq!(
            playlist.steering,
            Some(SteeringTag {
                server_uri: "/steer/clip".into(),
                pathway_id: Some("a".into())
            })
        );
    }

    #[test]
    fn reads_a_media_playlist_with_map_and_byte_ranges() {
        let text = "#EXTM3U
#EXT-X-TARGETDURATION:4
#EXT-X-PLAYLIST-TYPE:VOD
#EXT-X-MAP:URI=\"init.mp4\"
#EXTINF:4.000,
1.m4s
#EXTINF:3.5,
2.m4s
#EXT-X-BYTERANGE:1000@0
#EXTINF:2,
all.m4s
#EXT-X-BYTERANGE:500
#EXTINF:2,
all.m4s
#EXT-X-ENDLIST
";
        let Playlist::Media(playlist) = parse(text).unwrap() else {
            panic!("expected a media playlist");
        };
        assert_eq!(playlist.target_duration_seconds, 4.0);
        assert!(playlist.ended);
        assert_eq!(playlist.init.as_ref().unwrap().uri, "init.mp4");
        assert_eq!(playlist.segments.len(), 4);
        assert_eq!(playlist.segments[1].duration_seconds, 3.5);
        assert_eq!(
            playlist.segments[3].range,
            Some(ByteRange {
                offset: 1000,
                length: 500
            })
        );
    }

    #[test]
    fn malformed_playlists_are_clear_errors() {
        for (playlist, expected) in [
            ("<html>", "#EXTM3U"),
            (
                "#EXTM3U\n#EXT-X-STREAM-INF:RESOLUTION=1x1\nv/index.m3u8\n",
                "BANDWIDTH",
            ),
            ("#EXTM3U\n1.m4s\n", "#EXTINF"),
            ("#EXTM3U\n#EXTINF:x,\n1.m4s\n", "duration"),
        ] {
            let error = parse(playlist).unwrap_err().to_string();
            assert!(error.contains(expected), "{playlist:?}: {error}");
        }
        let error = parse_attributes("URI=\"open").unwrap_err().to_string();
        assert!(error.contains("unclosed"), "{error}");
    }
}
