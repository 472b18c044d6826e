//! Rebuilding the core from its own durable changes (a journal), and
//! writing its state as the fewest changes that rebuild it (a compacted
//! journal).
//!
//! Replay sets state directly: it sends nothing to anyone. Tasks come back
//! queued but unplaced until [`Core::finish_replay`], which queues them
//! (those that had attempts at the front, with their next attempt number
//! still to come) once every change is in.

use super::Core;
use crate::change::{AttemptEnd, Change, FinalState, JobSnapshot, TaskSnapshot};
use crate::job::Job;
use crate::task::{AttemptRecord, TaskState};
use crate::{Command, Millis};
use quarry_proto::{ErrorKind, TaskId, TaskOutcome};

/// What a replay brought back, for the log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Restored {
    /// Jobs kept.
    pub jobs: usize,
    /// Their tasks.
    pub tasks: usize,
    /// Tasks that had finished, with their results.
    pub finished: usize,
    /// Tasks that were assigned or running, queued again.
    pub requeued: usize,
    /// Changes that named a job or task the replay did not know (the
    /// records before them were lost); they were skipped.
    pub skipped: usize,
}

impl From<FinalState> for TaskState {
    fn from(state: FinalState) -> TaskState {
        match state {
            FinalState::Done => TaskState::Done,
            FinalState::Failed => TaskState::Failed,
            FinalState::Cancelled => TaskState::Cancelled,
        }
    }
}

impl Core {
    /// Applies one durable change (from [`crate::Command::Record`], in the
    /// order they were emitted) to this core, which must not have handled
    /// any event yet. Changes naming unknown jobs or tasks are skipped and
    /// counted in [`Restored::skipped`].
    pub fn replay(&mut self, change: Change) {
        let applied = match change {
            Change::JobOpened { spec, owner, at } => {
                if self.job_index.contains_key(&spec.id) {
                    false
                } else {
                    let j = self.add_job(Job::new(spec, owner, at));
                    self.running_jobs.insert(j);
                    true
                }
            }
            Change::TasksAdded { job, tasks } => match self.job_index.get(&job) {
                Some(&j) => {
                    let mut with_functions = Vec::with_capacity(tasks.len());
                    for task in tasks {
                        match task.function() {
                            Ok(function) if !self.task_index.contains_key(&task.id()) => {
                                with_functions.push((task, self.function_id(&function)));
                            }
                            // Known already, or unreadable.
                            _ => self.replay_skipped += 1,
                        }
                    }
                    self.add_tasks(j, with_functions);
                    true
                }
                None => false,
            },
            Change::JobSealed { job } => self.with_job(job, |job| job.sealed = true),
            Change::JobStopped { job } => self.with_job(job, |job| job.stopped = true),
            Change::Assigned {
                task,
                attempt,
                local,
            } => match self.unfinished(task) {
                Some(t) => {
                    let task = &mut self.tasks[t as usize];
                    task.attempt = task.attempt.max(attempt);
                    let job = &mut self.jobs[task.job as usize];
                    match local {
                        Some(true) => job.tasks_local += 1,
                        Some(false) => job.tasks_remote += 1,
                        None => {}
                    }
                    true
                }
                None => false,
            },
            Change::AttemptEnded(end) => self.replay_attempt(*end),
            Change::TaskEnded {
                task,
                state,
                outcome,
                worker,
            } => match self.unfinished(task) {
                Some(t) => {
                    if let Some(name) = worker {
                        let w = self.ghost_worker(&name);
                        self.set_worker(t, w);
                    }
                    self.end_restored(t, state, Some(outcome));
                    true
                }
                None => false,
            },
            Change::JobFinished { job, at } => match self.job_index.get(&job) {
                Some(&j) => {
                    self.finish_restored(j, at);
                    true
                }
                None => false,
            },
            Change::JobDropped { job } => {
                self.finished_jobs.retain(|&(_, id)| id != job);
                self.drop_job(job);
                true
            }
            Change::Job(snapshot) => self.restore_job(*snapshot),
            Change::Totals { dropped_jobs } => {
                self.dropped_jobs = self.dropped_jobs.max(dropped_jobs);
                true
            }
        };
        if !applied {
            self.replay_skipped += 1;
        }
    }

