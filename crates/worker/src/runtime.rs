//! The worker process: handshake, task queue, slots, heartbeats and cache
//! inventory reports.

use crate::inputs::Inputs;
use crate::registry::Registry;
use crate::slots::{SlotEnv, Slots};
use quarry_cache::CacheConfig;
use quarry_net::{connect, ConnectOptions, Connection, ConnectionEvent};
use quarry_proto::{
    encode_message, JobId, JobSpec, Limits, Message, Role, TaskAssignment, PROTOCOL_VERSION,
};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;
use tracing::{debug, info, warn};

/// How a worker is set up.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// How to reach the scheduler.
    pub connect: ConnectOptions,
    /// The name the scheduler and dashboards show; it also seeds
    /// rendezvous placement, so keep it stable across restarts.
    pub name: String,
    /// The machine's host name, sent to the scheduler so that tasks whose
    /// data lies on this host (HDFS replicas) are placed here first.
    pub host: String,
    /// Task slots (concurrent attempts).
    pub nthreads: u32,
    /// Shard cache directory.
    pub cache_dir: PathBuf,
    /// Shard cache capacity in bytes.
    pub cache_size: u64,
    /// Runs of missing blocks larger than this are downloaded as parallel
    /// ranged GETs (one per block).
    pub parallel_get_threshold: u64,
    /// The shard cache's block size.
    pub cache_block_size: u64,
    /// Hash every cached block on every hit (not only after restarts and
    /// outside modifications).
    pub verify_cache_checksums: bool,
    /// Most input bytes fetched ahead for queued tasks at once.
    pub prefetch_bytes: u64,
    /// Scratch space for attempts (command working directories).
    pub scratch_dir: PathBuf,
    /// Drain after this long (plus up to `lifetime_stagger`), as
    /// dask-worker's `--lifetime` does: for walltime-limited allocations.
    pub lifetime: Option<Duration>,
    /// A random extra up to this much on `lifetime`, so that workers
    /// started together do not all leave at once.
    pub lifetime_stagger: Duration,
    /// How long a draining worker waits for its running tasks before it
    /// gives them back unfinished.
    pub drain_grace: Duration,
    /// Where to serve Prometheus `/metrics` (cache, downloads, slots), if
    /// anywhere.
    pub metrics_addr: Option<SocketAddr>,
    /// The Python interpreter each slot keeps warm for Python tasks
    /// (`quarry.python`); it needs cloudpickle. A bare name is looked up on
    /// `PATH`.
    pub python: PathBuf,
}

impl WorkerOptions {
    /// Options for a worker of `scheduler` with defaults: this machine's
    /// host name, one slot per CPU, cache and scratch under the system temp
    /// directory, 10 GiB cache.
    pub fn new(scheduler: impl Into<String>, name: impl Into<String>) -> WorkerOptions {
        let name = name.into();
        let base = std::env::temp_dir().join("quarry").join(sanitize(&name));
        WorkerOptions {
            connect: ConnectOptions::insecure(scheduler),
            name,
            host: machine_host_name().unwrap_or_default(),
            nthreads: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            cache_dir: base.join("cache"),
            cache_size: 10 << 30,
            parallel_get_threshold: CacheConfig::new(0).parallel_threshold,
            cache_block_size: CacheConfig::new(0).block_size,
            verify_cache_checksums: false,
            prefetch_bytes: DEFAULT_PREFETCH_BYTES,
            scratch_dir: base.join("scratch"),
            lifetime: None,
            lifetime_stagger: Duration::ZERO,
            drain_grace: DEFAULT_DRAIN_GRACE,
            metrics_addr: None,
            python: PathBuf::from(DEFAULT_PYTHON),
        }
    }
}

/// The default [`WorkerOptions::python`].
pub const DEFAULT_PYTHON: &str = "python3";

/// How long a drained worker waits for the scheduler to acknowledge it.
const FAREWELL_WAIT: Duration = Duration::from_secs(5);

/// How long a drain waits for the threads of abandoned attempts to return.
const ABANDON_WAIT: Duration = Duration::from_secs(2);

