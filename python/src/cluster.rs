//! The embedded cluster: `quarry::LocalCluster` (a scheduler and workers
//! inside this process) on the module's runtime.

use crate::runtime;
use crate::QuarryError;
use pyo3::prelude::*;
use quarry::LocalCluster;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// How long `close` waits for the workers and the scheduler to stop.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// A running embedded cluster (`quarry.LocalCluster` wraps it).
#[pyclass(frozen, module = "quarry._native")]
pub struct NativeCluster {
    address: String,
    cluster: Mutex<Option<LocalCluster>>,
}

#[pymethods]
impl NativeCluster {
    /// Starts `n_workers` workers of `threads_per_worker` slots each, whose
    /// Python tasks run on `python`, caching under `work_dir`; returns once
    /// every worker registered.
    #[new]
    fn new(
        py: Python<'_>,
        n_workers: usize,
        threads_per_worker: u32,
        python: PathBuf,
        work_dir: PathBuf,
    ) -> PyResult<NativeCluster> {
        let builder = LocalCluster::builder()
            .workers(n_workers)
            .nthreads(threads_per_worker)
            .python(python)
            .work_dir(work_dir);
        let cluster = runtime::block_on(py, builder.start())?
            .map_err(|e| QuarryError::new_err(format!("cannot start the local cluster: {e}")))?;
        Ok(NativeCluster {
            address: cluster.address().to_string(),
            cluster: Mutex::new(Some(cluster)),
        })
    }

    /// The scheduler's address, for clients.
    #[getter]
    fn address(&self) -> &str {
        &self.address
    }

    /// Stops the workers (their interpreters with them) and the scheduler;
    /// later calls do nothing.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let cluster = self
            .cluster
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(cluster) = cluster {
            runtime::block_on(py, async move {
                tokio::time::timeout(SHUTDOWN_TIMEOUT, cluster.shutdown())
                    .await
                    .map_err(|_| {
                        QuarryError::new_err(format!(
                            "the local cluster did not stop within {} s",
                            SHUTDOWN_TIMEOUT.as_secs()
                        ))
                    })
            })??;
        }
        Ok(())
    }
}
