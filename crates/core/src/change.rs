//! Durable changes: what a journal must keep so that a restarted
//! scheduler has every job and every finished result back.
//!
//! The core emits them (as [`crate::Command::Record`]) in the order it
//! made them, and [`crate::Core::replay`] applies them in that order to an
//! empty core. Attempts in flight are not durable: after a replay, tasks
//! that were assigned or running are queued again, with the next attempt
//! number (outputs have deterministic keys, so rerunning is safe).

use crate::Millis;
use quarry_proto::{ClientId, EncodedTask, JobId, JobSpec, TaskId, TaskOutcome, TaskStats};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// One durable change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Change {
    /// A job was opened.
    JobOpened {
        /// As opened.
        spec: Arc<JobSpec>,
        /// The client that opened it.
        owner: ClientId,
        /// When.
        at: Millis,
    },
    /// Tasks were added to a job.
    TasksAdded {
        /// The job.
        job: JobId,
        /// The tasks, as submitted.
        tasks: Vec<EncodedTask>,
    },
    /// A job was sealed.
    JobSealed {
        /// The job.
        job: JobId,
    },
    /// A job was cancelled (its unfinished tasks end with it).
    JobStopped {
        /// The job.
        job: JobId,
    },
    /// An attempt was sent to a worker.
    Assigned {
        /// The task.
        task: TaskId,
        /// Its number.
        attempt: u32,
        /// Whether it was placed where its inputs are cached most (`None`
        /// for a task without inputs).
        local: Option<bool>,
    },
    /// A worker reported the end of an attempt.
    AttemptEnded(Box<AttemptEnd>),
    /// A task ended without an attempt saying so: cancelled, or failed
    /// after losing too many workers.
    TaskEnded {
        /// The task.
        task: TaskId,
        /// How.
        state: FinalState,
        /// The outcome its owner was told.
        outcome: TaskOutcome,
        /// The worker of its last attempt, if it had one.
        worker: Option<String>,
    },
    /// A sealed job finished.
    JobFinished {
        /// The job.
        job: JobId,
        /// When.
        at: Millis,
    },
    /// A finished job was dropped after its retention.
    JobDropped {
        /// The job.
        job: JobId,
    },
    /// A whole job as it stands, for a compacted journal.
    Job(Box<JobSnapshot>),
    /// Counters that outlive the jobs they counted, for a compacted
    /// journal.
    Totals {
        /// Finished jobs dropped so far.
        dropped_jobs: u64,
    },
}

/// The end of one attempt, as a worker reported it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttemptEnd {
    /// The task.
    pub task: TaskId,
    /// The attempt.
    pub attempt: u32,
    /// The worker's name.
    pub worker: String,
    /// What it reported.
    pub outcome: TaskOutcome,
    /// Output URLs it wrote.
    pub outputs: Vec<String>,
    /// Its measurements.
    pub stats: TaskStats,
    /// Whether the attempt failed and the task was queued for a retry
    /// (otherwise the task ended with this outcome).
    pub retried: bool,
}

/// A final task state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FinalState {
    /// Succeeded.
    Done,
    /// Failed beyond its retries.
    Failed,
    /// Cancelled.
    Cancelled,
}

/// A job and its tasks as they stand.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobSnapshot {
    /// As opened.
    pub spec: Arc<JobSpec>,
    /// The client that opened it.
    pub owner: ClientId,
    /// When it was opened.
    pub opened_at: Millis,
    /// When it finished, if it has.
    pub finished_at: Option<Millis>,
    /// Whether it is sealed.
    pub sealed: bool,
    /// Whether it was cancelled.
    pub stopped: bool,
    /// Attempts placed where their inputs were cached most.
    pub tasks_local: u64,
    /// Attempts with inputs placed elsewhere.
    pub tasks_remote: u64,
    /// Sum of the stats of its finished attempts.
    pub stats: TaskStats,
    /// Its tasks, in submission order.
    pub tasks: Vec<TaskSnapshot>,
}

/// A task as it stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskSnapshot {
    /// As submitted.
    pub spec: EncodedTask,
    /// Attempts assigned so far.
    pub attempts: u32,
    /// Attempts that ended in an error.
    pub errors: u32,
    /// Its final state, if it has one (else it is queued again).
    pub state: Option<FinalState>,
    /// Its final outcome, unless released.
    pub outcome: Option<TaskOutcome>,
    /// Output URLs of its last finished attempt.
    pub outputs: Vec<String>,
    /// Measurements of its last finished attempt.
    pub stats: TaskStats,
    /// The worker of its last attempt, if it ended on one.
    pub worker: Option<String>,
    /// Whether its client released the result.
    pub released: bool,
}
