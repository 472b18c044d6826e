//! Futures as Python sees them: each task's outcome is awaited on the
//! runtime by a task of its own and kept here, so that `result()` can be
//! called any number of times, `done()` never blocks, and `as_completed`
//! hears of each completion.

use crate::runtime::{self, SIGNAL_CHECK};
use crate::{to_py_error, QuarryError, TaskFailed};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use quarry_client::{Client, ClientError, TaskFuture};
use quarry_proto::{TaskId, TaskOutcome, Value};
use serde_bytes::ByteBuf;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// How a task's value is handed to Python.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decode {
    /// A Python task: the pickled value, as `bytes`.
    Pickle,
    /// A Rust function's value, as JSON text.
    Json,
}

/// How a task ended.
enum Resolved {
    Ok(Value),
    Err(ClientError),
}

#[derive(Default)]
struct Slot {
    resolved: Option<Resolved>,
    /// `as_completed` iterators waiting for this future: (their index for
    /// it, their channel).
    watchers: Vec<(usize, mpsc::Sender<usize>)>,
}

/// A task's outcome once it is known, and who waits for it.
#[derive(Default)]
pub(crate) struct FutureState {
    slot: Mutex<Slot>,
    done: Condvar,
}

impl FutureState {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn resolve(&self, resolved: Resolved) {
        let mut slot = self.lock();
        slot.resolved = Some(resolved);
        for (index, watcher) in slot.watchers.drain(..) {
            let _ = watcher.send(index);
        }
        drop(slot);
        self.done.notify_all();
    }

    /// Tells `watcher` (with `index`) when this future is done: at once if
    /// it is.
    fn watch(&self, index: usize, watcher: mpsc::Sender<usize>) {
        let mut slot = self.lock();
        if slot.resolved.is_some() {
            let _ = watcher.send(index);
        } else {
            slot.watchers.push((index, watcher));
        }
    }
}

/// A submitted task (`quarry.Future` wraps it).
#[pyclass(frozen, module = "quarry._native")]
pub struct NativeFuture {
    id: TaskId,
    key: String,
    decode: Decode,
    state: Arc<FutureState>,
    client: Client,
}

impl NativeFuture {
    /// Starts awaiting `future` on the runtime.
    pub(crate) fn spawn<R: Send + 'static>(
        client: &Client,
        future: TaskFuture<R>,
        decode: Decode,
    ) -> NativeFuture {
        let state = Arc::new(FutureState::default());
        let id = future.id();
        let key = future.key().to_string();
        let waiter = state.clone();
        runtime::runtime().spawn(async move {
            let key = future.key().to_string();
            let resolved = match future.outcome().await {
                Ok(TaskOutcome::Ok(value)) => Resolved::Ok(value),
                Ok(TaskOutcome::Err(error)) => Resolved::Err(ClientError::Task {
                    key,
                    kind: error.kind,
                    message: error.message,
                }),
                Err(error) => Resolved::Err(error),
            };
            waiter.resolve(resolved);
        });
        NativeFuture {
            id,
            key,
            decode,
            state,
            client: client.clone(),
        }
    }

    /// Waits until the task is done or the deadline passes, the GIL
    /// released; `false` when the deadline passed first.
    fn wait_until(&self, py: Python<'_>, deadline: Option<Instant>) -> PyResult<bool> {
        loop {
            let done = py.detach(|| {
                let slot = self.state.lock();
                let wait = match deadline {
                    Some(d) => d
                        .saturating_duration_since(Instant::now())
                        .min(SIGNAL_CHECK),
                    None => SIGNAL_CHECK,
                };
                let (slot, _) = self
                    .state
                    .done
                    .wait_timeout_while(slot, wait, |s| s.resolved.is_none())
                    .unwrap_or_else(PoisonError::into_inner);
                slot.resolved.is_some()
            });
            if done {
                return Ok(true);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
            py.check_signals()?;
        }
    }
}

