use crate::dashboard::{self, Snapshot};
use quarry_core::{Command, Core, CoreConfig, Event, Millis};
use quarry_net::{bind, CurveServerKeys, Incoming, PeerId, Server, ServerOptions};
use quarry_proto::{
    encode_message, ClientId, Envelope, JobId, JobInfo, JobState, Limits, Message, Role, TaskSpec,
    WorkerId, WorkerInfo, PROTOCOL_VERSION,
};
use quarry_store::StoreResolver;
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

/// How a scheduler is set up.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// ZeroMQ endpoint to listen on.
    pub listen: String,
    /// Limits enforced on every peer.
    pub limits: Limits,
    /// CURVE keys; `None` runs without authentication.
    pub curve: Option<CurveServerKeys>,
    /// Core tunables (heartbeat timeout, prefetch, locality wait).
    pub core: CoreConfig,
    /// How often peers must send heartbeats.
    pub heartbeat_interval: Duration,
    /// Where the HTTP dashboard listens, if anywhere.
    pub dashboard: Option<SocketAddr>,
}

impl SchedulerConfig {
    /// A configuration for `listen` with defaults everywhere else.
    pub fn new(listen: impl Into<String>) -> SchedulerConfig {
        SchedulerConfig {
            listen: listen.into(),
            limits: Limits::default(),
            curve: None,
            core: CoreConfig::default(),
            heartbeat_interval: Duration::from_secs(1),
            dashboard: None,
        }
    }
}

/// The scheduler could not start.
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
}

/// A running scheduler. Dropping it leaves the scheduler running; call
/// [`SchedulerHandle::shutdown`] to stop it.
pub struct SchedulerHandle {
    endpoint: String,
    dashboard: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
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

    /// Stops the scheduler and waits for it.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Waits until the scheduler stops (it runs until shut down).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Binds the control plane (and dashboard) and starts the scheduler loop
/// on the current tokio runtime.
pub async fn start(config: SchedulerConfig) -> Result<SchedulerHandle, SchedulerError> {
    let (server, incoming) = bind(ServerOptions {
        listen: config.listen.clone(),
        limits: config.limits.clone(),
        curve: config.curve.clone(),
        hwm: quarry_net::DEFAULT_HWM,
    })?;
    let endpoint = server.endpoint().to_string();
    let snapshot = Arc::new(RwLock::new(Snapshot::default()));
    let dashboard = match config.dashboard {
        Some(addr) => Some(
            dashboard::serve(addr, snapshot.clone())
                .await
                .map_err(|source| SchedulerError::Dashboard { addr, source })?,
        ),
        None => None,
    };
    info!(
        endpoint = %endpoint,
        curve = config.curve.is_some(),
        "scheduler listening"
    );
    let (stop_tx, stop_rx) = oneshot::channel();
    let state = Shell {
        core: Core::new(config.core.clone()),
        server,
        limits: config.limits.clone(),
        heartbeat_interval: config.heartbeat_interval,
        client_timeout_ms: config.core.heartbeat_timeout_ms,
        started: Instant::now(),
        peers: HashMap::new(),
        worker_peers: HashMap::new(),
        client_peers: HashMap::new(),
        next_worker: 1,
        next_client: 1,
        origins: HashMap::new(),
        connections: HashMap::new(),
        outputs: HashMap::new(),
        held: HashMap::new(),
        finalized: None,
        store: StoreResolver::from_env(),
        commands: Vec::new(),
        outbox: RefCell::new(Vec::new()),
        snapshot,
    };
    let task = tokio::spawn(state.run(incoming, stop_rx));
    Ok(SchedulerHandle {
        endpoint,
        dashboard,
        stop: Some(stop_tx),
        task,
    })
}

/// Who a connected peer is.
#[derive(Clone, Debug)]
enum Peer {
    Worker { id: WorkerId },
    Client { id: ClientId, last_seen: Millis },
}

struct Shell {
    core: Core,
    server: Server,
    limits: Limits,
    heartbeat_interval: Duration,
    client_timeout_ms: u64,
    started: Instant,
    peers: HashMap<PeerId, Peer>,
    worker_peers: HashMap<WorkerId, PeerId>,
    client_peers: HashMap<ClientId, PeerId>,
    next_worker: u32,
    next_client: u32,
    /// Where each registered peer comes from (key fingerprint or address).
    origins: HashMap<PeerId, String>,
    /// Registered peers per origin, against `max_connections_per_peer`.
    connections: HashMap<String, usize>,
    /// Output prefixes of open jobs, for their manifests.
    outputs: HashMap<JobId, String>,
    /// Final progress messages waiting for their job's manifest.
    held: HashMap<JobId, Vec<(ClientId, JobInfo)>>,
    /// Where manifest writers report back.
    finalized: Option<mpsc::UnboundedSender<(JobId, Result<(), String>)>>,
    /// Resolves output prefixes (`AWS_*` settings for `s3://`).
    store: StoreResolver,
    commands: Vec<Command>,
    /// Encoded messages waiting for the end of this turn of the loop. A
    /// `RefCell` because replies are queued from `&self` helpers; the shell
    /// is owned by one task, so borrows never overlap.
    outbox: RefCell<Vec<(PeerId, Vec<u8>)>>,
    snapshot: Arc<RwLock<Snapshot>>,
}

/// How often the core gets a `Tick` (timeouts, locality waits, progress).
const TICK: Duration = Duration::from_millis(200);

impl Shell {
    fn now(&self) -> Millis {
        self.started.elapsed().as_millis() as Millis
    }

