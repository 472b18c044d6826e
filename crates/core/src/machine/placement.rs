//! Placement: which queue a task waits in, and which task a worker with
//! room takes next. The rules are explained in the crate documentation
//! ("Placement").

use super::Core;
use crate::change::Change;
use crate::locality::{fnv1a, rendezvous_draw, rendezvous_name, rendezvous_score};
use crate::queue::{PriorityQueue, QueueEntry};
use crate::task::{TaskState, TaskTable, NO_WORKER};
use crate::worker::{host_key, same_host, Worker};
use crate::{Command, Millis};
use quarry_proto::RunTask;
use std::cmp::Reverse;

/// The queue a picked task came from.
#[derive(Clone, Copy)]
enum Source {
    /// The worker's own local queue.
    Local,
    /// A function's queue of tasks without preference.
    Free(u32),
    /// A function's queue of tasks waiting for another worker.
    Waiting(u32),
}

/// How many expired waiting tasks of one function a pick examines for
/// stealing before it gives up.
const STEAL_PROBES: usize = 4;

/// Whether a queue entry still stands for its queued task.
fn is_live(tasks: &TaskTable, e: QueueEntry) -> bool {
    let task = &tasks[e.task as usize];
    task.state == TaskState::Queued && task.ticket == e.ticket
}

/// Makes `found` the best candidate if it outranks the current one.
fn offer(best: &mut Option<Candidate>, found: Option<(i32, QueueEntry)>, source: Source) {
    if let Some((priority, entry)) = found {
        let candidate = Candidate {
            priority,
            entry,
            source,
        };
        if best.as_ref().is_none_or(|b| candidate.rank() > b.rank()) {
            *best = Some(candidate);
        }
    }
}

/// The best task found so far for one worker.
struct Candidate {
    priority: i32,
    entry: QueueEntry,
    source: Source,
}

impl Candidate {
    /// Higher priority first; at equal priority the worker's own data, then
    /// the older task.
    fn rank(&self) -> (i32, bool, Reverse<u32>) {
        (
            self.priority,
            matches!(self.source, Source::Local),
            Reverse(self.entry.task),
        )
    }
}

/// The best rendezvous draw per worker weight (slot count). Comparing raw
/// draws within a weight avoids a logarithm per worker; only the few
/// per-weight winners get a real score.
#[derive(Default)]
struct BestDraws {
    /// `(weight, draw, worker)`, one per weight seen.
    by_weight: Vec<(u32, u64, u32)>,
}

impl BestDraws {
    fn offer(&mut self, weight: u32, draw: u64, worker: u32) {
        match self.by_weight.iter_mut().find(|(w, _, _)| *w == weight) {
            Some(best) if draw > best.1 => *best = (weight, draw, worker),
            Some(_) => {}
            None => self.by_weight.push((weight, draw, worker)),
        }
    }

    fn winner(&self) -> Option<u32> {
        let mut winner: Option<(f64, u32)> = None;
        for &(weight, draw, worker) in &self.by_weight {
            let score = rendezvous_score(draw, weight);
            if winner.is_none_or(|(best, _)| score > best) {
                winner = Some((score, worker));
            }
        }
        winner.map(|(_, worker)| worker)
    }
}

impl Core {
    /// Queues task `t` where it belongs: in its preferred worker's local
    /// queue (and its function's waiting queue, for stealing), or in its
    /// function's free queue. `front` is for tasks that already waited:
    /// they go ahead of their priority and may be stolen at once.
    pub(super) fn place(&mut self, t: u32, front: bool, now: Millis) {
        let preferred = self.preferred_worker(t);
        let task = &mut self.tasks[t as usize];
        // Placed again while queued (its preferred worker was lost): it
        // leaves the old local queue, whose entry the new ticket makes stale.
        let previous = std::mem::replace(&mut task.preferred, preferred.unwrap_or(NO_WORKER));
        if previous != NO_WORKER {
            self.workers[previous as usize].local_queued -= 1;
        }
        task.ticket = task.ticket.wrapping_add(1);
        task.timer = if front {
            now
        } else {
            now.saturating_add(self.config.locality_wait_ms)
        };
        let entry = QueueEntry {
            task: t,
            ticket: task.ticket,
        };
        let priority = task.spec.priority();
        let function = &mut self.functions[task.function as usize];
        let push = |queue: &mut PriorityQueue| {
            if front {
                queue.push_front(priority, entry)
            } else {
                queue.push_back(priority, entry)
            }
        };
        match preferred {
            Some(w) => {
                let worker = &mut self.workers[w as usize];
                push(&mut worker.local);
                worker.local_queued += 1;
                push(&mut function.waiting);
            }
            None => push(&mut function.free),
        }
        self.dispatch_pending = true;
    }

