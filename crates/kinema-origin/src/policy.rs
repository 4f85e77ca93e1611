//! A published video's access policy changed (public ↔ signed) as a new
//! generation of the same media.
//!
//! The policy lives in the manifest, and caches (edges, browsers) hold the
//! public responses of a generation's URLs as immutable: a change under the
//! same URLs would leave a now-signed video playing from any cache. So the
//! change is a republish ([`Store::republish`]): every file is copied inside
//! the store under a new generation, the two files that name the generation
//! (the multivariant playlist and the MPD, whose URIs start with `g{N}/`)
//! rewritten to name the new one, and the manifest with the new policy
//! written last. The old generation is retired as by any publish; the
//! origin refuses its files without a token once the video is signed
//! (`origin/media.rs`), so its URLs stop playing too.
//!
//! This is not the edit of a title or description, which needs no new
//! generation (`edit.rs`).

use std::time::SystemTime;

use bytes::Bytes;
use kinema_core::{AccessPolicy, FileEntry, Manifest, ObjectPath};
use kinema_store::{Store, StoreError, layout};
use sha2::{Digest, Sha256};

/// Largest file rewritten to name the new generation, bytes: a
/// multivariant playlist or an MPD (a `SegmentTemplate` per rendition) is a
/// few kilobytes; anything larger is not one this build wrote.
pub const MAX_REWRITTEN_BYTES: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{path} is {size} bytes, more than the {MAX_REWRITTEN_BYTES} a playlist may have")]
    TooLarge { path: ObjectPath, size: u64 },
}

/// The generation a change made at `now` publishes over `current`: the
/// time in Unix milliseconds, as ingest chooses one, and always newer.
pub fn next_generation(current: u64, now: SystemTime) -> u64 {
    layout::unix_millis(now).max(current.saturating_add(1))
}

/// Republishes `manifest`'s video as generation `generation` with policy
/// `access`, and returns the new manifest. The caller has checked that the
/// policy differs.
pub async fn change_access(
    store: &dyn Store,
    manifest: &Manifest,
    access: AccessPolicy,
    generation: u64,
) -> Result<Manifest, PolicyError> {
    let mut next = manifest.clone();
    next.generation = generation;
    next.access = access;
    let mut replaced = Vec::new();
    for entry in &mut next.files {
        if !names_generation(&entry.path) {
            continue;
        }
        if entry.size > MAX_REWRITTEN_BYTES {
            return Err(PolicyError::TooLarge {
                path: entry.path.clone(),
                size: entry.size,
            });
        }
        let stored = store
            .get(&manifest.id, manifest.generation, &entry.path)
            .await?;
        let Some(rewritten) = rebase(&stored.bytes, manifest.generation, generation) else {
            continue;
        };
        *entry = FileEntry {
            path: entry.path.clone(),
            size: rewritten.len() as u64,
            sha256: hex::encode(Sha256::digest(&rewritten)),
        };
        replaced.push((entry.path.clone(), Bytes::from(rewritten)));
    }
    store
        .republish(&next, manifest.generation, &replaced)
        .await?;
    Ok(next)
}

/// The files whose URIs start with the generation's directory: the
/// top-level playlists a player opens at the stable URLs.
fn names_generation(path: &ObjectPath) -> bool {
    let path = path.as_str();
    !path.contains('/') && (path.ends_with(".m3u8") || path.ends_with(".mpd"))
}

/// `text` with every `g{old}/` that begins a URI (at the start of a line,
/// after a quote or after `>`) made `g{new}/`; `None` when there is none.
fn rebase(text: &[u8], old: u64, new: u64) -> Option<Vec<u8>> {
    let from = format!("{}/", layout::generation_dir(old));
    let to = format!("{}/", layout::generation_dir(new));
    let from = from.as_bytes();
    let mut out = Vec::with_capacity(text.len() + 8);
    let mut changed = false;
    let mut index = 0;
    while index < text.len() {
        let starts_uri = index == 0 || matches!(text[index - 1], b'\n' | b'"' | b'>');
        if starts_uri && text[index..].starts_with(from) {
            out.extend_from_slice(to.as_bytes());
            index += from.len();
            changed = true;
        } else {
            out.push(text[index]);
            index += 1;
        }
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Option<&str>) {
        let rebased = rebase(input.as_bytes(), 17, 2000);
        assert_eq!(
            rebased
                .as_deref()
                .map(|bytes| std::str::from_utf8(bytes).unwrap()),
            expected,
        );
    }

    #[test]
    fn only_uris_that_begin_with_the_old_generation_are_rewritten() {
        check(
            "#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,URI=\"g17/a64/index.m3u8\"\n\
             #EXT-X-STREAM-INF:BANDWIDTH=1\ng17/v360/index.m3u8\n",
            Some(
                "#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,URI=\"g2000/a64/index.m3u8\"\n\
                 #EXT-X-STREAM-INF:BANDWIDTH=1\ng2000/v360/index.m3u8\n",
            ),
        );
        check(
            "<MPD>\n  <BaseURL>g17/</BaseURL>\n</MPD>\n",
            Some("<MPD>\n  <BaseURL>g2000/</BaseURL>\n</MPD>\n"),
        );
        // Another generation, a longer number, or text mid-line: untouched.
        check("g171/v/index.m3u8\nxg17/y\ng1/z\n", None);
        check("#EXTM3U\nv360/index.m3u8\n", None);
    }

    #[test]
    fn the_next_generation_is_now_and_always_newer() {
        let now = std::time::UNIX_EPOCH + std::time::Duration::from_millis(5_000);
        assert_eq!(next_generation(1_000, now), 5_000);
        assert_eq!(next_generation(9_000, now), 9_001);
    }
}
