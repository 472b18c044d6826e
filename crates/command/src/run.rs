//! Running one attempt: spawn in a process group, log, time out, kill.

use crate::capture::{read_tail, text_tail, Tail};
use crate::group::{die_with_this_thread, ProcessGroup};
use crate::outputs::{list_outputs, ListError, SkippedOutput};
use crate::template::{input_env_var, param_env_var, param_text, ArgTemplate, PlaceholderValues};
use crate::{CommandTemplate, TemplateError};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use quarry_proto::ErrorKind;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::future::Future;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::process::Command;

/// Name of the full stdout log in the caller's log directory.
const STDOUT_LOG: &str = "stdout.log";
/// Name of the full stderr log in the caller's log directory.
const STDERR_LOG: &str = "stderr.log";
/// How much of the stderr tail an error message quotes.
const ERROR_MESSAGE_TAIL_BYTES: usize = 4 * 1024;

/// Everything one attempt needs to know about its task: where things are
/// staged and what the placeholders stand for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CommandInvocation {
    /// The task's own input, staged on local disk (`{input}`); `None` for
    /// tasks without one (items, range and grid jobs).
    pub input: Option<PathBuf>,
    /// The job's broadcast inputs by name, staged on local disk
    /// (`{inputs.NAME}`).
    pub inputs: BTreeMap<String, PathBuf>,
    /// The task's parameters (`{params.KEY}`).
    pub params: Map<String, Value>,
    /// The task id as displayed, such as `t42` (`{task_id}`).
    pub task_id: String,
    /// The task's deterministic key (`{task_key}`).
    pub task_key: String,
    /// The command's working directory; created if missing.
    pub work_dir: PathBuf,
    /// Where the command writes output files (`{output_dir}`); created if
    /// missing, and should be empty (the attempt's own): every file in it is
    /// listed after success.
    pub output_dir: PathBuf,
    /// Where `stdout.log` and `stderr.log` are written; created if missing.
    pub log_dir: PathBuf,
}

/// Bounds of one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunLimits {
    /// The task's timeout (`TaskSpec.timeout_ms`); when the template has one
    /// too, the shorter wins.
    pub timeout: Option<Duration>,
    /// Bytes of stdout and of stderr kept in memory (the full streams go to
    /// the log files).
    pub tail_bytes: usize,
    /// Most output files accepted.
    pub max_output_files: usize,
}

impl Default for RunLimits {
    fn default() -> Self {
        RunLimits {
            timeout: None,
            tail_bytes: 64 * 1024,
            max_output_files: 10_000,
        }
    }
}

/// How a successful attempt ended.
#[derive(Clone, Debug, PartialEq)]
pub struct CommandOutcome {
    /// The last non-empty stdout line parsed as JSON, or `Null` if it is not
    /// JSON (or stdout was empty).
    pub result: Value,
    /// Files left in the output directory: sorted `/`-separated relative
    /// paths, each valid for [`crate::output_object_key`].
    pub outputs: Vec<String>,
    /// Entries of the output directory that are not uploaded.
    pub skipped_outputs: Vec<SkippedOutput>,
    /// The end of stdout (at most [`RunLimits::tail_bytes`]).
    pub stdout_tail: String,
    /// The end of stderr (at most [`RunLimits::tail_bytes`]).
    pub stderr_tail: String,
    /// The full stdout log.
    pub stdout_log: PathBuf,
    /// The full stderr log.
    pub stderr_log: PathBuf,
    /// Wall time from spawn to exit.
    pub duration: Duration,
}

/// How a process ended, when it did not exit with 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitReason {
    /// It exited with this status code.
    Code(i32),
    /// A signal with this number killed it.
    Signal(i32),
}

impl ExitReason {
    fn from_status(status: ExitStatus) -> ExitReason {
        match (status.code(), status.signal()) {
            (Some(code), _) => ExitReason::Code(code),
            (None, Some(signal)) => ExitReason::Signal(signal),
            // A process that neither exited nor was signalled cannot be
            // waited for; report the raw status so nothing is hidden.
            (None, None) => ExitReason::Code(status.into_raw()),
        }
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExitReason::Code(code) => write!(f, "exit status {code}"),
            ExitReason::Signal(signal) => match Signal::try_from(signal) {
                Ok(name) => write!(f, "signal {signal} ({name})"),
                Err(_) => write!(f, "signal {signal}"),
            },
        }
    }
}

