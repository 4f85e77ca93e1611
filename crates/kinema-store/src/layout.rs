//! Where a video's objects live: the one layout every backend shares.
//!
//! Keys are relative to the store's root (a library directory, or an S3
//! bucket and prefix) and always use `/`:
//!
//! ```text
//! videos/{id}/manifest.json          the current manifest: the video exists iff this exists
//! videos/{id}/g{N}/manifest.json     generation N's copy of its manifest
//! videos/{id}/g{N}/{path}            the files generation N's manifest lists
//! videos/{id}/metadata.json          title and description edited since publish
//! ```
//!
//! A generation number is the Unix time in milliseconds at which its
//! packaging began, so it grows with every publish of an id. A publish writes
//! every file of a new generation, then its manifest copy, then the current
//! manifest last; until that last write nothing of it is visible. What else
//! is under `videos/{id}/` is either an older generation (kept for a grace
//! period, so a viewer mid-session keeps its segments) or the leftover of a
//! publish that never finished; [`collectable_generations`] decides which
//! may go.
//!
//! This module does no I/O: it names keys and decides from what a backend
//! listed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kinema_core::{MANIFEST_FILE, ObjectPath, VideoId};

/// The directory (or key prefix) every published video lives under.
pub const VIDEOS: &str = "videos";

/// How long a replaced generation stays readable after the generation that
/// replaced it began: far beyond a playlist's `max-age` plus a viewing
/// session, so no player that loaded the old playlists meets a missing file.
pub const DEFAULT_RETIRED_GRACE: Duration = Duration::from_secs(6 * 60 * 60);

/// `videos/{id}/`: everything of one video, every generation included.
pub fn video_prefix(id: &VideoId) -> String {
    format!("{VIDEOS}/{id}/")
}

/// `videos/{id}/manifest.json`: the current manifest, written last.
pub fn current_manifest_key(id: &VideoId) -> String {
    format!("{VIDEOS}/{id}/{MANIFEST_FILE}")
}

/// `videos/{id}/metadata.json`: what was edited of a published video
/// ([`crate::metadata`]).
pub fn metadata_key(id: &VideoId) -> String {
    format!("{VIDEOS}/{id}/{}", crate::metadata::METADATA_FILE)
}

/// `g{N}`: the name of generation `generation`'s directory in a video.
pub fn generation_dir(generation: u64) -> String {
    format!("g{generation}")
}

/// `videos/{id}/g{N}/`: every file of one generation.
pub fn generation_prefix(id: &VideoId, generation: u64) -> String {
    format!("{VIDEOS}/{id}/g{generation}/")
}

/// `videos/{id}/g{N}/manifest.json`: a generation's own copy of its manifest.
pub fn generation_manifest_key(id: &VideoId, generation: u64) -> String {
    format!("{VIDEOS}/{id}/g{generation}/{MANIFEST_FILE}")
}

/// `videos/{id}/g{N}/{path}`: one file of one generation.
pub fn object_key(id: &VideoId, generation: u64, path: &ObjectPath) -> String {
    format!("{VIDEOS}/{id}/g{generation}/{path}")
}

/// The generation a directory name `g{N}` stands for; `None` for any other
/// name (so `g`, `g0`, `g01`, `gx` or `v1` are never taken for one).
pub fn parse_generation_dir(name: &str) -> Option<u64> {
    let digits = name.strip_prefix('g')?;
    if digits.is_empty() || digits.starts_with('0') {
        return None;
    }
    if !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Milliseconds since the Unix epoch (0 for a clock before it): the unit of
/// generation numbers.
pub fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// What one key below `videos/{id}/` is, given the part after that prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoKey {
    /// `manifest.json`: the current manifest.
    CurrentManifest,
    /// `g{N}/…`: a file (or the manifest copy) of generation N.
    Generation(u64),
    /// Anything else: written by nothing this layout knows; never served.
    Stray,
}

