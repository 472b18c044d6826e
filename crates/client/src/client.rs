use crate::error::ClientError;
use crate::future::{decode_value, TaskFuture};
use crate::job::{Job, JobOptions};
use quarry_net::{connect, ConnectOptions, Connection, ConnectionEvent, CurveClientKeys};
use quarry_proto::{
    encode_message, ClientId, DataRef, EncodedTask, JobId, JobInfo, JobSpec, Limits, Message, Role,
    TaskId, TaskOutcome, TaskSpec, TaskStatus, WorkerInfo, PROTOCOL_VERSION,
};
use quarry_store::{PutSource, StoreResolver};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

/// How a client connects.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Transport options (address, CURVE keys, frame cap).
    pub connect: ConnectOptions,
    /// How long to wait for the scheduler's handshake.
    pub handshake_timeout: Duration,
    /// Where arguments over the inline cap are put (content-addressed),
    /// such as `s3://bucket/quarry-staging`. Defaults to `QUARRY_STAGING`.
    pub staging: Option<String>,
    /// Resolves `s3://`, `file://` URLs for large results and staging.
    pub store: StoreResolver,
}

impl ClientOptions {
    /// Options for `address` without CURVE, staging from `QUARRY_STAGING`
    /// and stores from the `AWS_*` environment.
    pub fn new(address: impl Into<String>) -> ClientOptions {
        ClientOptions {
            connect: ConnectOptions::insecure(address),
            handshake_timeout: Duration::from_secs(10),
            staging: std::env::var("QUARRY_STAGING").ok(),
            store: StoreResolver::from_env(),
        }
    }

    /// Uses CURVE with these keys.
    pub fn with_curve(mut self, keys: CurveClientKeys) -> ClientOptions {
        self.connect.curve = Some(keys);
        self
    }
}

/// Answers to requests that have no task id, in the order they were asked
/// (the scheduler answers in order).
type ReplyQueue = VecDeque<oneshot::Sender<Result<Message, ClientError>>>;

/// State shared between the client handle and its receive loop.
#[derive(Default)]
pub(crate) struct Shared {
    pub(crate) pending: Mutex<HashMap<TaskId, oneshot::Sender<TaskOutcome>>>,
    replies: Mutex<ReplyQueue>,
    watchers: Mutex<HashMap<JobId, mpsc::UnboundedSender<JobInfo>>>,
}

pub(crate) struct Inner {
    conn: Connection,
    pub(crate) shared: Arc<Shared>,
    pub(crate) id: ClientId,
    pub(crate) limits: Limits,
    next_task: AtomicU64,
    next_job: AtomicU64,
    default_job: JobId,
    pub(crate) store: StoreResolver,
    staging: Option<String>,
}

impl Inner {
    pub(crate) fn send(&self, message: &Message) -> Result<(), ClientError> {
        let bytes = encode_message(message).map_err(|e| ClientError::Codec(e.to_string()))?;
        if bytes.len() + 16 > self.limits.max_frame_bytes {
            return Err(ClientError::FrameTooLarge {
                what: format!("a {} message", message.kind()),
                size: bytes.len(),
                cap: self.limits.max_frame_bytes,
            });
        }
        self.conn.send(bytes);
        Ok(())
    }

    pub(crate) fn release(&self, task: TaskId) {
        self.forget(task);
        let _ = self.send(&Message::Release { tasks: vec![task] });
    }

    /// Stops waiting for a task's outcome, leaving its result on the
    /// scheduler.
    pub(crate) fn forget(&self, task: TaskId) {
        self.shared
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&task);
    }
}

/// A connection to a quarry scheduler. Cheap to clone; the connection
/// closes when the last clone (and every future) is dropped.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

impl Client {
    /// Connects without CURVE and with default options.
    pub async fn connect(address: &str) -> Result<Client, ClientError> {
        Client::connect_with(ClientOptions::new(address)).await
    }

