//! The reduce stage: map results combined by a registered reducer in a
//! tree of tasks ([`ReduceTree`]) that starts as soon as `fan_in` results
//! are in, so no task ever combines more than `fan_in` values however many
//! maps there were.
//!
//! A reduce task is an ordinary task of the map's job: its function is the
//! reducer, its inline arguments are the inline values it combines (a
//! MessagePack array of encoded values) and its inputs are the values that
//! are stored (`_result.json` or `_result.msgpack`), so the scheduler
//! places it where those are cached. Workers run it through
//! `Registry::reducer`.

mod api;
mod tree;

pub use tree::{ReduceGroup, ReduceStep, ReduceTree};

use crate::client::Client;
use crate::error::ClientError;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, Stream, StreamExt};
use quarry_proto::{msgpack_to_json, DataRef, JobId, ResultFormat, TaskOutcome, TaskSpec, Value};
use quarry_store::PutSource;
use serde::de::IgnoredAny;

/// The fan-in when none is given: 100,000 maps take three levels.
pub const DEFAULT_FAN_IN: usize = 64;

/// How a job's results are reduced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReduceOptions {
    /// The registered reducer: it gets a list of values and returns their
    /// combination (associative and commutative: values come in no
    /// particular order), such as the built-in `merge_counts` or `sum`.
    pub function: String,
    /// Most values one reduce task combines (at least 2).
    pub fan_in: usize,
    /// How many times a failed reduce task is retried.
    pub retries: u32,
}

impl ReduceOptions {
    /// Reduces with `function`, the default fan-in and no retries.
    pub fn new(function: impl Into<String>) -> ReduceOptions {
        ReduceOptions {
            function: function.into(),
            fan_in: DEFAULT_FAN_IN,
            retries: 0,
        }
    }
}

/// A finished map task, as the reduce stage takes it.
#[derive(Debug)]
pub struct MapOutcome {
    /// The task's key.
    pub key: String,
    /// How it ended.
    pub outcome: Result<TaskOutcome, ClientError>,
}

/// The object a job's reduced result is written to, under its output
/// prefix.
pub const JOB_RESULT_FILE: &str = "_result.json";

/// A reduce task on its way: the level of its value, its key, its outcome.
type RunningReduce = BoxFuture<'static, (u32, String, Result<TaskOutcome, ClientError>)>;

impl Client {
    /// Reduces the outcomes of job `job`'s map tasks with
    /// `options.function` in a tree of reduce tasks submitted to the same
    /// job, and returns the final value. With an `output` prefix the value
    /// is also written, as JSON, to `OUTPUT/_result.json` before this
    /// returns.
    ///
    /// The reduction needs every map result: the first map or reduce task
    /// that fails for good fails it, naming the task (the caller decides
    /// whether to cancel the job). Inline values that together exceed the
    /// inline cap of one task's arguments are put under `output`
    /// (`OUTPUT/_reduce/spill/`), or into the staging store without one.
    /// The job is not sealed here: seal it once this returns.
    pub async fn reduce_outcomes<S>(
        &self,
        job: JobId,
        outcomes: S,
        options: &ReduceOptions,
        output: Option<&str>,
    ) -> Result<Value, ClientError>
    where
        S: Stream<Item = MapOutcome> + Send,
    {
        let mut tree = ReduceTree::new(options.fan_in);
        let mut reducers: FuturesUnordered<RunningReduce> = FuturesUnordered::new();
        let mut outcomes = std::pin::pin!(outcomes.fuse());
        let mut maps_done = false;
        loop {
            let steps = tokio::select! {
                next = outcomes.next(), if !maps_done => match next {
                    Some(map) => {
                        tree.map_planned();
                        tree.mapped(succeeded(&map.key, map.outcome)?)
                    }
                    None => {
                        maps_done = true;
                        tree.all_planned()
                    }
                },
                Some((level, key, outcome)) = reducers.next(), if !reducers.is_empty() => {
                    tree.reduced(level, succeeded(&key, outcome)?)
                }
                else => {
                    // The tree always ends in a final reduction once the
                    // maps are done, so this is a bug, not a state to wait
                    // in.
                    return Err(ClientError::Codec(
                        "the reduce tree stopped without a final value".into(),
                    ));
                }
            };
            for step in steps {
                match step {
                    ReduceStep::Run(group) => {
                        reducers.push(self.start_reduce(job, group, options, output).await?)
                    }
                    ReduceStep::Done(value) => {
                        if let Some(output) = output {
                            self.write_job_result(output, &value).await?;
                        }
                        return Ok(value);
                    }
                }
            }
        }
    }

