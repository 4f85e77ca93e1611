//! The subtitle tracks of one ingest: which to publish (the source's text
//! tracks and sidecar files; bitmap tracks reported skipped), a sidecar's
//! conversion to WebVTT by a small ffmpeg run of its own (untrusted input:
//! subtitle demuxers and the file protocol only), and the packaging of
//! every track into WebVTT segments and playlists after the encode. The
//! WebVTT text itself is `subtitles`' (pure).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::MediaError;
use crate::mp4::TrackKind;
use crate::package::MeasuredRendition;
use crate::probe::{self, SourceInfo};
use crate::subtitles::{self, SidecarSubtitle, SkippedSubtitle, SubtitleRendition};
use crate::supervise;
use crate::transcode;

/// A subtitle track to publish: a text track of the source (extracted by
/// the encode) or a sidecar file (converted before it).
#[derive(Debug, Clone)]
pub(crate) struct PlannedSubtitle {
    pub(crate) rendition: SubtitleRendition,
    pub(crate) sidecar: Option<PathBuf>,
}

/// The subtitle tracks to publish, source tracks first, and the source's
/// bitmap tracks, which are not; more than [`MAX_SUBTITLE_TRACKS`] is
/// refused.
pub(crate) fn plan_subtitles(
    source: &SourceInfo,
    sidecars: &[SidecarSubtitle],
) -> Result<(Vec<PlannedSubtitle>, Vec<SkippedSubtitle>), MediaError> {
    let mut planned = Vec::new();
    let mut skipped = Vec::new();
    for track in &source.subtitles {
        if !track.is_text() {
            skipped.push(SkippedSubtitle {
                language: track.language.clone(),
                codec: track.codec.clone(),
            });
            continue;
        }
        let position = planned.len();
        planned.push(PlannedSubtitle {
            rendition: SubtitleRendition {
                id: transcode::subtitle_dir(position),
                language: track.language.clone(),
                name: subtitles::display_name(
                    track.title.as_deref(),
                    &track.language,
                    track.forced,
                    track.hearing_impaired,
                    position,
                ),
                forced: track.forced,
                hearing_impaired: track.hearing_impaired,
            },
            sidecar: None,
        });
    }
    for sidecar in sidecars {
        let position = planned.len();
        planned.push(PlannedSubtitle {
            rendition: SubtitleRendition {
                id: transcode::subtitle_dir(position),
                language: sidecar.language.clone(),
                name: subtitles::display_name(
                    None,
                    &sidecar.language,
                    sidecar.forced,
                    sidecar.hearing_impaired,
                    position,
                ),
                forced: sidecar.forced,
                hearing_impaired: sidecar.hearing_impaired,
            },
            sidecar: Some(sidecar.path.clone()),
        });
    }
    if planned.len() > MAX_SUBTITLE_TRACKS {
        return Err(MediaError::OverLimit {
            detail: format!(
                "it has {} subtitle tracks (with the sidecar files), beyond the limit of \
                 {MAX_SUBTITLE_TRACKS}",
                planned.len()
            ),
        });
    }
    Ok((planned, skipped))
}

/// The most subtitle tracks one video may publish: each is an extra output
/// of the encode and a directory of files.
pub(crate) const MAX_SUBTITLE_TRACKS: usize = 64;

/// How long converting one sidecar subtitle file may take.
const SIDECAR_TIMEOUT: Duration = Duration::from_secs(60);

