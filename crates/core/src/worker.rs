//! Per-worker and per-function state.

use crate::locality::worker_key;
use crate::queue::PriorityQueue;
use crate::Millis;
use quarry_proto::WorkerId;
use std::collections::{BTreeSet, HashSet};

/// A registered worker. Records are never reused, so a task can always name
/// the worker of its last attempt.
#[derive(Debug)]
pub(crate) struct Worker {
    /// The id the shell knows it by.
    pub id: WorkerId,
    /// Its name; rendezvous hashing uses it, so that ownership survives
    /// reconnects and scheduler restarts.
    pub name: String,
    /// Its rendezvous key ([`worker_key`] of the name).
    pub key: u64,
    /// Task slots (at least 1).
    pub slots: u32,
    /// Indexes of the functions it serves.
    pub functions: Vec<u32>,
    /// Whether it is still connected.
    pub live: bool,
    /// When it was last heard from.
    pub last_seen: Millis,
    /// Slots taken by its assigned and running tasks.
    pub load: u32,
    /// Its assigned and running tasks (ordered, for deterministic requeues).
    pub tasks: BTreeSet<u32>,
    /// Queued tasks that prefer it (their data is here, or it owns it).
    pub local: PriorityQueue,
    /// Object keys its cache holds.
    pub cached: HashSet<String>,
}

impl Worker {
    /// A newly joined worker.
    pub fn new(id: WorkerId, name: String, slots: u32, functions: Vec<u32>, now: Millis) -> Self {
        Worker {
            id,
            key: worker_key(&name),
            name,
            slots: slots.max(1),
            functions,
            live: true,
            last_seen: now,
            load: 0,
            tasks: BTreeSet::new(),
            local: PriorityQueue::default(),
            cached: HashSet::new(),
        }
    }
}

/// A function name some task or worker mentioned, with the queues of its
/// tasks and the measurements that decide its prefetch.
#[derive(Debug, Default)]
pub(crate) struct Function {
    /// Tasks with no placement preference, for any worker serving it.
    pub free: PriorityQueue,
    /// Tasks waiting for their preferred worker, in time order; any worker
    /// may take them once their locality wait has expired.
    pub waiting: PriorityQueue,
    /// Live workers serving it, ascending (a sorted vector: placement
    /// walks it for every owner-routed task).
    workers: Vec<u32>,
    /// Sum of those workers' slots.
    total_slots: u64,
    /// Sum of measured attempt durations.
    duration_total_ms: u64,
    /// Number of measured attempts.
    duration_count: u64,
}

impl Function {
    /// Live workers serving it, ascending.
    pub fn workers(&self) -> &[u32] {
        &self.workers
    }

    /// Sum of the slots of its live workers.
    pub fn total_slots(&self) -> u64 {
        self.total_slots
    }

    /// Whether live worker `w` serves it.
    pub fn is_served_by(&self, w: u32) -> bool {
        self.workers.binary_search(&w).is_ok()
    }

    /// A worker serving it joined.
    pub fn add_worker(&mut self, w: u32, slots: u32) {
        if let Err(at) = self.workers.binary_search(&w) {
            self.workers.insert(at, w);
            self.total_slots += u64::from(slots);
        }
    }

    /// A worker serving it left.
    pub fn remove_worker(&mut self, w: u32, slots: u32) {
        if let Ok(at) = self.workers.binary_search(&w) {
            self.workers.remove(at);
            self.total_slots -= u64::from(slots);
        }
    }

    /// Adds one attempt's duration to the mean.
    pub fn record_duration(&mut self, duration_ms: u64) {
        self.duration_total_ms = self.duration_total_ms.saturating_add(duration_ms);
        self.duration_count += 1;
    }

    /// Whether its mean attempt is shorter than `threshold_ms` (an unknown
    /// mean counts as short): only then do workers prefetch its tasks.
    pub fn is_short(&self, threshold_ms: u64) -> bool {
        self.duration_count == 0 || self.duration_total_ms / self.duration_count < threshold_ms
    }
}
