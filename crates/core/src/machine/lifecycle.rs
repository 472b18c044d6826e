//! Task and job lifecycle: attempts starting and ending, retries, worker
//! loss, cancellation and job completion.
//!
//! Exactly-once rule: a task reaches a final state only through
//! [`Core::finalize`], which runs once per task (callers check the state
//! first) and emits the one `TaskDone` its owner gets.

use super::Core;
use crate::change::{AttemptEnd, Change, FinalState};
use crate::task::{TaskState, NO_WORKER};
use crate::{Command, Millis};
use quarry_proto::{ErrorKind, TaskError, TaskId, TaskOutcome, TaskReport, WorkerId};
use tracing::debug;

impl Core {
    /// Moves a task to another state, keeping the counters right.
    pub(super) fn set_state(&mut self, t: u32, to: TaskState) {
        let task = &mut self.tasks[t as usize];
        let from = std::mem::replace(&mut task.state, to);
        if from == TaskState::Queued {
            self.queued -= 1;
            let preferred = std::mem::replace(&mut task.preferred, NO_WORKER);
            if preferred != NO_WORKER {
                self.workers[preferred as usize].local_queued -= 1;
            }
        }
        if to == TaskState::Queued {
            self.queued += 1;
        }
        self.jobs[task.job as usize].count_transition(Some(from), to);
    }

    /// The task `t` as held by worker `w` in attempt `attempt`, if that is
    /// still its current attempt; reports about anything else are stale.
    fn current_attempt(&self, w: u32, id: TaskId, attempt: u32) -> Option<u32> {
        let &t = self.task_index.get(&id)?;
        let task = &self.tasks[t as usize];
        let current = task.state.is_on_worker() && task.worker == w && task.attempt == attempt;
        if !current {
            debug!(task = %id, attempt, "stale report ignored");
        }
        current.then_some(t)
    }

    pub(super) fn task_started(&mut self, worker: WorkerId, id: TaskId, attempt: u32, now: Millis) {
        let Some(w) = self.touch(worker, now) else {
            return;
        };
        let Some(t) = self.current_attempt(w, id, attempt) else {
            return;
        };
        self.made_progress(w, now);
        if self.tasks[t as usize].state == TaskState::Assigned {
            self.set_state(t, TaskState::Running);
            self.tasks[t as usize].timer = now;
        }
    }

    /// Worker `w` started or finished a task: the start deadline counts
    /// from now, and a stalled worker serves its functions again.
    fn made_progress(&mut self, w: u32, now: Millis) {
        let worker = &mut self.workers[w as usize];
        worker.progress_at = now;
        if !std::mem::take(&mut worker.stalled) || worker.draining {
            return;
        }
        debug!(worker = %worker.id, name = %worker.name, "stalled worker made progress");
        let slots = worker.slots;
        for i in 0..self.workers[w as usize].functions.len() {
            let f = self.workers[w as usize].functions[i];
            self.functions[f as usize].add_worker(w, slots);
        }
        self.refresh_open(w);
        self.dispatch_pending = true;
    }

    /// Takes back the unstarted tasks of live workers that hold some, run
    /// none, and made no progress within the start deadline; those
    /// workers are stalled until they make progress.
    pub(super) fn check_start_deadlines(&mut self, now: Millis, out: &mut Vec<Command>) {
        let deadline = self.config.start_deadline_ms;
        if deadline == 0 {
            return;
        }
        let stalled: Vec<u32> = (0..self.workers.len() as u32)
            .filter(|&w| {
                let worker = &self.workers[w as usize];
                worker.live
                    && !worker.draining
                    && !worker.stalled
                    && !worker.tasks.is_empty()
                    && now.saturating_sub(worker.progress_at) >= deadline
                    && worker
                        .tasks
                        .iter()
                        .all(|&t| self.tasks[t as usize].state == TaskState::Assigned)
            })
            .collect();
        for w in stalled {
            self.stall_worker(w, now, out);
        }
    }

