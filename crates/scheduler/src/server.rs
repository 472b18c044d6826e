//! The scheduler loop: frames in, events to the core, its commands out.
//! Who peers are lives in `peers`, what is let in in `admission`, how
//! commands become messages in `routing`, manifests in `manifests`, the
//! journal in `journaling`.

use crate::admission::{check_hello, check_submission, HelloFields, HelloLimits, Refusal};
use crate::dashboard::{self, Dashboard, Observer};
use crate::journaling::{Held, JournalConfig, Journaling, Target};
use crate::manifests::{Manifests, Written};
use crate::metrics::SchedulerMetrics;
use crate::peers::{Peer, Peers};
use crate::routing::{carry_out, Outbox};
use quarry_core::{Command, Core, CoreConfig, Event, Millis};
use quarry_journal::{JournalError, Record};
use quarry_net::{bind, CurveServerKeys, Incoming, PeerId, Server, ServerOptions};
use quarry_proto::{
    ClientId, ClientSession, Envelope, JobId, JobState, Limits, Message, Role, WorkerId,
    WorkerInfo, PROTOCOL_VERSION,
};
use quarry_store::StoreResolver;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

/// How a scheduler is set up.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// ZeroMQ endpoint to listen on.
    pub listen: String,
    /// Limits enforced on every peer.
    pub limits: Limits,
    /// Caps on the names a Hello registers.
    pub hello_limits: HelloLimits,
    /// CURVE keys; `None` runs without authentication.
    pub curve: Option<CurveServerKeys>,
    /// Core tunables (heartbeat timeout, prefetch, locality wait,
    /// retention).
    pub core: CoreConfig,
    /// How often peers must send heartbeats.
    pub heartbeat_interval: Duration,
    /// Where the HTTP dashboard listens, if anywhere.
    pub dashboard: Option<SocketAddr>,
    /// The journal, if any: without one, a restarted scheduler starts
    /// empty.
    pub journal: Option<JournalConfig>,
}

impl SchedulerConfig {
    /// A configuration for `listen` with defaults everywhere else (and no
    /// journal).
    pub fn new(listen: impl Into<String>) -> SchedulerConfig {
        SchedulerConfig {
            listen: listen.into(),
            limits: Limits::default(),
            hello_limits: HelloLimits::default(),
            curve: None,
            core: CoreConfig::default(),
            heartbeat_interval: Duration::from_secs(1),
            dashboard: None,
            journal: None,
        }
    }
}

/// The scheduler could not start, or stopped with an error.
#[derive(Debug, Error)]
pub enum SchedulerError {
    /// The control-plane socket could not be set up.
    #[error(transparent)]
    Net(#[from] quarry_net::NetError),
    /// The dashboard could not bind.
    #[error("cannot start the dashboard on {addr}: {source}")]
    Dashboard {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// The journal could not be read or written. A scheduler whose journal
    /// fails stops: it could no longer promise that what it accepts
    /// survives a crash.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// A running scheduler. Dropping it leaves the scheduler running; call
/// [`SchedulerHandle::shutdown`] to stop it.
pub struct SchedulerHandle {
    endpoint: String,
    dashboard: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), SchedulerError>>,
}

impl SchedulerHandle {
    /// The bound control-plane endpoint (with the real port).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The bound dashboard address, if any.
    pub fn dashboard(&self) -> Option<SocketAddr> {
        self.dashboard
    }

    /// Stops the scheduler and waits for it (and for its journal to be
    /// synced).
    pub async fn shutdown(mut self) -> Result<(), SchedulerError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.unwrap_or(Ok(()))
    }

    /// Waits until the scheduler stops: when shut down, or when its journal
    /// fails.
    pub async fn wait(self) -> Result<(), SchedulerError> {
        self.task.await.unwrap_or(Ok(()))
    }

    /// Resolves if the scheduler stops by itself (its journal failed),
    /// with why; then the handle is spent (do not also shut it down).
    pub async fn stopped(&mut self) -> Result<(), SchedulerError> {
        (&mut self.task).await.unwrap_or(Ok(()))
    }
}

/// Milliseconds since the Unix epoch, counted on a monotonic clock from
/// the start: times in a journal compare across restarts, and a clock
/// step while running moves nothing.
struct Clock {
    epoch_ms_at_start: Millis,
    started: Instant,
}

impl Clock {
    fn start() -> Clock {
        Clock {
            epoch_ms_at_start: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as Millis),
            started: Instant::now(),
        }
    }

