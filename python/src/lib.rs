//! `quarry._native`: the extension module under the Python package
//! `quarry` (see `python/quarry/`, which gives it dask's API).
//!
//! It owns the bridge between Python and the Rust crates: one tokio
//! runtime for the process ([`runtime`]), a [`client::NativeClient`] over
//! `quarry_client::Client`, futures whose waits release the GIL
//! ([`future`]), `map_prefix` as an iterator ([`prefix`]) and the embedded
//! cluster, `quarry::LocalCluster` ([`cluster`]). Python functions travel as
//! `quarry.python` tasks ([`quarry_worker::PythonCall`]), which the workers
//! run on warm interpreters.
//!
//! It must not reimplement the protocol, sessions or scheduling (the Rust
//! client and cluster do all of it), and it does no pickling: the Python
//! side pickles and unpickles, this side moves bytes.

mod client;
mod cluster;
mod future;
mod prefix;
mod runtime;

use pyo3::prelude::*;

pyo3::create_exception!(
    _native,
    QuarryError,
    pyo3::exceptions::PyException,
    "A quarry call failed (connection, refusal, store, encoding)."
);
pyo3::create_exception!(
    _native,
    TaskFailed,
    QuarryError,
    "A task failed for good: `args` are (task key, error kind, error text)."
);

/// Turns a client error into a Python exception: a task's own failure
/// becomes [`TaskFailed`], anything else [`QuarryError`].
pub(crate) fn to_py_error(error: quarry_client::ClientError) -> PyErr {
    match error {
        quarry_client::ClientError::Task { key, kind, message } => {
            TaskFailed::new_err((key, format!("{kind:?}"), message))
        }
        other => QuarryError::new_err(other.to_string()),
    }
}

/// The extension module.
#[pymodule]
#[pyo3(name = "_native")]
fn quarry_python(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("PYTHON_FUNCTION", quarry_worker::PYTHON_FUNCTION)?;
    m.add("QuarryError", m.py().get_type::<QuarryError>())?;
    m.add("TaskFailed", m.py().get_type::<TaskFailed>())?;
    m.add_class::<client::NativeClient>()?;
    m.add_class::<cluster::NativeCluster>()?;
    m.add_class::<future::NativeFuture>()?;
    m.add_class::<future::NativeAsCompleted>()?;
    m.add_class::<prefix::NativePrefixMap>()?;
    Ok(())
}
