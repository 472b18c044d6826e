//! `map_prefix`: one task per object (or per chunk of an object) under a
//! store prefix, with results streamed back as they finish.
//!
//! The planner (`quarry-plan`) lists, pins, chunks and names the tasks,
//! exactly as for a job file; the client's windowed driver submits them in
//! batches, at most [`MapPrefixOptions::max_in_flight`] submitted and not
//! yet handed to the caller, so a prefix of millions of objects runs in
//! constant client memory (and does not flood the scheduler's queue).

use crate::client::Client;
use crate::error::ClientError;
use crate::future::decode_value;
use crate::job::JobOptions;
use crate::window::{Finished, WindowOptions, WindowedRun};
use futures::future::BoxFuture;
use futures::stream::{Stream, StreamExt, TryStreamExt};
use quarry_plan::{plan_prefix, Chunking, PlannedTask, PrefixPlan, Split};
use quarry_proto::{DataRef, JobId, JobInfo, TaskOutcome};
use quarry_store::StoreResolver;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::pin::Pin;
use std::task::{Context, Poll};

/// How [`Client::map_prefix`] lists, splits and runs.
#[derive(Clone, Debug)]
pub struct MapPrefixOptions {
    /// The job's name; defaults to `map_prefix <url>`.
    pub name: Option<String>,
    /// A glob matched against each key relative to the prefix, such as
    /// `*.txt` (one level), `**/*.csv` (any depth) or `{a,b}/*.log`.
    pub glob: Option<String>,
    /// Split objects larger than this many bytes into chunks of about this
    /// size, one task each (see [`MapPrefixOptions::split`]).
    pub chunk_size: Option<u64>,
    /// How chunks are cut: line-aligned (the default: no line is split,
    /// each is read by exactly one task) or raw byte ranges.
    pub split: Split,
    /// The function's argument, MessagePack-encoded, the same for every
    /// task (see [`MapPrefixOptions::with_args`]); defaults to nil.
    pub args: Vec<u8>,
    /// Named inputs every task reads; each worker fetches each once.
    pub broadcast: Vec<(String, DataRef)>,
    /// Output prefix for task outputs and large results.
    pub output: Option<String>,
    /// Opaque executor context (MessagePack), such as a command template.
    pub context: Vec<u8>,
    /// Times a failed attempt is retried.
    pub retries: u32,
    /// Kill an attempt after this many milliseconds.
    pub timeout_ms: Option<u64>,
    /// Higher runs first.
    pub priority: i32,
    /// Cancel the rest of the job after this many tasks failed for good.
    pub max_fails: Option<u64>,
    /// Most tasks submitted whose results the caller has not taken yet; the
    /// listing pauses while this many are outstanding.
    pub max_in_flight: usize,
}

impl Default for MapPrefixOptions {
    fn default() -> Self {
        MapPrefixOptions {
            name: None,
            glob: None,
            chunk_size: None,
            split: Split::Lines,
            args: nil_args(),
            broadcast: Vec::new(),
            output: None,
            context: Vec::new(),
            retries: 0,
            timeout_ms: None,
            priority: 0,
            max_fails: None,
            max_in_flight: 10_000,
        }
    }
}

impl MapPrefixOptions {
    /// Sets the argument every task receives besides its input.
    pub fn with_args<A: Serialize>(mut self, args: &A) -> Result<Self, ClientError> {
        self.args = rmp_serde::to_vec_named(args).map_err(|e| ClientError::Codec(e.to_string()))?;
        Ok(self)
    }
}

fn nil_args() -> Vec<u8> {
    // MessagePack nil: what `()` encodes to, and what any argument type that
    // ignores its value (such as `serde::de::IgnoredAny`) accepts.
    vec![0xc0]
}

/// One finished task of a [`PrefixMap`].
#[derive(Debug)]
pub struct PrefixResult<R> {
    /// The task's key: the object's key relative to the prefix, with
    /// `@NNNNN` appended for a chunk.
    pub key: String,
    /// The pinned object (with its byte range for a chunk) the task read.
    pub input: DataRef,
    /// The task's result, or its final error.
    pub result: Result<R, ClientError>,
}

