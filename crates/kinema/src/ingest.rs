//! `kinema ingest FILE`: turns one file into a published video in a library,
//! with a progress bar.
//!
//! This module only resolves flags, `KINEMA_*` variables and the `[ingest]`
//! section into a `kinema_media::IngestConfig`, draws progress, and turns
//! Ctrl-C into a clean cancel (ffmpeg killed, staging removed, nothing
//! published). The pipeline itself is `kinema_media::ingest`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use kinema_core::{AccessPolicy, VideoId};
use kinema_media::subtitles::SidecarSubtitle;
use kinema_media::{IngestConfig, IngestRequest, Progress, Stage, Workspace};
use kinema_store::StoreConfig;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::ConfigFile;

/// The long `--help` text of `kinema ingest`.
pub const LONG_ABOUT: &str = "Ingest one video or audio file into a library: probe it, encode an \
adaptive ladder (H.264 + AAC) with one ffmpeg process, package CMAF segments with HLS and DASH \
manifests and thumbnails, checksum everything and publish it atomically.

Example: kinema ingest clip.mp4 --library ./library --title \"My clip\"

The video then plays at /v/{id}/master.m3u8 (HLS) and /v/{id}/manifest.mpd (DASH) on \
`kinema serve --library ./library`. ffmpeg and ffprobe must be on PATH (scripts/install-deps). \
Every flag can also be set by its KINEMA_* variable or in the [ingest] section of kinema.toml, \
where the ladder is configured too ([ingest.ladder] rungs = [{ height = 360, bitrate = 700000 }], \
audio_bitrate, segment_seconds, max_frame_rate). Ctrl-C cancels: nothing is published.

The library may also be a bucket and prefix in an S3-protocol object store: \
--library s3://BUCKET/PREFIX with --s3-endpoint URL (unset: AWS S3), --s3-region and --s3-path-style; \
credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE). Every file is \
uploaded and checked, and manifest.json written last, so the video appears only when complete.

Subtitles: the source's text subtitle tracks (SubRip, ASS/SSA, mov_text, WebVTT) and every \
--subtitles file become WebVTT renditions (HLS SUBTITLES group, DASH text sets), with their \
forced and hearing-impaired flags. Bitmap tracks (PGS, DVD, DVB) cannot be converted: they are \
listed as skipped, with their language.

Example: kinema ingest film.mkv --library ./library --subtitles en=film.en.srt \
--subtitles fr+forced=film.fr.vtt";

/// Settings of `[ingest]`; a flag or variable overrides the file.
#[derive(Debug, Args, Serialize)]
pub struct IngestArgs {
    /// The video or audio file to ingest
    #[arg(value_name = "FILE")]
    #[serde(skip)]
    file: PathBuf,

    /// Id of the video (URL /v/{id}/...) [default: derived from the file name]
    #[arg(long, value_name = "ID")]
    #[serde(skip)]
    id: Option<String>,

    /// Title shown in the library [default: the id]
    #[arg(long, value_name = "TITLE")]
    #[serde(skip)]
    title: Option<String>,

    /// Who may watch: `public`, or `signed` (only through signed URLs; see
    /// `kinema sign`)
    #[arg(long, value_name = "POLICY", default_value = "public")]
    #[serde(skip)]
    access: AccessPolicy,

    /// A subtitle file to publish beside the source's own tracks, as
    /// LANG=FILE (en=film.en.srt); add +forced or +sdh after the language
    /// (fr+forced=signs.fr.srt). SubRip, ASS/SSA and WebVTT files only;
    /// repeat the flag for more files
    #[arg(long = "subtitles", value_name = "LANG=FILE", value_parser = parse_sidecar)]
    #[serde(skip)]
    subtitles: Vec<SidecarSubtitle>,

    /// Library to publish into: a directory, or s3://BUCKET/PREFIX in an
    /// S3-protocol object store (credentials from AWS_ACCESS_KEY_ID and
    /// AWS_SECRET_ACCESS_KEY, or AWS_PROFILE) [required]
    #[arg(long, env = "KINEMA_LIBRARY", value_name = "DIR|s3://BUCKET/PREFIX")]
    #[serde(skip_serializing_if = "Option::is_none")]
    library: Option<String>,

    #[command(flatten)]
    #[serde(flatten)]
    s3: crate::store::S3Args,

