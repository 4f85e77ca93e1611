//! The encoding tasks of a chunked ingest: one chunk of video, the audio
//! and extras, or the whole video when it is not split.
//!
//! Each task owns its output directory: it is emptied first, so a retried
//! task overwrites what an earlier attempt left. ffmpeg writes into a
//! scratch directory inside it, and the files are moved to their final
//! names only once it has succeeded.

use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

use super::ChunkedPlan;
use crate::pipeline::IngestConfig;
use crate::subtitle_tracks::{convert_sidecar, plan_subtitles};
use crate::supervise::{self, Supervision};
use crate::transcode::{self, EncodePart};
use crate::written::SegmentWatch;
use crate::{MediaError, thumbs};

/// Where ffmpeg writes inside a task's output directory.
const ENCODE_DIR: &str = ".encode";

/// The name of chunk `index`'s init segment in each video stream directory;
/// [`assemble`](super::assemble) checks they are all one and keeps one as
/// `init.mp4`.
pub(crate) fn chunk_init_name(index: usize) -> String {
    format!("init-chunk{index}.mp4")
}

/// Encodes chunk `index` of `plan` for every video rung: into
/// `out_dir/{N}/` (N the rung's stream number, from 0), its segments under
/// the numbers of the whole encode and its init segment as
/// `init-chunk{index}.mp4`. `on_progress` receives the media seconds of the
/// chunk written so far.
pub async fn run_chunk(
    config: &IngestConfig,
    plan: &ChunkedPlan,
    index: usize,
    source_path: &Path,
    out_dir: &Path,
    cancel: &CancellationToken,
    on_progress: &(dyn Fn(f64) + Send + Sync),
) -> Result<(), MediaError> {
    let (chunk, part) = plan.chunk_part(index)?;
    let streams = transcode::part_stream_count(&plan.ladder, part);
    if streams == 0 {
        return Err(MediaError::Settings(
            "the plan has no video rungs to encode in chunks".to_string(),
        ));
    }
    let thumbnails = thumbnail_plan(plan);
    let extra: Vec<String> = thumbnails.iter().map(|_| "thumbs".to_string()).collect();
    let encode_dir = fresh_dirs(out_dir, streams, &extra).await?;
    let args = transcode::ffmpeg_args(
        source_path,
        &plan.source,
        &plan.ladder,
        thumbnails.as_ref(),
        &plan.encoder_settings(config),
        part,
        &encode_dir,
    );
    let expected = plan.chunk_media_seconds(index);
    encode(
        config,
        plan,
        &args,
        &encode_dir,
        streams,
        cancel,
        |seconds| {
            on_progress(seconds.clamp(0.0, expected));
        },
    )
    .await?;
    let out = out_dir.to_path_buf();
    let first_segment = chunk.first_segment;
    let expected_segments = chunk.segments;
    let has_thumbnails = thumbnails.is_some();
    blocking(move || {
        for stream in 0..streams {
            let from = encode_dir.join(transcode::stream_dir(stream));
            let to = out.join(transcode::stream_dir(stream));
            std::fs::create_dir(&to).map_err(|error| MediaError::io(&to, error))?;
            let made = count_segments(&from)?;
            if made == 0 || expected_segments.is_some_and(|expected| expected != made) {
                return Err(MediaError::Output(format!(
                    "chunk {index} made {made} segments of stream {stream}, not {}",
                    expected_segments.map_or("one or more".to_string(), |n| n.to_string())
                )));
            }
            rename(&from.join("init.mp4"), &to.join(chunk_init_name(index)))?;
            for number in 1..=made {
                let global = first_segment + number - 1;
                rename(
                    &from.join(format!("{number}.m4s")),
                    &to.join(format!("{global}.m4s")),
                )?;
            }
        }
        if has_thumbnails {
            move_thumbnails(&encode_dir.join("thumbs"), &out.join("thumbs"), index)?;
        }
        remove_dir_all(&encode_dir)
    })
    .await
}