/// How much of the listing a [`PrefixMap`] has submitted so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrefixProgress {
    /// Tasks submitted (more than the objects when chunking).
    pub tasks: u64,
    /// Input bytes of the submitted tasks.
    pub bytes: u64,
    /// Whether the listing is over and the job sealed.
    pub listed: bool,
}

/// The results of [`Client::map_prefix`], in completion order: a
/// [`Stream`] of `Result<PrefixResult<R>, ClientError>`, also readable
/// without `StreamExt` through [`PrefixMap::next`] and [`PrefixMap::fold`].
///
/// An outer `Err` means the listing (or a submission) failed: the job is
/// cancelled, because a partial listing would give a wrong answer, and the
/// stream then ends after the already submitted tasks report. A task's own
/// failure is the inner [`PrefixResult::result`].
///
/// Dropping the map before its end cancels the job's unfinished tasks.
pub struct PrefixMap<R> {
    run: WindowedRun<DataRef>,
    store: StoreResolver,
    decoding: Option<BoxFuture<'static, PrefixResult<R>>>,
}

impl<R> std::fmt::Debug for PrefixMap<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrefixMap").field("run", &self.run).finish()
    }
}

impl<R> PrefixMap<R> {
    /// The job the tasks belong to: ask [`Client::job_info`] for its
    /// locality and cache metrics.
    pub fn job(&self) -> JobId {
        self.run.job()
    }

    /// How much has been listed and submitted so far.
    pub fn progress(&self) -> PrefixProgress {
        let progress = self.run.progress();
        PrefixProgress {
            tasks: progress.tasks,
            bytes: progress.bytes,
            listed: progress.planned,
        }
    }
}

impl<R: DeserializeOwned + Send + 'static> PrefixMap<R> {
    /// The next finished task, or `None` once every task has been handed
    /// out.
    pub async fn next(&mut self) -> Option<Result<PrefixResult<R>, ClientError>> {
        StreamExt::next(self).await
    }

    /// Folds every result into an accumulator (the final reduce of a
    /// map-reduce), stopping at the first failed task or listing error.
    pub async fn fold<T>(
        mut self,
        init: T,
        mut reduce: impl FnMut(T, R) -> T,
    ) -> Result<T, ClientError> {
        let mut acc = init;
        while let Some(item) = self.next().await {
            acc = reduce(acc, item?.result?);
        }
        Ok(acc)
    }
}

/// Decodes a finished task's result (reading it from the store when it is
/// a reference).
async fn decode<R: DeserializeOwned>(
    store: StoreResolver,
    finished: Finished<DataRef>,
) -> PrefixResult<R> {
    let Finished { key, tag, outcome } = finished;
    let result = match outcome {
        Ok(TaskOutcome::Ok(value)) => decode_value(&store, &value).await,
        Ok(TaskOutcome::Err(error)) => Err(ClientError::task(&key, error)),
        Err(error) => Err(error),
    };
    PrefixResult {
        key,
        input: tag,
        result,
    }
}

impl<R: DeserializeOwned + Send + 'static> Stream for PrefixMap<R> {
    type Item = Result<PrefixResult<R>, ClientError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(decoding) = this.decoding.as_mut() {
                let done = std::task::ready!(decoding.as_mut().poll(cx));
                this.decoding = None;
                return Poll::Ready(Some(Ok(done)));
            }
            match std::task::ready!(this.run.poll_next_unpin(cx)) {
                Some(Ok(finished)) => {
                    this.decoding = Some(Box::pin(decode(this.store.clone(), finished)));
                }
                Some(Err(error)) => return Poll::Ready(Some(Err(error))),
                None => return Poll::Ready(None),
            }
        }
    }
}

