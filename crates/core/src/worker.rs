//! Per-worker and per-function state.

use crate::locality::worker_key;
use crate::queue::PriorityQueue;
use crate::{CoreConfig, Millis};
use quarry_proto::WorkerId;
use std::collections::{BTreeSet, HashSet};

/// Who a joining worker is.
pub(crate) struct WorkerIdentity {
    /// The id the shell knows it by.
    pub id: WorkerId,
    /// Its name.
    pub name: String,
    /// Its machine's host name; empty if unknown.
    pub host: String,
}

/// Whether host names `a` and `b` name the same machine: equal ignoring
/// case, or equal first labels when one of them is a short name (`dn1`
/// and `dn1.example.com`). Empty names match nothing.
pub(crate) fn same_host(a: &str, b: &str) -> bool {
    if a.is_empty() || b.is_empty() {
        return false;
    }
    a.eq_ignore_ascii_case(b)
        || ((!a.contains('.') || !b.contains('.')) && host_key(a) == host_key(b))
}

/// The lowercase first label of a host name: what names that [`same_host`]
/// may match share.
pub(crate) fn host_key(name: &str) -> String {
    name.split('.').next().unwrap_or(name).to_ascii_lowercase()
}

/// A registered worker. A record outlives its worker's connection for as
/// long as tasks name it as the worker of their last attempt (`refs`);
/// then its slot is reused.
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
    /// How many live entries `local` holds (it keeps stale ones until they
    /// reach its front): the queued part of its backlog.
    pub local_queued: u32,
    /// Object keys its cache holds.
    pub cached: HashSet<String>,
    /// Bytes of its cache's blocks, as it reported them.
    pub cached_bytes: u64,
    /// Its machine's host name, lowercase; empty if unknown.
    pub host: String,
    /// Tasks whose current or last attempt was on it.
    pub refs: u32,
    /// When it last started or finished a task, or was given work while it
    /// held none: the clock of [`crate::CoreConfig::start_deadline_ms`].
    pub progress_at: Millis,
    /// It sat on tasks without starting any past the start deadline: it
    /// gets no work, and serves no function, until it shows progress.
    pub stalled: bool,
    /// Draining: it finishes what it runs and is given nothing new (it no
    /// longer counts among its functions' workers).
    pub draining: bool,
    /// It left after draining: what it still held was never started.
    pub drained: bool,
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
            local_queued: 0,
            cached: HashSet::new(),
            cached_bytes: 0,
            host: String::new(),
            refs: 0,
            progress_at: now,
            stalled: false,
            draining: false,
            drained: false,
        }
    }

    /// A record standing for a worker known only by name: the worker of
    /// tasks restored from a journal, which is not connected.
    pub fn ghost(name: String) -> Self {
        Worker {
            live: false,
            ..Worker::new(WorkerId(0), name, 1, Vec::new(), 0)
        }
    }
}

/// A function name some task or worker mentioned, with the queues of its
/// tasks and the measurements that decide its prefetch. Its slot is freed
/// once no task names it and no live worker serves it.
#[derive(Debug)]
pub(crate) struct Function {
    /// Its name (the key of the core's function index).
    pub name: String,
    /// Tasks in the tables that name it, in every state.
    pub tasks: u64,
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
    /// Moving mean of measured attempt durations, in milliseconds; recent
    /// attempts weigh most, so that a function whose tasks change (one
    /// command job after another) is judged by its current ones.
    mean_ms: f64,
    /// Number of measured attempts.
    measured: u64,
    /// Prefetch depth per slot, as last computed (see
    /// [`Function::prefetch_per_slot`]).
    prefetch: u32,
}

/// Weight of the newest attempt in a function's moving mean.
const MEAN_WEIGHT: f64 = 0.1;

impl Function {
    /// A function named `name` no attempt of which was measured yet.
    pub fn new(name: String, config: &CoreConfig) -> Function {
        Function {
            name,
            tasks: 0,
            free: PriorityQueue::default(),
            waiting: PriorityQueue::default(),
            workers: Vec::new(),
            total_slots: 0,
            mean_ms: 0.0,
            measured: 0,
            prefetch: config.prefetch_unmeasured_per_slot,
        }
    }

    /// Live workers serving it, ascending.
    pub fn workers(&self) -> &[u32] {
        &self.workers
    }

    /// Sum of the slots of its live workers.
    pub fn total_slots(&self) -> u64 {
        self.total_slots
    }

    /// Whether nothing names it any more: no task and no live worker.
    pub fn is_unused(&self) -> bool {
        self.tasks == 0 && self.workers.is_empty()
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

    /// Adds one attempt's duration to the moving mean and recomputes the
    /// prefetch depth; returns whether the depth changed.
    pub fn record_duration(&mut self, duration_ms: u64, config: &CoreConfig) -> bool {
        let duration = duration_ms as f64;
        self.mean_ms = if self.measured == 0 {
            duration
        } else {
            self.mean_ms + (duration - self.mean_ms) * MEAN_WEIGHT
        };
        self.measured += 1;
        let before = self.prefetch;
        self.prefetch = self.compute_prefetch(config);
        self.prefetch != before
    }

    /// Tasks queued on a worker per slot beyond the ones running, to hide
    /// the round trip: about `prefetch_work_ms` of work, at most
    /// `prefetch_per_slot`, none once tasks take `prefetch_short_task_ms`
    /// (so that the tail of a job of long tasks stays balanced).
    pub fn prefetch_per_slot(&self) -> u32 {
        self.prefetch
    }

    fn compute_prefetch(&self, config: &CoreConfig) -> u32 {
        if self.measured == 0 {
            return config.prefetch_unmeasured_per_slot;
        }
        if config.prefetch_per_slot == 0 || self.mean_ms >= config.prefetch_short_task_ms as f64 {
            return 0;
        }
        // Attempts report whole milliseconds: a mean near zero means
        // "well under one", so the cap decides.
        let depth =
            (config.prefetch_work_ms as f64 / self.mean_ms.max(0.01)).min(f64::from(u32::MAX));
        let depth = (depth as u32).clamp(1, config.prefetch_per_slot);
        // Powers of two only: the mean moves a little with every attempt,
        // and every change of depth revisits the function's workers.
        1 << depth.ilog2()
    }

    /// Its mean attempt duration, once one was measured. A mean under a
    /// millisecond counts as unknown: at the clock's resolution it says
    /// nothing about how such tasks compare with fetching an input.
    pub fn mean_duration_ms(&self) -> Option<u64> {
        let mean = self.mean_ms as u64;
        (self.measured > 0 && mean > 0).then_some(mean)
    }
}
