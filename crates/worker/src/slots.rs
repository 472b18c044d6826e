//! The worker's slots: `nthreads` long-lived threads that take assigned
//! tasks from a shared queue and run them back to back.
//!
//! Why threads of their own: task functions block, and handing each
//! attempt to a fresh blocking-pool job cost two thread wake-ups per task
//! (loop → pool thread → loop), which dominated short tasks. A slot thread
//! that finishes an attempt takes the next queued task itself, so a busy
//! worker runs task after task without waking anyone. Reports leave from
//! the slot thread too, in batches (see [`State::reports_due`]); the worker
//! loop only sends those that waited too long.

use crate::execute::{execute, Attempt};
use crate::inputs::{Inputs, Prefetch};
use crate::registry::Registry;
use quarry_net::Connection;
use quarry_proto::{encode_message, JobSpec, Limits, Message, TaskAssignment, TaskId, TaskReport};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};
use tracing::warn;

/// Reports go out at once when the local queue holds this few tasks, so a
/// lone task's round trip is not delayed.
const REPORT_LOW_WATER: usize = 4;
/// Reports go out once this many are waiting.
const REPORT_BATCH: usize = 64;
/// Reports never wait longer than this. Only a worker with more than
/// `REPORT_LOW_WATER` tasks still queued holds them, so the delay costs
/// no round trip; what it buys is batches: millisecond tasks (commands)
/// report about ten at a time instead of one or two, which took the
/// control plane's share of a command benchmark from a quarter of the CPU
/// to a small part of it.
const REPORT_DELAY: Duration = Duration::from_millis(10);

/// What every attempt of this worker shares.
pub(crate) struct SlotEnv {
    pub(crate) registry: Arc<Registry>,
    pub(crate) inputs: Arc<Inputs>,
    pub(crate) scratch_root: PathBuf,
    /// The Python interpreter of `quarry.python` tasks.
    pub(crate) python: Arc<PathBuf>,
    /// Runs the async parts of attempts (staging, uploads, commands).
    pub(crate) runtime: tokio::runtime::Handle,
    /// Where reports go.
    pub(crate) conn: Connection,
}

/// A task assigned to this worker, waiting for a slot.
struct Queued {
    assignment: TaskAssignment,
    job: Arc<JobSpec>,
    limits: Limits,
    cpus: u32,
    /// Its inputs, being fetched ahead.
    prefetch: Option<Prefetch>,
}

/// An attempt on a slot thread.
struct Running {
    cancel: watch::Sender<bool>,
    attempt: u32,
    started: Instant,
    /// Whether the scheduler was told it runs. Short tasks never are: their
    /// report says it all, and skipping the message halves the traffic.
    announced: bool,
    /// Cancelled by the scheduler: its report is dropped. Its slots stay
    /// taken until the thread returns, since a Rust function cannot be
    /// stopped midway.
    cancelled: bool,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Queued>,
    free_slots: u32,
    running: HashMap<TaskId, Running>,
    reports: Vec<TaskReport>,
    /// When the oldest waiting report was made.
    oldest_report: Option<Instant>,
    closed: bool,
    /// Draining: nothing new is queued or started.
    draining: bool,
}

impl State {
    /// Whether waiting reports are worth a frame now: while the queue
    /// still holds work, reports gather into batches (the scheduler answers
    /// each batch with one batch of new tasks); when the queue runs low, or
    /// a report has waited `REPORT_DELAY`, they go at once.
    fn reports_due(&self, now: Instant) -> bool {
        !self.reports.is_empty()
            && (self.queue.len() <= REPORT_LOW_WATER
                || self.reports.len() >= REPORT_BATCH
                || self
                    .oldest_report
                    .is_some_and(|t| now.duration_since(t) >= REPORT_DELAY))
    }
}

struct Shared {
    state: Mutex<State>,
    /// Slot threads wait here for a task that fits.
    work: Condvar,
    /// Wakes the worker loop when the first report of a batch waits, so
    /// that it arms the timer that sends it after `REPORT_DELAY`.
    reports: Notify,
    env: SlotEnv,
}