    /// x264 preset, ultrafast … veryslow [default: veryfast]
    #[arg(long, env = "KINEMA_INGEST_PRESET", value_name = "PRESET")]
    #[serde(skip_serializing_if = "Option::is_none")]
    preset: Option<String>,

    /// Encoder threads; 0 lets ffmpeg choose [default: 0]
    #[arg(long, env = "KINEMA_INGEST_THREADS", value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    threads: Option<u32>,

    /// Stop ffmpeg when for this long it has written no new segment bytes and
    /// reported no progress, e.g. 2m [default: 2m]
    #[arg(long, env = "KINEMA_INGEST_STALL_TIMEOUT", value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    stall_timeout: Option<String>,

    /// Keep only the audio tracks in these languages, comma-separated BCP 47
    /// or ISO 639-2 codes (en,fra) [default: every track]
    #[arg(
        long,
        env = "KINEMA_INGEST_AUDIO_LANGUAGES",
        value_name = "LANGS",
        value_delimiter = ','
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    audio_languages: Option<Vec<String>>,

    /// The progressive MP4 for download and players without MSE
    /// (download.mp4): remuxed from the rendition nearest this height, or
    /// off [default: 720]
    #[arg(long, env = "KINEMA_INGEST_DOWNLOAD", value_name = "HEIGHT|off")]
    #[serde(skip_serializing_if = "Option::is_none")]
    download: Option<String>,

    /// Ingest's own scratch directory (staging, uploads, job records), kept
    /// apart from the library [default: ingest/ inside a local library,
    /// kinema-work otherwise]
    #[arg(long, env = "KINEMA_INGEST_WORKSPACE", value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    workspace: Option<PathBuf>,

    /// The ffmpeg program [default: ffmpeg, from PATH]
    #[arg(long, env = "KINEMA_FFMPEG", value_name = "PATH")]
    #[serde(skip_serializing_if = "Option::is_none")]
    ffmpeg: Option<PathBuf>,

    /// The ffprobe program [default: ffprobe, from PATH]
    #[arg(long, env = "KINEMA_FFPROBE", value_name = "PATH")]
    #[serde(skip_serializing_if = "Option::is_none")]
    ffprobe: Option<PathBuf>,

    /// Hide the progress bar (log lines only)
    #[arg(long)]
    #[serde(skip)]
    quiet: bool,
}

fn parse_sidecar(text: &str) -> Result<SidecarSubtitle, String> {
    SidecarSubtitle::parse(text)
}

/// A video id from a file name: lowercase letters, digits and dashes.
fn id_from_file_name(path: &Path) -> Result<VideoId> {
    let stem = path
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut id = String::new();
    for character in stem.chars() {
        if character.is_ascii_alphanumeric() || character == '_' {
            id.push(character.to_ascii_lowercase());
        } else if !id.ends_with('-') {
            id.push('-');
        }
    }
    let id = id.trim_matches('-');
    let id = &id[..id.len().min(48)];
    VideoId::new(id).with_context(|| {
        format!(
            "cannot derive a video id from {}; pass --id",
            path.display()
        )
    })
}

/// The `[ingest]` settings (flags laid over the file's section) as the
/// library they name, if any, and the pipeline's config. `kinema serve` reads
/// the same section for the jobs its upload API runs.
pub fn resolve_settings(
    config_file: &ConfigFile,
    flags: &impl serde::Serialize,
) -> Result<(Option<StoreConfig>, IngestConfig)> {
    let mut table: toml::Table = config_file.resolve("ingest", flags)?;
    let library = crate::store::take_store_config("ingest", &mut table)?;
    let config: IngestConfig = serde_path_to_error::deserialize(toml::Value::Table(table))
        .map_err(|error| {
            anyhow::anyhow!(
                "config [ingest] {}: {}",
                error.path(),
                error.inner().message()
            )
        })?;
    config.validate().context("config [ingest]")?;
    Ok((library, config))
}

fn resolve(config_file: &ConfigFile, args: &IngestArgs) -> Result<(StoreConfig, IngestConfig)> {
    let (library, config) = resolve_settings(config_file, args)?;
    let Some(library) = library else {
        bail!(
            "no library given: pass --library DIR (or s3://BUCKET/PREFIX), set KINEMA_LIBRARY or library in [ingest]"
        );
    };
    Ok((library, config))
}

