//! Job manifests: when a job with an output prefix finishes, its manifest
//! (`_quarry/manifest.parquet`) and `_SUCCESS` or `FAILED.json` are written
//! on a blocking thread, and the job's final progress is held back until
//! they are, so a watcher that sees the job end can read its manifest.

use quarry_core::Core;
use quarry_proto::{ClientId, JobId, JobInfo};
use quarry_store::StoreResolver;
use std::collections::HashMap;
use tokio::sync::mpsc;

/// Stored results (`_result.json`) up to this size are read into the
/// manifest's `result` column, so that one query over the manifest sees
/// every result; larger ones are left to their `result_ref`.
const RESOLVE_RESULTS_UP_TO: u64 = 8 * 1024 * 1024;

/// A manifest writer's report: the job, and whether its manifest was written.
pub(crate) type Written = (JobId, Result<(), String>);

/// The progress held for finishing jobs, and the writers.
pub(crate) struct Manifests {
    /// Final progress messages waiting for their job's manifest.
    held: HashMap<JobId, Vec<(ClientId, JobInfo)>>,
    /// Where manifest writers report back.
    written: mpsc::UnboundedSender<Written>,
    /// Resolves output prefixes (`AWS_*` settings for `s3://`).
    store: StoreResolver,
}

impl Manifests {
    /// Bookkeeping whose writers report on the returned receiver.
    pub(crate) fn new(store: StoreResolver) -> (Manifests, mpsc::UnboundedReceiver<Written>) {
        let (written, reports) = mpsc::unbounded_channel();
        let manifests = Manifests {
            held: HashMap::new(),
            written,
            store,
        };
        (manifests, reports)
    }

    /// Starts writing the manifest of a job that finished, if it has an
    /// output prefix; its final progress is held from now on.
    pub(crate) fn job_finished(&mut self, info: &JobInfo, core: &Core) {
        let Some(output) = core.job_spec(info.id).and_then(|spec| spec.output.clone()) else {
            return;
        };
        let rows = core
            .results(info.id, None, usize::MAX)
            .map(|(rows, _)| rows)
            .unwrap_or_default();
        self.held.insert(info.id, Vec::new());
        let (store, info, done) = (self.store.clone(), info.clone(), self.written.clone());
        // Encoding a large job's parquet takes a while: a blocking thread
        // does it, so the event loop keeps serving.
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let written = runtime
                .block_on(quarry_manifest::write_job_outputs(
                    &store,
                    &output,
                    &info,
                    &rows,
                    RESOLVE_RESULTS_UP_TO,
                ))
                .map_err(|e| format!("cannot write the manifest under {output}: {e}"));
            let _ = done.send((info.id, written));
        });
    }

    /// Holds a job's final progress while its manifest is written; gives it
    /// back when there is nothing to wait for.
    pub(crate) fn hold(&mut self, client: ClientId, info: JobInfo) -> Option<(ClientId, JobInfo)> {
        match self.held.get_mut(&info.id) {
            Some(held) if info.state != quarry_proto::JobState::Running => {
                held.push((client, info));
                None
            }
            _ => Some((client, info)),
        }
    }

    /// A manifest was written (or failed): the progress held for its job.
    pub(crate) fn release(&mut self, job: JobId) -> Vec<(ClientId, JobInfo)> {
        self.held.remove(&job).unwrap_or_default()
    }
}
