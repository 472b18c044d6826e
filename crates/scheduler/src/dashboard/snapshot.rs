//! What the dashboard shows, kept apart from the core so that HTTP traffic
//! never touches it.
//!
//! The scheduler loop feeds an [`Observer`] with what it already handles
//! (the events it gives the core and the commands the core emits) and, on
//! every tick, publishes into the shared [`Snapshot`]: the kept jobs (what
//! changed since the last tick, [`quarry_core::Core::job_updates`]), the
//! live workers, and per-job task tables, a ring of recent attempts (the
//! task stream) and a ring of failed tasks. Everything is bounded: task
//! tables exist only for kept jobs and hold at most
//! [`ROWS_PER_RUNNING_JOB`] rows ([`ROWS_PER_FINISHED_JOB`] once the job
//! finished), the rings hold [`STREAM_LEN`] and [`FAILURES_LEN`] entries.

use crate::metrics::{SchedulerMetrics, Totals};
use prometheus_client::metrics::histogram::Histogram;
use quarry_core::{Command, Core, Event, Millis, WorkerView};
use quarry_journal::WriterState;
use quarry_proto::{
    EncodedTask, ErrorKind, JobId, JobInfo, JobState, TaskId, TaskOutcome, TaskStats, WorkerId,
};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Rows a running job's task table keeps: every placed task that has not
/// finished, then the most recently finished ones.
pub(crate) const ROWS_PER_RUNNING_JOB: usize = 5_000;
/// Rows a finished job's task table keeps (failed ones first).
pub(crate) const ROWS_PER_FINISHED_JOB: usize = 1_000;
/// Attempts the task stream keeps.
pub(crate) const STREAM_LEN: usize = 2_000;
/// Failed tasks kept for the failures page.
pub(crate) const FAILURES_LEN: usize = 500;

/// The executor name `quarry-command` registers for command tasks
/// (`quarry_command::COMMAND_EXECUTOR`); their logs are uploaded under the
/// job's output prefix.
const COMMAND_FUNCTION: &str = "quarry.command";

/// What the dashboard shows.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    /// The kept jobs.
    pub(crate) jobs: BTreeMap<JobId, JobInfo>,
    /// The live workers.
    pub(crate) workers: Vec<WorkerView>,
    /// Connected client sessions.
    pub(crate) clients: usize,
    /// Tasks waiting for a worker.
    pub(crate) queued: usize,
    /// Finished jobs dropped after their retention.
    pub(crate) dropped_jobs: u64,
    /// The journal's length in bytes, when there is one.
    pub(crate) journal_bytes: Option<u64>,
    /// Journal compactions since the scheduler started.
    pub(crate) journal_compactions: u64,
    /// Task tables of kept jobs.
    pub(crate) tasks: HashMap<JobId, JobTasks>,
    /// The latest attempts, oldest first.
    pub(crate) stream: VecDeque<StreamEntry>,
    /// The latest failed tasks, oldest first.
    pub(crate) failures: VecDeque<Failure>,
    /// The scheduler clock at the last refresh.
    pub(crate) now_ms: Millis,
}

/// The snapshot, shared between the scheduler loop and the HTTP handlers.
pub(crate) type Shared = Arc<RwLock<Snapshot>>;

/// One job's task table.
#[derive(Debug, Default)]
pub(crate) struct JobTasks {
    /// Rows by task.
    pub(crate) rows: HashMap<TaskId, TaskRow>,
    /// Finished rows in the order they finished: the first to go.
    finished: VecDeque<TaskId>,
    /// Rows let go to stay within the bound.
    pub(crate) omitted: u64,
}

