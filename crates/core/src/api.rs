//! The events the core consumes and the commands it emits.

use crate::change::Change;
use quarry_proto::{
    CacheEntry, ClientId, EncodedTask, JobId, JobInfo, JobSpec, RequestId, RunTask, TaskId,
    TaskOutcome, TaskReport, WorkerId,
};
use std::sync::Arc;

/// Milliseconds on the caller's monotonic clock. The core never reads a
/// clock: every event comes with the time it happened.
pub type Millis = u64;

/// Tunables of the state machine.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// A worker silent for this long is declared lost and its tasks requeued.
    pub heartbeat_timeout_ms: u64,
    /// Most tasks queued on a worker per slot beyond the running ones, to
    /// hide the round trip, for tasks far shorter than it.
    pub prefetch_per_slot: u32,
    /// How much work, in milliseconds by the function's mean attempt, a
    /// worker's prefetch queue holds per slot (up to `prefetch_per_slot`
    /// tasks): enough to hide a round trip, little enough that the tail of
    /// a job stays balanced.
    pub prefetch_work_ms: u64,
    /// Prefetch depth per slot for a function none of whose attempts was
    /// measured yet: a little, so that short tasks start fast, but not so
    /// much that a first batch of long tasks piles onto the first workers.
    pub prefetch_unmeasured_per_slot: u32,
    /// Prefetch only for functions whose mean attempt is shorter than this;
    /// longer tasks get no prefetch so the tail of a job stays balanced.
    pub prefetch_short_task_ms: u64,
    /// How long a task whose inputs are cached (or owned) by a busy worker
    /// waits for it before another worker may steal it (and then only if
    /// stealing pays off; see `fetch_bytes_per_second`).
    pub locality_wait_ms: u64,
    /// How fast a worker is assumed to download task inputs it does not
    /// cache, in bytes per second. Another worker steals a task only if it
    /// could fetch the inputs and run the task before the preferred worker
    /// would get to start it. Lower values keep tasks with their data
    /// longer; 0 counts as 1.
    pub fetch_bytes_per_second: u64,
    /// A worker receives at most this multiple of the average load through
    /// rendezvous ownership before the next-ranked owner is used.
    pub owner_load_cap: f64,
    /// How many times a task may be requeued because its worker was lost
    /// before it fails with `WorkerLost` (separate from `TaskSpec::retries`).
    pub max_worker_losses: u32,
    /// A worker that holds tasks it was sent, runs none of them, and has
    /// neither started nor finished a task for this long is stalled: its
    /// unstarted tasks go back to the queue (the worker is told to drop
    /// them) and it gets no work until it starts or finishes one. Liveness
    /// means progress, not only heartbeats. 0 turns the check off.
    pub start_deadline_ms: u64,
    /// How long a failed attempt waits before its retry is queued, for the
    /// first retry; each further retry of the task waits twice as long (up
    /// to `retry_backoff_max_ms`), and each wait is jittered to between
    /// half and one and a half times its length, so that tasks failing
    /// together do not retry together. 0 retries at once.
    pub retry_backoff_ms: u64,
    /// The longest wait before a retry (before jitter).
    pub retry_backoff_max_ms: u64,
    /// How long, and how many, finished jobs are kept before they are
    /// dropped from the tables (see [`Retention`]).
    pub retention: Retention,
    /// Emit [`Command::Record`] for every durable change, for a journal.
    /// Off, the core skips the copies a journal would need.
    pub record_changes: bool,
}

/// Which finished jobs the core keeps. A finished job is dropped (its
/// tasks and results leave memory; a manifest it wrote stays in the store)
/// once it has been finished for `max_age_ms`, or once more than
/// `max_jobs` finished jobs are kept, oldest first. Unfinished jobs are
/// never dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Drop finished jobs this long after they finished; `None` keeps them
    /// however old.
    pub max_age_ms: Option<u64>,
    /// Keep at most this many finished jobs; `None` keeps any number.
    pub max_jobs: Option<usize>,
}

