//! Python tasks: the `quarry.python` executor. The Python client sends a
//! [`PythonCall`] (its versions and the cloudpickled function, arguments
//! and keyword arguments); the slot running it hands the pickle to its warm
//! interpreter ([`crate::interpreter`]) and returns the pickled result,
//! inline or as a reference like any other result.
//!
//! Each slot thread keeps one interpreter, started on its first Python task
//! and kept for the next ones. An interpreter that dies, or an attempt that
//! is cancelled or times out while it runs, fails only that attempt (the
//! task's retries apply); the next task starts a new interpreter.

use crate::execute::{failure, Attempt, Produced};
use crate::inputs::{local_file, Staged};
use crate::interpreter::{Header, Interpreter, InterpreterError, Reply, PROTOCOL};
use quarry_proto::{ErrorKind, TaskError};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The function name Python tasks carry.
pub const PYTHON_FUNCTION: &str = "quarry.python";

/// The worker's version, which the Python client's must equal.
const QUARRY_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The arguments of a `quarry.python` task (MessagePack), as the Python
/// client builds them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PythonCall {
    /// The client's Python, `major.minor`.
    pub python: String,
    /// The client's cloudpickle version.
    pub cloudpickle: String,
    /// The client's quarry version.
    pub quarry: String,
    /// Pass the task's first input, as a local path, as the function's
    /// first argument (`map_prefix`); the references the pickle holds are
    /// then the inputs after it.
    pub shard: bool,
    /// `cloudpickle.dumps((fn, args, kwargs))`, references to objects the
    /// client put being persistent ids `("quarry-ref", i)` (the task's
    /// input `i`, counted after the shard) or `("quarry-broadcast", name)`
    /// (the job's broadcast input `name`).
    #[serde(with = "serde_bytes")]
    pub pickle: Vec<u8>,
}

thread_local! {
    /// This slot's interpreter, between its tasks.
    static INTERPRETER: RefCell<Option<Interpreter>> = const { RefCell::new(None) };
}

/// Runs one attempt of a Python task on this slot's interpreter.
pub(crate) async fn run(
    attempt: &Attempt,
    staged: &Staged,
    scratch: &Path,
    timeout: Option<Duration>,
) -> Result<Produced, TaskError> {
    let task = &attempt.assignment.task;
    let args = staged.args.as_deref().unwrap_or(&task.args);
    let call: PythonCall = rmp_serde::from_slice(args).map_err(|e| {
        failure(
            ErrorKind::Rejected,
            format!("the arguments of a {PYTHON_FUNCTION} task are not a Python call: {e}"),
        )
    })?;
    let mut inputs: Vec<PathBuf> = Vec::with_capacity(staged.inputs.len());
    let mut shard = None;
    for (index, input) in staged.inputs.iter().enumerate() {
        if call.shard && index == 0 {
            shard = Some(local_file(input, scratch)?);
        } else {
            inputs.push(input.path.clone());
        }
    }
    if call.shard && shard.is_none() {
        return Err(failure(
            ErrorKind::Rejected,
            "a Python task that takes a shard has no input",
        ));
    }
    let broadcast = staged
        .broadcast
        .iter()
        .map(|(name, shard)| (name.clone(), shard.path.clone()))
        .collect();
    let header = Header {
        inputs,
        broadcast,
        shard,
    };
    // Taken out while it runs: if this attempt is dropped (cancelled), the
    // interpreter goes with it, killed mid-task.
    let mut interpreter = match INTERPRETER.with(|slot| slot.borrow_mut().take()) {
        Some(interpreter) => interpreter,
        None => Interpreter::start(&attempt.python)
            .await
            .map_err(|e| failure(ErrorKind::Failed, e.to_string()))?,
    };
    if let Err(mismatch) = check_versions(&call, &interpreter, &attempt.python) {
        INTERPRETER.with(|slot| *slot.borrow_mut() = Some(interpreter));
        return Err(mismatch);
    }
    let exchange = interpreter.call(&header, &call.pickle);
    let reply = match timeout {
        None => exchange.await,
        Some(limit) => match tokio::time::timeout(limit, exchange).await {
            Ok(reply) => reply,
            Err(_) => {
                return Err(failure(
                    ErrorKind::TimedOut,
                    format!(
                        "task ran longer than its {} ms timeout; its Python interpreter was \
                         killed and the next task starts a new one",
                        limit.as_millis()
                    ),
                ))
            }
        },
    };
    // An interpreter that died under its task (killed, out of memory, a
    // crash in native code) is reported as lost, so the scheduler runs the
    // task again within its worker-loss budget, as it would had the whole
    // worker died; the next task here starts a new interpreter.
    let reply = reply.map_err(|e| match e {
        InterpreterError::Died { .. } => failure(ErrorKind::WorkerLost, e.to_string()),
        InterpreterError::Spawn { .. } => failure(ErrorKind::Failed, e.to_string()),
    })?;
    let pid = interpreter.pid();
    INTERPRETER.with(|slot| *slot.borrow_mut() = Some(interpreter));
    let pickled = match reply {
        Reply::Returned(pickled) => pickled,
        Reply::Raised(text) => return Err(failure(ErrorKind::Failed, text)),
    };
    tracing::trace!(task = %task.id, pid, bytes = pickled.len(), "Python task returned");
    let bytes = rmp_serde::to_vec(&serde_bytes::Bytes::new(&pickled))
        .map_err(|e| failure(ErrorKind::Failed, format!("cannot encode the result: {e}")))?;
    drop(pickled);
    // A pickle is binary: stored as is when over the inline cap, in the
    // task's own output directory.
    let value = attempt
        .inputs
        .result_value(bytes, &attempt.job, task, &attempt.limits, true, true)
        .await?;
    Ok(Produced {
        value,
        outputs: Vec::new(),
    })
}

/// Refuses a call whose client runs other versions than the interpreter
/// and this worker, in one line that says which.
fn check_versions(
    call: &PythonCall,
    interpreter: &Interpreter,
    program: &Path,
) -> Result<(), TaskError> {
    let hello = &interpreter.hello;
    let program = program.display();
    let mismatch = if hello.protocol != PROTOCOL {
        Some(format!(
            "the interpreter speaks Python task protocol {}, this worker {PROTOCOL}",
            hello.protocol
        ))
    } else if call.quarry != QUARRY_VERSION {
        Some(format!(
            "the client runs quarry {}, the worker quarry {QUARRY_VERSION}",
            call.quarry
        ))
    } else if call.python != hello.python {
        Some(format!(
            "the client runs Python {}, the worker's interpreter `{program}` Python {}",
            call.python, hello.python
        ))
    } else {
        match &hello.cloudpickle {
            None => Some(format!(
                "the worker's interpreter `{program}` cannot import cloudpickle (pip install \
                 cloudpickle=={})",
                call.cloudpickle
            )),
            Some(version) if *version != call.cloudpickle => Some(format!(
                "the client runs cloudpickle {}, the worker's interpreter `{program}` \
                 cloudpickle {version}",
                call.cloudpickle
            )),
            Some(_) => None,
        }
    };
    match mismatch {
        Some(what) => Err(failure(
            ErrorKind::Rejected,
            format!(
                "version mismatch: {what}; install the same versions on both sides, or choose \
                 the worker's interpreter with `quarry worker --python PATH`"
            ),
        )),
        None => Ok(()),
    }
}
