//! The client's session with the scheduler: requests and their answers,
//! futures waiting for results, and getting the session back after a lost
//! connection or a scheduler restart.
//!
//! Every request gets an id and waits in a table until its answer (with
//! that id) arrives, so answers may come in any order and none is matched
//! by position. While the connection is down, requests wait in the table;
//! once the client has said Hello again and resumed its session, every
//! unanswered request is sent again (the scheduler treats a repeated
//! request as done once), the futures still waiting are named in `Resume`
//! (results that came while away are sent again; tasks the scheduler does
//! not know fail as lost) and watched jobs are watched again.
//!
//! Nothing waits forever: a connection down for longer than the reconnect
//! timeout fails every waiting future and request with an error naming the
//! scheduler's address, and requests made after that fail at once, until
//! the scheduler is back.

use crate::error::ClientError;
use quarry_net::{Connection, ConnectionEvent};
use quarry_proto::{
    encode_message, ClientSession, JobId, JobInfo, JobSpec, Limits, Message, RequestId, Role,
    TaskId, TaskOutcome, PROTOCOL_VERSION,
};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

/// Whether the client is connected to the scheduler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// Connected, with a session the scheduler knows.
    Connected,
    /// The connection was lost; the client is saying Hello again, with
    /// backoff.
    Reconnecting,
    /// The connection has been down longer than the reconnect timeout:
    /// everything that waited failed, and new requests fail at once. The
    /// client still tries to get back.
    CutOff,
}

/// The session's state and history, as [`crate::Client::session_status`]
/// publishes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionStatus {
    /// Where things stand.
    pub state: SessionState,
    /// Since when.
    pub since: Instant,
    /// Reconnections so far.
    pub reconnects: u64,
    /// Whether the last reconnection got the same session back (its jobs
    /// and futures carry on). When it did not (the scheduler restarted
    /// without a journal), every future waiting then failed as lost.
    pub resumed: bool,
}

/// The answer to a request that changes something (seal a job, cancel
/// tasks): await it to learn whether the scheduler carried it out. Dropped
/// unawaited, a refusal is still logged (at WARN), never lost silently.
pub struct Answer {
    rx: oneshot::Receiver<Result<(), ClientError>>,
}

impl Future for Answer {
    type Output = Result<(), ClientError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|answer| answer.unwrap_or(Err(ClientError::Closed)))
    }
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Answer")
    }
}

/// Who waits for a request's answer.
enum Waiter {
    /// A query's reply (`Jobs`, `Workers`, `Results`).
    Reply(oneshot::Sender<Result<Message, ClientError>>),
    /// A submission: its refusal fails each of these futures.
    Submit(Vec<TaskId>),
    /// An `Accepted`.
    Answer(oneshot::Sender<Result<(), ClientError>>),
    /// A request the client itself made (re-watching, resuming).
    Internal,
}

/// A request without an answer yet.
struct InFlight {
    /// What it is, for logs.
    kind: &'static str,
    /// As sent, to send again after reconnecting.
    encoded: Vec<u8>,
    waiter: Waiter,
}

/// Ids this client allocates inside its session's range.
pub(crate) struct Ids {
    pub(crate) session: ClientSession,
    pub(crate) next_task: u64,
    pub(crate) next_job: u64,
    /// Where plain `submit` and `map` go; opened on first use.
    pub(crate) default_job: JobId,
    pub(crate) default_job_open: bool,
}

impl Ids {
    fn for_session(session: ClientSession) -> Ids {
        let default_job = JobId::first_for(session.id);
        Ids {
            session,
            next_task: TaskId::first_for(session.id).0 + 1,
            next_job: default_job.0 + 1,
            default_job,
            default_job_open: false,
        }
    }
}

/// A future's end: the task's outcome, or why it will never come.
pub(crate) type Resolution = Result<TaskOutcome, ClientError>;

