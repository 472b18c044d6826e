//! `map_prefix` as a Python iterator over `quarry_client::PrefixMap`.

use crate::runtime;
use crate::to_py_error;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use quarry_client::PrefixMap;
use serde_bytes::ByteBuf;
use std::sync::Arc;

/// Yields `(key, pickled value)` per task in the order they finish, raising
/// the first failure (`quarry.Client.map_prefix` wraps it). Dropping it
/// before the end cancels the rest of the job.
#[pyclass(frozen, module = "quarry._native")]
pub struct NativePrefixMap {
    map: Arc<tokio::sync::Mutex<PrefixMap<ByteBuf>>>,
    job: String,
}

impl NativePrefixMap {
    pub(crate) fn new(map: PrefixMap<ByteBuf>) -> NativePrefixMap {
        NativePrefixMap {
            job: map.job().to_string(),
            map: Arc::new(tokio::sync::Mutex::new(map)),
        }
    }
}

#[pymethods]
impl NativePrefixMap {
    /// The job's id.
    #[getter]
    fn job(&self) -> &str {
        &self.job
    }

    /// (tasks submitted, their input bytes, whether the listing is over)
    /// so far.
    fn progress(&self, py: Python<'_>) -> PyResult<(u64, u64, bool)> {
        let map = self.map.clone();
        let progress = runtime::block_on(py, async move { map.lock().await.progress() })?;
        Ok((progress.tasks, progress.bytes, progress.listed))
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<(String, Bound<'py, PyBytes>)>> {
        let map = self.map.clone();
        let next = runtime::block_on(py, async move { map.lock().await.next().await })?;
        match next {
            None => Ok(None),
            Some(Err(error)) => Err(to_py_error(error)),
            Some(Ok(done)) => {
                let value = done.result.map_err(to_py_error)?;
                Ok(Some((done.key, PyBytes::new(py, &value))))
            }
        }
    }
}