/// Converts a sidecar subtitle file to WebVTT at `out` with a small ffmpeg
/// run of its own (the file only, never the source), read through the
/// subtitle demuxers alone ([`probe::untrusted_subtitle_args`]).
pub(crate) async fn convert_sidecar(
    ffmpeg: &Path,
    sidecar: &Path,
    language: &str,
    out: &Path,
) -> Result<(), MediaError> {
    let name = sidecar
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let refuse = |why: String| MediaError::BadSubtitles {
        detail: format!("the {language} subtitles {name}: {why}"),
    };
    let metadata = tokio::fs::metadata(sidecar)
        .await
        .map_err(|error| refuse(format!("cannot be read: {error}")))?;
    if !metadata.is_file() {
        return Err(refuse("not a regular file".to_string()));
    }
    if metadata.len() > subtitles::MAX_SIDECAR_BYTES {
        return Err(refuse(format!(
            "it is {} bytes, beyond the limit of {} MiB for a subtitle file",
            metadata.len(),
            subtitles::MAX_SIDECAR_BYTES / (1024 * 1024)
        )));
    }
    let mut command = tokio::process::Command::new(ffmpeg);
    command
        .args(["-hide_banner", "-nostdin", "-y", "-loglevel", "error"])
        .args(probe::untrusted_subtitle_args())
        .arg("-i")
        .arg(probe::input_url(sidecar))
        .args(["-map", "0:s:0", "-c:s", "webvtt", "-f", "webvtt"])
        .arg(out)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(SIDECAR_TIMEOUT, command.output())
        .await
        .map_err(|_| {
            refuse(format!(
                "converting it took longer than {} s",
                SIDECAR_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|error| supervise::spawn_error(ffmpeg, error))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let accepted = "only SubRip (.srt), ASS/SSA (.ass, .ssa) and WebVTT (.vtt) files are accepted";
    if let Some(format) = probe::refused_demuxer(&stderr) {
        return Err(refuse(format!("it is a {format} file; {accepted}")));
    }
    if !output.status.success() {
        let last = stderr.lines().last().unwrap_or("ffmpeg could not read it");
        return Err(refuse(format!(
            "it is not a subtitle file ffmpeg can read ({}); {accepted}",
            last.trim()
        )));
    }
    let text = tokio::fs::read_to_string(out)
        .await
        .map_err(|error| MediaError::io(out, error))?;
    if subtitles::parse_webvtt(&text).map_or(true, |cues| cues.is_empty()) {
        return Err(refuse("it has no cues".to_string()));
    }
    Ok(())
}

/// Segments every subtitle track's extracted WebVTT on the media segments'
/// boundaries: `{id}/{n}.vtt`, `{id}/index.m3u8` and, for DASH,
/// `{id}/sub.vtt`; the extract itself is removed (blocking).
pub(crate) fn package_subtitles(
    staging_dir: &Path,
    renditions: &[MeasuredRendition],
    subtitle_renditions: &[SubtitleRendition],
) -> Result<(), MediaError> {
    if subtitle_renditions.is_empty() {
        return Ok(());
    }
    // Video segments, else audio ones (an audio-only source): what players
    // fetch subtitles beside.
    let Some(timeline) = renditions
        .iter()
        .find(|rendition| rendition.kind() == TrackKind::Video)
        .or_else(|| renditions.first())
    else {
        return Ok(());
    };
    let to_ms = |ticks: u64| (timeline.seconds(ticks) * 1000.0).round() as u64;
    let boundaries: Vec<(u64, u64)> = timeline
        .segments
        .iter()
        .map(|segment| {
            (
                to_ms(segment.start),
                to_ms(segment.start + segment.duration),
            )
        })
        .collect();
    let write = |path: PathBuf, contents: &str| {
        std::fs::write(&path, contents).map_err(|error| MediaError::io(&path, error))
    };
    for subtitle in subtitle_renditions {
        let dir = staging_dir.join(&subtitle.id);
        let extract = dir.join(transcode::SUBTITLE_EXTRACT);
        // A text track with no cue at all leaves ffmpeg's output empty.
        let text = match std::fs::read_to_string(&extract) {
            Ok(text) if text.trim().is_empty() => "WEBVTT\n".to_string(),
            Ok(text) => text,
            Err(error) => return Err(MediaError::io(&extract, error)),
        };
        let cues = subtitles::parse_webvtt(&text).map_err(|error| {
            MediaError::Output(format!(
                "{}: ffmpeg's WebVTT is unreadable: {error}",
                subtitle.id
            ))
        })?;
        let segments = subtitles::segment_files(&cues, &boundaries).map_err(|detail| {
            MediaError::BadSubtitles {
                detail: format!(
                    "the {} subtitles ({}): {detail}",
                    subtitle.language, subtitle.id
                ),
            }
        })?;
        for (index, segment) in segments.iter().enumerate() {
            write(dir.join(format!("{}.vtt", index + 1)), segment)?;
        }
        write(dir.join("sub.vtt"), &subtitles::whole_file(&cues))?;
        write(
            dir.join("index.m3u8"),
            &subtitles::media_playlist(&timeline.segment_seconds()),
        )?;
        std::fs::remove_file(&extract).map_err(|error| MediaError::io(&extract, error))?;
    }
    Ok(())
}
