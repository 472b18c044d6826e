//! A deterministic simulation of the core at scale: 1,000 workers with 1–4
//! slots, 1,000,000 tasks in four jobs, failures with retries, a job stopped
//! by `max_fails`, cancellations, releases, and workers leaving or going
//! silent mid-run. A seeded xorshift generator decides everything, so two
//! runs with one seed must emit exactly the same commands.

mod common;

use common::{job_id, job_spec, shard, task_id};
use quarry_core::{Command, Core, CoreConfig, Event, Millis};
use quarry_proto::{
    CacheEntry, ClientId, EncodedTask, ErrorKind, JobId, JobState, RequestId, TaskError, TaskId,
    TaskOutcome, TaskReport, TaskSpec, TaskStats, Value, WorkerId,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

const WORKERS: u32 = 1_000;
const TASKS_PER_JOB: u64 = 250_000;
/// Jobs as (client, job number); client 2's second job stops after
/// `STOPPING_JOB_MAX_FAILS` failures.
const JOBS: [(u32, u64); 4] = [(1, 0), (1, 1), (2, 0), (2, 1)];
const TASKS: u64 = TASKS_PER_JOB * JOBS.len() as u64;
const STOPPING_JOB_MAX_FAILS: u64 = 50;
/// Watches job (1, 0).
const WATCHER: ClientId = ClientId(3);
const SHARDS: u64 = 5_000;
const BATCH: u64 = 10_000;

/// xorshift64: tiny, seeded, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// An attempt some simulated worker holds.
#[derive(Clone, Copy)]
struct Held {
    worker: u32,
    task: TaskId,
    attempt: u32,
    started: bool,
}

/// What a run produced, compared between two runs with one seed.
#[derive(Debug, PartialEq, Eq)]
struct Summary {
    commands: BTreeMap<&'static str, u64>,
    failed: u64,
    cancelled: u64,
    end: Millis,
}

struct Sim {
    core: Core,
    config: CoreConfig,
    now: Millis,
    rng: Rng,
    slots: Vec<u32>,
    serves_reduce: Vec<bool>,
    alive: Vec<bool>,
    silent: Vec<bool>,
    holding: Vec<u32>,
    held: Vec<Held>,
    /// By task index: cancelled while a worker held it.
    cancelled_on_worker: Vec<bool>,
    /// By worker: jobs whose context it received.
    job_sent: Vec<Vec<JobId>>,
    /// Reused command buffer.
    out: Vec<Command>,
    /// TaskDone count per task, to its owner.
    owner_done: Vec<u8>,
    owner_done_total: u64,
    watcher_done: u64,
    last_error: HashMap<TaskId, String>,
    to_release: Vec<TaskId>,
    finished_jobs: Vec<JobId>,
    summary: Summary,
}

fn task_index(id: TaskId) -> usize {
    (id.0 & ((1 << TaskId::CLIENT_SEQUENCE_BITS) - 1)) as usize
}

fn kind(command: &Command) -> &'static str {
    match command {
        Command::SendJob { .. } => "SendJob",
        Command::Run { .. } => "Run",
        Command::CancelOnWorker { .. } => "CancelOnWorker",
        Command::TaskDone { .. } => "TaskDone",
        Command::JobProgress { .. } => "JobProgress",
        Command::JobFinished { .. } => "JobFinished",
        Command::Accepted { .. } => "Accepted",
        Command::Refused { .. } => "Refused",
        Command::Record(_) => "Record",
        Command::DropWorker { .. } => "DropWorker",
        Command::WorkerReplaced { .. } => "WorkerReplaced",
    }
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let config = CoreConfig {
            heartbeat_timeout_ms: 1_000,
            prefetch_per_slot: 32,
            prefetch_work_ms: 50,
            prefetch_unmeasured_per_slot: 32,
            prefetch_short_task_ms: 20,
            locality_wait_ms: 100,
            fetch_bytes_per_second: 200_000_000,
            owner_load_cap: 1.05,
            max_worker_losses: 3,
            ..CoreConfig::default()
        };
        Sim {
            core: Core::new(config.clone()),
            config,
            now: 0,
            rng: Rng(seed),
            slots: Vec::new(),
            serves_reduce: Vec::new(),
            alive: Vec::new(),
            silent: Vec::new(),
            holding: Vec::new(),
            held: Vec::new(),
            cancelled_on_worker: vec![false; TASKS as usize],
            job_sent: Vec::new(),
            out: Vec::new(),
            owner_done: vec![0; TASKS as usize],
            owner_done_total: 0,
            watcher_done: 0,
            last_error: HashMap::new(),
            to_release: Vec::new(),
            finished_jobs: Vec::new(),
            summary: Summary {
                commands: BTreeMap::new(),
                failed: 0,
                cancelled: 0,
                end: 0,
            },
        }
    }

    fn handle(&mut self, event: Event) {
        let mut out = std::mem::take(&mut self.out);
        self.core.handle(self.now, event, &mut out);
        for command in out.drain(..) {
            self.apply(command);
        }
        self.out = out;
    }

    /// Carries out one command as the simulated cluster, checking the
    /// invariants on the way.
    fn apply(&mut self, command: Command) {
        *self.summary.commands.entry(kind(&command)).or_default() += 1;
        match command {
            Command::SendJob { worker, spec } => {
                let sent = &mut self.job_sent[worker.0 as usize];
                assert!(!sent.contains(&spec.id), "SendJob twice");
                sent.push(spec.id);
            }
            Command::Run { worker, run } => {
                let w = worker.0 as usize;
                // A silent worker may still get work until it times out.
                assert!(self.alive[w], "Run to a lost worker");
                assert!(self.job_sent[w].contains(&run.job), "Run before SendJob");
                if run.task.decode().expect("decodable").function == "reduce" {
                    assert!(self.serves_reduce[w], "reduce sent to a map-only worker");
                }
                self.holding[w] += 1;
                let limit = self.slots[w] * (1 + self.config.prefetch_per_slot);
                assert!(self.holding[w] <= limit, "worker {w} over slots + prefetch");
                self.held.push(Held {
                    worker: worker.0,
                    task: run.task.id(),
                    attempt: run.attempt,
                    started: false,
                });
            }
            Command::CancelOnWorker { worker, task } => {
                self.holding[worker.0 as usize] -= 1;
                self.cancelled_on_worker[task_index(task)] = true;
            }
            Command::TaskDone {
                client,
                task,
                outcome,
            } => {
                if client == WATCHER {
                    self.watcher_done += 1;
                    return;
                }
                assert_eq!(
                    client,
                    task.client(),
                    "TaskDone to a client that does not own it"
                );
                let count = &mut self.owner_done[task_index(task)];
                *count += 1;
                assert_eq!(*count, 1, "second TaskDone for {task}");
                self.owner_done_total += 1;
                if let TaskOutcome::Err(error) = outcome {
                    match error.kind {
                        ErrorKind::Failed => {
                            self.summary.failed += 1;
                            assert_eq!(Some(&error.message), self.last_error.get(&task));
                        }
                        ErrorKind::Cancelled => self.summary.cancelled += 1,
                        ErrorKind::WorkerLost => self.summary.failed += 1,
                        other => panic!("unexpected failure {other:?}"),
                    }
                }
                if client == ClientId(1) {
                    self.to_release.push(task);
                }
            }
            Command::JobProgress { client, .. } => assert_eq!(client, WATCHER),
            Command::JobFinished { info } => {
                assert!(!self.finished_jobs.contains(&info.id));
                self.finished_jobs.push(info.id);
            }
            Command::Refused { reason, .. } => panic!("unexpected refusal: {reason}"),
            Command::Accepted { .. } | Command::Record(_) => {}
            Command::DropWorker { worker } => {
                let w = worker.0 as usize;
                assert!(self.silent[w], "only the silent worker times out");
                self.alive[w] = false;
                self.holding[w] = 0;
            }
            Command::WorkerReplaced { name, .. } => {
                panic!("worker names are unique here: {name} was replaced")
            }
        }
    }

    fn join_worker(&mut self, id: u32) {
        let slots = 1 + self.rng.below(4) as u32;
        let serves_reduce = id.is_multiple_of(2);
        let inventory = (0..3)
            .map(|_| {
                let data = shard(&format!("part-{}", self.rng.below(SHARDS)), 1 << 20);
                CacheEntry::whole(data.object_key(), data.size)
            })
            .collect();
        self.slots.push(slots);
        self.serves_reduce.push(serves_reduce);
        self.alive.push(true);
        self.silent.push(false);
        self.holding.push(0);
        self.job_sent.push(Vec::new());
        let mut functions = vec!["map".to_string()];
        if serves_reduce {
            functions.push("reduce".to_string());
        }
        self.handle(Event::WorkerJoined {
            worker: WorkerId(id),
            name: format!("sim-{id}"),
            slots,
            functions,
            inventory,
            host: String::new(),
        });
    }

    fn make_task(&mut self, client: u32, n: u64) -> TaskSpec {
        let mut spec = TaskSpec::new(
            task_id(client, n),
            if self.rng.below(5) == 0 {
                "reduce"
            } else {
                "map"
            },
            Vec::new(),
        );
        spec.priority = self.rng.below(3) as i32;
        spec.retries = self.rng.below(3) as u32;
        if self.rng.below(50) == 0 {
            spec.cpus = 2;
        }
        if self.rng.below(10) == 0 {
            spec.inputs = vec![shard(&format!("part-{}", self.rng.below(SHARDS)), 1 << 20)];
        }
        spec
    }

    fn submit_everything(&mut self) {
        for (i, &(client, job)) in JOBS.iter().enumerate() {
            let mut spec = job_spec(client, job);
            if (client, job) == (2, 1) {
                spec.max_fails = Some(STOPPING_JOB_MAX_FAILS);
            }
            self.handle(Event::JobOpened {
                client: ClientId(client),
                request: RequestId(0),
                spec: Arc::new(spec),
            });
            let first = i as u64 * TASKS_PER_JOB;
            for batch in (first..first + TASKS_PER_JOB).step_by(BATCH as usize) {
                let tasks = (batch..batch + BATCH)
                    .map(|n| EncodedTask::encode(&self.make_task(client, n)).expect("encodable"))
                    .collect();
                self.handle(Event::TasksSubmitted {
                    client: ClientId(client),
                    request: RequestId(0),
                    job: job_id(client, job),
                    tasks,
                });
            }
            self.handle(Event::JobSealed {
                client: ClientId(client),
                request: RequestId(0),
                job: job_id(client, job),
            });
        }
        self.handle(Event::Watch {
            client: WATCHER,
            request: RequestId(0),
            job: job_id(1, 0),
        });
    }

    /// Advances the clock by one millisecond, with ticks and heartbeats.
    fn advance(&mut self) {
        self.now += 1;
        if self.now.is_multiple_of(50) {
            self.handle(Event::Tick);
        }
        if self.now.is_multiple_of(200) {
            for w in 0..self.alive.len() {
                if self.alive[w] && !self.silent[w] {
                    self.handle(Event::Heartbeat {
                        worker: WorkerId(w as u32),
                    });
                }
            }
        }
    }

    /// Things that happen at fixed steps of the run.
    fn scripted(&mut self, step: u64) {
        match step {
            300_000 => {
                self.alive[7] = false;
                self.holding[7] = 0;
                self.handle(Event::WorkerLeft {
                    worker: WorkerId(7),
                });
            }
            400_000 => {
                // Cancel a scattered hundred tasks of job (1, 1).
                let tasks = (0..100)
                    .map(|_| task_id(1, TASKS_PER_JOB + self.rng.below(TASKS_PER_JOB)))
                    .collect();
                self.handle(Event::CancelTasks {
                    client: ClientId(1),
                    request: RequestId(0),
                    tasks,
                });
            }
            600_000 => self.silent[13] = true,
            700_000 => self.join_worker(WORKERS),
            900_000 => {
                self.alive[21] = false;
                self.holding[21] = 0;
                self.handle(Event::WorkerLeft {
                    worker: WorkerId(21),
                });
            }
            _ => {}
        }
    }

    /// A simulated worker moves one attempt along: starts it, or ends it.
    fn progress_one(&mut self) {
        let i = self.rng.below(self.held.len() as u64) as usize;
        let attempt = self.held.swap_remove(i);
        let w = attempt.worker as usize;
        if !self.alive[w] || self.silent[w] || self.cancelled_on_worker[task_index(attempt.task)] {
            return; // dropped with its worker, or cancelled
        }
        let worker = WorkerId(attempt.worker);
        if !attempt.started {
            self.held.push(Held {
                started: true,
                ..attempt
            });
            self.handle(Event::TaskStarted {
                worker,
                task: attempt.task,
                attempt: attempt.attempt,
            });
            return;
        }
        self.holding[w] -= 1;
        let outcome = if self.rng.below(100) < 3 {
            let message = format!("boom in {} attempt {}", attempt.task, attempt.attempt);
            self.last_error.insert(attempt.task, message.clone());
            TaskOutcome::Err(TaskError {
                kind: ErrorKind::Failed,
                message,
            })
        } else {
            TaskOutcome::Ok(Value::Inline(vec![0xc3]))
        };
        self.handle(Event::TaskFinished {
            worker,
            report: TaskReport {
                task: attempt.task,
                attempt: attempt.attempt,
                outcome,
                outputs: Vec::new(),
                stats: TaskStats {
                    duration_ms: 1,
                    ..TaskStats::default()
                },
            },
        });
    }

    fn run(mut self) -> Summary {
        for id in 0..WORKERS {
            self.join_worker(id);
        }
        self.submit_everything();
        let mut step: u64 = 0;
        while self.owner_done_total < TASKS {
            step += 1;
            assert!(step < 20_000_000, "the simulation does not converge");
            self.scripted(step);
            if step.is_multiple_of(256) || self.held.is_empty() {
                self.advance();
            }
            if !self.held.is_empty() {
                self.progress_one();
            }
            if self.to_release.len() >= 10_000 {
                let tasks = std::mem::take(&mut self.to_release);
                self.handle(Event::Release { tasks });
            }
        }
        self.check_end();
        self.summary.end = self.now;
        self.summary
    }

    fn check_end(&self) {
        assert!(self.owner_done.iter().all(|&n| n == 1));
        assert_eq!(self.core.queued_tasks(), 0);
        assert_eq!(
            self.watcher_done, TASKS_PER_JOB,
            "the watcher saw its whole job"
        );
        assert_eq!(self.finished_jobs.len(), JOBS.len());
        for &(client, job) in &JOBS {
            let info = self.core.job_info(job_id(client, job), self.now).unwrap();
            let c = &info.counts;
            assert_eq!(c.total, TASKS_PER_JOB);
            assert_eq!(c.done + c.failed + c.cancelled, c.total, "{info:?}");
            // Some task of every job fails for good; one job was stopped.
            let expected = if (client, job) == (2, 1) {
                JobState::Cancelled
            } else {
                JobState::Failed
            };
            assert_eq!(info.state, expected, "{info:?}");
            assert!(info.tasks_local + info.tasks_remote > 0);
        }
        assert_eq!(self.core.worker_count(), WORKERS as usize + 1 - 3);
        let stopped = self.core.job_info(job_id(2, 1), self.now).unwrap();
        assert_eq!(stopped.counts.failed, STOPPING_JOB_MAX_FAILS);
    }
}

#[test]
fn a_million_tasks_on_a_thousand_workers_end_exactly_once_and_deterministically() {
    const SEED: u64 = 0x9e37_79b9_7f4a_7c15;
    // The two runs share nothing, so they may as well use two cores.
    let (first, second) = std::thread::scope(|scope| {
        let other = scope.spawn(|| Sim::new(SEED).run());
        let first = Sim::new(SEED).run();
        (first, other.join().expect("the second run panicked"))
    });
    assert!(first.failed > 1_000, "{first:?}");
    assert!(first.cancelled > 100_000, "{first:?}");
    assert_eq!(first.commands["DropWorker"], 1);
    assert_eq!(first, second);
}
