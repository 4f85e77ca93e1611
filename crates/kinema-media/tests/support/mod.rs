//! Shared fixtures of the ingest tests: tiny clips made with real ffmpeg,
//! cached under the target directory so each is encoded once even though
//! nextest runs every test in its own process, and checks run with the real
//! ffmpeg/ffprobe against published output.

#![allow(
    dead_code,
    reason = "each test binary uses a different subset of the helpers"
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use kinema_core::ladder::{LadderConfig, RungSpec};
use kinema_core::{AccessPolicy, Manifest, VideoId};
use kinema_media::subtitles::SidecarSubtitle;
use kinema_media::{IngestConfig, IngestRequest, Ingested, MediaError, Progress};
use kinema_store::{LocalStore, Store, checksum_file};
use tokio_util::sync::CancellationToken;

/// Makes (once) a fixture clip by running ffmpeg with `args` and the output
/// path appended; returns its path. Fixtures are written under a temporary
/// name and renamed, so concurrent test processes never see half a file.
pub fn fixture(name: &str, args: &[&str]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kinema-media-fixtures");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    if path.exists() {
        return path;
    }
    let tmp = dir.join(format!(".{}-{name}", std::process::id()));
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-nostdin"])
        .args(args)
        .arg(&tmp)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "making fixture {name} failed");
    std::fs::rename(&tmp, &path).unwrap();
    path
}

/// 4.5 s, 320x180 at 25 fps, with a stereo tone: more than one segment,
/// and a short last one.
pub fn plain_clip() -> PathBuf {
    fixture(
        "plain.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=320x180:r=25:d=4.5",
            "-f",
            "lavfi",
            "-i",
            "sine=f=440:d=4.5:sample_rate=44100",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-ac",
            "2",
            "-shortest",
        ],
    )
}

/// A two-rung ladder that fits the 320x180 fixtures, so alignment across
/// renditions is exercised without encoding big pictures.
pub fn test_config() -> IngestConfig {
    IngestConfig {
        ladder: LadderConfig {
            rungs: vec![
                RungSpec {
                    height: 144,
                    bitrate: 200_000,
                },
                RungSpec {
                    height: 180,
                    bitrate: 400_000,
                },
            ],
            ..LadderConfig::default()
        },
        preset: "ultrafast".into(),
        threads: 1,
        ..IngestConfig::default()
    }
}

pub struct Library {
    pub dir: tempfile::TempDir,
    pub store: Arc<LocalStore>,
}