    /// The worker a task with inputs should run on: the one caching most of
    /// its input bytes, else a worker on a host holding a replica of its
    /// data, else the rendezvous owner of its largest input. Only live
    /// workers serving its function count.
    fn preferred_worker(&mut self, t: u32) -> Option<u32> {
        let task = &self.tasks[t as usize];
        let function = &self.functions[task.function as usize];
        if task.spec.input_count() == 0 || function.workers().is_empty() {
            return None;
        }
        let (inputs, replica_hosts) = task.placement_inputs();
        let cached = self
            .locality
            .cached_bytes(&inputs, |w| function.is_served_by(w));
        // Most bytes; among equals the less loaded worker, then the older.
        let rank = |&&(w, bytes): &&(u32, u64)| {
            (bytes, Reverse(self.workers[w as usize].load), Reverse(w))
        };
        let most_cached = cached
            .iter()
            .filter(|&&(_, bytes)| bytes > 0)
            .max_by_key(rank);
        match most_cached {
            Some(&(w, _)) => Some(w),
            None => self
                .replica_host_worker(t, &inputs, &replica_hosts)
                .or_else(|| self.rendezvous_owner(t)),
        }
    }

    /// Among the workers serving the task's function on one of its replica
    /// hosts, the one with the shortest backlog per slot (assigned, running
    /// and locally queued tasks); among equals the rendezvous winner for
    /// its largest input, so that several workers on one host share its
    /// blocks evenly and the same block goes to the same worker next time.
    fn replica_host_worker(
        &self,
        t: u32,
        inputs: &[quarry_proto::DataRef],
        replica_hosts: &[String],
    ) -> Option<u32> {
        if replica_hosts.is_empty() {
            return None;
        }
        let task = &self.tasks[t as usize];
        let largest = inputs.iter().rev().max_by_key(|input| input.read_len())?;
        let object_hash = fnv1a(&largest.object_key());
        let function = &self.functions[task.function as usize];
        let mut candidates: Vec<u32> = replica_hosts
            .iter()
            .filter_map(|replica| self.workers_by_host.get(&host_key(replica)))
            .flatten()
            .copied()
            .filter(|&w| {
                let host = &self.workers[w as usize].host;
                function.is_served_by(w)
                    && replica_hosts.iter().any(|replica| same_host(replica, host))
            })
            .collect();
        // A worker on two of the replica hosts' names is one candidate.
        candidates.sort_unstable();
        candidates.dedup();
        candidates.into_iter().min_by_key(|&w| {
            let worker = &self.workers[w as usize];
            let backlog = u64::from(worker.load) + u64::from(worker.local_queued);
            // Per slot, in millislots so that integer division keeps order.
            let per_slot = backlog * 1000 / u64::from(worker.slots.max(1));
            (per_slot, Reverse(rendezvous_draw(object_hash, worker.key)))
        })
    }

