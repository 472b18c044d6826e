//! The scheduler core: a pure state machine.
//!
//! It owns jobs, tasks and their states (queued, assigned, running, done,
//! failed, cancelled), workers and their slots, the locality index built from
//! workers' cache inventories, placement, prefetch, retries, heartbeat
//! timeouts and cancellation.
//!
//! It must not touch sockets, threads, files or clocks: events come in
//! through [`Core::handle`] with the time they happened, and commands come
//! out for the network shell (`quarry-scheduler`) to carry out. That is what
//! lets a unit test drive it with thousands of simulated workers.
//!
//! # Placement
//!
//! A task only ever goes to a live worker that serves its `function`; if
//! none does, it stays queued until one joins. Among the tasks a worker
//! could take, higher `priority` goes first and, within a priority, the
//! older task (FIFO). A task takes `cpus` slots (0 counts as 1, and a task
//! asking for more slots than a worker has takes that whole worker).
//!
//! When a task is queued, it gets a *preferred worker* if it has inputs
//! (broadcast inputs do not count: every worker reads those):
//!
//! 1. **Cached data.** The worker whose cache holds the most of the task's
//!    input bytes ([`quarry_proto::DataRef::read_len`] of each input whose
//!    [`quarry_proto::DataRef::object_key`] it reported in its inventory or
//!    cache deltas).
//! 2. **Replica host.** If no worker caches any of it and the task names
//!    hosts holding its data ([`quarry_proto::TaskSpec::replica_hosts`]:
//!    for HDFS, the DataNodes with replicas of its blocks), a worker on
//!    one of those hosts (as its Hello reported; a short name matches a
//!    full one): the one with the shortest backlog per slot, among equals
//!    the rendezvous winner. So the first pass over HDFS reads from the
//!    local DataNode; later passes find the data in a cache (rule 1).
//! 3. **Rendezvous owner.** If no worker caches any of it (and none is on a
//!    replica host), the owner of the
//!    task's largest input by weighted rendezvous hashing: FNV-1a of the
//!    object key mixed with FNV-1a of each worker's *name*, weighted by slots,
//!    highest score wins. Names rather than ids make the same shard land on
//!    the same worker across jobs and restarts, so it is cached there next
//!    time. A worker takes at most `ceil(owner_load_cap × its slot-weighted
//!    share)` of a job's owner-routed tasks; beyond that the next-ranked
//!    worker owns the task (consistent hashing with bounded loads).
//!
//! A task with a preferred worker waits in that worker's local queue, which
//! the worker serves first at equal priority. **Locality wait:** only after
//! `locality_wait_ms` (counted per task from when it was queued) may another
//! worker take it, and then only if that pays off: **stealing rule.** A
//! worker (the thief) takes a task away from its preferred worker only if
//! it could fetch the input bytes it does not cache (at
//! `fetch_bytes_per_second`) and run the task before the preferred worker
//! would finish the rest of its backlog: its assigned and running tasks and
//! the other tasks queued for it. Durations are the function's mean attempt
//! (a running task counts what is left of its mean; past its mean, as long
//! again as it has overrun, so a stuck worker's queue gets stolen). Until a
//! mean is known the same rule is applied in task counts with free fetches:
//! steal when the preferred worker has more than one round of other work
//! per slot than the thief. Such a steal shortens the preferred worker's
//! tail by a whole task while the thief still finishes first; steals that
//! would win less than one task's time are not made, so the tail of a pass
//! over cached data stays where the data is. A waiting task that is not
//! worth stealing goes to the back of its priority in the waiting queue,
//! so that one worker about to reach its own tasks never hides another
//! worker's long backlog. Tasks without inputs, or whose function has no
//! worker yet, have no preference and go to any worker with room, spread
//! one per worker per round.
//!
//! **No idle cluster behind a busy favourite** (the SPARK-18886 trap): the
//! wait is per task and never reset by other tasks launching locally, every
//! tick offers expired tasks to every worker with room, and a long backlog
//! always passes the stealing rule. So when thousands of tasks all prefer
//! one saturated worker, the rest of the cluster is busy one tick after the
//! wait ends. A task that comes back after a failure or a lost worker has
//! already waited: it goes to the front of its priority and may be stolen
//! at once (by the rule above).
//!
//! **Prefetch:** a worker holds at most `slots × (1 + depth)` slots' worth
//! of assigned-or-running tasks of a function. The depth follows the
//! function's moving mean attempt time: about `prefetch_work_ms` of work
//! per slot (rounded down to a power of two, at most `prefetch_per_slot`),
//! `prefetch_unmeasured_per_slot` before any attempt was measured, and 0
//! once attempts take `prefetch_short_task_ms`, so that the tail of a job
//! is not stuck in one worker's queue. Queued tasks stay encoded
//! ([`quarry_proto::EncodedTask`]) so that a million of them fit in a few
//! hundred megabytes.
//!
//! Placement metrics: an attempt counts as *local* when its worker caches
//! the most input bytes of any worker, and more than none; otherwise remote.
//! Tasks without inputs count as neither.
//!
//! Queues are per function and per priority `VecDeque`s of 8-byte entries
//! with lazy deletion, so cancelling, assigning and stealing never scan the
//! queue: a million queued tasks cost about the same per event as ten.
//!
//! # Requests, durability and bounded state
//!
//! Every client request event carries its [`quarry_proto::RequestId`] and
//! is answered with exactly one [`Command::Accepted`] or
//! [`Command::Refused`]; requests are idempotent, so a client may resend
//! them after reconnecting.
//!
//! With [`CoreConfig::record_changes`], every durable change (a job
//! opened, sealed or stopped, tasks added, an attempt assigned or ended, a
//! task cancelled, a job finished or dropped) comes out as a
//! [`Command::Record`] holding a [`Change`], for the shell's journal.
//! [`Core::replay`] applies them to an empty core, and
//! [`Core::finish_replay`] queues what was in flight again, with the next
//! attempt number; [`Core::snapshot`] writes the current state as the
//! fewest changes that rebuild it (a compacted journal).
//!
//! Finished jobs are dropped after their [`Retention`] (on the tick);
//! their task slots, and the records of departed workers no task names,
//! are reused, so memory follows what is kept, not what was ever seen.
//! [`Core::job_updates`] tells the shell what changed since it last asked,
//! in proportion to the unfinished jobs and those that finished or were
//! dropped since.

#![warn(missing_docs)]

mod api;
mod change;
mod job;
mod locality;
mod machine;
mod queue;
mod task;
mod worker;

pub use api::{Command, CoreConfig, Event, Millis, Retention};
pub use change::{AttemptEnd, Change, FinalState, JobSnapshot, TaskSnapshot};
pub use machine::{Core, JobUpdates, Restored};
