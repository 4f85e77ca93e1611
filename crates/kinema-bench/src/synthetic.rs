//! Synthetic videos for load tests: HLS playlists, a DASH MPD and files of
//! exactly the sizes a ladder's bit rates and segment duration imply,
//! published into a library like any ingested video (the MPD in the shape
//! kinema-media's writer gives it, so `manifest.mpd` plays in the bench as
//! an ingested video's does).
//!
//! Like an ingested video's, the multivariant playlist's URIs and the MPD's
//! `BaseURL` lead into the generation (`g{N}/`), so a bench run follows the
//! URLs players do.
//!
//! The bench never decodes media, so a segment of the right size is as good
//! a load as a real one, costs no encoding, and makes expected figures exact
//! (a 3 Mbit/s rung with 4 s segments is 1,500,000 bytes per segment). The
//! files are not playable video, and say so in their content.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use kinema_core::{
    AccessPolicy, MANIFEST_FORMAT_VERSION, Manifest, Rendition, RenditionKind, VideoId,
};
use kinema_store::{Store, describe_files, layout};

use crate::BenchError;
use kinema_core::bitrate::format_bitrate;

/// Bytes of each synthetic init section.
pub const INIT_BYTES: usize = 1024;

/// What to generate.
#[derive(Debug, Clone)]
pub struct SyntheticVideo {
    pub id: VideoId,
    /// Each rung's bit rate, bits per second.
    pub bitrates: Vec<u64>,
    pub segment_seconds: f64,
    pub segments: u32,
}

impl SyntheticVideo {
    /// The rendition directory of a rung: `r{kbit}k`.
    pub fn rendition_id(bitrate: u64) -> String {
        format!("r{}k", bitrate / 1000)
    }

    /// Exact size of each segment of a rung.
    pub fn segment_bytes(&self, bitrate: u64) -> u64 {
        (bitrate as f64 * self.segment_seconds / 8.0).round() as u64
    }
}

