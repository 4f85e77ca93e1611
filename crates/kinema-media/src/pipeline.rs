//! One ingest, start to finish: probe → plan → encode → measure → write
//! manifests → checksum → publish.
//!
//! Everything is built in a staging directory of ingest's own
//! [`Workspace`](crate::Workspace) and published with [`Store::publish`],
//! which writes `manifest.json` last: until then the video does not exist,
//! and on any error (or cancel) the staging directory is removed. A crash
//! leaves only staging debris, which
//! [`Workspace::clean_debris`](crate::Workspace::clean_debris) removes on
//! the next start.
//!
//! A full disk fails the ingest as [`MediaError::StorageFull`], naming what
//! was being written and where, however the shortage showed itself (see
//! [`explain_full_disk`]); the staging directory is removed as for any other
//! failure, which gives the space back.

use std::path::{Path, PathBuf};
use std::sync::PoisonError;
use std::time::{SystemTime, UNIX_EPOCH};

use kinema_core::ladder::LadderPlan;
use kinema_core::{
    AccessPolicy, MANIFEST_FORMAT_VERSION, Manifest, Rendition, RenditionKind, VideoId,
};
use kinema_store::{Store, StoreError, describe_files};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::mp4::TrackKind;
use crate::package::{self, AudioLabel, MeasuredRendition, VideoGeometry};
use crate::probe::{self, SourceInfo};
use crate::subtitle_tracks::{PlannedSubtitle, convert_sidecar, package_subtitles, plan_subtitles};
use crate::subtitles::{SidecarSubtitle, SkippedSubtitle, SubtitleRendition};
use crate::supervise::{self, Supervision};
use crate::transcode::{self, EncoderSettings};
use crate::written::SegmentWatch;
use crate::{MediaError, dash, hls, thumbs};

pub use crate::config::{IngestConfig, MAX_TITLE_CHARS, SourceLimits, check_title};

/// The stage a job is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Queued,
    Probing,
    Transcoding,
    Packaging,
    Publishing,
    Done,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Queued => "queued",
            Stage::Probing => "probing",
            Stage::Transcoding => "transcoding",
            Stage::Packaging => "packaging",
            Stage::Publishing => "publishing",
            Stage::Done => "done",
        }
    }
}

/// Where an ingest is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub stage: Stage,
    /// 0–100 over the whole job (transcoding is most of it).
    pub percent: f64,
    /// Encoding speed relative to real time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speed: Option<f64>,
    /// Estimated seconds left.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<f64>,
}

impl Progress {
    pub fn at(stage: Stage, percent: f64) -> Self {
        Self {
            stage,
            percent,
            speed: None,
            eta_seconds: None,
        }
    }
}

/// One ingest to run.
#[derive(Debug, Clone)]
pub struct IngestRequest {
    pub source: PathBuf,
    pub id: VideoId,
    pub title: String,
    /// Who may watch the published video.
    pub access: AccessPolicy,
    /// Where ffmpeg's whole log goes, if anywhere.
    pub log_file: Option<PathBuf>,
    /// Subtitle files to publish beside the source's own text tracks.
    pub subtitles: Vec<SidecarSubtitle>,
}

/// What an ingest published, and what of the source it could not.
#[derive(Debug, Clone)]
pub struct Ingested {
    pub manifest: Manifest,
    /// The subtitle tracks published, source tracks first.
    pub subtitles: Vec<SubtitleRendition>,
    /// Bitmap subtitle tracks of the source, which cannot become WebVTT.
    pub skipped_subtitles: Vec<SkippedSubtitle>,
}

/// Transcoding spans this share of the percent scale; probing before and
/// packaging and publishing after share the rest.
const TRANSCODE_START: f64 = 2.0;
const TRANSCODE_END: f64 = 95.0;

