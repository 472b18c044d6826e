//! quarry job manifests: what a finished job leaves under its output prefix.
//!
//! When a sealed job ends, [`write_job_outputs`] writes
//!
//! - `OUTPUT/_quarry/manifest.parquet`: exactly one row per task (see
//!   [`manifest_schema`] for the columns), Snappy-compressed;
//! - `OUTPUT/_SUCCESS` (empty) when every task succeeded, or else
//!   `OUTPUT/_quarry/FAILED.json`, which lists the tasks that did not
//!   succeed and why ([`FailedReport`]).
//!
//! The manifest is written first and the marker last, so a reader that sees
//! `_SUCCESS` also sees a complete manifest. It is written as the rows
//! arrive ([`ManifestWriter`]), in row groups uploaded in parts, so its size
//! does not bound the writer's memory; stored results (`_result.json`) are
//! read into the `result` column ([`resolve_results`]), so that one query
//! over the manifest sees every task's result. A marker left by an earlier run
//! over the same prefix is removed, so the two never disagree.
//!
//! The same row model ([`ManifestRow`]) and value rendering
//! ([`msgpack_to_json`], [`result_json`]) serve `quarry results`, so the CLI
//! and the manifest agree on what a task's result looks like.
//!
//! This crate owns the manifest format. It must not decide when a job is
//! finished (the scheduler core does) nor talk to the network other than the
//! object store it is given.

#![warn(missing_docs)]

mod resolve;
mod row;
mod table;
mod write;

pub use quarry_proto::{msgpack_to_json, MsgpackError};
pub use resolve::resolve_results;
pub use row::{error_text, result_json, ManifestRow};
pub use table::{manifest_batch, manifest_parquet, manifest_schema};
pub use write::{
    write_job_outputs, FailedReport, FailedTask, ManifestError, ManifestWriter, FAILED_PATH,
    MANIFEST_PATH, SUCCESS_MARKER,
};