impl Client {
    /// Runs `function` once per object under `url` (an `s3://`, `file://`
    /// or local prefix, or a glob such as `s3://b/logs/*/part-*.txt`), each
    /// task reading its object as its input, and streams the results back
    /// as they finish.
    ///
    /// Every object is pinned by its ETag when listed: a worker reading an
    /// object that changed since fails that task with
    /// [`quarry_proto::ErrorKind::InputChanged`]. With
    /// [`MapPrefixOptions::chunk_size`], larger objects are split into
    /// chunks (line-aligned unless [`MapPrefixOptions::split`] says bytes),
    /// one task each, so every line is read by exactly one task. The
    /// planning is the planner's (`quarry-plan`), the same as for a job
    /// file. The tasks form one job, sealed once the listing ends; its
    /// metrics come from [`Client::job_info`].
    ///
    /// Must be called inside a tokio runtime: the listing runs on a task of
    /// its own.
    ///
    /// ```no_run
    /// # async fn demo(client: quarry_client::Client) -> Result<(), quarry_client::ClientError> {
    /// use quarry_client::MapPrefixOptions;
    /// use std::collections::BTreeMap;
    /// let options = MapPrefixOptions { glob: Some("*.txt".into()), ..Default::default() };
    /// let counts = client
    ///     .map_prefix::<BTreeMap<String, u64>>("wordcount", "s3://bucket/logs/2026/", options)?
    ///     .fold(BTreeMap::new(), |mut total, shard| {
    ///         for (word, n) in shard {
    ///             *total.entry(word).or_insert(0) += n;
    ///         }
    ///         total
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn map_prefix<R: DeserializeOwned + Send + 'static>(
        &self,
        function: &str,
        url: &str,
        options: MapPrefixOptions,
    ) -> Result<PrefixMap<R>, ClientError> {
        let plan = PrefixPlan::new(
            url,
            options.glob.as_deref(),
            options.chunk_size.map(|size| Chunking {
                size,
                split: options.split,
            }),
        );
        let job = self.open_job(JobOptions {
            name: options
                .name
                .clone()
                .unwrap_or_else(|| format!("map_prefix {}", plan.url)),
            broadcast: options.broadcast.clone(),
            output: options.output.clone(),
            context: options.context.clone(),
            max_fails: options.max_fails,
        })?;
        let function = function.to_string();
        let store = self.inner.store.clone();
        let tasks = plan_prefix(&self.inner.store, &plan)
            .map_err(ClientError::from)
            .map_ok(move |planned| {
                let mut task = PlannedTask::new(planned.key, &function, options.args.clone());
                task.inputs = vec![planned.input.clone()];
                task.replica_hosts = store.replica_hosts(&task.inputs);
                task.retries = options.retries;
                task.timeout_ms = options.timeout_ms;
                task.priority = options.priority;
                (task, planned.input)
            })
            .boxed();
        let run = self.submit_windowed(
            job.id(),
            tasks,
            WindowOptions {
                window: options.max_in_flight,
                ..WindowOptions::default()
            },
        );
        Ok(PrefixMap {
            run,
            store: self.inner.store.clone(),
            decoding: None,
        })
    }

    /// The status and metrics of one job: task counts, `tasks_local` /
    /// `tasks_remote` (locality) and the summed [`quarry_proto::TaskStats`]
    /// (bytes from cache and from the store, cache hits and misses).
    pub async fn job_info(&self, job: JobId) -> Result<JobInfo, ClientError> {
        self.jobs()
            .await?
            .into_iter()
            .find(|info| info.id == job)
            .ok_or_else(|| ClientError::Refused(format!("the scheduler knows no job {job}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_arguments_decode_as_unit() {
        let args = MapPrefixOptions::default().args;
        let _: () = rmp_serde::from_slice(&args).unwrap();
        let with = MapPrefixOptions::default().with_args(&7u32).unwrap();
        assert_eq!(rmp_serde::from_slice::<u32>(&with.args).unwrap(), 7);
    }
}
