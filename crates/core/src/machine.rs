//! The [`Core`] state machine: its tables, event dispatch and queries.
//!
//! Task lifecycle rules live in `lifecycle`, placement in `placement`.

mod lifecycle;
mod placement;

use crate::job::{Job, PROGRESS_INTERVAL_MS};
use crate::locality::LocalityIndex;
use crate::task::{Task, TaskTable, NO_WORKER};
use crate::worker::{Function, Worker};
use crate::{Command, CoreConfig, Event, Millis};
use quarry_proto::{
    CacheEntry, ClientId, EncodedTask, JobId, JobInfo, JobSpec, TaskId, TaskStatus, WorkerId,
};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use tracing::debug;

/// The scheduler's state machine: jobs, tasks, workers, the locality index
/// and placement. Feed it [`Event`]s with [`Core::handle`]; carry out the
/// [`Command`]s it emits. It never reads a clock or touches I/O.
///
/// Internally tasks, jobs, workers and functions live in append-only tables
/// addressed by `u32` indexes, so that queues hold 8-byte entries and a
/// million queued tasks stay cheap.
#[derive(Debug)]
pub struct Core {
    config: CoreConfig,
    tasks: TaskTable,
    task_index: HashMap<TaskId, u32>,
    jobs: Vec<Job>,
    job_index: BTreeMap<JobId, u32>,
    workers: Vec<Worker>,
    worker_index: HashMap<WorkerId, u32>,
    functions: Vec<Function>,
    function_index: HashMap<String, u32>,
    locality: LocalityIndex,
    /// Live workers with room for at least one more task (at full
    /// prefetch); the candidates when queued work needs a worker.
    open_workers: BTreeSet<u32>,
    /// Unfinished jobs with watchers, for periodic progress.
    watched_jobs: BTreeSet<u32>,
    /// Tasks in the queued state.
    queued: usize,
    /// Work was queued or capacity freed: offer queued tasks to open
    /// workers before `handle` returns.
    dispatch_pending: bool,
}

impl Core {
    /// An empty scheduler.
    pub fn new(config: CoreConfig) -> Core {
        Core {
            config,
            tasks: TaskTable::default(),
            task_index: HashMap::new(),
            jobs: Vec::new(),
            job_index: BTreeMap::new(),
            workers: Vec::new(),
            worker_index: HashMap::new(),
            functions: Vec::new(),
            function_index: HashMap::new(),
            locality: LocalityIndex::default(),
            open_workers: BTreeSet::new(),
            watched_jobs: BTreeSet::new(),
            queued: 0,
            dispatch_pending: false,
        }
    }

    /// Applies one event that happened at `now` and appends the resulting
    /// commands to `out` (which is never cleared).
    pub fn handle(&mut self, now: Millis, event: Event, out: &mut Vec<Command>) {
        match event {
            Event::WorkerJoined {
                worker,
                name,
                slots,
                functions,
                inventory,
            } => self.worker_joined(worker, name, slots, &functions, inventory, now, out),
            Event::WorkerLeft { worker } => {
                if let Some(&w) = self.worker_index.get(&worker) {
                    self.lose_worker(w, now, out);
                }
            }
            Event::Heartbeat { worker } => {
                self.touch(worker, now);
            }
            Event::CacheDelta {
                worker,
                added,
                evicted,
            } => self.cache_delta(worker, added, evicted, now),
            Event::JobOpened { client, spec } => self.open_job(client, spec, now, out),
            Event::TasksSubmitted { client, job, tasks } => {
                self.submit(client, job, tasks, now, out)
            }
            Event::JobSealed { job } => self.seal_job(job, now, out),
            Event::TaskStarted {
                worker,
                task,
                attempt,
            } => self.task_started(worker, task, attempt, now),
            Event::TaskFinished { worker, report } => self.task_finished(worker, report, now, out),
            Event::CancelTasks { tasks } => {
                for id in tasks {
                    if let Some(&t) = self.task_index.get(&id) {
                        self.cancel_task(t, "cancelled by the client", now, out);
                    }
                }
            }
            Event::CancelJob { job } => {
                if let Some(&j) = self.job_index.get(&job) {
                    self.stop_job(j, &format!("job {job} was cancelled"), now, out);
                }
            }
            Event::Release { tasks } => self.release(&tasks),
            Event::Watch { client, job } => self.watch(client, job, now, out),
            Event::ClientLeft { client } => self.client_left(client, now, out),
            Event::Tick => self.tick(now, out),
        }
        if self.dispatch_pending {
            self.dispatch(now, out);
        }
    }

