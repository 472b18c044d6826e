//! The [`Core`] state machine: its tables, event dispatch and queries.
//!
//! Task lifecycle rules live in `lifecycle`, placement in `placement`,
//! dropping finished jobs and reusing table slots in `retention`, and
//! rebuilding state from a journal in `replay`.

mod lifecycle;
mod placement;
mod replay;
mod retention;

pub use replay::Restored;
pub use retention::JobUpdates;

use crate::change::Change;
use crate::job::{Job, PROGRESS_INTERVAL_MS};
use crate::locality::LocalityIndex;
use crate::task::{Task, TaskState, TaskTable, NO_WORKER};
use crate::worker::{host_key, Function, Worker, WorkerIdentity};
use crate::{Command, CoreConfig, Event, Millis};
use quarry_proto::{
    CacheEntry, ClientId, EncodedTask, ErrorKind, JobId, JobInfo, JobSpec, RequestId, TaskError,
    TaskId, TaskOutcome, TaskStatus, WorkerId,
};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use tracing::debug;

/// A live worker as [`Core::workers`] describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerView {
    /// Its id.
    pub id: WorkerId,
    /// Its name.
    pub name: String,
    /// Its machine's host name, lowercase; empty if unknown.
    pub host: String,
    /// Its task slots.
    pub slots: u32,
    /// Slots its running tasks take (at most `slots`).
    pub busy_slots: u32,
    /// The tasks it reported running.
    pub running: Vec<TaskId>,
    /// Tasks sent to it that it has not reported starting.
    pub assigned: u32,
    /// Objects its cache holds, as it reported them.
    pub cached_objects: u64,
    /// Their bytes.
    pub cached_bytes: u64,
    /// Whether it is draining (it takes no new tasks).
    pub draining: bool,
}

/// The scheduler's state machine: jobs, tasks, workers, the locality index
/// and placement. Feed it [`Event`]s with [`Core::handle`]; carry out the
/// [`Command`]s it emits. It never reads a clock or touches I/O.
///
/// Internally tasks, jobs, workers and functions live in tables addressed
/// by `u32` indexes, so that queues hold 8-byte entries and a million
/// queued tasks stay cheap. Slots of dropped jobs, their tasks and workers
/// no task names any more are reused, so the tables stay as large as what
/// is kept, not as everything ever seen.
#[derive(Debug)]
pub struct Core {
    config: CoreConfig,
    tasks: TaskTable,
    task_index: HashMap<TaskId, u32>,
    jobs: Vec<Job>,
    job_index: BTreeMap<JobId, u32>,
    /// Slots of dropped jobs, reused first.
    free_jobs: Vec<u32>,
    /// What a free job slot holds.
    vacant_job: Arc<JobSpec>,
    workers: Vec<Worker>,
    worker_index: HashMap<WorkerId, u32>,
    /// Live workers by name: a worker joining under a live worker's name
    /// takes it over.
    live_by_name: HashMap<String, u32>,
    /// Slots of workers that left and that no task names any more.
    free_workers: Vec<u32>,
    /// Records of workers known only by name (restored tasks ran there).
    ghosts: HashMap<String, u32>,
    functions: Vec<Function>,
    function_index: HashMap<String, u32>,
    /// Slots of functions nothing names any more, reused first.
    free_functions: Vec<u32>,
    /// Jobs not finished yet: their info changes all the time.
    running_jobs: BTreeSet<u32>,
    /// Finished jobs in the order they finished, with when: the retention
    /// queue.
    finished_jobs: VecDeque<(Millis, JobId)>,
    /// Jobs that finished since the last [`Core::job_updates`].
    finished_since_update: Vec<JobId>,
    /// Jobs dropped since the last [`Core::job_updates`].
    dropped_since_update: Vec<JobId>,
    /// Finished jobs dropped after their retention, ever.
    dropped_jobs: u64,
    /// Their tasks.
    dropped_tasks: u64,
    /// Changes [`Core::replay`] could not apply.
    replay_skipped: usize,
    locality: LocalityIndex,
    /// Workers (live or not) by the short form of their host name
    /// ([`host_key`]), so that placing a task on a replica host looks at
    /// the workers of its hosts only.
    workers_by_host: HashMap<String, Vec<u32>>,
    /// Live workers with room for at least one more task (at full
    /// prefetch); the candidates when queued work needs a worker.
    open_workers: BTreeSet<u32>,
    /// Unfinished jobs with watchers, for periodic progress.
    watched_jobs: BTreeSet<u32>,
    /// Tasks waiting out their retry backoff, by when they may be queued
    /// again: (not before, task, its ticket when it began to wait). An
    /// entry whose task moved on (cancelled, or its slot reused) has a
    /// stale ticket and is skipped.
    backoff: BTreeSet<(Millis, u32, u32)>,
    /// Tasks in the queued state.
    queued: usize,
    /// Work was queued or capacity freed: offer queued tasks to open
    /// workers before `handle` returns.
    dispatch_pending: bool,
}

