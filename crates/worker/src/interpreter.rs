//! One warm Python interpreter: the child process a slot keeps from task to
//! task, and the frames it is spoken to in (see `python_worker.py`, which
//! it runs).
//!
//! The interpreter runs in a process group of its own that dies with the
//! slot thread that started it and with the worker, however the worker
//! ends (`quarry_command::spawn_in_group_without_fork`, with the bootstrap setting `PR_SET_PDEATHSIG`). Dropping an [`Interpreter`]
//! kills it.

use quarry_command::{spawn_in_group_without_fork, ProcessGroup};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// The program the interpreter runs.
const BOOTSTRAP: &str = include_str!("python_worker.py");

/// The frame protocol `python_worker.py` speaks.
pub(crate) const PROTOCOL: u32 = 1;

/// How long a new interpreter may take to say hello (it imports
/// cloudpickle, on a loaded machine).
const HELLO_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a dead interpreter's exit status is waited for.
const EXIT_WAIT: Duration = Duration::from_secs(5);

/// What an interpreter says when it starts.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub(crate) struct Hello {
    /// Its frame protocol.
    pub(crate) protocol: u32,
    /// Python's `major.minor`.
    pub(crate) python: String,
    /// cloudpickle's version, if it could be imported.
    pub(crate) cloudpickle: Option<String>,
}

/// What a task is run with besides its pickle.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Header {
    /// Local paths of the task's inputs, in order (references the client
    /// put are loaded from these).
    pub(crate) inputs: Vec<PathBuf>,
    /// Local paths of the job's broadcast inputs, by name.
    pub(crate) broadcast: BTreeMap<String, PathBuf>,
    /// A path passed to the function as its first argument (`map_prefix`).
    pub(crate) shard: Option<PathBuf>,
}

/// How one call ended, when the interpreter lived through it.
#[derive(Debug)]
pub(crate) enum Reply {
    /// The pickled return value.
    Returned(Vec<u8>),
    /// The task raised: its traceback (and pickled exception).
    Raised(String),
}

/// The interpreter could not be started or spoken to.
#[derive(Debug, Error)]
pub(crate) enum InterpreterError {
    /// It could not be started at all.
    #[error("cannot start the Python interpreter `{program}`: {source}; install Python 3 there, or choose another with `quarry worker --python PATH` (or `python` in the worker's settings)")]
    Spawn {
        /// What was run.
        program: PathBuf,
        /// Why not.
        source: io::Error,
    },
    /// It died, or stopped speaking the protocol.
    #[error("the Python interpreter `{program}` (pid {pid}) {what}")]
    Died {
        /// What was run.
        program: PathBuf,
        /// Its process id.
        pid: u32,
        /// How it died.
        what: String,
    },
}

/// A running interpreter.
pub(crate) struct Interpreter {
    program: PathBuf,
    pid: u32,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// What it said when it started.
    pub(crate) hello: Hello,
    /// Killed (with anything it started) when the interpreter is dropped.
    _group: ProcessGroup,
}

impl Interpreter {
    /// Starts `program` on the bootstrap and waits for its hello. Call it
    /// from the slot thread that will use it: the interpreter dies with the
    /// thread that starts it.
    pub(crate) async fn start(program: &Path) -> Result<Interpreter, InterpreterError> {
        let mut command = Command::new(program);
        command
            .arg("-c")
            .arg(BOOTSTRAP)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // Not forked: the worker may live in a Python process whose
        // libraries' fork handlers can hang (see spawn_in_group_without_fork);
        // the bootstrap ties itself to this thread.
        let (mut child, group) = spawn_in_group_without_fork(&mut command).map_err(|source| {
            InterpreterError::Spawn {
                program: program.to_path_buf(),
                source,
            }
        })?;
        let pid = child.id().unwrap_or_default();
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            unreachable!("both pipes were asked for");
        };
        let mut interpreter = Interpreter {
            program: program.to_path_buf(),
            pid,
            child,
            stdin,
            stdout: BufReader::new(stdout),
            hello: Hello {
                protocol: 0,
                python: String::new(),
                cloudpickle: None,
            },
            _group: group,
        };
        let hello = match tokio::time::timeout(HELLO_TIMEOUT, interpreter.read_frame()).await {
            Ok(Ok(frame)) => frame,
            Ok(Err(_)) => return Err(interpreter.died("exited before it started").await),
            Err(_) => {
                return Err(interpreter.error(format!(
                    "did not start within {} s",
                    HELLO_TIMEOUT.as_secs()
                )))
            }
        };
        interpreter.hello = serde_json::from_slice(&hello)
            .map_err(|e| interpreter.error(format!("said an unreadable hello: {e}")))?;
        tracing::debug!(program = %program.display(), pid, hello = ?interpreter.hello, "Python interpreter started");
        Ok(interpreter)
    }

    /// The interpreter's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Runs one task: sends its header and pickle and waits for the reply.
    /// An error means the interpreter is gone (or unusable) and must be
    /// dropped; the task's own exceptions are a [`Reply::Raised`].
    pub(crate) async fn call(
        &mut self,
        header: &Header,
        pickle: &[u8],
    ) -> Result<Reply, InterpreterError> {
        let header = serde_json::to_vec(header).expect("a header always encodes");
        let sent = async {
            self.write_frame(&header).await?;
            self.write_frame(pickle).await?;
            self.stdin.flush().await
        }
        .await;
        if sent.is_err() {
            return Err(self.died("died before it took the task").await);
        }
        let frame = match self.read_frame().await {
            Ok(frame) => frame,
            Err(_) => return Err(self.died("died running the task").await),
        };
        match frame.split_first() {
            Some((0, pickled)) => Ok(Reply::Returned(pickled.to_vec())),
            Some((1, text)) => Ok(Reply::Raised(String::from_utf8_lossy(text).into_owned())),
            _ => Err(self.error("sent a reply the worker cannot read".to_string())),
        }
    }

    async fn write_frame(&mut self, payload: &[u8]) -> io::Result<()> {
        self.stdin
            .write_all(&(payload.len() as u64).to_le_bytes())
            .await?;
        self.stdin.write_all(payload).await
    }

    async fn read_frame(&mut self) -> io::Result<Vec<u8>> {
        let mut length = [0u8; 8];
        self.stdout.read_exact(&mut length).await?;
        let length = u64::from_le_bytes(length) as usize;
        let mut payload = vec![0u8; length];
        self.stdout.read_exact(&mut payload).await?;
        Ok(payload)
    }

    fn error(&self, what: String) -> InterpreterError {
        InterpreterError::Died {
            program: self.program.clone(),
            pid: self.pid,
            what,
        }
    }

    /// The error for an interpreter whose pipes closed, with how it ended.
    async fn died(&mut self, what: &str) -> InterpreterError {
        let status = tokio::time::timeout(EXIT_WAIT, self.child.wait()).await;
        let how = match status {
            Ok(Ok(status)) => describe(status),
            Ok(Err(e)) => format!("(its exit status is unknown: {e})"),
            Err(_) => "(it closed its pipes but did not exit)".to_string(),
        };
        self.error(format!(
            "{what}: {how}; its output is in the worker's log, and the next task starts a new interpreter"
        ))
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("it exited with status {code}"),
        (None, Some(signal)) => {
            let name = nix::sys::signal::Signal::try_from(signal)
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|_| format!("signal {signal}"));
            format!("it was killed by {name}")
        }
        (None, None) => "it ended".to_string(),
    }
}