    /// Requeues what stalled worker `w` was sent (telling it to drop it) and
    /// takes it out of placement until it makes progress.
    fn stall_worker(&mut self, w: u32, now: Millis, out: &mut Vec<Command>) {
        let worker = &mut self.workers[w as usize];
        debug!(worker = %worker.id, name = %worker.name, tasks = worker.tasks.len(), "worker stalled: none of its tasks started within the start deadline");
        worker.stalled = true;
        let id = worker.id;
        let slots = worker.slots;
        let held: Vec<u32> = worker.tasks.iter().copied().collect();
        let tasks = &self.tasks;
        let waiting_for_it = worker.local.drain_live(|e| {
            let task = &tasks[e.task as usize];
            task.state == TaskState::Queued && task.ticket == e.ticket
        });
        for i in 0..self.workers[w as usize].functions.len() {
            let f = self.workers[w as usize].functions[i];
            self.functions[f as usize].remove_worker(w, slots);
        }
        self.refresh_open(w);
        for entry in waiting_for_it.iter().rev() {
            self.place(entry.task, true, now);
        }
        for &t in held.iter().rev() {
            self.take_off_worker(t);
            out.push(Command::CancelOnWorker {
                worker: id,
                task: self.tasks[t as usize].spec.id(),
            });
            self.requeue(t, now);
        }
        self.dispatch_pending = true;
    }

    pub(super) fn task_finished(
        &mut self,
        worker: WorkerId,
        report: TaskReport,
        now: Millis,
        out: &mut Vec<Command>,
    ) {
        let Some(w) = self.touch(worker, now) else {
            return;
        };
        let Some(t) = self.current_attempt(w, report.task, report.attempt) else {
            return;
        };
        self.made_progress(w, now);
        let task = &self.tasks[t as usize];
        let duration = if task.state == TaskState::Running {
            now.saturating_sub(task.timer)
        } else {
            report.stats.duration_ms
        };
        let (function, j) = (task.function, task.job);
        let retry = match &report.outcome {
            TaskOutcome::Ok(_) => None,
            // The worker lost what ran the attempt (a Python task's
            // interpreter died under it): like a lost worker, this counts
            // against `max_worker_losses`, not the task's own retries, so a
            // task killed by the machine runs again even with `retries: 0`.
            TaskOutcome::Err(error) if error.kind == ErrorKind::WorkerLost => {
                (task.worker_losses < self.config.max_worker_losses).then_some(Retry::Lost)
            }
            TaskOutcome::Err(error) => (is_retryable(error.kind)
                && task.errors < task.spec.retries())
            .then_some(Retry::Error),
        };
        let retried = retry.is_some();
        self.record(out, || {
            Change::AttemptEnded(Box::new(AttemptEnd {
                task: report.task,
                attempt: report.attempt,
                worker: self.workers[w as usize].name.clone(),
                outcome: report.outcome.clone(),
                outputs: report.outputs.clone(),
                stats: report.stats.clone(),
                retried,
            }))
        });
        self.record_duration(function, duration);
        self.jobs[j as usize].add_stats(&report.stats);
        self.take_off_worker(t);

        let task = &mut self.tasks[t as usize];
        let record = task.record.get_or_insert_default();
        record.outputs = report.outputs;
        record.stats = report.stats;
        match report.outcome {
            TaskOutcome::Ok(value) => {
                self.finalize(t, TaskState::Done, TaskOutcome::Ok(value), now, out)
            }
            TaskOutcome::Err(error) => {
                if retried {
                    debug!(
                        task = %task.spec.id(),
                        attempt = task.attempt,
                        error = %error.message,
                        "attempt failed, retrying"
                    );
                }
                match retry {
                    // At once, as for a lost worker: nothing in the task
                    // itself failed, so there is nothing to back off from.
                    Some(Retry::Lost) => {
                        task.worker_losses += 1;
                        self.requeue(t, now);
                    }
                    Some(Retry::Error) => {
                        task.errors += 1;
                        self.retry_later(t, now);
                    }
                    None => {
                        task.errors += 1;
                        self.finalize(t, TaskState::Failed, TaskOutcome::Err(error), now, out);
                    }
                }
            }
        }
        self.fill_worker(w, now, out);
    }

