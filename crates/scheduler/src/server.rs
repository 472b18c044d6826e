//! The scheduler loop: frames in, events to the core, its commands out.
//! Who peers are lives in `peers`, what is let in in `admission`, how
//! commands become messages in `routing`, manifests in `manifests`.

use crate::admission::{check_hello, check_submission, Refusal};
use crate::dashboard::{self, Snapshot};
use crate::manifests::{Manifests, Written};
use crate::peers::{Peer, Peers};
use crate::routing::{carry_out, Outbox};
use quarry_core::{Command, Core, CoreConfig, Event, Millis};
use quarry_net::{bind, CurveServerKeys, Incoming, PeerId, Server, ServerOptions};
use quarry_proto::{
    ClientId, Envelope, JobId, Limits, Message, Role, WorkerId, WorkerInfo, PROTOCOL_VERSION,
};
use quarry_store::StoreResolver;
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
    let (manifests, written) = Manifests::new(StoreResolver::from_env());
    let state = Shell {
        core: Core::new(config.core.clone()),
        server,
        limits: config.limits.clone(),
        heartbeat_interval: config.heartbeat_interval,
        client_timeout_ms: config.core.heartbeat_timeout_ms,
        started: Instant::now(),
        peers: Peers::default(),
        manifests,
        commands: Vec::new(),
        outbox: Outbox::default(),
        snapshot,
    };
    let task = tokio::spawn(state.run(incoming, written, stop_rx));
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
    heartbeat_interval: Duration,
    client_timeout_ms: u64,
    started: Instant,
    peers: Peers,
    manifests: Manifests,
    commands: Vec<Command>,
    outbox: Outbox,
    snapshot: dashboard::Shared,
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
        mut written: mpsc::UnboundedReceiver<Written>,
        mut stop: oneshot::Receiver<()>,
    ) {
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
                Some((job, result)) = written.recv() => self.on_manifest_written(job, result),
                _ = &mut stop => break,
            }
            self.flush();
        }
        info!("scheduler stopped");
    }

    fn apply(&mut self, event: Event) {
        let now = self.now();
        self.core.handle(now, event, &mut self.commands);
    }

    fn on_tick(&mut self) {
        let now = self.now();
        for peer in self.peers.silent_clients(now, self.client_timeout_ms) {
            if let Some(Peer::Client { id, .. }) = self.peers.remove(&peer) {
                info!(client = %id, "client silent for too long; treating it as gone");
                self.apply(Event::ClientLeft { client: id });
            }
        }
        self.apply(Event::Tick);
        Snapshot::refresh(&self.snapshot, &self.core, self.peers.client_count(), now);
    }

    fn on_frame(&mut self, frame: Incoming) {
        let envelope = match frame.body {
            Ok(envelope) => envelope,
            Err(e) => {
                debug!("undecodable frame from a peer: {e}");
                if self.peers.get_mut(&frame.peer).is_some() {
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
        let now = self.now();
        let Some(known) = self.peers.get_mut(peer) else {
            self.outbox.send(
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
                self.outbox.send(
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
            host,
        } = hello
        else {
            return;
        };
        // A peer saying Hello again (reconnect) starts afresh, so its old
        // registration does not count against the cap.
        self.forget_peer(peer);
        let open = self.peers.open_from(origin);
        if let Err(Refusal { reason, fatal }) =
            check_hello(&self.limits, version, role, &name, roles, origin, open)
        {
            self.outbox.send(peer, &Message::Rejected { reason, fatal });
            return;
        }
        let welcome = |client, worker, limits: &Limits, heartbeat: Duration| Message::Welcome {
            version: PROTOCOL_VERSION,
            client,
            worker,
            limits: limits.clone(),
            heartbeat_ms: heartbeat.as_millis() as u64,
        };
        match role {
            Role::Worker => {
                let id = self.peers.add_worker(peer, origin);
                info!(worker = %id, name = %name, slots, "worker joined");
                self.outbox.send(
                    peer,
                    &welcome(None, Some(id), &self.limits, self.heartbeat_interval),
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
                let id = self.peers.add_client(peer, origin, self.now());
                debug!(client = %id, name = %name, "client connected");
                self.outbox.send(
                    peer,
                    &welcome(Some(id), None, &self.limits, self.heartbeat_interval),
                );
            }
        }
    }

    fn forget_peer(&mut self, peer: &PeerId) {
        match self.peers.remove(peer) {
            Some(Peer::Worker { id }) => self.apply(Event::WorkerLeft { worker: id }),
            Some(Peer::Client { id, .. }) => self.apply(Event::ClientLeft { client: id }),
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
            shell.outbox.send(peer, &Message::Error { message: text });
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
                    self.manifests.job_opened(spec.id, output.clone());
                }
                Event::JobOpened { client, spec }
            }
            Message::Submit { job, tasks } => {
                if let Err(text) = check_submission(&self.limits, client, &tasks) {
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
                return self.outbox.send(peer, &Message::Jobs(jobs));
            }
            Message::ListWorkers => {
                let mut workers: Vec<WorkerInfo> = self
                    .peers
                    .worker_ids()
                    .map(|id| WorkerInfo {
                        id,
                        name: self.core.worker_name(id).unwrap_or_default().to_string(),
                    })
                    .collect();
                workers.sort_by_key(|w| w.id);
                return self.outbox.send(peer, &Message::Workers(workers));
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
                return self.outbox.send(peer, &reply);
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
        if let Err(message) = &result {
            warn!(job = %job, "{message}");
            self.outbox.to_client(
                &self.peers,
                job.client(),
                &Message::Error {
                    message: message.clone(),
                },
            );
        }
        for (client, info) in self.manifests.release(job) {
            self.outbox
                .to_client(&self.peers, client, &Message::JobProgress(info));
        }
    }

    /// Carries out the core's commands and sends everything queued.
    fn flush(&mut self) {
        let commands = std::mem::take(&mut self.commands);
        carry_out(
            &commands,
            &self.core,
            &mut self.peers,
            &mut self.manifests,
            &self.outbox,
        );
        // Reuse the allocation.
        self.commands = commands;
        self.commands.clear();
        self.server.send_batch(self.outbox.take());
    }
}
