//! The registry of task functions a worker can run.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use quarry_proto::{DataRef, ResultFormat, TaskSpec};

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

    /// Registers a reducer for a job's reduce stage (YAML `reduce:`,
    /// `Client::reduce_outcomes`): a function that combines values of one
    /// type into one. It must be associative and commutative, because a
    /// tree of reduce tasks applies it to groups of values in no particular
    /// order, and its result is combined again with others.
    ///
    /// A reduce task's inline arguments are the encoded values that fit
    /// (a MessagePack array of them); its inputs are the values stored as
    /// `_result.json` or `_result.msgpack` (or spilled by the client),
    /// read here from the worker's cache.
    pub fn reducer<T, E, F>(self, name: &str, f: F) -> Registry
    where
        T: DeserializeOwned + Serialize,
        E: Display,
        F: Fn(Vec<T>) -> Result<T, E> + Send + Sync + 'static,
    {
        self.task_with_context(
            name,
            move |ctx: &TaskContext, inline: Vec<serde_bytes::ByteBuf>| {
                f(reduce_values(ctx, inline)?).map_err(|e| e.to_string())
            },
        )
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
    /// - `merge_counts` (reducer): sums maps of numbers key by key, such as
    ///   the `wordcount` results of a job.
    /// - `sum` (reducer): sums numbers.
    pub fn with_builtins(self) -> Registry {
        crate::builtins::register(self)
    }
}

/// The values a reduce task combines: its inline ones, then those in its
/// input shards, each decoded as its file name says (JSON or MessagePack).
fn reduce_values<T: DeserializeOwned>(
    ctx: &TaskContext,
    inline: Vec<serde_bytes::ByteBuf>,
) -> Result<Vec<T>, String> {
    let mut values = Vec::with_capacity(inline.len() + ctx.inputs.len());
    for (i, bytes) in inline.iter().enumerate() {
        values.push(
            rmp_serde::from_slice(bytes)
                .map_err(|e| format!("cannot decode inline value {i} of the reduce: {e}"))?,
        );
    }
    for shard in &ctx.inputs {
        let url = &shard.data_ref.url;
        let bytes = shard
            .read()
            .map_err(|e| format!("cannot read {url}: {e}"))?;
        let value = match ResultFormat::of_url(url) {
            ResultFormat::Json => serde_json::from_slice(&bytes).map_err(|e| e.to_string()),
            ResultFormat::MessagePack => rmp_serde::from_slice(&bytes).map_err(|e| e.to_string()),
        };
        values.push(value.map_err(|e| format!("cannot decode the value in {url}: {e}"))?);
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quarry_proto::{Pin, TaskId};
    use std::collections::BTreeMap;

    fn shard(dir: &Path, name: &str, bytes: &[u8]) -> Shard {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        Shard {
            path,
            data_ref: DataRef {
                url: format!("memory://t/out/{name}"),
                pin: Pin::Unpinned,
                size: bytes.len() as u64,
                range: None,
            },
        }
    }

    #[test]
    fn a_reducer_combines_inline_values_with_stored_json_and_msgpack_ones() {
        let dir = tempfile::tempdir().unwrap();
        let counts = |pairs: &[(&str, u64)]| -> BTreeMap<String, u64> {
            pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect()
        };
        let inline = vec![serde_bytes::ByteBuf::from(
            rmp_serde::to_vec_named(&counts(&[("a", 1)])).unwrap(),
        )];
        let ctx = TaskContext {
            task: Arc::new(TaskSpec::new(TaskId(1), "merge", Vec::new())),
            attempt: 1,
            inputs: vec![
                shard(dir.path(), "_result.json", br#"{"a": 2, "b": 5}"#),
                shard(
                    dir.path(),
                    "spilled",
                    &rmp_serde::to_vec_named(&counts(&[("b", 1)])).unwrap(),
                ),
            ],
            broadcast: HashMap::new(),
            scratch: dir.path().join("scratch"),
        };
        let registry = Registry::new().reducer("merge", |maps: Vec<BTreeMap<String, u64>>| {
            let mut total = BTreeMap::new();
            for (k, n) in maps.into_iter().flatten() {
                *total.entry(k).or_insert(0) += n;
            }
            Ok::<_, String>(total)
        });
        let merge = registry.get("merge").unwrap();
        let result = merge(&ctx, &rmp_serde::to_vec(&inline).unwrap()).unwrap();
        let merged: BTreeMap<String, u64> = rmp_serde::from_slice(&result).unwrap();
        assert_eq!(merged, counts(&[("a", 3), ("b", 6)]));

        let garbage = shard(dir.path(), "_result.json", b"not json");
        let ctx = TaskContext {
            inputs: vec![garbage],
            ..ctx
        };
        let error = merge(&ctx, &rmp_serde::to_vec(&inline).unwrap()).unwrap_err();
        assert!(error.contains("memory://t/out/_result.json"), "{error}");
    }
}