    /// The name of the worker of task `t`'s last attempt, if it had one.
    pub(super) fn last_worker_name(&self, t: u32) -> Option<String> {
        let w = self.tasks[t as usize].worker;
        (w != NO_WORKER).then(|| self.workers[w as usize].name.clone())
    }

    /// Adds an attempt's duration to its function's mean. When that
    /// changes the function's prefetch depth, its workers' room changes.
    fn record_duration(&mut self, f: u32, duration_ms: u64) {
        let function = &mut self.functions[f as usize];
        if function.record_duration(duration_ms, &self.config) {
            let workers = function.workers().to_vec();
            for w in workers {
                self.refresh_open(w);
            }
            self.dispatch_pending = true;
        }
    }

    /// Frees the slots a task takes on its worker. Returns whether the
    /// worker still held it (it does not once the worker was lost).
    fn take_off_worker(&mut self, t: u32) -> bool {
        let task = &self.tasks[t as usize];
        let w = task.worker;
        let worker = &mut self.workers[w as usize];
        if !worker.tasks.remove(&t) {
            return false;
        }
        worker.load -= task.occupancy(worker.slots);
        self.refresh_open(w);
        true
    }

    /// Puts a task that already waited back at the front of its priority.
    fn requeue(&mut self, t: u32, now: Millis) {
        self.set_state(t, TaskState::Queued);
        self.place(t, true, now);
    }

    /// Queues the retry of a task whose attempt failed once its backoff
    /// (see [`crate::CoreConfig::retry_backoff_ms`]) has passed; until then
    /// it is queued but offered to no worker.
    fn retry_later(&mut self, t: u32, now: Millis) {
        let delay = self.retry_delay(t);
        if delay == 0 {
            return self.requeue(t, now);
        }
        self.set_state(t, TaskState::Queued);
        let task = &mut self.tasks[t as usize];
        task.ticket = task.ticket.wrapping_add(1);
        self.backoff
            .insert((now.saturating_add(delay), t, task.ticket));
    }

    /// How long task `t`, which just failed for the `errors`-th time, waits
    /// before its retry: the backoff doubled per earlier failure, capped,
    /// then jittered by a hash of the task and attempt (the core has no
    /// randomness of its own, and replays stay reproducible).
    fn retry_delay(&self, t: u32) -> u64 {
        let base = self.config.retry_backoff_ms;
        if base == 0 {
            return 0;
        }
        let task = &self.tasks[t as usize];
        let doublings = task.errors.saturating_sub(1).min(32);
        let delay = base
            .saturating_mul(1 << doublings)
            .min(self.config.retry_backoff_max_ms.max(base));
        let seed = task.spec.id().0 ^ (u64::from(task.attempt) << 48);
        delay / 2 + mix(seed) % (delay + 1)
    }

    /// Queues the tasks whose retry backoff has passed by `now`.
    pub(super) fn end_backoffs(&mut self, now: Millis) {
        while let Some(&(not_before, t, ticket)) = self.backoff.first() {
            if not_before > now {
                break;
            }
            self.backoff.pop_first();
            let task = &self.tasks[t as usize];
            if task.state == TaskState::Queued && task.ticket == ticket {
                self.place(t, true, now);
            }
        }
    }

