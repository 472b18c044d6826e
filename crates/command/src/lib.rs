//! The quarry command executor: runs one attempt of a command task.
//!
//! A command job carries a [`CommandTemplate`] (argv with placeholders such
//! as `{input}` and `{params.lr}`, environment, timeout) in its
//! `JobSpec.context`. For each attempt the worker stages the inputs on local
//! disk, builds a [`CommandInvocation`] and calls [`run_prepared`] with a
//! [`PreparedCommand`] made once per job ([`run`] prepares and runs in one
//! call). The command is executed directly (no shell, so parameter values
//! cannot inject shell syntax) in its own process group; a timeout, a
//! cancellation or the end of the attempt kills the whole group, and so does
//! the death of the process that runs it, however it dies
//! (`PR_SET_PDEATHSIG` on its first process, plus a reaper process that
//! kills the rest of the group; see `src/reaper.rs`); [`spawn_in_group_without_fork`]
//! lends the same guarantee to other long-lived children of a worker (its
//! Python interpreters). The command
//! writes stdout and stderr straight to log files, whose bounded tails are
//! read back when it ends; the last non-empty stdout line, if it is JSON, is
//! the task's result; the files left in the output directory are listed for
//! upload under `OUTPUT/<task key>/` ([`output_object_key`]).
//!
//! This crate owns process execution and the placeholder syntax. It must not
//! touch object stores, the network or the cache: staging inputs and
//! uploading outputs and logs belong to the worker.

#![warn(missing_docs)]

mod capture;
mod group;
mod outputs;
mod reaper;
mod run;
mod template;

pub use group::{spawn_in_group_without_fork, ProcessGroup, PARENT_PID_ENV};
pub use outputs::{
    list_outputs, output_dir_key, output_object_key, sanitize_key, stale_outputs, KeyError,
    ListError, OutputListing, SkippedOutput, MAX_OUTPUT_KEY_BYTES, MAX_SEGMENT_BYTES,
    MAX_TASK_KEY_BYTES,
};
pub use run::{
    run, run_cancellable, run_prepared, CommandError, CommandInvocation, CommandOutcome,
    ExitReason, PreparedCommand, RunLimits,
};
pub use template::{
    input_env_var, param_env_var, param_text, ArgTemplate, Placeholder, TemplateError,
    KNOWN_PLACEHOLDERS,
};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use thiserror::Error;

/// The executor name command tasks carry in `TaskSpec.function`.
pub const COMMAND_EXECUTOR: &str = "quarry.command";

/// What to run for every task of a command job. It travels MessagePack-encoded
/// in `JobSpec.context` ([`CommandTemplate::to_context`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandTemplate {
    /// Program and arguments; each element may hold placeholders (see
    /// [`Placeholder`]). The program is looked up on `PATH`.
    pub argv: Vec<String>,
    /// Extra environment variables, on top of the worker's environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Kill an attempt after this long.
    #[serde(default)]
    pub timeout: Option<Duration>,
}

/// A job context that does not decode as a [`CommandTemplate`].
#[derive(Debug, Error)]
#[error("the job context is not a command template: {0}")]
pub struct ContextError(#[from] rmp_serde::decode::Error);

impl CommandTemplate {
    /// Checks that there is a program and that every argument parses.
    pub fn validate(&self) -> Result<(), TemplateError> {
        self.parse_args().map(|_| ())
    }

    /// Each argument parsed, in order.
    pub fn parse_args(&self) -> Result<Vec<ArgTemplate>, TemplateError> {
        if self.argv.is_empty() {
            return Err(TemplateError::EmptyArgv);
        }
        self.argv.iter().map(|a| ArgTemplate::parse(a)).collect()
    }

    /// Encodes the template for `JobSpec.context` (MessagePack with field
    /// names, so fields can be added later).
    pub fn to_context(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).expect("a CommandTemplate always encodes")
    }

    /// Decodes a template from `JobSpec.context`.
    pub fn from_context(bytes: &[u8]) -> Result<CommandTemplate, ContextError> {
        Ok(rmp_serde::from_slice(bytes)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_round_trips_through_the_job_context() {
        let template = CommandTemplate {
            argv: vec!["python3".into(), "{inputs.script}".into()],
            env: BTreeMap::from([("OMP_NUM_THREADS".into(), "1".into())]),
            timeout: Some(Duration::from_millis(1500)),
        };
        let bytes = template.to_context();
        assert_eq!(CommandTemplate::from_context(&bytes).unwrap(), template);
        assert!(CommandTemplate::from_context(b"\xc1").is_err());
    }

    #[test]
    fn validate_refuses_empty_argv_and_bad_placeholders() {
        assert_eq!(
            CommandTemplate::default().validate(),
            Err(TemplateError::EmptyArgv)
        );
        let bad = CommandTemplate {
            argv: vec!["echo".into(), "{oops}".into()],
            ..Default::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(TemplateError::UnknownPlaceholder { .. })
        ));
    }
}
