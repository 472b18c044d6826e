use crate::error::ClientError;
use crate::future::{decode_value, TaskFuture};
use crate::job::{Job, JobOptions};
use crate::session::{self, Answer, Session, SessionStatus, Welcomed};
use quarry_net::{connect, ConnectOptions, ConnectionEvent, CurveClientKeys};
use quarry_proto::{
    encode_message, ClientId, DataRef, EncodedTask, JobId, JobInfo, JobSpec, Limits, Message, Role,
    TaskId, TaskSpec, TaskStatus, WorkerInfo, PROTOCOL_VERSION,
};
use quarry_store::{PutSource, StoreResolver};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tracing::debug;

/// How a client connects.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Transport options (address, CURVE keys, frame cap).
    pub connect: ConnectOptions,
    /// How long to wait for the scheduler's handshake.
    pub handshake_timeout: Duration,
    /// How long the connection may stay lost (the scheduler restarting,
    /// the network down) before every waiting future and request fails
    /// with an error naming the scheduler's address. Until then the client
    /// reconnects by itself and carries on.
    pub reconnect_timeout: Duration,
    /// Where arguments over the inline cap are put (content-addressed),
    /// such as `s3://bucket/quarry-staging`. Defaults to `QUARRY_STAGING`.
    pub staging: Option<String>,
    /// Resolves `s3://`, `file://` URLs for large results and staging.
    pub store: StoreResolver,
}

/// The default [`ClientOptions::reconnect_timeout`].
pub const DEFAULT_RECONNECT_TIMEOUT: Duration = Duration::from_secs(60);