impl Default for Retention {
    /// A day, and at most 100 finished jobs.
    fn default() -> Self {
        Retention {
            max_age_ms: Some(24 * 3600 * 1000),
            max_jobs: Some(100),
        }
    }
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            heartbeat_timeout_ms: 15_000,
            prefetch_per_slot: 256,
            prefetch_work_ms: 50,
            prefetch_unmeasured_per_slot: 4,
            prefetch_short_task_ms: 20,
            locality_wait_ms: 500,
            fetch_bytes_per_second: 200_000_000,
            owner_load_cap: 1.05,
            max_worker_losses: 3,
            start_deadline_ms: 120_000,
            retry_backoff_ms: 1_000,
            retry_backoff_max_ms: 60_000,
            retention: Retention::default(),
            record_changes: false,
        }
    }
}

/// Something that happened, fed into [`crate::Core::handle`].
#[derive(Clone, Debug)]
pub enum Event {
    /// A worker finished its handshake.
    WorkerJoined {
        /// Its id (allocated by the shell).
        worker: WorkerId,
        /// Its name.
        name: String,
        /// Its task slots.
        slots: u32,
        /// Functions it can run.
        functions: Vec<String>,
        /// What its cache holds.
        inventory: Vec<CacheEntry>,
        /// Its machine's host name (empty if unknown), matched against
        /// tasks' replica hosts.
        host: String,
    },
    /// A worker disconnected or was killed (the shell noticed).
    WorkerLeft {
        /// The worker.
        worker: WorkerId,
    },
    /// A worker is draining: it runs what it started but takes nothing
    /// new, so no task is placed on it any more and tasks waiting for it
    /// are placed elsewhere.
    WorkerDraining {
        /// The worker.
        worker: WorkerId,
    },
    /// A draining worker finished what it ran and left: the tasks it was
    /// sent but never started go back to the queue, without counting as a
    /// lost worker against them.
    WorkerDrained {
        /// The worker.
        worker: WorkerId,
    },
    /// Any message from a worker counts as a heartbeat; the shell sends
    /// this for explicit heartbeats.
    Heartbeat {
        /// The worker.
        worker: WorkerId,
    },
    /// A worker's cache changed.
    CacheDelta {
        /// The worker.
        worker: WorkerId,
        /// Newly cached byte ranges.
        added: Vec<CacheEntry>,
        /// Byte ranges evicted.
        evicted: Vec<CacheEntry>,
    },
    /// A client opened a job.
    JobOpened {
        /// The client.
        client: ClientId,
        /// Its request, answered with `Accepted` or `Refused`.
        request: RequestId,
        /// The job.
        spec: Arc<JobSpec>,
    },
    /// A client submitted tasks (already checked against limits).
    TasksSubmitted {
        /// The client.
        client: ClientId,
        /// Its request, answered with `Accepted` or `Refused`.
        request: RequestId,
        /// The job.
        job: JobId,
        /// The tasks, as the client encoded them.
        tasks: Vec<EncodedTask>,
    },
    /// No more tasks will be added to the job.
    JobSealed {
        /// The client (only the job's owner may seal it).
        client: ClientId,
        /// Its request, answered with `Accepted` or `Refused`.
        request: RequestId,
        /// The job.
        job: JobId,
    },
    /// A worker began an attempt.
    TaskStarted {
        /// The worker.
        worker: WorkerId,
        /// The task.
        task: TaskId,
        /// The attempt.
        attempt: u32,
    },
    /// A worker ended an attempt.
    TaskFinished {
        /// The worker.
        worker: WorkerId,
        /// What it reported.
        report: TaskReport,
    },
    /// Cancel tasks.
    CancelTasks {
        /// The client.
        client: ClientId,
        /// Its request, answered with `Accepted`.
        request: RequestId,
        /// The tasks.
        tasks: Vec<TaskId>,
    },
    /// Cancel every unfinished task of a job.
    CancelJob {
        /// The client.
        client: ClientId,
        /// Its request, answered with `Accepted` or `Refused`.
        request: RequestId,
        /// The job.
        job: JobId,
    },
    /// A finished job's manifest and success marker could not be written
    /// (the shell writes them): the job failed, whatever its tasks did.
    OutputsFailed {
        /// The job.
        job: JobId,
    },
    /// Forget these tasks' results.
    Release {
        /// The tasks.
        tasks: Vec<TaskId>,
    },
    /// A client wants every result and progress of a job pushed to it.
    Watch {
        /// The client.
        client: ClientId,
        /// Its request, answered with `Accepted` (and the job's progress)
        /// or `Refused`.
        request: RequestId,
        /// The job.
        job: JobId,
    },
    /// A client resumed its session and still waits for these tasks: the
    /// final ones get their `TaskDone` again, unknown ones a `TaskDone`
    /// failing as `Lost`.
    Resume {
        /// The client.
        client: ClientId,
        /// Its request, answered with `Accepted`.
        request: RequestId,
        /// The tasks.
        tasks: Vec<TaskId>,
    },
    /// A client went away: its unfinished library tasks (jobs it did not
    /// seal) are cancelled; sealed jobs run on.
    ClientLeft {
        /// The client.
        client: ClientId,
    },
    /// Time passed (the shell ticks a few times a second): heartbeat
    /// timeouts, locality waits, retention.
    Tick,
}

