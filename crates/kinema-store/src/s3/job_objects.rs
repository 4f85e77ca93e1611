//! The objects of ingest jobs in an S3 library: an upload's source and what
//! transcoding workers on other machines read and write for a job, under
//! `jobs/{job}/{name}` beside `videos/`, never inside it.
//!
//! Nothing here is ever served: the origin reads only `videos/`, and
//! collection of retired generations lists only `videos/`. A job's objects
//! live until the job is done with them ([`JobObjects::delete_job`]); what a
//! crash left is found by [`JobObjects::jobs`] and removed by whoever owns
//! the queue (`kinema serve` at start).
//!
//! Every object is written whole: a stream of unknown length is buffered up
//! to one part and sent in one PUT when it ends there, else as a multipart
//! upload of 8 MiB parts (a few in flight), which is aborted when the stream
//! fails or passes its limit, so a refused upload leaves no object and no
//! pending parts behind.

use std::path::Path;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use object_store::path::Path as ObjectKey;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::io::AsyncWriteExt;

use super::S3Store;
use crate::StoreError;

/// The key prefix of every job's objects, beside [`crate::layout::VIDEOS`].
pub const JOBS: &str = "jobs";
/// Longest job id or object name accepted.
const MAX_NAME_BYTES: usize = 128;
/// The size of one part of a multipart upload (S3's minimum is 5 MiB).
const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts of one object in flight at once.
const PART_CONCURRENCY: usize = 4;

/// The job objects of one S3 library.
#[derive(Debug, Clone)]
pub struct JobObjects {
    store: S3Store,
}

/// One object of a job, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobObject {
    pub name: String,
    pub size: u64,
}

/// What tells one stored version of a job's object from another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobObjectVersion {
    pub size: u64,
    pub e_tag: Option<String>,
}

/// Whether `name` may be a job id or a path of names below one: segments of
/// `a-z A-Z 0-9 . _ -`, none empty or starting with a dot, so a name can
/// neither leave its job's prefix nor be confused with another's.
pub fn is_valid_job_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name.split('/').all(|segment| {
            !segment.is_empty()
                && !segment.starts_with('.')
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        })
}

fn check(job: &str, name: Option<&str>) -> Result<(), StoreError> {
    let bad = |what: &str, value: &str| StoreError::Config {
        setting: what.to_string(),
        message: format!(
            "{value:?} is not a job object name (1 to {MAX_NAME_BYTES} bytes of a-z, A-Z, 0-9, \
             '.', '_', '-' in segments separated by '/', none starting with '.')"
        ),
    };
    if !is_valid_job_name(job) || job.contains('/') {
        return Err(bad("job", job));
    }
    if let Some(name) = name
        && !is_valid_job_name(name)
    {
        return Err(bad("name", name));
    }
    Ok(())
}

impl S3Store {
    /// The job objects of this library, through the same client.
    pub fn job_objects(&self) -> JobObjects {
        JobObjects {
            store: self.clone(),
        }
    }
}

impl JobObjects {
    fn key(&self, job: &str, name: &str) -> ObjectKey {
        self.store.key(&format!("{JOBS}/{job}/{name}"))
    }

