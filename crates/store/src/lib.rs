//! quarry's data plane access to object stores.
//!
//! This crate owns everything between a URL and bytes in a store:
//!
//! - [`StoreResolver`]: `s3://bucket/key` (configured from the `AWS_*`
//!   environment variables, overridable by a [`StoreConfig`]), `file:///abs`
//!   and plain local paths, `hdfs://namenode:port/path`,
//!   `hdfs://nameservice/path` and `hdfs:///path` (Hadoop's configuration
//!   from `HADOOP_CONF_DIR`; no JVM), and `memory://name` ([`memory_store`],
//!   for unit tests). HDFS block locations become per-task host
//!   preferences ([`StoreResolver::replica_hosts`]).
//! - Layers that wrap any `object_store::ObjectStore`: [`CountingStore`]
//!   and [`FaultStore`]. S3 requests have one timeout and one bounded retry
//!   policy (object_store's, set in [`StoreConfig`]); the task's retries
//!   take over after that.
//! - Listing a prefix or glob into pinned [`DataRef`]s as a stream
//!   ([`StoreResolver::list_refs`]), reading with the pin
//!   ([`StoreResolver::get_pinned`], which reports [`StoreError::Changed`]
//!   when the object was modified), content-addressed uploads
//!   ([`StoreResolver::put_content_addressed`]) and line-aligned chunking
//!   ([`StoreResolver::chunk_ranges`], [`read_chunk_lines`]).
//!
//! It must not touch the worker's local cache (that is `quarry-cache`), the
//! wire protocol types (it uses `quarry-proto`'s [`DataRef`] as is) or any
//! network other than the stores themselves. Credentials never appear in
//! `Debug` output or error messages.
//!
//! [`DataRef`]: quarry_proto::DataRef

#![warn(missing_docs)]

mod chunk;
mod config;
mod error;
mod hdfs;
mod layers;
mod list;
mod put;
mod read;
mod resolve;

pub use chunk::read_chunk_lines;
pub use config::{Secret, StoreConfig, DEFAULT_REQUEST_TIMEOUT};
pub use error::{Result, StoreError};
pub use layers::{CounterSnapshot, CountingStore, FaultStore, StoreCounters};
pub use put::PutSource;
pub use read::PinnedRead;
pub use resolve::{memory_store, StoreLayer, StoreLocation, StoreResolver};

/// Re-exported so that users of this crate name the same `object_store`.
pub use object_store;
