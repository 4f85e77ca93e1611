//! The progressive MP4 of a video, `download.mp4` at its root: for
//! downloading, and for players without Media Source Extensions, which
//! can play a plain MP4 (served with Range like every file) but not HLS
//! or DASH.
//!
//! It is a remux, never a second encode: one video rendition (by default
//! the one nearest 720p) and the main audio track, each read back as its
//! init segment followed by its media segments (ffmpeg's `concatf:`
//! protocol over a list of our own files, so neither a copy nor an
//! argument per segment is needed), copied into one MP4 with its index
//! first (`-movflags +faststart`) so a player can start before the end
//! has arrived. It runs after the encode and reads only its outputs,
//! never the source.
//!
//! Choosing the rendition and building the argument list are pure
//! functions; [`write`] runs ffmpeg.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
use std::time::Duration;

use kinema_core::ladder::AudioRole;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::mp4::TrackKind;
use crate::package::MeasuredRendition;
use crate::pipeline::IngestConfig;
use crate::{MediaError, supervise};

/// The file's name at the video's root.
pub const FILE: &str = "download.mp4";

/// Whether to write `download.mp4`, and from which rendition
/// (`[ingest] download`: `"720"`, `720` or `"off"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownloadSetting {
    Off,
    /// The H.264 video rendition whose height is nearest this (the lower of
    /// two equally near); another codec only if there is no H.264 one.
    NearestHeight(u32),
}

impl Default for DownloadSetting {
    fn default() -> Self {
        DownloadSetting::NearestHeight(720)
    }
}

impl fmt::Display for DownloadSetting {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DownloadSetting::Off => formatter.write_str("off"),
            DownloadSetting::NearestHeight(height) => write!(formatter, "{height}"),
        }
    }
}

impl FromStr for DownloadSetting {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") {
            return Ok(DownloadSetting::Off);
        }
        match text.strip_suffix('p').unwrap_or(text).parse::<u32>() {
            Ok(height) if (1..=7680).contains(&height) => {
                Ok(DownloadSetting::NearestHeight(height))
            }
            _ => Err(format!(
                "download {text:?} is neither a picture height from 1 to 7680 (720) nor off"
            )),
        }
    }
}

impl Serialize for DownloadSetting {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DownloadSetting {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Number(u32),
            Text(String),
        }
        match Written::deserialize(deserializer)? {
            Written::Number(height) => height.to_string().parse(),
            Written::Text(text) => text.parse(),
        }
        .map_err(serde::de::Error::custom)
    }
}

/// What `download.mp4` is made of.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Choice<'a> {
    pub video: &'a MeasuredRendition,
    /// The main (stereo AAC) rendition of the default track, if the video
    /// has sound.
    pub audio: Option<&'a MeasuredRendition>,
}

/// The renditions `download.mp4` is made of, or `None` when it is off or
/// the video has no picture (an audio-only source gets none).
pub fn choose(renditions: &[MeasuredRendition], setting: DownloadSetting) -> Option<Choice<'_>> {
    let DownloadSetting::NearestHeight(target) = setting else {
        return None;
    };
    let video = renditions
        .iter()
        .filter(|rendition| rendition.kind() == TrackKind::Video)
        .min_by_key(|rendition| {
            let height = rendition.height.unwrap_or(0);
            // H.264 whenever there is some: a player without MSE (a TV, an
            // old phone) or a download decodes it where AV1 may not play.
            let h264 = rendition.track.codecs.starts_with("avc");
            (!h264, height.abs_diff(target), height)
        })?;
    let main_audio = |rendition: &&MeasuredRendition| {
        rendition
            .audio
            .as_ref()
            .is_some_and(|label| label.role == AudioRole::Main)
    };
    let audio = renditions
        .iter()
        .filter(main_audio)
        .find(|rendition| rendition.audio.as_ref().is_some_and(|label| label.default))
        .or_else(|| renditions.iter().find(main_audio));
    Some(Choice { video, audio })
}