impl Shared {
    /// Sends the waiting reports if they are due (or all of them when
    /// `force`), releasing the lock before the hand-over; returns whether
    /// it sent.
    fn send_reports_if_due(&self, mut state: MutexGuard<'_, State>, force: bool) -> bool {
        if !(force || state.reports_due(Instant::now())) {
            return false;
        }
        state.oldest_report = None;
        let reports = std::mem::take(&mut state.reports);
        drop(state);
        let encoded = reports
            .into_iter()
            .filter_map(
                |report| match encode_message(&Message::TaskFinished(report)) {
                    Ok(bytes) => Some(bytes),
                    Err(e) => {
                        warn!("cannot encode a task report: {e}");
                        None
                    }
                },
            )
            .collect();
        self.env.conn.send_batch(encoded);
        true
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic on a slot thread never happens with the lock held (task
        // functions run unlocked and inside catch_unwind), but a poisoned
        // lock must not take the worker down either.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Reads the slots' occupancy from another thread.
#[derive(Clone)]
pub(crate) struct SlotsProbe {
    shared: Arc<Shared>,
    nthreads: u32,
}

impl SlotsProbe {
    /// Slots taken by running attempts, and all slots.
    pub(crate) fn busy(&self) -> (u32, u32) {
        let free = self.shared.lock().free_slots;
        (self.nthreads.saturating_sub(free), self.nthreads)
    }
}

/// The slots and their queue. Dropping it stops the threads once their
/// current attempts return.
pub(crate) struct Slots {
    shared: Arc<Shared>,
    nthreads: u32,
}

impl Slots {
    /// Starts `nthreads` slot threads.
    pub(crate) fn start(nthreads: u32, env: SlotEnv) -> std::io::Result<Slots> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                free_slots: nthreads,
                ..State::default()
            }),
            work: Condvar::new(),
            reports: Notify::new(),
            env,
        });
        for n in 0..nthreads {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("quarry-slot-{n}"))
                .spawn(move || slot_thread(&shared))?;
        }
        Ok(Slots { shared, nthreads })
    }

    /// Queues assigned tasks behind those already waiting.
    pub(crate) fn push(
        &self,
        tasks: impl IntoIterator<Item = (TaskAssignment, Arc<JobSpec>)>,
        limits: &Limits,
    ) {
        // A draining worker starts nothing more: the scheduler requeues
        // these when the worker says it drained.
        if self.shared.lock().draining {
            return;
        }
        // What waits behind running tasks is fetched while they run.
        let env = &self.shared.env;
        let tasks: Vec<Queued> = tasks
            .into_iter()
            .map(|(assignment, job)| Queued {
                prefetch: env.inputs.prefetch(&env.runtime, &assignment.task, &job),
                cpus: assignment.task.cpus.clamp(1, self.nthreads),
                assignment,
                job,
                limits: limits.clone(),
            })
            .collect();
        let mut state = self.shared.lock();
        if state.draining {
            return;
        }
        let before = state.queue.len();
        state.queue.extend(tasks);
        let added = state.queue.len() - before;
        drop(state);
        if added == 1 {
            self.shared.work.notify_one();
        } else if added > 1 {
            self.shared.work.notify_all();
        }
    }

    /// Drops a queued task, or tells a running one to stop (a command is
    /// killed; a Rust function runs to its end and its result is dropped).
    pub(crate) fn cancel(&self, task: TaskId) {
        let mut state = self.shared.lock();
        state.queue.retain(|q| q.assignment.task.id != task);
        if let Some(running) = state.running.get_mut(&task) {
            running.cancelled = true;
            let _ = running.cancel.send(true);
        }
    }

    /// Forgets every queued task and cancels every running one (the
    /// scheduler requeued them all), and drops unsent reports.
    pub(crate) fn reset(&self) {
        let mut state = self.shared.lock();
        state.queue.clear();
        state.reports.clear();
        state.oldest_report = None;
        for running in state.running.values_mut() {
            running.cancelled = true;
            let _ = running.cancel.send(true);
        }
    }

    /// Starts draining: the queued tasks are dropped unstarted, and tasks
    /// pushed from now on are too; running ones go on.
    pub(crate) fn drain(&self) {
        let mut state = self.shared.lock();
        state.draining = true;
        state.queue.clear();
    }

    /// A handle that reads how many slots are busy, for `/metrics`.
    pub(crate) fn probe(&self) -> SlotsProbe {
        SlotsProbe {
            shared: self.shared.clone(),
            nthreads: self.nthreads,
        }
    }

    /// Attempts still on the slot threads (cancelled ones included, until
    /// their thread returns).
    pub(crate) fn running(&self) -> usize {
        self.shared.lock().running.len()
    }

    /// Cancels every running attempt and drops its report: the scheduler
    /// requeues them once told the worker left (commands are killed; a
    /// Rust function runs to its end and its result is dropped).
    pub(crate) fn abandon_running(&self) -> usize {
        let mut state = self.shared.lock();
        let mut abandoned = 0;
        for running in state.running.values_mut() {
            if !running.cancelled {
                running.cancelled = true;
                let _ = running.cancel.send(true);
                abandoned += 1;
            }
        }
        abandoned
    }

    /// Running attempts older than `after` that were not announced yet;
    /// they count as announced from now on.
    pub(crate) fn take_unannounced(&self, after: Duration) -> Vec<(TaskId, u32)> {
        let mut state = self.shared.lock();
        state
            .running
            .iter_mut()
            .filter(|(_, r)| !r.announced && !r.cancelled && r.started.elapsed() >= after)
            .map(|(task, r)| {
                r.announced = true;
                (*task, r.attempt)
            })
            .collect()
    }

    /// Waits until a report starts waiting (see [`Shared::reports`]).
    pub(crate) async fn reports_waiting(&self) {
        self.shared.reports.notified().await
    }

    /// When waiting reports become due by age, if any wait.
    pub(crate) fn report_deadline(&self) -> Option<Instant> {
        self.shared.lock().oldest_report.map(|t| t + REPORT_DELAY)
    }

    /// Sends the waiting reports if they are due, or all of them when
    /// `force`.
    pub(crate) fn send_reports(&self, force: bool) {
        self.shared.send_reports_if_due(self.shared.lock(), force);
    }
}