/// Runs one ingest; `staging_dir` (from
/// [`Workspace::staging_dir`](crate::Workspace::staging_dir)) must not
/// exist. Returns the published manifest.
pub async fn ingest(
    store: &dyn Store,
    staging_dir: &Path,
    config: &IngestConfig,
    request: &IngestRequest,
    cancel: &CancellationToken,
    on_progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<Ingested, MediaError> {
    // The last stage reached, so that a failure can say what it was writing.
    let reached = std::sync::Mutex::new(Stage::Queued);
    let track_stage = |progress: Progress| {
        *reached.lock().unwrap_or_else(PoisonError::into_inner) = progress.stage;
        on_progress(progress);
    };
    let result = ingest_in(store, staging_dir, config, request, cancel, &track_stage).await;
    match result {
        Ok(ingested) => Ok(ingested),
        Err(error) => {
            let stage = *reached.lock().unwrap_or_else(PoisonError::into_inner);
            // Diagnosed before the staging directory goes: removing it gives
            // back the space whose lack is the question.
            let error = explain_full_disk(error, stage, staging_dir).await;
            // Never leave a half-built video behind; publishing consumed the
            // directory on success.
            let _ = tokio::fs::remove_dir_all(staging_dir).await;
            Err(error)
        }
    }
}

/// Below this much free space a library's file system is full: no video
/// fits, and an encoder that failed a write left less than its write buffer.
const FULL_DISK_BYTES: u64 = 1024 * 1024;

/// Turns a failure caused by a full disk into [`MediaError::StorageFull`],
/// whatever form it took:
///
/// - a write of ours that failed with ENOSPC (playlists, manifests, the
///   store's publish) names the file;
/// - ffmpeg's own "No space left on device" is recognised by
///   [`supervise::run`] already;
/// - output cut short without a word — ffmpeg's DASH muxer ignores failed
///   segment writes and exits 0 — surfaces later as a malformed or short
///   file (or a failed encode); when the staging file system is then out of
///   space (or of inodes), that is the cause, and the symptom (which would
///   blame the encoder or, worse, the source, whose upload would then be
///   deleted) is only logged.
///
/// Anything else is returned unchanged.
pub(crate) async fn explain_full_disk(
    error: MediaError,
    stage: Stage,
    staging_dir: &Path,
) -> MediaError {
    let failed_write = match &error {
        MediaError::Io { path, source } | MediaError::Store(StoreError::Io { path, source })
            if source.kind() == std::io::ErrorKind::StorageFull =>
        {
            Some(path.clone())
        }
        _ => None,
    };
    if let Some(path) = failed_write {
        let writing = match stage {
            Stage::Queued | Stage::Probing => "the staging directory",
            Stage::Transcoding => "the encoded video",
            Stage::Packaging => "the playlists and manifests",
            Stage::Publishing | Stage::Done => "the video's manifest",
        };
        return MediaError::StorageFull {
            writing: writing.to_string(),
            path,
        };
    }
    let symptom_of_cut_short_output = matches!(
        stage,
        Stage::Transcoding | Stage::Packaging | Stage::Publishing
    ) && matches!(
        error,
        MediaError::Transcode { .. }
            | MediaError::Output(_)
            | MediaError::Truncated { .. }
            | MediaError::Io { .. }
            | MediaError::Store(StoreError::StagedFileMismatch { .. })
    );
    if !symptom_of_cut_short_output {
        return error;
    }
    let dir = staging_dir.to_path_buf();
    let full = tokio::task::spawn_blocking(move || file_system_is_full(&dir))
        .await
        .unwrap_or(false);
    if !full {
        return error;
    }
    tracing::debug!(%error, "ingest output cut short by a full disk");
    MediaError::StorageFull {
        writing: "the encoded video (the encoder's output was cut short)".to_string(),
        path: staging_dir.to_path_buf(),
    }
}

/// Whether the file system holding `dir` has no room left for a video:
/// under [`FULL_DISK_BYTES`] available to unprivileged writers, or no free
/// inode (blocking).
fn file_system_is_full(dir: &Path) -> bool {
    match rustix::fs::statvfs(dir) {
        Ok(stats) => {
            let available = stats.f_bavail.saturating_mul(stats.f_frsize);
            // Some file systems (btrfs) report no inode counts at all.
            let out_of_inodes = stats.f_files > 0 && stats.f_favail == 0;
            available < FULL_DISK_BYTES || out_of_inodes
        }
        Err(_) => false,
    }
}

fn check_cancel(cancel: &CancellationToken) -> Result<(), MediaError> {
    if cancel.is_cancelled() {
        Err(MediaError::Cancelled)
    } else {
        Ok(())
    }
}

async fn ingest_in(
    store: &dyn Store,
    staging_dir: &Path,
    config: &IngestConfig,
    request: &IngestRequest,
    cancel: &CancellationToken,
    on_progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<Ingested, MediaError> {
    config.validate()?;
    check_title(&request.title)?;
    on_progress(Progress::at(Stage::Probing, 0.0));
    supervise::check_tool(&config.ffmpeg).await?;
    supervise::check_tool(&config.ffprobe).await?;
    match store.manifest(&request.id).await {
        Ok(_) => return Err(MediaError::AlreadyExists(request.id.clone())),
        Err(error) if error.is_not_found() => {}
        Err(error) => return Err(error.into()),
    }
    let mut source = probe::probe(&config.ffprobe, &request.source).await?;
    config.limits.check(&source)?;
    source.keep_audio_languages(&config.audio_languages)?;
    check_cancel(cancel)?;
    let plan = kinema_core::ladder::plan(&source.shape(), &config.ladder)?;
    let (planned_subtitles, skipped_subtitles) = plan_subtitles(&source, &request.subtitles)?;
    tracing::info!(id = %request.id, duration = source.duration_seconds, rungs = plan.video.len(),
        audio = plan.audio.len(), subtitles = planned_subtitles.len(), "planned ingest");
    for skipped in &skipped_subtitles {
        tracing::warn!(id = %request.id, language = %skipped.language, codec = %skipped.codec,
            "subtitle track skipped: only text subtitles become WebVTT");
    }

    let thumbnails = source.video.as_ref().map(|video| {
        let (width, height) = video.display_size();
        thumbs::plan(source.duration_seconds, width, height)
    });
    prepare_dirs(
        staging_dir,
        &plan,
        thumbnails.is_some(),
        planned_subtitles.len(),
    )
    .await?;
    // Sidecars first: a bad one fails the ingest before the long encode.
    for planned in &planned_subtitles {
        if let Some(sidecar) = &planned.sidecar {
            let out = staging_dir
                .join(&planned.rendition.id)
                .join(transcode::SUBTITLE_EXTRACT);
            convert_sidecar(&config.ffmpeg, sidecar, &planned.rendition.language, &out).await?;
        }
    }
    check_cancel(cancel)?;
    let args = transcode::ffmpeg_args(
        &request.source,
        &source,
        &plan,
        thumbnails.as_ref(),
        &EncoderSettings {
            preset: config.preset.clone(),
            threads: config.threads,
            av1_preset: config.av1_preset,
        },
        transcode::EncodePart::Whole,
        staging_dir,
    );
    let supervision = Supervision {
        stall_timeout: config.stall_timeout,
        log_file: request.log_file.clone(),
        output_dir: staging_dir.to_path_buf(),
    };
    on_progress(Progress::at(Stage::Transcoding, TRANSCODE_START));
    let started = std::time::Instant::now();
    let duration = source.duration_seconds;
    let stream_dirs = (0..transcode::stream_count(&plan))
        .map(|index| staging_dir.join(transcode::stream_dir(index)))
        .collect();
    let watch = SegmentWatch::new(stream_dirs, f64::from(plan.segment_seconds));
    supervise::run(
        &config.ffmpeg,
        &args,
        &supervision,
        Some(watch),
        cancel,
        |encoder| {
            let done = (encoder.out_time_seconds / duration).clamp(0.0, 1.0);
            let elapsed = started.elapsed().as_secs_f64();
            // ffmpeg's own speed figure is smoothed over the run; derive one
            // from wall time when it has none yet.
            let speed = encoder.speed.or_else(|| {
                (elapsed > 0.0 && encoder.out_time_seconds > 0.0)
                    .then(|| encoder.out_time_seconds / elapsed)
            });
            let eta_seconds =
                speed.map(|speed| (duration - encoder.out_time_seconds).max(0.0) / speed);
            on_progress(Progress {
                stage: Stage::Transcoding,
                percent: TRANSCODE_START + done * (TRANSCODE_END - TRANSCODE_START),
                speed,
                eta_seconds,
            });
        },
    )
    .await?;
    check_cancel(cancel)?;
    let publication = Publication {
        id: &request.id,
        title: &request.title,
        access: request.access,
    };
    let encoded = Encoded {
        source: &source,
        plan: &plan,
        thumbnails: thumbnails.as_ref(),
        subtitles: &planned_subtitles,
        skipped_subtitles,
    };
    package_and_publish(
        store,
        staging_dir,
        config,
        &publication,
        encoded,
        cancel,
        on_progress,
        |_| Ok(()),
    )
    .await
}

/// Who a video is published as, and who may watch it.
pub(crate) struct Publication<'a> {
    pub(crate) id: &'a VideoId,
    pub(crate) title: &'a str,
    pub(crate) access: AccessPolicy,
}

/// What the outputs in a staging directory were encoded from: all that
/// measuring, packaging and publishing them needs.
pub(crate) struct Encoded<'a> {
    pub(crate) source: &'a SourceInfo,
    pub(crate) plan: &'a LadderPlan,
    pub(crate) thumbnails: Option<&'a thumbs::ThumbnailPlan>,
    pub(crate) subtitles: &'a [PlannedSubtitle],
    pub(crate) skipped_subtitles: Vec<SkippedSubtitle>,
}

