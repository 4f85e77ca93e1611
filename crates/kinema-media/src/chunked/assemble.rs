//! The last task of a chunked ingest: from every task's output in one
//! staging directory to a published video.
//!
//! Before anything is measured it checks what only a chunked encode can get
//! wrong: every chunk's init segment present and byte for byte the same
//! (one is kept), and every video rendition's segments continuous across
//! chunk boundaries (each starts where the one before ended, so no gap and
//! no overlap), with the last chunk's segments there. Then the whole
//! ingest's own packaging runs: measure, playlists, MPD, I-frame
//! playlists, download, checksums, publish.

use std::path::Path;

use kinema_core::{AccessPolicy, VideoId};
use kinema_store::Store;
use tokio_util::sync::CancellationToken;

use super::ChunkedPlan;
use super::run::{chunk_init_name, chunk_tile_name, thumbnail_plan};
use crate::mp4::TrackKind;
use crate::package::MeasuredRendition;
use crate::pipeline::{self, Encoded, IngestConfig, Ingested, Progress, Publication, Stage};
use crate::subtitle_tracks::plan_subtitles;
use crate::{MediaError, transcode};

/// Who the assembled video is published as.
#[derive(Debug, Clone)]
pub struct AssembleRequest {
    pub id: VideoId,
    pub title: String,
    pub access: AccessPolicy,
}

