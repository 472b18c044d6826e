//! The worker process: handshake, task queue, slots, heartbeats and cache
//! inventory reports.

use crate::execute::{execute, Attempt, Finished};
use crate::inputs::Inputs;
use crate::registry::Registry;
use quarry_net::{connect, ConnectOptions, Connection, ConnectionEvent};
use quarry_proto::{
    encode_message, JobId, JobSpec, Limits, Message, Role, TaskAssignment, TaskId, PROTOCOL_VERSION,
};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::mpsc;
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// How a worker is set up.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// How to reach the scheduler.
    pub connect: ConnectOptions,
    /// The name the scheduler and dashboards show; it also seeds
    /// rendezvous placement, so keep it stable across restarts.
    pub name: String,
    /// Task slots (concurrent attempts).
    pub nthreads: u32,
    /// Shard cache directory.
    pub cache_dir: PathBuf,
    /// Shard cache capacity in bytes.
    pub cache_size: u64,
    /// Scratch space for attempts (command working directories).
    pub scratch_dir: PathBuf,
}

impl WorkerOptions {
    /// Options for a worker of `scheduler` with defaults: one slot per CPU,
    /// cache and scratch under the system temp directory, 10 GiB cache.
    pub fn new(scheduler: impl Into<String>, name: impl Into<String>) -> WorkerOptions {
        let name = name.into();
        let base = std::env::temp_dir().join("quarry").join(sanitize(&name));
        WorkerOptions {
            connect: ConnectOptions::insecure(scheduler),
            name,
            nthreads: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            cache_dir: base.join("cache"),
            cache_size: 10 << 30,
            scratch_dir: base.join("scratch"),
        }
    }
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The worker stopped with an error.
#[derive(Debug, Error)]
pub enum WorkerError {
    /// The transport could not be set up.
    #[error(transparent)]
    Net(#[from] quarry_net::NetError),
    /// The scheduler refused this worker for good (wrong key, wrong
    /// version).
    #[error("the scheduler refused this worker: {0}")]
    Refused(String),
    /// The shard cache could not be opened.
    #[error("cannot open the shard cache: {0}")]
    Cache(String),
}

/// How long to wait for a Welcome before saying Hello again.
const HELLO_RETRY: Duration = Duration::from_secs(2);
/// How often the worker ticks: cache inventory batches, heartbeats, and
/// announcing tasks that have been running for a while.
const TICK: Duration = Duration::from_millis(100);
/// Reports are sent at once when the local queue holds this few tasks.
const REPORT_LOW_WATER: usize = 4;
/// Reports are sent once this many are waiting.
const REPORT_BATCH: usize = 64;
/// Reports never wait longer than this.
const REPORT_DELAY: Duration = Duration::from_millis(2);

/// Runs a worker until `shutdown` completes or the scheduler refuses it for
/// good. Reconnects (and says Hello again) by itself after the scheduler
/// restarts.
pub async fn run_worker(
    options: WorkerOptions,
    registry: Registry,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WorkerError> {
    let inputs = Inputs::open(&options).await?;
    let (conn, mut events) = connect(options.connect.clone())?;
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let nthreads = options.nthreads.max(1);
    let mut worker = Worker {
        conn,
        options,
        registry: Arc::new(registry),
        inputs: Arc::new(inputs),
        limits: Limits::default(),
        jobs: HashMap::new(),
        queue: VecDeque::new(),
        running: HashMap::new(),
        free_slots: nthreads,
        nthreads,
        done_tx,
        registered: false,
        last_hello: None,
        heartbeat: Duration::from_secs(1),
        last_heartbeat: Instant::now(),
        outbox: Vec::new(),
        outbox_since: Instant::now(),
    };
    worker.hello();
    let mut tick = tokio::time::interval(TICK);
    tokio::pin!(shutdown);
    loop {
        let report_deadline = tokio::time::Instant::from_std(worker.outbox_since + REPORT_DELAY);
        tokio::select! {
            event = events.recv() => match event {
                Some(event) => worker.on_event(event)?,
                None => return Ok(()),
            },
            Some(finished) = done_rx.recv() => {
                worker.on_finished(finished);
                while let Ok(more) = done_rx.try_recv() {
                    worker.on_finished(more);
                }
                worker.start_queued();
            }
            _ = tokio::time::sleep_until(report_deadline), if !worker.outbox.is_empty() => {}
            _ = tick.tick() => worker.on_tick(),
            _ = &mut shutdown => {
                info!("worker shutting down");
                worker.flush(true);
                return Ok(());
            }
        }
        worker.flush(false);
    }
}

struct Running {
    cancel: watch::Sender<bool>,
    cpus: u32,
    attempt: u32,
    started: Instant,
    /// Whether the scheduler was told it runs. Short tasks never are: their
    /// report says it all, and skipping the message halves the traffic.
    announced: bool,
}

struct Worker {
    conn: Connection,
    options: WorkerOptions,
    registry: Arc<Registry>,
    inputs: Arc<Inputs>,
    limits: Limits,
    jobs: HashMap<JobId, Arc<JobSpec>>,
    queue: VecDeque<TaskAssignment>,
    running: HashMap<TaskId, Running>,
    free_slots: u32,
    nthreads: u32,
    done_tx: mpsc::UnboundedSender<Finished>,
    registered: bool,
    last_hello: Option<Instant>,
    heartbeat: Duration,
    last_heartbeat: Instant,
    outbox: Vec<Vec<u8>>,
    outbox_since: Instant,
}

/// Tasks running longer than this are announced to the scheduler (so that
/// status shows them as running).
const ANNOUNCE_AFTER: Duration = Duration::from_millis(100);

impl Worker {
    /// Queues a message for the next [`Worker::flush`].
    fn send(&mut self, message: &Message) {
        match encode_message(message) {
            Ok(bytes) => {
                if self.outbox.is_empty() {
                    self.outbox_since = Instant::now();
                }
                self.outbox.push(bytes);
            }
            Err(e) => warn!("cannot encode {}: {e}", message.kind()),
        }
    }

    /// Sends what is queued when it is worth a frame: while the local
    /// queue still holds work, reports gather into batches (the scheduler
    /// then answers each batch with one batch of new tasks); when the queue
    /// runs low, or a report has waited `REPORT_DELAY`, they go at once, so
    /// a lone task's round trip is not delayed.
    fn flush(&mut self, force: bool) {
        let due = force
            || self.queue.len() <= REPORT_LOW_WATER
            || self.outbox.len() >= REPORT_BATCH
            || self.outbox_since.elapsed() >= REPORT_DELAY;
        if due && !self.outbox.is_empty() {
            self.conn.send_batch(std::mem::take(&mut self.outbox));
        }
    }

    fn hello(&mut self) {
        self.last_hello = Some(Instant::now());
        self.send(&Message::Hello {
            version: PROTOCOL_VERSION,
            role: Role::Worker,
            name: self.options.name.clone(),
            slots: self.nthreads,
            // Every worker also runs command tasks; the scheduler places a
            // task only on workers that announce its function.
            functions: self
                .registry
                .names()
                .into_iter()
                .chain([crate::command::COMMAND_FUNCTION.to_owned()])
                .collect(),
            inventory: self.inputs.inventory(),
        });
    }

    fn on_event(&mut self, event: ConnectionEvent) -> Result<(), WorkerError> {
        match event {
            ConnectionEvent::Frame(Ok(envelope)) => {
                for message in envelope.messages {
                    self.on_message(message)?;
                }
                self.start_queued();
            }
            ConnectionEvent::Frame(Err(e)) => warn!("undecodable frame from the scheduler: {e}"),
            ConnectionEvent::HandshakeFailed(reason) => return Err(WorkerError::Refused(reason)),
            ConnectionEvent::Disconnected => {
                warn!("lost the connection to the scheduler; reconnecting")
            }
            ConnectionEvent::Connected => debug!("connected to the scheduler"),
        }
        Ok(())
    }

    fn on_message(&mut self, message: Message) -> Result<(), WorkerError> {
        match message {
            Message::Welcome {
                worker,
                limits,
                heartbeat_ms,
                ..
            } => {
                if !self.registered {
                    info!(worker = ?worker, name = %self.options.name, "registered with the scheduler");
                }
                self.registered = true;
                self.limits = limits;
                self.heartbeat = Duration::from_millis(heartbeat_ms.max(50));
            }
            Message::Rejected { reason, fatal } => {
                if fatal {
                    return Err(WorkerError::Refused(reason));
                }
                // The scheduler forgot us (restart, or declared us lost):
                // what it had assigned is requeued there, so start afresh.
                warn!("{reason}; registering again");
                self.reset();
                self.hello();
            }
            Message::Job(spec) => {
                self.jobs.insert(spec.id, spec);
            }
            Message::Run(assignment) => self.queue.push_back(assignment),
            Message::CancelTask { task } => self.cancel(task),
            Message::Error { message } => warn!("scheduler: {message}"),
            other => debug!("ignoring {} from the scheduler", other.kind()),
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.registered = false;
        self.queue.clear();
        for (_, running) in self.running.drain() {
            let _ = running.cancel.send(true);
        }
        self.free_slots = self.nthreads;
    }

    fn cancel(&mut self, task: TaskId) {
        self.queue.retain(|a| a.task.id != task);
        if let Some(running) = self.running.remove(&task) {
            // A Rust function already inside its thread runs to completion;
            // its result is discarded. Commands are killed.
            let _ = running.cancel.send(true);
            self.free_slots += running.cpus;
        }
    }

    fn on_tick(&mut self) {
        if !self.registered {
            if self.last_hello.is_none_or(|t| t.elapsed() >= HELLO_RETRY) {
                self.hello();
            }
            return;
        }
        if self.last_heartbeat.elapsed() >= self.heartbeat {
            self.last_heartbeat = Instant::now();
            self.send(&Message::Heartbeat);
        }
        let due: Vec<(TaskId, u32)> = self
            .running
            .iter_mut()
            .filter(|(_, r)| !r.announced && r.started.elapsed() >= ANNOUNCE_AFTER)
            .map(|(task, r)| {
                r.announced = true;
                (*task, r.attempt)
            })
            .collect();
        for (task, attempt) in due {
            self.send(&Message::TaskStarted { task, attempt });
        }
        let (added, evicted) = self.inputs.take_delta();
        if !added.is_empty() || !evicted.is_empty() {
            self.send(&Message::CacheDelta { added, evicted });
        }
    }

    fn start_queued(&mut self) {
        while let Some(next) = self.queue.front() {
            let cpus = next.task.cpus.clamp(1, self.nthreads);
            if cpus > self.free_slots {
                break;
            }
            let Some(assignment) = self.queue.pop_front() else {
                break;
            };
            let Some(job) = self.jobs.get(&assignment.job).cloned() else {
                warn!(task = %assignment.task.id, "task for an unknown job; dropping it");
                continue;
            };
            self.free_slots -= cpus;
            let task = assignment.task.id;
            let attempt_number = assignment.attempt;
            let (cancel, cancelled) = watch::channel(false);
            let attempt = Attempt {
                assignment,
                job,
                registry: self.registry.clone(),
                inputs: self.inputs.clone(),
                limits: self.limits.clone(),
                scratch_root: self.options.scratch_dir.clone(),
            };
            let done = self.done_tx.clone();
            let runtime = tokio::runtime::Handle::current();
            // One hop to a blocking-pool thread runs the whole attempt: the
            // function itself blocks, and its async parts (staging, uploads)
            // run there too, instead of bouncing between threads.
            tokio::task::spawn_blocking(move || {
                let report = runtime.block_on(execute(attempt, cancelled));
                let _ = done.send(Finished { report, cpus });
            });
            self.running.insert(
                task,
                Running {
                    cancel,
                    cpus,
                    attempt: attempt_number,
                    started: Instant::now(),
                    announced: false,
                },
            );
        }
    }

    fn on_finished(&mut self, finished: Finished) {
        // A task cancelled meanwhile has already given its slots back.
        if self.running.remove(&finished.report.task).is_some() {
            self.free_slots += finished.cpus;
            self.send(&Message::TaskFinished(finished.report));
        }
    }
}