fn write_file(path: &Path, content: &[u8]) -> Result<(), BenchError> {
    std::fs::write(path, content).map_err(|e| BenchError::Io {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

/// The multivariant playlist of a synthetic video, every URI starting with
/// `base` (`g{N}/`).
pub fn multivariant_playlist(video: &SyntheticVideo, base: &str) -> String {
    let mut text = String::from("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for &bitrate in &video.bitrates {
        let _ = write!(
            text,
            "#EXT-X-STREAM-INF:BANDWIDTH={bitrate},AVERAGE-BANDWIDTH={bitrate},CODECS=\"avc1.64001f\"\n{base}{}/index.m3u8\n",
            SyntheticVideo::rendition_id(bitrate)
        );
    }
    text
}

/// A rung's media playlist.
pub fn media_playlist(video: &SyntheticVideo) -> String {
    let target = video.segment_seconds.ceil() as u64;
    let mut text = format!(
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-MEDIA-SEQUENCE:1\n#EXT-X-MAP:URI=\"init.mp4\"\n"
    );
    for n in 1..=video.segments {
        let _ = write!(text, "#EXTINF:{:.3},\n{n}.m4s\n", video.segment_seconds);
    }
    text.push_str("#EXT-X-ENDLIST\n");
    text
}

/// `manifest.mpd`: the shape of kinema-media's `dash::mpd` (a static
/// presentation, one video AdaptationSet, a `SegmentTemplate` with a
/// `SegmentTimeline` in milliseconds per Representation) over the same
/// files the playlists list, with `base` (`g{N}/`) as the MPD's `BaseURL`
/// when not empty.
pub fn mpd(video: &SyntheticVideo, base: &str) -> String {
    let segment_ms = (video.segment_seconds * 1000.0).round() as u64;
    let target = video.segment_seconds.ceil() as u64;
    let mut text = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" profiles=\"urn:mpeg:dash:profile:isoff-live:2011\" \
         type=\"static\" mediaPresentationDuration=\"PT{:.3}S\" maxSegmentDuration=\"PT{target}S\" minBufferTime=\"PT{target}S\">\n{}  \
         <Period id=\"0\" start=\"PT0S\">\n    \
         <AdaptationSet id=\"0\" contentType=\"video\" mimeType=\"video/mp4\" segmentAlignment=\"true\" startWithSAP=\"1\">\n",
        video.segment_seconds * f64::from(video.segments),
        if base.is_empty() {
            String::new()
        } else {
            format!("  <BaseURL>{base}</BaseURL>\n")
        }
    );
    for &bitrate in &video.bitrates {
        let id = SyntheticVideo::rendition_id(bitrate);
        let _ = write!(
            text,
            "      <Representation id=\"{id}\" codecs=\"avc1.64001f\" bandwidth=\"{bitrate}\">\n        \
             <SegmentTemplate timescale=\"1000\" initialization=\"{id}/init.mp4\" media=\"{id}/$Number$.m4s\" startNumber=\"1\">\n          \
             <SegmentTimeline>\n            <S t=\"0\" d=\"{segment_ms}\""
        );
        if video.segments > 1 {
            let _ = write!(text, " r=\"{}\"", video.segments - 1);
        }
        text.push_str(
            "/>\n          </SegmentTimeline>\n        </SegmentTemplate>\n      </Representation>\n",
        );
    }
    text.push_str("    </AdaptationSet>\n  </Period>\n</MPD>\n");
    text
}

/// Fills `len` bytes with a labelled, incompressible-looking pattern.
fn synthetic_bytes(label: &str, len: usize) -> Vec<u8> {
    let mut content = Vec::with_capacity(len);
    content.extend_from_slice(format!("kinema synthetic segment, not media: {label}\n").as_bytes());
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    while content.len() < len {
        // xorshift: cheap bytes that no transfer encoding could shrink.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        content.extend_from_slice(&state.to_le_bytes());
    }
    content.truncate(len);
    content
}

/// Writes the video into a new directory under `staging_root` and publishes
/// it to `store` (which consumes the directory). For a library directory,
/// `staging_root` must be on its file system (its `staging/`), since the
/// publish is a rename.
pub async fn publish(
    store: &dyn Store,
    staging_root: &Path,
    video: &SyntheticVideo,
) -> Result<Manifest, BenchError> {
    if video.bitrates.is_empty() || video.segments == 0 || video.segment_seconds <= 0.0 {
        return Err(BenchError::Config {
            key: "synthetic video".into(),
            detail: "needs at least one rung, one segment and a positive segment duration".into(),
        });
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let staged = staging_root.join(format!("{}-{nanos}", video.id));
    let generation = layout::unix_millis(SystemTime::now());
    let video_for_files = video.clone();
    let staged_for_files = staged.clone();
    tokio::task::spawn_blocking(move || {
        write_files(&staged_for_files, &video_for_files, generation)
    })
    .await
    .map_err(|e| BenchError::Io {
        path: staged.clone(),
        detail: e.to_string(),
    })??;
    let files = describe_files(&staged).await?;
    let renditions = video
        .bitrates
        .iter()
        .map(|&bitrate| Rendition {
            id: SyntheticVideo::rendition_id(bitrate),
            kind: RenditionKind::Video,
            codecs: "avc1.64001f".into(),
            width: None,
            height: None,
            frame_rate: None,
            bitrate,
            peak_bitrate: bitrate,
            segments: video.segments,
        })
        .collect();
    let manifest = Manifest {
        format_version: MANIFEST_FORMAT_VERSION,
        id: video.id.clone(),
        generation,
        title: format!(
            "synthetic {} × {}s, {}",
            video.segments,
            video.segment_seconds,
            video
                .bitrates
                .iter()
                .map(|b| format_bitrate(*b))
                .collect::<Vec<_>>()
                .join("/")
        ),
        duration_seconds: video.segment_seconds * f64::from(video.segments),
        segment_duration_seconds: video.segment_seconds,
        published_at_unix: (nanos / 1_000_000_000) as u64,
        access: AccessPolicy::Public,
        renditions,
        files,
    };
    store.publish(&manifest, &staged).await?;
    Ok(manifest)
}

fn write_files(staged: &Path, video: &SyntheticVideo, generation: u64) -> Result<(), BenchError> {
    let io = |path: &Path, e: std::io::Error| BenchError::Io {
        path: path.to_path_buf(),
        detail: e.to_string(),
    };
    std::fs::create_dir_all(staged).map_err(|e| io(staged, e))?;
    let base = format!("{}/", layout::generation_dir(generation));
    write_file(
        &staged.join("master.m3u8"),
        multivariant_playlist(video, &base).as_bytes(),
    )?;
    write_file(&staged.join("manifest.mpd"), mpd(video, &base).as_bytes())?;
    let playlist = media_playlist(video);
    for &bitrate in &video.bitrates {
        let rendition = SyntheticVideo::rendition_id(bitrate);
        let dir = staged.join(&rendition);
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        write_file(&dir.join("index.m3u8"), playlist.as_bytes())?;
        write_file(
            &dir.join("init.mp4"),
            &synthetic_bytes(&format!("{rendition} init"), INIT_BYTES),
        )?;
        let size = video.segment_bytes(bitrate) as usize;
        for n in 1..=video.segments {
            write_file(
                &dir.join(format!("{n}.m4s")),
                &synthetic_bytes(&format!("{rendition} {n}"), size),
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hls::{Playlist, parse};

    /// 300 kbit/s and 3 Mbit/s, three 4 s segments.
    fn two_rungs() -> SyntheticVideo {
        SyntheticVideo {
            id: VideoId::new("synthetic").unwrap(),
            bitrates: vec![300_000, 3_000_000],
            segment_seconds: 4.0,
            segments: 3,
        }
    }

    #[test]
    fn playlists_parse_back() {
        let video = two_rungs();
        let Playlist::Multivariant(master) = parse(&multivariant_playlist(&video, "g5/")).unwrap()
        else {
            panic!("expected a multivariant playlist");
        };
        assert_eq!(master.variants[1].uri, "g5/r3000k/index.m3u8");
        assert_eq!(master.variants[1].bandwidth, 3_000_000);
        let Playlist::Media(media) = parse(&media_playlist(&video)).unwrap() else {
            panic!("expected a media playlist");
        };
        assert_eq!(media.segments.len(), 3);
        assert_eq!(media.target_duration_seconds, 4.0);
        assert_eq!(video.segment_bytes(3_000_000), 1_500_000);
    }

    #[test]
    fn mpd_has_kinemas_shape_and_parses_back() {
        let video = two_rungs();
        assert_eq!(
            mpd(&video, ""),
            r#"<?xml version="1.0" encoding="UTF-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="urn:mpeg:dash:profile:isoff-live:2011" type="static" mediaPresentationDuration="PT12.000S" maxSegmentDuration="PT4S" minBufferTime="PT4S">
  <Period id="0" start="PT0S">
    <AdaptationSet id="0" contentType="video" mimeType="video/mp4" segmentAlignment="true" startWithSAP="1">
      <Representation id="r300k" codecs="avc1.64001f" bandwidth="300000">
        <SegmentTemplate timescale="1000" initialization="r300k/init.mp4" media="r300k/$Number$.m4s" startNumber="1">
          <SegmentTimeline>
            <S t="0" d="4000" r="2"/>
          </SegmentTimeline>
        </SegmentTemplate>
      </Representation>
      <Representation id="r3000k" codecs="avc1.64001f" bandwidth="3000000">
        <SegmentTemplate timescale="1000" initialization="r3000k/init.mp4" media="r3000k/$Number$.m4s" startNumber="1">
          <SegmentTimeline>
            <S t="0" d="4000" r="2"/>
          </SegmentTimeline>
        </SegmentTemplate>
      </Representation>
    </AdaptationSet>
  </Period>
</MPD>
"#
        );
        let url = url::Url::parse("http://127.0.0.1/v/synthetic/manifest.mpd").unwrap();
        let presentation = crate::dash::parse(&mpd(&video, ""), &url).unwrap();
        let top = presentation.renditions[1].media.loaded().unwrap();
        assert_eq!(presentation.renditions[1].bandwidth, 3_000_000);
        assert_eq!(top.len(), 3);
        assert_eq!(top.segment(2).unwrap().uri, "r3000k/3.m4s");
        assert_eq!(top.init.as_ref().unwrap().uri, "r3000k/init.mp4");
        // With the generation as BaseURL, every URL leads into it.
        let pinned = mpd(&video, "g5/");
        assert!(
            pinned.contains("minBufferTime=\"PT4S\">\n  <BaseURL>g5/</BaseURL>\n  <Period"),
            "{pinned}"
        );
        let presentation = crate::dash::parse(&pinned, &url).unwrap();
        let top = presentation.renditions[1].media.loaded().unwrap();
        let resolved = top.base.join(&top.segment(2).unwrap().uri).unwrap();
        assert_eq!(resolved.path(), "/v/synthetic/g5/r3000k/3.m4s");
    }

    #[tokio::test]
    async fn publishes_files_of_exact_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let store = kinema_store::open(&kinema_store::StoreConfig::directory(dir.path()))
            .await
            .unwrap();
        // Staged on the library's file system, as ingest's workspace is.
        let staging = dir.path().join("staging");
        let video = SyntheticVideo {
            id: VideoId::new("sized").unwrap(),
            bitrates: vec![800_000],
            segment_seconds: 2.0,
            segments: 2,
        };
        let manifest = publish(&*store, &staging, &video).await.unwrap();
        let segment = manifest
            .files
            .iter()
            .find(|f| f.path.as_str() == "r800k/2.m4s")
            .unwrap();
        assert_eq!(segment.size, 200_000);
        let generation = dir
            .path()
            .join(layout::generation_prefix(&video.id, manifest.generation));
        assert!(dir.path().join("videos/sized/manifest.json").exists());
        assert!(generation.join("master.m3u8").exists());
        assert!(generation.join("manifest.mpd").exists());
    }
}
