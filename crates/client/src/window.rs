//! Submitting plans of any length with bounded memory: the windowed driver
//! that every planned way in goes through ([`Client::submit_windowed`]),
//! and `map_unordered` over an iterator of arguments.

use crate::client::Client;
use crate::error::ClientError;
use crate::future::TaskFuture;
use futures::future::BoxFuture;
use futures::stream::{self, BoxStream, FuturesUnordered, Stream, StreamExt};
use quarry_plan::PlannedTask;
use quarry_proto::{JobId, TaskOutcome};
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Serialize;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

impl Client {
    /// Maps `function` over `items` lazily, keeping at most `window` tasks
    /// in flight, and yields `(index, result)` in completion order.
    ///
    /// Unlike [`Client::map`] + [`crate::as_completed`], which hold one
    /// future per item, memory here is bounded by `window` however many
    /// items there are: new tasks are submitted (in batches) only as
    /// results are consumed. The tasks go to the client's default job;
    /// [`crate::Job::map_unordered`] does the same in a job of your own.
    pub fn map_unordered<A, R, I>(
        &self,
        function: &str,
        items: I,
        window: usize,
    ) -> impl Stream<Item = (u64, Result<R, ClientError>)> + use<A, R, I>
    where
        A: Serialize,
        R: DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_unordered_in(self.default_job(), function, items, window)
    }

    /// [`Client::map_unordered`] into job `job`.
    pub(crate) fn map_unordered_in<A, R, I>(
        &self,
        job: JobId,
        function: &str,
        items: I,
        window: usize,
    ) -> impl Stream<Item = (u64, Result<R, ClientError>)> + use<A, R, I>
    where
        A: Serialize,
        R: DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        let window = window.max(1);
        // Refill in chunks of a quarter window, so submissions batch.
        let refill = (window / 4).max(1);
        let state = (
            self.clone(),
            function.to_string(),
            items.into_iter().enumerate(),
            FuturesUnordered::new(),
        );
        stream::unfold(
            state,
            move |(client, function, mut items, mut running)| async move {
                if running.len() + refill <= window {
                    let mut batch = Vec::new();
                    let mut indices = Vec::new();
                    for (index, item) in items.by_ref().take(window - running.len()) {
                        match client.inline_task(&function, &item) {
                            Ok(spec) => {
                                indices.push(index as u64);
                                batch.push(spec);
                            }
                            Err(e) => {
                                return Some((
                                    (index as u64, Err(e)),
                                    (client, function, items, running),
                                ))
                            }
                        }
                    }
                    match client.submit_specs::<R>(job, batch) {
                        Ok(futures) => {
                            for (index, future) in indices.into_iter().zip(futures) {
                                running.push(async move { (index, future.result().await) });
                            }
                        }
                        Err(e) => {
                            let index = indices.first().copied().unwrap_or_default();
                            return Some(((index, Err(e)), (client, function, items, running)));
                        }
                    }
                }
                let next = running.next().await?;
                Some((next, (client, function, items, running)))
            },
        )
    }
}

/// How [`Client::submit_windowed`] submits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowOptions {
    /// Most tasks submitted whose outcomes the caller has not taken yet:
    /// the plan is not read further while this many are outstanding, so
    /// client and scheduler memory stay bounded however long the plan.
    pub window: usize,
    /// Leave each task's result on the scheduler once its outcome was
    /// handed over (for `quarry results`), instead of releasing it.
    pub keep_results: bool,
    /// Seal the job when the plan ends.
    pub seal: bool,
}

impl Default for WindowOptions {
    fn default() -> Self {
        WindowOptions {
            window: 10_000,
            keep_results: false,
            seal: true,
        }
    }
}

/// One finished task of a [`WindowedRun`].
#[derive(Debug)]
pub struct Finished<T> {
    /// The task's key.
    pub key: String,
    /// What the plan attached to the task.
    pub tag: T,
    /// How the task ended (not decoded: a large result stays a
    /// reference).
    pub outcome: Result<TaskOutcome, ClientError>,
}

/// How much of a windowed plan was submitted so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowProgress {
    /// Tasks submitted.
    pub tasks: u64,
    /// Input bytes of the submitted tasks.
    pub bytes: u64,
    /// Whether the plan is over (and the job sealed, if asked).
    pub planned: bool,
}