    /// Ends a replay: queues every unfinished task (those that had an
    /// attempt at the front of their priority, to run again with the next
    /// attempt number), finishes sealed jobs whose tasks all ended (their
    /// `JobFinished` goes out, so their manifest is written), and puts the
    /// finished jobs in retention order.
    pub fn finish_replay(&mut self, now: Millis, out: &mut Vec<Command>) -> Restored {
        let mut restored = Restored {
            jobs: self.job_index.len(),
            tasks: self.tasks.len(),
            skipped: std::mem::take(&mut self.replay_skipped),
            ..Restored::default()
        };
        let jobs: Vec<u32> = self.job_index.values().copied().collect();
        for &j in &jobs {
            for i in 0..self.jobs[j as usize].tasks.len() {
                let t = self.jobs[j as usize].tasks[i];
                let task = &self.tasks[t as usize];
                if task.state.is_final() {
                    restored.finished += 1;
                    continue;
                }
                let had_attempt = task.attempt > 0;
                if had_attempt {
                    restored.requeued += 1;
                }
                self.place(t, had_attempt, now);
            }
        }
        for &j in &jobs {
            self.finish_job_if_complete(j, now, out);
        }
        self.finished_jobs
            .make_contiguous()
            .sort_by_key(|&(at, id)| (at, id));
        restored
    }

    /// Every job kept, as the fewest changes that rebuild them with
    /// [`Core::replay`]: what a compacted journal holds. Attempts in
    /// flight are not kept: replayed, their tasks are queued again.
    pub fn snapshot(&self) -> Vec<Change> {
        let mut changes = vec![Change::Totals {
            dropped_jobs: self.dropped_jobs,
        }];
        for &j in self.job_index.values() {
            let job = &self.jobs[j as usize];
            let tasks = job.tasks.iter().map(|&t| self.task_snapshot(t)).collect();
            changes.push(Change::Job(Box::new(JobSnapshot {
                spec: job.spec.clone(),
                owner: job.owner,
                opened_at: job.opened_at,
                finished_at: job.finished_at,
                sealed: job.sealed,
                stopped: job.stopped,
                tasks_local: job.tasks_local,
                tasks_remote: job.tasks_remote,
                stats: job.stats.clone(),
                tasks,
            })));
        }
        changes
    }

    fn task_snapshot(&self, t: u32) -> TaskSnapshot {
        let task = &self.tasks[t as usize];
        let state = match task.state {
            TaskState::Done => Some(FinalState::Done),
            TaskState::Failed => Some(FinalState::Failed),
            TaskState::Cancelled => Some(FinalState::Cancelled),
            _ => None,
        };
        let record = task.record.as_deref();
        TaskSnapshot {
            spec: task.spec.clone(),
            attempts: task.attempt,
            errors: task.errors,
            state,
            outcome: record.and_then(|r| r.outcome.clone()),
            outputs: record.map(|r| r.outputs.clone()).unwrap_or_default(),
            stats: record.map(|r| r.stats.clone()).unwrap_or_default(),
            worker: state.and_then(|_| self.last_worker_name(t)),
            released: task.released,
        }
    }

    /// Applies `change` to a known job; false if the job is unknown.
    fn with_job(&mut self, job: quarry_proto::JobId, change: impl FnOnce(&mut Job)) -> bool {
        match self.job_index.get(&job) {
            Some(&j) => {
                change(&mut self.jobs[j as usize]);
                true
            }
            None => false,
        }
    }

    /// The index of a known task that has not ended.
    fn unfinished(&self, task: TaskId) -> Option<u32> {
        let &t = self.task_index.get(&task)?;
        (!self.tasks[t as usize].state.is_final()).then_some(t)
    }

