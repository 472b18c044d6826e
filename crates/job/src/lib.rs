//! quarry job specs: the YAML a user writes for `quarry run` and
//! `quarry submit`.
//!
//! [`JobSpec::from_file`] parses a job file and validates every key: an
//! unknown key, a wrong type or an impossible value is a [`JobError`] that
//! names the file, line, column and key, and suggests the key that was
//! probably meant. A valid spec expands lazily into [`TaskDescription`]s
//! ([`JobSpec::expand`], or [`JobSpec::expand_listing`] for prefix jobs,
//! whose objects the caller lists), each with a deterministic task key and
//! its parameters. `docs/job-spec.md` documents the format.
//!
//! This crate owns the job file format. It must not touch object stores or
//! the network: listing a prefix belongs to the caller (the CLI, with
//! quarry-store), and turning tasks into protocol messages belongs to the
//! client. It relies on quarry-command for the command placeholder syntax,
//! so that templates are checked here, at the line they are written on.

#![warn(missing_docs)]

mod error;
mod expand;
mod location;
mod parse;
mod size;
mod spec;
mod yaml;

pub use error::{JobError, JobErrorKind, Position};
pub use expand::{
    sanitize_key, ExpandError, JobSummary, ListedTasks, TaskDescription, Tasks, MAX_TASK_KEY_BYTES,
};
pub use size::parse_size;
pub use spec::{
    BroadcastInput, FunctionCall, Grid, GridAxis, JobSpec, MapOver, OpCall, PrefixInput, RangeSpec,
    Resources, Run, BUILTIN_OPS, DEFAULT_RETRIES, MAX_TASKS,
};