    /// Every job's status, in job-id order.
    pub fn jobs(&self, now: Millis) -> Vec<JobInfo> {
        self.job_index
            .values()
            .map(|&j| self.jobs[j as usize].info(now))
            .collect()
    }

    /// One job's status.
    pub fn job_info(&self, job: JobId, now: Millis) -> Option<JobInfo> {
        let &j = self.job_index.get(&job)?;
        Some(self.jobs[j as usize].info(now))
    }

    /// One page of a job's task rows in task-id order, starting after
    /// `after`; the flag says whether more rows follow. `None` if the job is
    /// unknown.
    pub fn results(
        &self,
        job: JobId,
        after: Option<TaskId>,
        limit: usize,
    ) -> Option<(Vec<TaskStatus>, bool)> {
        let &j = self.job_index.get(&job)?;
        let job = &self.jobs[j as usize];
        let id_of = |&t: &u32| self.tasks[t as usize].spec.id();
        let sorted;
        let in_id_order: &[u32] = if job.tasks_in_id_order {
            &job.tasks
        } else {
            let mut tasks = job.tasks.clone();
            tasks.sort_by_key(id_of);
            sorted = tasks;
            &sorted
        };
        let start = after.map_or(0, |after| {
            in_id_order.partition_point(|t| id_of(t) <= after)
        });
        let rest = &in_id_order[start..];
        let page = rest
            .iter()
            .take(limit)
            .map(|&t| self.status_of(t))
            .collect();
        Some((page, rest.len() > limit))
    }

    /// One task's row, as in [`Core::results`].
    pub fn task_status(&self, task: TaskId) -> Option<TaskStatus> {
        self.task_index.get(&task).map(|&t| self.status_of(t))
    }

    /// Live workers.
    pub fn worker_count(&self) -> usize {
        self.worker_index.len()
    }

    /// A live worker's name.
    pub fn worker_name(&self, w: WorkerId) -> Option<&str> {
        let &w = self.worker_index.get(&w)?;
        Some(&self.workers[w as usize].name)
    }

    /// Tasks waiting for a worker.
    pub fn queued_tasks(&self) -> usize {
        self.queued
    }

    fn status_of(&self, t: u32) -> TaskStatus {
        let task = &self.tasks[t as usize];
        let record = task.record.as_deref();
        // Key and parameters stay encoded until someone asks for them.
        let (key, params_json, inputs) = match task.spec.decode() {
            Ok(spec) => (spec.key, spec.params_json, spec.inputs),
            Err(e) => (format!("(undecodable: {e})"), String::new(), Vec::new()),
        };
        TaskStatus {
            id: task.spec.id(),
            key,
            params_json,
            inputs,
            state: task.state.as_str().to_owned(),
            outcome: record.and_then(|r| r.outcome.clone()),
            outputs: record.map(|r| r.outputs.clone()).unwrap_or_default(),
            worker: (task.worker != NO_WORKER)
                .then(|| self.workers[task.worker as usize].name.clone()),
            attempts: task.attempt,
            stats: record.map(|r| r.stats.clone()).unwrap_or_default(),
        }
    }

    fn function_id(&mut self, name: &str) -> u32 {
        if let Some(&f) = self.function_index.get(name) {
            return f;
        }
        let f = self.functions.len() as u32;
        self.functions.push(Function::new(&self.config));
        self.function_index.insert(name.to_owned(), f);
        f
    }

    /// Refreshes a live worker's heartbeat; `None` for unknown workers.
    fn touch(&mut self, worker: WorkerId, now: Millis) -> Option<u32> {
        let &w = self.worker_index.get(&worker)?;
        self.workers[w as usize].last_seen = now;
        Some(w)
    }