/// The default [`WorkerOptions::drain_grace`].
pub const DEFAULT_DRAIN_GRACE: Duration = Duration::from_secs(30);

/// The kernel's host name, if it has one.
pub fn machine_host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
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

/// Input bytes a worker fetches ahead for its queued tasks by default.
pub const DEFAULT_PREFETCH_BYTES: u64 = 256 * 1024 * 1024;

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
    /// The slot threads could not be started.
    #[error("cannot start the worker's slot threads: {0}")]
    Slots(String),
    /// The metrics address could not be bound.
    #[error("cannot serve worker metrics on {addr}: {source}")]
    Metrics {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
}

/// How long to wait for a Welcome before saying Hello again, at first;
/// doubled after each unanswered Hello, up to [`MAX_HELLO_RETRY`].
const FIRST_HELLO_RETRY: Duration = Duration::from_millis(250);
const MAX_HELLO_RETRY: Duration = Duration::from_secs(5);
/// How often the worker ticks: cache inventory batches, heartbeats, and
/// announcing tasks that have been running for a while.
const TICK: Duration = Duration::from_millis(100);

/// Runs a worker until it has drained or the scheduler refuses it for
/// good. It drains (finishes what runs, gives back what is queued, then
/// returns) when `shutdown` completes, when the scheduler asks (`quarry
/// drain`), or at the end of its lifetime. Reconnects (and says Hello
/// again) by itself after the scheduler restarts.
pub async fn run_worker(
    options: WorkerOptions,
    registry: Registry,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WorkerError> {
    let inputs = Arc::new(Inputs::open(&options).await?);
    let (conn, mut events) = connect(options.connect.clone())?;
    let nthreads = options.nthreads.max(1);
    let registry = Arc::new(registry);
    let slots = Slots::start(
        nthreads,
        SlotEnv {
            registry: registry.clone(),
            inputs: inputs.clone(),
            scratch_root: options.scratch_dir.clone(),
            python: Arc::new(options.python.clone()),
            runtime: tokio::runtime::Handle::current(),
            conn: conn.clone(),
        },
    )
    .map_err(|e| WorkerError::Slots(e.to_string()))?;
    if let Some(addr) = options.metrics_addr {
        let collector = crate::metrics::WorkerCollector {
            name: options.name.clone(),
            cache: inputs.cache().clone(),
            slots: slots.probe(),
        };
        let bound = crate::metrics::serve(addr, collector)
            .await
            .map_err(|source| WorkerError::Metrics { addr, source })?;
        info!("worker metrics at http://{bound}/metrics");
    }
    let lifetime_end = options.lifetime.map(|lifetime| {
        let stagger = options.lifetime_stagger.mul_f64(rand::random::<f64>());
        Instant::now() + lifetime + stagger
    });
    let mut worker = Worker {
        conn,
        options,
        registry,
        inputs,
        slots,
        limits: Limits::default(),
        jobs: HashMap::new(),
        nthreads,
        registered: false,
        last_hello: None,
        hello_retry: FIRST_HELLO_RETRY,
        heartbeat: Duration::from_secs(1),
        last_heartbeat: Instant::now(),
        outbox: Vec::new(),
        drain_deadline: None,
        farewell: None,
        farewell_acknowledged: false,
    };
    worker.hello();
    let mut tick = tokio::time::interval(TICK);
    tokio::pin!(shutdown);
    let mut shutdown_seen = false;
    loop {
        let report_deadline = worker.slots.report_deadline();
        tokio::select! {
            event = events.recv() => match event {
                Some(event) => worker.on_event(event)?,
                None => return Ok(()),
            },
            _ = worker.slots.reports_waiting() => {}
            _ = sleep_until_some(report_deadline), if report_deadline.is_some() => {}
            _ = tick.tick() => {
                if lifetime_end.is_some_and(|end| Instant::now() >= end) {
                    worker.start_drain("its --lifetime is over");
                }
                worker.on_tick();
            }
            _ = &mut shutdown, if !shutdown_seen => {
                shutdown_seen = true;
                worker.start_drain("asked to stop");
            }
        }
        if worker.drained() {
            return Ok(());
        }
        worker.flush(false);
    }
}

async fn sleep_until_some(deadline: Option<Instant>) {
    if let Some(deadline) = deadline {
        tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await;
    }
}

struct Worker {
    conn: Connection,
    options: WorkerOptions,
    registry: Arc<Registry>,
    inputs: Arc<Inputs>,
    slots: Slots,
    limits: Limits,
    jobs: HashMap<JobId, Arc<JobSpec>>,
    nthreads: u32,
    registered: bool,
    last_hello: Option<Instant>,
    /// How long to wait for the Welcome to the last Hello.
    hello_retry: Duration,
    heartbeat: Duration,
    last_heartbeat: Instant,
    outbox: Vec<Vec<u8>>,
    /// While draining: when running tasks are given back unfinished.
    drain_deadline: Option<Instant>,
    /// When `Drained` was sent; the worker leaves once the scheduler
    /// acknowledges it (so that it is not lost with the socket) or after
    /// [`FAREWELL_WAIT`].
    farewell: Option<Instant>,
    /// The scheduler acknowledged `Drained`.
    farewell_acknowledged: bool,
}

/// Tasks running longer than this are announced to the scheduler (so that
/// status shows them as running).
const ANNOUNCE_AFTER: Duration = Duration::from_millis(100);

impl Worker {
    /// Queues a message for the next [`Worker::flush`].
    fn send(&mut self, message: &Message) {
        match encode_message(message) {
            Ok(bytes) => self.outbox.push(bytes),
            Err(e) => warn!("cannot encode {}: {e}", message.kind()),
        }
    }

    /// Sends what is queued, and the task reports that are due (most
    /// leave from the slot threads; these are the ones that waited).
    fn flush(&mut self, force: bool) {
        self.slots.send_reports(force);
        if !self.outbox.is_empty() {
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
            // Every worker also runs command and Python tasks; the
            // scheduler places a task only on workers that announce its
            // function.
            functions: self
                .registry
                .names()
                .into_iter()
                .chain([
                    crate::command::COMMAND_FUNCTION.to_owned(),
                    crate::python::PYTHON_FUNCTION.to_owned(),
                ])
                .collect(),
            inventory: self.inputs.inventory(),
            host: self.options.host.clone(),
            resume: None,
        });
    }

    fn on_event(&mut self, event: ConnectionEvent) -> Result<(), WorkerError> {
        match event {
            ConnectionEvent::Frame(Ok(envelope)) => {
                let mut runs = Vec::new();
                for message in envelope.messages {
                    match message {
                        Message::Run(run) => match run.decode() {
                            Ok(assignment) => runs.push(assignment),
                            Err(e) => warn!("undecodable task from the scheduler: {e}"),
                        },
                        other => self.on_message(other)?,
                    }
                }
                self.start(runs);
            }
            ConnectionEvent::Frame(Err(e)) => warn!("undecodable frame from the scheduler: {e}"),
            ConnectionEvent::HandshakeFailed(reason) => return Err(WorkerError::Refused(reason)),
            ConnectionEvent::Disconnected => {
                warn!("lost the connection to the scheduler; reconnecting")
            }
            ConnectionEvent::Connected => {
                debug!("connected to the scheduler");
                if self.registered {
                    // A new connection (the scheduler restarted?): the next
                    // message learns whether it still knows this worker.
                    self.send(&Message::Heartbeat);
                } else {
                    self.hello_retry = FIRST_HELLO_RETRY;
                    self.hello();
                }
            }
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
                if self.drain_deadline.is_some() {
                    // A scheduler met after the drain began (it restarted)
                    // must not send work either.
                    self.send(&Message::Draining);
                }
                self.hello_retry = FIRST_HELLO_RETRY;
                self.limits = limits;
                self.heartbeat = Duration::from_millis(heartbeat_ms.max(50));
            }
            Message::Rejected { reason, fatal } => {
                if fatal {
                    return Err(WorkerError::Refused(reason));
                }
                // The scheduler forgot us (restart, or declared us lost):
                // what it had assigned is requeued there, so start afresh,
                // once. The messages sent before the new Hello are refused
                // too; those refusals change nothing.
                if self.registered {
                    warn!("{reason}; registering again");
                    self.reset();
                    self.hello_retry = FIRST_HELLO_RETRY;
                    self.hello();
                }
            }
            Message::Job(spec) => {
                self.jobs.insert(spec.id, spec);
            }
            Message::CancelTask { task } => self.slots.cancel(task),
            Message::Drain => self.start_drain("the scheduler asked (quarry drain)"),
            Message::Drained => self.farewell_acknowledged = true,
            Message::Error { message } => warn!("scheduler: {message}"),
            other => debug!("ignoring {} from the scheduler", other.kind()),
        }
        Ok(())
    }

    /// Starts draining (once): nothing new is started, queued tasks are
    /// dropped, and the scheduler is told to send nothing more.
    fn start_drain(&mut self, why: &str) {
        if self.drain_deadline.is_some() {
            return;
        }
        let grace = self.options.drain_grace;
        info!(
            running = self.slots.running(),
            grace = ?grace,
            "draining: {why}; finishing the running tasks, then leaving"
        );
        self.drain_deadline = Some(Instant::now() + grace);
        self.slots.drain();
        self.send(&Message::Draining);
    }

    /// Whether a drain is over: the last reports and `Drained` were sent,
    /// and the scheduler acknowledged them (or is not there to). Tasks
    /// still running at the deadline are given back: stopped, their
    /// reports dropped, and requeued by the scheduler.
    fn drained(&mut self) -> bool {
        let Some(deadline) = self.drain_deadline else {
            return false;
        };
        if let Some(sent) = self.farewell {
            return self.farewell_acknowledged
                || !self.registered
                || sent.elapsed() >= FAREWELL_WAIT;
        }
        if self.slots.running() > 0 {
            let now = Instant::now();
            if now < deadline {
                return false;
            }
            let abandoned = self.slots.abandon_running();
            if abandoned > 0 {
                warn!(
                    abandoned,
                    "drain grace over: giving back the tasks still running"
                );
            }
            // A killed command's thread returns at once; waiting for it
            // keeps a requeued task from running beside its predecessor.
            if now < deadline + ABANDON_WAIT {
                return false;
            }
        }
        self.flush(true);
        self.send(&Message::Drained);
        self.flush(true);
        info!("drained; leaving");
        self.farewell = Some(Instant::now());
        !self.registered
    }

    fn reset(&mut self) {
        self.registered = false;
        self.slots.reset();
    }

    fn on_tick(&mut self) {
        if !self.registered {
            if self
                .last_hello
                .is_none_or(|t| t.elapsed() >= self.hello_retry)
            {
                if self.last_hello.is_some() {
                    self.hello_retry = (self.hello_retry * 2).min(MAX_HELLO_RETRY);
                }
                self.hello();
            }
            return;
        }
        if self.last_heartbeat.elapsed() >= self.heartbeat {
            self.last_heartbeat = Instant::now();
            self.send(&Message::Heartbeat);
        }
        for (task, attempt) in self.slots.take_unannounced(ANNOUNCE_AFTER) {
            self.send(&Message::TaskStarted { task, attempt });
        }
        let (added, evicted) = self.inputs.take_delta();
        if !added.is_empty() || !evicted.is_empty() {
            self.send(&Message::CacheDelta { added, evicted });
        }
    }

    /// Hands assigned tasks to the slots, with their job specs (sent
    /// before any of the job's tasks).
    fn start(&mut self, runs: Vec<TaskAssignment>) {
        let tasks: Vec<(TaskAssignment, Arc<JobSpec>)> = runs
            .into_iter()
            .filter_map(|assignment| match self.jobs.get(&assignment.job) {
                Some(job) => Some((assignment, job.clone())),
                None => {
                    warn!(task = %assignment.task.id, "task for an unknown job; dropping it");
                    None
                }
            })
            .collect();
        self.slots.push(tasks, &self.limits);
    }
}
