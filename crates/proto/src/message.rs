use crate::{
    ByteRange, ClientId, DataRef, EncodedTask, JobId, Limits, RequestId, RunTask, TaskId, WorkerId,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Which side of the scheduler a peer speaks for. A peer's role is fixed by
/// its handshake (and, with CURVE, by which authorized-keys file admitted
/// it); the scheduler refuses messages that do not belong to that role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Submits jobs and tasks, receives results.
    Client,
    /// Runs tasks.
    Worker,
}

/// One ZeroMQ message body: several protocol messages batched together.
/// Throughput comes from batching, so every sender coalesces what it has
/// queued into one envelope (up to the frame cap).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The messages, applied in order.
    pub messages: Vec<Message>,
}

/// Every protocol message. The comment on each variant says who sends it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Message {
    // ----- handshake (any peer → scheduler, and the answers) -----
    /// Peer → scheduler: the first message of every connection.
    Hello {
        /// The sender's [`crate::PROTOCOL_VERSION`].
        version: u32,
        /// Whether it is a client or a worker.
        role: Role,
        /// A human-readable name (host:pid or `--name`).
        name: String,
        /// Task slots (workers only; 0 for clients).
        slots: u32,
        /// Function names this worker can run (workers only).
        functions: Vec<String>,
        /// What the worker's cache already holds (workers only).
        inventory: Vec<CacheEntry>,
        /// The machine's host name (workers; empty for clients): placement
        /// matches it against [`TaskSpec::replica_hosts`].
        #[serde(default)]
        host: String,
        /// Clients only: the session to resume (from an earlier Welcome),
        /// after a lost connection or a scheduler restart.
        resume: Option<ClientSession>,
    },
    /// Scheduler → peer: the handshake succeeded.
    Welcome {
        /// The scheduler's protocol version.
        version: u32,
        /// Set for clients: the session, whose id's task-id range the
        /// client owns.
        client: Option<ClientSession>,
        /// Clients only: whether the session asked for in `Hello::resume`
        /// was resumed. When it was not (the scheduler restarted without a
        /// journal, or forgot the session), `client` is a new session and
        /// nothing of the old one survives.
        resumed: bool,
        /// Set for workers: the id the scheduler knows it by.
        worker: Option<WorkerId>,
        /// The scheduler's limits, so the peer can fail early.
        limits: Limits,
        /// How often peers must send [`Message::Heartbeat`] (the scheduler
        /// answers each client heartbeat with one, so silence means the
        /// connection is gone).
        heartbeat_ms: u64,
    },
    /// Scheduler → peer: the handshake or a later message was refused; the
    /// text says why and what to do.
    Rejected {
        /// Human-readable reason.
        reason: String,
        /// True when retrying cannot help (wrong version, key not
        /// authorized for the role); false when the peer should say Hello
        /// again (the scheduler restarted or declared it lost).
        fatal: bool,
    },

    // ----- worker or client → scheduler -----
    /// Worker or client → scheduler: still alive. A client that stops
    /// sending them is treated as gone. Scheduler → client: the answer to
    /// a client's heartbeat.
    Heartbeat,

    // ----- worker → scheduler -----
    /// Worker → scheduler: an assigned task began to run.
    TaskStarted {
        /// The task.
        task: TaskId,
        /// Which attempt (1-based) this is.
        attempt: u32,
    },
    /// Worker → scheduler: an attempt ended.
    TaskFinished(TaskReport),
    /// Worker → scheduler: cache inventory changes since the last delta.
    CacheDelta {
        /// Byte ranges of objects now cached.
        added: Vec<CacheEntry>,
        /// Byte ranges of objects no longer cached.
        evicted: Vec<CacheEntry>,
    },
    /// Worker → scheduler: it is draining (asked to, told by SIGTERM, or
    /// at the end of its `--lifetime`): it finishes what it runs, starts
    /// nothing new, and is to be sent nothing more.
    Draining,
    /// Worker → scheduler: it drained and is leaving; the tasks it was sent
    /// and has not reported were never started, and go back to the queue.
    /// Scheduler → worker: the same word as the acknowledgment, after which
    /// the worker exits.
    Drained,

    // ----- scheduler → worker -----
    /// Scheduler → worker: the job context, sent once before the first task
    /// of a job reaches that worker.
    Job(Arc<JobSpec>),
    /// Scheduler → worker: run (or queue, up to the prefetch depth) a task.
    Run(RunTask),
    /// Scheduler → worker: stop a task if it runs, drop it if queued.
    CancelTask {
        /// The task.
        task: TaskId,
    },
    /// Scheduler → worker: drain (finish what runs, then leave), as
    /// `quarry drain` asked.
    Drain,

    // ----- client → scheduler -----
    // Every request carries an id and gets exactly one answer carrying it:
    // `Accepted` or `Refused`, or for queries their reply (`Jobs`,
    // `Workers`, `Results`) or `Refused`. Requests are idempotent, so a
    // client may resend those it has no answer to after reconnecting.
    /// Client → scheduler: create a job that tasks can then be submitted to.
    OpenJob {
        /// The request.
        request: RequestId,
        /// The job.
        spec: Arc<JobSpec>,
    },
    /// Client → scheduler: add tasks to an open job. Refused as a whole
    /// (none of its tasks is accepted) or accepted as a whole. The tasks
    /// stay in the encoding the client gave them until a worker decodes
    /// them: the scheduler reads only their [`EncodedTask`] headers.
    Submit {
        /// The request.
        request: RequestId,
        /// The job.
        job: JobId,
        /// The tasks.
        tasks: Vec<EncodedTask>,
    },
    /// Client → scheduler: no more tasks will be added to this job; it is
    /// finished once every task is.
    SealJob {
        /// The request.
        request: RequestId,
        /// The job.
        job: JobId,
    },
    /// Client → scheduler: cancel these tasks.
    Cancel {
        /// The request.
        request: RequestId,
        /// The tasks.
        tasks: Vec<TaskId>,
    },
    /// Client → scheduler: cancel every unfinished task of a job.
    CancelJob {
        /// The request.
        request: RequestId,
        /// The job.
        job: JobId,
    },
    /// Client → scheduler: forget these tasks' results (their futures were
    /// dropped). A notification: it has no id and no answer.
    Release {
        /// The tasks.
        tasks: Vec<TaskId>,
    },
    /// Client → scheduler: push every result of this job to me as it
    /// finishes, and the job's progress (used by `quarry submit --watch`).
    /// Accepted, then a [`Message::JobProgress`] follows at once.
    Watch {
        /// The request.
        request: RequestId,
        /// The job.
        job: JobId,
    },
    /// Client → scheduler, after resuming a session: these tasks' futures
    /// are still waiting. Each one already final is answered with its
    /// [`Message::TaskDone`] again, each the scheduler does not know with a
    /// `TaskDone` failing as [`ErrorKind::Lost`]; the others resolve when
    /// they finish.
    Resume {
        /// The request.
        request: RequestId,
        /// The tasks.
        tasks: Vec<TaskId>,
    },
    /// Client → scheduler: list known jobs; answered by [`Message::Jobs`].
    ListJobs {
        /// The request.
        request: RequestId,
    },
    /// Client → scheduler: list connected workers; answered by
    /// [`Message::Workers`].
    ListWorkers {
        /// The request.
        request: RequestId,
    },
    /// Client → scheduler: drain a worker (by name or id): it finishes
    /// what it runs, gives back what it has queued, and exits. Answered by
    /// `Accepted` once the worker was told, or `Refused` if no such worker
    /// is connected.
    DrainWorker {
        /// The request.
        request: RequestId,
        /// The worker's name or id (`w3`).
        worker: String,
    },
    /// Client → scheduler: one page of per-task rows; answered by
    /// [`Message::Results`].
    GetResults {
        /// The request.
        request: RequestId,
        /// The job.
        job: JobId,
        /// Start after this task id (for paging); `None` starts at the first.
        after: Option<TaskId>,
        /// Most rows to return.
        limit: u32,
    },

    // ----- scheduler → client -----
    /// Scheduler → client: a request was carried out (and, with a journal,
    /// is on disk: it survives a scheduler crash).
    Accepted {
        /// The request.
        request: RequestId,
    },
    /// Scheduler → client: a request was refused and changed nothing; the
    /// text says why and what to do.
    Refused {
        /// The request.
        request: RequestId,
        /// Human-readable reason.
        reason: String,
    },
    /// Scheduler → client: a task reached a final state.
    TaskDone {
        /// The task.
        task: TaskId,
        /// How it ended.
        outcome: TaskOutcome,
    },
    /// Scheduler → client: progress of a watched job.
    JobProgress(JobInfo),
    /// Scheduler → client: answer to [`Message::ListJobs`].
    Jobs {
        /// The request.
        request: RequestId,
        /// The jobs the scheduler holds, in id order.
        jobs: Vec<JobInfo>,
        /// Finished jobs dropped from memory after their retention
        /// (`--job-retention`); their manifests stay in the store.
        dropped: u64,
    },
    /// Scheduler → client: answer to [`Message::ListWorkers`].
    Workers {
        /// The request.
        request: RequestId,
        /// The connected workers.
        workers: Vec<WorkerInfo>,
    },
    /// Scheduler → client: answer to [`Message::GetResults`].
    Results {
        /// The request.
        request: RequestId,
        /// The job.
        job: JobId,
        /// Rows in task-id order.
        rows: Vec<TaskStatus>,
        /// Whether more rows follow after the last one.
        more: bool,
    },
    /// Scheduler → peer: something that answers no request went wrong
    /// (an undecodable frame, a message not allowed for the peer's role,
    /// a job's manifest that could not be written). The text says what to
    /// do.
    Error {
        /// Human-readable reason.
        message: String,
    },
    /// Client → scheduler: this session is over. The scheduler answers
    /// `Accepted`, then forgets the session and gives back its connection
    /// slot at once, instead of after the client timeout (a short-lived
    /// CLI call would otherwise hold a slot for that long). Jobs the client
    /// left unsealed end as they do when a client goes silent.
    Goodbye {
        /// The request.
        request: RequestId,
    },
}