    /// Ends a task for good and tells its owner and the job's watchers.
    fn finalize(
        &mut self,
        t: u32,
        to: TaskState,
        outcome: TaskOutcome,
        now: Millis,
        out: &mut Vec<Command>,
    ) {
        debug_assert!(to.is_final() && !self.tasks[t as usize].state.is_final());
        self.set_state(t, to);
        let task = &mut self.tasks[t as usize];
        let id = task.spec.id();
        let owner = id.client();
        let j = task.job;
        let job = &self.jobs[j as usize];
        for &client in job.watchers.iter().filter(|&&c| c != owner) {
            out.push(Command::TaskDone {
                client,
                task: id,
                outcome: outcome.clone(),
            });
        }
        if task.released {
            task.record = None;
            out.push(Command::TaskDone {
                client: owner,
                task: id,
                outcome,
            });
        } else {
            out.push(Command::TaskDone {
                client: owner,
                task: id,
                outcome: outcome.clone(),
            });
            task.record.get_or_insert_default().outcome = Some(outcome);
        }
        if to == TaskState::Failed {
            let job = &self.jobs[j as usize];
            if let Some(max_fails) = job.spec.max_fails {
                if !job.stopped && job.counts.failed >= max_fails {
                    let reason = format!(
                        "job {} stopped after {} tasks failed (max_fails = {max_fails})",
                        job.spec.id, job.counts.failed
                    );
                    self.stop_job(j, &reason, now, out);
                }
            }
        }
        self.finish_job_if_complete(j, now, out);
    }

    /// Cancels a task unless it is already final; a worker holding it is
    /// told to drop it, and whatever it reports later is ignored.
    pub(super) fn cancel_task(
        &mut self,
        t: u32,
        reason: &str,
        now: Millis,
        out: &mut Vec<Command>,
    ) {
        let task = &self.tasks[t as usize];
        if task.state.is_final() {
            return;
        }
        if task.state.is_on_worker() && self.take_off_worker(t) {
            let task = &self.tasks[t as usize];
            out.push(Command::CancelOnWorker {
                worker: self.workers[task.worker as usize].id,
                task: task.spec.id(),
            });
            self.dispatch_pending = true;
        }
        let outcome = TaskOutcome::Err(TaskError {
            kind: ErrorKind::Cancelled,
            message: reason.to_owned(),
        });
        self.record(out, || Change::TaskEnded {
            task: self.tasks[t as usize].spec.id(),
            state: FinalState::Cancelled,
            outcome: outcome.clone(),
            worker: self.last_worker_name(t),
        });
        self.finalize(t, TaskState::Cancelled, outcome, now, out);
    }

    /// Cancels every unfinished task of a job; tasks submitted to it later
    /// are cancelled at once. A finished job is left as it is.
    pub(super) fn stop_job(&mut self, j: u32, reason: &str, now: Millis, out: &mut Vec<Command>) {
        let job = &mut self.jobs[j as usize];
        if job.finished_at.is_some() {
            return;
        }
        job.stopped = true;
        let id = job.spec.id;
        self.record(out, || Change::JobStopped { job: id });
        let job = &self.jobs[j as usize];
        let unfinished: Vec<u32> = job
            .tasks
            .iter()
            .copied()
            .filter(|&t| !self.tasks[t as usize].state.is_final())
            .collect();
        for t in unfinished {
            self.cancel_task(t, reason, now, out);
        }
        self.finish_job_if_complete(j, now, out);
    }

    /// Emits the job's final progress and `JobFinished` once it is sealed
    /// and every task is final.
    pub(super) fn finish_job_if_complete(&mut self, j: u32, now: Millis, out: &mut Vec<Command>) {
        let job = &mut self.jobs[j as usize];
        if job.finished_at.is_some() || !job.is_complete() {
            return;
        }
        job.finished_at = Some(now);
        let info = job.info(now);
        debug!(job = %info.id, state = ?info.state, "job finished");
        self.record(out, || Change::JobFinished {
            job: info.id,
            at: now,
        });
        self.running_jobs.remove(&j);
        self.finished_jobs.push_back((now, info.id));
        self.finished_since_update.push(info.id);
        let job = &self.jobs[j as usize];
        for &client in &job.watchers {
            out.push(Command::JobProgress {
                client,
                info: info.clone(),
            });
        }
        out.push(Command::JobFinished { info });
        self.watched_jobs.remove(&j);
    }

