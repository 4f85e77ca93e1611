//! Text subtitles as WebVTT renditions: the cues ffmpeg extracted (from a
//! source's text tracks in the encode itself, or from a sidecar file in a
//! small run of its own), parsed and written again by us as
//!
//! - `{id}/{n}.vtt`, one WebVTT segment per media segment, with the same
//!   boundaries as the video's CMAF segments, and `{id}/index.m3u8`, the HLS
//!   media playlist of `EXT-X-MEDIA:TYPE=SUBTITLES` (RFC 8216 §3.5);
//! - `{id}/sub.vtt`, the whole track in one file, which DASH lists as a
//!   text AdaptationSet (dash.js plays a non-fragmented `text/vtt`
//!   Representation by its `BaseURL`).
//!
//! A cue that spans a segment boundary is written into every segment it
//! overlaps, with its own times (players drop the repeats; Apple's HLS
//! authoring spec asks for exactly this). Cue times are on the media
//! timeline: ffmpeg writes the subtitle outputs of the encode on the same
//! output timeline as the CMAF segments, whose decode times (`tfdt`) start
//! there too, so `X-TIMESTAMP-MAP` is the identity, `MPEGTS:0` ↔ `LOCAL:0`
//! (hls.js places a cue at `cue + (MPEGTS - initPTS)/90000`, initPTS being
//! the first segment's `tfdt` in 90 kHz ticks, which is 0 for our output).
//!
//! Everything here is pure; the pipeline reads and writes the files. Cue
//! text comes from untrusted sources, so the parser never panics and the
//! writer keeps each cue one cue: no blank lines, no `-->` in its text.
//! Bitmap subtitles (PGS, DVD, DVB) cannot become WebVTT without OCR; they
//! are listed as [`SkippedSubtitle`]s, never dropped silently.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

/// Codecs whose cues are text, which ffmpeg's `webvtt` encoder converts.
pub const TEXT_CODECS: &[&str] = &[
    "subrip",
    "srt",
    "ass",
    "ssa",
    "mov_text",
    "webvtt",
    "text",
    "microdvd",
    "subviewer",
    "subviewer1",
    "mpl2",
    "pjs",
    "realtext",
    "sami",
    "stl",
    "vplayer",
    "jacosub",
];

/// The demuxers a sidecar subtitle file may be read with: SubRip, ASS/SSA
/// and WebVTT. No playlist, file list or container.
pub const SIDECAR_DEMUXERS: &[&str] = &["srt", "ass", "webvtt"];

/// The largest sidecar subtitle file accepted (a feature film's subtitles
/// are well under 1 MiB).
pub const MAX_SIDECAR_BYTES: u64 = 16 * 1024 * 1024;

/// The most bytes the segments of one subtitle track may take in all: a
/// cue repeated into every segment it spans could otherwise make a small
/// hostile file (thousands of cues over a 12-hour video) into gigabytes.
pub const MAX_SEGMENTED_BYTES: usize = 64 * 1024 * 1024;

/// A subtitle track of the source that was not published, and why it
/// could not be: its codec is a bitmap one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedSubtitle {
    /// BCP 47, `und` when the source says nothing.
    pub language: String,
    /// ffprobe's codec name (`hdmv_pgs_subtitle`, `dvd_subtitle`).
    pub codec: String,
}

/// A subtitle file given beside the source (`--subtitles fr=film.fr.srt`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SidecarSubtitle {
    pub path: std::path::PathBuf,
    /// BCP 47.
    pub language: String,
    #[serde(default)]
    pub forced: bool,
    #[serde(default)]
    pub hearing_impaired: bool,
}

impl SidecarSubtitle {
    /// Parses `LANG[+forced][+sdh]=FILE`, the form of the CLI flag and of
    /// the upload API's `subtitles` part names.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (spec, path) = text.split_once('=').ok_or_else(|| {
            format!("subtitles {text:?} is not LANG=FILE; write it as en=film.en.srt")
        })?;
        let mut flags = spec.split('+');
        let language = flags.next().unwrap_or_default();
        let tag = crate::language::bcp47(Some(language));
        if tag == crate::language::UNDETERMINED && language != crate::language::UNDETERMINED {
            return Err(format!(
                "subtitles {text:?}: {language:?} is not a language code; use a BCP 47 or \
                 ISO 639-2 code such as en or fra"
            ));
        }
        let mut sidecar = SidecarSubtitle {
            path: path.into(),
            language: tag,
            forced: false,
            hearing_impaired: false,
        };
        for flag in flags {
            match flag {
                "forced" => sidecar.forced = true,
                "sdh" | "cc" => sidecar.hearing_impaired = true,
                other => {
                    return Err(format!(
                        "subtitles {text:?}: unknown flag {other:?}; the flags are +forced and +sdh"
                    ));
                }
            }
        }
        if path.is_empty() {
            return Err(format!("subtitles {text:?} names no file"));
        }
        Ok(sidecar)
    }
}