#[pymethods]
impl NativeFuture {
    /// The task's key.
    #[getter]
    fn key(&self) -> &str {
        &self.key
    }

    /// The task's id.
    #[getter]
    fn id(&self) -> u64 {
        self.id.0
    }

    /// Whether the task ended (with a value or an error).
    fn done(&self) -> bool {
        self.state.lock().resolved.is_some()
    }

    /// Waits up to `timeout` seconds (forever with `None`); returns whether
    /// the task ended.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        self.wait_until(py, runtime::deadline(timeout)?)
    }

    /// The task's value: `bytes` (a pickle) for a Python task, JSON text for
    /// a Rust function. Raises `TaskFailed` when the task failed, and
    /// `TimeoutError` when it did not end within `timeout` seconds.
    #[pyo3(signature = (timeout=None))]
    fn result<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, PyAny>> {
        if !self.wait_until(py, runtime::deadline(timeout)?)? {
            return Err(pyo3::exceptions::PyTimeoutError::new_err(format!(
                "task {} did not end within {} s",
                self.key,
                timeout.unwrap_or_default()
            )));
        }
        let value = match &self.state.lock().resolved {
            Some(Resolved::Ok(value)) => value.clone(),
            Some(Resolved::Err(ClientError::Task { key, kind, message })) => {
                return Err(TaskFailed::new_err((
                    key.clone(),
                    format!("{kind:?}"),
                    message.clone(),
                )))
            }
            Some(Resolved::Err(other)) => return Err(QuarryError::new_err(other.to_string())),
            None => unreachable!("waited until resolved"),
        };
        let client = self.client.clone();
        match self.decode {
            Decode::Pickle => {
                let bytes: ByteBuf = match &value {
                    Value::Inline(bytes) => rmp_serde::from_slice(bytes).map_err(|e| {
                        QuarryError::new_err(format!("cannot decode the result: {e}"))
                    })?,
                    Value::Ref(_) => {
                        runtime::block_on(py, async move { client.value(&value).await })?
                            .map_err(to_py_error)?
                    }
                };
                Ok(PyBytes::new(py, &bytes).into_any())
            }
            Decode::Json => {
                let json: serde_json::Value =
                    runtime::block_on(py, async move { client.value(&value).await })?
                        .map_err(to_py_error)?;
                Ok(pyo3::types::PyString::new(py, &json.to_string()).into_any())
            }
        }
    }

    /// Asks the scheduler to cancel the task (a queued task never runs; a
    /// running one is stopped). Returns at once.
    fn cancel(&self) -> PyResult<()> {
        self.client
            .cancel_tasks(vec![self.id])
            .map(drop)
            .map_err(to_py_error)
    }
}

/// Yields the indexes of futures in the order they end, each once, then
/// stops (`quarry.as_completed` wraps it).
#[pyclass(frozen, module = "quarry._native")]
pub struct NativeAsCompleted {
    receiver: Mutex<mpsc::Receiver<usize>>,
    remaining: Mutex<usize>,
}

#[pymethods]
impl NativeAsCompleted {
    /// Watches `futures`.
    #[new]
    fn new(futures: Vec<PyRef<'_, NativeFuture>>) -> NativeAsCompleted {
        let (sender, receiver) = mpsc::channel();
        for (index, future) in futures.iter().enumerate() {
            future.state.watch(index, sender.clone());
        }
        NativeAsCompleted {
            receiver: Mutex::new(receiver),
            remaining: Mutex::new(futures.len()),
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<usize>> {
        {
            let remaining = self
                .remaining
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if *remaining == 0 {
                return Ok(None);
            }
        }
        loop {
            let next = py.detach(|| {
                self.receiver
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .recv_timeout(SIGNAL_CHECK)
            });
            match next {
                Ok(index) => {
                    *self
                        .remaining
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) -= 1;
                    return Ok(Some(index));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => py.check_signals()?,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(QuarryError::new_err(
                        "the futures were dropped before they ended",
                    ))
                }
            }
        }
    }
}
