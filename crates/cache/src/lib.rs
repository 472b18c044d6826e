//! The worker's shard cache: objects from the store kept on local disk in
//! fixed blocks, so that data is fetched once per worker, a task reading a
//! chunk of a large object fetches only that chunk, and the scheduler can
//! send work where the data already is.
//!
//! [`ShardCache::get`] turns a pinned [`quarry_proto::DataRef`] into a local
//! file ([`Shard`]) holding the bytes it means, downloading each missing
//! block at most once however many tasks ask at the same time. Blocks are
//! keyed by [`quarry_proto::DataRef::object_key`] (URL plus ETag or
//! version) and block number, evicted least recently used first by bytes,
//! never while in use, and survive restarts. The cache records the byte
//! ranges it added and evicted ([`ShardCache::take_delta`]) for the worker
//! to report to the scheduler, whose locality index counts blocks.
//!
//! On disk, each object is a sparse `<sha256 of the key>.data` file plus a
//! JSON sidecar `<sha256 of the key>.meta` (object key, size, block size)
//! and one `<sha256 of the key>.<N>.block` sidecar per cached block (its
//! SHA-256); sidecars go through `*.tmp` files; a `.lock` file keeps a
//! second process out. File names never derive from the key's text, so no
//! key can reach outside the directory.
//!
//! The index ([`table`]) is a pure structure that returns what to delete;
//! the files are deleted outside its lock.
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

pub use cache::{CacheConfig, CacheUsage, Shard, ShardCache, ShardGuard, DEFAULT_BLOCK_SIZE};
pub use error::CacheError;