    fn now(&self) -> Millis {
        self.epoch_ms_at_start + self.started.elapsed().as_millis() as Millis
    }
}

/// Binds the control plane (and dashboard), replays the journal if there
/// is one, and starts the scheduler loop on the current tokio runtime.
pub async fn start(config: SchedulerConfig) -> Result<SchedulerHandle, SchedulerError> {
    let (server, incoming) = bind(ServerOptions {
        listen: config.listen.clone(),
        limits: config.limits.clone(),
        curve: config.curve.clone(),
        hwm: quarry_net::DEFAULT_HWM,
    })?;
    let endpoint = server.endpoint().to_string();
    let shown = Dashboard {
        snapshot: Arc::new(RwLock::new(Default::default())),
        metrics: Arc::new(SchedulerMetrics::new()),
    };
    let dashboard = match config.dashboard {
        Some(addr) => Some(
            dashboard::serve(addr, shown.clone())
                .await
                .map_err(|source| SchedulerError::Dashboard { addr, source })?,
        ),
        None => None,
    };
    let clock = Clock::start();
    let (manifests, written) = Manifests::new(StoreResolver::from_env());
    let mut shell = Shell {
        core: Core::new(CoreConfig {
            record_changes: config.journal.is_some(),
            ..config.core.clone()
        }),
        server,
        limits: config.limits.clone(),
        hello_limits: config.hello_limits.clone(),
        heartbeat_interval: config.heartbeat_interval,
        client_timeout_ms: config.core.heartbeat_timeout_ms,
        clock,
        peers: Peers::default(),
        manifests,
        commands: Vec::new(),
        outbox: Outbox::default(),
        // Without a dashboard nothing reads the snapshot or the metrics.
        observer: dashboard.map(|_| Observer::new(shown.snapshot, shown.metrics)),
        turn_started: None,
        journal: None,
    };
    if let Some(journal) = &config.journal {
        shell.restore(journal)?;
    }
    info!(
        endpoint = %endpoint,
        curve = config.curve.is_some(),
        journal = ?config.journal.as_ref().map(|j| j.path.display().to_string()),
        "scheduler listening"
    );
    let (stop_tx, stop_rx) = oneshot::channel();
    let task = tokio::spawn(shell.run(incoming, written, stop_rx));
    Ok(SchedulerHandle {
        endpoint,
        dashboard,
        stop: Some(stop_tx),
        task,
    })
}

struct Shell {
    core: Core,
    server: Server,
    limits: Limits,
    hello_limits: HelloLimits,
    heartbeat_interval: Duration,
    client_timeout_ms: u64,
    clock: Clock,
    peers: Peers,
    manifests: Manifests,
    commands: Vec<Command>,
    outbox: Outbox,
    /// Watches for the dashboard and the metrics, when there is one.
    observer: Option<Observer>,
    /// When this turn of the loop began handling messages or a tick.
    turn_started: Option<Instant>,
    journal: Option<Journaling>,
}

/// How often the core gets a `Tick` (timeouts, locality waits, progress,
/// retention).
const TICK: Duration = Duration::from_millis(200);

impl Shell {
    fn now(&self) -> Millis {
        self.clock.now()
    }

    /// Replays the journal: jobs and results come back, tasks that were
    /// in flight are queued again, sessions wait for their clients, and
    /// finished jobs whose manifest was not written get it written.
    fn restore(&mut self, config: &JournalConfig) -> Result<(), SchedulerError> {
        let started = Instant::now();
        let (journaling, recovery) = Journaling::open(config, &mut self.core)?;
        let now = self.now();
        let unwritten: Vec<_> = self
            .core
            .jobs(now)
            .into_iter()
            .filter(|job| job.state != JobState::Running && !journaling.has_manifest(job.id))
            .collect();
        let restored = self.core.finish_replay(now, &mut self.commands);
        for info in &unwritten {
            self.manifests.job_finished(info, &self.core);
        }
        self.peers
            .restore_sessions(recovery.sessions.into_values(), recovery.next_client, now);
        if restored.skipped > 0 {
            warn!(
                journal = %config.path.display(),
                "{} journal changes named jobs or tasks the replay did not have, or tasks it \
                 could not read; they were skipped",
                restored.skipped
            );
        }
        info!(
            journal = %config.path.display(),
            records = recovery.read.records,
            jobs = restored.jobs,
            tasks = restored.tasks,
            finished = restored.finished,
            requeued = restored.requeued,
            skipped = restored.skipped,
            torn_bytes = recovery.read.torn_bytes,
            seconds = started.elapsed().as_secs_f64(),
            "journal replayed"
        );
        self.journal = Some(journaling);
        Ok(())
    }