impl Drop for Slots {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.work.notify_all();
    }
}

/// Takes the first queued task once enough slots are free (FIFO: a wide
/// task at the front waits rather than being overtaken).
fn next_task(shared: &Shared) -> Option<(Queued, watch::Receiver<bool>)> {
    let mut state = shared.lock();
    loop {
        if state.closed {
            return None;
        }
        if state
            .queue
            .front()
            .is_some_and(|front| front.cpus <= state.free_slots)
        {
            let queued = state.queue.pop_front()?;
            state.free_slots -= queued.cpus;
            let (cancel, cancelled) = watch::channel(false);
            state.running.insert(
                queued.assignment.task.id,
                Running {
                    cancel,
                    attempt: queued.assignment.attempt,
                    started: Instant::now(),
                    announced: false,
                    cancelled: false,
                },
            );
            return Some((queued, cancelled));
        }
        state = shared.work.wait(state).unwrap_or_else(|p| p.into_inner());
    }
}

fn slot_thread(shared: &Shared) {
    while let Some((queued, cancelled)) = next_task(shared) {
        let env = &shared.env;
        let cpus = queued.cpus;
        let task = queued.assignment.task.id;
        let attempt = Attempt {
            assignment: queued.assignment,
            job: queued.job,
            registry: env.registry.clone(),
            inputs: env.inputs.clone(),
            limits: queued.limits,
            scratch_root: env.scratch_root.clone(),
            prefetch: queued.prefetch,
            python: env.python.clone(),
        };
        let report = env.runtime.block_on(execute(attempt, cancelled));
        let mut state = shared.lock();
        state.free_slots += cpus;
        let mut first_waiting = false;
        match state.running.remove(&task) {
            Some(running) if !running.cancelled => {
                first_waiting = state.reports.is_empty();
                if first_waiting {
                    state.oldest_report = Some(Instant::now());
                }
                state.reports.push(report);
            }
            Some(_) => {}
            None => warn!(task = %task, "finished a task the worker no longer tracks"),
        }
        // Freed slots may let a wide task at the front start on another
        // thread; this one loops to take the next task itself.
        if cpus > 1 {
            shared.work.notify_all();
        }
        if !shared.send_reports_if_due(state, false) && first_waiting {
            shared.reports.notify_one();
        }
    }
}