/// One task as its table shows it.
#[derive(Clone, Debug)]
pub(crate) struct TaskRow {
    /// The task as submitted (shared with the core; decoded only when a
    /// page asks for its key).
    pub(crate) spec: EncodedTask,
    /// `assigned`, `running`, `queued` (waiting for a retry), `done`,
    /// `failed` or `cancelled`.
    pub(crate) state: &'static str,
    /// The worker of its current or last attempt.
    pub(crate) worker: Arc<str>,
    /// The current or last attempt's number.
    pub(crate) attempt: u32,
    /// When the worker reported it started, if it did.
    pub(crate) started_ms: Option<Millis>,
    /// The last finished attempt's measurements.
    pub(crate) stats: Option<TaskStats>,
    /// The last failed attempt's error.
    pub(crate) error: Option<String>,
}

/// One attempt of the task stream.
#[derive(Clone, Debug)]
pub(crate) struct StreamEntry {
    /// Its place in the stream, counting from 1 since the start.
    pub(crate) seq: u64,
    /// The task.
    pub(crate) task: TaskId,
    /// Its job.
    pub(crate) job: JobId,
    /// Its function.
    pub(crate) function: Arc<str>,
    /// The worker that ran it.
    pub(crate) worker: Arc<str>,
    /// When it started (its end less its duration).
    pub(crate) start_ms: Millis,
    /// When the report came.
    pub(crate) end_ms: Millis,
    /// Whether it succeeded.
    pub(crate) ok: bool,
}

/// A task that failed beyond its retries.
#[derive(Clone, Debug)]
pub(crate) struct Failure {
    /// The task.
    pub(crate) task: TaskId,
    /// Its job.
    pub(crate) job: JobId,
    /// Its key.
    pub(crate) key: String,
    /// Its function.
    pub(crate) function: String,
    /// The worker of its last attempt.
    pub(crate) worker: Option<String>,
    /// Attempts made.
    pub(crate) attempts: u32,
    /// What kind of failure.
    pub(crate) kind: ErrorKind,
    /// The error text.
    pub(crate) message: String,
    /// Where its logs are.
    pub(crate) logs: String,
    /// When it failed (scheduler clock).
    pub(crate) at_ms: Millis,
}

/// A change to publish at the next refresh.
#[derive(Debug)]
enum Update {
    Assigned {
        job: JobId,
        spec: EncodedTask,
        worker: Arc<str>,
        attempt: u32,
    },
    Started {
        job: JobId,
        task: TaskId,
        attempt: u32,
        at: Millis,
    },
    Finished {
        entry: StreamEntry,
        attempt: u32,
        stats: TaskStats,
        error: Option<String>,
    },
    Final {
        job: JobId,
        task: TaskId,
        state: &'static str,
    },
    Failed(Box<Failure>),
}

/// Watches the scheduler loop for the dashboard and the metrics; owned by
/// the loop, so watching takes no lock. [`Observer::refresh`] publishes.
pub(crate) struct Observer {
    shared: Shared,
    metrics: Arc<SchedulerMetrics>,
    pending: Vec<Update>,
    /// Names of the workers tasks were sent to, while they are live.
    worker_names: HashMap<WorkerId, Arc<str>>,
    /// Function names and their duration histograms.
    functions: HashMap<String, (Arc<str>, Histogram)>,
    stream_seq: u64,
}

impl Observer {
    /// An observer publishing into `shared` and `metrics`.
    pub(crate) fn new(shared: Shared, metrics: Arc<SchedulerMetrics>) -> Observer {
        Observer {
            shared,
            metrics,
            pending: Vec::new(),
            worker_names: HashMap::new(),
            functions: HashMap::new(),
            stream_seq: 0,
        }
    }