/// Encodes every audio rendition of `plan` once over the whole source, with
/// the subtitle tracks: into `out_dir/{N}/` (N = the number of video rungs +
/// the rendition's position, as in the whole encode) and `out_dir/sub{k}/`.
/// The picture is not decoded: the thumbnails are the chunks'. `on_progress`
/// receives the media seconds written so far.
pub async fn run_audio(
    config: &IngestConfig,
    plan: &ChunkedPlan,
    source_path: &Path,
    out_dir: &Path,
    cancel: &CancellationToken,
    on_progress: &(dyn Fn(f64) + Send + Sync),
) -> Result<(), MediaError> {
    let part = EncodePart::AudioAndExtras;
    let streams = transcode::part_stream_count(&plan.ladder, part);
    let (planned_subtitles, _) = plan_subtitles(&plan.source, &plan.sidecars)?;
    let extra_dirs: Vec<String> = planned_subtitles
        .iter()
        .map(|planned| planned.rendition.id.clone())
        .collect();
    let encode_dir = fresh_dirs(out_dir, streams, &extra_dirs).await?;
    for planned in &planned_subtitles {
        if let Some(sidecar) = &planned.sidecar {
            let out = encode_dir
                .join(&planned.rendition.id)
                .join(transcode::SUBTITLE_EXTRACT);
            convert_sidecar(&config.ffmpeg, sidecar, &planned.rendition.language, &out).await?;
        }
    }
    let args = transcode::ffmpeg_args(
        source_path,
        &plan.source,
        &plan.ladder,
        None,
        &plan.encoder_settings(config),
        part,
        &encode_dir,
    );
    let duration = plan.source.duration_seconds;
    encode(
        config,
        plan,
        &args,
        &encode_dir,
        streams,
        cancel,
        |seconds| {
            on_progress(seconds.clamp(0.0, duration));
        },
    )
    .await?;
    let out = out_dir.to_path_buf();
    let videos = plan.ladder.video.len();
    blocking(move || {
        for stream in 0..streams {
            rename(
                &encode_dir.join(transcode::stream_dir(stream)),
                &out.join(transcode::stream_dir(videos + stream)),
            )?;
        }
        for dir in &extra_dirs {
            rename(&encode_dir.join(dir), &out.join(dir))?;
        }
        remove_dir_all(&encode_dir)
    })
    .await
}

/// Encodes a plan that is not split in one run, as a whole ingest does,
/// into `staging_dir` (which must not exist), ready for
/// [`assemble`](super::assemble). `on_progress` receives the media seconds
/// written so far.
pub async fn run_whole(
    config: &IngestConfig,
    plan: &ChunkedPlan,
    source_path: &Path,
    staging_dir: &Path,
    cancel: &CancellationToken,
    on_progress: &(dyn Fn(f64) + Send + Sync),
) -> Result<(), MediaError> {
    let part = EncodePart::Whole;
    let streams = transcode::part_stream_count(&plan.ladder, part);
    let (planned_subtitles, _) = plan_subtitles(&plan.source, &plan.sidecars)?;
    let thumbnails = thumbnail_plan(plan);
    tokio::fs::create_dir(staging_dir)
        .await
        .map_err(|error| MediaError::io(staging_dir, error))?;
    let mut dirs: Vec<String> = (0..streams).map(transcode::stream_dir).collect();
    dirs.extend(planned_subtitles.iter().map(|p| p.rendition.id.clone()));
    if thumbnails.is_some() {
        dirs.push("thumbs".to_string());
    }
    for dir in &dirs {
        let dir = staging_dir.join(dir);
        tokio::fs::create_dir(&dir)
            .await
            .map_err(|error| MediaError::io(&dir, error))?;
    }
    for planned in &planned_subtitles {
        if let Some(sidecar) = &planned.sidecar {
            let out = staging_dir
                .join(&planned.rendition.id)
                .join(transcode::SUBTITLE_EXTRACT);
            convert_sidecar(&config.ffmpeg, sidecar, &planned.rendition.language, &out).await?;
        }
    }
    let args = transcode::ffmpeg_args(
        source_path,
        &plan.source,
        &plan.ladder,
        thumbnails.as_ref(),
        &plan.encoder_settings(config),
        part,
        staging_dir,
    );
    let duration = plan.source.duration_seconds;
    encode(
        config,
        plan,
        &args,
        staging_dir,
        streams,
        cancel,
        |seconds| {
            on_progress(seconds.clamp(0.0, duration));
        },
    )
    .await
}