/// Publishes the video whose task outputs are all in `staging_dir`: the
/// stream directories `0/`, `1/`, … of [`run_chunk`](super::run_chunk)
/// (every chunk's) and [`run_audio`](super::run_audio), its `thumbs/` and
/// `sub{k}/`; or what [`run_whole`](super::run_whole) wrote. The directory
/// is consumed by the publish, and removed on failure.
pub async fn assemble(
    store: &dyn Store,
    config: &IngestConfig,
    plan: &ChunkedPlan,
    staging_dir: &Path,
    request: &AssembleRequest,
    cancel: &CancellationToken,
    on_progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<Ingested, MediaError> {
    let result = assemble_in(
        store,
        config,
        plan,
        staging_dir,
        request,
        cancel,
        on_progress,
    )
    .await;
    match result {
        Ok(ingested) => Ok(ingested),
        Err(error) => {
            let error = pipeline::explain_full_disk(error, Stage::Packaging, staging_dir).await;
            let _ = tokio::fs::remove_dir_all(staging_dir).await;
            Err(error)
        }
    }
}

async fn assemble_in(
    store: &dyn Store,
    config: &IngestConfig,
    plan: &ChunkedPlan,
    staging_dir: &Path,
    request: &AssembleRequest,
    cancel: &CancellationToken,
    on_progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<Ingested, MediaError> {
    config.validate()?;
    crate::pipeline::check_title(&request.title)?;
    if plan.is_chunked() {
        let staging = staging_dir.to_path_buf();
        let chunks = plan.chunks.len();
        let videos = plan.ladder.video.len();
        tokio::task::spawn_blocking(move || keep_one_init(&staging, videos, chunks))
            .await
            .map_err(|join| MediaError::Output(format!("init check failed: {join}")))??;
    }
    let (planned_subtitles, skipped_subtitles) = plan_subtitles(&plan.source, &plan.sidecars)?;
    let thumbnails = thumbnail_plan(plan);
    if let Some(thumbnails) = thumbnails.as_ref().filter(|_| plan.is_chunked()) {
        tile_sprite(config, staging_dir, thumbnails, plan.chunks.len()).await?;
    }
    let publication = Publication {
        id: &request.id,
        title: &request.title,
        access: request.access,
    };
    let encoded = Encoded {
        source: &plan.source,
        plan: &plan.ladder,
        thumbnails: thumbnails.as_ref(),
        subtitles: &planned_subtitles,
        skipped_subtitles,
    };
    let last_first_segment = plan.chunks.last().map_or(1, |chunk| chunk.first_segment);
    pipeline::package_and_publish(
        store,
        staging_dir,
        config,
        &publication,
        encoded,
        cancel,
        on_progress,
        |renditions| check_continuity(renditions, last_first_segment),
    )
    .await
}

/// How long tiling the sprite from the chunks' tiles may take: a few
/// hundred small images at most.
const TILE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Tiles the chunks' sprite tiles, in chunk order, into `thumbs/sprite.jpg`
/// as the whole encode's `tile` filter does, and removes them.
async fn tile_sprite(
    config: &IngestConfig,
    staging_dir: &Path,
    thumbnails: &crate::thumbs::ThumbnailPlan,
    chunks: usize,
) -> Result<(), MediaError> {
    let thumbs = staging_dir.join("thumbs");
    let tiles = thumbs.join(".tiles");
    let (from, to) = (thumbs.clone(), tiles.clone());
    let count = tokio::task::spawn_blocking(move || gather_tiles(&from, &to, chunks))
        .await
        .map_err(|join| MediaError::Output(format!("sprite tiles task failed: {join}")))??;
    if count == 0 {
        return Err(MediaError::Output(
            "the chunks wrote no sprite tiles".to_string(),
        ));
    }
    let mut command = tokio::process::Command::new(&config.ffmpeg);
    command
        .args(["-hide_banner", "-nostdin", "-y", "-loglevel", "error"])
        // Our own images, read through the file protocol alone.
        .args([
            "-protocol_whitelist",
            "file",
            "-f",
            "image2",
            "-framerate",
            "1",
        ])
        .arg("-i")
        .arg(crate::probe::input_url(&tiles.join("%05d.png")))
        .arg("-vf")
        .arg(format!("tile={}x{}", thumbnails.columns, thumbnails.rows))
        .args(["-frames:v", "1", "-q:v", "5", "-update", "1"])
        .arg(thumbs.join("sprite.jpg"))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(TILE_TIMEOUT, command.output())
        .await
        .map_err(|_| MediaError::Output("tiling the sprite timed out".to_string()))?
        .map_err(|error| crate::supervise::spawn_error(&config.ffmpeg, error))?;
    if !output.status.success() {
        return Err(MediaError::Output(format!(
            "tiling the sprite failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    tokio::fs::remove_dir_all(&tiles)
        .await
        .map_err(|error| MediaError::io(&tiles, error))
}

/// Moves every chunk's tiles from `thumbs` into `tiles`, numbered from 1 in
/// chunk order; returns how many (blocking).
fn gather_tiles(thumbs: &Path, tiles: &Path, chunks: usize) -> Result<u64, MediaError> {
    std::fs::create_dir(tiles).map_err(|error| MediaError::io(tiles, error))?;
    let mut count = 0;
    for chunk in 0..chunks {
        for number in 1.. {
            let tile = thumbs.join(chunk_tile_name(chunk, number));
            if !tile.exists() {
                break;
            }
            count += 1;
            let to = tiles.join(format!("{count:05}.png"));
            std::fs::rename(&tile, &to).map_err(|error| MediaError::io(&tile, error))?;
        }
    }
    Ok(count)
}

/// Checks that every chunk left the same init segment in every video
/// stream directory, keeps it as `init.mp4` and removes the copies
/// (blocking).
fn keep_one_init(staging_dir: &Path, videos: usize, chunks: usize) -> Result<(), MediaError> {
    for stream in 0..videos {
        let dir = staging_dir.join(transcode::stream_dir(stream));
        let mut first: Option<Vec<u8>> = None;
        for chunk in 0..chunks {
            let path = dir.join(chunk_init_name(chunk));
            let bytes = match std::fs::read(&path) {
                Ok(bytes) => bytes,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    return Err(MediaError::Output(format!(
                        "chunk {chunk} has no output for video stream {stream}: it has not run, \
                         or its files were not copied into the staging directory"
                    )));
                }
                Err(error) => return Err(MediaError::io(&path, error)),
            };
            match &first {
                None => first = Some(bytes),
                Some(first) if *first == bytes => {}
                Some(_) => {
                    return Err(MediaError::Output(format!(
                        "chunk {chunk}'s init segment of video stream {stream} differs from \
                         chunk 0's: the chunks were not encoded with the same settings"
                    )));
                }
            }
        }
        let from = dir.join(chunk_init_name(0));
        let to = dir.join("init.mp4");
        std::fs::rename(&from, &to).map_err(|error| MediaError::io(&from, error))?;
        for chunk in 1..chunks {
            let path = dir.join(chunk_init_name(chunk));
            std::fs::remove_file(&path).map_err(|error| MediaError::io(&path, error))?;
        }
    }
    Ok(())
}

/// Every video rendition reaches the last chunk, and each of its segments
/// starts where the one before ended.
fn check_continuity(
    renditions: &[MeasuredRendition],
    last_first_segment: u64,
) -> Result<(), MediaError> {
    for rendition in renditions
        .iter()
        .filter(|rendition| rendition.kind() == TrackKind::Video)
    {
        if (rendition.segments.len() as u64) < last_first_segment {
            return Err(MediaError::Output(format!(
                "{} has {} segments, but the last chunk starts at segment {last_first_segment}",
                rendition.id,
                rendition.segments.len()
            )));
        }
        for (number, pair) in rendition.segments.windows(2).enumerate() {
            let end = pair[0].start + pair[0].duration;
            if end != pair[1].start {
                return Err(MediaError::Output(format!(
                    "{}: segment {} ends at tick {end} but segment {} starts at tick {}: \
                     the chunks' timestamps are not continuous",
                    rendition.id,
                    number + 1,
                    number + 2,
                    pair[1].start
                )));
            }
        }
    }
    Ok(())
}