    #[allow(clippy::too_many_arguments)]
    fn worker_joined(
        &mut self,
        id: WorkerId,
        name: String,
        slots: u32,
        functions: &[String],
        inventory: Vec<CacheEntry>,
        now: Millis,
        out: &mut Vec<Command>,
    ) {
        if let Some(&old) = self.worker_index.get(&id) {
            // Rejoined without us noticing it left: its old tasks are gone.
            self.lose_worker(old, now, out);
        }
        let w = self.workers.len() as u32;
        let mut served: Vec<u32> = functions.iter().map(|f| self.function_id(f)).collect();
        served.sort_unstable();
        served.dedup();
        let mut worker = Worker::new(id, name, slots, served, now);
        for &f in &worker.functions {
            self.functions[f as usize].add_worker(w, worker.slots);
        }
        for entry in inventory {
            if self.locality.add(w, &entry) {
                worker.cached.insert(entry.object_key);
            }
        }
        debug!(worker = %id, name = %worker.name, slots = worker.slots, "worker joined");
        self.workers.push(worker);
        self.worker_index.insert(id, w);
        self.refresh_open(w);
        self.dispatch_pending = true;
    }

    fn cache_delta(
        &mut self,
        worker: WorkerId,
        added: Vec<CacheEntry>,
        evicted: Vec<CacheEntry>,
        now: Millis,
    ) {
        let Some(w) = self.touch(worker, now) else {
            return;
        };
        let cached = &mut self.workers[w as usize].cached;
        for entry in added {
            if self.locality.add(w, &entry) {
                cached.insert(entry.object_key);
            }
        }
        for entry in evicted {
            if cached.contains(&entry.object_key) && self.locality.remove(w, &entry) {
                cached.remove(&entry.object_key);
            }
        }
    }

    fn open_job(
        &mut self,
        client: ClientId,
        spec: Arc<JobSpec>,
        now: Millis,
        out: &mut Vec<Command>,
    ) {
        if self.job_index.contains_key(&spec.id) {
            out.push(Command::Error {
                client,
                message: format!(
                    "job {} is already open: job ids must be unique (allocate them from JobId::first_for)",
                    spec.id
                ),
            });
            return;
        }
        let j = self.jobs.len() as u32;
        self.job_index.insert(spec.id, j);
        self.jobs.push(Job::new(spec, client, now));
    }

    fn submit(
        &mut self,
        client: ClientId,
        job: JobId,
        specs: Vec<EncodedTask>,
        now: Millis,
        out: &mut Vec<Command>,
    ) {
        if let Err(message) = self.check_submission(client, job, &specs) {
            out.push(Command::Error { client, message });
            return;
        }
        let j = self.job_index[&job];
        for encoded in specs {
            let id = encoded.id();
            let function = match encoded.summary() {
                Ok(summary) => self.function_id(&summary.function),
                Err(e) => {
                    let message = format!("task {id} cannot be read: {e}");
                    out.push(Command::Error { client, message });
                    continue;
                }
            };
            let t = self.tasks.push(Task::new(encoded, j, function));
            self.task_index.insert(id, t);
            let job = &mut self.jobs[j as usize];
            if let Some(&last) = job.tasks.last() {
                if self.tasks[last as usize].spec.id() > id {
                    job.tasks_in_id_order = false;
                }
            }
            job.tasks.push(t);
            job.count_transition(None, crate::task::TaskState::Queued);
            self.queued += 1;
            if job.stopped {
                self.cancel_task(t, "its job was cancelled before it ran", now, out);
            } else {
                self.place(t, false, now);
            }
        }
    }