struct State {
    ids: Ids,
    online: bool,
    cut_off: bool,
    /// The client said goodbye: the session is over, nothing more is sent.
    closed: bool,
    next_request: u64,
    requests: BTreeMap<RequestId, InFlight>,
    pending: HashMap<TaskId, oneshot::Sender<Resolution>>,
    watchers: HashMap<JobId, mpsc::UnboundedSender<JobInfo>>,
    /// When the connection went down, while it is.
    offline_since: Option<Instant>,
    last_heard: Instant,
    last_heartbeat: Instant,
    last_hello: Option<Instant>,
    hello_backoff: Duration,
}

/// The session, shared by the client handle, its futures and the loop
/// that reads the connection.
pub(crate) struct Session {
    state: Mutex<State>,
    status: watch::Sender<SessionStatus>,
    conn: Connection,
    address: String,
    name: String,
    limits: Limits,
    heartbeat: Duration,
    reconnect_timeout: Duration,
}

/// The first Hello retry after a lost connection; doubled each time up to
/// [`MAX_HELLO_BACKOFF`].
const FIRST_HELLO_BACKOFF: Duration = Duration::from_millis(250);
const MAX_HELLO_BACKOFF: Duration = Duration::from_secs(5);
/// How often the session loop checks timers.
const SESSION_TICK: Duration = Duration::from_millis(100);

/// What the handshake agreed.
pub(crate) struct Welcomed {
    pub(crate) session: ClientSession,
    pub(crate) limits: Limits,
    pub(crate) heartbeat: Duration,
}

impl Session {
    /// A session just welcomed on `conn`.
    pub(crate) fn new(
        conn: Connection,
        welcomed: Welcomed,
        address: String,
        name: String,
        reconnect_timeout: Duration,
    ) -> Session {
        let now = Instant::now();
        let (status, _) = watch::channel(SessionStatus {
            state: SessionState::Connected,
            since: now,
            reconnects: 0,
            resumed: true,
        });
        Session {
            state: Mutex::new(State {
                ids: Ids::for_session(welcomed.session),
                online: true,
                cut_off: false,
                closed: false,
                next_request: 1,
                requests: BTreeMap::new(),
                pending: HashMap::new(),
                watchers: HashMap::new(),
                offline_since: None,
                last_heard: now,
                last_heartbeat: now,
                last_hello: None,
                hello_backoff: FIRST_HELLO_BACKOFF,
            }),
            status,
            conn,
            address,
            name,
            limits: welcomed.limits,
            heartbeat: welcomed.heartbeat,
            reconnect_timeout,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The scheduler's limits, from the first handshake.
    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The scheduler's address.
    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    /// The session's status, and its changes.
    pub(crate) fn status(&self) -> watch::Receiver<SessionStatus> {
        self.status.subscribe()
    }

    /// Runs `f` on the ids of the current session.
    pub(crate) fn with_ids<T>(&self, f: impl FnOnce(&mut Ids) -> T) -> T {
        f(&mut self.lock().ids)
    }

    /// Encodes a message, refusing one over the frame cap.
    fn encode(&self, message: &Message) -> Result<Vec<u8>, ClientError> {
        let bytes = encode_message(message).map_err(|e| ClientError::Codec(e.to_string()))?;
        if bytes.len() + 16 > self.limits.max_frame_bytes {
            return Err(ClientError::FrameTooLarge {
                what: format!("a {} message", message.kind()),
                size: bytes.len(),
                cap: self.limits.max_frame_bytes,
            });
        }
        Ok(bytes)
    }

    /// Sends a notification (no id, no answer) if connected; one made
    /// while the connection is down is dropped.
    pub(crate) fn notify(&self, message: &Message) -> Result<(), ClientError> {
        let bytes = self.encode(message)?;
        if self.lock().online {
            self.conn.send(bytes);
        }
        Ok(())
    }

    /// Sends a request made by `make` with a fresh id; its answer goes to
    /// `waiter`. While the connection is down it waits to be sent; once
    /// cut off, it fails at once.
    fn request(
        &self,
        make: impl FnOnce(RequestId) -> Message,
        waiter: Waiter,
    ) -> Result<RequestId, ClientError> {
        let mut state = self.lock();
        self.request_locked(&mut state, make, waiter)
    }

    fn request_locked(
        &self,
        state: &mut State,
        make: impl FnOnce(RequestId) -> Message,
        waiter: Waiter,
    ) -> Result<RequestId, ClientError> {
        if state.closed {
            return Err(ClientError::Closed);
        }
        if state.cut_off {
            return Err(self.disconnected());
        }
        let request = RequestId(state.next_request);
        state.next_request += 1;
        let message = make(request);
        let encoded = self.encode(&message)?;
        if state.online {
            self.conn.send(encoded.clone());
        }
        state.requests.insert(
            request,
            InFlight {
                kind: message.kind(),
                encoded,
                waiter,
            },
        );
        Ok(request)
    }

    /// Sends a query and waits for its reply.
    pub(crate) async fn query(
        &self,
        make: impl FnOnce(RequestId) -> Message,
    ) -> Result<Message, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.request(make, Waiter::Reply(tx))?;
        rx.await.map_err(|_| ClientError::Closed)?
    }

    /// Sends a request whose answer is `Accepted` or `Refused`.
    pub(crate) fn change(
        &self,
        make: impl FnOnce(RequestId) -> Message,
    ) -> Result<Answer, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.request(make, Waiter::Answer(tx))?;
        Ok(Answer { rx })
    }