#[derive(Default)]
struct Counters {
    tasks: AtomicU64,
    bytes: AtomicU64,
    planned: AtomicBool,
}

/// A submitted task on its way from the driver to the stream, holding its
/// share of the window.
struct Submitted<T> {
    future: TaskFuture<IgnoredAny>,
    tag: T,
    permit: OwnedSemaphorePermit,
}

/// The outcomes of [`Client::submit_windowed`], in completion order: a
/// [`Stream`] of `Result<Finished<T>, ClientError>`.
///
/// An outer `Err` means the plan (or a submission) failed: the job is
/// cancelled, because a partial plan would give a wrong answer, and the
/// stream then ends after the already submitted tasks report. Dropping the
/// run before its end cancels the job's unfinished tasks.
pub struct WindowedRun<T> {
    job: JobId,
    client: Client,
    submitted: mpsc::UnboundedReceiver<Result<Submitted<T>, ClientError>>,
    running: FuturesUnordered<BoxFuture<'static, Finished<T>>>,
    counters: Arc<Counters>,
    driver: JoinHandle<()>,
    keep_results: bool,
    driver_done: bool,
    ended: bool,
}

impl<T> std::fmt::Debug for WindowedRun<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowedRun")
            .field("job", &self.job)
            .field("progress", &self.progress())
            .field("running", &self.running.len())
            .finish()
    }
}

impl<T> WindowedRun<T> {
    /// The job the tasks go to.
    pub fn job(&self) -> JobId {
        self.job
    }

    /// How much of the plan was submitted so far.
    pub fn progress(&self) -> WindowProgress {
        WindowProgress {
            tasks: self.counters.tasks.load(Ordering::Relaxed),
            bytes: self.counters.bytes.load(Ordering::Relaxed),
            planned: self.counters.planned.load(Ordering::Acquire),
        }
    }
}

impl<T: Send + 'static> WindowedRun<T> {
    fn start(&mut self, submitted: Submitted<T>) {
        let Submitted {
            future,
            tag,
            permit,
        } = submitted;
        let future = if self.keep_results {
            future.keep_result()
        } else {
            future
        };
        self.running.push(Box::pin(async move {
            let key = future.key().to_string();
            let outcome = future.outcome().await;
            // The outcome is about to be handed out: make room for the
            // next task of the plan.
            drop(permit);
            Finished { key, tag, outcome }
        }));
    }
}

impl<T: Send + 'static> WindowedRun<T> {
    /// Waits until the whole plan is submitted (and the job sealed, if
    /// asked), then lets go of the job without cancelling it: its tasks
    /// run on and their results stay on the scheduler. Outcomes are not
    /// waited for, so the window does not hold the plan back. Returns how
    /// much was submitted; a plan or submission error is returned instead
    /// (the job was cancelled).
    pub async fn detach(mut self) -> Result<WindowProgress, ClientError> {
        while let Some(submitted) = self.submitted.recv().await {
            // Dropping a kept future forgets the task and leaves its
            // result; dropping the permit makes room for the next one.
            let Submitted { future, .. } = submitted?;
            drop(future.keep_result());
        }
        self.ended = true;
        Ok(self.progress())
    }
}

impl<T: Send + 'static> Stream for WindowedRun<T> {
    type Item = Result<Finished<T>, ClientError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        while !this.driver_done {
            match this.submitted.poll_recv(cx) {
                Poll::Ready(Some(Ok(submitted))) => this.start(submitted),
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error))),
                Poll::Ready(None) => this.driver_done = true,
                Poll::Pending => break,
            }
        }
        match this.running.poll_next_unpin(cx) {
            Poll::Ready(Some(done)) => Poll::Ready(Some(Ok(done))),
            Poll::Ready(None) if this.driver_done => {
                this.ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        }
    }
}

impl<T> Drop for WindowedRun<T> {
    fn drop(&mut self) {
        if !self.ended {
            self.driver.abort();
            let _ = self.client.cancel_job(self.job);
        }
    }
}

