//! One attempt of one task: stage inputs, run the function (or command),
//! turn the result into a [`Value`], and report.

use crate::inputs::{Inputs, Prefetch};
use crate::registry::{Registry, TaskContext};
use quarry_proto::{
    ErrorKind, JobSpec, Limits, TaskAssignment, TaskError, TaskOutcome, TaskReport, TaskStats,
    Value,
};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Everything an attempt needs, moved onto its slot thread.
pub(crate) struct Attempt {
    pub(crate) assignment: TaskAssignment,
    pub(crate) job: Arc<JobSpec>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) inputs: Arc<Inputs>,
    pub(crate) limits: Limits,
    pub(crate) scratch_root: PathBuf,
    /// Its inputs, if they were fetched ahead.
    pub(crate) prefetch: Option<Prefetch>,
    /// The Python interpreter `quarry.python` tasks run on.
    pub(crate) python: Arc<PathBuf>,
}

/// What an attempt produced before it is reported.
pub(crate) struct Produced {
    pub(crate) value: Value,
    pub(crate) outputs: Vec<String>,
}

pub(crate) fn failure(kind: ErrorKind, message: impl Into<String>) -> TaskError {
    TaskError {
        kind,
        message: message.into(),
    }
}

/// Runs one attempt to its report. When `cancelled` turns true the attempt
/// is dropped where it stands, which kills a running command's process
/// group.
pub(crate) async fn execute(
    mut attempt: Attempt,
    mut cancelled: watch::Receiver<bool>,
) -> TaskReport {
    let started = Instant::now();
    let mut stats = TaskStats::default();
    let scratch = attempt.scratch_root.join(format!(
        "{}-{}",
        attempt.assignment.task.id.0, attempt.assignment.attempt
    ));
    let result = tokio::select! {
        result = run(&mut attempt, &scratch, &mut stats) => result,
        _ = cancelled.wait_for(|c| *c) => Err(failure(ErrorKind::Cancelled, "cancelled")),
    };
    let outcome = match result {
        Ok(produced) => (TaskOutcome::Ok(produced.value), produced.outputs),
        Err(error) => (TaskOutcome::Err(error), Vec::new()),
    };
    // Scratch space never outlives its attempt. Most function attempts never
    // create it, so check before paying for a removal.
    if scratch.exists() {
        // A slot thread may block; no need for a hop to another thread.
        let _ = std::fs::remove_dir_all(&scratch);
    }
    stats.duration_ms = started.elapsed().as_millis() as u64;
    TaskReport {
        task: attempt.assignment.task.id,
        attempt: attempt.assignment.attempt,
        outcome: outcome.0,
        outputs: outcome.1,
        stats,
    }
}

async fn run(
    attempt: &mut Attempt,
    scratch: &std::path::Path,
    stats: &mut TaskStats,
) -> Result<Produced, TaskError> {
    let task = attempt.assignment.task.clone();
    let staged = attempt
        .inputs
        .stage(&task, &attempt.job, stats, attempt.prefetch.take())
        .await?;
    let timeout = task.timeout_ms.map(Duration::from_millis);
    if task.function == crate::command::COMMAND_FUNCTION {
        return crate::command::run(attempt, &staged, scratch, timeout).await;
    }
    if task.function == crate::python::PYTHON_FUNCTION {
        return crate::python::run(attempt, &staged, scratch, timeout).await;
    }
    let function = attempt.registry.get(&task.function).ok_or_else(|| {
        failure(
            ErrorKind::Rejected,
            format!(
                "this worker has no function named `{}`; it serves: {}",
                task.function,
                attempt.registry.names().join(", ")
            ),
        )
    })?;
    let ctx = TaskContext {
        task: task.clone(),
        attempt: attempt.assignment.attempt,
        inputs: staged.inputs.clone(),
        broadcast: staged.broadcast.clone(),
        scratch: scratch.to_path_buf(),
    };
    let args = staged.args.clone();
    let call = move || {
        let args = args.as_deref().unwrap_or(&ctx.task.args);
        catch_unwind(AssertUnwindSafe(|| function(&ctx, args)))
    };
    // `execute` already runs on a slot thread, so without a timeout the
    // function runs right here; with one it needs a thread of its own that
    // can be abandoned when time is up.
    let returned = match timeout {
        None => call(),
        Some(limit) => tokio::time::timeout(limit, tokio::task::spawn_blocking(call))
            .await
            .map_err(|_| {
                failure(
                    ErrorKind::TimedOut,
                    format!("task ran longer than its {} ms timeout", limit.as_millis()),
                )
            })?
            .map_err(|join| failure(ErrorKind::Panicked, join.to_string()))?,
    };
    let bytes = match returned {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(message)) => return Err(failure(ErrorKind::Failed, message)),
        Err(panic) => {
            return Err(failure(
                ErrorKind::Panicked,
                format!("task panicked: {}", panic_text(panic.as_ref())),
            ))
        }
    };
    drop(staged);
    let value = attempt
        .inputs
        .result_value(
            bytes,
            &attempt.job,
            &task,
            &attempt.limits,
            attempt.registry.wants_binary(&task.function),
            true,
        )
        .await?;
    Ok(Produced {
        value,
        outputs: Vec::new(),
    })
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        text.to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "(a non-text panic payload)".to_string()
    }
}