    /// Notes an event before the core handles it.
    pub(crate) fn event(&mut self, core: &Core, now: Millis, event: &Event) {
        match event {
            Event::TaskStarted { task, attempt, .. } => {
                if let Some((job, _)) = core.task_origin(*task) {
                    self.pending.push(Update::Started {
                        job,
                        task: *task,
                        attempt: *attempt,
                        at: now,
                    });
                }
            }
            Event::TaskFinished { worker, report } => {
                let Some((job, function)) = core.task_origin(report.task) else {
                    return;
                };
                let (function, histogram) = match self.functions.get(function) {
                    Some(known) => known.clone(),
                    None => {
                        let histogram = self.metrics.function_histogram(function);
                        let known = (Arc::<str>::from(function), histogram);
                        self.functions.insert(function.to_owned(), known.clone());
                        known
                    }
                };
                let duration_ms = report.stats.duration_ms;
                histogram.observe(Duration::from_millis(duration_ms).as_secs_f64());
                let worker = self.worker_name(core, *worker);
                self.stream_seq += 1;
                let error = match &report.outcome {
                    TaskOutcome::Ok(_) => None,
                    TaskOutcome::Err(e) => Some(e.message.clone()),
                };
                self.pending.push(Update::Finished {
                    entry: StreamEntry {
                        seq: self.stream_seq,
                        task: report.task,
                        job,
                        function,
                        worker,
                        start_ms: now.saturating_sub(duration_ms),
                        end_ms: now,
                        ok: error.is_none(),
                    },
                    attempt: report.attempt,
                    stats: report.stats.clone(),
                    error,
                });
            }
            Event::WorkerLeft { worker } | Event::WorkerDrained { worker } => {
                self.worker_names.remove(worker);
            }
            _ => {}
        }
    }

    /// Notes the commands the core emitted, before they are carried out.
    pub(crate) fn commands(&mut self, core: &Core, now: Millis, commands: &[Command]) {
        for command in commands {
            match command {
                Command::Run { worker, run } => {
                    let worker = self.worker_name(core, *worker);
                    self.pending.push(Update::Assigned {
                        job: run.job,
                        spec: run.task.clone(),
                        worker,
                        attempt: run.attempt,
                    });
                }
                // The owner's copy (watchers get one too) says how it ended.
                Command::TaskDone {
                    client,
                    task,
                    outcome,
                } if *client == task.client() => {
                    let Some((job, function)) = core.task_origin(*task) else {
                        continue;
                    };
                    let state = match outcome {
                        TaskOutcome::Ok(_) => "done",
                        TaskOutcome::Err(e) if e.kind == ErrorKind::Cancelled => "cancelled",
                        TaskOutcome::Err(_) => "failed",
                    };
                    self.pending.push(Update::Final {
                        job,
                        task: *task,
                        state,
                    });
                    if let TaskOutcome::Err(error) = outcome {
                        if error.kind != ErrorKind::Cancelled {
                            let failure = failure(core, job, function, *task, error, now);
                            self.pending.push(Update::Failed(Box::new(failure)));
                        }
                    }
                }
                Command::DropWorker { worker } | Command::WorkerReplaced { worker, .. } => {
                    self.worker_names.remove(worker);
                }
                _ => {}
            }
        }
    }

    /// One turn of the scheduler loop took `took`.
    pub(crate) fn loop_turn(&self, took: Duration) {
        self.metrics.loop_turn(took);
    }

    fn worker_name(&mut self, core: &Core, worker: WorkerId) -> Arc<str> {
        if let Some(name) = self.worker_names.get(&worker) {
            return name.clone();
        }
        let name: Arc<str> = core.worker_name(worker).unwrap_or_default().into();
        self.worker_names.insert(worker, name.clone());
        name
    }