/// Classifies `rest`, a key relative to `videos/{id}/`.
pub fn classify_video_key(rest: &str) -> VideoKey {
    if rest == MANIFEST_FILE {
        return VideoKey::CurrentManifest;
    }
    match rest.split_once('/') {
        Some((first, file)) if !file.is_empty() => match parse_generation_dir(first) {
            Some(generation) => VideoKey::Generation(generation),
            None => VideoKey::Stray,
        },
        _ => VideoKey::Stray,
    }
}

/// The generations of one video, among those `present`, that may be
/// deleted at `now` (Unix milliseconds).
///
/// `current` is the current manifest's generation (`None`: the video has
/// none). A generation older than the current one was replaced when the
/// current one began and goes `grace` after that. One newer than the current
/// is a publish not finished (running, or crashed): it is kept, since the
/// next publish of the id retires it. With no current manifest, every
/// generation is such a leftover, and goes `grace` after it began.
pub fn collectable_generations(
    present: &[u64],
    current: Option<u64>,
    now: u64,
    grace: Duration,
) -> Vec<u64> {
    let grace = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
    let past_grace = |began: u64| now.saturating_sub(began) >= grace;
    present
        .iter()
        .copied()
        .filter(|&generation| match current {
            Some(current) => generation < current && past_grace(current),
            None => past_grace(generation),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> VideoId {
        VideoId::new(name).unwrap()
    }

    #[test]
    fn keys() {
        let path = ObjectPath::new("v1/3.m4s").unwrap();
        assert_eq!(video_prefix(&id("clip")), "videos/clip/");
        assert_eq!(
            current_manifest_key(&id("clip")),
            "videos/clip/manifest.json"
        );
        assert_eq!(generation_prefix(&id("clip"), 7), "videos/clip/g7/");
        assert_eq!(
            generation_manifest_key(&id("clip"), 7),
            "videos/clip/g7/manifest.json"
        );
        assert_eq!(object_key(&id("clip"), 7, &path), "videos/clip/g7/v1/3.m4s");
    }

    #[test]
    fn only_canonical_generation_names_are_generations() {
        assert_eq!(parse_generation_dir("g1"), Some(1));
        assert_eq!(
            parse_generation_dir("g1765065600000"),
            Some(1_765_065_600_000)
        );
        for name in [
            "g",
            "g0",
            "g01",
            "gx",
            "g-1",
            "g+1",
            "v1",
            "1",
            "g99999999999999999999",
        ] {
            assert_eq!(parse_generation_dir(name), None, "{name}");
        }
        assert_eq!(
            classify_video_key("manifest.json"),
            VideoKey::CurrentManifest
        );
        assert_eq!(
            classify_video_key("g3/manifest.json"),
            VideoKey::Generation(3)
        );
        assert_eq!(classify_video_key("g3/v1/1.m4s"), VideoKey::Generation(3));
        assert_eq!(classify_video_key("g3/"), VideoKey::Stray);
        assert_eq!(classify_video_key("v1/1.m4s"), VideoKey::Stray);
    }

    #[test]
    fn what_may_be_collected() {
        let hour = 3_600_000;
        let grace = Duration::from_secs(3600);
        let now = 100 * hour;
        // The current generation stays; one it replaced stays for the grace
        // after the current began; one newer (unfinished) stays.
        assert_eq!(
            collectable_generations(
                &[hour, 99 * hour + 1, 101 * hour],
                Some(99 * hour + 1),
                now,
                grace
            ),
            Vec::<u64>::new()
        );
        assert_eq!(
            collectable_generations(&[hour, 98 * hour, 101 * hour], Some(98 * hour), now, grace),
            vec![hour]
        );
        // No current manifest: leftovers go once past the grace.
        assert_eq!(
            collectable_generations(&[hour, 99 * hour + 1], None, now, grace),
            vec![hour]
        );
        // A clock behind the generation never makes it old.
        assert!(collectable_generations(&[now + hour], None, now, grace).is_empty());
    }
}