impl Message {
    /// A short name for logs and errors (never the payload, which may hold
    /// user data).
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "Hello",
            Message::Welcome { .. } => "Welcome",
            Message::Rejected { .. } => "Rejected",
            Message::Heartbeat => "Heartbeat",
            Message::TaskStarted { .. } => "TaskStarted",
            Message::TaskFinished(_) => "TaskFinished",
            Message::CacheDelta { .. } => "CacheDelta",
            Message::Draining => "Draining",
            Message::Drained => "Drained",
            Message::Drain => "Drain",
            Message::DrainWorker { .. } => "DrainWorker",
            Message::Job(_) => "Job",
            Message::Run(_) => "Run",
            Message::CancelTask { .. } => "CancelTask",
            Message::OpenJob { .. } => "OpenJob",
            Message::Submit { .. } => "Submit",
            Message::SealJob { .. } => "SealJob",
            Message::Cancel { .. } => "Cancel",
            Message::CancelJob { .. } => "CancelJob",
            Message::Release { .. } => "Release",
            Message::Watch { .. } => "Watch",
            Message::Resume { .. } => "Resume",
            Message::ListJobs { .. } => "ListJobs",
            Message::ListWorkers { .. } => "ListWorkers",
            Message::GetResults { .. } => "GetResults",
            Message::Accepted { .. } => "Accepted",
            Message::Refused { .. } => "Refused",
            Message::TaskDone { .. } => "TaskDone",
            Message::JobProgress(_) => "JobProgress",
            Message::Jobs { .. } => "Jobs",
            Message::Workers { .. } => "Workers",
            Message::Results { .. } => "Results",
            Message::Error { .. } => "Error",
            Message::Goodbye { .. } => "Goodbye",
        }
    }

    /// The id of the request this message is, or answers; `None` for
    /// handshakes, notifications and pushed results.
    pub fn request(&self) -> Option<RequestId> {
        match self {
            Message::OpenJob { request, .. }
            | Message::Submit { request, .. }
            | Message::SealJob { request, .. }
            | Message::Cancel { request, .. }
            | Message::CancelJob { request, .. }
            | Message::Watch { request, .. }
            | Message::Resume { request, .. }
            | Message::ListJobs { request }
            | Message::ListWorkers { request }
            | Message::GetResults { request, .. }
            | Message::DrainWorker { request, .. }
            | Message::Goodbye { request }
            | Message::Accepted { request }
            | Message::Refused { request, .. }
            | Message::Jobs { request, .. }
            | Message::Workers { request, .. }
            | Message::Results { request, .. } => Some(*request),
            _ => None,
        }
    }

    /// The role allowed to send this message to the scheduler, or `None`
    /// for messages any peer may send (`Hello`, `Heartbeat`) and those only
    /// the scheduler sends.
    pub fn sender_role(&self) -> Option<Role> {
        match self {
            Message::TaskStarted { .. }
            | Message::TaskFinished(_)
            | Message::CacheDelta { .. }
            | Message::Draining
            | Message::Drained => Some(Role::Worker),
            Message::OpenJob { .. }
            | Message::Submit { .. }
            | Message::SealJob { .. }
            | Message::Cancel { .. }
            | Message::CancelJob { .. }
            | Message::Release { .. }
            | Message::Watch { .. }
            | Message::Resume { .. }
            | Message::ListJobs { .. }
            | Message::ListWorkers { .. }
            | Message::GetResults { .. }
            | Message::DrainWorker { .. }
            | Message::Goodbye { .. } => Some(Role::Client),
            _ => None,
        }
    }
}

