//! The worker's `/metrics`: Prometheus series read from the shard cache
//! and the slots at each scrape (through `prometheus-client`), served by
//! axum when `--metrics-addr` is given. Names follow dask's worker series
//! where dask has one; `docs/operations.md` lists them.

use crate::slots::SlotsProbe;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};
use quarry_cache::ShardCache;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use tracing::warn;

/// Reads the worker's figures when scraped.
pub(crate) struct WorkerCollector {
    /// The worker's name, a label on every series.
    pub(crate) name: String,
    /// Its shard cache.
    pub(crate) cache: ShardCache,
    /// Its slots.
    pub(crate) slots: SlotsProbe,
}

impl fmt::Debug for WorkerCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerCollector")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Encodes one constant series with the worker's name as its label.
fn series(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    metric: &impl EncodeMetric,
    worker: &str,
) -> Result<(), fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, unit, metric.metric_type())?;
    let labels = [("worker", worker)];
    metric.encode(family.encode_family(&labels)?)
}

impl Collector for WorkerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let usage = self.cache.usage();
        let (busy, slots) = self.slots.busy();
        let name = self.name.as_str();
        let e = &mut encoder;
        series(
            e,
            "quarry_worker_cache",
            "Bytes of blocks the shard cache holds",
            Some(&Unit::Bytes),
            &ConstGauge::new(usage.stored_bytes as i64),
            name,
        )?;
        series(
            e,
            "quarry_worker_cache_limit",
            "The shard cache's budget",
            Some(&Unit::Bytes),
            &ConstGauge::new(usage.max_bytes as i64),
            name,
        )?;
        series(
            e,
            "quarry_worker_cache_objects",
            "Objects with blocks in the shard cache",
            None,
            &ConstGauge::new(usage.entries as i64),
            name,
        )?;
        series(
            e,
            "quarry_worker_cache_objects_in_use",
            "Cached objects with blocks pinned by running attempts",
            None,
            &ConstGauge::new(usage.pinned_entries as i64),
            name,
        )?;
        series(
            e,
            "quarry_worker_cache_evictions",
            "Blocks evicted from the shard cache to make room",
            None,
            &ConstCounter::new(usage.evicted_blocks),
            name,
        )?;
        series(
            e,
            "quarry_worker_download",
            "Bytes of blocks downloaded from the object store into the shard cache (its \
             rate is the download throughput)",
            Some(&Unit::Bytes),
            &ConstCounter::new(usage.downloaded_bytes),
            name,
        )?;
        series(
            e,
            "quarry_worker_slots",
            "Task slots (--nthreads)",
            None,
            &ConstGauge::new(i64::from(slots)),
            name,
        )?;
        series(
            e,
            "quarry_worker_slots_busy",
            "Task slots taken by running attempts",
            None,
            &ConstGauge::new(i64::from(busy)),
            name,
        )
    }
}

/// Binds `addr` and serves `/metrics` in the background; returns the bound
/// address.
pub(crate) async fn serve(
    addr: SocketAddr,
    collector: WorkerCollector,
) -> std::io::Result<SocketAddr> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(collector));
    let registry = Arc::new(registry);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(registry);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            warn!("worker metrics stopped: {e}");
        }
    });
    Ok(bound)
}

async fn metrics(State(registry): State<Arc<Registry>>) -> impl IntoResponse {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        out,
    )
}