    /// Why a submission is refused (nothing of it is accepted then).
    fn check_submission(
        &self,
        client: ClientId,
        job: JobId,
        specs: &[EncodedTask],
    ) -> Result<(), String> {
        let Some(&j) = self.job_index.get(&job) else {
            return Err(format!(
                "job {job} is not open: send OpenJob before submitting tasks to it"
            ));
        };
        let job_record = &self.jobs[j as usize];
        if job_record.owner != client {
            return Err(format!(
                "job {job} belongs to client {}: only the client that opened a job may add tasks",
                job_record.owner
            ));
        }
        if job_record.sealed {
            return Err(format!(
                "job {job} is sealed: no tasks can be added; open a new job"
            ));
        }
        let mut seen = HashSet::with_capacity(specs.len());
        for spec in specs {
            let id = spec.id();
            if id.client() != client {
                return Err(format!(
                    "task id {id} is outside the id range of client {client}: allocate ids from TaskId::first_for"
                ));
            }
            if self.task_index.contains_key(&id) || !seen.insert(id) {
                return Err(format!(
                    "duplicate task id {id}: task ids must be unique; none of the {} submitted tasks were accepted",
                    specs.len()
                ));
            }
        }
        Ok(())
    }

    fn seal_job(&mut self, job: JobId, now: Millis, out: &mut Vec<Command>) {
        let Some(&j) = self.job_index.get(&job) else {
            debug!(%job, "seal of an unknown job ignored");
            return;
        };
        self.jobs[j as usize].sealed = true;
        self.finish_job_if_complete(j, now, out);
    }

    /// The client dropped interest in these tasks' results. Their rows are
    /// forgotten once final, except in jobs with an output prefix: those
    /// write a manifest with every task's result when they finish.
    fn release(&mut self, tasks: &[TaskId]) {
        for id in tasks {
            if let Some(&t) = self.task_index.get(id) {
                let task = &mut self.tasks[t as usize];
                if self.jobs[task.job as usize].spec.output.is_some() {
                    continue;
                }
                task.released = true;
                if task.state.is_final() {
                    task.record = None;
                }
            }
        }
    }

    fn watch(&mut self, client: ClientId, job: JobId, now: Millis, out: &mut Vec<Command>) {
        let Some(&j) = self.job_index.get(&job) else {
            out.push(Command::Error {
                client,
                message: format!("cannot watch job {job}: no such job"),
            });
            return;
        };
        let job = &mut self.jobs[j as usize];
        if !job.watchers.contains(&client) {
            job.watchers.push(client);
        }
        if job.finished_at.is_none() {
            self.watched_jobs.insert(j);
        }
        out.push(Command::JobProgress {
            client,
            info: job.info(now),
        });
    }

    fn client_left(&mut self, client: ClientId, now: Millis, out: &mut Vec<Command>) {
        for j in 0..self.jobs.len() as u32 {
            let job = &mut self.jobs[j as usize];
            job.watchers.retain(|&c| c != client);
            if job.watchers.is_empty() {
                self.watched_jobs.remove(&j);
            }
            if job.owner != client || job.sealed {
                continue;
            }
            // Nobody can seal it any more: end it with what it has.
            job.sealed = true;
            if job.is_complete() {
                self.finish_job_if_complete(j, now, out);
            } else {
                let reason = format!("client {client} left before sealing job {}", job.spec.id);
                self.stop_job(j, &reason, now, out);
            }
        }
    }

    fn tick(&mut self, now: Millis, out: &mut Vec<Command>) {
        let timeout = self.config.heartbeat_timeout_ms;
        let silent: Vec<u32> = (0..self.workers.len() as u32)
            .filter(|&w| {
                let worker = &self.workers[w as usize];
                worker.live && now.saturating_sub(worker.last_seen) >= timeout
            })
            .collect();
        for w in silent {
            let worker = &self.workers[w as usize];
            debug!(worker = %worker.id, name = %worker.name, "worker lost: heartbeat timeout");
            out.push(Command::DropWorker { worker: worker.id });
            self.lose_worker(w, now, out);
        }
        for &j in &self.watched_jobs {
            let job = &mut self.jobs[j as usize];
            if job.progress_dirty && now.saturating_sub(job.last_progress) >= PROGRESS_INTERVAL_MS {
                job.progress_dirty = false;
                job.last_progress = now;
                let info = job.info(now);
                for &client in &job.watchers {
                    out.push(Command::JobProgress {
                        client,
                        info: info.clone(),
                    });
                }
            }
        }
        if self.queued > 0 {
            // Locality waits may have expired.
            self.dispatch_pending = true;
        }
    }
}
