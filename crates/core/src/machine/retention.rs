//! Bounded state: finished jobs are dropped after their retention, their
//! task slots are reused, and worker records are reused once no task
//! names them. What changed is reported to the shell in proportion to the
//! jobs that changed, never by walking every job.

use super::Core;
use crate::change::Change;
use crate::job::Job;
use crate::task::NO_WORKER;
use crate::worker::{host_key, Worker};
use crate::{Command, Millis};
use quarry_proto::{JobId, JobInfo};
use tracing::debug;

/// What changed in the job table since the last [`Core::job_updates`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobUpdates {
    /// The status of every unfinished job (their counts and elapsed time
    /// move) and of every job that finished since.
    pub changed: Vec<JobInfo>,
    /// Jobs dropped since (after their retention).
    pub dropped: Vec<JobId>,
}

impl Core {
    /// What changed since the last call: work in proportion to the
    /// unfinished jobs and to those that finished or were dropped since,
    /// not to every job kept. The shell calls it once per tick to refresh
    /// its dashboard.
    pub fn job_updates(&mut self, now: Millis) -> JobUpdates {
        let mut changed: Vec<JobInfo> = self
            .running_jobs
            .iter()
            .map(|&j| self.jobs[j as usize].info(now))
            .collect();
        for id in self.finished_since_update.drain(..) {
            if let Some(&j) = self.job_index.get(&id) {
                changed.push(self.jobs[j as usize].info(now));
            }
        }
        JobUpdates {
            changed,
            dropped: std::mem::take(&mut self.dropped_since_update),
        }
    }

    /// Drops the finished jobs past their retention, oldest first.
    pub(super) fn apply_retention(&mut self, now: Millis, out: &mut Vec<Command>) {
        let retention = self.config.retention;
        while let Some(&(finished_at, job)) = self.finished_jobs.front() {
            let too_many = retention
                .max_jobs
                .is_some_and(|max| self.finished_jobs.len() > max);
            let too_old = retention
                .max_age_ms
                .is_some_and(|age| now.saturating_sub(finished_at) >= age);
            if !too_many && !too_old {
                break;
            }
            self.finished_jobs.pop_front();
            debug!(%job, "finished job dropped after its retention");
            self.record(out, || Change::JobDropped { job });
            self.drop_job(job);
        }
    }

    /// Forgets a finished job: its tasks, their results and the slots they
    /// took (which later tasks reuse).
    pub(super) fn drop_job(&mut self, id: JobId) {
        let Some(j) = self.job_index.remove(&id) else {
            return;
        };
        let job = std::mem::replace(
            &mut self.jobs[j as usize],
            Job::vacant(self.vacant_job.clone()),
        );
        for &t in &job.tasks {
            let task = &self.tasks[t as usize];
            self.task_index.remove(&task.spec.id());
            let (w, f) = (task.worker, task.function);
            self.tasks.remove(t);
            if w != NO_WORKER {
                self.unref_worker(w);
            }
            self.functions[f as usize].tasks -= 1;
            self.release_function(f);
        }
        self.free_jobs.push(j);
        self.running_jobs.remove(&j);
        self.watched_jobs.remove(&j);
        self.dropped_jobs += 1;
        self.dropped_tasks += job.tasks.len() as u64;
        self.dropped_since_update.push(id);
    }

    /// Makes worker `w` the worker of task `t`'s current attempt.
    pub(super) fn set_worker(&mut self, t: u32, w: u32) {
        let previous = std::mem::replace(&mut self.tasks[t as usize].worker, w);
        self.workers[w as usize].refs += 1;
        if previous != NO_WORKER {
            self.unref_worker(previous);
        }
    }

    /// One task fewer names worker `w`; a departed worker nobody names is
    /// reclaimed.
    fn unref_worker(&mut self, w: u32) {
        let worker = &mut self.workers[w as usize];
        worker.refs -= 1;
        if worker.refs == 0 && !worker.live {
            self.reclaim_worker(w);
        }
    }

    /// Frees the record of a departed worker no task names, for the next
    /// worker that joins. Jobs forget it first, so the next worker in the
    /// slot starts without the job contexts this one was sent.
    pub(super) fn reclaim_worker(&mut self, w: u32) {
        for &j in self.job_index.values() {
            self.jobs[j as usize].forget_worker(w);
        }
        let worker = std::mem::replace(&mut self.workers[w as usize], Worker::ghost(String::new()));
        if self.ghosts.get(&worker.name) == Some(&w) {
            self.ghosts.remove(&worker.name);
        }
        if !worker.host.is_empty() {
            let key = host_key(&worker.host);
            if let Some(on_host) = self.workers_by_host.get_mut(&key) {
                on_host.retain(|&other| other != w);
                if on_host.is_empty() {
                    self.workers_by_host.remove(&key);
                }
            }
        }
        self.free_workers.push(w);
    }

    /// The record standing for a departed worker known only by its name
    /// (the worker of restored tasks), made on first use.
    pub(super) fn ghost_worker(&mut self, name: &str) -> u32 {
        if let Some(&w) = self.ghosts.get(name) {
            return w;
        }
        let w = self.add_worker_record(Worker::ghost(name.to_owned()));
        self.ghosts.insert(name.to_owned(), w);
        w
    }
}
