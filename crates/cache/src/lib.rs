//! The worker's shard cache: whole objects from the store kept on local
//! disk, so that a dataset is fetched once per worker and the scheduler can
//! send work where the data already is.
//!
//! [`ShardCache::get`] turns a pinned [`quarry_proto::DataRef`] into a local
//! file ([`Shard`]), downloading it at most once however many tasks ask at
//! the same time. Entries are keyed by [`quarry_proto::DataRef::object_key`]
//! (URL plus ETag or version), evicted least recently used first by bytes,
//! never while in use, and survive restarts. The cache records what it
//! added and evicted ([`ShardCache::take_delta`]) for the worker to report
//! to the scheduler.
//!
//! On disk, each entry is `<sha256 of the key>.data` plus a JSON sidecar
//! `<sha256 of the key>.meta` (object key, size, SHA-256 of the data);
//! downloads go through `*.tmp` files; a `.lock` file keeps a second process
//! out. File names never derive from the key's text, so no key can reach
//! outside the directory.
//!
//! This crate owns the cache directory and nothing else: it reads stores
//! only through `quarry-store` and does not talk to the scheduler (the
//! worker sends the inventory and deltas).

#![warn(missing_docs)]

mod cache;
mod disk;
mod error;
mod fetch;
mod table;

pub use cache::{CacheConfig, CacheUsage, Shard, ShardCache, ShardGuard};
pub use error::CacheError;