    /// Connects and completes the handshake, failing promptly when the
    /// scheduler refuses our key or does not answer.
    pub async fn connect_with(options: ClientOptions) -> Result<Client, ClientError> {
        let address = options.connect.address.clone();
        let (conn, mut events) = connect(options.connect.clone())?;
        let hello = encode_message(&Message::Hello {
            version: PROTOCOL_VERSION,
            role: Role::Client,
            name: format!("client-{}", std::process::id()),
            slots: 0,
            functions: Vec::new(),
            inventory: Vec::new(),
        })
        .map_err(|e| ClientError::Codec(e.to_string()))?;
        conn.send(hello);
        let welcome = tokio::time::timeout(options.handshake_timeout, async {
            loop {
                match events.recv().await {
                    Some(ConnectionEvent::Frame(Ok(envelope))) => {
                        for message in envelope.messages {
                            match message {
                                Message::Welcome {
                                    client: Some(id),
                                    limits,
                                    heartbeat_ms,
                                    ..
                                } => return Ok((id, limits, heartbeat_ms)),
                                Message::Rejected { reason, .. } => {
                                    return Err(ClientError::Auth(reason))
                                }
                                other => debug!("ignoring {} before Welcome", other.kind()),
                            }
                        }
                    }
                    Some(ConnectionEvent::HandshakeFailed(reason)) => {
                        return Err(ClientError::Auth(reason))
                    }
                    Some(_) => continue,
                    None => return Err(ClientError::Closed),
                }
            }
        })
        .await
        .map_err(|_| ClientError::Timeout {
            address: address.clone(),
            seconds: options.handshake_timeout.as_secs(),
        })??;
        let (id, limits, heartbeat_ms) = welcome;
        let shared = Arc::new(Shared::default());
        let first_task = TaskId::first_for(id).0;
        let default_job = JobId::first_for(id);
        let inner = Arc::new(Inner {
            conn,
            shared: shared.clone(),
            id,
            limits,
            next_task: AtomicU64::new(first_task + 1),
            next_job: AtomicU64::new(default_job.0 + 1),
            default_job,
            store: options.store,
            staging: options.staging,
        });
        tokio::spawn(receive_loop(events, shared));
        tokio::spawn(heartbeat_loop(
            Arc::downgrade(&inner),
            Duration::from_millis(heartbeat_ms.max(50)),
        ));
        inner.send(&Message::OpenJob(Arc::new(JobSpec {
            id: default_job,
            name: format!("client-{}", id.0),
            broadcast: Vec::new(),
            output: None,
            context: Vec::new(),
            max_fails: None,
        })))?;
        Ok(Client { inner })
    }

    /// The id the scheduler gave this client.
    pub fn id(&self) -> ClientId {
        self.inner.id
    }

    /// The scheduler's limits, as announced in the handshake.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// The job that plain `submit` and `map` calls go to.
    pub(crate) fn default_job(&self) -> JobId {
        self.inner.default_job
    }

    pub(crate) fn next_task_id(&self) -> TaskId {
        TaskId(self.inner.next_task.fetch_add(1, Ordering::Relaxed))
    }

    /// Builds a task for `function` with `args`: arguments over the inline
    /// cap are put into the staging store and passed by reference.
    pub async fn task<A: Serialize>(
        &self,
        function: &str,
        args: &A,
    ) -> Result<TaskSpec, ClientError> {
        let mut spec = self.inline_task(function, args)?;
        if spec.args.len() > self.inner.limits.max_inline_bytes {
            let bytes = std::mem::take(&mut spec.args);
            spec.args_ref = Some(self.put_bytes(bytes).await?);
        }
        Ok(spec)
    }

    /// Builds a task whose arguments must fit inline.
    pub(crate) fn inline_task<A: Serialize>(
        &self,
        function: &str,
        args: &A,
    ) -> Result<TaskSpec, ClientError> {
        let bytes = rmp_serde::to_vec_named(args).map_err(|e| ClientError::Codec(e.to_string()))?;
        Ok(TaskSpec::new(self.next_task_id(), function, bytes))
    }

    /// Refuses inline arguments over the cap, naming it.
    fn check_inline(&self, spec: &TaskSpec) -> Result<(), ClientError> {
        let cap = self.inner.limits.max_inline_bytes;
        if spec.args.len() > cap {
            return Err(ClientError::TooLarge {
                what: format!("the argument of task `{}` ({})", spec.key, spec.function),
                size: spec.args.len(),
                cap,
            });
        }
        Ok(())
    }

    /// Submits one call of `function` to the client's default job.
    ///
    /// Arguments over the inline cap are refused with an error naming the
    /// cap; [`Client::submit_async`] puts them into the staging store
    /// instead.
    pub fn submit<A: Serialize, R: DeserializeOwned>(
        &self,
        function: &str,
        args: &A,
    ) -> Result<TaskFuture<R>, ClientError> {
        let spec = self.inline_task(function, args)?;
        let mut futures = self.submit_specs(self.inner.default_job, vec![spec])?;
        Ok(futures.remove(0))
    }

    /// Like [`Client::submit`], but an argument over the inline cap is put
    /// into the staging store automatically and passed by reference.
    pub async fn submit_async<A: Serialize, R: DeserializeOwned>(
        &self,
        function: &str,
        args: &A,
    ) -> Result<TaskFuture<R>, ClientError> {
        let spec = self.task(function, args).await?;
        let mut futures = self.submit_specs(self.inner.default_job, vec![spec])?;
        Ok(futures.remove(0))
    }

