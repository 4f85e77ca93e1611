//! What an origin is composed of besides its settings: the store it serves,
//! the caches over it (the manifest catalogue and the file cache), the
//! ingest workspace behind the admin API, and the clock that decides what a
//! token still allows. The binary's wiring (and a test) builds them, so any
//! of them can be swapped, and [`crate::Origin::new`] builds none.
//!
//! In a cluster the wiring also holds some of them while the origin runs:
//! the counters its figures are computed from ([`OriginCounters`]: the
//! connection layer's [`ServerStats`], bytes sent, sessions admitted), and
//! it adds the steering service ([`OriginParts::with_steering`]) and the
//! cluster's metrics ([`OriginParts::with_metrics`]). Without a cluster
//! none of that is set and the origin serves as a single node.
//!
//! Naming no store backend: the store arrives as `Arc<dyn Store>`, opened
//! from configuration by [`kinema_store::open`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use kinema_http::Clock;
use kinema_http::server::ServerStats;
use kinema_media::Workspace;
use kinema_steering::SteeringService;
use kinema_store::{Store, StoreConfig};
use prometheus_client::registry::Registry;

use crate::Error;
use crate::catalog::Catalog;
use crate::config::Config;
use crate::disk_cache::DiskCache;
use crate::files::{DescriptorBudget, FileCache};
use crate::metrics::Metrics;

/// Adds collectors to the origin's `/metrics` registry.
pub type MetricsHook = Box<dyn FnOnce(&mut Registry) + Send>;

/// The parts an [`crate::Origin`] is built from.
pub struct OriginParts {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) catalog: Catalog,
    pub(crate) files: FileCache,
    pub(crate) descriptors: Arc<DescriptorBudget>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) workspace: Workspace,
    pub(crate) clock: Clock,
    pub(crate) stats: Arc<ServerStats>,
    pub(crate) sessions_admitted: Arc<AtomicU64>,
    pub(crate) steering: Option<Arc<SteeringService>>,
    /// This process's network-quality table and the listener's sampler.
    pub(crate) network: Option<kinema_netq::Measuring>,
    pub(crate) metrics_hooks: Vec<MetricsHook>,
    /// The worker protocol (`/api/worker/…`), when this server takes workers.
    pub(crate) workers: Option<crate::worker_api::WorkerApi>,
    /// In a cluster: each member's region and which one this node is, for
    /// `GET /api/cluster`.
    pub(crate) member_places: Option<crate::cluster_api::MemberPlaces>,
    /// In a cluster: how this origin reaches the edges (a purge sent on,
    /// their cache figures for `GET /api/cluster`).
    pub(crate) cluster_client: Option<crate::purge::ClusterClient>,
}

impl std::fmt::Debug for OriginParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OriginParts")
            .field("store", &self.store)
            .field("steering", &self.steering.is_some())
            .field("metrics_hooks", &self.metrics_hooks.len())
            .finish_non_exhaustive()
    }
}

/// What the origin has counted so far, read by the wiring (the cluster's
/// figures) while the origin runs.
#[derive(Debug, Clone)]
pub struct OriginCounters {
    stats: Arc<ServerStats>,
    metrics: Arc<Metrics>,
    sessions_admitted: Arc<AtomicU64>,
}

impl OriginCounters {
    /// Bytes of response bodies handed to the connection layer since start.
    pub fn bytes_sent(&self) -> u64 {
        self.metrics.body_bytes_total()
    }

    /// Viewing sessions admitted since start.
    pub fn sessions_admitted(&self) -> u64 {
        self.sessions_admitted.load(Relaxed)
    }

    /// How busy the serving threads are, 0 to 1 ([`ServerStats::load`]).
    pub fn load(&self) -> f64 {
        self.stats.load()
    }
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
            stats: Arc::new(ServerStats::default()),
            sessions_admitted: Arc::default(),
            steering: None,
            network: None,
            metrics_hooks: Vec::new(),
            workers: None,
            member_places: None,
            cluster_client: None,
        }
    }

    /// These parts with `steering`: `GET /steer/{id}` answers, and a
    /// viewer's request for a video's master playlist or MPD that did not
    /// come through a kinema node is redirected to the node steering
    /// chooses. Its counters are added to `/metrics`.
    pub fn with_steering(mut self, steering: Arc<SteeringService>) -> Self {
        self.steering = Some(steering);
        self
    }

    /// These parts reading each cluster member's region, and which member
    /// this node is, from `places` (the membership's), so `GET /api/cluster`
    /// shows them; steering's view of the members carries neither.
    pub fn with_member_places(mut self, places: crate::cluster_api::MemberPlaces) -> Self {
        self.member_places = Some(places);
        self
    }

    /// These parts reaching the cluster's edges through `client`: `POST
    /// /api/purge` sends a purge on to every live edge, and `GET
    /// /api/cluster` reads `https://` edges' cache figures too.
    pub fn with_cluster_client(mut self, client: crate::purge::ClusterClient) -> Self {
        self.cluster_client = Some(client);
        self
    }

    /// These parts measuring viewers' networks with `network`: its
    /// `TCP_INFO` sampler on the listener, and the CMCD of media requests
    /// recorded in its table (figures in `/metrics` are the wiring's hook).
    pub fn with_network(mut self, network: kinema_netq::Measuring) -> Self {
        self.network = Some(network);
        self
    }

    /// These parts with `hook` run on the `/metrics` registry when the
    /// origin is built (the cluster's membership figures, say).
    /// Answers the worker protocol ([`crate::worker_api`]) from `workers`'
    /// queue, so `kinema worker` processes elsewhere can claim its tasks.
    pub fn with_workers(mut self, workers: crate::worker_api::WorkerApi) -> Self {
        self.workers = Some(workers);
        self
    }

    pub fn with_metrics(mut self, hook: impl FnOnce(&mut Registry) + Send + 'static) -> Self {
        self.metrics_hooks.push(Box::new(hook));
        self
    }

    /// The connection layer's counters, which [`crate::run_with`] serves
    /// with.
    /// The library's store.
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    pub fn stats(&self) -> Arc<ServerStats> {
        self.stats.clone()
    }

    /// The counters the origin's figures come from.
    pub fn counters(&self) -> OriginCounters {
        OriginCounters {
            stats: self.stats.clone(),
            metrics: self.metrics.clone(),
            sessions_admitted: self.sessions_admitted.clone(),
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
