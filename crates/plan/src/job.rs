//! Planning a job file: its settings, then its tasks.

use crate::error::PlanError;
use crate::prefix::{plan_prefix, Chunking, PrefixPlan};
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};
use quarry_command::COMMAND_EXECUTOR;
use quarry_job::{JobSpec, MapOver, Run, TaskDescription};
use quarry_proto::{DataRef, TaskId, TaskSpec};
use quarry_store::object_store::{self, ObjectStoreExt, PutPayload};
use quarry_store::{StoreError, StoreResolver};
use std::sync::Arc;

/// Where the write check of an output prefix goes (and is removed from).
const WRITE_CHECK: &str = "_quarry/.write-check";

/// A task as planned: everything but its id, which the client allocates.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedTask {
    /// Its key (names its output directory and manifest row).
    pub key: String,
    /// The registered function, or the command executor.
    pub function: String,
    /// Its arguments, MessagePack.
    pub args: Vec<u8>,
    /// Its parameters as a JSON object; empty if none.
    pub params_json: String,
    /// What it reads.
    pub inputs: Vec<DataRef>,
    /// The hosts holding most of its input bytes, most first (HDFS
    /// replicas, from the listing; empty for other stores).
    pub replica_hosts: Vec<String>,
    /// Retries after a failed attempt.
    pub retries: u32,
    /// Kill an attempt after this many milliseconds.
    pub timeout_ms: Option<u64>,
    /// Higher runs first.
    pub priority: i32,
    /// Worker slots one attempt occupies.
    pub cpus: u32,
}

impl PlannedTask {
    /// A task of `function` with `args` and nothing else set.
    pub fn new(key: String, function: &str, args: Vec<u8>) -> PlannedTask {
        PlannedTask {
            key,
            function: function.to_string(),
            args,
            params_json: String::new(),
            inputs: Vec::new(),
            replica_hosts: Vec::new(),
            retries: 0,
            timeout_ms: None,
            priority: 0,
            cpus: 1,
        }
    }

    /// The protocol task, with id `id`.
    pub fn into_spec(self, id: TaskId) -> TaskSpec {
        let mut spec = TaskSpec::new(id, self.function, self.args);
        spec.key = self.key;
        spec.params_json = self.params_json;
        spec.inputs = self.inputs;
        spec.replica_hosts = self.replica_hosts;
        spec.retries = self.retries;
        spec.timeout_ms = self.timeout_ms;
        spec.priority = self.priority;
        spec.cpus = self.cpus;
        spec
    }
}

/// A job file planned: its settings and its tasks.
pub struct JobPlan {
    /// The job name.
    pub name: String,
    /// Broadcast inputs, each pinned to the one object it names.
    pub broadcast: Vec<(String, DataRef)>,
    /// The output prefix, checked writable.
    pub output: Option<String>,
    /// The executor context (a command job's template).
    pub context: Vec<u8>,
    /// Stop the job after this many tasks failed for good.
    pub max_fails: Option<u64>,
    /// How many tasks there are, when known without listing.
    pub task_count: Option<u64>,
    /// The tasks, produced as they are consumed.
    pub tasks: BoxStream<'static, Result<PlannedTask, PlanError>>,
}

impl std::fmt::Debug for JobPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobPlan")
            .field("name", &self.name)
            .field("broadcast", &self.broadcast)
            .field("output", &self.output)
            .field("task_count", &self.task_count)
            .finish_non_exhaustive()
    }
}