    /// Maps `function` over `items`, one task each, submitted in batches to
    /// the client's default job; the futures are in the order of `items`.
    /// [`crate::Job::map`] does the same in a job of your own (with
    /// broadcast inputs, say).
    pub fn map<A, R, I>(&self, function: &str, items: I) -> Result<Vec<TaskFuture<R>>, ClientError>
    where
        A: Serialize,
        R: DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        self.map_in(self.inner.default_job, function, items)
    }

    /// [`Client::map`] into job `job`. Every argument must fit inline;
    /// nothing is submitted if one does not.
    pub(crate) fn map_in<A, R, I>(
        &self,
        job: JobId,
        function: &str,
        items: I,
    ) -> Result<Vec<TaskFuture<R>>, ClientError>
    where
        A: Serialize,
        R: DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        let specs = items
            .into_iter()
            .map(|item| self.inline_task(function, &item))
            .collect::<Result<Vec<_>, _>>()?;
        self.submit_specs(job, specs)
    }

    /// Submits prepared tasks to a job, in batches that respect the frame
    /// cap and the per-submission task cap, and returns their futures in
    /// order.
    pub fn submit_specs<R: DeserializeOwned>(
        &self,
        job: JobId,
        specs: Vec<TaskSpec>,
    ) -> Result<Vec<TaskFuture<R>>, ClientError> {
        for spec in &specs {
            self.check_inline(spec)?;
        }
        let mut futures = Vec::with_capacity(specs.len());
        {
            let mut pending = self
                .inner
                .shared
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            for spec in &specs {
                let (tx, rx) = oneshot::channel();
                pending.insert(spec.id, tx);
                futures.push(TaskFuture::new(
                    spec.id,
                    spec.key.clone(),
                    rx,
                    self.inner.clone(),
                ));
            }
        }
        // Leave room for the envelope and the message header.
        let budget = self.inner.limits.max_frame_bytes / 2;
        let max_tasks = self.inner.limits.max_tasks_per_submit.max(1);
        let mut batch = Vec::new();
        let mut batch_bytes = 0;
        for spec in specs {
            let encoded =
                EncodedTask::encode(&spec).map_err(|e| ClientError::Codec(e.to_string()))?;
            let size = encoded.encoded_len();
            if !batch.is_empty() && (batch.len() >= max_tasks || batch_bytes + size > budget) {
                self.inner.send(&Message::Submit {
                    job,
                    tasks: std::mem::take(&mut batch),
                })?;
                batch_bytes = 0;
            }
            batch_bytes += size;
            batch.push(encoded);
        }
        if !batch.is_empty() {
            self.inner.send(&Message::Submit { job, tasks: batch })?;
        }
        Ok(futures)
    }

    /// Waits for every future and returns the results in order; the first
    /// failed task's error is returned instead.
    pub async fn gather<R: DeserializeOwned>(
        &self,
        futures: Vec<TaskFuture<R>>,
    ) -> Result<Vec<R>, ClientError> {
        let mut results = Vec::with_capacity(futures.len());
        for future in futures {
            results.push(future.result().await?);
        }
        Ok(results)
    }

    /// Cancels tasks (queued ones never run; running ones are stopped).
    pub fn cancel<R>(&self, futures: &[TaskFuture<R>]) -> Result<(), ClientError> {
        let tasks = futures.iter().map(|f| f.id()).collect();
        self.inner.send(&Message::Cancel { tasks })
    }

    /// Puts bytes into the staging store (content-addressed: identical
    /// content is uploaded once) and returns a reference to pass to tasks.
    pub async fn put_bytes(&self, bytes: Vec<u8>) -> Result<DataRef, ClientError> {
        self.put(PutSource::Bytes(bytes.into())).await
    }

    /// Puts a local file into the staging store, streaming it.
    pub async fn put_file(&self, path: impl Into<PathBuf>) -> Result<DataRef, ClientError> {
        self.put(PutSource::File(path.into())).await
    }

    async fn put(&self, source: PutSource) -> Result<DataRef, ClientError> {
        let Some(staging) = &self.inner.staging else {
            return Err(ClientError::Refused(
                "no staging store is configured: set QUARRY_STAGING=s3://bucket/prefix (or a \
                 local path) or ClientOptions::staging"
                    .into(),
            ));
        };
        Ok(self
            .inner
            .store
            .put_content_addressed(staging, source)
            .await?)
    }

    /// Opens a new job (with broadcast inputs, an output prefix, an
    /// executor context) that tasks can be submitted to.
    pub fn open_job(&self, options: JobOptions) -> Result<Job, ClientError> {
        let id = JobId(self.inner.next_job.fetch_add(1, Ordering::Relaxed));
        let spec = Arc::new(JobSpec {
            id,
            name: options.name,
            broadcast: options.broadcast,
            output: options.output,
            context: options.context,
            max_fails: options.max_fails,
        });
        self.inner.send(&Message::OpenJob(spec.clone()))?;
        Ok(Job::new(self.clone(), spec))
    }

    /// Subscribes to a job's progress and results (used by `--watch`).
    pub fn watch(&self, job: JobId) -> Result<mpsc::UnboundedReceiver<JobInfo>, ClientError> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.inner
            .shared
            .watchers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(job, tx);
        self.inner.send(&Message::Watch { job })?;
        Ok(rx)
    }

    async fn request(&self, message: Message) -> Result<Message, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .shared
            .replies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(tx);
        self.inner.send(&message)?;
        rx.await.map_err(|_| ClientError::Closed)?
    }

    /// Lists the scheduler's jobs.
    pub async fn jobs(&self) -> Result<Vec<JobInfo>, ClientError> {
        match self.request(Message::ListJobs).await? {
            Message::Jobs(jobs) => Ok(jobs),
            other => Err(ClientError::Refused(format!("unexpected {}", other.kind()))),
        }
    }

    /// Lists the workers connected to the scheduler.
    pub async fn workers(&self) -> Result<Vec<WorkerInfo>, ClientError> {
        match self.request(Message::ListWorkers).await? {
            Message::Workers(workers) => Ok(workers),
            other => Err(ClientError::Refused(format!("unexpected {}", other.kind()))),
        }
    }

    /// Every row of a job's result table, paging through the scheduler.
    pub async fn results(&self, job: JobId) -> Result<Vec<TaskStatus>, ClientError> {
        let mut rows: Vec<TaskStatus> = Vec::new();
        loop {
            let after = rows.last().map(|r| r.id);
            match self
                .request(Message::GetResults {
                    job,
                    after,
                    limit: 5_000,
                })
                .await?
            {
                Message::Results {
                    rows: page, more, ..
                } => {
                    rows.extend(page);
                    if !more {
                        return Ok(rows);
                    }
                }
                other => return Err(ClientError::Refused(format!("unexpected {}", other.kind()))),
            }
        }
    }

    /// Cancels every unfinished task of a job.
    pub fn cancel_job(&self, job: JobId) -> Result<(), ClientError> {
        self.inner.send(&Message::CancelJob { job })
    }

    /// Decodes a task's value (fetching it from the store when it is a
    /// reference).
    pub async fn value<R: DeserializeOwned>(
        &self,
        value: &quarry_proto::Value,
    ) -> Result<R, ClientError> {
        decode_value(&self.inner.store, value).await
    }
}

