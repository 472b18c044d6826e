//! The process's tokio runtime, and waiting on it from Python threads
//! without holding the GIL.

use pyo3::prelude::*;
use std::future::Future;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How often a long wait wakes up to let Python handle signals (Ctrl-C).
pub(crate) const SIGNAL_CHECK: Duration = Duration::from_millis(200);

/// The runtime every client, future and embedded cluster of this process
/// runs on.
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("quarry-python")
            .enable_all()
            .build()
            .expect("cannot start the tokio runtime")
    })
}

/// Runs `future` to its end with the GIL released, waking every
/// [`SIGNAL_CHECK`] so that a Ctrl-C raises `KeyboardInterrupt` (which
/// drops the future). `future` must be cancel-safe at those points: it is
/// polled again where it stood.
pub(crate) fn block_on<F>(py: Python<'_>, future: F) -> PyResult<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    let mut future = Box::pin(future);
    loop {
        let polled = py.detach(|| {
            runtime().block_on(async {
                tokio::time::timeout(SIGNAL_CHECK, future.as_mut())
                    .await
                    .ok()
            })
        });
        if let Some(output) = polled {
            return Ok(output);
        }
        py.check_signals()?;
    }
}

/// A deadline `timeout` seconds from now; `None` waits without end.
pub(crate) fn deadline(timeout: Option<f64>) -> PyResult<Option<Instant>> {
    match timeout {
        None => Ok(None),
        Some(t) if t.is_finite() && t >= 0.0 => {
            Ok(Some(Instant::now() + Duration::from_secs_f64(t)))
        }
        Some(t) => Err(pyo3::exceptions::PyValueError::new_err(format!(
            "timeout must be a non-negative number of seconds, not {t}"
        ))),
    }
}