/// A plan's tasks with what the caller wants back beside each outcome.
pub type TaskPlan<T> = BoxStream<'static, Result<(PlannedTask, T), ClientError>>;

impl Client {
    /// Submits the tasks of `plan` to `job` through a window: at most
    /// [`WindowOptions::window`] tasks submitted and not yet handed out, in
    /// batches; the plan is read (listed, chunked) in the background as
    /// outcomes are taken. This is how `map_prefix`, `quarry run` and
    /// `quarry submit` submit: memory stays bounded for any plan length.
    ///
    /// Must be called inside a tokio runtime: the plan is read on a task of
    /// its own.
    pub fn submit_windowed<T: Send + 'static>(
        &self,
        job: JobId,
        plan: TaskPlan<T>,
        options: WindowOptions,
    ) -> WindowedRun<T> {
        let window = options.window.max(1);
        let (sender, submitted) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        let driver = WindowDriver {
            client: self.clone(),
            job,
            window: Arc::new(Semaphore::new(window)),
            batch: SUBMIT_BATCH.min(window),
            seal: options.seal,
            counters: counters.clone(),
            sender,
        };
        WindowedRun {
            job,
            client: self.clone(),
            submitted,
            running: FuturesUnordered::new(),
            counters,
            driver: tokio::spawn(driver.run(plan)),
            keep_results: options.keep_results,
            driver_done: false,
            ended: false,
        }
    }
}

/// Most tasks sent in one submission while the plan keeps up.
const SUBMIT_BATCH: usize = 1_000;

/// Reads a plan and submits it, in the background of a [`WindowedRun`].
struct WindowDriver<T> {
    client: Client,
    job: JobId,
    window: Arc<Semaphore>,
    batch: usize,
    seal: bool,
    counters: Arc<Counters>,
    sender: mpsc::UnboundedSender<Result<Submitted<T>, ClientError>>,
}

impl<T: Send + 'static> WindowDriver<T> {
    async fn run(self, plan: TaskPlan<T>) {
        if let Err(error) = self.submit_all(plan).await {
            // A partial plan must not pass for the whole one.
            let _ = self.client.cancel_job(self.job);
            let _ = self.sender.send(Err(error));
        }
        if self.seal {
            let sealed = self.client.seal_job(self.job);
            // Sealing is answered once every submission before it was
            // carried out, so the plan counts as submitted only then.
            if let Ok(answer) = sealed {
                if let Err(error) = answer.await {
                    let _ = self.sender.send(Err(error));
                }
            }
        }
        self.counters.planned.store(true, Ordering::Release);
    }

    async fn submit_all(&self, plan: TaskPlan<T>) -> Result<(), ClientError> {
        let mut batches = plan.ready_chunks(self.batch);
        while let Some(batch) = batches.next().await {
            let mut tasks = Vec::with_capacity(batch.len());
            for task in batch {
                tasks.push(task?);
            }
            self.submit(tasks).await?;
        }
        Ok(())
    }

    async fn submit(&self, tasks: Vec<(PlannedTask, T)>) -> Result<(), ClientError> {
        let mut permits = Vec::with_capacity(tasks.len());
        for _ in 0..tasks.len() {
            permits.push(
                self.window
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| ClientError::Closed)?,
            );
        }
        let bytes: u64 = tasks
            .iter()
            .flat_map(|(task, _)| &task.inputs)
            .map(quarry_proto::DataRef::read_len)
            .sum();
        let count = tasks.len() as u64;
        let (specs, tags): (Vec<_>, Vec<_>) = tasks
            .into_iter()
            .map(|(task, tag)| (task.into_spec(self.client.next_task_id()), tag))
            .unzip();
        let futures = self.client.submit_specs::<IgnoredAny>(self.job, specs)?;
        self.counters.tasks.fetch_add(count, Ordering::Relaxed);
        self.counters.bytes.fetch_add(bytes, Ordering::Relaxed);
        for ((future, tag), permit) in futures.into_iter().zip(tags).zip(permits) {
            let submitted = Submitted {
                future,
                tag,
                permit,
            };
            if self.sender.send(Ok(submitted)).is_err() {
                // The run was dropped; its Drop cancels the job.
                return Err(ClientError::Closed);
            }
        }
        Ok(())
    }
}
