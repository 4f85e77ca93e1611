//! The per-video file table: a manifest turned into a table from request
//! path to [`FileInfo`], with every constant response header (ETag,
//! Content-Type, Cache-Control, Content-Length, Last-Modified) rendered once,
//! for one of the two ways a video is addressed ([`Addressing`]), plus the
//! bit rate one viewing session of it may draw. Pure: no store, no cache.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderValue;
use kinema_core::{AccessPolicy, Manifest, ObjectPath, RenditionKind, VideoId};

use crate::metrics::RouteKind;

/// How long a cache may serve a playlist past its freshness while the
/// origin fails (RFC 5861 §4): a day, so an outage does not stop VOD
/// viewers whose players reload playlists.
const STALE_IF_ERROR_SECONDS: u64 = 86_400;
/// How long a cache may serve a media playlist past its freshness while it
/// revalidates in the background (RFC 5861 §3).
const STALE_WHILE_REVALIDATE_SECONDS: u64 = 60;

/// Content-addressed key of a file's bytes: the first 128 bits of its
/// SHA-256 and its size. Identical content under two names is one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentKey {
    pub digest: u128,
    pub size: u64,
}

/// One servable file of a video, with its constant headers pre-rendered.
#[derive(Debug)]
pub struct FileInfo {
    pub path: ObjectPath,
    pub size: u64,
    pub key: ContentKey,
    /// The manifest's SHA-256 of the file: what its bytes are checked
    /// against before they are cached or served.
    pub sha256: [u8; 32],
    pub kind: RouteKind,
    /// Strong ETag from the checksum (RFC 9110 §8.8.3).
    pub etag: HeaderValue,
    pub content_type: HeaderValue,
    pub cache_control: HeaderValue,
    pub content_length: HeaderValue,
    /// Index (in [`Video::files`]) of the next numbered segment of the same
    /// rendition, when the manifest lists it: what prefetch loads.
    pub next_segment: Option<usize>,
    /// The multivariant playlist or the MPD: what a player asks for first,
    /// so a request for it starts a viewing session.
    pub starts_session: bool,
}

/// Which URLs a [`Video`]'s table answers, and so how long its responses
/// may be cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing {
    /// `/v/{id}/{path}`: whatever generation is current. Revalidated after
    /// `manifest_max_age`, never `immutable`: a republish changes the bytes.
    Stable,
    /// `/v/{id}/g{N}/{path}`: one generation, whose files never change.
    Generation,
}

/// A published video (one generation of it), ready to answer requests.
#[derive(Debug)]
pub struct Video {
    pub id: VideoId,
    /// The generation whose files the table lists; every store read names it.
    pub generation: u64,
    /// Public, or only through a valid `/s/{token}/` URL.
    pub access: AccessPolicy,
    /// The manifest's publish time: every file's `Last-Modified`.
    pub last_modified: SystemTime,
    pub last_modified_header: HeaderValue,
    pub files: Vec<FileInfo>,
    /// What one viewer may draw at most, bits per second: the top video
    /// rung's average bit rate plus the top audio rung's.
    pub session_bitrate: u64,
    by_path: HashMap<Box<str>, usize>,
}

impl Video {
    /// The listed file at `path`, if any. Only manifest-listed paths can
    /// match, and those were validated when the manifest was parsed.
    #[cfg(test)]
    pub fn file(&self, path: &str) -> Option<&FileInfo> {
        self.file_index(path).map(|index| &self.files[index])
    }

    /// The index in [`Video::files`] of the listed file at `path`.
    pub fn file_index(&self, path: &str) -> Option<usize> {
        self.by_path.get(path).copied()
    }

