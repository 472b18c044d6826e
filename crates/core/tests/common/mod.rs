//! A small harness for driving the core in tests.

#![allow(dead_code)] // each test binary uses a different part of it

use quarry_core::{Command, Core, CoreConfig, Event, Millis};
use quarry_proto::{
    CacheEntry, ClientId, DataRef, EncodedTask, ErrorKind, JobId, JobSpec, Pin, RequestId,
    TaskError, TaskId, TaskOutcome, TaskReport, TaskSpec, TaskStats, Value, WorkerId,
};
use std::sync::Arc;

/// A core plus the clock the test moves.
pub struct Harness {
    pub core: Core,
    pub now: Millis,
}

impl Harness {
    pub fn new(config: CoreConfig) -> Harness {
        Harness {
            core: Core::new(config),
            now: 0,
        }
    }

    /// Applies one event at the current time and returns what it emitted.
    pub fn send(&mut self, event: Event) -> Vec<Command> {
        let mut out = Vec::new();
        self.core.handle(self.now, event, &mut out);
        out
    }

    /// Moves the clock to `now` and ticks.
    pub fn tick_at(&mut self, now: Millis) -> Vec<Command> {
        self.now = now;
        self.send(Event::Tick)
    }

    pub fn join(&mut self, worker: u32, slots: u32, functions: &[&str]) -> Vec<Command> {
        self.join_cached(worker, slots, functions, &[])
    }

    /// A worker named `w<id>` whose cache holds `cached`.
    pub fn join_cached(
        &mut self,
        worker: u32,
        slots: u32,
        functions: &[&str],
        cached: &[&DataRef],
    ) -> Vec<Command> {
        self.join_full(worker, slots, functions, cached, "")
    }

    /// A worker named `w<id>` on the machine called `host`.
    pub fn join_on_host(
        &mut self,
        worker: u32,
        slots: u32,
        functions: &[&str],
        host: &str,
    ) -> Vec<Command> {
        self.join_full(worker, slots, functions, &[], host)
    }

    fn join_full(
        &mut self,
        worker: u32,
        slots: u32,
        functions: &[&str],
        cached: &[&DataRef],
        host: &str,
    ) -> Vec<Command> {
        self.send(Event::WorkerJoined {
            worker: WorkerId(worker),
            name: format!("w{worker}"),
            slots,
            functions: functions.iter().map(|f| f.to_string()).collect(),
            inventory: cached
                .iter()
                .map(|d| CacheEntry::whole(d.object_key(), d.size))
                .collect(),
            host: host.to_string(),
        })
    }

    pub fn open(&mut self, client: u32, job: u64) -> Vec<Command> {
        self.open_spec(client, job_spec(client, job))
    }

    pub fn open_spec(&mut self, client: u32, spec: JobSpec) -> Vec<Command> {
        self.send(Event::JobOpened {
            client: ClientId(client),
            request: RequestId(0),
            spec: Arc::new(spec),
        })
    }

    pub fn submit(&mut self, client: u32, job: u64, tasks: Vec<TaskSpec>) -> Vec<Command> {
        self.send(Event::TasksSubmitted {
            client: ClientId(client),
            request: RequestId(0),
            job: job_id(client, job),
            tasks: tasks
                .iter()
                .map(|spec| EncodedTask::encode(spec).expect("encodable"))
                .collect(),
        })
    }

    pub fn seal(&mut self, client: u32, job: u64) -> Vec<Command> {
        self.send(Event::JobSealed {
            client: ClientId(client),
            request: RequestId(0),
            job: job_id(client, job),
        })
    }

    pub fn start(&mut self, worker: u32, task: TaskId, attempt: u32) -> Vec<Command> {
        self.send(Event::TaskStarted {
            worker: WorkerId(worker),
            task,
            attempt,
        })
    }

    pub fn finish(&mut self, worker: u32, report: TaskReport) -> Vec<Command> {
        self.send(Event::TaskFinished {
            worker: WorkerId(worker),
            report,
        })
    }

