//! The registry of task functions a worker can run.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use quarry_proto::{DataRef, TaskSpec};

/// An input of a running task, materialised as a local file by the
/// worker's shard cache.
#[derive(Clone, Debug)]
pub struct Shard {
    /// Local path of the whole object (read-only; do not modify).
    pub path: PathBuf,
    /// The reference it was fetched for; its `range`, if any, is the part
    /// of the file the task should read.
    pub data_ref: DataRef,
}

impl Shard {
    /// Reads the part of the shard the reference means (the whole file, or
    /// its byte range) into memory.
    pub fn read(&self) -> std::io::Result<Vec<u8>> {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = std::fs::File::open(&self.path)?;
        match self.data_ref.range {
            None => {
                let mut bytes = Vec::new();
                file.read_to_end(&mut bytes)?;
                Ok(bytes)
            }
            Some(range) => {
                file.seek(SeekFrom::Start(range.start))?;
                let mut bytes = Vec::new();
                file.take(range.len()).read_to_end(&mut bytes)?;
                Ok(bytes)
            }
        }
    }
}

/// What a task function sees besides its arguments.
#[derive(Clone, Debug)]
pub struct TaskContext {
    /// The task as submitted.
    pub task: Arc<TaskSpec>,
    /// Which attempt this is (1-based).
    pub attempt: u32,
    /// The task's per-task inputs, in order.
    pub inputs: Vec<Shard>,
    /// The job's broadcast inputs, by name.
    pub broadcast: HashMap<String, Shard>,
    /// Where this attempt's scratch directory goes; see
    /// [`TaskContext::scratch`].
    pub scratch: PathBuf,
}

impl TaskContext {
    /// The broadcast input called `name`.
    pub fn broadcast(&self, name: &str) -> Result<&Shard, String> {
        self.broadcast
            .get(name)
            .ok_or_else(|| format!("the job has no broadcast input named `{name}`"))
    }

    /// This attempt's scratch directory, created on first use and removed
    /// when the attempt ends.
    pub fn scratch(&self) -> std::io::Result<&Path> {
        std::fs::create_dir_all(&self.scratch)?;
        Ok(&self.scratch)
    }
}

/// The type-erased form of a registered function: MessagePack arguments in,
/// MessagePack result out, or an error text.
pub(crate) type ErasedFn = dyn Fn(&TaskContext, &[u8]) -> Result<Vec<u8>, String> + Send + Sync;

/// Task functions by name. A worker binary builds one and hands it to
/// [`crate::run_worker`]; the stock `quarry worker` uses
/// [`Registry::with_builtins`].
///
/// ```
/// use quarry_worker::Registry;
/// let registry = Registry::new().task("double", |x: i64| x * 2);
/// assert!(registry.names().contains(&"double".to_string()));
/// ```
#[derive(Clone, Default)]
pub struct Registry {
    functions: HashMap<String, Arc<ErasedFn>>,
    /// Functions whose large results are stored as MessagePack.
    binary_results: HashSet<String>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Registers a function of its arguments alone. Arguments and results
    /// are any serde types; a panic fails the task, not the worker.
    pub fn task<A, R, F>(self, name: &str, f: F) -> Registry
    where
        A: DeserializeOwned,
        R: Serialize,
        F: Fn(A) -> R + Send + Sync + 'static,
    {
        self.task_with_context(name, move |_: &TaskContext, args: A| {
            Ok::<R, std::convert::Infallible>(f(args))
        })
    }

    /// Registers a fallible function that also sees the [`TaskContext`]
    /// (its input shards, broadcast inputs and scratch directory). An `Err`
    /// fails the attempt with the error's text; the retry policy applies.
    pub fn task_with_context<A, R, E, F>(mut self, name: &str, f: F) -> Registry
    where
        A: DeserializeOwned,
        R: Serialize,
        E: Display,
        F: Fn(&TaskContext, A) -> Result<R, E> + Send + Sync + 'static,
    {
        let erased = move |ctx: &TaskContext, bytes: &[u8]| -> Result<Vec<u8>, String> {
            let args: A = rmp_serde::from_slice(bytes)
                .map_err(|e| format!("cannot decode the task's arguments: {e}"))?;
            let result = f(ctx, args).map_err(|e| e.to_string())?;
            rmp_serde::to_vec_named(&result).map_err(|e| format!("cannot encode the result: {e}"))
        };
        self.functions.insert(name.to_string(), Arc::new(erased));
        self
    }

    /// Stores the large results of function `name` (those over the inline
    /// cap, kept in the job's output prefix) as MessagePack
    /// (`_result.msgpack`), exactly as encoded, instead of JSON
    /// (`_result.json`). For results JSON cannot hold faithfully: raw
    /// bytes, NaN or infinite floats, maps keyed by other than strings.
    pub fn binary_results(mut self, name: &str) -> Registry {
        self.binary_results.insert(name.to_string());
        self
    }

    /// Whether function `name` asked for binary results.
    pub(crate) fn wants_binary(&self, name: &str) -> bool {
        self.binary_results.contains(name)
    }

    /// Registered names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.functions.keys().cloned().collect();
        names.sort();
        names
    }

    pub(crate) fn get(&self, name: &str) -> Option<Arc<ErasedFn>> {
        self.functions.get(name).cloned()
    }

    /// Adds the built-in functions of the stock `quarry worker`:
    ///
    /// - `noop`: ignores its argument, returns nothing (benchmarks).
    /// - `sleep_ms`: sleeps that many milliseconds, returns them.
    /// - `inc`: the seed's `inc`: adds 0..10,000,000 to `x` in a loop.
    /// - `echo`: returns its argument unchanged.
    /// - `fail`: fails with its argument as the error text (diagnostics).
    /// - `panic`: panics with its argument as the message (diagnostics).
    /// - `wordcount`: counts words in each input shard, returning
    ///   `{word: count}` (the prefix word-count example).
    /// - `linecount`: counts the lines of its input shards (`wc -l`).
    pub fn with_builtins(self) -> Registry {
        crate::builtins::register(self)
    }
}
