//! `Content-Type` by file name extension, for the files kinema serves:
//! HLS and DASH manifests, CMAF media, thumbnails and the web UI.
//!
//! A fixed table rather than a guess from content (no sniffing): a published
//! file's type follows from its name, which the packager chose. Unknown
//! extensions are `application/octet-stream`, which no browser renders.

/// The media type for a path or file name, from its last extension
/// (case-insensitive).
pub fn for_path(path: &str) -> &'static str {
    let file_name = path.rsplit('/').next().unwrap_or(path);
    match file_name.rsplit_once('.') {
        Some((_, extension)) => for_extension(extension),
        None => OCTET_STREAM,
    }
}

const OCTET_STREAM: &str = "application/octet-stream";

/// The media type for an extension without its dot.
pub fn for_extension(extension: &str) -> &'static str {
    const TABLE: &[(&str, &str)] = &[
        // RFC 8216 §4: HLS playlists.
        ("m3u8", "application/vnd.apple.mpegurl"),
        // ISO/IEC 23009-1 Annex C: the DASH MPD.
        ("mpd", "application/dash+xml"),
        // CMAF header (init segment) and RFC 4337 MP4.
        ("mp4", "video/mp4"),
        ("m4a", "audio/mp4"),
        ("m4v", "video/mp4"),
        // ISO/IEC 23009-1 registers video/iso.segment for media segments.
        ("m4s", "video/iso.segment"),
        ("ts", "video/mp2t"),
        ("vtt", "text/vtt"),
        ("jpg", "image/jpeg"),
        ("jpeg", "image/jpeg"),
        ("png", "image/png"),
        ("webp", "image/webp"),
        ("gif", "image/gif"),
        ("svg", "image/svg+xml"),
        ("ico", "image/x-icon"),
        ("json", "application/json"),
        ("html", "text/html; charset=utf-8"),
        ("htm", "text/html; charset=utf-8"),
        ("js", "text/javascript; charset=utf-8"),
        ("mjs", "text/javascript; charset=utf-8"),
        ("css", "text/css; charset=utf-8"),
        ("txt", "text/plain; charset=utf-8"),
        ("map", "application/json"),
        ("wasm", "application/wasm"),
        ("woff2", "font/woff2"),
        ("woff", "font/woff"),
    ];
    TABLE
        .iter()
        .find(|(known, _)| known.eq_ignore_ascii_case(extension))
        .map_or(OCTET_STREAM, |(_, media_type)| media_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_types() {
        for (path, expected) in [
            ("master.m3u8", "application/vnd.apple.mpegurl"),
            ("v360/index.m3u8", "application/vnd.apple.mpegurl"),
            ("manifest.mpd", "application/dash+xml"),
            ("v360/init.mp4", "video/mp4"),
            ("v360/12.m4s", "video/iso.segment"),
            ("thumbs/thumbs.vtt", "text/vtt"),
            ("thumbs/poster.jpg", "image/jpeg"),
            ("THUMBS/SPRITE.JPG", "image/jpeg"),
            ("app.js", "text/javascript; charset=utf-8"),
            ("index.html", "text/html; charset=utf-8"),
            ("openapi.json", "application/json"),
        ] {
            assert_eq!(for_path(path), expected, "{path}");
        }
    }

    #[test]
    fn unknown_or_missing_extension_is_octet_stream() {
        for path in ["README", "a.unknown", "dir.m3u8/file", ".", ""] {
            assert_eq!(for_path(path), OCTET_STREAM, "{path}");
        }
    }
}
