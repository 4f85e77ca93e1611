//! What an origin is composed of besides its settings: the store it serves,
//! the caches over it (the manifest catalogue and the file cache), the
//! ingest workspace behind the admin API, and the clock that decides what a
//! token still allows. The binary's wiring (and a test) builds them, so any
//! of them can be swapped, and [`crate::Origin::new`] builds none.
//!
//! Naming no store backend: the store arrives as `Arc<dyn Store>`, opened
//! from configuration by [`kinema_store::open`].

use std::sync::Arc;

use kinema_http::Clock;
use kinema_media::Workspace;
use kinema_store::{Store, StoreConfig};

use crate::Error;
use crate::catalog::Catalog;
use crate::config::Config;
use crate::disk_cache::DiskCache;
use crate::files::{DescriptorBudget, FileCache};
use crate::metrics::Metrics;

/// The parts an [`crate::Origin`] is built from.
#[derive(Debug)]
pub struct OriginParts {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) catalog: Catalog,
    pub(crate) files: FileCache,
    pub(crate) descriptors: Arc<DescriptorBudget>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) workspace: Workspace,
    pub(crate) clock: Clock,
}

impl OriginParts {
    /// The caches `config` asks for over `store`, with the ingest
    /// `workspace` and `clock` given.
    pub fn new(config: &Config, store: Arc<dyn Store>, workspace: Workspace, clock: Clock) -> Self {
        Self::with_disk_cache(config, store, None, workspace, clock)
    }

    /// [`Self::new`] with a disk tier under the memory cache, for a store
    /// with no local files (S3): the wiring opens it
    /// ([`DiskCache::open`] in `config.disk_cache_dir()`) for such a store
    /// only, since a local library's files are on a local disk already.
    pub fn with_disk_cache(
        config: &Config,
        store: Arc<dyn Store>,
        disk_cache: Option<DiskCache>,
        workspace: Workspace,
        clock: Clock,
    ) -> Self {
        let metrics = Arc::new(Metrics::with_disk_cache(
            disk_cache.as_ref().map(DiskCache::counts),
        ));
        let catalog = Catalog::new(
            store.clone(),
            config.manifest_refresh,
            config.manifest_max_age,
        );
        // Cached files keep at most an eighth of the open-file limit (raised
        // here already, as the listener will): the rest is for connections
        // and reads.
        let descriptors = DescriptorBudget::new(
            usize::try_from(kinema_http::server::raise_descriptor_limit() / 8)
                .unwrap_or(usize::MAX),
        );
        let files = FileCache::new(
            store.clone(),
            config.cache_size.as_u64(),
            config.max_cached_file_size.as_u64(),
            config.cache_inactive,
            metrics.clone(),
            descriptors.clone(),
            disk_cache,
        );
        Self {
            store,
            catalog,
            files,
            descriptors,
            metrics,
            workspace,
            clock,
        }
    }

    /// The parts of `config` as the binary wires them: the library
    /// directory's store, the ingest workspace `config.ingest` names (by
    /// default `ingest/` in the library), the system clock.
    pub async fn open(config: &Config) -> Result<Self, Error> {
        if !config.library.is_dir() {
            return Err(Error::NoLibrary(config.library.clone()));
        }
        let store = kinema_store::open(&StoreConfig::directory(&config.library)).await?;
        let workspace_root = config.ingest.workspace_root(Some(&config.library));
        let workspace = Workspace::open(&workspace_root)
            .map_err(|error| Error::Config(format!("cannot open the ingest workspace: {error}")))?;
        Ok(Self::new(config, store, workspace, Clock::system()))
    }
}