impl ClientOptions {
    /// Options for `address` without CURVE, staging from `QUARRY_STAGING`
    /// and stores from the `AWS_*` environment.
    pub fn new(address: impl Into<String>) -> ClientOptions {
        ClientOptions {
            connect: ConnectOptions::insecure(address),
            handshake_timeout: Duration::from_secs(10),
            reconnect_timeout: DEFAULT_RECONNECT_TIMEOUT,
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

/// The scheduler's jobs, as [`Client::list_jobs`] returns them.
#[derive(Clone, Debug, PartialEq)]
pub struct JobList {
    /// The jobs it holds, in id order.
    pub jobs: Vec<JobInfo>,
    /// Finished jobs it dropped after their retention (their manifests
    /// stay in the store).
    pub dropped: u64,
}

pub(crate) struct Inner {
    pub(crate) session: Arc<Session>,
    pub(crate) store: StoreResolver,
    staging: Option<String>,
}

impl Inner {
    /// A future was dropped: its result is released on the scheduler.
    pub(crate) fn release(&self, task: TaskId) {
        self.forget(task);
        let _ = self.session.notify(&Message::Release { tasks: vec![task] });
    }

    /// Stops waiting for a task's outcome, leaving its result on the
    /// scheduler.
    pub(crate) fn forget(&self, task: TaskId) {
        self.session.forget(task);
    }
}

/// Rows asked for per page by [`Client::results`].
const RESULTS_PAGE: u32 = 5_000;

/// How long [`Client::close`] waits for the scheduler to answer.
pub const GOODBYE_WAIT: Duration = Duration::from_secs(2);

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
        let name = format!("client-{}", std::process::id());
        let (conn, mut events) = connect(options.connect.clone())?;
        let hello = encode_message(&Message::Hello {
            version: PROTOCOL_VERSION,
            role: Role::Client,
            name: name.clone(),
            slots: 0,
            functions: Vec::new(),
            inventory: Vec::new(),
            host: String::new(),
            resume: None,
        })
        .map_err(|e| ClientError::Codec(e.to_string()))?;
        conn.send(hello);
        let welcomed = tokio::time::timeout(options.handshake_timeout, async {
            loop {
                match events.recv().await {
                    Some(ConnectionEvent::Frame(Ok(envelope))) => {
                        for message in envelope.messages {
                            match message {
                                Message::Welcome {
                                    client: Some(session),
                                    limits,
                                    heartbeat_ms,
                                    ..
                                } => {
                                    return Ok(Welcomed {
                                        session,
                                        limits,
                                        heartbeat: Duration::from_millis(heartbeat_ms.max(50)),
                                    })
                                }
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
        let session = Arc::new(Session::new(
            conn,
            welcomed,
            address,
            name,
            options.reconnect_timeout,
        ));
        tokio::spawn(session::run(Arc::downgrade(&session), events));
        let inner = Arc::new(Inner {
            session,
            store: options.store,
            staging: options.staging,
        });
        Ok(Client { inner })
    }

    /// Ends the session for this handle, its clones and its futures
    /// (those still waiting fail as closed): the scheduler forgets it at
    /// once and gives its connection slot back. Waits for the scheduler's
    /// answer at most [`GOODBYE_WAIT`]; a scheduler that does not answer
    /// forgets the session after its client timeout instead. Dropping the
    /// last handle and future says goodbye too, without waiting.
    pub async fn close(self) {
        if let Some(answer) = self.inner.session.goodbye() {
            match tokio::time::timeout(GOODBYE_WAIT, answer).await {
                Ok(Ok(())) => debug!("the scheduler ended this session"),
                Ok(Err(e)) => debug!("goodbye not answered: {e}"),
                Err(_) => debug!("goodbye not answered within {GOODBYE_WAIT:?}"),
            }
        }
    }

    /// The id of this client's session. It stays the same across
    /// reconnects, unless the scheduler restarted without its journal.
    pub fn id(&self) -> ClientId {
        self.inner.session.with_ids(|ids| ids.session.id)
    }

    /// The scheduler's limits, as announced in the handshake.
    pub fn limits(&self) -> &Limits {
        self.inner.session.limits()
    }

    /// The session's state (connected, reconnecting, cut off) and its
    /// changes, for showing them (`quarry submit --watch` says when it
    /// reconnected).
    pub fn session_status(&self) -> watch::Receiver<SessionStatus> {
        self.inner.session.status()
    }

    /// The scheduler's address.
    pub fn address(&self) -> &str {
        self.inner.session.address()
    }

    /// The job that plain `submit` and `map` calls go to (opened on first
    /// use, so a client that only opens jobs of its own leaves none).
    pub(crate) fn default_job(&self) -> JobId {
        self.inner.session.with_ids(|ids| ids.default_job)
    }

    pub(crate) fn next_task_id(&self) -> TaskId {
        self.inner.session.with_ids(|ids| {
            let id = TaskId(ids.next_task);
            ids.next_task += 1;
            id
        })
    }

    /// Builds a task for `function` with `args`: arguments over the inline
    /// cap are put into the staging store and passed by reference.
    pub async fn task<A: Serialize>(
        &self,
        function: &str,
        args: &A,
    ) -> Result<TaskSpec, ClientError> {
        let mut spec = self.inline_task(function, args)?;
        if spec.args.len() > self.limits().max_inline_bytes {
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
        let cap = self.limits().max_inline_bytes;
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
        let mut futures = self.submit_specs(self.default_job(), vec![spec])?;
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
        let mut futures = self.submit_specs(self.default_job(), vec![spec])?;
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
        self.map_in(self.default_job(), function, items)
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
    /// order. A batch the scheduler refuses fails each of its futures with
    /// the reason.
    pub fn submit_specs<R: DeserializeOwned>(
        &self,
        job: JobId,
        specs: Vec<TaskSpec>,
    ) -> Result<Vec<TaskFuture<R>>, ClientError> {
        for spec in &specs {
            self.check_inline(spec)?;
        }
        let names: Vec<(TaskId, String)> = specs.iter().map(|s| (s.id, s.key.clone())).collect();
        // Leave room for the envelope and the message header.
        let limits = self.limits();
        let budget = limits.max_frame_bytes / 2;
        let max_tasks = limits.max_tasks_per_submit.max(1);
        let mut batches = Vec::new();
        let mut batch = Vec::new();
        let mut batch_bytes = 0;
        for spec in specs {
            let encoded =
                EncodedTask::encode(&spec).map_err(|e| ClientError::Codec(e.to_string()))?;
            let size = encoded.encoded_len();
            if !batch.is_empty() && (batch.len() >= max_tasks || batch_bytes + size > budget) {
                batches.push(std::mem::take(&mut batch));
                batch_bytes = 0;
            }
            batch_bytes += size;
            batch.push(encoded);
        }
        if !batch.is_empty() {
            batches.push(batch);
        }
        let receivers = self.inner.session.submit(job, batches)?;
        Ok(names
            .into_iter()
            .zip(receivers)
            .map(|((id, key), rx)| TaskFuture::new(id, key, rx, self.inner.clone()))
            .collect())
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

    /// Cancels tasks (queued ones never run; running ones are stopped);
    /// the [`Answer`] says when the scheduler did.
    pub fn cancel<R>(&self, futures: &[TaskFuture<R>]) -> Result<Answer, ClientError> {
        self.cancel_tasks(futures.iter().map(|f| f.id()).collect())
    }

    /// [`Client::cancel`] by task id, for callers that keep the futures
    /// elsewhere (the Python client waits for each on a task of its own).
    pub fn cancel_tasks(&self, tasks: Vec<TaskId>) -> Result<Answer, ClientError> {
        self.inner
            .session
            .change(|request| Message::Cancel { request, tasks })
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
    /// executor context) that tasks can then be submitted to. Should the
    /// scheduler refuse it, every submission to it fails with the reason.
    pub fn open_job(&self, options: JobOptions) -> Result<Job, ClientError> {
        let id = self.inner.session.with_ids(|ids| {
            let id = JobId(ids.next_job);
            ids.next_job += 1;
            id
        });
        let spec = Arc::new(JobSpec {
            id,
            name: options.name,
            broadcast: options.broadcast,
            output: options.output,
            context: options.context,
            max_fails: options.max_fails,
        });
        let sent = spec.clone();
        // Its answer is not awaited: a refusal shows in what follows.
        drop(self.inner.session.change(|request| Message::OpenJob {
            request,
            spec: sent,
        })?);
        Ok(Job::new(self.clone(), spec))
    }

    /// Subscribes to a job's progress and results (used by `--watch`):
    /// the current progress comes at once, then every change. The
    /// subscription survives reconnects; the channel closes when the
    /// client is cut off (see [`ClientOptions::reconnect_timeout`]).
    pub async fn watch(&self, job: JobId) -> Result<mpsc::UnboundedReceiver<JobInfo>, ClientError> {
        self.inner.session.watch(job).await
    }

    /// Lists the scheduler's jobs.
    pub async fn jobs(&self) -> Result<Vec<JobInfo>, ClientError> {
        Ok(self.list_jobs().await?.jobs)
    }

    /// Lists the scheduler's jobs, and how many finished jobs it dropped
    /// after their retention.
    pub async fn list_jobs(&self) -> Result<JobList, ClientError> {
        match self
            .inner
            .session
            .query(|request| Message::ListJobs { request })
            .await?
        {
            Message::Jobs { jobs, dropped, .. } => Ok(JobList { jobs, dropped }),
            other => Err(ClientError::Refused(format!("unexpected {}", other.kind()))),
        }
    }

    /// Lists the workers connected to the scheduler.
    pub async fn workers(&self) -> Result<Vec<WorkerInfo>, ClientError> {
        match self
            .inner
            .session
            .query(|request| Message::ListWorkers { request })
            .await?
        {
            Message::Workers { workers, .. } => Ok(workers),
            other => Err(ClientError::Refused(format!("unexpected {}", other.kind()))),
        }
    }

    /// Every row of a job's result table, paging through the scheduler.
    pub async fn results(&self, job: JobId) -> Result<Vec<TaskStatus>, ClientError> {
        let mut rows: Vec<TaskStatus> = Vec::new();
        loop {
            let after = rows.last().map(|r| r.id);
            let (page, more) = self.results_page(job, after, RESULTS_PAGE).await?;
            rows.extend(page);
            if !more {
                return Ok(rows);
            }
        }
    }

    /// One page of a job's rows in task-id order: at most `limit` (the
    /// scheduler caps it at 10,000) after task `after`, and whether more
    /// follow. Pages keep memory bounded for jobs of any size.
    pub async fn results_page(
        &self,
        job: JobId,
        after: Option<TaskId>,
        limit: u32,
    ) -> Result<(Vec<TaskStatus>, bool), ClientError> {
        let page = self
            .inner
            .session
            .query(|request| Message::GetResults {
                request,
                job,
                after,
                limit,
            })
            .await?;
        match page {
            Message::Results { rows, more, .. } => Ok((rows, more)),
            other => Err(ClientError::Refused(format!("unexpected {}", other.kind()))),
        }
    }

    /// Declares that no more tasks will come to `job`: it finishes (and
    /// writes its manifest) once every task has. Await the [`Answer`] to
    /// know the scheduler has it (with a journal: on disk).
    pub fn seal_job(&self, job: JobId) -> Result<Answer, ClientError> {
        self.inner
            .session
            .change(|request| Message::SealJob { request, job })
    }

    /// Cancels every unfinished task of a job; the [`Answer`] says when
    /// the scheduler did (or why it would not).
    pub fn cancel_job(&self, job: JobId) -> Result<Answer, ClientError> {
        self.inner
            .session
            .change(|request| Message::CancelJob { request, job })
    }

    /// Asks a connected worker (by name or id) to drain: it finishes what
    /// it runs, gives back what it has queued, and exits. The [`Answer`]
    /// says when the worker was told, or that no such worker is connected.
    pub fn drain_worker(&self, worker: &str) -> Result<Answer, ClientError> {
        let worker = worker.to_owned();
        self.inner
            .session
            .change(move |request| Message::DrainWorker { request, worker })
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
