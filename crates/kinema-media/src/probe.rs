//! Probing a source with `ffprobe -print_format json -show_format
//! -show_streams`, and judging whether it can be ingested.
//!
//! The judgement is split from the process call: [`interpret`] is a pure
//! function over ffprobe's JSON (unit-tested on recorded output), so every
//! rule about odd sources — rotation, attached cover art, several audio
//! tracks, interlacing, HDR — is a plain test, and [`probe`] only adds the
//! cases ffprobe reports as a failure (not media, truncated).
//!
//! A source is untrusted bytes, and ffmpeg's demuxers can open other files
//! and URLs named inside an input (an HLS playlist's entries, a concat
//! list's `file` lines, an image sequence's pattern). Every ffprobe and
//! ffmpeg run on a source therefore gets [`untrusted_input_args`]: only the
//! `file` protocol, only the demuxers of real media containers
//! ([`MEDIA_DEMUXERS`]), and for ffmpeg the demuxer ffprobe found, so
//! nothing is guessed twice.

use std::path::Path;
use std::process::Stdio;

use kinema_core::ladder::{FrameRate, SourceShape, SourceVideo};
use serde::{Deserialize, Serialize};

use crate::MediaError;
use crate::supervise::spawn_error;

/// The demuxers a source may be read with: media containers that carry
/// their media inside them. Playlists (`hls`, `dash`), lists of files
/// (`concat`), image sequences (`image2`) and anything else that opens
/// other files or URLs are refused.
pub const MEDIA_DEMUXERS: &[&str] = &[
    "mov", "matroska", "webm", "avi", "mpegts", "mpeg", "flv", "ogg", "asf", "mxf", "wav", "w64",
    "aiff", "mp3", "flac", "aac", "dv", "nut",
];

/// ffmpeg/ffprobe options that go before `-i` for an untrusted source:
/// local files only, media containers only, and `demuxer` when it is known.
pub fn untrusted_input_args(demuxer: Option<&str>) -> Vec<String> {
    let mut args = vec![
        "-protocol_whitelist".to_string(),
        "file".to_string(),
        "-format_whitelist".to_string(),
        MEDIA_DEMUXERS.join(","),
    ];
    if let Some(demuxer) = demuxer {
        args.extend(["-f".to_string(), demuxer.to_string()]);
    }
    args
}

/// ffmpeg options that go before `-i` for a sidecar subtitle file: local
/// files only, and only the SubRip, ASS/SSA and WebVTT demuxers
/// ([`crate::subtitles::SIDECAR_DEMUXERS`]) — a playlist or file list named
/// `.srt` is refused like one given as a source.
pub fn untrusted_subtitle_args() -> Vec<String> {
    vec![
        "-protocol_whitelist".to_string(),
        "file".to_string(),
        "-format_whitelist".to_string(),
        crate::subtitles::SIDECAR_DEMUXERS.join(","),
    ]
}

/// The demuxer ffmpeg or ffprobe refused because it is not on the
/// `-format_whitelist` of [`untrusted_input_args`], from its stderr
/// ("[hls @ 0x55e6…] Format not on whitelist 'mov,…'").
pub fn refused_demuxer(stderr: &str) -> Option<&str> {
    let line = stderr
        .lines()
        .find(|line| line.contains("Format not on whitelist"))?;
    Some(
        line.strip_prefix('[')
            .and_then(|rest| rest.split_once(" @"))
            .map_or("unknown", |(name, _)| name),
    )
}

/// The source as ffmpeg's input URL: always the `file` protocol, so a file
/// name with a colon is never read as another protocol.
pub fn input_url(path: &Path) -> String {
    format!("file:{}", path.display())
}

/// What the pipeline needs to know about a source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// Seconds: the longest of the chosen streams (the container's duration
    /// can include streams we do not use).
    pub duration_seconds: f64,
    pub video: Option<VideoStream>,
    /// Every audio track, the default one first (the source's default, or
    /// its first audio track), then the rest in the source's order.
    pub audio: Vec<AudioStream>,
    /// Every subtitle track, text or bitmap, in the source's order.
    pub subtitles: Vec<SubtitleStream>,
    /// ffprobe's name for the container (`mov,mp4,m4a,3gp,3g2,mj2`).
    pub format_name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoStream {
    /// Index among the file's streams (`0:N` in ffmpeg's notation).
    pub index: u32,
    pub codec: String,
    /// Coded size, before rotation.
    pub coded_width: u32,
    pub coded_height: u32,
    /// Clockwise rotation needed to display it upright: 0, 90, 180 or 270.
    pub rotation: u32,
    pub frame_rate: FrameRate,
    pub pixel_format: String,
    pub interlaced: bool,
    /// PQ (SMPTE 2084) or HLG transfer: needs tone mapping to look right in
    /// 8-bit SDR.
    pub hdr: bool,
}