/// What the manifests say of a published subtitle track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubtitleRendition {
    /// The directory and rendition id (`sub0`).
    pub id: String,
    /// BCP 47.
    pub language: String,
    /// What a track menu shows.
    pub name: String,
    /// Shown only where the picture needs it (signs, foreign dialogue).
    pub forced: bool,
    /// Subtitles for the deaf and hard of hearing (SDH): they describe
    /// sounds as well as transcribe dialogue.
    pub hearing_impaired: bool,
}

/// One WebVTT cue; times in milliseconds on the media timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cue {
    pub start_ms: u64,
    pub end_ms: u64,
    /// Cue settings after the timing (`align:start line:0`), if any.
    pub settings: String,
    /// The cue's payload lines, joined by `\n`; never empty lines.
    pub text: String,
}

/// Parses a WebVTT timestamp, `mm:ss.ttt` or `hh:mm:ss.ttt`.
fn parse_timestamp(text: &str) -> Option<u64> {
    let (clock, millis) = text.split_once('.')?;
    if millis.len() != 3 || !millis.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let parts: Vec<&str> = clock.split(':').collect();
    let number = |part: &str| -> Option<u64> {
        (!part.is_empty() && part.len() <= 10 && part.bytes().all(|b| b.is_ascii_digit()))
            .then(|| part.parse().ok())
            .flatten()
    };
    let (hours, minutes, seconds) = match parts.as_slice() {
        [minutes, seconds] => (0, number(minutes)?, number(seconds)?),
        [hours, minutes, seconds] => (number(hours)?, number(minutes)?, number(seconds)?),
        _ => return None,
    };
    if minutes > 59 || seconds > 59 {
        return None;
    }
    let total = hours
        .checked_mul(3600)?
        .checked_add(minutes * 60 + seconds)?
        .checked_mul(1000)?
        .checked_add(millis.parse().ok()?)?;
    Some(total)
}

/// `hh:mm:ss.ttt`.
pub fn format_timestamp(ms: u64) -> String {
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// Parses the cues of a WebVTT file (as ffmpeg's `webvtt` muxer writes
/// it); header, `NOTE`, `STYLE` and `REGION` blocks are left out, and so is
/// a block whose timing line is malformed.
pub fn parse_webvtt(text: &str) -> Result<Vec<Cue>, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut blocks = text.split("\n\n").filter(|block| !block.trim().is_empty());
    match blocks.next() {
        Some(header) if header.starts_with("WEBVTT") => {}
        _ => return Err("it does not start with WEBVTT".to_string()),
    }
    let mut cues = Vec::new();
    for block in blocks {
        let mut lines = block.lines().skip_while(|line| line.trim().is_empty());
        let Some(mut timing) = lines.next() else {
            continue;
        };
        if !timing.contains("-->") {
            // An identifier line, a NOTE, STYLE or REGION block.
            match lines.next() {
                Some(next) if next.contains("-->") && !timing.starts_with("NOTE") => timing = next,
                _ => continue,
            }
        }
        let Some((start, rest)) = timing.split_once("-->") else {
            continue;
        };
        let mut rest = rest.split_whitespace();
        let (Some(start_ms), Some(end_ms)) = (
            parse_timestamp(start.trim()),
            rest.next().and_then(parse_timestamp),
        ) else {
            continue;
        };
        let settings = rest.collect::<Vec<_>>().join(" ");
        let text = lines
            .map(|line| line.replace("-->", "--&gt;"))
            .collect::<Vec<_>>()
            .join("\n");
        if text.trim().is_empty() || end_ms < start_ms {
            continue;
        }
        cues.push(Cue {
            start_ms,
            end_ms,
            settings,
            text,
        });
    }
    cues.sort_by_key(|cue| (cue.start_ms, cue.end_ms));
    Ok(cues)
}

fn write_cue(out: &mut String, cue: &Cue) {
    let _ = write!(
        out,
        "\n{} --> {}",
        format_timestamp(cue.start_ms),
        format_timestamp(cue.end_ms)
    );
    if !cue.settings.is_empty() {
        let _ = write!(out, " {}", cue.settings);
    }
    let _ = writeln!(out, "\n{}", cue.text);
}

