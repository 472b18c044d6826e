use crate::client::Client;
use crate::error::ClientError;
use crate::future::TaskFuture;
use quarry_proto::{DataRef, JobId, JobSpec, Message, TaskSpec};
use serde::de::DeserializeOwned;
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

/// An open job: submit tasks to it, then seal it.
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

    /// The job's spec as sent.
    pub fn spec(&self) -> &JobSpec {
        &self.spec
    }

    /// A task with a fresh id, to fill in and submit.
    pub fn new_task(&self, function: &str, args: Vec<u8>) -> TaskSpec {
        TaskSpec::new(self.client.next_task_id(), function, args)
    }

    /// Submits tasks to this job.
    pub fn submit<R: DeserializeOwned>(
        &self,
        tasks: Vec<TaskSpec>,
    ) -> Result<Vec<TaskFuture<R>>, ClientError> {
        self.client.submit_specs(self.spec.id, tasks)
    }

    /// Declares that no more tasks will come: the job finishes (and writes
    /// its manifest) once every task has.
    pub fn seal(&self) -> Result<(), ClientError> {
        self.client
            .inner
            .send(&Message::SealJob { job: self.spec.id })
    }
}
