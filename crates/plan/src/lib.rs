//! The quarry planner: one way from "what to map over" to a stream of
//! tasks, for every way in.
//!
//! - [`plan_prefix`] turns a prefix or glob (the library's
//!   `Client::map_prefix` options) into [`PlannedInput`]s: it lists the
//!   store page by page, pins each object by its ETag, cuts large objects
//!   into chunks ([`Chunking`]: line-aligned by default, raw byte ranges
//!   with [`Split::Bytes`]) and names each task after its object
//!   ([`KeyNamer`], [`chunk_key`]).
//! - [`plan_job`] turns a validated job file ([`quarry_job::JobSpec`]) into
//!   a [`JobPlan`]: the job's settings (broadcast inputs pinned, the output
//!   prefix checked writable, the command template) and a stream of
//!   [`PlannedTask`]s, from the same prefix planning or from the file's
//!   items, range or grid.
//!
//! Everything is lazy: a prefix of ten million objects streams through in
//! the memory of a listing page and a few objects' chunk boundaries. Task
//! ids are the client's to give ([`PlannedTask::into_spec`]).
//!
//! This crate owns planning. It reads stores (listing, the small ranged
//! reads that find line boundaries, a write check of the output prefix)
//! through `quarry-store`, and must not talk to the scheduler or decide
//! where tasks run. Parquet row groups (planned from footers read here) are
//! the next way to cut an object.

#![warn(missing_docs)]

mod error;
mod job;
mod keys;
mod prefix;

pub use error::PlanError;
pub use job::{check_output, pin_broadcast, plan_job, JobPlan, PlannedTask};
pub use keys::{chunk_key, KeyNamer};
pub use prefix::{plan_prefix, Chunking, PlannedInput, PrefixPlan};
pub use quarry_job::Split;