    async fn run(
        mut self,
        mut incoming: mpsc::Receiver<Incoming>,
        mut written: mpsc::UnboundedReceiver<Written>,
        mut stop: oneshot::Receiver<()>,
    ) -> Result<(), SchedulerError> {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Whatever the replay emitted (finished jobs) goes out first.
        self.flush(false);
        let result = loop {
            let mut ticked = false;
            tokio::select! {
                frame = incoming.recv() => match frame {
                    Some(frame) => {
                        self.on_frame(frame);
                        // Drain whatever else is already queued before
                        // flushing, so replies batch.
                        while let Ok(frame) = incoming.try_recv() {
                            self.on_frame(frame);
                        }
                    }
                    None => break Ok(()),
                },
                _ = tick.tick() => {
                    self.on_tick();
                    ticked = true;
                }
                Some((job, result)) = written.recv() => self.on_manifest_written(job, result),
                _ = journal_progressed(&mut self.journal) => {
                    if let Err(e) = self.on_journal_progress() {
                        break Err(e);
                    }
                }
                _ = &mut stop => break Ok(()),
            }
            self.flush(ticked);
        };
        if let Err(e) = &result {
            error!("the scheduler stops: {e}");
        }
        if let Some(journal) = self.journal.take() {
            journal.close()?;
        }
        info!("scheduler stopped");
        result
    }

    fn apply(&mut self, event: Event) {
        let now = self.now();
        if let Some(observer) = &mut self.observer {
            observer.event(&self.core, now, &event);
        }
        self.core.handle(now, event, &mut self.commands);
    }

    fn on_tick(&mut self) {
        self.turn_started.get_or_insert_with(Instant::now);
        let now = self.now();
        for client in self.peers.take_silent_clients(now, self.client_timeout_ms) {
            info!(client = %client, "client silent for too long; treating it as gone");
            self.apply(Event::ClientLeft { client });
        }
        self.apply(Event::Tick);
        let journal = self.journal.as_ref().map(Journaling::stats);
        let dropped = match &mut self.observer {
            Some(observer) => observer.refresh(
                &mut self.core,
                self.peers.client_count(),
                journal.as_ref(),
                now,
            ),
            None => self.core.job_updates(now).dropped,
        };
        if let Some(journal) = &mut self.journal {
            for job in dropped {
                journal.job_dropped(job);
            }
        }
    }

    fn on_journal_progress(&mut self) -> Result<(), SchedulerError> {
        let Some(journal) = &mut self.journal else {
            return Ok(());
        };
        let ready = journal.durable()?;
        self.send_held(ready);
        Ok(())
    }

    fn send_held(&mut self, held: Vec<Held>) {
        for (target, message) in held {
            match target {
                Target::Peer(peer) => self.outbox.send(&peer, &message),
                Target::Client(client) => self.outbox.to_client(&self.peers, client, &message),
            }
        }
    }

    fn on_frame(&mut self, frame: Incoming) {
        self.turn_started.get_or_insert_with(Instant::now);
        let envelope = match frame.body {
            Ok(envelope) => envelope,
            Err(e) => {
                debug!("undecodable frame from a peer: {e}");
                if self.peers.get(&frame.peer).is_some() {
                    self.outbox.send(
                        &frame.peer,
                        &Message::Error {
                            message: format!("the scheduler could not decode a frame: {e}"),
                        },
                    );
                }
                return;
            }
        };
        let Envelope { messages } = envelope;
        for message in messages {
            self.on_message(&frame.peer, frame.roles.as_deref(), &frame.origin, message);
        }
    }