    /// Registers futures for `tasks` and submits them to `job` in the
    /// given batches (opening the default job first, on its first use);
    /// returns each task's receiver, in order.
    pub(crate) fn submit(
        &self,
        job: JobId,
        batches: Vec<Vec<quarry_proto::EncodedTask>>,
    ) -> Result<Vec<oneshot::Receiver<Resolution>>, ClientError> {
        let mut state = self.lock();
        if state.cut_off {
            return Err(self.disconnected());
        }
        if job == state.ids.default_job && !state.ids.default_job_open {
            let spec = Arc::new(JobSpec {
                id: job,
                name: format!("client-{}", state.ids.session.id.0),
                broadcast: Vec::new(),
                output: None,
                context: Vec::new(),
                max_fails: None,
            });
            self.request_locked(
                &mut state,
                |request| Message::OpenJob { request, spec },
                Waiter::Internal,
            )?;
            state.ids.default_job_open = true;
        }
        let mut receivers = Vec::new();
        for tasks in batches {
            let ids: Vec<TaskId> = tasks.iter().map(|t| t.id()).collect();
            for &id in &ids {
                let (tx, rx) = oneshot::channel();
                state.pending.insert(id, tx);
                receivers.push(rx);
            }
            let sent = self.request_locked(
                &mut state,
                |request| Message::Submit {
                    request,
                    job,
                    tasks,
                },
                Waiter::Submit(ids.clone()),
            );
            if let Err(e) = sent {
                for id in ids {
                    state.pending.remove(&id);
                }
                return Err(e);
            }
        }
        Ok(receivers)
    }

    /// Ends the session: tells the scheduler, which answers and forgets
    /// it at once. From now on nothing is sent and every request fails as
    /// closed; what still waits fails once the answer comes. `None` when
    /// the session was already over.
    pub(crate) fn goodbye(&self) -> Option<Answer> {
        let mut state = self.lock();
        if state.closed || !state.online {
            state.closed = true;
            return None;
        }
        let (tx, rx) = oneshot::channel();
        let sent = self.request_locked(
            &mut state,
            |request| Message::Goodbye { request },
            Waiter::Answer(tx),
        );
        state.closed = true;
        sent.ok().map(|_| Answer { rx })
    }

    /// Forgets a future (dropped): its result need not come.
    pub(crate) fn forget(&self, task: TaskId) {
        self.lock().pending.remove(&task);
    }