pub fn run(config_file: &ConfigFile, args: IngestArgs) -> Result<()> {
    let (library, config) = resolve(config_file, &args)?;
    let id = match &args.id {
        Some(id) => VideoId::new(id.clone()).context("--id")?,
        None => id_from_file_name(&args.file)?,
    };
    let title = args.title.clone().unwrap_or_else(|| id.to_string());
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(ingest(library, config, args, id, title))
}

async fn ingest(
    library: StoreConfig,
    config: IngestConfig,
    args: IngestArgs,
    id: VideoId,
    title: String,
) -> Result<()> {
    let store = crate::store::open(&library).await?;
    crate::store::collect_in_background(store.clone());
    let local_library = crate::store::local_directory(&library)?;
    let workspace_root = config.workspace_root(local_library.as_deref());
    let workspace = Workspace::open(&workspace_root).with_context(|| {
        format!(
            "cannot open the ingest workspace {}",
            workspace_root.display()
        )
    })?;
    let cleaning = workspace.clone();
    let removed = tokio::task::spawn_blocking(move || cleaning.clean_debris()).await??;
    for path in removed {
        tracing::info!(path = %path.display(), "removed debris of an interrupted ingest");
    }
    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("kinema: cancelling; nothing will be published");
            on_signal.cancel();
        }
    });

    let bar = Arc::new(if args.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(1000)
    });
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix:>11} [{bar:32}] {percent:>3}% {msg} ({elapsed})",
        )
        .expect("progress template is valid")
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let progress_bar = bar.clone();
    let on_progress = move |progress: Progress| {
        progress_bar.set_prefix(progress.stage.as_str());
        progress_bar.set_position((progress.percent * 10.0).round() as u64);
        let mut message = String::new();
        if let Some(speed) = progress.speed {
            message.push_str(&format!("{speed:.2}x"));
        }
        if let Some(eta) = progress
            .eta_seconds
            .filter(|_| progress.stage == Stage::Transcoding)
        {
            message.push_str(&format!(
                " eta {}",
                humantime::format_duration(Duration::from_secs(eta.round() as u64))
            ));
        }
        progress_bar.set_message(message);
    };
    let staging = workspace.staging_dir(id.as_str());
    let request = IngestRequest {
        source: args.file.clone(),
        id: id.clone(),
        title,
        access: args.access,
        log_file: None,
        subtitles: args.subtitles.clone(),
    };
    let started = std::time::Instant::now();
    let result = kinema_media::ingest(
        store.as_ref(),
        &staging,
        &config,
        &request,
        &cancel,
        &on_progress,
    )
    .await;
    bar.finish_and_clear();
    let ingested = result.with_context(|| format!("ingest of {} failed", args.file.display()))?;
    let manifest = &ingested.manifest;
    let renditions: Vec<String> = manifest
        .renditions
        .iter()
        .map(|rendition| match (rendition.width, rendition.height) {
            (Some(width), Some(height)) => format!(
                "{} {width}x{height} {} kbit/s",
                rendition.id,
                rendition.bitrate / 1000
            ),
            _ => format!("{} {} kbit/s", rendition.id, rendition.bitrate / 1000),
        })
        .collect();
    println!(
        "published {id} ({:.1} s) in {:.1} s: {}",
        manifest.duration_seconds,
        started.elapsed().as_secs_f64(),
        renditions.join(", ")
    );
    match manifest.access {
        AccessPolicy::Public => {
            println!("  HLS:  /v/{id}/master.m3u8");
            println!("  DASH: /v/{id}/manifest.mpd");
        }
        // Its unsigned URLs answer 403: say how to get ones that play.
        AccessPolicy::Signed => {
            println!("  signed: plays only through signed URLs; make one with");
            println!("    kinema sign {id} --ttl 2h");
        }
    }
    for subtitle in &ingested.subtitles {
        println!(
            "  subtitles: {} {} \"{}\"",
            subtitle.id, subtitle.language, subtitle.name
        );
    }
    for skipped in &ingested.skipped_subtitles {
        println!(
            "  skipped subtitles: {} ({}): bitmap subtitles cannot become WebVTT",
            skipped.language, skipped.codec
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_file_names() {
        assert_eq!(
            id_from_file_name(Path::new("/x/My Clip (2).MP4"))
                .unwrap()
                .as_str(),
            "my-clip-2"
        );
        assert_eq!(
            id_from_file_name(Path::new("big_buck.mkv"))
                .unwrap()
                .as_str(),
            "big_buck"
        );
        assert!(id_from_file_name(Path::new("/x/éé.mp4")).is_err());
    }
}
