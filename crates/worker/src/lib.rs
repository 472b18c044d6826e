//! The quarry worker.
//!
//! It owns the worker process's runtime: the handshake with the scheduler,
//! the queue of assigned tasks and the slots that run them, heartbeats,
//! cache inventory reports, the [`Registry`] of task functions (with the
//! stock built-ins), and the executors: registered Rust functions (a panic
//! or error fails the task, not the worker), command tasks (through
//! `quarry-command`) and Python tasks on a warm interpreter per slot
//! (`python.rs`, `interpreter.rs`). Inputs are staged through the shard cache
//! (`quarry-cache`); outputs, logs and large results are written to the
//! job's output prefix (`quarry-store`). With a metrics address it serves
//! Prometheus `/metrics` (cache, downloads, slots).
//!
//! It must not make placement or retry decisions (the scheduler does) and
//! never talks to clients directly.

#![warn(missing_docs)]

mod builtins;
mod command;
mod execute;
mod inputs;
mod interpreter;
mod metrics;
mod python;
mod registry;
mod runtime;
mod slots;

pub use builtins::inc;
pub use python::{PythonCall, PYTHON_FUNCTION};
pub use registry::{Registry, Shard, TaskContext};
pub use runtime::{
    machine_host_name, run_worker, WorkerError, WorkerOptions, DEFAULT_DRAIN_GRACE,
    DEFAULT_PREFETCH_BYTES, DEFAULT_PYTHON,
};
