//! Turning a validated job file into a submitted, sealed quarry job.

use anyhow::{bail, Context, Result};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use quarry_client::{Client, Job, JobOptions, TaskFuture};
use quarry_command::COMMAND_EXECUTOR;
use quarry_job::{JobSpec, MapOver, Run, TaskDescription};
use quarry_proto::{DataRef, JobId, TaskSpec};
use quarry_store::{StoreError, StoreResolver};
use serde::de::IgnoredAny;

/// Objects listed (and tasks built) per submission batch.
const BATCH: usize = 10_000;

/// A job submitted and sealed: the scheduler runs it to the end whether or
/// not this process stays.
pub struct SubmittedJob {
    /// Its id.
    pub id: JobId,
    /// Its name.
    pub name: String,
    /// How many tasks were submitted.
    pub tasks: u64,
    /// Its output prefix, if any.
    pub output: Option<String>,
    /// Dropping a task future releases its result on the scheduler, which
    /// would empty `quarry results` and the manifest: these stay alive
    /// until the caller decides (see [`SubmittedJob::leave_results_on_scheduler`]).
    futures: Vec<TaskFuture<IgnoredAny>>,
}

impl SubmittedJob {
    /// Ends this process's interest in the job without releasing its
    /// results: they belong to the job (for `quarry results` and the
    /// manifest), not to the client that submitted it. Used by
    /// `quarry submit`, whose process exits while the scheduler keeps the
    /// job; the futures' memory goes with the process.
    pub fn leave_results_on_scheduler(self) {
        std::mem::forget(self.futures);
    }
}

/// The broadcast inputs of a job, each pinned to the one object it names.
pub async fn pin_broadcast(
    store: &StoreResolver,
    spec: &JobSpec,
) -> Result<Vec<(String, DataRef)>> {
    let mut pinned = Vec::with_capacity(spec.inputs.len());
    for input in &spec.inputs {
        let found: Vec<DataRef> = store
            .list_refs(&input.url)
            .take(2)
            .try_collect()
            .await
            .with_context(|| {
                format!(
                    "cannot read broadcast input `{}` ({})",
                    input.name, input.url
                )
            })?;
        match found.as_slice() {
            [] => bail!(
                "broadcast input `{}` ({}) does not exist",
                input.name,
                input.url
            ),
            [one] if one.url.trim_end_matches('/') == input.url.trim_end_matches('/') => {
                pinned.push((input.name.clone(), one.clone()))
            }
            _ => bail!(
                "broadcast input `{}` ({}) is a prefix holding other objects; a broadcast \
                 input names exactly one object",
                input.name,
                input.url
            ),
        }
    }
    Ok(pinned)
}

/// The objects under a prefix job's prefix, in batches.
pub struct PrefixListing {
    prefix: String,
    stream: BoxStream<'static, Result<DataRef, StoreError>>,
}

impl PrefixListing {
    /// Starts listing (the store is asked page by page as batches are
    /// taken).
    pub fn new(store: &StoreResolver, prefix: &str) -> PrefixListing {
        PrefixListing {
            prefix: prefix.to_owned(),
            stream: store.list_refs(prefix),
        }
    }

    /// Up to `n` more objects; empty at the end.
    pub async fn next_batch(&mut self, n: usize) -> Result<Vec<DataRef>> {
        let mut batch = Vec::with_capacity(n.min(BATCH));
        while batch.len() < n {
            match self.stream.next().await {
                Some(item) => {
                    batch.push(item.with_context(|| format!("cannot list {}", self.prefix))?)
                }
                None => break,
            }
        }
        Ok(batch)
    }
}

/// Builds the protocol task for one task of the job.
pub fn task_spec(job: &Job, spec: &JobSpec, task: TaskDescription) -> Result<TaskSpec> {
    let (function, args) = match &spec.run {
        Run::Function(call) => {
            let args = spec.function_args(&task).unwrap_or_default();
            let bytes = rmp_serde::to_vec_named(&args)
                .with_context(|| format!("cannot encode the arguments of task {}", task.key))?;
            (call.name.as_str(), bytes)
        }
        Run::Command(_) => (COMMAND_EXECUTOR, Vec::new()),
        Run::Op(op) => bail!("no built-in op named `{}`", op.name),
    };
    let mut spec_out = job.new_task(function, args);
    spec_out.params_json = if task.params.is_empty() {
        String::new()
    } else {
        task.params_json()
    };
    spec_out.key = task.key;
    spec_out.inputs = task.input.into_iter().collect();
    spec_out.retries = spec.retries;
    spec_out.timeout_ms = spec.timeout.map(|t| t.as_millis() as u64);
    spec_out.priority = spec.priority;
    spec_out.cpus = spec.resources.cpus;
    Ok(spec_out)
}