    /// Reports success of `task` attempt `attempt` on `worker`.
    pub fn succeed(&mut self, worker: u32, task: TaskId, attempt: u32) -> Vec<Command> {
        self.finish(worker, ok_report(task, attempt))
    }

    pub fn state_of(&self, task: TaskId) -> String {
        self.core.task_status(task).expect("known task").state
    }
}

pub fn job_id(client: u32, n: u64) -> JobId {
    JobId(JobId::first_for(ClientId(client)).0 + n)
}

pub fn task_id(client: u32, n: u64) -> TaskId {
    TaskId(TaskId::first_for(ClientId(client)).0 + n)
}

pub fn job_spec(client: u32, n: u64) -> JobSpec {
    JobSpec {
        id: job_id(client, n),
        name: format!("job-{n}"),
        broadcast: Vec::new(),
        output: None,
        context: Vec::new(),
        max_fails: None,
    }
}

/// Task `n` of `client` running `function`, priority 0, no retries.
pub fn task(client: u32, n: u64, function: &str) -> TaskSpec {
    TaskSpec {
        key: format!("task-{n}"),
        ..TaskSpec::new(task_id(client, n), function, Vec::new())
    }
}

/// A pinned shard of `size` bytes.
pub fn shard(name: &str, size: u64) -> DataRef {
    DataRef {
        url: format!("s3://bucket/{name}"),
        pin: Pin::ETag("etag-1".into()),
        size,
        range: None,
    }
}

pub fn ok_report(task: TaskId, attempt: u32) -> TaskReport {
    TaskReport {
        task,
        attempt,
        outcome: TaskOutcome::Ok(Value::Inline(vec![0xc0])),
        outputs: Vec::new(),
        stats: TaskStats::default(),
    }
}

pub fn err_report(task: TaskId, attempt: u32, kind: ErrorKind, message: &str) -> TaskReport {
    TaskReport {
        task,
        attempt,
        outcome: TaskOutcome::Err(TaskError {
            kind,
            message: message.to_string(),
        }),
        outputs: Vec::new(),
        stats: TaskStats::default(),
    }
}

/// `(worker, task, attempt)` of every `Run`.
pub fn runs(commands: &[Command]) -> Vec<(u32, TaskId, u32)> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::Run { worker, run } => Some((worker.0, run.task.id(), run.attempt)),
            _ => None,
        })
        .collect()
}

/// The refusal texts among `commands` (answers to requests).
pub fn refusals(commands: &[Command]) -> Vec<String> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::Refused { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

/// `commands` without the answers to requests (`Accepted`, `Refused`).
pub fn without_answers(commands: Vec<Command>) -> Vec<Command> {
    commands
        .into_iter()
        .filter(|c| !matches!(c, Command::Accepted { .. } | Command::Refused { .. }))
        .collect()
}

/// `(client, task, outcome)` of every `TaskDone`.
pub fn dones(commands: &[Command]) -> Vec<(u32, TaskId, TaskOutcome)> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::TaskDone {
                client,
                task,
                outcome,
            } => Some((client.0, *task, outcome.clone())),
            _ => None,
        })
        .collect()
}

/// The error kind and text of a failed outcome.
pub fn error_of(outcome: &TaskOutcome) -> (ErrorKind, String) {
    match outcome {
        TaskOutcome::Err(e) => (e.kind, e.message.clone()),
        TaskOutcome::Ok(_) => panic!("expected an error, got {outcome:?}"),
    }
}

/// A config without prefetch and with a short locality wait, so tests see
/// exactly `slots` tasks per worker. Retries are queued at once (tests of
/// the backoff set it).
pub fn no_prefetch() -> CoreConfig {
    CoreConfig {
        prefetch_per_slot: 0,
        prefetch_unmeasured_per_slot: 0,
        retry_backoff_ms: 0,
        ..CoreConfig::default()
    }
}