impl Library {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(LocalStore::open(dir.path()).unwrap());
        Self { dir, store }
    }

    /// The directory of the current generation of video `id`.
    pub fn video_dir(&self, id: &str) -> PathBuf {
        let id = VideoId::new(id).unwrap();
        let current = std::fs::read(
            self.dir
                .path()
                .join(kinema_store::layout::current_manifest_key(&id)),
        )
        .unwrap();
        let generation = Manifest::from_json(&current).unwrap().generation;
        self.dir
            .path()
            .join(kinema_store::layout::generation_prefix(&id, generation))
    }

    /// Runs one ingest through the pipeline.
    pub async fn ingest(
        &self,
        source: &Path,
        id: &str,
        config: &IngestConfig,
    ) -> Result<Manifest, MediaError> {
        self.ingest_reporting(source, id, config, &|_: Progress| {})
            .await
    }

    /// Runs one ingest with sidecar subtitle files; returns all it reports.
    pub async fn ingest_with_subtitles(
        &self,
        source: &Path,
        id: &str,
        config: &IngestConfig,
        subtitles: Vec<SidecarSubtitle>,
    ) -> Result<Ingested, MediaError> {
        self.run(source, id, config, subtitles, &|_: Progress| {})
            .await
    }

    /// Runs one ingest through the pipeline, reporting its progress.
    pub async fn ingest_reporting(
        &self,
        source: &Path,
        id: &str,
        config: &IngestConfig,
        on_progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<Manifest, MediaError> {
        self.run(source, id, config, Vec::new(), on_progress)
            .await
            .map(|ingested| ingested.manifest)
    }

    async fn run(
        &self,
        source: &Path,
        id: &str,
        config: &IngestConfig,
        subtitles: Vec<SidecarSubtitle>,
        on_progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<Ingested, MediaError> {
        let request = IngestRequest {
            source: source.to_path_buf(),
            id: VideoId::new(id).unwrap(),
            title: id.to_string(),
            access: AccessPolicy::Public,
            log_file: None,
            subtitles,
        };
        let staging = self.workspace().staging_dir(id);
        kinema_media::ingest(
            self.store.as_ref(),
            &staging,
            config,
            &request,
            &CancellationToken::new(),
            on_progress,
        )
        .await
    }

    /// Ingest's workspace beside this library, `ingest/` (opened, so
    /// created, on every call).
    pub fn workspace(&self) -> kinema_media::workspace::Workspace {
        kinema_media::workspace::Workspace::open(self.dir.path().join("ingest")).unwrap()
    }

    /// The job service of this library, its workspace `ingest/`.
    pub async fn job_service(&self, config: IngestConfig) -> kinema_media::IngestService {
        kinema_media::IngestService::start(
            self.store.clone() as Arc<dyn Store>,
            self.workspace(),
            config,
        )
        .await
        .unwrap()
    }

    /// Asserts nothing of a failed ingest is visible or left in staging.
    pub async fn assert_nothing_published(&self) {
        assert!(self.store.list_videos().await.unwrap().is_empty());
        let staging: Vec<_> = std::fs::read_dir(self.workspace().staging())
            .unwrap()
            .collect();
        assert!(staging.is_empty(), "staging debris: {staging:?}");
    }
}

/// Every file the manifest lists exists with its size and checksum, and
/// nothing else is in the video's directory.
pub fn assert_complete(video_dir: &Path, manifest: &Manifest) {
    let mut on_disk = Vec::new();
    collect_files(video_dir, video_dir, &mut on_disk);
    on_disk.retain(|path| path != "manifest.json");
    on_disk.sort();
    let mut listed: Vec<String> = manifest.files.iter().map(|f| f.path.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed, "files on disk differ from the manifest");
    for file in &manifest.files {
        let (size, sha256) = checksum_file(&video_dir.join(file.path.as_str())).unwrap();
        assert_eq!(
            (size, sha256.as_str()),
            (file.size, file.sha256.as_str()),
            "{}",
            file.path
        );
    }
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_files(root, &path, out);
        } else {
            out.push(
                path.strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
}

/// Decodes every stream a manifest offers with real ffmpeg; fails on any
/// error it prints.
pub fn assert_decodes(manifest_path: &Path) {
    let at_stable_url = at_stable_url(manifest_path);
    let manifest_path = at_stable_url.as_deref().unwrap_or(manifest_path);
    let output = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(manifest_path)
        .args(["-map", "0", "-f", "null", "-"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{}: {stderr}",
        manifest_path.display()
    );
    assert!(
        stderr.trim().is_empty(),
        "{} decoded with errors: {stderr}",
        manifest_path.display()
    );
}

/// ffprobe's view of one rendition played through its media playlist:
/// (pts seconds, is keyframe) of every packet, and the end of the last.
/// A generation's multivariant playlist or MPD names its files `g{N}/…`,
/// relative to the video's stable URL (`/v/{id}/master.m3u8`), not to its
/// own place in the generation's directory: a copy of it where the stable
/// URL would be on disk (beside the generation directories) reads as a
/// player reads it.
fn at_stable_url(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?.to_str()?;
    let generation_dir = path.parent()?;
    let generation = generation_dir.file_name()?.to_str()?;
    if !matches!(name, "master.m3u8" | "manifest.mpd")
        || kinema_store::layout::parse_generation_dir(generation).is_none()
    {
        return None;
    }
    let copy = generation_dir.parent()?.join(name);
    std::fs::copy(path, &copy).unwrap();
    Some(copy)
}

pub fn packets(playlist: &Path) -> (Vec<(f64, bool)>, f64) {
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "packet=pts_time,duration_time,flags",
            "-of",
            "csv=p=0",
        ])
        .arg(playlist)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut packets = Vec::new();
    let mut end = 0.0f64;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let fields: Vec<&str> = line.split(',').collect();
        let pts: f64 = fields[0].parse().unwrap();
        let duration: f64 = fields[1].parse().unwrap_or(0.0);
        packets.push((pts, fields[2].contains('K')));
        end = end.max(pts + duration);
    }
    packets.sort_by(|a, b| a.0.total_cmp(&b.0));
    (packets, end)
}

/// EXTINF durations of a media playlist.
pub fn extinf(playlist: &Path) -> Vec<f64> {
    std::fs::read_to_string(playlist)
        .unwrap()
        .lines()
        .filter_map(|line| line.strip_prefix("#EXTINF:"))
        .map(|rest| rest.trim_end_matches(',').parse().unwrap())
        .collect()
}

/// One stream's fields as ffprobe reports them for a file.
pub fn stream_fields(path: &Path, selector: &str, fields: &str) -> String {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", selector, "-show_entries"])
        .arg(format!("stream={fields}"))
        .args(["-of", "default=nw=1"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A stream's tags (`-show_entries stream_tags=…`), `key=value` lines.
pub fn stream_fields_with_tags(path: &Path, selector: &str, tags: &str) -> String {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", selector, "-show_entries"])
        .arg(format!("stream_tags={tags}"))
        .args(["-of", "default=nw=1:nk=0"])
        .arg(path)
        .output()
        .unwrap();
    assert!(output.status.success());
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| line.trim_start_matches("TAG:").to_string())
        .collect::<Vec<_>>()
        .join(" ")
}