/// The sprite and poster of the source, when it has a picture.
pub(crate) fn thumbnail_plan(plan: &ChunkedPlan) -> Option<thumbs::ThumbnailPlan> {
    plan.source.video.as_ref().map(|video| {
        let (width, height) = video.display_size();
        thumbs::plan(plan.source.duration_seconds, width, height)
    })
}

/// Runs ffmpeg with `args`, writing `streams` stream directories under
/// `dir`, reporting media seconds written.
async fn encode(
    config: &IngestConfig,
    plan: &ChunkedPlan,
    args: &[String],
    dir: &Path,
    streams: usize,
    cancel: &CancellationToken,
    on_seconds: impl Fn(f64),
) -> Result<(), MediaError> {
    if cancel.is_cancelled() {
        return Err(MediaError::Cancelled);
    }
    let supervision = Supervision {
        stall_timeout: config.stall_timeout,
        log_file: None,
        output_dir: dir.to_path_buf(),
    };
    let stream_dirs = (0..streams)
        .map(|index| dir.join(transcode::stream_dir(index)))
        .collect();
    let watch = SegmentWatch::new(stream_dirs, plan.segment_seconds());
    supervise::run(
        &config.ffmpeg,
        args,
        &supervision,
        Some(watch),
        cancel,
        |progress| on_seconds(progress.out_time_seconds),
    )
    .await?;
    if cancel.is_cancelled() {
        return Err(MediaError::Cancelled);
    }
    Ok(())
}

/// Empties `out_dir` (what an earlier attempt left) and creates the scratch
/// directory ffmpeg writes into, with its stream and `extra` directories.
async fn fresh_dirs(
    out_dir: &Path,
    streams: usize,
    extra: &[String],
) -> Result<PathBuf, MediaError> {
    match tokio::fs::remove_dir_all(out_dir).await {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(MediaError::io(out_dir, error)),
    }
    let encode_dir = out_dir.join(ENCODE_DIR);
    let names = (0..streams)
        .map(transcode::stream_dir)
        .chain(extra.iter().cloned());
    for name in names {
        let dir = encode_dir.join(name);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|error| MediaError::io(&dir, error))?;
    }
    Ok(encode_dir)
}

/// The name of chunk `chunk`'s `number`-th sprite tile in `thumbs/`;
/// [`assemble`](super::assemble) tiles them in chunk order.
pub(crate) fn chunk_tile_name(chunk: usize, number: u64) -> String {
    format!("tile-c{chunk}-{number:05}.png")
}

/// Moves a chunk's sprite tiles (renamed by [`chunk_tile_name`]) and, if it
/// holds it, the poster from ffmpeg's `thumbs/` to the chunk's (blocking).
fn move_thumbnails(from: &Path, to: &Path, chunk: usize) -> Result<(), MediaError> {
    std::fs::create_dir(to).map_err(|error| MediaError::io(to, error))?;
    for number in 1.. {
        let tile = from.join(format!("tile-{number:05}.png"));
        if !tile.exists() {
            break;
        }
        rename(&tile, &to.join(chunk_tile_name(chunk, number)))?;
    }
    let poster = from.join("poster.jpg");
    if poster.exists() {
        rename(&poster, &to.join("poster.jpg"))?;
    }
    Ok(())
}

/// Segments `1.m4s`, `2.m4s`, … in `dir`, up to the first missing one
/// (blocking).
fn count_segments(dir: &Path) -> Result<u64, MediaError> {
    let mut count = 0;
    loop {
        let path = dir.join(format!("{}.m4s", count + 1));
        match std::fs::metadata(&path) {
            Ok(_) => count += 1,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(count),
            Err(error) => return Err(MediaError::io(&path, error)),
        }
    }
}

fn rename(from: &Path, to: &Path) -> Result<(), MediaError> {
    std::fs::rename(from, to).map_err(|error| MediaError::io(from, error))
}

fn remove_dir_all(dir: &Path) -> Result<(), MediaError> {
    std::fs::remove_dir_all(dir).map_err(|error| MediaError::io(dir, error))
}

async fn blocking(
    work: impl FnOnce() -> Result<(), MediaError> + Send + 'static,
) -> Result<(), MediaError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|join| MediaError::Output(format!("file task failed: {join}")))?
}