/// A job: tasks that share broadcast inputs, an output prefix, an executor
/// context and a failure policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// Allocated by the client inside its id range.
    pub id: JobId,
    /// Human-readable name (from the YAML `name`).
    pub name: String,
    /// Named inputs every task of the job reads; each worker fetches each
    /// once and keeps it in its cache.
    pub broadcast: Vec<(String, DataRef)>,
    /// Where task outputs, large results and the manifest go, if anywhere.
    pub output: Option<String>,
    /// Opaque executor context shared by all tasks (for command jobs, the
    /// argv template, environment and timeout), MessagePack-encoded.
    #[serde(with = "serde_bytes")]
    pub context: Vec<u8>,
    /// Stop the job (cancel what is left) after this many tasks failed for
    /// good; `None` never stops early.
    pub max_fails: Option<u64>,
}

/// One task as submitted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// Unique id inside the submitting client's range.
    pub id: TaskId,
    /// Deterministic, human-readable key: names the task's output directory
    /// and its manifest row. Unique within the job.
    pub key: String,
    /// Registered function (or executor, such as `quarry.command`) to run.
    pub function: String,
    /// Inline arguments, MessagePack-encoded; at most
    /// [`Limits::max_inline_bytes`].
    #[serde(with = "serde_bytes")]
    pub args: Vec<u8>,
    /// Arguments too large to travel inline: the worker reads them from
    /// this reference (through its cache) instead of `args`.
    pub args_ref: Option<DataRef>,
    /// Per-task inputs (shards). Placement prefers the worker caching most of
    /// their bytes.
    pub inputs: Vec<DataRef>,
    /// Grid parameters as a JSON object, for result tables; empty if none.
    pub params_json: String,
    /// Higher runs first; FIFO within one priority.
    pub priority: i32,
    /// How many times a failed attempt is retried.
    pub retries: u32,
    /// Kill an attempt after this long.
    pub timeout_ms: Option<u64>,
    /// Worker slots one attempt occupies.
    pub cpus: u32,
    /// Hosts holding the task's input data, most bytes first (for HDFS,
    /// the DataNodes with replicas of its blocks). While no worker caches
    /// the inputs, placement prefers a worker on one of these hosts. Empty:
    /// no preference.
    #[serde(default)]
    pub replica_hosts: Vec<String>,
}