impl VideoStream {
    /// Size as displayed: width and height swapped for 90° and 270°.
    pub fn display_size(&self) -> (u32, u32) {
        if self.rotation % 180 == 90 {
            (self.coded_height, self.coded_width)
        } else {
            (self.coded_width, self.coded_height)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudioStream {
    pub index: u32,
    pub codec: String,
    pub channels: u32,
    pub sample_rate: u32,
    /// BCP 47 (`en`), `und` when the source says nothing.
    pub language: String,
    /// The track's own title tag, if any (`Director's commentary`).
    pub title: Option<String>,
    /// Flagged default in the source.
    pub default: bool,
    /// Flagged as a description of the picture for the blind (DASH Role
    /// `description`, HLS `public.accessibility.describes-video`).
    pub describes_video: bool,
    /// Flagged as a commentary track (DASH Role `commentary`).
    pub commentary: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubtitleStream {
    pub index: u32,
    /// ffprobe's codec name (`subrip`, `ass`, `mov_text`, `hdmv_pgs_subtitle`).
    pub codec: String,
    /// BCP 47 (`en`), `und` when the source says nothing.
    pub language: String,
    pub title: Option<String>,
    /// Flagged forced: shown only where the picture needs it.
    pub forced: bool,
    /// Flagged for the hearing impaired (SDH).
    pub hearing_impaired: bool,
}

impl SubtitleStream {
    /// Whether its cues are text, which can become WebVTT; bitmap
    /// subtitles (PGS, DVD, DVB) cannot.
    pub fn is_text(&self) -> bool {
        crate::subtitles::TEXT_CODECS.contains(&self.codec.as_str())
    }
}

impl AudioStream {
    /// The name a track menu shows: the track's title, else its language's
    /// name, else `Audio N` (N counted from 1 in kept order).
    pub fn display_name(&self, position: usize) -> String {
        if let Some(title) = self
            .title
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            // Bounded and free of quotes and control characters: it is
            // written into playlists and XML.
            return title
                .chars()
                .filter(|c| !c.is_control() && *c != '"' && *c != '<' && *c != '>' && *c != '&')
                .take(64)
                .collect();
        }
        match crate::language::name(&self.language) {
            Some(name) => name.to_string(),
            None => format!("Audio {}", position + 1),
        }
    }
}

impl SourceInfo {
    /// The demuxer that read the source (`mov`), to read it with again.
    pub fn demuxer(&self) -> &str {
        self.format_name.split(',').next().unwrap_or_default()
    }

    pub fn shape(&self) -> SourceShape {
        SourceShape {
            video: self.video.as_ref().map(|video| {
                let (width, height) = video.display_size();
                SourceVideo {
                    width,
                    height,
                    frame_rate: video.frame_rate,
                }
            }),
            audio_tracks: self.audio.iter().map(|audio| audio.channels).collect(),
        }
    }

    /// Keeps only the audio tracks whose language is one of `languages`
    /// (all of them when `languages` is empty), the default first.
    pub fn keep_audio_languages(&mut self, languages: &[String]) -> Result<(), MediaError> {
        if languages.is_empty() || self.audio.is_empty() {
            return Ok(());
        }
        let available: Vec<String> = self.audio.iter().map(|a| a.language.clone()).collect();
        self.audio.retain(|audio| {
            languages
                .iter()
                .any(|wanted| crate::language::matches(&audio.language, wanted))
        });
        if self.audio.is_empty() {
            return Err(MediaError::Settings(format!(
                "no audio track is in {}; the source has {}",
                languages.join(", "),
                available.join(", ")
            )));
        }
        // The default stays first: the source's default if it was kept,
        // else the first kept track becomes it.
        match self.audio.iter().position(|audio| audio.default) {
            Some(position) => {
                let default = self.audio.remove(position);
                self.audio.insert(0, default);
            }
            None => self.audio[0].default = true,
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
struct ProbeOutput {
    #[serde(default)]
    streams: Vec<ProbeStream>,
    format: Option<ProbeFormat>,
}

#[derive(Debug, Deserialize)]
struct ProbeFormat {
    #[serde(default)]
    format_name: String,
    duration: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ProbeStream {
    index: u32,
    codec_type: String,
    codec_name: String,
    width: u32,
    height: u32,
    pix_fmt: String,
    avg_frame_rate: String,
    r_frame_rate: String,
    field_order: String,
    color_transfer: String,
    channels: u32,
    sample_rate: String,
    duration: Option<String>,
    nb_frames: Option<String>,
    tags: std::collections::HashMap<String, String>,
    side_data_list: Vec<SideData>,
    disposition: std::collections::HashMap<String, i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SideData {
    side_data_type: String,
    rotation: Option<f64>,
}

/// Runs ffprobe on `path` and interprets its answer.
pub async fn probe(ffprobe: &Path, path: &Path) -> Result<SourceInfo, MediaError> {
    let metadata =
        tokio::fs::metadata(path)
            .await
            .map_err(|source| MediaError::SourceUnreadable {
                path: path.to_path_buf(),
                source,
            })?;
    if !metadata.is_file() {
        return Err(MediaError::SourceUnreadable {
            path: path.to_path_buf(),
            source: std::io::Error::other("not a regular file"),
        });
    }
    if metadata.len() == 0 {
        return Err(MediaError::EmptySource);
    }
    let output = tokio::process::Command::new(ffprobe)
        .args([
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
        ])
        .args(untrusted_input_args(None))
        .arg(input_url(path))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|error| spawn_error(ffprobe, error))?;
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
    if !output.status.success() {
        let mut header = [0u8; 8];
        if let Ok(mut file) = tokio::fs::File::open(path).await {
            use tokio::io::AsyncReadExt;
            let _ = file.read(&mut header).await;
        }
        return Err(classify_failure(&stderr, &header));
    }
    interpret(&output.stdout, &stderr)
}

/// True when `header` starts like an ISO BMFF (MP4/MOV) file: a box whose
/// type is one that files begin with.
fn looks_like_mp4(header: &[u8; 8]) -> bool {
    matches!(
        &header[4..8],
        b"ftyp" | b"moov" | b"mdat" | b"free" | b"wide" | b"skip" | b"pnot"
    )
}

/// Turns ffprobe's complaint into the error an uploader can act on; the
/// file's first bytes tell a cut-short MP4 from something that never was one.
fn classify_failure(stderr: &str, header: &[u8; 8]) -> MediaError {
    let last = stderr
        .lines()
        .last()
        .unwrap_or("ffprobe could not read it")
        .to_string();
    if let Some(format) = refused_demuxer(stderr) {
        return refused_format(format);
    }
    // The index of an MP4 sits at its end unless it was written for
    // streaming; an upload cut short loses it.
    if looks_like_mp4(header)
        && (stderr.contains("moov atom not found") || stderr.contains("End of file"))
    {
        MediaError::Truncated {
            detail: format!("{last} (the upload may have been cut short)"),
        }
    } else {
        MediaError::NotMedia { detail: last }
    }
}

fn parse_seconds(text: Option<&String>) -> Option<f64> {
    text.and_then(|text| text.parse::<f64>().ok())
        .filter(|value| value.is_finite() && *value > 0.0)
}

/// Rotation from the display matrix (what phones write) or, in older files,
/// the `rotate` tag, as the clockwise angle that displays it upright.
fn rotation(stream: &ProbeStream) -> u32 {
    let matrix = stream
        .side_data_list
        .iter()
        .find(|side| side.side_data_type == "Display Matrix")
        .and_then(|side| side.rotation);
    // ffprobe reports the display matrix angle counter-clockwise (-90 for a
    // clip that must be turned 90° clockwise); the tag is clockwise.
    let degrees = match matrix {
        Some(angle) => -angle,
        None => stream
            .tags
            .get("rotate")
            .and_then(|tag| tag.parse::<f64>().ok())
            .unwrap_or(0.0),
    };
    let quarter_turns = (degrees / 90.0).round() as i64;
    (quarter_turns.rem_euclid(4) * 90) as u32
}

fn refused_format(format: &str) -> MediaError {
    MediaError::NotMedia {
        detail: format!(
            "it is a {format} file, which is not accepted: only media containers ({}) are \
             ingested; playlists, file lists and image sequences are refused",
            MEDIA_DEMUXERS.join(", ")
        ),
    }
}

/// Judges ffprobe's JSON output.
pub fn interpret(json: &[u8], stderr: &str) -> Result<SourceInfo, MediaError> {
    let output: ProbeOutput =
        serde_json::from_slice(json).map_err(|error| MediaError::NotMedia {
            detail: format!("ffprobe output is unreadable: {error}"),
        })?;
    let format = output.format.ok_or_else(|| MediaError::NotMedia {
        detail: if stderr.is_empty() {
            "no container format recognised".to_string()
        } else {
            stderr.to_string()
        },
    })?;
    // Single images (a JPEG renamed .mp4) probe as one-frame video through
    // the image2 demuxers; they are not videos.
    if format.format_name.ends_with("_pipe") || format.format_name == "image2" {
        return Err(MediaError::NotMedia {
            detail: format!("it is a still image ({})", format.format_name),
        });
    }
    if format.format_name == "tty" {
        return Err(MediaError::NotMedia {
            detail: "it is a text file".to_string(),
        });
    }
    if !format
        .format_name
        .split(',')
        .any(|name| MEDIA_DEMUXERS.contains(&name))
    {
        return Err(refused_format(&format.format_name));
    }
    let video = output
        .streams
        .iter()
        // Cover art in an audio file is a "video" stream of one picture.
        .filter(|stream| stream.codec_type == "video")
        .find(|stream| stream.disposition.get("attached_pic").copied().unwrap_or(0) == 0);
    let audio_streams: Vec<&ProbeStream> = output
        .streams
        .iter()
        .filter(|stream| stream.codec_type == "audio")
        .collect();
    if video.is_none() && audio_streams.is_empty() {
        return Err(MediaError::NoStreams);
    }
    let video = match video {
        None => None,
        Some(stream) => {
            if stream.width == 0 || stream.height == 0 {
                return Err(MediaError::NotMedia {
                    detail: format!("video stream {} has no picture size", stream.index),
                });
            }
            let frame_rate = FrameRate::parse(&stream.avg_frame_rate)
                .or_else(|| FrameRate::parse(&stream.r_frame_rate))
                .ok_or_else(|| MediaError::NotMedia {
                    detail: format!("video stream {} has no frame rate", stream.index),
                })?;
            Some(VideoStream {
                index: stream.index,
                codec: stream.codec_name.clone(),
                coded_width: stream.width,
                coded_height: stream.height,
                rotation: rotation(stream),
                frame_rate,
                pixel_format: stream.pix_fmt.clone(),
                interlaced: matches!(stream.field_order.as_str(), "tt" | "bb" | "tb" | "bt"),
                hdr: matches!(stream.color_transfer.as_str(), "smpte2084" | "arib-std-b67"),
            })
        }
    };
    let flag = |stream: &ProbeStream, name: &str| stream.disposition.get(name).copied() == Some(1);
    let mut audio: Vec<AudioStream> = audio_streams
        .iter()
        .map(|stream| AudioStream {
            index: stream.index,
            codec: stream.codec_name.clone(),
            channels: stream.channels,
            sample_rate: stream.sample_rate.parse().unwrap_or(0),
            language: crate::language::bcp47(stream.tags.get("language").map(String::as_str)),
            title: stream.tags.get("title").cloned(),
            default: flag(stream, "default"),
            describes_video: flag(stream, "visual_impaired"),
            commentary: flag(stream, "comment"),
        })
        .collect();
    let subtitles = output
        .streams
        .iter()
        .filter(|stream| stream.codec_type == "subtitle")
        .map(|stream| SubtitleStream {
            index: stream.index,
            codec: stream.codec_name.clone(),
            language: crate::language::bcp47(stream.tags.get("language").map(String::as_str)),
            title: stream.tags.get("title").cloned(),
            forced: flag(stream, "forced"),
            hearing_impaired: flag(stream, "hearing_impaired"),
        })
        .collect();
    // One default: the source's first flagged one, else its first track.
    let default = audio.iter().position(|stream| stream.default).unwrap_or(0);
    for (position, stream) in audio.iter_mut().enumerate() {
        stream.default = position == default;
    }
    if default > 0 {
        let stream = audio.remove(default);
        audio.insert(0, stream);
    }
    let stream_duration = |index: u32| {
        output
            .streams
            .iter()
            .find(|stream| stream.index == index)
            .and_then(|stream| parse_seconds(stream.duration.as_ref()))
    };
    let chosen: Vec<f64> = video
        .iter()
        .map(|video| video.index)
        .chain(audio.iter().map(|audio| audio.index))
        .filter_map(stream_duration)
        .collect();
    let duration_seconds = if chosen.is_empty() {
        parse_seconds(format.duration.as_ref()).unwrap_or(0.0)
    } else {
        chosen.into_iter().fold(0.0, f64::max)
    };
    if duration_seconds <= 0.0 {
        return Err(MediaError::ZeroDuration);
    }
    if let Some(stream) = output
        .streams
        .iter()
        .find(|stream| Some(stream.index) == video.as_ref().map(|video| video.index))
        && stream.nb_frames.as_deref() == Some("0")
    {
        return Err(MediaError::ZeroDuration);
    }
    Ok(SourceInfo {
        duration_seconds,
        video,
        audio,
        subtitles,
        format_name: format.format_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(streams: &str, format: &str) -> Vec<u8> {
        format!(r#"{{"streams": [{streams}], "format": {format}}}"#).into_bytes()
    }

    const MP4: &str = r#"{"format_name": "mov,mp4,m4a,3gp,3g2,mj2", "duration": "4.000000"}"#;

    fn video(extra: &str) -> String {
        format!(
            r#"{{"index": 0, "codec_type": "video", "codec_name": "h264", "width": 320,
                "height": 180, "pix_fmt": "yuv420p", "avg_frame_rate": "25/1",
                "r_frame_rate": "25/1", "duration": "4.000000" {extra}}}"#
        )
    }

    fn audio(index: u32) -> String {
        format!(
            r#"{{"index": {index}, "codec_type": "audio", "codec_name": "aac", "channels": 2,
                "sample_rate": "44100", "duration": "4.010000"}}"#
        )
    }

    #[test]
    fn plain_clip_with_video_and_audio() {
        let info = interpret(&json(&format!("{},{}", video(""), audio(1)), MP4), "").unwrap();
        assert_eq!(info.duration_seconds, 4.01);
        let video = info.video.unwrap();
        assert_eq!((video.display_size(), video.rotation), ((320, 180), 0));
        assert!(!video.interlaced && !video.hdr);
        assert_eq!(info.audio.len(), 1);
        assert_eq!(info.audio[0].language, "und");
    }

    #[test]
    fn display_matrix_rotation_swaps_the_display_size() {
        let rotated =
            video(r#", "side_data_list": [{"side_data_type": "Display Matrix", "rotation": -90}]"#);
        let info = interpret(&json(&rotated, MP4), "").unwrap();
        let video = info.video.unwrap();
        assert_eq!(video.rotation, 90);
        assert_eq!(video.display_size(), (180, 320));
        let tagged = video_with_tag("270");
        assert_eq!(
            interpret(&json(&tagged, MP4), "")
                .unwrap()
                .video
                .unwrap()
                .rotation,
            270
        );
    }

    fn video_with_tag(angle: &str) -> String {
        video(&format!(r#", "tags": {{"rotate": "{angle}"}}"#))
    }

    #[test]
    fn every_audio_track_is_kept_with_its_language_the_default_first() {
        let french = audio(2).replace(
            r#""codec_name": "aac","#,
            r#""codec_name": "aac", "tags": {"language": "fre", "title": "VF"}, "disposition": {"default": 1},"#,
        );
        let english = audio(1).replace(
            r#""codec_name": "aac","#,
            r#""codec_name": "aac", "tags": {"language": "eng"},"#,
        );
        let streams = format!("{},{english},{french}", video(""));
        let mut info = interpret(&json(&streams, MP4), "").unwrap();
        let tracks: Vec<(u32, &str, bool)> = info
            .audio
            .iter()
            .map(|a| (a.index, a.language.as_str(), a.default))
            .collect();
        assert_eq!(tracks, [(2, "fr", true), (1, "en", false)]);
        assert_eq!(info.audio[0].display_name(0), "VF");
        assert_eq!(info.audio[1].display_name(1), "English");
        assert_eq!(info.shape().audio_tracks, [2, 2]);

        info.keep_audio_languages(&["en".to_string()]).unwrap();
        assert_eq!(info.audio.len(), 1);
        assert_eq!((info.audio[0].index, info.audio[0].default), (1, true));
        let error = info
            .keep_audio_languages(&["de".to_string()])
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "invalid ingest settings: no audio track is in de; the source has en"
        );
    }

    #[test]
    fn subtitle_tracks_keep_language_flags_and_whether_they_are_text() {
        let subtitle = |index: u32, codec: &str, extra: &str| {
            format!(
                r#"{{"index": {index}, "codec_type": "subtitle", "codec_name": "{codec}" {extra}}}"#
            )
        };
        let streams = format!(
            "{},{},{},{}",
            video(""),
            subtitle(
                1,
                "subrip",
                r#", "tags": {"language": "eng", "title": "English"}"#
            ),
            subtitle(
                2,
                "ass",
                r#", "tags": {"language": "fre"}, "disposition": {"forced": 1, "hearing_impaired": 0}"#
            ),
            subtitle(
                3,
                "hdmv_pgs_subtitle",
                r#", "tags": {"language": "ger"}, "disposition": {"hearing_impaired": 1}"#
            ),
        );
        let info = interpret(&json(&streams, MP4), "").unwrap();
        let tracks: Vec<(u32, &str, bool, bool, bool)> = info
            .subtitles
            .iter()
            .map(|s| {
                (
                    s.index,
                    s.language.as_str(),
                    s.forced,
                    s.hearing_impaired,
                    s.is_text(),
                )
            })
            .collect();
        assert_eq!(
            tracks,
            [
                (1, "en", false, false, true),
                (2, "fr", true, false, true),
                (3, "de", false, true, false)
            ]
        );
        assert_eq!(info.subtitles[0].title.as_deref(), Some("English"));
    }

    #[test]
    fn cover_art_is_not_a_video() {
        let cover = r#"{"index": 1, "codec_type": "video", "codec_name": "mjpeg", "width": 500,
            "height": 500, "avg_frame_rate": "0/0", "disposition": {"attached_pic": 1}}"#;
        let streams = format!("{},{cover}", audio(0));
        let info = interpret(&json(&streams, MP4), "").unwrap();
        assert!(info.video.is_none());
        assert_eq!(info.audio.len(), 1);
    }

    #[test]
    fn interlaced_and_hdr_sources_are_recognised() {
        let interlaced = video(r#", "field_order": "tt""#);
        assert!(
            interpret(&json(&interlaced, MP4), "")
                .unwrap()
                .video
                .unwrap()
                .interlaced
        );
        let hdr = video(r#", "pix_fmt": "yuv420p10le", "color_transfer": "smpte2084""#);
        let hdr = hdr.replacen(r#""pix_fmt": "yuv420p","#, "", 1);
        assert!(interpret(&json(&hdr, MP4), "").unwrap().video.unwrap().hdr);
    }

    #[test]
    fn playlists_and_file_lists_are_refused_by_name() {
        for format in ["hls", "concat", "dash"] {
            let text = json(&video(""), &format!(r#"{{"format_name": "{format}"}}"#));
            let error = interpret(&text, "").unwrap_err().to_string();
            assert!(error.contains(&format!("it is a {format} file")), "{error}");
        }
        let refused = classify_failure(
            "[concat @ 0x561e073f6540] Format not on whitelist 'mov,matroska'\nx.mp4: Invalid argument",
            b"ffconcat",
        )
        .to_string();
        assert!(refused.contains("it is a concat file"), "{refused}");
        assert!(refused.contains("playlists, file lists"), "{refused}");
    }

    #[test]
    fn rejections_say_what_is_wrong() {
        let text = json("", r#"{"format_name": "tty"}"#);
        assert!(
            interpret(&text, "")
                .unwrap_err()
                .to_string()
                .contains("text file")
        );
        let no_streams = json("", MP4);
        assert!(matches!(
            interpret(&no_streams, ""),
            Err(MediaError::NoStreams)
        ));
        let zero = video("").replace("4.000000", "0.000000");
        let zero_format = MP4.replace("4.000000", "0.000000");
        assert!(matches!(
            interpret(&json(&zero, &zero_format), ""),
            Err(MediaError::ZeroDuration)
        ));
        let image = json(&video(""), r#"{"format_name": "png_pipe"}"#);
        assert!(
            interpret(&image, "")
                .unwrap_err()
                .to_string()
                .contains("still image")
        );
        let moov_missing =
            "[mov,mp4] moov atom not found\nx.mp4: Invalid data found when processing input";
        let mp4_header = *b"\0\0\0\x20ftyp";
        assert!(matches!(
            classify_failure(moov_missing, &mp4_header),
            MediaError::Truncated { .. }
        ));
        assert!(matches!(
            classify_failure(moov_missing, b"these ar"),
            MediaError::NotMedia { .. }
        ));
        assert!(matches!(
            classify_failure(
                "x.mp4: Invalid data found when processing input",
                &mp4_header
            ),
            MediaError::NotMedia { .. }
        ));
    }
}