/// Why an attempt failed.
#[derive(Debug, Error)]
pub enum CommandError {
    /// The argv template does not render for this task.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// The program could not be started.
    #[error("cannot start `{program}`: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The cause.
        source: io::Error,
    },
    /// A directory or log file could not be prepared or written.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The command exited non-zero or was killed by a signal.
    #[error("`{program}` failed with {reason}{}", quote_stderr(stderr_tail))]
    Failed {
        /// The program.
        program: String,
        /// Its exit status or signal.
        reason: ExitReason,
        /// The end of its stderr.
        stderr_tail: String,
    },
    /// The command ran past its timeout; its process group was killed.
    #[error(
        "`{program}` timed out after {}; its process group was killed{}",
        humantime::format_duration(*timeout),
        quote_stderr(stderr_tail)
    )]
    TimedOut {
        /// The program.
        program: String,
        /// The timeout.
        timeout: Duration,
        /// The end of its stderr.
        stderr_tail: String,
    },
    /// The attempt was cancelled; its process group was killed.
    #[error("`{program}` was cancelled; its process group was killed")]
    Cancelled {
        /// The program.
        program: String,
    },
    /// The output directory could not be listed.
    #[error(transparent)]
    Outputs(#[from] ListError),
}

impl CommandError {
    /// The protocol's classification of this failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            CommandError::Template(_) => ErrorKind::Rejected,
            CommandError::TimedOut { .. } => ErrorKind::TimedOut,
            CommandError::Cancelled { .. } => ErrorKind::Cancelled,
            CommandError::Spawn { .. }
            | CommandError::Io { .. }
            | CommandError::Failed { .. }
            | CommandError::Outputs(_) => ErrorKind::Failed,
        }
    }
}

fn quote_stderr(stderr_tail: &str) -> String {
    let tail = text_tail(stderr_tail.trim_end(), ERROR_MESSAGE_TAIL_BYTES);
    if tail.is_empty() {
        String::new()
    } else {
        format!("; stderr ends with:\n{tail}")
    }
}

/// A command template made ready once for all the attempts of a job: its
/// arguments parsed and, when the program is the same for every task, the
/// program looked up on `PATH`. The lookup is not repeated for each attempt,
/// so a program installed on `PATH` while the job runs is not seen by it.
#[derive(Clone, Debug)]
pub struct PreparedCommand {
    template: CommandTemplate,
    args: Vec<ArgTemplate>,
    /// Where the program is, if it is the same for every task and found.
    executable: Option<PathBuf>,
}

impl PreparedCommand {
    /// Parses the template's arguments and looks up its program.
    pub fn new(template: CommandTemplate) -> Result<PreparedCommand, TemplateError> {
        let args = template.parse_args()?;
        let executable = args[0]
            .literal()
            .and_then(|program| resolve_program(program.as_ref(), template.env.get("PATH")));
        Ok(PreparedCommand {
            template,
            args,
            executable,
        })
    }

    /// The template it was made from.
    pub fn template(&self) -> &CommandTemplate {
        &self.template
    }
}

/// Runs one attempt of a command task; see [`run_cancellable`]. Dropping the
/// returned future kills the command's process group.
pub async fn run(
    template: &CommandTemplate,
    invocation: &CommandInvocation,
    limits: &RunLimits,
) -> Result<CommandOutcome, CommandError> {
    run_cancellable(template, invocation, limits, std::future::pending()).await
}

/// Runs one attempt of a command task until it exits, times out, or
/// `cancelled` completes; see [`run_prepared`], which saves preparing the
/// template again for each attempt of a job.
pub async fn run_cancellable(
    template: &CommandTemplate,
    invocation: &CommandInvocation,
    limits: &RunLimits,
    cancelled: impl Future<Output = ()>,
) -> Result<CommandOutcome, CommandError> {
    let prepared = PreparedCommand::new(template.clone())?;
    run_prepared(&prepared, invocation, limits, cancelled).await
}