    /// Publishes what changed since the last refresh (once per tick of the
    /// scheduler loop) and sets the metrics; returns the jobs the core
    /// dropped since.
    pub(crate) fn refresh(
        &mut self,
        core: &mut Core,
        clients: usize,
        journal: Option<&WriterState>,
        now: Millis,
    ) -> Vec<JobId> {
        let updates = core.job_updates(now);
        let workers = core.workers();
        let mut snapshot = self.shared.write().unwrap_or_else(|p| p.into_inner());
        let snapshot = &mut *snapshot;
        // Rows first: a job that finished is trimmed with its last rows
        // final.
        for update in self.pending.drain(..) {
            apply(snapshot, update);
        }
        for info in updates.changed {
            self.metrics.job_changed(snapshot.jobs.get(&info.id), &info);
            if info.state != JobState::Running {
                if let Some(table) = snapshot.tasks.get_mut(&info.id) {
                    table.trim(ROWS_PER_FINISHED_JOB);
                }
            }
            snapshot.jobs.insert(info.id, info);
        }
        for job in &updates.dropped {
            snapshot.jobs.remove(job);
            snapshot.tasks.remove(job);
            self.metrics.job_dropped(*job);
        }
        snapshot.workers = workers;
        snapshot.queued = core.queued_tasks();
        snapshot.clients = clients;
        snapshot.dropped_jobs = core.dropped_jobs();
        snapshot.journal_bytes = journal.map(|j| j.bytes);
        snapshot.journal_compactions = journal.map_or(0, |j| j.compactions);
        snapshot.now_ms = now;
        self.metrics.set_totals(
            snapshot.jobs.values(),
            &Totals {
                workers: &snapshot.workers,
                clients,
                dropped_jobs: core.dropped_jobs(),
                dropped_tasks: core.dropped_tasks(),
                journal,
            },
        );
        updates.dropped
    }
}

/// A failed task's record, with where its logs are.
fn failure(
    core: &Core,
    job: JobId,
    function: &str,
    task: TaskId,
    error: &quarry_proto::TaskError,
    now: Millis,
) -> Failure {
    let status = core.task_status(task);
    let key = status.as_ref().map(|s| s.key.clone()).unwrap_or_default();
    let worker = status.as_ref().and_then(|s| s.worker.clone());
    let output = core
        .job_spec(job)
        .and_then(|spec| spec.output.as_deref())
        .map(|o| o.trim_end_matches('/').to_owned());
    let logs = match (&output, &worker) {
        (Some(output), _) if function == COMMAND_FUNCTION => {
            format!("{output}/{key}/_logs/ (stdout.log, stderr.log)")
        }
        (_, Some(worker)) => format!("the log of worker {worker} (its standard error)"),
        (_, None) => "none: no attempt ran".to_owned(),
    };
    Failure {
        task,
        job,
        key,
        function: function.to_owned(),
        worker,
        attempts: status.as_ref().map_or(0, |s| s.attempts),
        kind: error.kind,
        message: error.message.clone(),
        logs,
        at_ms: now,
    }
}

fn apply(snapshot: &mut Snapshot, update: Update) {
    match update {
        Update::Assigned {
            job,
            spec,
            worker,
            attempt,
        } => {
            let table = snapshot.tasks.entry(job).or_default();
            let id = spec.id();
            table.rows.insert(
                id,
                TaskRow {
                    spec,
                    state: "assigned",
                    worker,
                    attempt,
                    started_ms: None,
                    stats: None,
                    error: None,
                },
            );
            table.trim(ROWS_PER_RUNNING_JOB);
        }
        Update::Started {
            job,
            task,
            attempt,
            at,
        } => {
            if let Some(row) = row(snapshot, job, task, attempt) {
                row.state = "running";
                row.started_ms = Some(at);
            }
        }
        Update::Finished {
            entry,
            attempt,
            stats,
            error,
        } => {
            if let Some(row) = row(snapshot, entry.job, entry.task, attempt) {
                row.started_ms.get_or_insert(entry.start_ms);
                row.stats = Some(stats);
                // A failed attempt may be retried: it waits in the queue
                // until placed again (or its final state comes).
                row.state = if error.is_some() { "queued" } else { "done" };
                if error.is_some() {
                    row.error = error;
                }
            }
            if snapshot.stream.len() == STREAM_LEN {
                snapshot.stream.pop_front();
            }
            snapshot.stream.push_back(entry);
        }
        Update::Final { job, task, state } => {
            if let Some(table) = snapshot.tasks.get_mut(&job) {
                if let Some(row) = table.rows.get_mut(&task) {
                    row.state = state;
                    table.finished.push_back(task);
                }
            }
        }
        Update::Failed(failure) => {
            if snapshot.failures.len() == FAILURES_LEN {
                snapshot.failures.pop_front();
            }
            snapshot.failures.push_back(*failure);
        }
    }
}

