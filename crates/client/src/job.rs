use crate::client::Client;
use crate::error::ClientError;
use crate::future::TaskFuture;
use crate::session::Answer;
use futures::Stream;
use quarry_proto::{DataRef, JobId, JobSpec, TaskSpec};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;

/// What a new job is opened with.
#[derive(Clone, Debug, Default)]
pub struct JobOptions {
    /// Human-readable name.
    pub name: String,
    /// Named inputs every task reads; fetched once per worker.
    pub broadcast: Vec<(String, DataRef)>,
    /// Output prefix for task outputs, large results and the manifest.
    pub output: Option<String>,
    /// Opaque executor context (MessagePack), such as a command template.
    pub context: Vec<u8>,
    /// Cancel the rest after this many tasks failed for good.
    pub max_fails: Option<u64>,
}

/// An open job: map over it or submit tasks to it, then seal it.
pub struct Job {
    client: Client,
    spec: Arc<JobSpec>,
}

impl Job {
    pub(crate) fn new(client: Client, spec: Arc<JobSpec>) -> Job {
        Job { client, spec }
    }

    /// The job's id.
    pub fn id(&self) -> JobId {
        self.spec.id
    }

    /// The client the job was opened with.
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// The job's spec as sent.
    pub fn spec(&self) -> &JobSpec {
        &self.spec
    }

    /// A task with a fresh id, to fill in and submit.
    pub fn new_task(&self, function: &str, args: Vec<u8>) -> TaskSpec {
        TaskSpec::new(self.client.next_task_id(), function, args)
    }

    /// Maps `function` over `items` in this job, one task each, submitted
    /// in batches; the futures are in the order of `items`. Like
    /// [`Client::map`], but the tasks read this job's broadcast inputs and
    /// write under its output prefix.
    ///
    /// ```no_run
    /// # async fn demo(client: quarry_client::Client, data: quarry_proto::DataRef)
    /// # -> Result<(), quarry_client::ClientError> {
    /// let job = client.open_job(quarry_client::JobOptions {
    ///     broadcast: vec![("dataset".into(), data)],
    ///     ..Default::default()
    /// })?;
    /// let futures = job.map::<u32, f64, _>("score", [2, 4, 8])?;
    /// job.seal()?;
    /// let scores = job.gather(futures).await?;
    /// # Ok(()) }
    /// ```
    pub fn map<A, R, I>(&self, function: &str, items: I) -> Result<Vec<TaskFuture<R>>, ClientError>
    where
        A: Serialize,
        R: DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        self.client.map_in(self.spec.id, function, items)
    }

    /// Maps `function` over `items` in this job lazily, keeping at most
    /// `window` tasks in flight, and yields `(index, result)` in completion
    /// order: [`Client::map_unordered`] for this job.
    pub fn map_unordered<A, R, I>(
        &self,
        function: &str,
        items: I,
        window: usize,
    ) -> impl Stream<Item = (u64, Result<R, ClientError>)> + use<A, R, I>
    where
        A: Serialize,
        R: DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.client
            .map_unordered_in(self.spec.id, function, items, window)
    }

    /// Waits for every future and returns the results in order; the first
    /// failed task's error is returned instead ([`Client::gather`]).
    pub async fn gather<R: DeserializeOwned>(
        &self,
        futures: Vec<TaskFuture<R>>,
    ) -> Result<Vec<R>, ClientError> {
        self.client.gather(futures).await
    }

    /// Submits prepared tasks to this job (built with [`Job::new_task`] or
    /// [`Client::task`], to set keys, inputs or priorities).
    pub fn submit<R: DeserializeOwned>(
        &self,
        tasks: Vec<TaskSpec>,
    ) -> Result<Vec<TaskFuture<R>>, ClientError> {
        self.client.submit_specs(self.spec.id, tasks)
    }

    /// Declares that no more tasks will come: the job finishes (and writes
    /// its manifest) once every task has. Await the [`Answer`] to know the
    /// scheduler has it (with a journal: on disk).
    pub fn seal(&self) -> Result<Answer, ClientError> {
        self.client.seal_job(self.spec.id)
    }
}