/// Runs one attempt of a prepared command until it exits, times out, or
/// `cancelled` completes (then [`CommandError::Cancelled`]).
///
/// The argv is rendered with the invocation's placeholder values and
/// executed directly (no shell) with the working directory `work_dir`, in a
/// new process group. Besides the template's environment the command sees
/// `QUARRY_INPUT`, `QUARRY_INPUT_<NAME>`, `QUARRY_PARAM_<KEY>`, `QUARRY_PARAMS`
/// (all parameters as JSON), `QUARRY_OUTPUT_DIR`, `QUARRY_TASK_ID` and
/// `QUARRY_TASK_KEY`. Whatever way the attempt ends (exit, timeout,
/// cancellation, or this future being dropped) every process left in the
/// group is killed with SIGKILL.
///
/// Preparing the directories and log files and reading the logs back are
/// short blocking file-system calls made on the calling thread: an attempt
/// costs about a millisecond, and a hop to another thread for each of them
/// would cost more than the calls themselves. Call this where brief
/// blocking is acceptable (the worker runs each attempt on a thread of its
/// own).
pub async fn run_prepared(
    prepared: &PreparedCommand,
    invocation: &CommandInvocation,
    limits: &RunLimits,
    cancelled: impl Future<Output = ()>,
) -> Result<CommandOutcome, CommandError> {
    let template = &prepared.template;
    let args = render_argv(prepared, invocation)?;
    let program = template.argv[0].as_str();
    // The log directory first: callers that nest the other two inside it
    // (the worker does) then pay a single `mkdir` per directory.
    for (what, dir) in [
        ("cannot create log directory", &invocation.log_dir),
        ("cannot create work directory", &invocation.work_dir),
        ("cannot create output directory", &invocation.output_dir),
    ] {
        std::fs::create_dir_all(dir).map_err(|source| CommandError::Io {
            what,
            path: dir.clone(),
            source,
        })?;
    }
    let stdout_log = invocation.log_dir.join(STDOUT_LOG);
    let stderr_log = invocation.log_dir.join(STDERR_LOG);

    let executable = match &prepared.executable {
        Some(path) => Some(path.clone()),
        None => resolve_program(&args[0], template.env.get("PATH")),
    };
    let mut command = Command::new(executable.as_deref().unwrap_or(args[0].as_ref()));
    // The name the program was called by stays its `argv[0]`.
    command.arg0(&args[0]);
    command
        .args(&args[1..])
        .current_dir(&invocation.work_dir)
        .envs(&template.env)
        .stdin(Stdio::null())
        .stdout(create_log(&stdout_log)?)
        .stderr(create_log(&stderr_log)?)
        .process_group(0)
        .kill_on_drop(true);
    die_with_this_thread(&mut command);
    set_quarry_env(&mut command, invocation);
    let started = Instant::now();
    let spawned = command.spawn();
    // The command holds this process's copies of the log files; close them
    // now that the child has its own.
    drop(command);
    let mut child = spawned.map_err(|source| CommandError::Spawn {
        program: program.to_owned(),
        source,
    })?;
    let mut group = ProcessGroup::new(child.id().map(|pid| Pid::from_raw(pid as i32)));
    tracing::debug!(program, task = %invocation.task_id, pgid = ?group.id(), "command started");

    let timeout = match (template.timeout, limits.timeout) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let deadline = async {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let ending = tokio::select! {
        status = child.wait() => match status {
            Ok(status) => Ending::Exited(status),
            Err(source) => Ending::WaitFailed(source),
        },
        () = deadline => Ending::TimedOut,
        () = cancelled => Ending::Cancelled,
    };
    let duration = started.elapsed();
    // Stragglers (background children) die with the attempt.
    group.kill();
    let status = match ending {
        Ending::Exited(status) => status,
        Ending::WaitFailed(source) => {
            return Err(CommandError::Io {
                what: "cannot wait for the command started in",
                path: invocation.work_dir.clone(),
                source,
            })
        }
        Ending::TimedOut => {
            return Err(CommandError::TimedOut {
                program: program.to_owned(),
                timeout: timeout.expect("only a set timeout elapses"),
                stderr_tail: failure_stderr(&stderr_log, limits),
            })
        }
        Ending::Cancelled => {
            return Err(CommandError::Cancelled {
                program: program.to_owned(),
            })
        }
    };
    if !status.success() {
        return Err(CommandError::Failed {
            program: program.to_owned(),
            reason: ExitReason::from_status(status),
            stderr_tail: failure_stderr(&stderr_log, limits),
        });
    }
    let stderr_tail = read_log_tail(&stderr_log, limits)?.text();
    let stdout_tail = read_log_tail(&stdout_log, limits)?;
    let listing = list_outputs(&invocation.output_dir, limits.max_output_files)?;
    for skipped in &listing.skipped {
        tracing::warn!(path = %skipped.path.display(), reason = %skipped.reason, "output not uploaded");
    }
    let result = stdout_tail
        .last_line()
        .and_then(|line| serde_json::from_str(&line).ok())
        .unwrap_or(Value::Null);
    Ok(CommandOutcome {
        result,
        outputs: listing.files,
        skipped_outputs: listing.skipped,
        stdout_tail: stdout_tail.text(),
        stderr_tail,
        stdout_log,
        stderr_log,
        duration,
    })
}

enum Ending {
    Exited(ExitStatus),
    WaitFailed(io::Error),
    TimedOut,
    Cancelled,
}

fn render_argv(
    prepared: &PreparedCommand,
    invocation: &CommandInvocation,
) -> Result<Vec<OsString>, TemplateError> {
    let values = PlaceholderValues {
        input: invocation.input.as_ref(),
        inputs: &invocation.inputs,
        params: &invocation.params,
        output_dir: &invocation.output_dir,
        task_id: &invocation.task_id,
        task_key: &invocation.task_key,
    };
    prepared
        .args
        .iter()
        .zip(&prepared.template.argv)
        .map(|(arg, text)| arg.render(text, &values))
        .collect()
}

/// Where `program` is, looked up on `PATH` (the template's own `PATH` if it
/// sets one) as `execvp` would: the first regular file with an execute bit.
/// Looking it up here, one `stat` per directory, spares the child a failed
/// `execve` in every directory before the right one, each about as dear as
/// setting up an address space. `None` leaves the lookup to the spawn: for
/// a name with a `/`, a relative `PATH` entry, or no match (the spawn then
/// reports the error).
fn resolve_program(program: &OsStr, template_path: Option<&String>) -> Option<PathBuf> {
    if program.as_bytes().contains(&b'/') {
        return None;
    }
    let search = match template_path {
        Some(path) => OsString::from(path),
        None => std::env::var_os("PATH")?,
    };
    for dir in std::env::split_paths(&search) {
        if !dir.is_absolute() {
            return None;
        }
        let candidate = dir.join(program);
        if let Ok(metadata) = std::fs::metadata(&candidate) {
            if metadata.is_file() && metadata.permissions().mode() & 0o111 != 0 {
                return Some(candidate);
            }
        }
    }
    None
}

/// Sets the `QUARRY_*` variables, straight from the invocation's fields.
fn set_quarry_env(command: &mut Command, invocation: &CommandInvocation) {
    if let Some(input) = &invocation.input {
        command.env("QUARRY_INPUT", input);
    }
    for (name, path) in &invocation.inputs {
        command.env(input_env_var(name), path);
    }
    for (key, value) in &invocation.params {
        command.env(param_env_var(key), param_text(value));
    }
    command
        .env(
            "QUARRY_PARAMS",
            Value::from(invocation.params.clone()).to_string(),
        )
        .env("QUARRY_OUTPUT_DIR", &invocation.output_dir)
        .env("QUARRY_TASK_ID", &invocation.task_id)
        .env("QUARRY_TASK_KEY", &invocation.task_key);
}

/// Creates (or truncates) a log file for the child to write to directly.
fn create_log(path: &Path) -> Result<std::fs::File, CommandError> {
    std::fs::File::create(path).map_err(|source| CommandError::Io {
        what: "cannot create log file",
        path: path.to_owned(),
        source,
    })
}

/// The stderr tail quoted by a failure. A log that cannot be read leaves the
/// quote empty rather than replacing the failure with an I/O error.
fn failure_stderr(path: &Path, limits: &RunLimits) -> String {
    match read_tail(path, limits.tail_bytes) {
        Ok(tail) => tail.text(),
        Err(e) => {
            tracing::warn!("cannot read {}: {e}", path.display());
            String::new()
        }
    }
}

fn read_log_tail(path: &Path, limits: &RunLimits) -> Result<Tail, CommandError> {
    read_tail(path, limits.tail_bytes).map_err(|source| CommandError::Io {
        what: "cannot read log file",
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_found_like_execvp_finds_them() {
        let root = tempfile::tempdir().unwrap();
        let (first, second) = (root.path().join("a"), root.path().join("b"));
        for dir in [&first, &second] {
            std::fs::create_dir(dir).unwrap();
        }
        // Not executable, or not a file: skipped, as `execvp` skips them.
        std::fs::write(first.join("tool"), "#!/bin/sh\n").unwrap();
        std::fs::create_dir(first.join("other")).unwrap();
        for name in ["tool", "other"] {
            let path = second.join(name);
            std::fs::write(&path, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let search = std::env::join_paths([&first, &second])
            .unwrap()
            .into_string()
            .unwrap();
        let find = |program: &str| resolve_program(program.as_ref(), Some(&search));
        assert_eq!(find("tool"), Some(second.join("tool")));
        assert_eq!(find("other"), Some(second.join("other")));
        assert_eq!(find("missing"), None);
        assert_eq!(find("./tool"), None, "a path is left to the spawn");
        let relative = format!("relative:{search}");
        assert_eq!(
            resolve_program("tool".as_ref(), Some(&relative)),
            None,
            "a relative PATH entry leaves the lookup to the spawn"
        );
    }

    #[test]
    fn only_a_program_without_placeholders_is_looked_up_in_advance() {
        let prepared = |argv: &[&str]| {
            PreparedCommand::new(CommandTemplate {
                argv: argv.iter().map(|a| a.to_string()).collect(),
                ..CommandTemplate::default()
            })
            .unwrap()
        };
        assert!(prepared(&["sh", "-c", "true"]).executable.is_some());
        assert!(prepared(&["{inputs.tool}"]).executable.is_none());
        assert!(matches!(
            PreparedCommand::new(CommandTemplate::default()),
            Err(TemplateError::EmptyArgv)
        ));
    }
}