/// Lists inputs, opens the job, submits every task in batches and seals
/// it, then checks that the scheduler holds all of them. `submitted` is
/// called with the running count after each batch.
pub async fn submit_job(
    client: &Client,
    store: &StoreResolver,
    spec: &JobSpec,
    mut submitted: impl FnMut(u64),
) -> Result<SubmittedJob> {
    let broadcast = pin_broadcast(store, spec).await?;
    // A prefix with nothing under it is a mistake worth stopping for,
    // before a job exists.
    let mut listing = match &spec.map_over {
        MapOver::Prefix(input) => {
            let mut listing = PrefixListing::new(store, &input.prefix);
            let first = listing.next_batch(BATCH).await?;
            if first.is_empty() {
                bail!("no object matches the input prefix {}", input.prefix);
            }
            Some((listing, first))
        }
        _ => None,
    };
    let context = spec
        .command_template()
        .map(|template| template.to_context())
        .unwrap_or_default();
    let job = client.open_job(JobOptions {
        name: spec.name.clone(),
        broadcast,
        output: spec.output.clone(),
        context,
        max_fails: spec.max_fails,
    })?;
    let result = submit_tasks(&job, spec, store, listing.as_mut(), &mut submitted).await;
    let futures = match result {
        Ok(futures) => futures,
        Err(error) => {
            // Half a job is no job: stop what was submitted.
            if let Ok(answer) = client.cancel_job(job.id()) {
                let _ = answer.await;
            }
            return Err(error);
        }
    };
    job.seal()?.await?;
    let tasks = futures.len() as u64;
    // The seal was carried out after every submission before it, so the
    // count is final: a refused submission shows as missing tasks.
    let accepted = client
        .jobs()
        .await?
        .into_iter()
        .find(|j| j.id == job.id())
        .map_or(0, |j| j.counts.total);
    if accepted != tasks {
        bail!(
            "the scheduler accepted {accepted} of the {tasks} tasks of job {}",
            job.id()
        );
    }
    Ok(SubmittedJob {
        id: job.id(),
        name: spec.name.clone(),
        tasks,
        output: spec.output.clone(),
        futures,
    })
}

async fn submit_tasks(
    job: &Job,
    spec: &JobSpec,
    store: &StoreResolver,
    listing: Option<&mut (PrefixListing, Vec<DataRef>)>,
    submitted: &mut impl FnMut(u64),
) -> Result<Vec<TaskFuture<IgnoredAny>>> {
    let mut futures = Vec::new();
    let mut send =
        |batch: Vec<TaskSpec>, futures: &mut Vec<TaskFuture<IgnoredAny>>| -> Result<()> {
            futures.extend(job.submit(batch)?);
            submitted(futures.len() as u64);
            Ok(())
        };
    match listing {
        Some((listing, first)) => {
            let mut objects = std::mem::take(first);
            while !objects.is_empty() {
                let batch = spec
                    .expand_listing(objects)?
                    .map(|task| {
                        let mut task = task_spec(job, spec, task)?;
                        task.replica_hosts = store.replica_hosts(&task.inputs);
                        Ok(task)
                    })
                    .collect::<Result<Vec<_>>>()?;
                send(batch, &mut futures)?;
                objects = listing.next_batch(BATCH).await?;
            }
        }
        None => {
            let mut tasks = spec.expand()?.peekable();
            while tasks.peek().is_some() {
                let batch = tasks
                    .by_ref()
                    .take(BATCH)
                    .map(|task| task_spec(job, spec, task))
                    .collect::<Result<Vec<_>>>()?;
                send(batch, &mut futures)?;
            }
        }
    }
    Ok(futures)
}