/// The row of this attempt of a task, if its table has it.
fn row(snapshot: &mut Snapshot, job: JobId, task: TaskId, attempt: u32) -> Option<&mut TaskRow> {
    snapshot
        .tasks
        .get_mut(&job)?
        .rows
        .get_mut(&task)
        .filter(|row| row.attempt == attempt)
}

impl JobTasks {
    /// Lets the oldest finished rows go until at most `max` rows are left:
    /// done and cancelled rows first, failed ones only after them.
    /// Unfinished rows always stay.
    fn trim(&mut self, max: usize) {
        if self.rows.len() <= max {
            return;
        }
        let mut failed = VecDeque::new();
        while self.rows.len() > max {
            let Some(task) = self.finished.pop_front() else {
                break;
            };
            match self.rows.get(&task).map(|row| row.state) {
                Some("failed") => failed.push_back(task),
                Some(state) if is_final(state) => {
                    self.rows.remove(&task);
                    self.omitted += 1;
                }
                // Placed again since it finished, or already gone.
                _ => {}
            }
        }
        while self.rows.len() > max {
            let Some(task) = failed.pop_front() else {
                break;
            };
            self.rows.remove(&task);
            self.omitted += 1;
        }
        failed.append(&mut self.finished);
        self.finished = failed;
    }
}

fn is_final(state: &str) -> bool {
    matches!(state, "done" | "failed" | "cancelled")
}

#[cfg(test)]
mod tests {
    use super::*;
    use quarry_core::{CoreConfig, Retention};
    use quarry_proto::{
        ClientId, JobSpec, RequestId, TaskError, TaskReport, TaskSpec, Value, WorkerId,
    };

    /// A core fed through an observer, as the scheduler loop does.
    struct Loop {
        core: Core,
        observer: Observer,
        shared: Shared,
        metrics: Arc<SchedulerMetrics>,
        now: Millis,
    }

    impl Loop {
        fn new(retention: Retention) -> Loop {
            let shared = Shared::default();
            let metrics = Arc::new(SchedulerMetrics::new());
            Loop {
                core: Core::new(CoreConfig {
                    retention,
                    prefetch_per_slot: 0,
                    prefetch_unmeasured_per_slot: 0,
                    ..CoreConfig::default()
                }),
                observer: Observer::new(shared.clone(), metrics.clone()),
                shared,
                metrics,
                now: 1_000,
            }
        }

        fn send(&mut self, event: Event) -> Vec<Command> {
            self.now += 10;
            self.observer.event(&self.core, self.now, &event);
            let mut out = Vec::new();
            self.core.handle(self.now, event, &mut out);
            self.observer.commands(&self.core, self.now, &out);
            out
        }

        fn refresh(&mut self) -> Vec<JobId> {
            self.now += 10;
            self.core.handle(self.now, Event::Tick, &mut Vec::new());
            self.observer.refresh(&mut self.core, 1, None, self.now)
        }

        fn finish(&mut self, task: TaskId, attempt: u32, error: Option<&str>) {
            let outcome = match error {
                None => TaskOutcome::Ok(Value::Inline(vec![0xc0])),
                Some(message) => TaskOutcome::Err(TaskError {
                    kind: ErrorKind::Failed,
                    message: message.into(),
                }),
            };
            self.send(Event::TaskFinished {
                worker: WorkerId(1),
                report: TaskReport {
                    task,
                    attempt,
                    outcome,
                    outputs: Vec::new(),
                    stats: TaskStats {
                        duration_ms: 5,
                        bytes_from_store: 7,
                        ..TaskStats::default()
                    },
                },
            });
        }
    }

    fn job(n: u64) -> JobId {
        JobId(JobId::first_for(ClientId(1)).0 + n)
    }