impl TaskSpec {
    /// A task with no inputs, no retries, priority 0, no timeout and one
    /// slot; its key is its id.
    pub fn new(id: TaskId, function: impl Into<String>, args: Vec<u8>) -> TaskSpec {
        TaskSpec {
            id,
            key: id.0.to_string(),
            function: function.into(),
            args,
            args_ref: None,
            inputs: Vec::new(),
            params_json: String::new(),
            priority: 0,
            retries: 0,
            timeout_ms: None,
            cpus: 1,
            replica_hosts: Vec::new(),
        }
    }
}

/// One attempt of one task, as the worker runs it ([`RunTask`] decoded).
#[derive(Clone, Debug, PartialEq)]
pub struct TaskAssignment {
    /// The job (its [`JobSpec`] was sent before).
    pub job: JobId,
    /// The task.
    pub task: Arc<TaskSpec>,
    /// 1-based attempt number.
    pub attempt: u32,
}

/// A value produced by a task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// Small values travel inline, MessagePack-encoded with field names (so
    /// any tool can render them).
    Inline(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Large values stay in the store and travel as a reference.
    Ref(DataRef),
}

/// Why an attempt or a task failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The function returned an error, or a command exited non-zero.
    Failed,
    /// The function panicked.
    Panicked,
    /// The attempt ran past its timeout and was killed.
    TimedOut,
    /// The worker running it was lost too many times.
    WorkerLost,
    /// An input changed since it was pinned at submission.
    InputChanged,
    /// An input could not be read.
    InputUnavailable,
    /// No worker can run the function, or the arguments were refused.
    Rejected,
    /// The task was cancelled.
    Cancelled,
    /// The scheduler no longer knows the task: it restarted without a
    /// journal (or its journal lost the submission), or the task's job was
    /// dropped after its retention. Submit it again.
    Lost,
}

/// A failure with the text the client sees.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// The error text (panic message, stderr tail, …).
    pub message: String,
}