/// Something the shell must do, emitted by [`crate::Core::handle`].
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Send the job context to a worker (always before its first `Run`).
    SendJob {
        /// The worker.
        worker: WorkerId,
        /// The job.
        spec: Arc<JobSpec>,
    },
    /// Send an attempt to a worker.
    Run {
        /// The worker.
        worker: WorkerId,
        /// The attempt.
        run: RunTask,
    },
    /// Tell a worker to stop or drop a task.
    CancelOnWorker {
        /// The worker.
        worker: WorkerId,
        /// The task.
        task: TaskId,
    },
    /// Tell a client a task reached a final state.
    TaskDone {
        /// The client (the owner, or a watcher).
        client: ClientId,
        /// The task.
        task: TaskId,
        /// How it ended.
        outcome: TaskOutcome,
    },
    /// Tell a watching client how its job is doing.
    JobProgress {
        /// The client.
        client: ClientId,
        /// The job.
        info: JobInfo,
    },
    /// A sealed job has finished (succeeded, failed or cancelled): the shell
    /// writes its manifest and journals it.
    JobFinished {
        /// The job's final status.
        info: JobInfo,
    },
    /// A client's request was carried out. With a journal, the shell
    /// answers only once the records emitted before this are on disk.
    Accepted {
        /// The client.
        client: ClientId,
        /// The request.
        request: RequestId,
    },
    /// A client's request was refused; it changed nothing.
    Refused {
        /// The client.
        client: ClientId,
        /// The request.
        request: RequestId,
        /// What went wrong and what to do.
        reason: String,
    },
    /// A durable change, for the journal (only with
    /// [`CoreConfig::record_changes`]). Replaying every change in order
    /// with [`crate::Core::replay`] rebuilds the jobs and their results.
    Record(Change),
    /// The worker was declared lost (heartbeat timeout); the shell drops
    /// its connection state and ignores it until it says Hello again.
    DropWorker {
        /// The worker.
        worker: WorkerId,
    },
    /// A worker joined under the name of a live worker, which it takes
    /// over: the old session's tasks were requeued at once (a restarted
    /// worker need not wait out the heartbeat timeout). The shell tells the
    /// old connection, if it is still there, that it was replaced, and
    /// forgets it.
    WorkerReplaced {
        /// The worker taken over.
        worker: WorkerId,
        /// The worker that took over.
        by: WorkerId,
        /// Their name.
        name: String,
    },
}
