//! The per-task record: kept compact because a million of them may wait.

use crate::Millis;
use quarry_proto::{DataRef, EncodedTask, TaskOutcome, TaskStats};

/// Marks the absence of a worker: no attempt was assigned yet, or a queued
/// task has no preferred worker.
pub(crate) const NO_WORKER: u32 = u32::MAX;

/// Where a task is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TaskState {
    /// Waiting for a worker.
    Queued,
    /// Sent to a worker, waiting in its prefetch queue.
    Assigned,
    /// The worker reported it started.
    Running,
    /// Succeeded.
    Done,
    /// Failed beyond its retries (or could not be retried).
    Failed,
    /// Cancelled by a client, or because its job stopped.
    Cancelled,
}

impl TaskState {
    /// The word clients see in [`quarry_proto::TaskStatus::state`].
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Assigned => "assigned",
            TaskState::Running => "running",
            TaskState::Done => "done",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
        }
    }

    /// Whether the task reached its end (and its `TaskDone` was sent).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskState::Done | TaskState::Failed | TaskState::Cancelled
        )
    }

    /// Whether a worker holds the task.
    pub fn is_on_worker(self) -> bool {
        matches!(self, TaskState::Assigned | TaskState::Running)
    }
}

/// What the last finished attempt left behind; boxed and absent until then,
/// so queued tasks stay small.
#[derive(Debug, Default)]
pub(crate) struct AttemptRecord {
    /// The final outcome, once the task is final.
    pub outcome: Option<TaskOutcome>,
    /// Output URLs of the last attempt.
    pub outputs: Vec<String>,
    /// Measurements of the last attempt.
    pub stats: TaskStats,
}

/// One task.
#[derive(Debug)]
pub(crate) struct Task {
    /// As submitted, still encoded (a queued task must stay small);
    /// shared with every `Run` command.
    pub spec: EncodedTask,
    /// While queued: when workers other than its preferred one may take
    /// it (its locality wait ends). While on a worker: when its current
    /// attempt was assigned or started running. One field serves both
    /// because a task is never in both states, and a million task records
    /// must stay within 72 bytes.
    pub timer: Millis,
    /// Results of the last finished attempt, if any and not released.
    pub record: Option<Box<AttemptRecord>>,
    /// Index of its job.
    pub job: u32,
    /// Index of its function.
    pub function: u32,
    /// The worker of the current (or last) attempt, or [`NO_WORKER`].
    pub worker: u32,
    /// While queued: the worker whose local queue it waits in, or
    /// [`NO_WORKER`] when it has no preference.
    pub preferred: u32,
    /// Attempts assigned so far; the current attempt's number.
    pub attempt: u32,
    /// Bumped on every enqueue; queue entries with an older ticket are
    /// stale.
    pub ticket: u32,
    /// Attempts that ended in an error.
    pub errors: u32,
    /// Times its worker was lost while holding it.
    pub worker_losses: u32,
    /// Its state.
    pub state: TaskState,
    /// The client dropped interest in its result: keep none.
    pub released: bool,
}

impl Task {
    /// A new task, not yet queued.
    pub fn new(spec: EncodedTask, job: u32, function: u32) -> Task {
        Task {
            spec,
            timer: 0,
            record: None,
            job,
            function,
            worker: NO_WORKER,
            preferred: NO_WORKER,
            attempt: 0,
            ticket: 0,
            errors: 0,
            worker_losses: 0,
            state: TaskState::Queued,
            released: false,
        }
    }

    /// Worker slots one attempt occupies on a worker with `worker_slots`:
    /// `cpus` (0 counts as 1), capped at the worker's size so that a task
    /// asking for more than any worker has still runs, alone.
    pub fn occupancy(&self, worker_slots: u32) -> u32 {
        self.spec.cpus().max(1).min(worker_slots)
    }

    /// Its inputs, decoded from the stored spec (which only tasks that
    /// have inputs pay for).
    pub fn inputs(&self) -> Vec<DataRef> {
        self.placement_inputs().0
    }

    /// Its inputs and the hosts holding their data (replica hosts), decoded
    /// together from the stored spec; both empty for a task without inputs.
    pub fn placement_inputs(&self) -> (Vec<DataRef>, Vec<String>) {
        if self.spec.input_count() == 0 {
            return (Vec::new(), Vec::new());
        }
        self.spec
            .decode()
            .map(|spec| (spec.inputs, spec.replica_hosts))
            .unwrap_or_default()
    }
}

/// Tasks per chunk of a [`TaskTable`].
const CHUNK: usize = 4096;

