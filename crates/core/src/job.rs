//! Per-job state and its metrics.

use crate::task::TaskState;
use crate::Millis;
use quarry_proto::{ClientId, JobCounts, JobInfo, JobSpec, JobState, TaskStats};
use std::sync::Arc;

/// How often, at most, watchers get a `JobProgress` while the job changes.
pub(crate) const PROGRESS_INTERVAL_MS: Millis = 250;

/// One job.
#[derive(Debug)]
pub(crate) struct Job {
    /// As opened.
    pub spec: Arc<JobSpec>,
    /// The client that opened it.
    pub owner: ClientId,
    /// When it was opened.
    pub opened_at: Millis,
    /// When it finished, once it has.
    pub finished_at: Option<Millis>,
    /// No more tasks will be added.
    pub sealed: bool,
    /// Cancelled (by a client, `max_fails` or its client leaving): tasks
    /// still unfinished were cancelled and new ones are cancelled at once.
    pub stopped: bool,
    /// Its manifest or success marker could not be written: it failed.
    pub outputs_failed: bool,
    /// Task counts by state.
    pub counts: JobCounts,
    /// Attempts placed where their inputs were cached most.
    pub tasks_local: u64,
    /// Attempts with inputs placed elsewhere.
    pub tasks_remote: u64,
    /// Sum of the stats of every finished attempt.
    pub stats: TaskStats,
    /// Its tasks (indexes into the task table) in submission order: four
    /// bytes a task, where a map by id would take several times that.
    pub tasks: Vec<u32>,
    /// Whether `tasks` is in task-id order too. Clients number tasks in
    /// increasing order, so it nearly always is, and result pages can
    /// binary-search it.
    pub tasks_in_id_order: bool,
    /// Clients pushed every result and the progress.
    pub watchers: Vec<ClientId>,
    /// Something changed since the last `JobProgress`.
    pub progress_dirty: bool,
    /// When watchers last got a `JobProgress`.
    pub last_progress: Millis,
    /// Tasks routed to each worker (by index) by rendezvous ownership, for
    /// the load cap.
    pub owner_routed: Vec<u64>,
    /// Sum of `owner_routed`.
    pub owner_routed_total: u64,
    /// Bit set of worker indexes that received the job context. A worker
    /// record is reused only after every job forgot it
    /// ([`Job::forget_worker`]), so a rejoining worker starts unmarked.
    sent_to: Vec<u64>,
}

impl Job {
    /// A job opened at `now`.
    pub fn new(spec: Arc<JobSpec>, owner: ClientId, now: Millis) -> Job {
        Job {
            spec,
            owner,
            opened_at: now,
            finished_at: None,
            sealed: false,
            stopped: false,
            outputs_failed: false,
            counts: JobCounts::default(),
            tasks_local: 0,
            tasks_remote: 0,
            stats: TaskStats::default(),
            tasks: Vec::new(),
            tasks_in_id_order: true,
            watchers: Vec::new(),
            progress_dirty: false,
            last_progress: now,
            owner_routed: Vec::new(),
            owner_routed_total: 0,
            sent_to: Vec::new(),
        }
    }

    /// What a free job slot holds until it is reused: no tasks, nothing
    /// of its own but a shared empty spec.
    pub fn vacant(spec: Arc<JobSpec>) -> Job {
        Job::new(spec, ClientId(0), 0)
    }

    /// Worker record `w` is about to be reused: nothing of the old worker
    /// may stick to the new one.
    pub fn forget_worker(&mut self, w: u32) {
        let (word, bit) = ((w / 64) as usize, 1u64 << (w % 64));
        if let Some(bits) = self.sent_to.get_mut(word) {
            *bits &= !bit;
        }
        if let Some(routed) = self.owner_routed.get_mut(w as usize) {
            self.owner_routed_total -= std::mem::take(routed);
        }
    }

    /// Moves one task between state counters.
    pub fn count_transition(&mut self, from: Option<TaskState>, to: TaskState) {
        if let Some(from) = from {
            *self.counter(from) -= 1;
        } else {
            self.counts.total += 1;
        }
        *self.counter(to) += 1;
        self.progress_dirty = true;
    }

    fn counter(&mut self, state: TaskState) -> &mut u64 {
        let c = &mut self.counts;
        match state {
            TaskState::Queued => &mut c.queued,
            TaskState::Assigned => &mut c.assigned,
            TaskState::Running => &mut c.running,
            TaskState::Done => &mut c.done,
            TaskState::Failed => &mut c.failed,
            TaskState::Cancelled => &mut c.cancelled,
        }
    }

    /// Marks worker `w` as holding the job context; returns whether that is
    /// new (and the context must be sent).
    pub fn mark_sent_to(&mut self, w: u32) -> bool {
        let (word, bit) = ((w / 64) as usize, 1u64 << (w % 64));
        if self.sent_to.len() <= word {
            self.sent_to.resize(word + 1, 0);
        }
        let new = self.sent_to[word] & bit == 0;
        self.sent_to[word] |= bit;
        new
    }

    /// Whether it is sealed and every task is final.
    pub fn is_complete(&self) -> bool {
        let c = &self.counts;
        self.sealed && c.done + c.failed + c.cancelled == c.total
    }

    /// Its lifecycle state.
    pub fn state(&self) -> JobState {
        if self.finished_at.is_none() {
            JobState::Running
        } else if self.stopped {
            JobState::Cancelled
        } else if self.counts.failed > 0 || self.outputs_failed {
            JobState::Failed
        } else if self.counts.cancelled > 0 {
            JobState::Cancelled
        } else {
            JobState::Succeeded
        }
    }

    /// Adds one finished attempt's stats.
    pub fn add_stats(&mut self, stats: &TaskStats) {
        let s = &mut self.stats;
        s.duration_ms = s.duration_ms.saturating_add(stats.duration_ms);
        s.bytes_from_cache = s.bytes_from_cache.saturating_add(stats.bytes_from_cache);
        s.bytes_from_store = s.bytes_from_store.saturating_add(stats.bytes_from_store);
        s.cache_hits = s.cache_hits.saturating_add(stats.cache_hits);
        s.cache_misses = s.cache_misses.saturating_add(stats.cache_misses);
    }

    /// Its status as of `now` (elapsed time stops when it finishes).
    pub fn info(&self, now: Millis) -> JobInfo {
        let end = self.finished_at.unwrap_or(now);
        JobInfo {
            id: self.spec.id,
            name: self.spec.name.clone(),
            state: self.state(),
            counts: self.counts.clone(),
            tasks_local: self.tasks_local,
            tasks_remote: self.tasks_remote,
            stats: self.stats.clone(),
            elapsed_ms: end.saturating_sub(self.opened_at),
        }
    }
}
