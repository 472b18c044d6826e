//! Command tasks: the `quarry.command` executor, glue between the worker's
//! staging and uploads and `quarry-command`'s process handling.

use crate::execute::{failure, Attempt, Produced};
use crate::inputs::{local_file, Inputs, Staged};
use quarry_command::{
    output_object_key, run_prepared, CommandError, CommandInvocation, CommandOutcome,
    CommandTemplate, PreparedCommand, RunLimits,
};
use quarry_proto::{ErrorKind, JobSpec, TaskError};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The function name command tasks carry.
pub(crate) const COMMAND_FUNCTION: &str = quarry_command::COMMAND_EXECUTOR;

/// The command's working directory inside an attempt directory.
const WORK_DIR: &str = "work";
/// The command's `{output_dir}` inside an attempt directory.
const OUTPUT_DIR: &str = "output";
/// The logs `quarry-command` writes at the top of an attempt directory.
const LOGS: [&str; 2] = ["stdout.log", "stderr.log"];

/// Runs one attempt of a command task: stages paths, runs the command, and
/// uploads its outputs and logs under `OUTPUT/<task key>/`.
///
/// The command runs in an attempt directory leased from the worker's
/// [`Commands`]: logs at its top, the working directory in `work/`, the
/// outputs in `output/`. File-system calls here are plain blocking calls:
/// the attempt already runs on a thread of its own, where a hop to yet
/// another thread per call would cost more than the call.
pub(crate) async fn run(
    attempt: &Attempt,
    staged: &Staged,
    scratch: &Path,
    timeout: Option<Duration>,
) -> Result<Produced, TaskError> {
    let task = &attempt.assignment.task;
    let commands = attempt.inputs.commands();
    let prepared = commands.prepared(&attempt.job)?;
    let params = if task.params_json.is_empty() {
        serde_json::Map::new()
    } else {
        serde_json::from_str(&task.params_json)
            .map_err(|e| failure(ErrorKind::Rejected, format!("bad task parameters: {e}")))?
    };
    let input = match staged.inputs.first() {
        Some(shard) => Some(local_file(shard, scratch)?),
        None => None,
    };
    let mut attempt_dir = commands.dirs.lease().map_err(|e| {
        failure(
            ErrorKind::Failed,
            format!("cannot create a directory for the command: {e}"),
        )
    })?;
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
        work_dir: attempt_dir.path.join(WORK_DIR),
        output_dir: attempt_dir.path.join(OUTPUT_DIR),
        log_dir: attempt_dir.path.clone(),
    };
    let limits = RunLimits {
        timeout: timeout.or(prepared.template().timeout),
        ..RunLimits::default()
    };
    let outcome = run_prepared(&prepared, &invocation, &limits, std::future::pending()).await;
    // The command's process group is gone: nothing of it writes here any
    // more, so the directory can serve the next attempt once emptied.
    attempt_dir.command_finished = true;
    let output_prefix = attempt
        .job
        .output
        .as_deref()
        .map(|o| o.trim_end_matches('/'));
    let logs = read_logs(&invocation.log_dir);
    let outcome = outcome.map_err(|e: CommandError| failure(e.kind(), e.to_string()));
    let result =
        match &outcome {
            Ok(done) => Some(rmp_serde::to_vec_named(&done.result).map_err(|e| {
                failure(ErrorKind::Failed, format!("cannot encode the result: {e}"))
            })?),
            Err(_) => None,
        };
    let outputs = match output_prefix {
        Some(prefix) => {
            upload_outputs(
                attempt,
                &invocation,
                prefix,
                logs,
                outcome,
                result.as_deref(),
            )
            .await?
        }
        None => {
            let outcome = outcome?;
            if !outcome.outputs.is_empty() {
                return Err(failure(
                    ErrorKind::Failed,
                    format!(
                        "the command wrote {} file(s) to {{output_dir}} but the job has no \
                         `output` prefix to upload them to",
                        outcome.outputs.len()
                    ),
                ));
            }
            Vec::new()
        }
    };
    let value = attempt
        .inputs
        .result_value(
            result.unwrap_or_default(),
            &attempt.job,
            task,
            &attempt.limits,
            false,
            false,
        )
        .await?;
    Ok(Produced { value, outputs })
}

