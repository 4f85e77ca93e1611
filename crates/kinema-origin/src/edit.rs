//! `PATCH /api/videos/{id}`: a published video's title and description
//! changed without publishing its media again, kept in the store's
//! metadata object ([`kinema_store::metadata`]); and its access policy,
//! which is published as a new generation of the same media
//! ([`crate::policy`]).
//!
//! ```text
//! PATCH /api/videos/{id}   {"title": "…", "description": "…", "access": "public"|"signed"}
//!                          (any of them, at least one)
//! → 200 {"id", "title", "description", "access", "generation"}
//! ```
//!
//! Bounded: a body of at most [`MAX_EDIT_BODY`] bytes, a title of 1 to 200
//! characters, a description of at most 5,000; unknown fields are refused.
//!
//! Each edit is noted in a small journal the public catalogue's index
//! reads on its next refresh ([`edited_since`]), so an edit shows there
//! within a refresh instead of waiting for its periodic re-read. The API
//! and the index are built apart from each other, so the journal is the
//! process's: an origin that did not make an edit at most re-reads a video
//! it then finds unchanged.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use futures::StreamExt;
use http::{HeaderMap, StatusCode};
use kinema_core::{AccessPolicy, VideoId};
use kinema_http::{RequestBody, ResponseBody, respond};
use kinema_media::{IngestService, JobId, JobState};
use kinema_store::{Store, StoreError, VideoMetadata, metadata};
use serde::Deserialize;
use serde_json::json;

use crate::catalog::Catalog;
use crate::policy::PolicyError;

/// Largest edit body read, bytes: 5,200 characters of up to four UTF-8
/// bytes each, JSON-escaped, fit.
pub const MAX_EDIT_BODY: usize = 64 * 1024;
/// How many edits the journal remembers; a reader further behind re-reads
/// everything it has.
const JOURNAL_LENGTH: usize = 1024;

type HttpResponse = http::Response<ResponseBody>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Edit {
    #[serde(default, deserialize_with = "present")]
    title: Option<String>,
    #[serde(default, deserialize_with = "present")]
    description: Option<String>,
    #[serde(default, deserialize_with = "present")]
    access: Option<AccessPolicy>,
}

/// A field that is absent or a value: `null` is refused, not taken for
/// "unchanged", so a client that means to clear a description says `""`.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

#[derive(Debug, Default)]
struct Journal {
    /// Sequence number of the next edit.
    next: u64,
    /// (sequence number, video) of the last [`JOURNAL_LENGTH`] edits.
    edits: VecDeque<(u64, VideoId)>,
}

static JOURNAL: Mutex<Journal> = Mutex::new(Journal {
    next: 0,
    edits: VecDeque::new(),
});

fn note_edit(id: &VideoId) {
    let mut journal = JOURNAL.lock().unwrap_or_else(PoisonError::into_inner);
    let sequence = journal.next;
    journal.next += 1;
    if journal.edits.len() == JOURNAL_LENGTH {
        journal.edits.pop_front();
    }
    journal.edits.push_back((sequence, id.clone()));
}

/// What was edited since sequence number `seen`: the videos, or `None`
/// when the journal no longer reaches back that far (re-read them all);
/// and the sequence number to pass next time.
pub fn edited_since(seen: u64) -> (Option<Vec<VideoId>>, u64) {
    let journal = JOURNAL.lock().unwrap_or_else(PoisonError::into_inner);
    let oldest = journal.edits.front().map_or(journal.next, |edit| edit.0);
    if seen < oldest {
        return (None, journal.next);
    }
    let edited = journal
        .edits
        .iter()
        .filter(|(sequence, _)| *sequence >= seen)
        .map(|(_, id)| id.clone())
        .collect();
    (Some(edited), journal.next)
}

/// Answers `PATCH /api/videos/{id}`; `catalog` forgets the video once its
/// policy changed, so this origin serves the new generation at once.
pub async fn patch_video(
    store: &dyn Store,
    catalog: &Catalog,
    id: VideoId,
    body: RequestBody,
) -> HttpResponse {
    let body = match read_body(body).await {
        Ok(body) => body,
        Err(response) => return *response,
    };
    let edit: Edit = match serde_json::from_slice(&body) {
        Ok(edit) => edit,
        Err(error) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                format!(
                    "the body must be a JSON object with \"title\", \"description\" and/or \"access\" (\"public\" or \"signed\"): {error}"
                ),
            );
        }
    };
    if edit.title.is_none() && edit.description.is_none() && edit.access.is_none() {
        return error_response(
            StatusCode::BAD_REQUEST,
            "nothing to change; send \"title\", \"description\" and/or \"access\"",
        );
    }
    let title = edit.title.map(|title| title.trim().to_string());
    if let Some(Err(message)) = title.as_deref().map(metadata::check_title) {
        return error_response(StatusCode::BAD_REQUEST, message);
    }
    if let Some(Err(message)) = edit.description.as_deref().map(metadata::check_description) {
        return error_response(StatusCode::BAD_REQUEST, message);
    }
    let (manifest, current) = match read_both(store, &id).await {
        Ok(read) => read,
        Err(error) => return store_error(&id, error),
    };
    // A new policy is a new generation; an edited title that applies now
    // is made to name it (written first, so the title never lapses).
    let republish = edit
        .access
        .filter(|access| *access != manifest.access)
        .map(|_| crate::policy::next_generation(manifest.generation, SystemTime::now()));
    let generation = republish.unwrap_or(manifest.generation);
    let mut updated = current.clone();
    if let Some(title) = title {
        updated.title = Some(title);
        updated.generation = generation;
    } else if updated.title.is_some() && updated.generation < manifest.generation {
        // A title edited before the last publish no longer applies; keep
        // it from applying again.
        updated.title = None;
    } else if updated.title.is_some() {
        updated.generation = generation;
    }
    if let Some(description) = edit.description {
        updated.description = description;
    }
    if updated != current
        && let Err(error) = store.set_metadata(&id, &updated).await
    {
        return store_error(&id, error);
    }
    let mut manifest = manifest;
    if let (Some(access), Some(generation)) = (edit.access, republish) {
        match crate::policy::change_access(store, &manifest, access, generation).await {
            Ok(republished) => manifest = republished,
            Err(PolicyError::Store(error)) => return store_error(&id, error),
            Err(error @ PolicyError::TooLarge { .. }) => {
                tracing::error!(video = %id, %error, "cannot change a video's access policy");
                return error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error; see the server log",
                );
            }
        }
        catalog.invalidate(&id).await;
    }
    note_edit(&id);
    respond::json(
        StatusCode::OK,
        &json!({
            "id": id,
            "title": updated.title(&manifest),
            "description": updated.description,
            "access": manifest.access,
            "generation": manifest.generation,
        }),
        HeaderMap::new(),
    )
}