/// Plans a job file. Before any task exists it pins the broadcast inputs,
/// checks that the output prefix can be written (a missing bucket or
/// missing rights fail here, not after the tasks ran) and, for a prefix
/// job, that the prefix lists at least one object.
pub async fn plan_job(store: &StoreResolver, spec: &JobSpec) -> Result<JobPlan, PlanError> {
    let broadcast = pin_broadcast(store, spec).await?;
    if let Some(output) = &spec.output {
        check_output(store, output).await?;
    }
    if let Run::Op(op) = &spec.run {
        return Err(PlanError::UnknownOp {
            name: op.name.clone(),
        });
    }
    let spec = Arc::new(spec.clone());
    let tasks = match &spec.map_over {
        MapOver::Prefix(input) => {
            let plan = PrefixPlan {
                url: input.prefix.clone(),
                chunking: input.chunk_size.map(|size| Chunking {
                    size,
                    split: input.split,
                }),
            };
            let mut inputs = plan_prefix(store, &plan);
            // A prefix with nothing under it is a mistake worth stopping
            // for, before a job exists.
            let Some(first) = inputs.next().await else {
                return Err(PlanError::NoObjects {
                    prefix: input.prefix.clone(),
                });
            };
            let (spec, store) = (Arc::clone(&spec), store.clone());
            stream::once(async move { first })
                .chain(inputs)
                .enumerate()
                .map(move |(index, planned)| {
                    let planned = planned?;
                    let description = TaskDescription {
                        index: index as u64,
                        key: planned.key,
                        params: Default::default(),
                    };
                    let mut task = planned_task(&spec, description)?;
                    task.inputs = vec![planned.input];
                    task.replica_hosts = store.replica_hosts(&task.inputs);
                    Ok(task)
                })
                .boxed()
        }
        _ => {
            let count = spec.task_count().unwrap_or(0);
            let spec = Arc::clone(&spec);
            stream::iter(0..count)
                .map(move |index| {
                    let description = spec.task_at(index).expect("index within the count");
                    planned_task(&spec, description)
                })
                .boxed()
        }
    };
    Ok(JobPlan {
        name: spec.name.clone(),
        broadcast,
        output: spec.output.clone(),
        context: spec
            .command_template()
            .map(|template| template.to_context())
            .unwrap_or_default(),
        max_fails: spec.max_fails,
        task_count: spec.task_count(),
        tasks,
    })
}

/// One task of the job, from its description.
fn planned_task(spec: &JobSpec, task: TaskDescription) -> Result<PlannedTask, PlanError> {
    let (function, args) = match &spec.run {
        Run::Function(call) => {
            let args = spec.function_args(&task).unwrap_or_default();
            let bytes = rmp_serde::to_vec_named(&args).map_err(|e| PlanError::Encode {
                key: task.key.clone(),
                reason: e.to_string(),
            })?;
            (call.name.as_str(), bytes)
        }
        Run::Command(_) => (COMMAND_EXECUTOR, Vec::new()),
        Run::Op(op) => {
            return Err(PlanError::UnknownOp {
                name: op.name.clone(),
            })
        }
    };
    let params_json = if task.params.is_empty() {
        String::new()
    } else {
        task.params_json()
    };
    let mut planned = PlannedTask::new(task.key, function, args);
    planned.params_json = params_json;
    planned.retries = spec.retries;
    planned.timeout_ms = spec.timeout.map(|t| t.as_millis() as u64);
    planned.priority = spec.priority;
    planned.cpus = spec.resources.cpus;
    Ok(planned)
}

/// The broadcast inputs of a job, each pinned to the one object it names.
pub async fn pin_broadcast(
    store: &StoreResolver,
    spec: &JobSpec,
) -> Result<Vec<(String, DataRef)>, PlanError> {
    let mut pinned = Vec::with_capacity(spec.inputs.len());
    for input in &spec.inputs {
        let found: Vec<DataRef> = store
            .list_refs(&input.url)
            .take(2)
            .try_collect()
            .await
            .map_err(|source| PlanError::Broadcast {
                name: input.name.clone(),
                url: input.url.clone(),
                source: Box::new(source),
            })?;
        let same = |r: &DataRef| {
            r.url.trim_end_matches('/') == input.url.trim_end_matches('/')
                || store
                    .resolve(&input.url)
                    .is_ok_and(|location| location.url() == r.url)
        };
        match found.as_slice() {
            [] => {
                return Err(PlanError::BroadcastMissing {
                    name: input.name.clone(),
                    url: input.url.clone(),
                })
            }
            [one] if same(one) => pinned.push((input.name.clone(), one.clone())),
            _ => {
                return Err(PlanError::BroadcastIsPrefix {
                    name: input.name.clone(),
                    url: input.url.clone(),
                })
            }
        }
    }
    Ok(pinned)
}

/// Checks that `output` can be written: writes and removes a small object
/// under it (`_quarry/.write-check`).
pub async fn check_output(store: &StoreResolver, output: &str) -> Result<(), PlanError> {
    let fail = |source: StoreError| PlanError::Output {
        output: output.to_string(),
        source: Box::new(source),
    };
    let url = format!("{}/{WRITE_CHECK}", output.trim_end_matches('/'));
    let location = store.resolve(&url).map_err(fail)?;
    let store_error = |source: object_store::Error| fail(StoreError::from_store(&url, source));
    location
        .store
        .put(&location.path, PutPayload::from_static(b""))
        .await
        .map_err(store_error)?;
    match location.store.delete(&location.path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(source) => Err(store_error(source)),
    }
}
