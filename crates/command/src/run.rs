//! Running one attempt: spawn in a process group, capture, time out, kill.

use crate::capture::{capture, text_tail, Tail};
use crate::outputs::{list_outputs, ListError, SkippedOutput};
use crate::template::{input_env_var, param_env_var, param_text, PlaceholderValues};
use crate::{CommandTemplate, TemplateError};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use quarry_proto::ErrorKind;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::io;
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
    /// missing, and should be empty (a fresh directory per attempt): every
    /// file in it is listed after success.
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
    /// After the process group is killed, how long to wait for its pipes to
    /// close. Only a process that left the group (for example with `setsid`)
    /// can keep them open; its output is then not waited for.
    pub drain_grace: Duration,
}

impl Default for RunLimits {
    fn default() -> Self {
        RunLimits {
            timeout: None,
            tail_bytes: 64 * 1024,
            max_output_files: 10_000,
            drain_grace: Duration::from_secs(2),
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
pub async fn run_cancellable(
    template: &CommandTemplate,
    invocation: &CommandInvocation,
    limits: &RunLimits,
    cancelled: impl Future<Output = ()>,
) -> Result<CommandOutcome, CommandError> {
    let args = render_argv(template, invocation)?;
    let program = template.argv[0].clone();
    for (what, dir) in [
        ("cannot create work directory", &invocation.work_dir),
        ("cannot create output directory", &invocation.output_dir),
        ("cannot create log directory", &invocation.log_dir),
    ] {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|source| CommandError::Io {
                what,
                path: dir.clone(),
                source,
            })?;
    }
    let stdout_log = invocation.log_dir.join(STDOUT_LOG);
    let stderr_log = invocation.log_dir.join(STDERR_LOG);
    let mut stdout_file = create_log(&stdout_log).await?;
    let mut stderr_file = create_log(&stderr_log).await?;

    let mut command = Command::new(&args[0]);
    command
        .args(&args[1..])
        .current_dir(&invocation.work_dir)
        .envs(&template.env)
        .envs(quarry_env(invocation))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = command.spawn().map_err(|source| CommandError::Spawn {
        program: program.clone(),
        source,
    })?;
    let mut group = GroupKiller {
        pgid: child.id().map(|pid| Pid::from_raw(pid as i32)),
    };
    tracing::debug!(program, task = %invocation.task_id, pgid = ?group.pgid, "command started");
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");

    let mut stdout_tail = Tail::new(limits.tail_bytes);
    let mut stderr_tail = Tail::new(limits.tail_bytes);
    // Boxed (not stack-pinned) so it can be dropped, ending its borrows of
    // the tails, before they are read.
    let mut captures = Box::pin(async {
        tokio::join!(
            capture(stdout, &mut stdout_file, &mut stdout_tail),
            capture(stderr, &mut stderr_file, &mut stderr_tail)
        )
    });
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
    tokio::pin!(deadline);
    tokio::pin!(cancelled);

    let mut captured = None;
    let ending = loop {
        tokio::select! {
            status = child.wait() => break match status {
                Ok(status) => Ending::Exited(status),
                Err(source) => Ending::WaitFailed(source),
            },
            () = &mut deadline => break Ending::TimedOut,
            () = &mut cancelled => break Ending::Cancelled,
            results = &mut captures, if captured.is_none() => captured = Some(results),
        }
    };
    let duration = started.elapsed();
    // Stragglers (background children) die with the attempt, and their
    // pipes close so that the capture below ends.
    group.kill();
    let (stdout_result, stderr_result) = match captured {
        Some(results) => results,
        None => match tokio::time::timeout(limits.drain_grace, &mut captures).await {
            Ok(results) => results,
            Err(_) => {
                tracing::warn!(
                    program,
                    "a process outside the command's group keeps its output open; \
                     not waiting for it"
                );
                (Ok(()), Ok(()))
            }
        },
    };
    drop(captures);
    let stderr_text = stderr_tail.text();
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
                program,
                timeout: timeout.expect("only a set timeout elapses"),
                stderr_tail: stderr_text,
            })
        }
        Ending::Cancelled => return Err(CommandError::Cancelled { program }),
    };
    for (result, path) in [(stdout_result, &stdout_log), (stderr_result, &stderr_log)] {
        result.map_err(|source| CommandError::Io {
            what: "cannot capture output to",
            path: path.clone(),
            source,
        })?;
    }
    if !status.success() {
        return Err(CommandError::Failed {
            program,
            reason: ExitReason::from_status(status),
            stderr_tail: stderr_text,
        });
    }
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
        stderr_tail: stderr_text,
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

/// Kills a process group when told to, and when dropped (so that dropping
/// the [`run`] future leaves no process behind).
struct GroupKiller {
    pgid: Option<Pid>,
}

impl GroupKiller {
    /// Kills the group once; later calls (and the drop) do nothing, so a
    /// process group id that the system reuses later is never signalled.
    fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            // ESRCH (the group is already gone) is the expected case after a
            // clean exit.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        self.kill();
    }
}

fn render_argv(
    template: &CommandTemplate,
    invocation: &CommandInvocation,
) -> Result<Vec<std::ffi::OsString>, TemplateError> {
    let parsed = template.parse_args()?;
    let values = PlaceholderValues {
        input: invocation.input.as_ref(),
        inputs: &invocation.inputs,
        params: &invocation.params,
        output_dir: &invocation.output_dir,
        task_id: &invocation.task_id,
        task_key: &invocation.task_key,
    };
    parsed
        .iter()
        .zip(&template.argv)
        .map(|(arg, text)| arg.render(text, &values))
        .collect()
}

fn quarry_env(invocation: &CommandInvocation) -> Vec<(String, std::ffi::OsString)> {
    let mut env: Vec<(String, std::ffi::OsString)> = Vec::new();
    if let Some(input) = &invocation.input {
        env.push(("QUARRY_INPUT".into(), input.into()));
    }
    for (name, path) in &invocation.inputs {
        env.push((input_env_var(name), path.into()));
    }
    for (key, value) in &invocation.params {
        env.push((param_env_var(key), param_text(value).into()));
    }
    env.push((
        "QUARRY_PARAMS".into(),
        Value::Object(invocation.params.clone()).to_string().into(),
    ));
    env.push((
        "QUARRY_OUTPUT_DIR".into(),
        invocation.output_dir.clone().into(),
    ));
    env.push(("QUARRY_TASK_ID".into(), invocation.task_id.clone().into()));
    env.push(("QUARRY_TASK_KEY".into(), invocation.task_key.clone().into()));
    env
}

async fn create_log(path: &Path) -> Result<tokio::fs::File, CommandError> {
    tokio::fs::File::create(path)
        .await
        .map_err(|source| CommandError::Io {
            what: "cannot create log file",
            path: path.to_owned(),
            source,
        })
}
