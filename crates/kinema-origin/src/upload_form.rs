//! The parts of an upload (`POST /api/videos`) that are not the video:
//! its query string and text form fields, each bounded and checked before
//! anything is ingested, the streaming of a body to a file under a size
//! limit, and how a refused upload is answered. The API's handler (`api.rs`)
//! uses them; this module holds no state.

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http::StatusCode;
use kinema_core::{AccessPolicy, VideoId};
use kinema_media::subtitles::SidecarSubtitle;
use percent_encoding::percent_decode_str;
use tokio::io::AsyncWriteExt;

use crate::api::{HttpResponse, error_response, too_large};

#[derive(Debug)]
pub(crate) enum UploadError {
    TooLarge,
    Malformed(String),
    Io(std::io::Error),
}

impl UploadError {
    pub(crate) fn into_response(self, limit: u64) -> HttpResponse {
        match self {
            UploadError::TooLarge => too_large(limit),
            UploadError::Malformed(detail) => error_response(
                StatusCode::BAD_REQUEST,
                format!("malformed multipart/form-data body: {detail}"),
            ),
            UploadError::Io(error) if error.kind() == std::io::ErrorKind::StorageFull => {
                error_response(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "disk full (No space left on device) while storing the upload in the library \
                     (ingest/uploads); the partial upload was removed: free space on the library's \
                     disk (or move the library to a larger one) and upload again",
                )
            }
            UploadError::Io(_) => error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the upload could not be stored; see the server log",
            ),
        }
    }
}

/// Refuses an upload's id, title, access or description out of bounds (an
/// empty one is as if absent).
pub(crate) fn check_upload_fields(
    id: &Option<String>,
    title: &Option<String>,
    access: &Option<String>,
    description: &Option<String>,
) -> Result<(), String> {
    let given = |field: &Option<String>| field.clone().filter(|value| !value.is_empty());
    if let Some(id) = given(id) {
        VideoId::new(id).map_err(|error| format!("id: {error}"))?;
    }
    // Its length is the ingest pipeline's to refuse (422), as for
    // `kinema ingest --title`; a control character is refused here, as in
    // an edited title.
    if given(title).is_some_and(|title| title.chars().any(char::is_control)) {
        return Err("title: the title contains a control character (a line break, a tab)".into());
    }
    if let Some(access) = given(access) {
        access
            .parse::<AccessPolicy>()
            .map_err(|error| format!("access: {error}"))?;
    }
    if let Some(description) = given(description) {
        kinema_store::metadata::check_description(&description)
            .map_err(|message| format!("description: {message}"))?;
    }
    Ok(())
}

/// The most subtitle files one upload may carry.
pub(crate) const MAX_SUBTITLE_PARTS: usize = 32;

/// Removes an upload and its sidecar subtitle files (a refused upload).
pub(crate) async fn discard_upload(path: &std::path::Path, subtitles: &[SidecarSubtitle]) {
    let _ = tokio::fs::remove_file(path).await;
    for sidecar in subtitles {
        let _ = tokio::fs::remove_file(&sidecar.path).await;
    }
}

/// The most a multipart text part (`id`, `title`, `access`) may hold; the
/// title's own limit in characters is the ingest pipeline's.
const MAX_TEXT_FIELD_BYTES: usize = 4096;
/// The most a `description` part may hold: 5,000 characters of up to four
/// bytes each.
const MAX_DESCRIPTION_FIELD_BYTES: usize = 20_480;

/// Reads a text part of at most its limit, refusing it as
/// soon as it grows past that (never buffering the rest).
pub(crate) async fn read_text_field(
    mut field: multer::Field<'_>,
    name: &str,
) -> Result<String, UploadError> {
    let limit = if name == "description" {
        MAX_DESCRIPTION_FIELD_BYTES
    } else {
        MAX_TEXT_FIELD_BYTES
    };
    let mut bytes = Vec::new();
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|error| UploadError::Malformed(error.to_string()))?
    {
        if bytes.len() + chunk.len() > limit {
            return Err(UploadError::Malformed(format!(
                "the part \"{name}\" is larger than the limit of {limit} bytes"
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes)
        .map_err(|_| UploadError::Malformed(format!("the part \"{name}\" is not UTF-8 text")))
}

/// Writes a body to `file` as it arrives, stopping past `limit` bytes.
pub(crate) async fn stream_to_file(
    mut body: impl Stream<Item = Result<Bytes, std::io::Error>> + Unpin,
    mut file: tokio::fs::File,
    limit: u64,
) -> Result<u64, UploadError> {
    let mut size = 0u64;
    while let Some(chunk) = body.next().await {
        // A client that goes away mid-upload ends here; the caller removes
        // the partial file.
        let chunk = chunk.map_err(|error| UploadError::Malformed(error.to_string()))?;
        size += chunk.len() as u64;
        if size > limit {
            return Err(UploadError::TooLarge);
        }
        file.write_all(&chunk).await.map_err(UploadError::Io)?;
    }
    file.flush().await.map_err(UploadError::Io)?;
    file.sync_all().await.map_err(UploadError::Io)?;
    Ok(size)
}

pub(crate) fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |text: &str| {
                percent_decode_str(&text.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (decode(key), decode(value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_decode_plus_and_percent() {
        assert_eq!(
            parse_query("id=clip-1&title=My+first%20clip&empty"),
            vec![
                ("id".to_string(), "clip-1".to_string()),
                ("title".to_string(), "My first clip".to_string()),
                ("empty".to_string(), String::new()),
            ]
        );
    }
}