/// The `concatf:` list of one rendition: its init segment, then its media
/// segments in order, relative to the staging directory ffmpeg runs in.
/// Each entry is a `file:` URL, so no name is read as another protocol.
pub fn concat_list(rendition: &MeasuredRendition) -> String {
    let mut list = format!("file:{}/init.mp4\n", rendition.id);
    for number in 1..=rendition.segments.len() {
        list.push_str(&format!("file:{}/{number}.m4s\n", rendition.id));
    }
    list
}

/// A list ffmpeg reads, kept in an anonymous memory file (a memfd) for as
/// long as this value lives: ffmpeg opens it by [`ListFile::path`], through
/// `/proc` and this process's descriptor. Not on the library's disk, so the
/// ingest's peak use of that disk is no more than what it publishes (a full
/// disk then always shows as the published file that did not fit); not in
/// the temporary directory either, so an ingest killed mid-remux leaves no
/// list behind: the kernel frees it with the process.
struct ListFile(std::fs::File);

impl ListFile {
    fn new(what: &str, content: &str) -> std::io::Result<Self> {
        use std::io::Write;
        let descriptor = rustix::fs::memfd_create(
            format!("kinema-download-{what}.concat"),
            rustix::fs::MemfdFlags::CLOEXEC,
        )?;
        let mut file = std::fs::File::from(descriptor);
        file.write_all(content.as_bytes())?;
        Ok(Self(file))
    }

    /// Where another process of the same user opens this list, while it
    /// lives.
    fn path(&self) -> PathBuf {
        use std::os::fd::AsRawFd;
        PathBuf::from(format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            self.0.as_raw_fd()
        ))
    }
}

/// The remux's arguments: the lists (video, then audio if any) as inputs
/// (only `concatf` and `file` may be opened), stream copy, index first.
pub fn remux_args(lists: &[PathBuf]) -> Vec<String> {
    // -xerror: ffmpeg 5.1 otherwise exits 0 when writing the trailer (the
    // faststart move) fails, say on a full disk.
    let mut args: Vec<&str> = vec![
        "-hide_banner",
        "-nostdin",
        "-y",
        "-loglevel",
        "error",
        "-xerror",
    ];
    let inputs: Vec<String> = lists
        .iter()
        .map(|list| format!("concatf:{}", list.display()))
        .collect();
    for input in &inputs {
        args.extend(["-protocol_whitelist", "concatf,file", "-i", input]);
    }
    args.extend(["-map", "0:v:0"]);
    if lists.len() > 1 {
        args.extend(["-map", "1:a:0"]);
    }
    args.extend([
        "-c",
        "copy",
        "-map_metadata",
        "-1",
        "-movflags",
        "+faststart",
        "-f",
        "mp4",
        FILE,
    ]);
    args.into_iter().map(String::from).collect()
}