/// `sub.vtt`: every cue in one file, for DASH.
pub fn whole_file(cues: &[Cue]) -> String {
    let mut out = String::from("WEBVTT\n");
    for cue in cues {
        write_cue(&mut out, cue);
    }
    out
}

/// The header of every segment: cue times are media times (module doc).
const SEGMENT_HEADER: &str = "WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:0,LOCAL:00:00:00.000\n";

/// `1.vtt`, `2.vtt`, …: one file per media segment, `segments` being each
/// media segment's start and end in milliseconds, in order. A cue goes into
/// every segment it overlaps; a zero-length cue into the one it starts in;
/// a cue after the last segment's end into the last segment, so no cue is
/// lost. Refuses output beyond [`MAX_SEGMENTED_BYTES`].
pub fn segment_files(cues: &[Cue], segments: &[(u64, u64)]) -> Result<Vec<String>, String> {
    let mut files = Vec::with_capacity(segments.len());
    let mut total = 0usize;
    for (number, &(start, end)) in segments.iter().enumerate() {
        let last = number + 1 == segments.len();
        let mut out = String::from(SEGMENT_HEADER);
        for cue in cues {
            let starts_before_end = cue.start_ms < end || last;
            let overlaps =
                cue.end_ms > start || (cue.start_ms == cue.end_ms && cue.start_ms >= start);
            if starts_before_end && overlaps {
                write_cue(&mut out, cue);
            }
        }
        total += out.len();
        if total > MAX_SEGMENTED_BYTES {
            return Err(format!(
                "its segments would take more than {} MiB (cues repeated over many segments)",
                MAX_SEGMENTED_BYTES / (1024 * 1024)
            ));
        }
        files.push(out);
    }
    Ok(files)
}

/// `{id}/index.m3u8`: the segments' durations, in seconds, as the media
/// segments they align with have them.
pub fn media_playlist(durations: &[f64]) -> String {
    let target = durations
        .iter()
        .map(|seconds| (seconds - 1e-6).ceil().max(1.0) as u64)
        .max()
        .unwrap_or(1);
    let mut out = String::new();
    let _ = write!(
        out,
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{target}\n\
         #EXT-X-MEDIA-SEQUENCE:1\n#EXT-X-PLAYLIST-TYPE:VOD\n"
    );
    for (index, seconds) in durations.iter().enumerate() {
        let _ = write!(out, "#EXTINF:{seconds:.6},\n{}.vtt\n", index + 1);
    }
    out.push_str("#EXT-X-ENDLIST\n");
    out
}