    /// Watches a job: its progress comes on the returned channel.
    pub(crate) async fn watch(
        &self,
        job: JobId,
    ) -> Result<mpsc::UnboundedReceiver<JobInfo>, ClientError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (answer_tx, answer_rx) = oneshot::channel();
        {
            let mut state = self.lock();
            state.watchers.insert(job, tx);
            self.request_locked(
                &mut state,
                |request| Message::Watch { request, job },
                Waiter::Answer(answer_tx),
            )?;
        }
        match (Answer { rx: answer_rx }).await {
            Ok(()) => Ok(rx),
            Err(e) => {
                self.lock().watchers.remove(&job);
                Err(e)
            }
        }
    }

    fn disconnected(&self) -> ClientError {
        ClientError::Disconnected {
            address: self.address.clone(),
            seconds: self.reconnect_timeout.as_secs(),
        }
    }

    fn set_status(&self, state: SessionState, reconnected: Option<bool>) {
        self.status.send_modify(|status| {
            status.state = state;
            status.since = Instant::now();
            if let Some(resumed) = reconnected {
                status.reconnects += 1;
                status.resumed = resumed;
            }
        });
    }

    /// The connection is gone: requests wait until it is back.
    fn go_offline(&self, state: &mut State, why: &str) {
        if !state.online || state.closed {
            return;
        }
        warn!(
            "{why}: lost the scheduler at {}; reconnecting",
            self.address
        );
        state.online = false;
        state.offline_since = Some(Instant::now());
        state.last_hello = None;
        state.hello_backoff = FIRST_HELLO_BACKOFF;
        drop_closed_watchers(state);
        self.set_status(SessionState::Reconnecting, None);
    }

    fn hello(&self, state: &mut State) {
        state.last_hello = Some(Instant::now());
        let hello = Message::Hello {
            version: PROTOCOL_VERSION,
            role: Role::Client,
            name: self.name.clone(),
            slots: 0,
            functions: Vec::new(),
            inventory: Vec::new(),
            host: String::new(),
            resume: Some(state.ids.session),
        };
        match self.encode(&hello) {
            Ok(bytes) => self.conn.send(bytes),
            Err(e) => warn!("cannot encode Hello: {e}"),
        }
    }

    /// A Welcome after a reconnect: resumed, everything unanswered goes
    /// again; not resumed, the old session's futures and requests fail.
    fn welcomed(&self, state: &mut State, session: ClientSession, resumed: bool) {
        let away = state
            .offline_since
            .take()
            .map_or(Duration::ZERO, |t| t.elapsed());
        state.online = true;
        state.last_heard = Instant::now();
        state.cut_off = false;
        if resumed && session.id == state.ids.session.id {
            info!(
                "reconnected to the scheduler at {} after {:.1} s; session {} resumed",
                self.address,
                away.as_secs_f64(),
                session.id
            );
            self.resume(state);
        } else {
            warn!(
                "reconnected to the scheduler at {} after {:.1} s, but it no longer knows \
                 session {} (it restarted without its journal?): its jobs and waiting futures \
                 are lost; this client is now {}",
                self.address,
                away.as_secs_f64(),
                state.ids.session.id,
                session.id
            );
            let lost = format!(
                "the scheduler at {} restarted without this client's session (no journal?); \
                 submit the task again",
                self.address
            );
            fail_everything(state, |_| ClientError::Lost(lost.clone()));
            state.ids = Ids::for_session(session);
        }
        self.set_status(SessionState::Connected, Some(resumed));
    }

    /// After resuming: resend what was not answered, name the futures
    /// still waiting, watch the watched jobs again.
    fn resume(&self, state: &mut State) {
        // Earlier Resume and Watch requests are superseded by new ones.
        state
            .requests
            .retain(|_, r| !matches!(r.waiter, Waiter::Internal) || r.kind == "OpenJob");
        for in_flight in state.requests.values() {
            self.conn.send(in_flight.encoded.clone());
        }
        let submitting: std::collections::HashSet<TaskId> = state
            .requests
            .values()
            .filter_map(|r| match &r.waiter {
                Waiter::Submit(tasks) => Some(tasks.iter().copied()),
                _ => None,
            })
            .flatten()
            .collect();
        let mut waiting: Vec<TaskId> = state
            .pending
            .keys()
            .copied()
            .filter(|t| !submitting.contains(t))
            .collect();
        waiting.sort_unstable();
        for chunk in waiting.chunks(self.limits.max_tasks_per_submit.max(1)) {
            let tasks = chunk.to_vec();
            if let Err(e) = self.request_locked(
                state,
                |request| Message::Resume { request, tasks },
                Waiter::Internal,
            ) {
                warn!("cannot ask the scheduler about waiting futures: {e}");
            }
        }
        drop_closed_watchers(state);
        let jobs: Vec<JobId> = state.watchers.keys().copied().collect();
        for job in jobs {
            if let Err(e) = self.request_locked(
                state,
                |request| Message::Watch { request, job },
                Waiter::Internal,
            ) {
                warn!("cannot watch job {job} again: {e}");
            }
        }
    }

    /// One message from the scheduler.
    fn on_message(&self, state: &mut State, message: Message) {
        match message {
            Message::TaskDone { task, outcome } => {
                if let Some(waiter) = state.pending.remove(&task) {
                    let _ = waiter.send(Ok(outcome));
                }
            }
            Message::JobProgress(info) => {
                if let Some(tx) = state.watchers.get(&info.id) {
                    let _ = tx.send(info);
                }
            }
            Message::Accepted { request } => {
                if let Some(in_flight) = state.requests.remove(&request) {
                    if let Waiter::Answer(tx) = in_flight.waiter {
                        let _ = tx.send(Ok(()));
                    }
                    if in_flight.kind == "Goodbye" {
                        fail_everything(state, |_| ClientError::Closed);
                    }
                }
            }
            Message::Refused { request, reason } => self.refused(state, request, reason),
            reply @ (Message::Jobs { .. } | Message::Workers { .. } | Message::Results { .. }) => {
                let request = reply.request().expect("replies carry their request");
                match state.requests.remove(&request).map(|r| r.waiter) {
                    Some(Waiter::Reply(tx)) => {
                        let _ = tx.send(Ok(reply));
                    }
                    _ => debug!("a {} answers no waiting request", reply.kind()),
                }
            }
            Message::Welcome {
                client: Some(session),
                resumed,
                ..
            } => {
                if !state.online {
                    self.welcomed(state, session, resumed);
                }
            }
            Message::Rejected { reason, fatal } => {
                if fatal {
                    warn!(
                        "the scheduler at {} refuses this client: {reason}",
                        self.address
                    );
                    self.cut_off(state, Some(ClientError::Auth(reason)));
                } else if state.online {
                    // It forgot this connection (a restart): say Hello again.
                    self.go_offline(state, "the scheduler does not know this connection");
                    self.hello(state);
                }
            }
            Message::Heartbeat => {}
            Message::Error { message } => warn!("scheduler: {message}"),
            other => debug!("ignoring {} from the scheduler", other.kind()),
        }
    }

    fn refused(&self, state: &mut State, request: RequestId, reason: String) {
        let Some(in_flight) = state.requests.remove(&request) else {
            return;
        };
        match in_flight.waiter {
            Waiter::Reply(tx) => {
                let _ = tx.send(Err(ClientError::Refused(reason)));
            }
            Waiter::Answer(tx) => {
                if let Err(Err(e)) = tx.send(Err(ClientError::Refused(reason))) {
                    warn!("the scheduler refused a {}: {e}", in_flight.kind);
                }
            }
            Waiter::Submit(tasks) => {
                for task in tasks {
                    if let Some(waiter) = state.pending.remove(&task) {
                        let _ = waiter.send(Err(ClientError::Refused(reason.clone())));
                    }
                }
            }
            Waiter::Internal => warn!("the scheduler refused a {}: {reason}", in_flight.kind),
        }
    }

    /// Fails everything waiting: the connection stayed down too long (or
    /// the scheduler refuses us for good).
    fn cut_off(&self, state: &mut State, error: Option<ClientError>) {
        if state.cut_off {
            return;
        }
        let waited = state.offline_since.map_or(0, |t| t.elapsed().as_secs());
        warn!(
            "no scheduler at {} for {waited} s (--reconnect-timeout is {} s): failing every \
             waiting future and request",
            self.address,
            self.reconnect_timeout.as_secs()
        );
        state.cut_off = true;
        state.online = false;
        state.offline_since.get_or_insert_with(Instant::now);
        let reason = error.map(|e| e.to_string());
        fail_everything(state, |_| match &reason {
            Some(reason) => ClientError::Auth(reason.clone()),
            None => self.disconnected(),
        });
        state.ids.default_job_open = false;
        state.ids.default_job = JobId(state.ids.next_job);
        state.ids.next_job += 1;
        self.set_status(SessionState::CutOff, None);
    }

    /// Timers: heartbeats while connected (and noticing a silent
    /// scheduler), Hellos with backoff while not, and the cut-off.
    fn on_tick(&self, state: &mut State) {
        if state.closed {
            return;
        }
        let now = Instant::now();
        if state.online {
            if now - state.last_heartbeat >= self.heartbeat {
                state.last_heartbeat = now;
                match self.encode(&Message::Heartbeat) {
                    Ok(bytes) => self.conn.send(bytes),
                    Err(e) => warn!("cannot encode a heartbeat: {e}"),
                }
            }
            let silence = (self.heartbeat * 5).max(Duration::from_secs(5));
            if now - state.last_heard > silence {
                self.go_offline(state, "the scheduler stopped answering heartbeats");
                self.hello(state);
            }
            return;
        }
        let offline_for = state.offline_since.map_or(Duration::ZERO, |t| now - t);
        if !state.cut_off && offline_for >= self.reconnect_timeout {
            self.cut_off(state, None);
        }
        if state
            .last_hello
            .is_none_or(|t| now - t >= state.hello_backoff)
        {
            if state.last_hello.is_some() {
                state.hello_backoff = (state.hello_backoff * 2).min(MAX_HELLO_BACKOFF);
            }
            self.hello(state);
        }
    }
}