impl Core {
    /// An empty scheduler.
    pub fn new(config: CoreConfig) -> Core {
        let vacant_job = Arc::new(JobSpec {
            id: JobId(0),
            name: String::new(),
            broadcast: Vec::new(),
            output: None,
            context: Vec::new(),
            max_fails: None,
        });
        Core {
            config,
            tasks: TaskTable::default(),
            task_index: HashMap::new(),
            jobs: Vec::new(),
            job_index: BTreeMap::new(),
            free_jobs: Vec::new(),
            vacant_job,
            workers: Vec::new(),
            worker_index: HashMap::new(),
            live_by_name: HashMap::new(),
            free_workers: Vec::new(),
            ghosts: HashMap::new(),
            functions: Vec::new(),
            function_index: HashMap::new(),
            free_functions: Vec::new(),
            running_jobs: BTreeSet::new(),
            finished_jobs: VecDeque::new(),
            finished_since_update: Vec::new(),
            dropped_since_update: Vec::new(),
            dropped_jobs: 0,
            dropped_tasks: 0,
            replay_skipped: 0,
            locality: LocalityIndex::default(),
            workers_by_host: HashMap::new(),
            open_workers: BTreeSet::new(),
            watched_jobs: BTreeSet::new(),
            backoff: BTreeSet::new(),
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
                host,
            } => {
                let identity = WorkerIdentity {
                    id: worker,
                    name,
                    host,
                };
                self.worker_joined(identity, slots, &functions, inventory, now, out)
            }
            Event::WorkerLeft { worker } => {
                if let Some(&w) = self.worker_index.get(&worker) {
                    self.lose_worker(w, now, out);
                }
            }
            Event::WorkerDraining { worker } => {
                if let Some(w) = self.touch(worker, now) {
                    self.drain_worker(w, now);
                }
            }
            Event::WorkerDrained { worker } => {
                if let Some(&w) = self.worker_index.get(&worker) {
                    self.workers[w as usize].drained = true;
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
            Event::JobOpened {
                client,
                request,
                spec,
            } => {
                let answer = self.open_job(client, spec, now, out);
                answer_to(out, client, request, answer);
            }
            Event::TasksSubmitted {
                client,
                request,
                job,
                tasks,
            } => {
                let answer = self.submit(client, job, tasks, now, out);
                answer_to(out, client, request, answer);
            }
            Event::JobSealed {
                client,
                request,
                job,
            } => {
                let answer = self.seal_job(client, job, now, out);
                answer_to(out, client, request, answer);
            }
            Event::TaskStarted {
                worker,
                task,
                attempt,
            } => self.task_started(worker, task, attempt, now),
            Event::TaskFinished { worker, report } => self.task_finished(worker, report, now, out),
            Event::CancelTasks {
                client,
                request,
                tasks,
            } => {
                for id in tasks {
                    if let Some(&t) = self.task_index.get(&id) {
                        self.cancel_task(t, "cancelled by the client", now, out);
                    }
                }
                answer_to(out, client, request, Ok(()));
            }
            Event::CancelJob {
                client,
                request,
                job,
            } => {
                let answer = match self.job_index.get(&job) {
                    Some(&j) => {
                        self.stop_job(j, &format!("job {job} was cancelled"), now, out);
                        Ok(())
                    }
                    None => Err(no_such_job(job)),
                };
                answer_to(out, client, request, answer);
            }
            Event::Release { tasks } => self.release(&tasks),
            Event::OutputsFailed { job } => self.outputs_failed(job),
            Event::Watch {
                client,
                request,
                job,
            } => self.watch(client, request, job, now, out),
            Event::Resume {
                client,
                request,
                tasks,
            } => {
                self.resume(client, &tasks, out);
                answer_to(out, client, request, Ok(()));
            }
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

    /// A kept job's spec, as opened.
    pub fn job_spec(&self, job: JobId) -> Option<&Arc<JobSpec>> {
        let &j = self.job_index.get(&job)?;
        Some(&self.jobs[j as usize].spec)
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

    /// Every live worker, in worker-id order, as the dashboard shows
    /// them. Costs one entry per live worker, plus its running tasks.
    pub fn workers(&self) -> Vec<WorkerView> {
        let mut views: Vec<WorkerView> = self
            .worker_index
            .values()
            .map(|&w| {
                let worker = &self.workers[w as usize];
                let mut running = Vec::new();
                let mut assigned = 0;
                let mut busy_slots = 0;
                for &t in &worker.tasks {
                    let task = &self.tasks[t as usize];
                    match task.state {
                        TaskState::Running => {
                            busy_slots += task.occupancy(worker.slots);
                            running.push(task.spec.id());
                        }
                        _ => assigned += 1,
                    }
                }
                WorkerView {
                    id: worker.id,
                    name: worker.name.clone(),
                    host: worker.host.clone(),
                    slots: worker.slots,
                    busy_slots: busy_slots.min(worker.slots),
                    running,
                    assigned,
                    cached_objects: worker.cached.len() as u64,
                    cached_bytes: worker.cached_bytes,
                    draining: worker.draining,
                }
            })
            .collect();
        views.sort_by_key(|view| view.id);
        views
    }

    /// A kept task's job, and the function it runs.
    pub fn task_origin(&self, task: TaskId) -> Option<(JobId, &str)> {
        let &t = self.task_index.get(&task)?;
        let task = &self.tasks[t as usize];
        let job = self.jobs[task.job as usize].spec.id;
        Some((job, &self.functions[task.function as usize].name))
    }

    /// Function names held: those some task names or some live worker
    /// serves.
    pub fn function_count(&self) -> usize {
        self.function_index.len()
    }

    /// Tasks waiting for a worker.
    pub fn queued_tasks(&self) -> usize {
        self.queued
    }

    /// Tasks held in the tables, in every state.
    pub fn task_count(&self) -> usize {
        self.tasks.len()
    }

    /// Finished jobs dropped after their retention so far.
    pub fn dropped_jobs(&self) -> u64 {
        self.dropped_jobs
    }

    /// Tasks of the jobs dropped so far by this core (replayed drops
    /// included): against [`Core::task_count`], how much of a journal is
    /// dead weight.
    pub fn dropped_tasks(&self) -> u64 {
        self.dropped_tasks
    }

    /// Emits a durable change, when changes are recorded.
    fn record(&self, out: &mut Vec<Command>, change: impl FnOnce() -> Change) {
        if self.config.record_changes {
            out.push(Command::Record(change()));
        }
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
        let function = Function::new(name.to_owned(), &self.config);
        let f = match self.free_functions.pop() {
            Some(f) => {
                self.functions[f as usize] = function;
                f
            }
            None => {
                self.functions.push(function);
                self.functions.len() as u32 - 1
            }
        };
        self.function_index.insert(name.to_owned(), f);
        f
    }

    /// Frees function `f`'s slot (its queues and measurements) when no task
    /// names it and no live worker serves it, so that names a peer made up
    /// do not stay in memory after it.
    pub(crate) fn release_function(&mut self, f: u32) {
        let function = &self.functions[f as usize];
        if !function.is_unused() || self.function_index.get(&function.name) != Some(&f) {
            return;
        }
        self.function_index.remove(&function.name);
        self.functions[f as usize] = Function::new(String::new(), &self.config);
        self.free_functions.push(f);
    }

    /// Refreshes a live worker's heartbeat; `None` for unknown workers.
    fn touch(&mut self, worker: WorkerId, now: Millis) -> Option<u32> {
        let &w = self.worker_index.get(&worker)?;
        self.workers[w as usize].last_seen = now;
        Some(w)
    }

    fn worker_joined(
        &mut self,
        identity: WorkerIdentity,
        slots: u32,
        functions: &[String],
        inventory: Vec<CacheEntry>,
        now: Millis,
        out: &mut Vec<Command>,
    ) {
        let WorkerIdentity { id, name, host } = identity;
        if let Some(&old) = self.worker_index.get(&id) {
            // Rejoined without us noticing it left: its old tasks are gone.
            self.lose_worker(old, now, out);
        }
        if let Some(&old) = self.live_by_name.get(&name) {
            // The same worker restarted (a name is one worker, and its
            // cache directory is locked to one process): what its earlier
            // session held will never be reported, so requeue it now.
            let replaced = self.workers[old as usize].id;
            debug!(worker = %id, %replaced, name = %name, "worker took over its earlier session");
            out.push(Command::WorkerReplaced {
                worker: replaced,
                by: id,
                name: name.clone(),
            });
            self.lose_worker(old, now, out);
        }
        let w = self.add_worker_record(Worker::ghost(String::new()));
        let mut served: Vec<u32> = functions.iter().map(|f| self.function_id(f)).collect();
        served.sort_unstable();
        served.dedup();
        let mut worker = Worker::new(id, name, slots, served, now);
        worker.host = host.to_ascii_lowercase();
        if !worker.host.is_empty() {
            self.workers_by_host
                .entry(host_key(&worker.host))
                .or_default()
                .push(w);
        }
        for &f in &worker.functions {
            self.functions[f as usize].add_worker(w, worker.slots);
        }
        for entry in inventory {
            let before = self.locality.held_bytes(w, &entry.object_key);
            if self.locality.add(w, &entry) {
                worker.cached.insert(entry.object_key.clone());
            }
            worker.cached_bytes += self.locality.held_bytes(w, &entry.object_key) - before;
        }
        debug!(worker = %id, name = %worker.name, slots = worker.slots, "worker joined");
        self.workers[w as usize] = worker;
        self.worker_index.insert(id, w);
        self.live_by_name
            .insert(self.workers[w as usize].name.clone(), w);
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
        let worker = &mut self.workers[w as usize];
        for entry in added {
            let before = self.locality.held_bytes(w, &entry.object_key);
            if self.locality.add(w, &entry) {
                worker.cached.insert(entry.object_key.clone());
            }
            worker.cached_bytes += self.locality.held_bytes(w, &entry.object_key) - before;
        }
        for entry in evicted {
            if !worker.cached.contains(&entry.object_key) {
                continue;
            }
            let before = self.locality.held_bytes(w, &entry.object_key);
            if self.locality.remove(w, &entry) {
                worker.cached.remove(&entry.object_key);
            }
            worker.cached_bytes -= before - self.locality.held_bytes(w, &entry.object_key);
        }
    }

    fn open_job(
        &mut self,
        client: ClientId,
        spec: Arc<JobSpec>,
        now: Millis,
        out: &mut Vec<Command>,
    ) -> Result<(), String> {
        if spec.id.client() != client {
            return Err(format!(
                "job id {} is outside the id range of client {client}: allocate job ids from \
                 JobId::first_for",
                spec.id
            ));
        }
        if let Some(&j) = self.job_index.get(&spec.id) {
            let job = &self.jobs[j as usize];
            // The same request again (resent after a reconnect) is done.
            if job.owner == client && *job.spec == *spec {
                return Ok(());
            }
            return Err(format!(
                "job {} is already open: job ids must be unique (allocate them from \
                 JobId::first_for)",
                spec.id
            ));
        }
        self.record(out, || Change::JobOpened {
            spec: spec.clone(),
            owner: client,
            at: now,
        });
        let j = self.add_job(Job::new(spec, client, now));
        self.running_jobs.insert(j);
        Ok(())
    }

    /// Puts a job into a free slot (or a new one) and indexes it.
    fn add_job(&mut self, job: Job) -> u32 {
        let id = job.spec.id;
        let j = match self.free_jobs.pop() {
            Some(j) => {
                self.jobs[j as usize] = job;
                j
            }
            None => {
                self.jobs.push(job);
                self.jobs.len() as u32 - 1
            }
        };
        self.job_index.insert(id, j);
        j
    }

    /// Puts a worker record into a free slot (or a new one).
    fn add_worker_record(&mut self, worker: Worker) -> u32 {
        match self.free_workers.pop() {
            Some(w) => {
                self.workers[w as usize] = worker;
                w
            }
            None => {
                self.workers.push(worker);
                self.workers.len() as u32 - 1
            }
        }
    }

    fn submit(
        &mut self,
        client: ClientId,
        job: JobId,
        specs: Vec<EncodedTask>,
        now: Millis,
        out: &mut Vec<Command>,
    ) -> Result<(), String> {
        // Only the function is read: the rest stays encoded until a worker
        // decodes it.
        let mut functions = Vec::with_capacity(specs.len());
        for task in &specs {
            let summary = task
                .summary()
                .map_err(|e| format!("task {} cannot be read: {e}", task.id()))?;
            functions.push(summary.function);
        }
        let is_new = self.check_submission(client, job, &specs)?;
        let new_tasks: Vec<(EncodedTask, u32)> = specs
            .into_iter()
            .zip(functions)
            .zip(is_new)
            .filter(|&(_, new)| new)
            .map(|((task, function), _)| (task, self.function_id(&function)))
            .collect();
        if new_tasks.is_empty() {
            return Ok(());
        }
        self.record(out, || Change::TasksAdded {
            job,
            tasks: new_tasks.iter().map(|(task, _)| task.clone()).collect(),
        });
        let j = self.job_index[&job];
        for t in self.add_tasks(j, new_tasks) {
            if self.jobs[j as usize].stopped {
                self.cancel_task(t, "its job was cancelled before it ran", now, out);
            } else {
                self.place(t, false, now);
            }
        }
        Ok(())
    }

    /// Adds tasks (each with its function's index) to job `j` in the
    /// queued state, without placing them; returns their indexes.
    fn add_tasks(&mut self, j: u32, tasks: Vec<(EncodedTask, u32)>) -> Vec<u32> {
        let mut added = Vec::with_capacity(tasks.len());
        for (spec, function) in tasks {
            let id = spec.id();
            self.functions[function as usize].tasks += 1;
            let t = self.tasks.push(Task::new(spec, j, function));
            self.task_index.insert(id, t);
            let job = &mut self.jobs[j as usize];
            if let Some(&last) = job.tasks.last() {
                if self.tasks[last as usize].spec.id() > id {
                    job.tasks_in_id_order = false;
                }
            }
            job.tasks.push(t);
            job.count_transition(None, TaskState::Queued);
            self.queued += 1;
            added.push(t);
        }
        added
    }

    /// Why a submission is refused (nothing of it is accepted then), or
    /// which of its tasks are new: a task already in the job with the same
    /// spec was submitted before (the request was resent after a
    /// reconnect) and is not added again.
    fn check_submission(
        &self,
        client: ClientId,
        job: JobId,
        specs: &[EncodedTask],
    ) -> Result<Vec<bool>, String> {
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
        let total = specs.len();
        let mut seen = HashSet::with_capacity(total);
        let mut is_new = Vec::with_capacity(total);
        for spec in specs {
            let id = spec.id();
            if id.client() != client {
                return Err(format!(
                    "task id {id} is outside the id range of client {client}: allocate ids from \
                     TaskId::first_for"
                ));
            }
            if !seen.insert(id) {
                return Err(duplicate_task(id, total));
            }
            match self.task_index.get(&id) {
                Some(&t) => {
                    let known = &self.tasks[t as usize];
                    if known.job != j || known.spec != *spec {
                        return Err(duplicate_task(id, total));
                    }
                    is_new.push(false);
                }
                None => is_new.push(true),
            }
        }
        if job_record.sealed && is_new.contains(&true) {
            return Err(format!(
                "job {job} is sealed: no tasks can be added; open a new job"
            ));
        }
        Ok(is_new)
    }

    fn seal_job(
        &mut self,
        client: ClientId,
        job: JobId,
        now: Millis,
        out: &mut Vec<Command>,
    ) -> Result<(), String> {
        let Some(&j) = self.job_index.get(&job) else {
            return Err(no_such_job(job));
        };
        let record = &self.jobs[j as usize];
        if record.owner != client {
            return Err(format!(
                "job {job} belongs to client {}: only the client that opened a job may seal it",
                record.owner
            ));
        }
        if !record.sealed {
            self.seal(j, out);
            self.finish_job_if_complete(j, now, out);
        }
        Ok(())
    }

    /// Marks job `j` sealed (and records it).
    fn seal(&mut self, j: u32, out: &mut Vec<Command>) {
        let job = self.jobs[j as usize].spec.id;
        self.record(out, || Change::JobSealed { job });
        self.jobs[j as usize].sealed = true;
    }

    /// The client dropped interest in these tasks' results. Their rows are
    /// forgotten once final, except in jobs with an output prefix: those
    /// write a manifest with every task's result when they finish.
    fn outputs_failed(&mut self, job: JobId) {
        if let Some(&j) = self.job_index.get(&job) {
            let job = &mut self.jobs[j as usize];
            if job.finished_at.is_some() && !job.outputs_failed {
                job.outputs_failed = true;
                self.finished_since_update.push(job.spec.id);
            }
        }
    }

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

    fn watch(
        &mut self,
        client: ClientId,
        request: RequestId,
        job: JobId,
        now: Millis,
        out: &mut Vec<Command>,
    ) {
        let Some(&j) = self.job_index.get(&job) else {
            answer_to(out, client, request, Err(no_such_job(job)));
            return;
        };
        let job = &mut self.jobs[j as usize];
        if !job.watchers.contains(&client) {
            job.watchers.push(client);
        }
        if job.finished_at.is_none() {
            self.watched_jobs.insert(j);
        }
        answer_to(out, client, request, Ok(()));
        out.push(Command::JobProgress {
            client,
            info: job.info(now),
        });
    }

    /// A client that resumed its session still waits for `tasks`: each
    /// final one gets its `TaskDone` again, each unknown one (or another
    /// client's) a `TaskDone` failing as `Lost`. Unfinished ones resolve
    /// when they finish, as always.
    fn resume(&mut self, client: ClientId, tasks: &[TaskId], out: &mut Vec<Command>) {
        for &id in tasks {
            let known = self
                .task_index
                .get(&id)
                .filter(|_| id.client() == client)
                .map(|&t| &self.tasks[t as usize]);
            let outcome = match known {
                Some(task) if !task.state.is_final() => continue,
                Some(task) => match task.record.as_ref().and_then(|r| r.outcome.clone()) {
                    Some(outcome) => outcome,
                    None => lost(format!("the result of task {id} was released")),
                },
                None => lost(format!(
                    "task {id} is unknown to the scheduler: it restarted without a journal (or \
                     its journal did not have the task yet), or the task's job finished and was \
                     dropped after its retention; submit it again"
                )),
            };
            out.push(Command::TaskDone {
                client,
                task: id,
                outcome,
            });
        }
    }

    fn client_left(&mut self, client: ClientId, now: Millis, out: &mut Vec<Command>) {
        let jobs: Vec<u32> = self.job_index.values().copied().collect();
        for j in jobs {
            let job = &mut self.jobs[j as usize];
            job.watchers.retain(|&c| c != client);
            if job.watchers.is_empty() {
                self.watched_jobs.remove(&j);
            }
            if job.owner != client || job.sealed {
                continue;
            }
            // Nobody can seal it any more: end it with what it has.
            self.seal(j, out);
            let job = &self.jobs[j as usize];
            if job.is_complete() {
                self.finish_job_if_complete(j, now, out);
            } else {
                let reason = format!("client {client} left before sealing job {}", job.spec.id);
                self.stop_job(j, &reason, now, out);
            }
        }
    }

    fn tick(&mut self, now: Millis, out: &mut Vec<Command>) {
        // First, so that a job finishing during this tick has its
        // `JobFinished` carried out before it can be dropped.
        self.apply_retention(now, out);
        self.end_backoffs(now);
        self.check_start_deadlines(now, out);
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

/// Answers a client's request.
fn answer_to(
    out: &mut Vec<Command>,
    client: ClientId,
    request: RequestId,
    answer: Result<(), String>,
) {
    out.push(match answer {
        Ok(()) => Command::Accepted { client, request },
        Err(reason) => Command::Refused {
            client,
            request,
            reason,
        },
    });
}

fn no_such_job(job: JobId) -> String {
    format!(
        "no job {job} on this scheduler (a finished job is dropped after its retention, \
         --job-retention; its manifest stays in the store)"
    )
}

fn duplicate_task(id: TaskId, total: usize) -> String {
    format!(
        "duplicate task id {id}: task ids must be unique; none of the {total} submitted tasks \
         were accepted"
    )
}

/// The outcome of a task the scheduler cannot answer for.
fn lost(message: String) -> TaskOutcome {
    TaskOutcome::Err(TaskError {
        kind: ErrorKind::Lost,
        message,
    })
}
