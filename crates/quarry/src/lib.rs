//! quarry: distributed batch processing for data in object stores.
//!
//! This crate is the one library users depend on. It re-exports the client
//! ([`Client`], [`TaskFuture`], [`as_completed`]), the worker side
//! ([`Registry`], [`TaskContext`], [`Shard`], [`run_worker`]) and the
//! protocol types users touch ([`DataRef`]), and it owns [`LocalCluster`]:
//! a scheduler and N workers inside one process, like dask's
//! `LocalCluster`, for examples, tests and `quarry run`.
//!
//! It must not add behaviour of its own beyond assembling those parts.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use quarry::{LocalCluster, Registry};
//! let cluster = LocalCluster::builder()
//!     .workers(2)
//!     .registry(Registry::new().with_builtins())
//!     .start()
//!     .await?;
//! let client = cluster.client().await?;
//! let futures = client.map::<i64, i64, _>("inc", 0..100)?;
//! let results = client.gather(futures).await?;
//! cluster.shutdown().await;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod local;

pub use local::{LocalCluster, LocalClusterBuilder, LocalClusterError};
pub use quarry_client::{
    as_completed, for_each_completed, Client, ClientError, ClientOptions, Job, JobOptions,
    MapPrefixOptions, PrefixMap, PrefixProgress, PrefixResult, ReduceOptions, TaskFuture,
    DEFAULT_FAN_IN, JOB_RESULT_FILE,
};
pub use quarry_proto::{DataRef, JobId, Pin, TaskId, TaskSpec};
pub use quarry_worker::{run_worker, Registry, Shard, TaskContext, WorkerOptions};

/// Lower-level crates, for users who need more than the facade.
pub mod parts {
    pub use quarry_client as client;
    pub use quarry_core as core;
    pub use quarry_net as net;
    pub use quarry_proto as proto;
    pub use quarry_scheduler as scheduler;
    pub use quarry_store as store;
    pub use quarry_worker as worker;
}