    pub fn from_manifest(
        manifest: &Manifest,
        manifest_max_age: Duration,
        addressing: Addressing,
    ) -> Self {
        fn starts_session(path: &ObjectPath) -> bool {
            matches!(path.as_str(), "master.m3u8" | "manifest.mpd")
        }
        let last_modified = UNIX_EPOCH + Duration::from_secs(manifest.published_at_unix);
        let last_modified_header = header(&httpdate::fmt_http_date(last_modified));
        let immutable = HeaderValue::from_static("public, max-age=31536000, immutable");
        // A VOD playlist never changes once published, so caches may keep
        // serving it through an origin outage (RFC 5861 stale-if-error, a
        // day) and while they revalidate (stale-while-revalidate). Not the
        // master playlist or MPD, though: fetching one starts a session,
        // which admission may refuse, and a cache serving it stale while it
        // revalidates would start the session the origin refused.
        let max_age = manifest_max_age.as_secs();
        let session_start = header(&format!(
            "public, max-age={max_age}, stale-if-error={STALE_IF_ERROR_SECONDS}"
        ));
        let media_playlist = header(&format!(
            "public, max-age={max_age}, stale-while-revalidate={STALE_WHILE_REVALIDATE_SECONDS}, \
             stale-if-error={STALE_IF_ERROR_SECONDS}"
        ));
        // A stable URL names whatever generation is current: no cache may
        // keep it past `max_age` without asking, nor serve it stale while
        // asking (a media playlist of the old generation beside segments of
        // the new would mix two videos). Its ETag stays the content's: a
        // cache that revalidates an unchanged file (say, an init segment
        // equal in both) is rightly told 304, since equal tags mean equal
        // bytes.
        let stable = session_start.clone();
        let mut by_path = HashMap::with_capacity(manifest.files.len());
        let mut files: Vec<FileInfo> = manifest
            .files
            .iter()
            .enumerate()
            .map(|(index, entry)| {
                by_path.insert(entry.path.as_str().into(), index);
                let kind = kind_of(&entry.path);
                FileInfo {
                    path: entry.path.clone(),
                    size: entry.size,
                    key: ContentKey {
                        digest: digest_prefix(&entry.sha256),
                        size: entry.size,
                    },
                    sha256: digest_bytes(&entry.sha256),
                    kind,
                    etag: header(&entry.etag()),
                    content_type: HeaderValue::from_static(kinema_http::content_type::for_path(
                        entry.path.as_str(),
                    )),
                    cache_control: match (addressing, kind) {
                        _ if starts_session(&entry.path) => session_start.clone(),
                        (Addressing::Stable, _) => stable.clone(),
                        (Addressing::Generation, RouteKind::Playlist) => media_playlist.clone(),
                        (Addressing::Generation, _) => immutable.clone(),
                    },
                    content_length: HeaderValue::from(entry.size),
                    next_segment: None,
                    starts_session: starts_session(&entry.path),
                }
            })
            .collect();
        for file in &mut files {
            file.next_segment = file
                .path
                .next_segment()
                .and_then(|next| by_path.get(next.as_str()).copied());
        }
        let top = |kind: RenditionKind| {
            manifest
                .renditions
                .iter()
                .filter(|rendition| rendition.kind == kind)
                .map(|rendition| rendition.bitrate)
                .max()
                .unwrap_or(0)
        };
        Self {
            id: manifest.id.clone(),
            generation: manifest.generation,
            access: manifest.access,
            last_modified,
            last_modified_header,
            files,
            session_bitrate: top(RenditionKind::Video) + top(RenditionKind::Audio),
            by_path,
        }
    }
}

fn kind_of(path: &ObjectPath) -> RouteKind {
    match path.extension() {
        Some("m4s") => RouteKind::Segment,
        Some("m3u8") | Some("mpd") => RouteKind::Playlist,
        Some("mp4") if path.as_str().ends_with("/init.mp4") || path.as_str() == "init.mp4" => {
            RouteKind::Init
        }
        _ => RouteKind::OtherMedia,
    }
}

/// The manifest validated the checksum as 64 lowercase hex digits.
fn digest_prefix(sha256: &str) -> u128 {
    u128::from_str_radix(&sha256[..32], 16).unwrap_or_default()
}

/// The whole checksum as bytes (the manifest validated its 64 hex digits).
fn digest_bytes(sha256: &str) -> [u8; 32] {
    let mut digest = [0; 32];
    let _ = hex::decode_to_slice(sha256, &mut digest);
    digest
}

fn header(text: &str) -> HeaderValue {
    // Only ever called on ASCII we produced (dates, numbers, quoted hex).
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}
#[cfg(test)]
mod tests {
    use super::*;
    use kinema_core::{AccessPolicy, FileEntry, MANIFEST_FORMAT_VERSION};

    fn entry(path: &str, sha_char: char) -> FileEntry {
        FileEntry {
            path: ObjectPath::new(path).unwrap(),
            size: 100,
            sha256: sha_char.to_string().repeat(64),
        }
    }

