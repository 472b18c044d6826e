//! Command tasks: the `quarry.command` executor, glue between the worker's
//! staging and uploads and `quarry-command`'s process handling.

use crate::execute::{failure, Attempt, Produced};
use crate::inputs::Staged;
use quarry_command::{
    output_object_key, run as run_command, CommandError, CommandInvocation, CommandTemplate,
    RunLimits,
};
use quarry_proto::{ErrorKind, TaskError};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// The function name command tasks carry.
pub(crate) const COMMAND_FUNCTION: &str = quarry_command::COMMAND_EXECUTOR;

/// Runs one attempt of a command task: stages paths, runs the command, and
/// uploads its outputs and logs under `OUTPUT/<task key>/`.
pub(crate) async fn run(
    attempt: &Attempt,
    staged: &Staged,
    scratch: &Path,
    timeout: Option<Duration>,
) -> Result<Produced, TaskError> {
    let task = &attempt.assignment.task;
    let template = CommandTemplate::from_context(&attempt.job.context)
        .map_err(|e| failure(ErrorKind::Rejected, e.to_string()))?;
    let params = if task.params_json.is_empty() {
        serde_json::Map::new()
    } else {
        serde_json::from_str(&task.params_json)
            .map_err(|e| failure(ErrorKind::Rejected, format!("bad task parameters: {e}")))?
    };
    let input = match staged.inputs.first() {
        // A chunk of a larger object is handed over as a file of its own.
        Some(shard) if shard.data_ref.range.is_some() => {
            let bytes = shard.read().map_err(|e| {
                failure(
                    ErrorKind::InputUnavailable,
                    format!("cannot read input chunk: {e}"),
                )
            })?;
            let path = scratch.join("input.chunk");
            tokio::fs::write(&path, bytes).await.map_err(|e| {
                failure(ErrorKind::Failed, format!("cannot stage input chunk: {e}"))
            })?;
            Some(path)
        }
        Some(shard) => Some(shard.path.clone()),
        None => None,
    };
    let invocation = CommandInvocation {
        input,
        inputs: staged
            .broadcast
            .iter()
            .map(|(name, shard)| (name.clone(), shard.path.clone()))
            .collect::<BTreeMap<_, _>>(),
        params,
        task_id: task.id.0.to_string(),
        task_key: task.key.clone(),
        work_dir: scratch.join("work"),
        output_dir: scratch.join("output"),
        log_dir: scratch.join("logs"),
    };
    for dir in [
        &invocation.work_dir,
        &invocation.output_dir,
        &invocation.log_dir,
    ] {
        tokio::fs::create_dir_all(dir).await.map_err(|e| {
            failure(
                ErrorKind::Failed,
                format!("cannot create {}: {e}", dir.display()),
            )
        })?;
    }
    let limits = RunLimits {
        timeout: timeout.or(template.timeout),
        ..RunLimits::default()
    };
    let outcome = run_command(&template, &invocation, &limits).await;
    let output_prefix = attempt
        .job
        .output
        .as_deref()
        .map(|o| o.trim_end_matches('/'));
    // Logs go up whatever happened, so a failure can be read afterwards.
    if let Some(prefix) = output_prefix {
        upload_logs(attempt, prefix, &invocation.log_dir).await?;
    }
    let outcome = outcome.map_err(|e: CommandError| failure(e.kind(), e.to_string()))?;
    let mut outputs = Vec::new();
    if let Some(prefix) = output_prefix {
        for relative in &outcome.outputs {
            let key = output_object_key(&task.key, relative)
                .map_err(|e| failure(ErrorKind::Failed, e.to_string()))?;
            let bytes = tokio::fs::read(invocation.output_dir.join(relative))
                .await
                .map_err(|e| {
                    failure(
                        ErrorKind::Failed,
                        format!("cannot read output {relative}: {e}"),
                    )
                })?;
            let url = format!("{prefix}/{key}");
            attempt.inputs.put(&url, bytes).await?;
            outputs.push(url);
        }
    } else if !outcome.outputs.is_empty() {
        return Err(failure(
            ErrorKind::Failed,
            format!(
                "the command wrote {} file(s) to {{output_dir}} but the job has no `output` \
                 prefix to upload them to",
                outcome.outputs.len()
            ),
        ));
    }
    let result = rmp_serde::to_vec_named(&outcome.result)
        .map_err(|e| failure(ErrorKind::Failed, format!("cannot encode the result: {e}")))?;
    let value = attempt
        .inputs
        .result_value(result, &attempt.job, task, &attempt.limits)
        .await?;
    Ok(Produced { value, outputs })
}

async fn upload_logs(attempt: &Attempt, prefix: &str, log_dir: &Path) -> Result<(), TaskError> {
    let task = &attempt.assignment.task;
    for name in ["stdout.log", "stderr.log"] {
        let Ok(bytes) = tokio::fs::read(log_dir.join(name)).await else {
            continue;
        };
        let key = output_object_key(&task.key, &format!("_logs/{name}"))
            .map_err(|e| failure(ErrorKind::Failed, e.to_string()))?;
        attempt
            .inputs
            .put(&format!("{prefix}/{key}"), bytes)
            .await?;
    }
    Ok(())
}