    fn replay_attempt(&mut self, end: AttemptEnd) -> bool {
        let Some(t) = self.unfinished(end.task) else {
            return false;
        };
        let w = self.ghost_worker(&end.worker);
        self.set_worker(t, w);
        let task = &mut self.tasks[t as usize];
        task.attempt = task.attempt.max(end.attempt);
        self.jobs[task.job as usize].add_stats(&end.stats);
        let record = task.record.get_or_insert_default();
        record.outputs = end.outputs;
        record.stats = end.stats;
        if end.retried {
            // As the live core counted it: a retried `WorkerLost` report
            // came out of the worker-loss budget.
            match &end.outcome {
                TaskOutcome::Err(error) if error.kind == ErrorKind::WorkerLost => {
                    task.worker_losses += 1
                }
                _ => task.errors += 1,
            }
            return true;
        }
        let state = match &end.outcome {
            TaskOutcome::Ok(_) => FinalState::Done,
            TaskOutcome::Err(_) => {
                task.errors += 1;
                FinalState::Failed
            }
        };
        self.end_restored(t, state, Some(end.outcome));
        true
    }

    /// Moves a restored task to a final state with its outcome.
    fn end_restored(&mut self, t: u32, state: FinalState, outcome: Option<TaskOutcome>) {
        self.set_state(t, state.into());
        let task = &mut self.tasks[t as usize];
        if !task.released {
            task.record.get_or_insert_default().outcome = outcome;
        }
    }

    /// Marks a restored job finished at `at`.
    fn finish_restored(&mut self, j: u32, at: Millis) {
        let job = &mut self.jobs[j as usize];
        if job.finished_at.is_none() {
            job.finished_at = Some(at);
            self.running_jobs.remove(&j);
            self.finished_jobs.push_back((at, job.spec.id));
            self.finished_since_update.push(job.spec.id);
        }
    }

    fn restore_job(&mut self, snapshot: JobSnapshot) -> bool {
        if self.job_index.contains_key(&snapshot.spec.id) {
            return false;
        }
        let mut job = Job::new(snapshot.spec, snapshot.owner, snapshot.opened_at);
        job.sealed = snapshot.sealed;
        job.stopped = snapshot.stopped;
        job.tasks_local = snapshot.tasks_local;
        job.tasks_remote = snapshot.tasks_remote;
        job.stats = snapshot.stats;
        let j = self.add_job(job);
        self.running_jobs.insert(j);
        let mut with_functions = Vec::with_capacity(snapshot.tasks.len());
        let mut rest = Vec::with_capacity(snapshot.tasks.len());
        for task in snapshot.tasks {
            match task.spec.function() {
                Ok(function) if !self.task_index.contains_key(&task.spec.id()) => {
                    with_functions.push((task.spec.clone(), self.function_id(&function)));
                    rest.push(task);
                }
                // Known already, or unreadable.
                _ => self.replay_skipped += 1,
            }
        }
        let added = self.add_tasks(j, with_functions);
        for (t, task) in added.into_iter().zip(rest) {
            {
                let slot = &mut self.tasks[t as usize];
                slot.attempt = task.attempts;
                slot.errors = task.errors;
                slot.released = task.released;
            }
            if let Some(name) = &task.worker {
                let w = self.ghost_worker(name);
                self.set_worker(t, w);
            }
            if task.state.is_some() || !task.outputs.is_empty() || task.stats != Default::default()
            {
                self.tasks[t as usize].record = Some(Box::new(AttemptRecord {
                    outcome: None,
                    outputs: task.outputs,
                    stats: task.stats,
                }));
            }
            if let Some(state) = task.state {
                self.end_restored(t, state, task.outcome);
            }
        }
        if let Some(at) = snapshot.finished_at {
            self.finish_restored(j, at);
        }
        true
    }
}