    #[test]
    fn files_get_headers_kinds_and_prefetch_links() {
        let manifest = Manifest {
            format_version: MANIFEST_FORMAT_VERSION,
            id: VideoId::new("clip").unwrap(),
            generation: 5,
            title: "t".into(),
            duration_seconds: 8.0,
            segment_duration_seconds: 4.0,
            published_at_unix: 1_700_000_000,
            access: AccessPolicy::Public,
            renditions: vec![],
            files: vec![
                entry("master.m3u8", 'a'),
                entry("v1/init.mp4", 'b'),
                entry("v1/1.m4s", 'c'),
                entry("v1/2.m4s", 'd'),
                entry("thumbs/poster.jpg", 'e'),
            ],
        };
        let video = Video::from_manifest(&manifest, Duration::from_secs(7), Addressing::Generation);
        assert_eq!(video.generation, 5);
        assert_eq!(video.last_modified_header, "Tue, 14 Nov 2023 22:13:20 GMT");
        let master = video.file("master.m3u8").unwrap();
        assert_eq!(master.kind, RouteKind::Playlist);
        assert_eq!(
            master.cache_control,
            "public, max-age=7, stale-if-error=86400"
        );
        assert_eq!(master.content_type, "application/vnd.apple.mpegurl");
        let first = video.file("v1/1.m4s").unwrap();
        assert_eq!(first.kind, RouteKind::Segment);
        assert_eq!(first.cache_control, "public, max-age=31536000, immutable");
        assert_eq!(first.etag, format!("\"{}\"", "c".repeat(32)).as_str());
        assert_eq!(
            video.files[first.next_segment.unwrap()].path.as_str(),
            "v1/2.m4s"
        );
        assert!(video.file("v1/2.m4s").unwrap().next_segment.is_none());
        assert_eq!(video.file("v1/init.mp4").unwrap().kind, RouteKind::Init);
        assert_eq!(
            video.file("thumbs/poster.jpg").unwrap().kind,
            RouteKind::OtherMedia
        );
        assert!(video.file("manifest.json").is_none());
        assert!(video.file("../master.m3u8").is_none());

        // At the stable URLs, nothing is immutable: a republish changes
        // what they name. The ETag stays the content's.
        let stable = Video::from_manifest(&manifest, Duration::from_secs(7), Addressing::Stable);
        for file in &stable.files {
            assert_eq!(
                file.cache_control, "public, max-age=7, stale-if-error=86400",
                "{}",
                file.path
            );
        }
        assert_eq!(stable.file("v1/1.m4s").unwrap().etag, first.etag);
    }

    fn rendition(id: &str, kind: RenditionKind, bitrate: u64) -> kinema_core::Rendition {
        kinema_core::Rendition {
            id: id.into(),
            kind,
            codecs: "c".into(),
            width: None,
            height: None,
            frame_rate: None,
            bitrate,
            peak_bitrate: bitrate * 2,
            segments: 1,
        }
    }

    #[test]
    fn sessions_start_at_the_master_or_mpd_and_may_draw_the_top_rungs() {
        let manifest = Manifest {
            format_version: MANIFEST_FORMAT_VERSION,
            id: VideoId::new("clip").unwrap(),
            generation: 5,
            title: "t".into(),
            duration_seconds: 4.0,
            segment_duration_seconds: 4.0,
            published_at_unix: 1_700_000_000,
            access: AccessPolicy::Public,
            renditions: vec![
                rendition("v360", RenditionKind::Video, 800_000),
                rendition("v720", RenditionKind::Video, 3_000_000),
                rendition("v240", RenditionKind::Video, 300_000),
                rendition("a64", RenditionKind::Audio, 64_000),
                rendition("a128", RenditionKind::Audio, 128_000),
            ],
            files: vec![
                entry("master.m3u8", 'a'),
                entry("manifest.mpd", 'b'),
                entry("v720/index.m3u8", 'c'),
                entry("v720/1.m4s", 'd'),
            ],
        };
        let video = Video::from_manifest(&manifest, Duration::from_secs(7), Addressing::Stable);
        assert_eq!(video.session_bitrate, 3_128_000);
        let starting: Vec<&str> = video
            .files
            .iter()
            .filter(|file| file.starts_session)
            .map(|file| file.path.as_str())
            .collect();
        assert_eq!(starting, ["master.m3u8", "manifest.mpd"]);
    }
}