    /// Opens job `n` with `tasks` tasks of `f` and seals it; returns the
    /// task ids.
    fn submit(l: &mut Loop, n: u64, tasks: u64) -> Vec<TaskId> {
        let client = ClientId(1);
        l.send(Event::JobOpened {
            client,
            request: RequestId(0),
            spec: Arc::new(JobSpec {
                id: job(n),
                name: format!("job-{n}"),
                broadcast: Vec::new(),
                output: Some("s3://bucket/out/".into()),
                context: Vec::new(),
                max_fails: None,
            }),
        });
        let ids: Vec<TaskId> = (0..tasks)
            .map(|t| TaskId(TaskId::first_for(client).0 + n * 1000 + t))
            .collect();
        l.send(Event::TasksSubmitted {
            client,
            request: RequestId(0),
            job: job(n),
            tasks: ids
                .iter()
                .enumerate()
                .map(|(t, &id)| {
                    EncodedTask::encode(&TaskSpec {
                        key: format!("key-{t}"),
                        ..TaskSpec::new(id, "quarry.command", Vec::new())
                    })
                    .unwrap()
                })
                .collect(),
        });
        l.send(Event::JobSealed {
            client,
            request: RequestId(0),
            job: job(n),
        });
        ids
    }

    #[test]
    fn rows_stream_failures_and_dropped_jobs_follow_the_loop() {
        let mut l = Loop::new(Retention {
            max_age_ms: None,
            max_jobs: Some(1),
        });
        l.send(Event::WorkerJoined {
            worker: WorkerId(1),
            name: "w1".into(),
            slots: 2,
            functions: vec!["quarry.command".into()],
            inventory: Vec::new(),
            host: String::new(),
        });
        let ids = submit(&mut l, 0, 2);
        l.send(Event::TaskStarted {
            worker: WorkerId(1),
            task: ids[0],
            attempt: 1,
        });
        l.refresh();
        {
            let s = l.shared.read().unwrap();
            let rows = &s.tasks[&job(0)].rows;
            assert_eq!(rows[&ids[0]].state, "running");
            assert_eq!(rows[&ids[1]].state, "assigned");
            assert_eq!(&*rows[&ids[1]].worker, "w1");
            assert_eq!(s.workers[0].running, vec![ids[0]]);
        }
        l.finish(ids[0], 1, None);
        l.finish(ids[1], 1, Some("boom"));
        l.refresh();
        {
            let s = l.shared.read().unwrap();
            let rows = &s.tasks[&job(0)].rows;
            assert_eq!(rows[&ids[0]].state, "done");
            assert_eq!(rows[&ids[1]].state, "failed");
            assert_eq!(rows[&ids[1]].error.as_deref(), Some("boom"));
            assert_eq!(rows[&ids[0]].stats.as_ref().unwrap().bytes_from_store, 7);
            let seqs: Vec<u64> = s.stream.iter().map(|e| e.seq).collect();
            assert_eq!(seqs, [1, 2]);
            assert!(!s.stream[1].ok);
            let failure = &s.failures[0];
            assert_eq!((failure.task, failure.key.as_str()), (ids[1], "key-1"));
            assert_eq!(
                failure.logs,
                "s3://bucket/out/key-1/_logs/ (stdout.log, stderr.log)"
            );
            assert_eq!(s.jobs[&job(0)].state, JobState::Failed);
        }
        let text = l.metrics.encode();
        assert!(text.contains(&format!("job=\"{}\"", job(0))), "{text}");
        assert!(
            text.contains(
                "quarry_scheduler_task_duration_seconds_count{function=\"quarry.command\"} 2"
            ),
            "{text}"
        );

        // A second finished job pushes the first out (one kept): its table
        // and its series go.
        let next = submit(&mut l, 1, 1);
        l.finish(next[0], 1, None);
        let dropped = l.refresh();
        assert_eq!(dropped, [job(0)]);
        let s = l.shared.read().unwrap();
        assert!(!s.tasks.contains_key(&job(0)) && !s.jobs.contains_key(&job(0)));
        assert!(s.tasks.contains_key(&job(1)));
        let text = l.metrics.encode();
        assert!(!text.contains(&format!("job=\"{}\"", job(0))), "{text}");
        assert!(text.contains(&format!("job=\"{}\"", job(1))), "{text}");
        drop(s);
        // A worker that leaves is forgotten by name too.
        l.send(Event::WorkerLeft {
            worker: WorkerId(1),
        });
        assert!(l.observer.worker_names.is_empty());
    }