/// Writes `download.mp4` into `staging_dir` as `config.download` asks
/// (nothing when off or there is no video). A remux that fails, or takes
/// longer than the stall timeout plus a tenth of the video's duration
/// (it copies at hundreds of times real time), fails the ingest.
pub async fn write(
    config: &IngestConfig,
    staging_dir: &Path,
    renditions: &[MeasuredRendition],
    cancel: &CancellationToken,
) -> Result<(), MediaError> {
    let Some(choice) = choose(renditions, config.download) else {
        return Ok(());
    };
    let started = std::time::Instant::now();
    let mut lists = vec![("video", concat_list(choice.video))];
    if let Some(audio) = choice.audio {
        lists.push(("audio", concat_list(audio)));
    }
    // Small and in memory: made on the reactor. Dropped (and freed) when
    // this function returns, after ffmpeg has exited.
    let lists = lists
        .iter()
        .map(|(what, list)| {
            ListFile::new(what, list).map_err(|error| {
                MediaError::io(format!("memfd:kinema-download-{what}.concat"), error)
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let paths: Vec<PathBuf> = lists.iter().map(ListFile::path).collect();
    let result = remux(config, staging_dir, &paths, &choice, cancel).await;
    drop(lists);
    result?;
    tracing::info!(video = %choice.video.id, audio = ?choice.audio.map(|audio| &audio.id),
        seconds = started.elapsed().as_secs_f64(), "download.mp4 written");
    Ok(())
}

async fn remux(
    config: &IngestConfig,
    staging_dir: &Path,
    lists: &[PathBuf],
    choice: &Choice<'_>,
    cancel: &CancellationToken,
) -> Result<(), MediaError> {
    let args = remux_args(lists);
    let mut command = tokio::process::Command::new(&config.ffmpeg);
    command
        .args(&args)
        .current_dir(staging_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    supervise::set_parent_death_signal(&mut command);
    let child = command
        .spawn()
        .map_err(|error| supervise::spawn_error(&config.ffmpeg, error))?;
    let limit =
        config.stall_timeout + Duration::from_secs_f64(choice.video.duration_seconds() / 10.0);
    // Dropping the future kills the child (kill_on_drop).
    let output = tokio::select! {
        () = cancel.cancelled() => return Err(MediaError::Cancelled),
        output = tokio::time::timeout(limit, child.wait_with_output()) => output,
    };
    let output = output
        .map_err(|_| {
            MediaError::Output(format!(
                "remuxing {FILE} from {} took longer than {} s; raise stall_timeout or set download = \"off\"",
                choice.video.id,
                limit.as_secs()
            ))
        })?
        .map_err(|error| MediaError::io(&config.ffmpeg, error))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stderr.contains("No space left on device") {
            return Err(MediaError::StorageFull {
                writing: FILE.to_string(),
                path: staging_dir.join(FILE),
            });
        }
        return Err(MediaError::Output(format!(
            "remuxing {FILE} from {} failed ({}): {}",
            choice.video.id,
            output.status,
            stderr.lines().last().unwrap_or_default().trim()
        )));
    }
    // Trust the bytes, not the exit status: a file cut short (a write
    // that failed without a word) is refused here, not published.
    let path = staging_dir.join(FILE);
    let read_path = path.clone();
    let layout = tokio::task::spawn_blocking(move || {
        std::fs::File::open(&read_path).and_then(|mut file| faststart_layout(&mut file))
    })
    .await
    .map_err(|join| MediaError::Output(format!("checking {FILE} failed: {join}")))?
    .map_err(|error| MediaError::io(&path, error))?;
    layout.map_err(|detail| {
        MediaError::Output(format!(
            "{FILE} remuxed from {} is not whole: {detail}",
            choice.video.id
        ))
    })
}

/// Checks an MP4's top-level boxes (headers only, seeking past each
/// payload): they tile the file exactly, and `moov` comes before `mdat`.
/// The outer error is a failed read; the inner one what is wrong.
fn faststart_layout(
    file: &mut (impl std::io::Read + std::io::Seek),
) -> std::io::Result<Result<(), String>> {
    use std::io::SeekFrom;
    let length = file.seek(SeekFrom::End(0))?;
    let mut at = 0u64;
    let mut seen: Vec<[u8; 4]> = Vec::new();
    while at < length {
        let mut header = [0u8; 16];
        let available = (length - at).min(16) as usize;
        if available < 8 {
            return Ok(Err(format!("{available} stray bytes at its end")));
        }
        file.seek(SeekFrom::Start(at))?;
        file.read_exact(&mut header[..available])?;
        let kind: [u8; 4] = [header[4], header[5], header[6], header[7]];
        let size = match u32::from_be_bytes([header[0], header[1], header[2], header[3]]) {
            1 if available == 16 => {
                u64::from_be_bytes(header[8..16].try_into().unwrap_or_default())
            }
            0 => length - at,
            size => u64::from(size),
        };
        if size < 8 || at + size > length {
            return Ok(Err(format!(
                "its {} box needs {size} bytes from {at} but the file ends at {length}",
                String::from_utf8_lossy(&kind)
            )));
        }
        seen.push(kind);
        at += size;
    }
    let moov = seen.iter().position(|kind| kind == b"moov");
    let mdat = seen.iter().position(|kind| kind == b"mdat");
    Ok(match (moov, mdat) {
        (Some(moov), Some(mdat)) if moov < mdat => Ok(()),
        (Some(_), Some(_)) => Err("its index (moov) comes after the media (mdat)".to_string()),
        _ => Err("it lacks an index (moov) or media (mdat)".to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::tests::rendition;

    fn check(actual: &str, expected: &str) {
        assert_eq!(actual.trim(), expected.trim(), "\nactual:\n{actual}\n");
    }

    fn video(id: &str, height: u32) -> MeasuredRendition {
        let mut video = rendition(id, TrackKind::Video, &[(4000, 1), (2000, 1)]);
        video.height = Some(height);
        video
    }

    fn audio(id: &str, role: AudioRole, default: bool) -> MeasuredRendition {
        let mut audio = rendition(id, TrackKind::Audio, &[(4000, 1), (2000, 1)]);
        let label = audio.audio.as_mut().unwrap();
        label.role = role;
        label.default = default;
        audio
    }

    fn chosen(renditions: &[MeasuredRendition], setting: &str) -> String {
        match choose(renditions, setting.parse().unwrap()) {
            None => "none".to_string(),
            Some(choice) => format!(
                "{} + {}",
                choice.video.id,
                choice.audio.map_or("no audio", |audio| audio.id.as_str())
            ),
        }
    }

    #[test]
    fn the_rung_nearest_the_height_and_the_default_main_audio_are_chosen() {
        let renditions = [
            video("v144", 144),
            video("v360", 360),
            video("v540", 540),
            video("v1080", 1080),
            audio("a32", AudioRole::Thin, true),
            audio("a128-fr", AudioRole::Main, false),
            audio("a128-en", AudioRole::Main, true),
            audio("ac3", AudioRole::Surround, true),
        ];
        check(
            &["720", "720p", "1000", "200", "450", "1", "off"]
                .map(|setting| format!("{setting}: {}", chosen(&renditions, setting)))
                .join("\n"),
            "
720: v540 + a128-en
720p: v540 + a128-en
1000: v1080 + a128-en
200: v144 + a128-en
450: v360 + a128-en
1: v144 + a128-en
off: none
",
        );
        // An AV1 rung of the same height is passed over for H.264.
        let mut av1 = video("v720-av1", 720);
        av1.track.codecs = "av01.0.05M.08".into();
        let both = [av1, video("v540", 540)];
        assert_eq!(chosen(&both, "720"), "v540 + no audio");
        // No default among the main renditions: the first; none at all:
        // a silent download; no video: no download.
        let silent = [video("v360", 360)];
        let first = [video("v360", 360), audio("a1", AudioRole::Main, false)];
        let sound_only = [audio("a1", AudioRole::Main, true)];
        check(
            &format!(
                "{}\n{}\n{}",
                chosen(&first, "720"),
                chosen(&silent, "720"),
                chosen(&sound_only, "720")
            ),
            "v360 + a1\nv360 + no audio\nnone",
        );
    }

    #[test]
    fn settings_parse_from_heights_and_off_and_refuse_anything_else() {
        let parsed: Vec<String> = ["720", " 1080p ", "OFF", "0", "8000", "hd", "-1"]
            .iter()
            .map(|text| match text.parse::<DownloadSetting>() {
                Ok(setting) => setting.to_string(),
                Err(error) => error,
            })
            .collect();
        check(
            &parsed.join("\n"),
            r#"
720
1080
off
download "0" is neither a picture height from 1 to 7680 (720) nor off
download "8000" is neither a picture height from 1 to 7680 (720) nor off
download "hd" is neither a picture height from 1 to 7680 (720) nor off
download "-1" is neither a picture height from 1 to 7680 (720) nor off
"#,
        );
        let from_number: DownloadSetting = serde_json::from_str("480").unwrap();
        let from_text: DownloadSetting = serde_json::from_str(r#""off""#).unwrap();
        assert_eq!(
            (from_number, from_text),
            (DownloadSetting::NearestHeight(480), DownloadSetting::Off)
        );
        assert_eq!(serde_json::to_string(&from_number).unwrap(), r#""480""#);
    }

    #[test]
    fn a_list_is_read_by_another_process_and_gone_with_its_value() {
        let list = ListFile::new("video", "file:v540/init.mp4\nfile:v540/1.m4s\n").unwrap();
        let path = list.path();
        let read = std::process::Command::new("cat")
            .arg(&path)
            .output()
            .unwrap();
        assert!(read.status.success(), "{read:?}");
        assert_eq!(read.stdout, b"file:v540/init.mp4\nfile:v540/1.m4s\n");
        drop(list);
        assert!(
            std::fs::File::open(&path).is_err(),
            "{} still opens",
            path.display()
        );
    }

    #[test]
    fn remux_reads_our_segments_through_concatf_and_copies() {
        check(
            &concat_list(&video("v540", 540)),
            "file:v540/init.mp4\nfile:v540/1.m4s\nfile:v540/2.m4s",
        );
        let video = PathBuf::from("/tmp/v.concat");
        let audio = PathBuf::from("/tmp/a.concat");
        check(
            &remux_args(&[video.clone(), audio]).join(" "),
            "-hide_banner -nostdin -y -loglevel error \
             -xerror -protocol_whitelist concatf,file -i concatf:/tmp/v.concat \
             -protocol_whitelist concatf,file -i concatf:/tmp/a.concat \
             -map 0:v:0 -map 1:a:0 -c copy -map_metadata -1 -movflags +faststart -f mp4 download.mp4",
        );
        check(
            &remux_args(&[video]).join(" "),
            "-hide_banner -nostdin -y -loglevel error \
             -xerror -protocol_whitelist concatf,file -i concatf:/tmp/v.concat \
             -map 0:v:0 -c copy -map_metadata -1 -movflags +faststart -f mp4 download.mp4",
        );
    }
    #[test]
    fn a_download_cut_short_or_without_its_index_first_is_refused() {
        let mp4_box = |kind: &[u8; 4], payload: usize| {
            let mut out = ((payload + 8) as u32).to_be_bytes().to_vec();
            out.extend_from_slice(kind);
            out.extend(std::iter::repeat_n(0u8, payload));
            out
        };
        let layout = |bytes: Vec<u8>| {
            faststart_layout(&mut std::io::Cursor::new(bytes))
                .unwrap()
                .err()
                .unwrap_or_else(|| "whole".to_string())
        };
        let whole = [
            mp4_box(b"ftyp", 8),
            mp4_box(b"moov", 40),
            mp4_box(b"mdat", 100),
        ]
        .concat();
        let cut = whole[..whole.len() - 1].to_vec();
        let late_index = [
            mp4_box(b"ftyp", 8),
            mp4_box(b"mdat", 100),
            mp4_box(b"moov", 40),
        ]
        .concat();
        let no_media = [mp4_box(b"ftyp", 8), mp4_box(b"moov", 40)].concat();
        let stray = [whole.clone(), vec![0; 3]].concat();
        check(
            &[whole, cut, late_index, no_media, stray]
                .map(layout)
                .join("\n"),
            "
whole
its mdat box needs 108 bytes from 64 but the file ends at 171
its index (moov) comes after the media (mdat)
it lacks an index (moov) or media (mdat)
3 stray bytes at its end
",
        );
    }
}
