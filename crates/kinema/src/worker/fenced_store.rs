//! The library as a worker's task sees it: reads go to the object store,
//! and a publish first asks the server whether this lease may publish the
//! job's video ([`WorkerClient::begin_publish`]), so a worker whose lease
//! expired while it encoded — its task redone by another — never publishes
//! a second time. A worker never unpublishes nor edits a video.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use kinema_core::{Manifest, ObjectPath, VideoId};
use kinema_store::{CollectedGeneration, ObjectMeta, Store, StoreError, StoredFile, VideoMetadata};

use super::client::{CallError, WorkerClient};

/// A store whose publish is fenced by one lease.
#[derive(Debug)]
pub struct FencedStore {
    pub inner: Arc<dyn Store>,
    pub client: WorkerClient,
    pub lease: String,
}

fn refused(what: &str) -> StoreError {
    StoreError::Config {
        setting: "worker".into(),
        message: format!("a worker does not {what}"),
    }
}

#[async_trait]
impl Store for FencedStore {
    async fn list_videos(&self) -> Result<Vec<VideoId>, StoreError> {
        self.inner.list_videos().await
    }

    async fn manifest(&self, id: &VideoId) -> Result<Manifest, StoreError> {
        self.inner.manifest(id).await
    }

    async fn generations(&self, id: &VideoId) -> Result<Vec<u64>, StoreError> {
        self.inner.generations(id).await
    }

    async fn manifest_of_generation(
        &self,
        id: &VideoId,
        generation: u64,
    ) -> Result<Manifest, StoreError> {
        self.inner.manifest_of_generation(id, generation).await
    }

    async fn get(
        &self,
        id: &VideoId,
        generation: u64,
        path: &ObjectPath,
    ) -> Result<StoredFile, StoreError> {
        self.inner.get(id, generation, path).await
    }

    async fn get_range(
        &self,
        id: &VideoId,
        generation: u64,
        path: &ObjectPath,
        range: Range<u64>,
    ) -> Result<Bytes, StoreError> {
        self.inner.get_range(id, generation, path, range).await
    }

    async fn head(
        &self,
        id: &VideoId,
        generation: u64,
        path: &ObjectPath,
    ) -> Result<ObjectMeta, StoreError> {
        self.inner.head(id, generation, path).await
    }

    async fn publish(&self, manifest: &Manifest, staged_dir: &Path) -> Result<(), StoreError> {
        match self.client.begin_publish(&self.lease).await {
            Ok(()) => self.inner.publish(manifest, staged_dir).await,
            Err(CallError::Conflict(message)) => Err(StoreError::Config {
                setting: "lease".into(),
                message: format!("the server refused this publish: {message}"),
            }),
            Err(error) => Err(StoreError::Config {
                setting: "server".into(),
                message: format!("cannot ask the server to publish: {error:#}"),
            }),
        }
    }

    async fn unpublish(&self, _id: &VideoId) -> Result<(), StoreError> {
        Err(refused("unpublish videos"))
    }

    async fn collect_retired(&self) -> Result<Vec<CollectedGeneration>, StoreError> {
        // The server collects its library; workers leave it alone.
        Ok(Vec::new())
    }

    async fn metadata(&self, id: &VideoId) -> Result<VideoMetadata, StoreError> {
        self.inner.metadata(id).await
    }

    async fn set_metadata(
        &self,
        _id: &VideoId,
        _metadata: &VideoMetadata,
    ) -> Result<(), StoreError> {
        Err(refused("edit videos"))
    }
}
