//! quarry job specs: the YAML a user writes for `quarry run` and
//! `quarry submit`.
//!
//! [`JobSpec::from_file`] parses a job file and validates every key: an
//! unknown key, a wrong type or an impossible value is a [`JobError`] that
//! names the file, line, column and key, and suggests the key that was
//! probably meant. The tasks of an items, range or grid job expand lazily
//! into [`TaskDescription`]s ([`JobSpec::expand`]), each with a
//! deterministic task key and its parameters. `docs/job-spec.md` documents
//! the format.
//!
//! This crate owns the job file format. It must not touch object stores or
//! the network: listing, chunking and naming a prefix job's tasks belongs
//! to the planner (`quarry-plan`), and turning tasks into protocol messages
//! to the client. It relies on quarry-command for the command placeholder syntax,
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
pub use expand::{ExpandError, JobSummary, TaskDescription, Tasks};
pub use size::parse_size;
pub use spec::{
    BroadcastInput, FunctionCall, Grid, GridAxis, JobSpec, MapOver, OpCall, PrefixInput, RangeSpec,
    ReduceSpec, Resources, Run, Split, BUILTIN_OPS, DEFAULT_RETRIES, MAX_TASKS,
};