    /// The highest-scoring worker for the task's largest input under the
    /// job's load cap: no worker gets more than `owner_load_cap` times its
    /// slot-weighted share of the job's owner-routed tasks.
    fn rendezvous_owner(&mut self, t: u32) -> Option<u32> {
        let task = &self.tasks[t as usize];
        let inputs = task.inputs();
        let largest = inputs.iter().rev().max_by_key(|input| input.read_len())?;
        let object_hash = fnv1a(&rendezvous_name(largest));
        let function = &self.functions[task.function as usize];
        let job = &mut self.jobs[task.job as usize];
        // A worker is under the cap while its count is below
        // `owner_load_cap × share`, its slot-weighted share of the job's
        // owner-routed tasks counting this one (for an integer count that is
        // the same as below the ceiling).
        let cap_per_slot = self.config.owner_load_cap * (job.owner_routed_total + 1) as f64
            / function.total_slots() as f64;
        job.owner_routed.resize(self.workers.len(), 0);
        let mut under_cap = BestDraws::default();
        let mut any = BestDraws::default();
        for &w in function.workers() {
            let worker = &self.workers[w as usize];
            let draw = rendezvous_draw(object_hash, worker.key);
            if (job.owner_routed[w as usize] as f64) < cap_per_slot * f64::from(worker.slots) {
                under_cap.offer(worker.slots, draw, w);
            }
            any.offer(worker.slots, draw, w);
        }
        // With a cap below 1 every worker can be full; the owner then takes it.
        let owner = under_cap.winner().or_else(|| any.winner())?;
        job.owner_routed[owner as usize] += 1;
        job.owner_routed_total += 1;
        Some(owner)
    }

    /// Slots a worker may fill with tasks of function `f`: its slots, plus
    /// `f`'s prefetch depth for each.
    fn room_for(&self, w: u32, f: u32) -> u32 {
        let worker = &self.workers[w as usize];
        let prefetch = self.functions[f as usize].prefetch_per_slot();
        worker
            .slots
            .saturating_add(prefetch.saturating_mul(worker.slots))
    }

    /// Keeps `open_workers` in step with a worker's load: it is open while
    /// it has room for a task of at least one of its functions. Keeping
    /// full workers out matters: every dispatch visits each open worker.
    pub(super) fn refresh_open(&mut self, w: u32) {
        let worker = &self.workers[w as usize];
        let has_room = worker.live
            && !worker.stalled
            && !worker.draining
            && worker
                .functions
                .iter()
                .any(|&f| worker.load < self.room_for(w, f));
        if has_room {
            self.open_workers.insert(w);
        } else {
            self.open_workers.remove(&w);
        }
    }

    /// The next task worker `w` should take, removed from its queue, or
    /// `None` if the best candidate does not fit. `slot_limit` caps the
    /// worker's load below its prefetch depth (to spread work first).
    ///
    /// Candidates: the head of the worker's local queue, and for each
    /// function it serves the head of the free queue and the oldest waiting
    /// task whose locality wait is over and that is worth stealing. Only
    /// heads (and at most [`STEAL_PROBES`] waiting tasks) are looked at, so
    /// a pick costs O(functions × priorities), not O(queued tasks).
    fn pick(&mut self, w: u32, slot_limit: Option<u32>, now: Millis) -> Option<u32> {
        if slot_limit.is_some_and(|limit| self.workers[w as usize].load >= limit) {
            return None;
        }
        let mut best: Option<Candidate> = None;
        let tasks = &self.tasks;
        let live = |e: QueueEntry| is_live(tasks, e);
        let local = self.workers[w as usize].local.head(live);
        offer(&mut best, local, Source::Local);
        for i in 0..self.workers[w as usize].functions.len() {
            let f = self.workers[w as usize].functions[i];
            let tasks = &self.tasks;
            let free = self.functions[f as usize].free.head(|e| is_live(tasks, e));
            offer(&mut best, free, Source::Free(f));
            let stealable = self.stealable_head(f, w, best.as_ref(), now);
            offer(&mut best, stealable, Source::Waiting(f));
        }
        let best = best?;

        let task = &self.tasks[best.entry.task as usize];
        let worker = &self.workers[w as usize];
        let mut room = self.room_for(w, task.function);
        if let Some(limit) = slot_limit {
            room = room.min(limit);
        }
        if worker.load + task.occupancy(worker.slots) > room {
            return None;
        }
        let queue = match best.source {
            Source::Local => &mut self.workers[w as usize].local,
            Source::Free(f) => &mut self.functions[f as usize].free,
            Source::Waiting(f) => &mut self.functions[f as usize].waiting,
        };
        queue.pop_front(best.priority);
        Some(best.entry.task)
    }