async fn receive_loop(mut events: mpsc::Receiver<ConnectionEvent>, shared: Arc<Shared>) {
    while let Some(event) = events.recv().await {
        let envelope = match event {
            ConnectionEvent::Frame(Ok(envelope)) => envelope,
            ConnectionEvent::Frame(Err(e)) => {
                warn!("undecodable frame from the scheduler: {e}");
                continue;
            }
            ConnectionEvent::HandshakeFailed(reason) => {
                warn!("{reason}");
                continue;
            }
            ConnectionEvent::Disconnected => {
                warn!("lost the connection to the scheduler; reconnecting");
                continue;
            }
            ConnectionEvent::Connected => continue,
        };
        for message in envelope.messages {
            match message {
                Message::TaskDone { task, outcome } => {
                    let waiter = shared
                        .pending
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&task);
                    if let Some(waiter) = waiter {
                        let _ = waiter.send(outcome);
                    }
                }
                Message::JobProgress(info) => {
                    let watchers = shared.watchers.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(tx) = watchers.get(&info.id) {
                        let _ = tx.send(info);
                    }
                }
                reply @ (Message::Jobs(_)
                | Message::Workers(_)
                | Message::Results { .. }
                | Message::RequestFailed { .. }) => {
                    let waiter = shared
                        .replies
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .pop_front();
                    let answer = match reply {
                        Message::RequestFailed { message } => Err(ClientError::Refused(message)),
                        reply => Ok(reply),
                    };
                    if let Some(waiter) = waiter {
                        let _ = waiter.send(answer);
                    }
                }
                Message::Error { message } => warn!("scheduler: {message}"),
                other => debug!("ignoring {} from the scheduler", other.kind()),
            }
        }
    }
}

async fn heartbeat_loop(inner: Weak<Inner>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let _ = inner.send(&Message::Heartbeat);
    }
}