    /// Starts draining worker `w`: it leaves its functions' worker lists, so
    /// that nothing new is placed on it, and the tasks queued for it are
    /// placed again. What it holds stays with it until it reports or
    /// leaves.
    pub(super) fn drain_worker(&mut self, w: u32, now: Millis) {
        let worker = &mut self.workers[w as usize];
        if worker.draining {
            return;
        }
        worker.draining = true;
        let tasks = &self.tasks;
        let waiting_for_it = worker.local.drain_live(|e| {
            let task = &tasks[e.task as usize];
            task.state == TaskState::Queued && task.ticket == e.ticket
        });
        self.open_workers.remove(&w);
        for &f in &worker.functions {
            self.functions[f as usize].remove_worker(w, worker.slots);
        }
        debug!(worker = %worker.id, name = %worker.name, "worker draining");
        for entry in waiting_for_it.iter().rev() {
            self.place(entry.task, true, now);
        }
        self.dispatch_pending = true;
    }

    /// Forgets a worker (left, or silent too long): its tasks go back to the
    /// front of the queue, or fail once they lost too many workers (unless
    /// it drained: then it never started them); tasks waiting for it are
    /// placed again.
    pub(super) fn lose_worker(&mut self, w: u32, now: Millis, out: &mut Vec<Command>) {
        let worker = &mut self.workers[w as usize];
        let drained = worker.drained;
        worker.live = false;
        worker.load = 0;
        let held = std::mem::take(&mut worker.tasks);
        let cached = std::mem::take(&mut worker.cached);
        worker.cached_bytes = 0;
        let tasks = &self.tasks;
        let waiting_for_it = worker.local.drain_live(|e| {
            let task = &tasks[e.task as usize];
            task.state == TaskState::Queued && task.ticket == e.ticket
        });
        self.worker_index.remove(&worker.id);
        if self.live_by_name.get(&worker.name) == Some(&w) {
            self.live_by_name.remove(&worker.name);
        }
        self.open_workers.remove(&w);
        // A departed worker serves nothing: the slots of functions it
        // alone named are freed. (A draining one left its functions already.)
        let functions = std::mem::take(&mut worker.functions);
        if !worker.draining {
            for &f in &functions {
                self.functions[f as usize].remove_worker(w, worker.slots);
            }
        }
        for f in functions {
            self.release_function(f);
        }
        self.locality.remove_worker(w, &cached);

        // Pushed to the front in reverse, so they keep their order; held
        // tasks end up ahead of those that were only waiting.
        for entry in waiting_for_it.iter().rev() {
            self.place(entry.task, true, now);
        }
        let max_losses = self.config.max_worker_losses;
        for &t in held.iter().rev() {
            // A failure above may have stopped the job and cancelled it.
            if !self.tasks[t as usize].state.is_on_worker() {
                continue;
            }
            let task = &mut self.tasks[t as usize];
            if !drained {
                task.worker_losses += 1;
            }
            if task.worker_losses > max_losses {
                let message = format!(
                    "task {} lost its worker {} times (most recently {}); max_worker_losses is {max_losses}",
                    task.spec.id(), task.worker_losses, self.workers[w as usize].name
                );
                let outcome = TaskOutcome::Err(TaskError {
                    kind: ErrorKind::WorkerLost,
                    message,
                });
                self.record(out, || Change::TaskEnded {
                    task: self.tasks[t as usize].spec.id(),
                    state: FinalState::Failed,
                    outcome: outcome.clone(),
                    worker: self.last_worker_name(t),
                });
                self.finalize(t, TaskState::Failed, outcome, now, out);
            } else {
                self.requeue(t, now);
            }
        }
        self.dispatch_pending = true;
        if self.workers[w as usize].refs == 0 {
            self.reclaim_worker(w);
        }
    }
}

/// A 64-bit mix of `x` (splitmix64's finalizer): well-spread jitter from
/// consecutive task ids.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Which budget a failed attempt's retry is taken from.
#[derive(Clone, Copy)]
enum Retry {
    /// The task's own `retries`.
    Error,
    /// `max_worker_losses`: what ran the attempt died under it.
    Lost,
}

/// Whether a failed attempt may be retried (within the task's retries):
/// a changed input or a rejection fails the same way every time.
fn is_retryable(kind: ErrorKind) -> bool {
    !matches!(kind, ErrorKind::InputChanged | ErrorKind::Rejected)
}