    /// The oldest waiting task of function `f` whose locality wait is over
    /// and that worker `thief` should take, if it would outrank `best`.
    ///
    /// A waiting task not worth stealing (its preferred worker will get to
    /// it soon enough) goes to the back of its priority level, so that
    /// tasks behind it, preferring busier workers, are reached within a
    /// few picks: one relaxed owner must not hide a backlogged one. (Behind
    /// tasks still in their wait it is looked at again once theirs ends.)
    fn stealable_head(
        &mut self,
        f: u32,
        thief: u32,
        best: Option<&Candidate>,
        now: Millis,
    ) -> Option<(i32, QueueEntry)> {
        for _ in 0..STEAL_PROBES {
            let tasks = &self.tasks;
            let (priority, entry) = self.functions[f as usize].waiting.first_ready(
                |e| is_live(tasks, e),
                |e| tasks[e.task as usize].timer <= now,
            )?;
            let candidate = Candidate {
                priority,
                entry,
                source: Source::Waiting(f),
            };
            if best.is_some_and(|b| b.rank() >= candidate.rank()) {
                return None;
            }
            if self.worth_stealing(entry.task, thief, now) {
                return Some((priority, entry));
            }
            let waiting = &mut self.functions[f as usize].waiting;
            waiting.pop_front(priority);
            waiting.push_back(priority, entry);
        }
        None
    }

    /// Whether worker `thief` should run queued task `t` instead of the
    /// worker it prefers: only if the thief could fetch the inputs it lacks
    /// and run the task before the preferred worker would finish the rest of
    /// its backlog (its assigned tasks and the other tasks queued for it).
    ///
    /// Then the steal shortens the preferred worker's tail by a whole task
    /// and the thief still finishes first. A steal that would only win part
    /// of a task is not made: at most one task's time is lost to keep the
    /// data where it is cached (the tail of a pass over cached shards then
    /// reads nothing from the store). A long backlog is stolen from at once,
    /// so a locality preference never leaves the rest of the cluster idle.
    ///
    /// Durations are the functions' mean attempts. Before a mean is known,
    /// the same rule is applied in task counts, with fetches taken as free.
    fn worth_stealing(&self, t: u32, thief: u32, now: Millis) -> bool {
        let task = &self.tasks[t as usize];
        let owner = task.preferred;
        if owner == NO_WORKER || owner == thief {
            return true;
        }
        let (owner, thief_worker) = (&self.workers[owner as usize], &self.workers[thief as usize]);
        let others_queued = owner.local_queued.saturating_sub(1);
        let queued_slots = f64::from(others_queued) * f64::from(task.occupancy(owner.slots));
        let (thief_done, owner_done) = match self.functions[task.function as usize]
            .mean_duration_ms()
        {
            None => (
                f64::from(thief_worker.load) / f64::from(thief_worker.slots) + 1.0,
                (f64::from(owner.load) + queued_slots) / f64::from(owner.slots),
            ),
            Some(mean) => {
                let mean_ms = mean as f64;
                let fetch_ms = self.missing_input_bytes(t, thief) as f64 * 1000.0
                    / self.config.fetch_bytes_per_second.max(1) as f64;
                (
                    self.assigned_work_ms(thief_worker, mean, now) / f64::from(thief_worker.slots)
                        + fetch_ms
                        + mean_ms,
                    (self.assigned_work_ms(owner, mean, now) + queued_slots * mean_ms)
                        / f64::from(owner.slots),
                )
            }
        };
        thief_done < owner_done
    }

    /// Input bytes of task `t` that worker `w` does not cache.
    fn missing_input_bytes(&self, t: u32, w: u32) -> u64 {
        let inputs = self.tasks[t as usize].inputs();
        let total: u64 = inputs.iter().map(|input| input.read_len()).sum();
        let cached: u64 = self
            .locality
            .cached_bytes(&inputs, |holder| holder == w)
            .iter()
            .map(|&(_, bytes)| bytes)
            .sum();
        total.saturating_sub(cached)
    }