/// From encoded outputs in `staging_dir` (ffmpeg's numbered stream
/// directories, thumbnails, extracted subtitles) to a published video:
/// measure, `check` the measured renditions, write playlists, MPD and the
/// download, checksum, publish. Shared by the whole encode and the
/// assembly of a chunked one.
#[allow(
    clippy::too_many_arguments,
    reason = "the pieces of one ingest, each used once"
)]
pub(crate) async fn package_and_publish(
    store: &dyn Store,
    staging_dir: &Path,
    config: &IngestConfig,
    publication: &Publication<'_>,
    encoded: Encoded<'_>,
    cancel: &CancellationToken,
    on_progress: &(dyn Fn(Progress) + Send + Sync),
    check: impl Fn(&[MeasuredRendition]) -> Result<(), MediaError>,
) -> Result<Ingested, MediaError> {
    let Encoded {
        source,
        plan,
        thumbnails,
        subtitles: planned_subtitles,
        skipped_subtitles,
    } = encoded;
    on_progress(Progress::at(Stage::Packaging, TRANSCODE_END));
    // Each phase's seconds, logged with the publish.
    let started = std::time::Instant::now();
    let staging = staging_dir.to_path_buf();
    let plan_for_package = plan.clone();
    let source_for_package = source.clone();
    let has_thumbnails = thumbnails.is_some();
    let renditions = tokio::task::spawn_blocking(move || {
        package_outputs(
            &staging,
            &source_for_package,
            &plan_for_package,
            has_thumbnails,
        )
    })
    .await
    .map_err(|join| MediaError::Output(format!("packaging task failed: {join}")))??;
    check(&renditions)?;
    let media_duration = renditions
        .iter()
        .map(MeasuredRendition::duration_seconds)
        .fold(0.0, f64::max);
    check_truncation(source, media_duration)?;
    let staging = staging_dir.to_path_buf();
    let timeline = renditions.clone();
    let subtitle_renditions: Vec<SubtitleRendition> = planned_subtitles
        .iter()
        .map(|planned| planned.rendition.clone())
        .collect();
    let to_package = subtitle_renditions.clone();
    tokio::task::spawn_blocking(move || package_subtitles(&staging, &timeline, &to_package))
        .await
        .map_err(|join| MediaError::Output(format!("subtitle packaging task failed: {join}")))??;
    // The generation is chosen as late as it can be (the playlists carry
    // it), so it is close to the publish: the time a replaced generation's
    // grace period counts from.
    let generation = kinema_store::layout::unix_millis(SystemTime::now());
    write_manifests(
        staging_dir,
        &renditions,
        &subtitle_renditions,
        thumbnails,
        media_duration,
        generation,
    )
    .await?;
    check_cancel(cancel)?;
    let packaged = started.elapsed();
    // After the encode, from its outputs only (a remux, not a pass over
    // the source); written before describe_files, so manifest.json lists it.
    crate::download::write(config, staging_dir, &renditions, cancel).await?;
    let downloadable = started.elapsed();

    on_progress(Progress::at(Stage::Publishing, 98.0));
    let manifest = Manifest {
        format_version: MANIFEST_FORMAT_VERSION,
        id: publication.id.clone(),
        generation,
        title: publication.title.to_string(),
        duration_seconds: (media_duration * 1000.0).round() / 1000.0,
        segment_duration_seconds: f64::from(plan.segment_seconds),
        published_at_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default(),
        access: publication.access,
        renditions: renditions
            .iter()
            .map(|rendition| Rendition {
                id: rendition.id.clone(),
                kind: match rendition.kind() {
                    TrackKind::Video => RenditionKind::Video,
                    TrackKind::Audio => RenditionKind::Audio,
                },
                codecs: rendition.track.codecs.clone(),
                width: rendition.width,
                height: rendition.height,
                frame_rate: rendition.frame_rate,
                bitrate: rendition.average_bitrate(),
                peak_bitrate: rendition.peak_bitrate(),
                segments: rendition.segments.len() as u32,
            })
            .collect(),
        files: describe_files(staging_dir).await?,
    };
    let described = started.elapsed();
    store
        .publish(&manifest, staging_dir)
        .await
        .map_err(|error| match error {
            // Another publish of the id won the race since the check above.
            kinema_store::StoreError::StaleGeneration { id, .. } => MediaError::AlreadyExists(id),
            other => other.into(),
        })?;
    on_progress(Progress::at(Stage::Done, 100.0));
    let seconds = |phase: std::time::Duration| (phase.as_secs_f64() * 10.0).round() / 10.0;
    tracing::info!(id = %manifest.id, files = manifest.files.len(),
        package_seconds = seconds(packaged),
        download_mp4_seconds = seconds(downloadable - packaged),
        checksum_seconds = seconds(described - downloadable),
        publish_seconds = seconds(started.elapsed() - described), "published");
    Ok(Ingested {
        manifest,
        subtitles: subtitle_renditions,
        skipped_subtitles,
    })
}