impl Drop for Session {
    /// The last handle and future are gone: say goodbye without waiting
    /// for the answer, so the scheduler frees this session's slot now.
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        if state.closed || !state.online {
            return;
        }
        let goodbye = Message::Goodbye {
            request: RequestId(state.next_request),
        };
        if let Ok(bytes) = encode_message(&goodbye) {
            self.conn.send(bytes);
        }
    }
}

/// Fails every waiting future and request with `error`; watchers close.
fn fail_everything(state: &mut State, error: impl Fn(&str) -> ClientError) {
    for (_, waiter) in state.pending.drain() {
        let _ = waiter.send(Err(error("future")));
    }
    for (_, in_flight) in std::mem::take(&mut state.requests) {
        match in_flight.waiter {
            Waiter::Reply(tx) => {
                let _ = tx.send(Err(error(in_flight.kind)));
            }
            Waiter::Answer(tx) => {
                let _ = tx.send(Err(error(in_flight.kind)));
            }
            Waiter::Submit(_) | Waiter::Internal => {}
        }
    }
    state.watchers.clear();
}

fn drop_closed_watchers(state: &mut State) {
    state.watchers.retain(|_, tx| !tx.is_closed());
}

/// Reads the connection and keeps the session alive until the client and
/// every future are gone (the connection then closes).
pub(crate) async fn run(session: Weak<Session>, mut events: mpsc::Receiver<ConnectionEvent>) {
    let mut tick = tokio::time::interval(SESSION_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else { return };
                let Some(session) = session.upgrade() else { return };
                session.on_event(event);
            }
            _ = tick.tick() => {
                let Some(session) = session.upgrade() else { return };
                let mut state = session.lock();
                session.on_tick(&mut state);
            }
        }
    }
}

impl Session {
    fn on_event(&self, event: ConnectionEvent) {
        let mut state = self.lock();
        match event {
            ConnectionEvent::Frame(Ok(envelope)) => {
                state.last_heard = Instant::now();
                for message in envelope.messages {
                    self.on_message(&mut state, message);
                }
            }
            ConnectionEvent::Frame(Err(e)) => warn!("undecodable frame from the scheduler: {e}"),
            ConnectionEvent::HandshakeFailed(reason) => warn!("{reason}"),
            ConnectionEvent::Disconnected => {
                self.go_offline(&mut state, "the connection dropped");
            }
            ConnectionEvent::Connected => {
                if !state.online && !state.closed {
                    // Back at the transport level: say Hello right away.
                    state.hello_backoff = FIRST_HELLO_BACKOFF;
                    self.hello(&mut state);
                }
            }
        }
    }
}