    /// Slot-milliseconds of work a worker still has in its assigned and
    /// running tasks, by their functions' mean attempts (`fallback_ms` for a
    /// function without one). A running task past its mean is expected to
    /// need as long again as it has overrun: a task stuck on its worker
    /// lets the work queued behind it be stolen.
    fn assigned_work_ms(&self, worker: &Worker, fallback_ms: u64, now: Millis) -> f64 {
        worker
            .tasks
            .iter()
            .map(|&u| {
                let task = &self.tasks[u as usize];
                let mean = self.functions[task.function as usize]
                    .mean_duration_ms()
                    .unwrap_or(fallback_ms);
                let remaining = if task.state == TaskState::Running {
                    mean.abs_diff(now.saturating_sub(task.timer))
                } else {
                    mean
                };
                remaining as f64 * f64::from(task.occupancy(worker.slots))
            })
            .sum()
    }

    /// Sends attempt `attempt + 1` of task `t` to worker `w` (after the job
    /// context, the first time the worker sees the job).
    fn assign(&mut self, w: u32, t: u32, now: Millis, out: &mut Vec<Command>) {
        let is_local = self.attempt_is_local(w, t);
        if self.workers[w as usize].tasks.is_empty() {
            self.workers[w as usize].progress_at = now;
        }
        self.set_state(t, TaskState::Assigned);
        self.set_worker(t, w);
        let task = &mut self.tasks[t as usize];
        let worker = &mut self.workers[w as usize];
        task.attempt += 1;
        task.timer = now;
        if self.config.record_changes {
            out.push(Command::Record(Change::Assigned {
                task: task.spec.id(),
                attempt: task.attempt,
                local: is_local,
            }));
        }
        worker.load += task.occupancy(worker.slots);
        worker.tasks.insert(t);
        let job = &mut self.jobs[task.job as usize];
        match is_local {
            Some(true) => job.tasks_local += 1,
            Some(false) => job.tasks_remote += 1,
            None => {}
        }
        if job.mark_sent_to(w) {
            out.push(Command::SendJob {
                worker: worker.id,
                spec: job.spec.clone(),
            });
        }
        out.push(Command::Run {
            worker: worker.id,
            run: RunTask {
                job: job.spec.id,
                task: task.spec.clone(),
                attempt: task.attempt,
            },
        });
        self.refresh_open(w);
    }

    /// Whether running task `t` on worker `w` is local: `w` caches the most
    /// input bytes of all workers, and more than none. `None` for tasks
    /// without inputs, which count neither way.
    fn attempt_is_local(&self, w: u32, t: u32) -> Option<bool> {
        let task = &self.tasks[t as usize];
        if task.spec.input_count() == 0 {
            return None;
        }
        let cached = self.locality.cached_bytes(&task.inputs(), |_| true);
        let most = cached.iter().map(|&(_, b)| b).max().unwrap_or(0);
        let here = cached
            .iter()
            .find(|&&(holder, _)| holder == w)
            .map_or(0, |&(_, b)| b);
        Some(here > 0 && here == most)
    }

    /// Gives one worker as much work as it has room for.
    pub(super) fn fill_worker(&mut self, w: u32, now: Millis, out: &mut Vec<Command>) {
        // A full worker is not open: skip looking at the queues at all.
        while self.open_workers.contains(&w) {
            let Some(t) = self.pick(w, None, now) else {
                break;
            };
            self.assign(w, t, now, out);
        }
    }

    /// Offers queued tasks to every open worker, one task per worker per
    /// round so that work spreads evenly: first up to each worker's slots,
    /// then into the prefetch queues.
    pub(super) fn dispatch(&mut self, now: Millis, out: &mut Vec<Command>) {
        self.dispatch_pending = false;
        if self.queued == 0 {
            return;
        }
        let open: Vec<u32> = self.open_workers.iter().copied().collect();
        for spread_to_slots in [true, false] {
            let mut active = open.clone();
            while !active.is_empty() && self.queued > 0 {
                active.retain(|&w| {
                    if !self.open_workers.contains(&w) {
                        return false;
                    }
                    let limit = spread_to_slots.then(|| self.workers[w as usize].slots);
                    match self.pick(w, limit, now) {
                        Some(t) => {
                            self.assign(w, t, now, out);
                            true
                        }
                        None => false,
                    }
                });
            }
        }
    }
}