    fn on_message(
        &mut self,
        peer: &PeerId,
        roles: Option<&[Role]>,
        origin: &str,
        message: Message,
    ) {
        if let hello @ Message::Hello { .. } = message {
            return self.on_hello(peer, roles, origin, hello);
        }
        let Some(known) = self.peers.get(peer) else {
            self.outbox.send(
                peer,
                &Message::Rejected {
                    reason: "unknown peer: send Hello first (the scheduler may have restarted or \
                             declared this peer lost)"
                        .into(),
                    fatal: false,
                },
            );
            return;
        };
        let role = match known {
            Peer::Worker { .. } => Role::Worker,
            Peer::Client { id } => {
                let now = self.now();
                self.peers.touch_client(id, now);
                Role::Client
            }
        };
        if let Some(required) = message.sender_role() {
            if required != role {
                warn!(
                    message = message.kind(),
                    "refused a {:?} message from a {role:?} peer", required
                );
                let text = format!(
                    "{} is not allowed for a {role:?} connection",
                    message.kind()
                );
                let refusal = match message.request() {
                    Some(request) => Message::Refused {
                        request,
                        reason: text,
                    },
                    None => Message::Error { message: text },
                };
                self.outbox.send(peer, &refusal);
                return;
            }
        }
        match known {
            Peer::Worker { id } => self.on_worker_message(id, message),
            Peer::Client { id } => self.on_client_message(peer, id, message),
        }
    }

    fn on_hello(&mut self, peer: &PeerId, roles: Option<&[Role]>, origin: &str, hello: Message) {
        let Message::Hello {
            version,
            role,
            name,
            slots,
            functions,
            inventory,
            host,
            resume,
        } = hello
        else {
            return;
        };
        // A worker's Hello repeated on the same connection (its retry
        // crossed our Welcome) is answered again, not registered twice: a
        // second registration would requeue what the first was sent, and
        // the worker, which keeps its queue, would run it twice.
        let welcome =
            |client, resumed, worker, limits: &Limits, heartbeat: Duration| Message::Welcome {
                version: PROTOCOL_VERSION,
                client,
                resumed,
                worker,
                limits: limits.clone(),
                heartbeat_ms: heartbeat.as_millis() as u64,
            };
        if let Some(Peer::Worker { id }) = self.peers.get(peer) {
            if role == Role::Worker && self.core.worker_name(id) == Some(name.as_str()) {
                debug!(worker = %id, "repeated Hello answered again");
                let again = welcome(None, false, Some(id), &self.limits, self.heartbeat_interval);
                return self.outbox.send(peer, &again);
            }
        }
        let resuming = resume
            .filter(|session| role == Role::Client && self.peers.can_resume(session))
            .map(|session| session.id);
        // A peer saying Hello again as someone new starts afresh, so its
        // old registration does not count against the cap; a client
        // resuming its own session keeps it.
        if self.peers.get(peer) != resuming.map(|id| Peer::Client { id }) {
            self.forget_peer(peer);
        }
        let open = self.peers.open_from(origin);
        let fields = HelloFields {
            version,
            role,
            name: &name,
            host: &host,
            functions: &functions,
        };
        if let Err(Refusal { reason, fatal }) = check_hello(
            &self.limits,
            &self.hello_limits,
            &fields,
            roles,
            origin,
            open,
        ) {
            self.outbox.send(peer, &Message::Rejected { reason, fatal });
            return;
        }
        let rate = self.hello_limits.new_sessions_per_second;
        if resuming.is_none() && !self.peers.take_session_token(origin, self.now(), rate) {
            warn!(origin = %origin, "refused a new session over the session rate");
            let reason = format!(
                "this peer opened more than {rate} sessions in the last second \
                 (new_sessions_per_second); say Hello again shortly"
            );
            self.outbox.send(
                peer,
                &Message::Rejected {
                    reason,
                    fatal: false,
                },
            );
            return;
        }
        let now = self.now();
        match role {
            Role::Worker => {
                let id = self.peers.add_worker(peer, origin);
                info!(worker = %id, name = %name, slots, "worker joined");
                self.outbox.send(
                    peer,
                    &welcome(None, false, Some(id), &self.limits, self.heartbeat_interval),
                );
                self.apply(Event::WorkerJoined {
                    worker: id,
                    name,
                    slots: slots.max(1),
                    functions,
                    inventory,
                    host,
                });
            }
            Role::Client => {
                let (session, resumed) = match (resume, resuming) {
                    (Some(session), Some(id)) => {
                        self.peers.resume_client(peer, origin, id, now);
                        info!(client = %id, name = %name, "client resumed its session");
                        (session, true)
                    }
                    _ => {
                        let session =
                            self.peers
                                .add_client(peer, origin, now, rand::random::<u64>());
                        debug!(client = %session.id, name = %name, "client connected");
                        (session, false)
                    }
                };
                let message = welcome(
                    Some(session),
                    resumed,
                    None,
                    &self.limits,
                    self.heartbeat_interval,
                );
                self.welcome_client(peer, session, resumed, message);
            }
        }
    }