/// How an attempt, or a task, ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TaskOutcome {
    /// It succeeded with this value.
    Ok(Value),
    /// It failed.
    Err(TaskError),
}

/// Per-attempt measurements a worker reports.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStats {
    /// Wall time of the attempt.
    pub duration_ms: u64,
    /// Input bytes served from the local cache.
    pub bytes_from_cache: u64,
    /// Input bytes downloaded from the store.
    pub bytes_from_store: u64,
    /// Inputs found in the cache.
    pub cache_hits: u32,
    /// Inputs that had to be downloaded.
    pub cache_misses: u32,
}

/// Worker → scheduler: the end of one attempt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskReport {
    /// The task.
    pub task: TaskId,
    /// Which attempt.
    pub attempt: u32,
    /// How it ended.
    pub outcome: TaskOutcome,
    /// Output URLs the attempt wrote.
    pub outputs: Vec<String>,
    /// Measurements.
    pub stats: TaskStats,
}

/// What a worker caches of one object (or, in an eviction, no longer
/// caches), as reported in inventories and deltas. Workers cache objects in
/// blocks, so the ranges are block-aligned runs; the scheduler only reads
/// them as byte ranges.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// [`DataRef::object_key`] of the object.
    pub object_key: String,
    /// The byte ranges of the object meant, sorted and disjoint.
    pub ranges: Vec<ByteRange>,
}

impl CacheEntry {
    /// All `size` bytes of the object `object_key` names.
    pub fn whole(object_key: impl Into<String>, size: u64) -> CacheEntry {
        CacheEntry {
            object_key: object_key.into(),
            ranges: vec![ByteRange {
                start: 0,
                end: size,
            }],
        }
    }

    /// How many bytes the ranges hold.
    pub fn bytes(&self) -> u64 {
        self.ranges.iter().map(ByteRange::len).sum()
    }
}

/// A client's session: its id, and the secret that proves it is the
/// session's owner when it resumes (after a lost connection or a scheduler
/// restart).
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientSession {
    /// The client's id (its task-id and job-id range).
    pub id: ClientId,
    /// Known only to the scheduler and the client.
    pub secret: u64,
}

/// The secret stays out of logs.
impl std::fmt::Debug for ClientSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSession")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// A connected worker, as `quarry status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// Its id.
    pub id: WorkerId,
    /// Its name.
    pub name: String,
}

/// A job's lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobState {
    /// Tasks may still be added, or some are unfinished.
    Running,
    /// Sealed, and every task succeeded.
    Succeeded,
    /// Sealed and finished, and some task failed beyond its retries.
    Failed,
    /// Cancelled by a client, or stopped by `max_fails`.
    Cancelled,
}

/// Task counts of a job by state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCounts {
    /// All tasks submitted.
    pub total: u64,
    /// Waiting for a worker.
    pub queued: u64,
    /// Sent to a worker, waiting in its prefetch queue.
    pub assigned: u64,
    /// Running on a worker.
    pub running: u64,
    /// Succeeded.
    pub done: u64,
    /// Failed beyond retries.
    pub failed: u64,
    /// Cancelled.
    pub cancelled: u64,
}

/// A job's status and metrics, as the CLI and dashboard show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobInfo {
    /// The job.
    pub id: JobId,
    /// Its name.
    pub name: String,
    /// Its state.
    pub state: JobState,
    /// Its task counts.
    pub counts: JobCounts,
    /// Attempts placed on a worker that already cached their inputs.
    pub tasks_local: u64,
    /// Attempts placed elsewhere.
    pub tasks_remote: u64,
    /// Sums of the workers' [`TaskStats`].
    pub stats: TaskStats,
    /// Milliseconds since the job was opened (scheduler clock).
    pub elapsed_ms: u64,
}

/// One row of a job's result table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskStatus {
    /// The task.
    pub id: TaskId,
    /// Its key.
    pub key: String,
    /// Grid parameters as JSON.
    pub params_json: String,
    /// What the task reads (the pinned objects, or chunks of them).
    pub inputs: Vec<DataRef>,
    /// `queued`, `assigned`, `running`, `done`, `failed` or `cancelled`.
    pub state: String,
    /// The final outcome, once there is one.
    pub outcome: Option<TaskOutcome>,
    /// Output URLs.
    pub outputs: Vec<String>,
    /// Name of the worker that ran the last attempt.
    pub worker: Option<String>,
    /// Attempts made.
    pub attempts: u32,
    /// Measurements of the last attempt.
    pub stats: TaskStats,
}