/// How often [`describe_when_published`] looks at its job.
const JOB_POLL: Duration = Duration::from_secs(1);
/// How long it waits for the job at most.
const JOB_WAIT: Duration = Duration::from_secs(24 * 60 * 60);

/// Sets the description an upload carried once its job has published the
/// video (an upload is not a video yet, and a manifest has no place for
/// it). Waits in the background, polling the job; a job that fails or is
/// cancelled, or a server that stops first, leaves no description.
pub fn describe_when_published(
    store: Arc<dyn Store>,
    ingest: IngestService,
    job: JobId,
    description: String,
) {
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + JOB_WAIT;
        while tokio::time::Instant::now() < deadline {
            let view = match ingest.job(&job).await {
                Ok(view) => view,
                Err(_) => return,
            };
            match view.state {
                JobState::Done => {
                    let id = view.video_id;
                    let described = async {
                        let (manifest, mut metadata) = read_both(store.as_ref(), &id).await?;
                        if metadata.generation < manifest.generation {
                            metadata.title = None;
                        }
                        metadata.description = description;
                        store.set_metadata(&id, &metadata).await
                    };
                    match described.await {
                        Ok(()) => note_edit(&id),
                        Err(error) => {
                            tracing::warn!(video = %id, %error, "cannot set an upload's description")
                        }
                    }
                    return;
                }
                JobState::Failed | JobState::Cancelled => return,
                JobState::Queued | JobState::Running => tokio::time::sleep(JOB_POLL).await,
            }
        }
    });
}

/// The manifest and the metadata of a published video.
pub async fn read_both(
    store: &dyn Store,
    id: &VideoId,
) -> Result<(kinema_core::Manifest, VideoMetadata), StoreError> {
    let manifest = store.manifest(id).await?;
    let metadata = store.metadata(id).await?;
    Ok((manifest, metadata))
}

fn store_error(id: &VideoId, error: StoreError) -> HttpResponse {
    // A file its manifest lists is gone: the video is damaged, not absent.
    if let StoreError::ObjectNotFound { path, .. } = &error {
        tracing::error!(video = %id, %path, "a listed file is missing from the store");
        return error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("video {id} is missing its file {path} in the store; upload it again"),
        );
    }
    if error.is_not_found() {
        return error_response(StatusCode::NOT_FOUND, format!("video {id} does not exist"));
    }
    if let StoreError::BadMetadata { detail, .. } = &error {
        return error_response(StatusCode::BAD_REQUEST, detail.clone());
    }
    if let StoreError::StaleGeneration { .. } = &error {
        return error_response(
            StatusCode::CONFLICT,
            format!("video {id} was published again meanwhile; try again"),
        );
    }
    tracing::error!(video = %id, %error, "cannot edit a video's metadata");
    if error.is_unavailable() {
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "the library's store is unavailable; try again shortly",
        );
    }
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error; see the server log",
    )
}

async fn read_body(mut body: RequestBody) -> Result<bytes::Bytes, Box<HttpResponse>> {
    let mut collected = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|_| {
            Box::new(error_response(
                StatusCode::BAD_REQUEST,
                "the body ended early",
            ))
        })?;
        if collected.len() + chunk.len() > MAX_EDIT_BODY {
            return Err(Box::new(error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than {MAX_EDIT_BODY} bytes"),
            )));
        }
        collected.extend_from_slice(&chunk);
    }
    Ok(collected.freeze())
}

fn error_response(status: StatusCode, message: impl Into<String>) -> HttpResponse {
    respond::json_error(status, &message.into(), HeaderMap::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_journal_names_what_was_edited_since() {
        let (_, start) = edited_since(u64::MAX);
        let one = VideoId::new("journal-one").unwrap();
        let two = VideoId::new("journal-two").unwrap();
        note_edit(&one);
        note_edit(&two);
        // Other tests may edit meanwhile: what this one noted is there.
        let (edited, next) = edited_since(start);
        let edited = edited.unwrap();
        assert!(edited.contains(&one) && edited.contains(&two), "{edited:?}");
        assert!(next >= start + 2);
        for _ in 0..JOURNAL_LENGTH {
            note_edit(&one);
        }
        assert_eq!(edited_since(start).0, None, "too far behind: re-read all");
    }
}