    #[test]
    fn a_finished_job_keeps_its_latest_rows_only() {
        let mut l = Loop::new(Retention::default());
        let tasks = ROWS_PER_FINISHED_JOB as u64 + 200;
        l.send(Event::WorkerJoined {
            worker: WorkerId(1),
            name: "w1".into(),
            slots: tasks as u32,
            functions: vec!["quarry.command".into()],
            inventory: Vec::new(),
            host: String::new(),
        });
        let ids = submit(&mut l, 0, tasks);
        l.refresh();
        assert_eq!(
            l.shared.read().unwrap().tasks[&job(0)].rows.len(),
            ids.len()
        );
        // The job ends within one tick: its rows turn final and the table
        // is cut to the bound at the same refresh.
        for &id in &ids {
            l.finish(id, 1, None);
        }
        l.refresh();
        let s = l.shared.read().unwrap();
        assert_eq!(s.jobs[&job(0)].state, JobState::Succeeded);
        let table = &s.tasks[&job(0)];
        assert_eq!(table.rows.len(), ROWS_PER_FINISHED_JOB);
        assert_eq!(table.omitted, 200);
        assert!(
            table.rows.contains_key(ids.last().unwrap()) && !table.rows.contains_key(&ids[0]),
            "the first to finish went first"
        );
    }

    #[test]
    fn tables_and_rings_stay_bounded() {
        let spec =
            |n: u64| EncodedTask::encode(&TaskSpec::new(TaskId(n), "f", Vec::new())).unwrap();
        let mut table = JobTasks::default();
        for n in 0..10 {
            let state = match n {
                0 | 1 => "failed",
                2 => "running",
                _ => "done",
            };
            table.rows.insert(
                TaskId(n),
                TaskRow {
                    spec: spec(n),
                    state,
                    worker: "w".into(),
                    attempt: 1,
                    started_ms: None,
                    stats: None,
                    error: None,
                },
            );
            if state != "running" {
                table.finished.push_back(TaskId(n));
            }
        }
        table.trim(4);
        let mut kept: Vec<u64> = table.rows.keys().map(|t| t.0).collect();
        kept.sort();
        assert_eq!(
            kept,
            [0, 1, 2, 9],
            "failed and unfinished rows outlast done ones"
        );
        assert_eq!(table.omitted, 6);
        table.trim(1);
        assert_eq!(table.rows.keys().collect::<Vec<_>>(), [&TaskId(2)]);
        assert_eq!(table.omitted, 9);

        let mut snapshot = Snapshot::default();
        for seq in 0..(STREAM_LEN as u64 + 10) {
            apply(
                &mut snapshot,
                Update::Finished {
                    entry: StreamEntry {
                        seq,
                        task: TaskId(seq),
                        job: JobId(1),
                        function: "f".into(),
                        worker: "w".into(),
                        start_ms: 0,
                        end_ms: 1,
                        ok: true,
                    },
                    attempt: 1,
                    stats: TaskStats::default(),
                    error: None,
                },
            );
        }
        assert_eq!(snapshot.stream.len(), STREAM_LEN);
        assert_eq!(
            snapshot.stream.front().unwrap().seq,
            10,
            "the oldest go first"
        );
        for n in 0..(FAILURES_LEN as u64 + 3) {
            apply(
                &mut snapshot,
                Update::Failed(Box::new(Failure {
                    task: TaskId(n),
                    job: JobId(1),
                    key: String::new(),
                    function: "f".into(),
                    worker: None,
                    attempts: 1,
                    kind: ErrorKind::Failed,
                    message: String::new(),
                    logs: String::new(),
                    at_ms: 0,
                })),
            );
        }
        assert_eq!(snapshot.failures.len(), FAILURES_LEN);
        assert_eq!(snapshot.failures.front().unwrap().task, TaskId(3));
    }
}