    /// Welcomes a client; a new session is journaled first, so that it can
    /// be resumed after any crash that follows the Welcome.
    fn welcome_client(
        &mut self,
        peer: &PeerId,
        session: ClientSession,
        resumed: bool,
        welcome: Message,
    ) {
        match &mut self.journal {
            Some(journal) if !resumed => {
                journal.record(Record::Session(session));
                journal.send_when_durable(Target::Peer(peer.clone()), welcome);
            }
            _ => self.outbox.send(peer, &welcome),
        }
    }

    fn forget_peer(&mut self, peer: &PeerId) {
        match self.peers.remove(peer) {
            Some(Peer::Worker { id }) => self.apply(Event::WorkerLeft { worker: id }),
            Some(Peer::Client { id }) => self.apply(Event::ClientLeft { client: id }),
            None => {}
        }
    }

    fn on_worker_message(&mut self, worker: WorkerId, message: Message) {
        let event = match message {
            Message::Heartbeat => Event::Heartbeat { worker },
            Message::TaskStarted { task, attempt } => Event::TaskStarted {
                worker,
                task,
                attempt,
            },
            Message::TaskFinished(report) => Event::TaskFinished { worker, report },
            Message::CacheDelta { added, evicted } => Event::CacheDelta {
                worker,
                added,
                evicted,
            },
            Message::Draining => {
                info!(worker = %worker, "worker draining");
                Event::WorkerDraining { worker }
            }
            Message::Drained => {
                info!(worker = %worker, "worker drained and left");
                // The acknowledgment lets it exit knowing this arrived.
                self.outbox
                    .to_worker(&self.peers, worker, &Message::Drained);
                self.apply(Event::WorkerDrained { worker });
                // Gone: no longer listed, nor counted against its address.
                self.peers.remove_worker(worker);
                return;
            }
            other => {
                debug!("ignoring {} from a worker", other.kind());
                return;
            }
        };
        self.apply(event);
    }

    /// The connected worker a user names: by id (`w3`) or by name.
    fn worker_named(&self, name_or_id: &str) -> Option<WorkerId> {
        self.peers.worker_ids().find(|&id| {
            id.to_string() == name_or_id || self.core.worker_name(id) == Some(name_or_id)
        })
    }