    /// Submits the reduce task of `group`.
    async fn start_reduce(
        &self,
        job: JobId,
        group: ReduceGroup<Value>,
        options: &ReduceOptions,
        output: Option<&str>,
    ) -> Result<RunningReduce, ClientError> {
        let key = group.key();
        let level = group.level;
        let cap = self.limits().max_inline_bytes;
        let mut inline: Vec<serde_bytes::ByteBuf> = Vec::new();
        let mut inline_bytes = 0usize;
        let mut inputs: Vec<DataRef> = Vec::new();
        for value in group.values {
            match value {
                // Room for the array and the binary headers around them.
                Value::Inline(bytes)
                    if inline_bytes + bytes.len() + 16 <= cap.saturating_sub(16) =>
                {
                    inline_bytes += bytes.len() + 16;
                    inline.push(serde_bytes::ByteBuf::from(bytes));
                }
                Value::Inline(bytes) => inputs.push(self.spill(bytes, output).await?),
                Value::Ref(data_ref) => inputs.push(data_ref),
            }
        }
        let args = rmp_serde::to_vec(&inline).map_err(|e| ClientError::Codec(e.to_string()))?;
        let mut spec = TaskSpec::new(self.next_task_id(), &options.function, args);
        spec.key = key.clone();
        spec.inputs = inputs;
        spec.retries = options.retries;
        // Reducers unblock the rest of the tree: run them before maps.
        spec.priority = i32::try_from(level).unwrap_or(i32::MAX);
        let future = self
            .submit_specs::<IgnoredAny>(job, vec![spec])?
            .remove(0)
            .keep_result();
        Ok(Box::pin(
            async move { (level, key, future.outcome().await) },
        ))
    }

    /// Puts an inline value that does not fit in a reduce task's arguments
    /// where the task can read it.
    async fn spill(&self, bytes: Vec<u8>, output: Option<&str>) -> Result<DataRef, ClientError> {
        match output {
            Some(output) => {
                let prefix = format!("{}/_reduce/spill", output.trim_end_matches('/'));
                Ok(self
                    .inner
                    .store
                    .put_content_addressed(&prefix, PutSource::Bytes(bytes.into()))
                    .await?)
            }
            None => self.put_bytes(bytes).await,
        }
    }

    /// Writes the job's reduced value to `OUTPUT/_result.json`: as it is
    /// when it is stored as JSON already, else rendered from MessagePack.
    async fn write_job_result(&self, output: &str, value: &Value) -> Result<(), ClientError> {
        let (bytes, format) = match value {
            Value::Inline(bytes) => (Bytes::copy_from_slice(bytes), ResultFormat::MessagePack),
            Value::Ref(data_ref) => (
                self.inner.store.get_pinned(data_ref).await?.bytes().await?,
                ResultFormat::of_url(&data_ref.url),
            ),
        };
        let json = match format {
            ResultFormat::Json => bytes,
            ResultFormat::MessagePack => {
                let json =
                    msgpack_to_json(&bytes).map_err(|e| ClientError::Codec(e.to_string()))?;
                serde_json::to_vec(&json)
                    .map_err(|e| ClientError::Codec(e.to_string()))?
                    .into()
            }
        };
        let url = format!("{}/{JOB_RESULT_FILE}", output.trim_end_matches('/'));
        self.inner.store.put_object(&url, json).await?;
        Ok(())
    }
}

/// The value of a task that succeeded; the task's error otherwise.
fn succeeded(key: &str, outcome: Result<TaskOutcome, ClientError>) -> Result<Value, ClientError> {
    match outcome? {
        TaskOutcome::Ok(value) => Ok(value),
        TaskOutcome::Err(error) => Err(ClientError::task(key, error)),
    }
}