    /// Writes `stream` as `jobs/{job}/{name}`, refusing it with
    /// [`StoreError::TooLarge`] once it passes `max_bytes`; returns its
    /// size. On any error nothing of it stays in the store.
    pub async fn put_stream<S>(
        &self,
        job: &str,
        name: &str,
        stream: S,
        max_bytes: u64,
    ) -> Result<u64, StoreError>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Send,
    {
        check(job, Some(name))?;
        let key = self.key(job, name);
        let mut stream = std::pin::pin!(stream);
        let mut first = BytesMut::new();
        let mut size = 0u64;
        // The first part is held: an object that fits is one PUT.
        while first.len() < PART_SIZE {
            match stream.next().await {
                None => {
                    self.store
                        .client
                        .put(&key, PutPayload::from(first.freeze()))
                        .await
                        .map_err(|error| self.store.remote("PUT", &key, error))?;
                    return Ok(size);
                }
                Some(chunk) => {
                    let chunk = chunk.map_err(|source| stream_error(&key, source))?;
                    size += chunk.len() as u64;
                    if size > max_bytes {
                        return Err(StoreError::TooLarge {
                            what: format!("s3://{}/{key}", self.store.bucket),
                            limit: max_bytes,
                        });
                    }
                    first.extend_from_slice(&chunk);
                }
            }
        }
        let upload = self
            .store
            .client
            .put_multipart(&key)
            .await
            .map_err(|error| self.store.remote("PUT (multipart)", &key, error))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        writer.write(&first);
        let sent = async {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|source| stream_error(&key, source))?;
                size += chunk.len() as u64;
                if size > max_bytes {
                    return Err(StoreError::TooLarge {
                        what: format!("s3://{}/{key}", self.store.bucket),
                        limit: max_bytes,
                    });
                }
                writer
                    .wait_for_capacity(PART_CONCURRENCY)
                    .await
                    .map_err(|error| self.store.remote("PUT (part)", &key, error))?;
                writer.write(&chunk);
            }
            Ok(())
        }
        .await;
        match sent {
            Ok(()) => {
                writer
                    .finish()
                    .await
                    .map_err(|error| self.store.remote("PUT (complete multipart)", &key, error))?;
                Ok(size)
            }
            Err(error) => {
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(%key, error = %abort, "cannot abort a multipart upload");
                }
                Err(error)
            }
        }
    }

    /// Writes the local file `path` as `jobs/{job}/{name}`; returns its size.
    pub async fn put_file(&self, job: &str, name: &str, path: &Path) -> Result<u64, StoreError> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|source| StoreError::io(path, source))?;
        let stream = futures::stream::unfold(file, |mut file| async move {
            let mut buffer = vec![0u8; 1024 * 1024];
            match tokio::io::AsyncReadExt::read(&mut file, &mut buffer).await {
                Ok(0) => None,
                Ok(read) => {
                    buffer.truncate(read);
                    Some((Ok(Bytes::from(buffer)), file))
                }
                Err(error) => Some((Err(error), file)),
            }
        });
        self.put_stream(job, name, stream, u64::MAX).await
    }

    /// Reads `jobs/{job}/{name}` into a new local file at `path` (replaced
    /// if it exists), refusing an object larger than `max_bytes`; returns
    /// its size. A missing object is [`StoreError::ObjectNotFound`]'s
    /// cousin for jobs: `Ok(None)`.
    ///
    /// The file is a worker's scratch copy, not synced to disk: a crash
    /// loses the task, whose next run starts from an empty scratch
    /// directory (an fsync per segment made an assembly's thousands of
    /// downloads wait on the disk).
    pub async fn get_to_file(
        &self,
        job: &str,
        name: &str,
        path: &Path,
        max_bytes: u64,
    ) -> Result<Option<u64>, StoreError> {
        check(job, Some(name))?;
        let key = self.key(job, name);
        let result = match self.store.client.get(&key).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(self.store.remote("GET", &key, error)),
        };
        if result.meta.size > max_bytes {
            return Err(StoreError::TooLarge {
                what: format!("s3://{}/{key}", self.store.bucket),
                limit: max_bytes,
            });
        }
        let mut file = tokio::fs::File::create(path)
            .await
            .map_err(|source| StoreError::io(path, source))?;
        let mut body = result.into_stream();
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|error| self.store.remote("GET", &key, error))?;
            size += chunk.len() as u64;
            if size > max_bytes {
                return Err(StoreError::TooLarge {
                    what: format!("s3://{}/{key}", self.store.bucket),
                    limit: max_bytes,
                });
            }
            file.write_all(&chunk)
                .await
                .map_err(|source| StoreError::io(path, source))?;
        }
        file.flush()
            .await
            .map_err(|source| StoreError::io(path, source))?;
        Ok(Some(size))
    }

    /// The size and entity tag of `jobs/{job}/{name}`, `None` when there is
    /// no such object: whether a copy taken earlier is still the object.
    pub async fn version(
        &self,
        job: &str,
        name: &str,
    ) -> Result<Option<JobObjectVersion>, StoreError> {
        check(job, Some(name))?;
        let key = self.key(job, name);
        match self.store.client.head(&key).await {
            Ok(meta) => Ok(Some(JobObjectVersion {
                size: meta.size,
                e_tag: meta.e_tag,
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(self.store.remote("HEAD", &key, error)),
        }
    }

    /// The objects of one job, by name.
    pub async fn list(&self, job: &str) -> Result<Vec<JobObject>, StoreError> {
        check(job, None)?;
        let prefix = format!("{JOBS}/{job}/");
        let objects = self.store.list_all(&prefix).await?;
        Ok(objects
            .into_iter()
            .filter_map(|object| {
                let relative = self.store.relative(&object.location)?;
                let name = relative.strip_prefix(&prefix)?;
                Some(JobObject {
                    name: name.to_string(),
                    size: object.size,
                })
            })
            .collect())
    }

    /// Deletes every object of `job`.
    pub async fn delete_job(&self, job: &str) -> Result<(), StoreError> {
        check(job, None)?;
        let keys = self
            .store
            .list_all(&format!("{JOBS}/{job}/"))
            .await?
            .into_iter()
            .map(|object| object.location)
            .collect();
        self.store.delete_keys(keys).await
    }

    /// The ids of the jobs that have objects, each once.
    pub async fn jobs(&self) -> Result<Vec<String>, StoreError> {
        let prefix = self.store.key(JOBS);
        let listing = self
            .store
            .client
            .list_with_delimiter(Some(&prefix))
            .await
            .map_err(|error| self.store.remote("LIST", &prefix, error))?;
        Ok(listing
            .common_prefixes
            .iter()
            .filter_map(|key| key.parts().next_back())
            .map(|part| part.as_ref().to_string())
            .filter(|job| is_valid_job_name(job))
            .collect())
    }
}

fn stream_error(key: &ObjectKey, source: std::io::Error) -> StoreError {
    StoreError::Io {
        path: key.as_ref().into(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_cannot_leave_their_prefix() {
        for good in ["j18a", "source", "chunks/0003/1.m4s", "a-b_c.d"] {
            assert!(is_valid_job_name(good), "{good}");
        }
        for bad in [
            "",
            "..",
            "../videos/x/manifest.json",
            "a//b",
            "/a",
            "a/",
            ".hidden",
            "a/../b",
            "sp ace",
            "é",
        ] {
            assert!(!is_valid_job_name(bad), "{bad:?}");
        }
        assert!(!is_valid_job_name(&"a".repeat(MAX_NAME_BYTES + 1)));
        assert!(check("j1/j2", None).is_err());
        assert!(check("j1", Some("x/y")).is_ok());
    }
}