    fn on_client_message(&mut self, peer: &PeerId, client: ClientId, message: Message) {
        let event = match message {
            Message::Heartbeat => return self.outbox.send(peer, &Message::Heartbeat),
            Message::OpenJob { request, spec } => Event::JobOpened {
                client,
                request,
                spec,
            },
            Message::Submit {
                request,
                job,
                tasks,
            } => {
                if let Err(reason) = check_submission(&self.limits, &tasks) {
                    return self
                        .outbox
                        .send(peer, &Message::Refused { request, reason });
                }
                Event::TasksSubmitted {
                    client,
                    request,
                    job,
                    tasks,
                }
            }
            Message::SealJob { request, job } => Event::JobSealed {
                client,
                request,
                job,
            },
            Message::Cancel { request, tasks } => Event::CancelTasks {
                client,
                request,
                tasks,
            },
            Message::CancelJob { request, job } => Event::CancelJob {
                client,
                request,
                job,
            },
            Message::Release { tasks } => Event::Release { tasks },
            Message::Watch { request, job } => Event::Watch {
                client,
                request,
                job,
            },
            Message::Resume { request, tasks } => Event::Resume {
                client,
                request,
                tasks,
            },
            Message::ListJobs { request } => {
                let jobs = self.core.jobs(self.now());
                let dropped = self.core.dropped_jobs();
                return self.outbox.send(
                    peer,
                    &Message::Jobs {
                        request,
                        jobs,
                        dropped,
                    },
                );
            }
            Message::ListWorkers { request } => {
                let mut workers: Vec<WorkerInfo> = self
                    .peers
                    .worker_ids()
                    .map(|id| WorkerInfo {
                        id,
                        name: self.core.worker_name(id).unwrap_or_default().to_string(),
                    })
                    .collect();
                workers.sort_by_key(|w| w.id);
                return self
                    .outbox
                    .send(peer, &Message::Workers { request, workers });
            }
            Message::DrainWorker { request, worker } => {
                let reply = match self.worker_named(&worker) {
                    Some(id) => {
                        info!(worker = %id, "drain requested");
                        self.outbox.to_worker(&self.peers, id, &Message::Drain);
                        Message::Accepted { request }
                    }
                    None => Message::Refused {
                        request,
                        reason: format!(
                            "no worker `{worker}` is connected (give its name or id, as \
                             `quarry status` lists them)"
                        ),
                    },
                };
                return self.outbox.send(peer, &reply);
            }
            Message::GetResults {
                request,
                job,
                after,
                limit,
            } => {
                let page = self
                    .core
                    .results(job, after, limit.clamp(1, 10_000) as usize);
                let reply = match page {
                    Some((rows, more)) => Message::Results {
                        request,
                        job,
                        rows,
                        more,
                    },
                    None => Message::Refused {
                        request,
                        reason: format!(
                            "no job {job} on this scheduler (a finished job is dropped after \
                             its retention, --job-retention; its manifest stays in the store)"
                        ),
                    },
                };
                return self.outbox.send(peer, &reply);
            }
            Message::Goodbye { request } => {
                self.outbox.send(peer, &Message::Accepted { request });
                debug!(client = %client, "client said goodbye");
                return self.forget_peer(peer);
            }
            other => {
                debug!("ignoring {} from a client", other.kind());
                return;
            }
        };
        self.apply(event);
    }

    /// A manifest was written (or failed): release the held progress.
    fn on_manifest_written(&mut self, job: JobId, result: Result<(), String>) {
        match &result {
            Ok(()) => {
                if let Some(journal) = &mut self.journal {
                    journal.manifest_written(job);
                }
            }
            Err(message) => {
                warn!(job = %job, "{message}");
                self.apply(Event::OutputsFailed { job });
                self.outbox.to_client(
                    &self.peers,
                    job.client(),
                    &Message::Error {
                        message: format!("job {job} failed: {message}"),
                    },
                );
            }
        }
        for (client, mut info) in self.manifests.release(job) {
            if result.is_err() {
                info.state = JobState::Failed;
            }
            self.outbox
                .to_client(&self.peers, client, &Message::JobProgress(info));
        }
    }

    /// Carries out the core's commands, hands this turn's records to the
    /// journal, and sends everything queued. After a tick, compacts the
    /// journal if that is due.
    fn flush(&mut self, ticked: bool) {
        if let Some(observer) = &mut self.observer {
            observer.commands(&self.core, self.clock.now(), &self.commands);
        }
        carry_out(
            &mut self.commands,
            &self.core,
            &mut self.peers,
            &mut self.manifests,
            &self.outbox,
            self.journal.as_mut(),
        );
        if let Some(journal) = &mut self.journal {
            let ready = journal.end_turn();
            if ticked {
                journal.compact_if_due(&self.core, &self.peers);
            }
            self.send_held(ready);
        }
        self.server.send_batch(self.outbox.take());
        if let (Some(started), Some(observer)) = (self.turn_started.take(), &self.observer) {
            observer.loop_turn(started.elapsed());
        }
    }
}

/// Resolves when the journal writer publishes progress; never without a
/// journal.
async fn journal_progressed(journal: &mut Option<Journaling>) {
    match journal {
        Some(journal) => journal.progressed().await,
        None => std::future::pending().await,
    }
}