/// All tasks, addressed by index, stored in fixed-size chunks: growing
/// never copies a million records, and never leaves half a doubled vector
/// unused. Slots of dropped tasks are reused, so memory stays flat however
/// many jobs come and go.
#[derive(Debug)]
pub(crate) struct TaskTable {
    chunks: Vec<Vec<Task>>,
    /// Slots of removed tasks, reused first.
    free: Vec<u32>,
    /// What a free slot holds: a tiny shared spec, so a freed task keeps
    /// no memory of its own.
    vacant_spec: EncodedTask,
}

impl Default for TaskTable {
    fn default() -> Self {
        let empty = quarry_proto::TaskSpec::new(quarry_proto::TaskId(0), "", Vec::new());
        TaskTable {
            chunks: Vec::new(),
            free: Vec::new(),
            vacant_spec: EncodedTask::encode(&empty).expect("an empty task always encodes"),
        }
    }
}

impl TaskTable {
    /// How many slots it has, in use or free.
    pub fn slots(&self) -> usize {
        self.chunks
            .last()
            .map_or(0, |last| (self.chunks.len() - 1) * CHUNK + last.len())
    }

    /// How many tasks it holds.
    pub fn len(&self) -> usize {
        self.slots() - self.free.len()
    }

    /// Adds a task, in a free slot if there is one; returns its index.
    ///
    /// A reused slot keeps counting its enqueue tickets, so that queue
    /// entries left behind by the slot's earlier task stay stale.
    pub fn push(&mut self, mut task: Task) -> u32 {
        if let Some(t) = self.free.pop() {
            let slot = &mut self[t as usize];
            task.ticket = slot.ticket;
            *slot = task;
            return t;
        }
        let t = self.slots() as u32;
        match self.chunks.last_mut() {
            Some(last) if last.len() < CHUNK => last.push(task),
            _ => {
                let mut chunk = Vec::with_capacity(CHUNK);
                chunk.push(task);
                self.chunks.push(chunk);
            }
        }
        t
    }

    /// Frees a task's slot. What it held is dropped; the slot reads as a
    /// cancelled task of no job until it is reused.
    pub fn remove(&mut self, t: u32) {
        let vacant = Task {
            state: TaskState::Cancelled,
            ..Task::new(self.vacant_spec.clone(), u32::MAX, u32::MAX)
        };
        let slot = &mut self[t as usize];
        let ticket = slot.ticket;
        *slot = Task { ticket, ..vacant };
        self.free.push(t);
    }
}

impl std::ops::Index<usize> for TaskTable {
    type Output = Task;

    fn index(&self, t: usize) -> &Task {
        &self.chunks[t / CHUNK][t % CHUNK]
    }
}

impl std::ops::IndexMut<usize> for TaskTable {
    fn index_mut(&mut self, t: usize) -> &mut Task {
        &mut self.chunks[t / CHUNK][t % CHUNK]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_table_indexes_across_chunks() {
        let spec = EncodedTask::encode(&quarry_proto::TaskSpec::new(
            quarry_proto::TaskId(0),
            "f",
            Vec::new(),
        ))
        .unwrap();
        let mut table = TaskTable::default();
        for n in 0..(2 * CHUNK + 3) as u32 {
            assert_eq!(table.push(Task::new(spec.clone(), n, 0)), n);
        }
        assert_eq!(table.len(), 2 * CHUNK + 3);
        assert_eq!(table.slots(), 2 * CHUNK + 3);
        table[CHUNK + 1].attempt = 7;
        assert_eq!(
            (table[CHUNK + 1].job, table[CHUNK + 1].attempt),
            (CHUNK as u32 + 1, 7)
        );
        assert_eq!(table[2 * CHUNK + 2].job, 2 * CHUNK as u32 + 2);
    }

    #[test]
    fn freed_slots_are_reused_and_keep_their_tickets() {
        let spec = EncodedTask::encode(&quarry_proto::TaskSpec::new(
            quarry_proto::TaskId(9),
            "f",
            Vec::new(),
        ))
        .unwrap();
        let mut table = TaskTable::default();
        let a = table.push(Task::new(spec.clone(), 0, 0));
        let b = table.push(Task::new(spec.clone(), 0, 0));
        table[a as usize].ticket = 41;
        table.remove(a);
        assert_eq!(table.len(), 1);
        assert!(table[a as usize].state.is_final());
        let c = table.push(Task::new(spec, 7, 0));
        assert_eq!(c, a, "the free slot is reused");
        assert_eq!(
            table[c as usize].ticket, 41,
            "older queue entries stay stale"
        );
        assert_eq!((table.len(), table.slots()), (2, 2));
        assert_ne!(b, c);
    }

    #[test]
    fn task_record_stays_small() {
        // A million queued tasks must stay within a few hundred megabytes:
        // the record, its encoded spec and the indexes share that budget.
        assert!(std::mem::size_of::<Task>() <= 72);
    }
}