    async fn run(
        mut self,
        mut incoming: mpsc::Receiver<Incoming>,
        mut stop: oneshot::Receiver<()>,
    ) {
        let (finalized_tx, mut finalized_rx) = mpsc::unbounded_channel();
        self.finalized = Some(finalized_tx);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
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
                    None => break,
                },
                _ = tick.tick() => self.on_tick(),
                Some((job, written)) = finalized_rx.recv() => self.on_finalized(job, written),
                _ = &mut stop => break,
            }
            self.flush();
        }
        info!("scheduler stopped");
    }

    /// Queues a message; [`Shell::flush`] hands the whole outbox to the
    /// I/O thread at once, so that replies to one frame travel together.
    fn send(&self, peer: &PeerId, message: &Message) {
        match encode_message(message) {
            Ok(bytes) => self.outbox.borrow_mut().push((peer.clone(), bytes)),
            Err(e) => warn!("cannot encode {} for a peer: {e}", message.kind()),
        }
    }

    fn apply(&mut self, event: Event) {
        let now = self.now();
        self.core.handle(now, event, &mut self.commands);
    }

    fn on_tick(&mut self) {
        let now = self.now();
        let silent: Vec<(PeerId, ClientId)> = self
            .peers
            .iter()
            .filter_map(|(peer, p)| match p {
                Peer::Client { id, last_seen }
                    if now.saturating_sub(*last_seen) > self.client_timeout_ms =>
                {
                    Some((peer.clone(), *id))
                }
                _ => None,
            })
            .collect();
        for (peer, client) in silent {
            info!(client = %client, "client silent for too long; treating it as gone");
            self.remove_peer(&peer);
            self.client_peers.remove(&client);
            self.apply(Event::ClientLeft { client });
        }
        self.apply(Event::Tick);
        let jobs = self.core.jobs(now);
        let mut snapshot = self.snapshot.write().unwrap_or_else(|p| p.into_inner());
        snapshot.jobs = jobs;
        snapshot.workers = self.core.worker_count();
        snapshot.queued = self.core.queued_tasks();
        snapshot.clients = self.client_peers.len();
    }

    fn on_frame(&mut self, frame: Incoming) {
        let envelope = match frame.body {
            Ok(envelope) => envelope,
            Err(e) => {
                debug!("undecodable frame from a peer: {e}");
                if self.peers.contains_key(&frame.peer) {
                    self.send(
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
        let now = self.now();
        let Some(known) = self.peers.get_mut(peer) else {
            self.send(
                peer,
                &Message::Rejected {
                    reason: "unknown peer: send Hello first (the scheduler may have restarted or \
                             declared this worker lost)"
                        .into(),
                    fatal: false,
                },
            );
            return;
        };
        let role = match known {
            Peer::Worker { .. } => Role::Worker,
            Peer::Client { last_seen, .. } => {
                *last_seen = now;
                Role::Client
            }
        };
        if let Some(required) = message.sender_role() {
            if required != role {
                warn!(
                    message = message.kind(),
                    "refused a {:?} message from a {role:?} peer", required
                );
                self.send(
                    peer,
                    &Message::Error {
                        message: format!(
                            "{} is not allowed for a {role:?} connection",
                            message.kind()
                        ),
                    },
                );
                return;
            }
        }
        match (known.clone(), message) {
            (Peer::Worker { id }, message) => self.on_worker_message(id, message),
            (Peer::Client { id, .. }, message) => self.on_client_message(peer, id, message),
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
        } = hello
        else {
            return;
        };
        if version != PROTOCOL_VERSION {
            self.send(
                peer,
                &Message::Rejected {
                    reason: format!(
                        "protocol version {version} is not supported; this scheduler speaks \
                         version {PROTOCOL_VERSION}: run the same quarry release everywhere"
                    ),
                    fatal: true,
                },
            );
            return;
        }
        if let Some(allowed) = roles {
            if !allowed.contains(&role) {
                warn!(name = %name, "refused a {role:?} handshake from a key not authorized for it");
                self.send(
                    peer,
                    &Message::Rejected {
                        reason: format!("this key is not authorized to connect as a {role:?}"),
                        fatal: true,
                    },
                );
                return;
            }
        }
        // A peer saying Hello again (reconnect) starts afresh.
        self.forget_peer(peer);
        let cap = self.limits.max_connections_per_peer;
        let open = self.connections.get(origin).copied().unwrap_or(0);
        if open >= cap {
            warn!(origin = %origin, open, "refused a connection over the per-peer cap");
            self.send(
                peer,
                &Message::Rejected {
                    reason: format!(
                        "this peer already has {open} connections, the cap \
                         (limits.max_connections_per_peer = {cap}); close some first"
                    ),
                    fatal: true,
                },
            );
            return;
        }
        *self.connections.entry(origin.to_string()).or_default() += 1;
        self.origins.insert(peer.clone(), origin.to_string());
        let welcome = |client, worker, limits: &Limits, heartbeat: Duration| Message::Welcome {
            version: PROTOCOL_VERSION,
            client,
            worker,
            limits: limits.clone(),
            heartbeat_ms: heartbeat.as_millis() as u64,
        };
        match role {
            Role::Worker => {
                let id = WorkerId(self.next_worker);
                self.next_worker += 1;
                info!(worker = %id, name = %name, slots, "worker joined");
                self.peers.insert(peer.clone(), Peer::Worker { id });
                self.worker_peers.insert(id, peer.clone());
                self.send(
                    peer,
                    &welcome(None, Some(id), &self.limits, self.heartbeat_interval),
                );
                self.apply(Event::WorkerJoined {
                    worker: id,
                    name,
                    slots: slots.max(1),
                    functions,
                    inventory,
                });
            }
            Role::Client => {
                let id = ClientId(self.next_client);
                self.next_client += 1;
                debug!(client = %id, name = %name, "client connected");
                let now = self.now();
                self.peers
                    .insert(peer.clone(), Peer::Client { id, last_seen: now });
                self.client_peers.insert(id, peer.clone());
                self.send(
                    peer,
                    &welcome(Some(id), None, &self.limits, self.heartbeat_interval),
                );
            }
        }
    }

    /// Removes a registered peer and gives back its connection slot.
    fn remove_peer(&mut self, peer: &PeerId) -> Option<Peer> {
        if let Some(origin) = self.origins.remove(peer) {
            if let Some(open) = self.connections.get_mut(&origin) {
                *open -= 1;
                if *open == 0 {
                    self.connections.remove(&origin);
                }
            }
        }
        self.peers.remove(peer)
    }

    fn forget_peer(&mut self, peer: &PeerId) {
        match self.remove_peer(peer) {
            Some(Peer::Worker { id }) => {
                self.worker_peers.remove(&id);
                self.apply(Event::WorkerLeft { worker: id });
            }
            Some(Peer::Client { id, .. }) => {
                self.client_peers.remove(&id);
                self.apply(Event::ClientLeft { client: id });
            }
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
            other => {
                debug!("ignoring {} from a worker", other.kind());
                return;
            }
        };
        self.apply(event);
    }

    fn on_client_message(&mut self, peer: &PeerId, client: ClientId, message: Message) {
        let refuse = |shell: &Self, text: String| {
            shell.send(peer, &Message::Error { message: text });
        };
        let event = match message {
            Message::Heartbeat => return,
            Message::OpenJob(spec) => {
                if spec.id.client() != client {
                    return refuse(
                        self,
                        format!("job id {} is outside this client's range", spec.id),
                    );
                }
                if let Some(output) = &spec.output {
                    self.outputs.insert(spec.id, output.clone());
                }
                Event::JobOpened { client, spec }
            }
            Message::Submit { job, tasks } => {
                if let Err(text) = self.check_submission(client, &tasks) {
                    return refuse(self, text);
                }
                Event::TasksSubmitted { client, job, tasks }
            }
            Message::SealJob { job } => Event::JobSealed { job },
            Message::Cancel { tasks } => Event::CancelTasks { tasks },
            Message::CancelJob { job } => Event::CancelJob { job },
            Message::Release { tasks } => Event::Release { tasks },
            Message::Watch { job } => Event::Watch { client, job },
            Message::ListJobs => {
                let jobs = self.core.jobs(self.now());
                return self.send(peer, &Message::Jobs(jobs));
            }
            Message::ListWorkers => {
                let mut workers: Vec<WorkerInfo> = self
                    .worker_peers
                    .keys()
                    .map(|&id| WorkerInfo {
                        id,
                        name: self.core.worker_name(id).unwrap_or_default().to_string(),
                    })
                    .collect();
                workers.sort_by_key(|w| w.id);
                return self.send(peer, &Message::Workers(workers));
            }
            Message::GetResults { job, after, limit } => {
                let page = self
                    .core
                    .results(job, after, limit.clamp(1, 10_000) as usize);
                let reply = match page {
                    Some((rows, more)) => Message::Results { job, rows, more },
                    None => Message::RequestFailed {
                        message: format!("no job {job} on this scheduler"),
                    },
                };
                return self.send(peer, &reply);
            }
            other => {
                debug!("ignoring {} from a client", other.kind());
                return;
            }
        };
        self.apply(event);
    }

    /// Limits apply here, before the core sees anything, so that a refused
    /// submission changes nothing.
    fn check_submission(&self, client: ClientId, tasks: &[TaskSpec]) -> Result<(), String> {
        if tasks.len() > self.limits.max_tasks_per_submit {
            return Err(format!(
                "a submission of {} tasks exceeds the cap of {} tasks per submission \
                 (limits.max_tasks_per_submit); send them in several batches",
                tasks.len(),
                self.limits.max_tasks_per_submit
            ));
        }
        for task in tasks {
            if task.id.client() != client {
                return Err(format!(
                    "task id {} is outside this client's range",
                    task.id
                ));
            }
            if task.args.len() > self.limits.max_inline_bytes {
                return Err(format!(
                    "task {} has {} bytes of inline arguments, over the {}-byte cap \
                     (limits.max_inline_bytes); pass large values by reference (Client::put)",
                    task.id,
                    task.args.len(),
                    self.limits.max_inline_bytes
                ));
            }
        }
        Ok(())
    }

    /// Starts writing the manifest of every job with an output prefix that
    /// finished in this batch; the final progress of those jobs is held
    /// back until it is written, so a watcher that sees the job end can
    /// read its manifest.
    fn finalize_jobs(&mut self, commands: &[Command]) {
        for command in commands {
            let Command::JobFinished { info } = command else {
                continue;
            };
            let Some(output) = self.outputs.remove(&info.id) else {
                continue;
            };
            let rows = self
                .core
                .results(info.id, None, usize::MAX)
                .map(|(rows, _)| rows)
                .unwrap_or_default();
            self.held.insert(info.id, Vec::new());
            let (store, info, done) = (self.store.clone(), info.clone(), self.finalized.clone());
            // Encoding a large job's parquet takes a while: a blocking
            // thread does it, so the event loop keeps serving.
            let runtime = tokio::runtime::Handle::current();
            tokio::task::spawn_blocking(move || {
                let written = runtime
                    .block_on(quarry_manifest::write_job_outputs(
                        &store, &output, &info, &rows,
                    ))
                    .map_err(|e| format!("cannot write the manifest under {output}: {e}"));
                if let Some(done) = done {
                    let _ = done.send((info.id, written));
                }
            });
        }
    }

    /// A manifest was written (or failed): release the held progress.
    fn on_finalized(&mut self, job: JobId, written: Result<(), String>) {
        if let Err(message) = &written {
            warn!(job = %job, "{message}");
            self.to_client(
                job.client(),
                &Message::Error {
                    message: message.clone(),
                },
            );
        }
        for (client, info) in self.held.remove(&job).unwrap_or_default() {
            self.to_client(client, &Message::JobProgress(info));
        }
        self.server.send_batch(self.outbox.take());
    }

    /// Carries out the core's commands.
    fn flush(&mut self) {
        let commands = std::mem::take(&mut self.commands);
        self.finalize_jobs(&commands);
        for command in &commands {
            match command {
                Command::SendJob { worker, spec } => {
                    self.to_worker(*worker, &Message::Job(spec.clone()))
                }
                Command::Run { worker, run } => self.to_worker(*worker, &Message::Run(run.clone())),
                Command::CancelOnWorker { worker, task } => {
                    self.to_worker(*worker, &Message::CancelTask { task: *task })
                }
                Command::TaskDone {
                    client,
                    task,
                    outcome,
                } => self.to_client(
                    *client,
                    &Message::TaskDone {
                        task: *task,
                        outcome: outcome.clone(),
                    },
                ),
                Command::JobProgress { client, info } => match self.held.get_mut(&info.id) {
                    Some(held) if info.state != JobState::Running => {
                        held.push((*client, info.clone()))
                    }
                    _ => self.to_client(*client, &Message::JobProgress(info.clone())),
                },
                Command::JobFinished { info } => {
                    info!(job = %info.id, name = %info.name, state = ?info.state, "job finished")
                }
                Command::Error { client, message } => self.to_client(
                    *client,
                    &Message::Error {
                        message: message.clone(),
                    },
                ),
                Command::DropWorker { worker } => {
                    warn!(worker = %worker, "worker lost (no heartbeat); its tasks were requeued");
                    if let Some(peer) = self.worker_peers.remove(worker) {
                        self.remove_peer(&peer);
                    }
                }
            }
        }
        // Reuse the allocation.
        self.commands = commands;
        self.commands.clear();
        self.server.send_batch(self.outbox.take());
    }

    fn to_worker(&self, worker: WorkerId, message: &Message) {
        if let Some(peer) = self.worker_peers.get(&worker) {
            self.send(peer, message);
        }
    }

    fn to_client(&self, client: ClientId, message: &Message) {
        if let Some(peer) = self.client_peers.get(&client) {
            self.send(peer, message);
        }
    }
}
