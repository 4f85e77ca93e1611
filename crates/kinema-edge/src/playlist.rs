//! What the edge reads in a media playlist it stores: where a finished
//! (VOD) playlist's segments end, so playlist-aware prefetch stops at the
//! last one instead of asking the origin for segments that do not exist.
//!
//! Only segments named `{n}.m4s` in the playlist's own directory count
//! (the URLs prefetch derives); a playlist without `#EXT-X-ENDLIST` may
//! still grow (RFC 8216 §4.3.3.4), so it tells nothing.

/// The largest `n` of the `{n}.m4s` segments a finished media playlist
/// lists beside itself; `None` for anything else (a multivariant
/// playlist, a live one, not a playlist).
pub fn last_segment(body: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(body).ok()?;
    let mut lines = text.lines().map(str::trim);
    if lines.next() != Some("#EXTM3U") {
        return None;
    }
    let mut finished = false;
    let mut last = None;
    for line in lines {
        if line == "#EXT-X-ENDLIST" {
            finished = true;
        } else if !line.is_empty() && !line.starts_with('#') {
            let path = line.split(['?', '#']).next().unwrap_or(line);
            if let Some(number) = segment_number(path) {
                last = last.max(Some(number));
            }
        }
    }
    if finished { last } else { None }
}

/// `n` of a URI `{n}.m4s` with no directory.
fn segment_number(path: &str) -> Option<u64> {
    let digits = path.strip_suffix(".m4s")?;
    if digits.is_empty() || digits.len() > 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The directory part of a cache key (`/v/a/360p/` of
/// `/v/a/360p/3.m4s?q`), which a playlist and its segments share.
pub fn directory(key: &str) -> &str {
    let path = key.split('?').next().unwrap_or(key);
    &path[..path.rfind('/').map_or(0, |slash| slash + 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_playlist_ends_at_its_largest_segment() {
        let playlist = "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-MAP:URI=\"init.mp4\"\n\
            #EXTINF:4,\n1.m4s\n#EXTINF:4,\n2.m4s?x=1\n#EXTINF:4,\n10.m4s\n#EXT-X-ENDLIST\n";
        assert_eq!(last_segment(playlist.as_bytes()), Some(10));
    }

    #[test]
    fn only_finished_media_playlists_tell_an_end() {
        let live = "#EXTM3U\n#EXTINF:4,\n1.m4s\n#EXTINF:4,\n2.m4s\n";
        assert_eq!(last_segment(live.as_bytes()), None);
        let multivariant =
            "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000\n360p/index.m3u8\n#EXT-X-ENDLIST\n";
        assert_eq!(last_segment(multivariant.as_bytes()), None);
        // Segments elsewhere are not the ones prefetch derives.
        let elsewhere = "#EXTM3U\n#EXTINF:4,\ng2/360p/7.m4s\n#EXT-X-ENDLIST\n";
        assert_eq!(last_segment(elsewhere.as_bytes()), None);
        assert_eq!(last_segment(b"\xff\xfe"), None);
        assert_eq!(last_segment(b"1.m4s\n#EXT-X-ENDLIST\n"), None);
    }

    #[test]
    fn directories_of_keys() {
        assert_eq!(directory("/v/a/360p/3.m4s"), "/v/a/360p/");
        assert_eq!(directory("/s/*/v/a/360p/index.m3u8?x=/y"), "/s/*/v/a/360p/");
        assert_eq!(directory("nothing"), "");
    }
}