async fn prepare_dirs(
    staging_dir: &Path,
    plan: &LadderPlan,
    thumbnails: bool,
    subtitle_tracks: usize,
) -> Result<(), MediaError> {
    tokio::fs::create_dir(staging_dir)
        .await
        .map_err(|error| MediaError::io(staging_dir, error))?;
    let streams = (0..transcode::stream_count(plan)).map(transcode::stream_dir);
    let subtitles = (0..subtitle_tracks).map(transcode::subtitle_dir);
    for name in streams.chain(subtitles) {
        let dir = staging_dir.join(name);
        tokio::fs::create_dir(&dir)
            .await
            .map_err(|error| MediaError::io(&dir, error))?;
    }
    if thumbnails {
        let dir = staging_dir.join("thumbs");
        tokio::fs::create_dir(&dir)
            .await
            .map_err(|error| MediaError::io(&dir, error))?;
    }
    Ok(())
}

/// Renames ffmpeg's numbered stream directories to rendition ids, drops
/// its MPD and measures every rendition (blocking).
fn package_outputs(
    staging_dir: &Path,
    source: &SourceInfo,
    plan: &LadderPlan,
    thumbnails: bool,
) -> Result<Vec<MeasuredRendition>, MediaError> {
    let ffmpeg_mpd = staging_dir.join(transcode::FFMPEG_MPD);
    // A chunked encode's tasks leave none.
    match std::fs::remove_file(&ffmpeg_mpd) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(MediaError::io(&ffmpeg_mpd, error)),
    }
    let frame_rate = plan.frame_rate.map(|rate| rate.as_f64()).unwrap_or(0.0);
    let mut renditions = Vec::new();
    let videos = plan.video.iter().map(|rung| {
        (
            rung.id.clone(),
            Some(VideoGeometry {
                width: rung.width,
                height: rung.height,
                frame_rate,
            }),
            None,
        )
    });
    let audios = plan.audio.iter().map(|rung| {
        let label = source.audio.get(rung.track).map(|track| AudioLabel {
            track: rung.track,
            role: rung.role,
            language: track.language.clone(),
            name: track.display_name(rung.track),
            default: track.default,
            describes_video: track.describes_video,
            commentary: track.commentary,
        });
        (rung.id.clone(), None, label)
    });
    for (index, (id, geometry, label)) in videos.chain(audios).enumerate() {
        let from = staging_dir.join(transcode::stream_dir(index));
        let to = staging_dir.join(&id);
        std::fs::rename(&from, &to).map_err(|error| MediaError::io(&to, error))?;
        if let Some(label) = &label {
            set_init_language(&to.join("init.mp4"), &label.language)?;
        }
        let mut rendition = package::measure_rendition(&to, &id, geometry)?;
        rendition.audio = label;
        renditions.push(rendition);
    }
    package::check_alignment(&renditions)?;
    if thumbnails {
        for file in ["sprite.jpg", "poster.jpg"] {
            let path = staging_dir.join("thumbs").join(file);
            match std::fs::metadata(&path) {
                Ok(meta) if meta.len() > 0 => {}
                _ => return Err(MediaError::Output(format!("ffmpeg wrote no thumbs/{file}"))),
            }
        }
    }
    Ok(renditions)
}