/// Makes the task's directory under `prefix` hold exactly this attempt's
/// files (what an earlier attempt or run left and this one does not write
/// goes first), uploads the logs whatever happened (so that a failure can
/// be read afterwards), then, if the command succeeded, its outputs;
/// returns their URLs.
async fn upload_outputs(
    attempt: &Attempt,
    invocation: &CommandInvocation,
    prefix: &str,
    logs: Vec<(&'static str, Vec<u8>)>,
    outcome: Result<CommandOutcome, TaskError>,
    result: Option<&[u8]>,
) -> Result<Vec<String>, TaskError> {
    let task = &attempt.assignment.task;
    let mut kept: Vec<String> = logs.iter().map(|(name, _)| log_path(name)).collect();
    if let Ok(done) = &outcome {
        kept.extend(done.outputs.iter().cloned());
    }
    if result.is_some_and(|r| Inputs::stored_result(r.len(), &attempt.limits)) {
        kept.push(quarry_proto::ResultFormat::Json.file_name().to_string());
    }
    attempt
        .inputs
        .clean_output_dir(prefix, &task.key, &kept)
        .await?;
    for (name, bytes) in logs {
        let key = output_object_key(&task.key, &log_path(name))
            .map_err(|e| failure(ErrorKind::Failed, e.to_string()))?;
        attempt
            .inputs
            .put(&format!("{prefix}/{key}"), bytes.into())
            .await?;
    }
    let outcome = outcome?;
    let mut outputs = Vec::new();
    for relative in &outcome.outputs {
        let key = output_object_key(&task.key, relative)
            .map_err(|e| failure(ErrorKind::Failed, e.to_string()))?;
        let bytes = std::fs::read(invocation.output_dir.join(relative)).map_err(|e| {
            failure(
                ErrorKind::Failed,
                format!("cannot read output {relative}: {e}"),
            )
        })?;
        let url = format!("{prefix}/{key}");
        attempt.inputs.put(&url, bytes.into()).await?;
        outputs.push(url);
    }
    Ok(outputs)
}

/// Where a log goes under the task's output directory.
fn log_path(name: &str) -> String {
    format!("_logs/{name}")
}

/// The attempt's logs that are not empty. Empty ones are not uploaded; the
/// clean-up before the upload removes any an earlier attempt left.
fn read_logs(log_dir: &Path) -> Vec<(&'static str, Vec<u8>)> {
    LOGS.iter()
        .filter_map(|name| {
            let bytes = std::fs::read(log_dir.join(name)).ok()?;
            (!bytes.is_empty()).then_some((*name, bytes))
        })
        .collect()
}

/// What the command attempts of a worker share: the directories they run
/// in, and the command of the job they belong to, prepared once.
pub(crate) struct Commands {
    dirs: AttemptDirs,
    /// The last job's command. Tasks of one job mostly arrive together, so
    /// one entry saves decoding the template, parsing its arguments and
    /// looking up its program for all but the first. Holding the job's
    /// `Arc` keeps its address from being reused by another job.
    last_prepared: Mutex<Option<(Arc<JobSpec>, Arc<PreparedCommand>)>>,
}

impl Commands {
    /// Command support for a worker whose scratch directory is
    /// `scratch_root`.
    pub(crate) fn new(scratch_root: PathBuf) -> Commands {
        Commands {
            dirs: AttemptDirs::new(scratch_root),
            last_prepared: Mutex::new(None),
        }
    }

    /// The command of `job`, prepared.
    fn prepared(&self, job: &Arc<JobSpec>) -> Result<Arc<PreparedCommand>, TaskError> {
        if let Some((cached_job, prepared)) = lock(&self.last_prepared).as_ref() {
            if Arc::ptr_eq(cached_job, job) {
                return Ok(prepared.clone());
            }
        }
        let template = CommandTemplate::from_context(&job.context)
            .map_err(|e| failure(ErrorKind::Rejected, e.to_string()))?;
        let prepared = Arc::new(
            PreparedCommand::new(template)
                .map_err(|e| failure(ErrorKind::Rejected, e.to_string()))?,
        );
        *lock(&self.last_prepared) = Some((job.clone(), prepared.clone()));
        Ok(prepared)
    }
}

/// The directories command attempts run in, emptied and reused from one
/// attempt to the next. Creating and removing directories is the dearest
/// part of a short command: on ext4 an `rmdir` frees a block through the
/// journal, and under write load a `mkdir`/`rmdir` pair takes from 0.3 to
/// several milliseconds, more than starting the process, while emptying a
/// directory that holds two empty logs takes a few `getdents` and `stat`s.
///
/// A directory is reused only after its command's process group was killed
/// and every entry the command left was removed (symlinks are removed, never
/// followed). A process that escaped the group (`setsid`) is beyond reach:
/// it could still write into a later attempt's directory.
struct AttemptDirs {
    root: PathBuf,
    idle: Mutex<Vec<PathBuf>>,
    /// Suffix of the last directory created.
    created: AtomicU64,
}

impl AttemptDirs {
    /// Attempt directories under `root` (the worker's scratch directory).
    fn new(root: PathBuf) -> AttemptDirs {
        AttemptDirs {
            root,
            idle: Mutex::new(Vec::new()),
            created: AtomicU64::new(0),
        }
    }

    /// An empty directory for one attempt: an idle one, or a new one.
    fn lease(&self) -> io::Result<DirLease<'_>> {
        let reused = lock(&self.idle).pop();
        let path = match reused {
            Some(path) => path,
            None => self.create()?,
        };
        Ok(DirLease {
            dirs: self,
            path,
            command_finished: false,
        })
    }

    /// Creates a directory with a name no one holds: names left by an
    /// earlier worker process on the same scratch directory are skipped.
    fn create(&self) -> io::Result<PathBuf> {
        std::fs::create_dir_all(&self.root)?;
        loop {
            let suffix = self.created.fetch_add(1, Ordering::Relaxed) + 1;
            let path = self.root.join(format!("command-{suffix}"));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(path),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for AttemptDirs {
    fn drop(&mut self) {
        for path in lock(&self.idle).drain(..) {
            remove_attempt_dir(&path);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded values stay consistent whatever panicked.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One attempt's directory; given back (emptied) or removed when dropped.
struct DirLease<'a> {
    dirs: &'a AttemptDirs,
    path: PathBuf,
    /// Set once the command ran to its end (its process group killed). An
    /// attempt dropped midway (cancelled) removes its directory instead.
    command_finished: bool,
}

impl Drop for DirLease<'_> {
    fn drop(&mut self) {
        if self.command_finished && empty_for_reuse(&self.path).is_ok() {
            lock(&self.dirs.idle).push(std::mem::take(&mut self.path));
        } else {
            remove_attempt_dir(&self.path);
        }
    }
}

/// Removes everything a command left in its attempt directory except the
/// work and output directories themselves, emptied, and empty logs: the
/// next attempt truncates those anyway, and an `unlink` plus a `create`
/// would cost an inode. Nothing is followed: a symlink is removed as a
/// link, even one named `work` or `output`.
fn empty_for_reuse(path: &Path) -> io::Result<()> {
    if !std::fs::symlink_metadata(path)?.is_dir() {
        return Err(io::ErrorKind::NotADirectory.into());
    }
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let file_type = entry.file_type()?;
        let name = entry.file_name();
        if file_type.is_dir() && (name == WORK_DIR || name == OUTPUT_DIR) {
            for inner in std::fs::read_dir(entry.path())? {
                remove_entry(&inner?)?;
            }
        } else if !(file_type.is_file()
            && LOGS.iter().any(|log| name == *log)
            && entry.metadata()?.len() == 0)
        {
            remove_entry(&entry)?;
        }
    }
    Ok(())
}

fn remove_entry(entry: &std::fs::DirEntry) -> io::Result<()> {
    // `DirEntry::file_type` does not follow symlinks, and neither does
    // `remove_dir_all`.
    if entry.file_type()?.is_dir() {
        std::fs::remove_dir_all(entry.path())
    } else {
        std::fs::remove_file(entry.path())
    }
}

fn remove_attempt_dir(path: &Path) {
    if let Err(e) = std::fs::remove_dir_all(path) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!("cannot remove {}: {e}", path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_finished_attempt_directory_is_emptied_and_reused() {
        let root = tempfile::tempdir().unwrap();
        let dirs = AttemptDirs::new(root.path().join("scratch"));
        let first = {
            let mut lease = dirs.lease().unwrap();
            let path = lease.path.clone();
            std::fs::create_dir_all(path.join("output/sub")).unwrap();
            std::fs::create_dir_all(path.join("work")).unwrap();
            std::fs::write(path.join("output/sub/part.csv"), "1").unwrap();
            std::fs::write(path.join("work/tmp"), "x").unwrap();
            std::fs::write(path.join("stdout.log"), "").unwrap();
            std::fs::write(path.join("stderr.log"), "oops").unwrap();
            std::fs::write(path.join("stray"), "").unwrap();
            lease.command_finished = true;
            path
        };
        // Empty logs stay (the next attempt truncates them); the rest goes.
        assert_eq!(entries(&first), ["output", "stdout.log", "work"]);
        assert!(entries(&first.join("output")).is_empty());
        assert!(entries(&first.join("work")).is_empty());
        assert_eq!(dirs.lease().unwrap().path, first);
    }

    #[test]
    fn symlinks_are_removed_not_followed() {
        let root = tempfile::tempdir().unwrap();
        let outside = root.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("precious"), "keep me").unwrap();
        let dirs = AttemptDirs::new(root.path().join("scratch"));
        let path = {
            let mut lease = dirs.lease().unwrap();
            std::os::unix::fs::symlink(&outside, lease.path.join("output")).unwrap();
            std::fs::create_dir(lease.path.join("work")).unwrap();
            std::os::unix::fs::symlink(&outside, lease.path.join("work/link")).unwrap();
            lease.command_finished = true;
            lease.path.clone()
        };
        assert_eq!(entries(&outside), ["precious"]);
        assert_eq!(entries(&path), ["work"]);
    }

    #[test]
    fn an_attempt_dropped_midway_removes_its_directory() {
        let root = tempfile::tempdir().unwrap();
        let dirs = AttemptDirs::new(root.path().join("scratch"));
        let path = dirs.lease().unwrap().path.clone();
        assert!(!path.exists());
        assert_ne!(dirs.lease().unwrap().path, path);
    }

    #[test]
    fn names_left_by_an_earlier_process_are_skipped() {
        let root = tempfile::tempdir().unwrap();
        let scratch = root.path().join("scratch");
        std::fs::create_dir_all(scratch.join("command-1")).unwrap();
        std::fs::write(scratch.join("command-1/stdout.log"), "old").unwrap();
        let dirs = AttemptDirs::new(scratch.clone());
        let lease = dirs.lease().unwrap();
        assert_eq!(lease.path, scratch.join("command-2"));
        assert_eq!(entries(&scratch.join("command-1")), ["stdout.log"]);
    }

    #[test]
    fn idle_directories_go_with_the_worker() {
        let root = tempfile::tempdir().unwrap();
        let scratch = root.path().join("scratch");
        let dirs = AttemptDirs::new(scratch.clone());
        dirs.lease().unwrap().command_finished = true;
        assert_eq!(entries(&scratch), ["command-1"]);
        drop(dirs);
        assert!(entries(&scratch).is_empty());
    }

    fn job_with_context(context: Vec<u8>) -> Arc<JobSpec> {
        Arc::new(JobSpec {
            id: quarry_proto::JobId(1),
            name: "job".into(),
            broadcast: Vec::new(),
            output: None,
            context,
            max_fails: None,
        })
    }

    #[test]
    fn a_job_is_prepared_once() {
        let commands = Commands::new(PathBuf::from("/nonexistent"));
        let template = CommandTemplate {
            argv: vec!["true".into()],
            ..CommandTemplate::default()
        };
        let job = job_with_context(template.to_context());
        let first = commands.prepared(&job).unwrap();
        assert!(Arc::ptr_eq(&first, &commands.prepared(&job).unwrap()));
        assert_eq!(first.template(), &template);
        let bad = job_with_context(b"\xc1".to_vec());
        assert_eq!(
            commands.prepared(&bad).unwrap_err().kind,
            ErrorKind::Rejected
        );
    }
}