/// The name a track menu shows: the track's title, else its language's
/// name (`French`), else `Subtitles N`; `(forced)` or `(SDH)` added to a
/// name that is not a title.
pub fn display_name(
    title: Option<&str>,
    language: &str,
    forced: bool,
    hearing_impaired: bool,
    position: usize,
) -> String {
    if let Some(title) = title.map(str::trim).filter(|t| !t.is_empty()) {
        // Bounded and free of quotes and markup: it goes into playlists
        // and XML.
        return title
            .chars()
            .filter(|c| !c.is_control() && !matches!(c, '"' | '<' | '>' | '&'))
            .take(64)
            .collect();
    }
    let base = match crate::language::name(language) {
        Some(name) => name.to_string(),
        None => format!("Subtitles {}", position + 1),
    };
    if forced {
        format!("{base} (forced)")
    } else if hearing_impaired {
        format!("{base} (SDH)")
    } else {
        base
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(actual: &str, expected: &str) {
        assert_eq!(
            actual, expected,
            "\nactual:\n{actual}\nexpected:\n{expected}"
        );
    }

    const FFMPEG_OUTPUT: &str = "WEBVTT

00:00.523 --> 00:01.823
Hello <i>there</i>

NOTE a comment --> with an arrow

intro
00:03.500 --> 00:04.700 align:start line:0
Across the
boundary

01:00:05.000 --> 01:00:05.900
Late --> words

00:09.000 --> 00:08.000
Backwards, left out
";

    #[test]
    fn cues_parse_with_identifiers_settings_and_notes() {
        let cues = parse_webvtt(FFMPEG_OUTPUT).unwrap();
        let summary: Vec<(u64, u64, &str, &str)> = cues
            .iter()
            .map(|c| (c.start_ms, c.end_ms, c.settings.as_str(), c.text.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                (523, 1823, "", "Hello <i>there</i>"),
                (3500, 4700, "align:start line:0", "Across the\nboundary"),
                (3_605_000, 3_605_900, "", "Late --&gt; words"),
            ]
        );
        assert!(parse_webvtt("1\n00:00:01,000 --> 00:00:02,000\nsrt\n").is_err());
        for bad in [
            "WEBVTT\n\n99999999999:00.000 --> 1:00.000\nx",
            "WEBVTT\n\n-->\n",
        ] {
            assert_eq!(parse_webvtt(bad).unwrap(), []);
        }
    }

    #[test]
    fn a_cue_across_a_boundary_is_in_both_segments() {
        let cues = parse_webvtt(FFMPEG_OUTPUT).unwrap();
        let files = segment_files(&cues, &[(0, 4000), (4000, 6000)]).unwrap();
        check(
            &files[0],
            "WEBVTT
X-TIMESTAMP-MAP=MPEGTS:0,LOCAL:00:00:00.000

00:00:00.523 --> 00:00:01.823
Hello <i>there</i>

00:00:03.500 --> 00:00:04.700 align:start line:0
Across the
boundary
",
        );
        // The cue after the end lands in the last segment.
        check(
            &files[1],
            "WEBVTT
X-TIMESTAMP-MAP=MPEGTS:0,LOCAL:00:00:00.000

00:00:03.500 --> 00:00:04.700 align:start line:0
Across the
boundary

01:00:05.000 --> 01:00:05.900
Late --&gt; words
",
        );
        let empty = segment_files(&[], &[(0, 4000)]).unwrap();
        check(&empty[0], SEGMENT_HEADER);
    }

    #[test]
    fn cue_ending_on_a_boundary_is_not_repeated() {
        let cues =
            parse_webvtt("WEBVTT\n\n00:01.000 --> 00:04.000\nA\n\n00:04.000 --> 00:04.000\nB\n")
                .unwrap();
        let files = segment_files(&cues, &[(0, 4000), (4000, 8000)]).unwrap();
        assert!(files[0].contains("\nA\n") && !files[0].contains("\nB\n"));
        assert!(!files[1].contains("\nA\n") && files[1].contains("\nB\n"));
    }

    #[test]
    fn repeated_cues_are_bounded() {
        let cues = vec![
            Cue {
                start_ms: 0,
                end_ms: 12 * 3_600_000,
                settings: String::new(),
                text: "x".repeat(10_000),
            };
            10
        ];
        let segments: Vec<(u64, u64)> = (0..10_800).map(|n| (n * 4000, n * 4000 + 4000)).collect();
        let error = segment_files(&cues, &segments).unwrap_err();
        assert!(error.contains("more than 64 MiB"), "{error}");
    }

    #[test]
    fn whole_file_and_playlist() {
        let cues = parse_webvtt(FFMPEG_OUTPUT).unwrap();
        check(
            &whole_file(&cues[..1]),
            "WEBVTT

00:00:00.523 --> 00:00:01.823
Hello <i>there</i>
",
        );
        check(
            &media_playlist(&[4.0, 4.0, 1.04]),
            "#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:4
#EXT-X-MEDIA-SEQUENCE:1
#EXT-X-PLAYLIST-TYPE:VOD
#EXTINF:4.000000,
1.vtt
#EXTINF:4.000000,
2.vtt
#EXTINF:1.040000,
3.vtt
#EXT-X-ENDLIST
",
        );
    }

    #[test]
    fn sidecar_flags_and_names() {
        let sidecar = SidecarSubtitle::parse("fre+forced=dir/film=1.srt").unwrap();
        assert_eq!(sidecar.language, "fr");
        assert!(sidecar.forced && !sidecar.hearing_impaired);
        assert_eq!(sidecar.path, std::path::Path::new("dir/film=1.srt"));
        assert!(
            SidecarSubtitle::parse("en+sdh=a.srt")
                .unwrap()
                .hearing_impaired
        );
        for (bad, says) in [
            ("film.srt", "is not LANG=FILE"),
            ("english=a.srt", "is not a language code"),
            ("en+loud=a.srt", "unknown flag"),
            ("en=", "names no file"),
        ] {
            let error = SidecarSubtitle::parse(bad).unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
        assert_eq!(display_name(None, "fr", true, false, 0), "French (forced)");
        assert_eq!(display_name(None, "en", false, true, 0), "English (SDH)");
        assert_eq!(display_name(None, "und", false, false, 2), "Subtitles 3");
        assert_eq!(
            display_name(Some("Signs \"&\" songs"), "en", true, false, 0),
            "Signs  songs"
        );
    }
}
