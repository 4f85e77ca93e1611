//! Republishing on S3: every file the new generation shares with the old
//! one is a server-side copy (the object store copies; no byte passes
//! through this process), the replaced ones are PUT, then the manifests as
//! in a publish. A failure deletes what was written, best effort.

use bytes::Bytes;
use futures::TryStreamExt;
use kinema_core::{Manifest, ObjectPath};
use object_store::{ObjectStoreExt, PutPayload};

use super::S3Store;
use crate::{StoreError, layout};

/// Copies in flight at once: each is one small request to the store.
const COPY_CONCURRENCY: usize = 8;

pub(super) async fn republish(
    store: &S3Store,
    manifest: &Manifest,
    from: u64,
    replaced: &[(ObjectPath, Bytes)],
) -> Result<(), StoreError> {
    let json = manifest
        .to_json()
        .map_err(|source| StoreError::BadManifest {
            id: manifest.id.clone(),
            source,
        })?;
    let id = &manifest.id;
    let from_manifest = crate::Store::manifest_of_generation(store, id, from).await?;
    crate::check_republish(manifest, &from_manifest, replaced)?;
    crate::check_replaces(manifest, store.current_manifest(id).await)?;
    super::publish::check_generation_unwritten(store, manifest).await?;

    let generation = manifest.generation;
    let written = futures::stream::iter(manifest.files.iter().map(Ok))
        .try_for_each_concurrent(COPY_CONCURRENCY, |entry| async move {
            let target = store.key(&layout::object_key(id, generation, &entry.path));
            match replaced.iter().find(|(path, _)| path == &entry.path) {
                Some((_, bytes)) => store
                    .client
                    .put(&target, PutPayload::from(bytes.clone()))
                    .await
                    .map(|_| ())
                    .map_err(|error| store.remote("PUT", &target, error)),
                None => {
                    let source = store.key(&layout::object_key(id, from, &entry.path));
                    match store.client.copy(&source, &target).await {
                        Ok(()) => Ok(()),
                        // Listed by the old generation's manifest, gone from
                        // the store: not an outage.
                        Err(object_store::Error::NotFound { .. }) => {
                            Err(StoreError::ObjectNotFound {
                                id: id.clone(),
                                path: entry.path.clone(),
                            })
                        }
                        Err(error) => Err(store.remote("COPY", &target, error)),
                    }
                }
            }
        })
        .await;
    let finished = match written {
        Ok(()) => super::publish::write_manifests(store, manifest, json).await,
        Err(error) => Err(error),
    };
    if let Err(error) = finished {
        let prefix = layout::generation_prefix(id, generation);
        if let Err(cleanup) = super::collect::delete_prefix(store, &prefix).await {
            tracing::warn!(%id, generation, error = %cleanup, "cannot delete what a failed republish wrote; collection will");
        }
        return Err(error);
    }
    Ok(())
}