/// Writes a track's language into its init segment (blocking).
fn set_init_language(init: &Path, language: &str) -> Result<(), MediaError> {
    let mut bytes = std::fs::read(init).map_err(|error| MediaError::io(init, error))?;
    crate::mp4::set_language(&mut bytes, crate::language::iso639_2(language))
        .map_err(|error| MediaError::Output(format!("{}: {error}", init.display())))?;
    std::fs::write(init, bytes).map_err(|error| MediaError::io(init, error))
}

/// An MP4 whose index survived but whose media was cut short probes fine
/// and decodes until the data ends: catch it by the length actually decoded.
fn check_truncation(source: &SourceInfo, media_duration: f64) -> Result<(), MediaError> {
    let expected = source.duration_seconds;
    if media_duration + 0.5 < expected * 0.9 {
        return Err(MediaError::Truncated {
            detail: format!(
                "it declares {expected:.1} s but only {media_duration:.1} s could be decoded"
            ),
        });
    }
    Ok(())
}

async fn write_file(path: PathBuf, contents: String) -> Result<(), MediaError> {
    tokio::fs::write(&path, contents)
        .await
        .map_err(|error| MediaError::io(&path, error))
}

async fn write_manifests(
    staging_dir: &Path,
    renditions: &[MeasuredRendition],
    subtitles: &[SubtitleRendition],
    thumbnails: Option<&thumbs::ThumbnailPlan>,
    duration: f64,
    generation: u64,
) -> Result<(), MediaError> {
    // The multivariant playlist and the MPD are fetched at the video's
    // stable URLs; what they point to is this generation's.
    let base = format!("{}/", kinema_store::layout::generation_dir(generation));
    for rendition in renditions {
        write_file(
            staging_dir.join(&rendition.id).join("index.m3u8"),
            hls::media_playlist(rendition),
        )
        .await?;
        if let Some(playlist) = crate::iframes::playlist(rendition) {
            let path = staging_dir
                .join(&rendition.id)
                .join(crate::iframes::PLAYLIST);
            write_file(path, playlist).await?;
        }
    }
    write_file(
        staging_dir.join("master.m3u8"),
        hls::multivariant_playlist(renditions, subtitles, &base),
    )
    .await?;
    write_file(
        staging_dir.join("manifest.mpd"),
        dash::mpd(renditions, subtitles, &base),
    )
    .await?;
    if let Some(thumbnails) = thumbnails {
        write_file(
            staging_dir.join("thumbs").join("thumbs.vtt"),
            thumbs::vtt(thumbnails, duration, "sprite.jpg"),
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::subtitle_tracks::MAX_SUBTITLE_TRACKS;

    #[test]
    fn subtitles_plan_source_text_tracks_then_sidecars_and_skips_bitmaps() {
        let json = br#"{"streams": [
            {"index": 0, "codec_type": "audio", "codec_name": "aac", "channels": 2, "duration": "4"},
            {"index": 1, "codec_type": "subtitle", "codec_name": "hdmv_pgs_subtitle", "tags": {"language": "ger"}},
            {"index": 2, "codec_type": "subtitle", "codec_name": "subrip", "tags": {"title": "Signs"}, "disposition": {"forced": 1}}
        ], "format": {"format_name": "matroska,webm", "duration": "4"}}"#;
        let source = probe::interpret(json, "").unwrap();
        let sidecar = SidecarSubtitle::parse("fr+sdh=x.srt").unwrap();
        let (planned, skipped) = plan_subtitles(&source, std::slice::from_ref(&sidecar)).unwrap();
        let names: Vec<(&str, &str, &str, bool, bool)> = planned
            .iter()
            .map(|p| {
                let r = &p.rendition;
                (
                    r.id.as_str(),
                    r.language.as_str(),
                    r.name.as_str(),
                    r.forced,
                    r.hearing_impaired,
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                ("sub0", "und", "Signs", true, false),
                ("sub1", "fr", "French (SDH)", false, true)
            ]
        );
        assert_eq!(planned[1].sidecar.as_deref(), Some(Path::new("x.srt")));
        assert_eq!(
            skipped,
            [SkippedSubtitle {
                language: "de".into(),
                codec: "hdmv_pgs_subtitle".into()
            }]
        );
        let error = plan_subtitles(&source, &vec![sidecar; MAX_SUBTITLE_TRACKS])
            .err()
            .unwrap()
            .to_string();
        assert_eq!(
            error,
            "source is refused: it has 65 subtitle tracks (with the sidecar files), beyond the \
             limit of 64"
        );
    }

    #[test]
    fn config_defaults_and_unknown_keys() {
        let config: IngestConfig = serde_json::from_str(r#"{"preset": "ultrafast"}"#).unwrap();
        assert_eq!(config.concurrency, 1);
        assert_eq!(config.stall_timeout, Duration::from_secs(120));
        assert!(serde_json::from_str::<IngestConfig>(r#"{"presets": "x"}"#).is_err());
        let bad = IngestConfig {
            preset: "fastest".into(),
            ..IngestConfig::default()
        };
        assert!(bad.validate().unwrap_err().to_string().contains("fastest"));
    }
}
