//! Placement rules: priority and FIFO order, function routing, slots and
//! prefetch, data locality, rendezvous ownership, the load cap, the
//! locality wait and work stealing.

mod common;

use common::*;
use quarry_core::{Command, CoreConfig, Event};
use quarry_proto::{CacheEntry, JobInfo, TaskId, TaskSpec, WorkerId};
use std::collections::{BTreeMap, BTreeSet};

fn with_inputs(mut spec: TaskSpec, inputs: &[&quarry_proto::DataRef]) -> TaskSpec {
    spec.inputs = inputs.iter().map(|d| (*d).clone()).collect();
    spec
}

fn info(h: &Harness) -> JobInfo {
    h.core.job_info(job_id(1, 0), h.now).unwrap()
}

/// Runs one task at a time on worker 1 and returns the order of tasks.
fn drain_order(h: &mut Harness, first: Vec<(u32, TaskId, u32)>) -> Vec<TaskId> {
    let mut order = Vec::new();
    let mut next = first;
    while let Some(&(w, t, a)) = next.first() {
        order.push(t);
        next = runs(&h.succeed(w, t, a));
    }
    order
}

#[test]
fn fifo_within_one_priority() {
    let mut h = Harness::new(no_prefetch());
    h.open(1, 0);
    h.submit(1, 0, (0..5).map(|n| task(1, n, "f")).collect());
    let first = runs(&h.join(1, 1, &["f"]));
    let order = drain_order(&mut h, first);
    assert_eq!(order, (0..5).map(|n| task_id(1, n)).collect::<Vec<_>>());
}

#[test]
fn higher_priority_first() {
    let mut h = Harness::new(no_prefetch());
    h.open(1, 0);
    let priorities = [0, 0, 5, -1, 5];
    let tasks = priorities
        .iter()
        .enumerate()
        .map(|(n, &p)| TaskSpec {
            priority: p,
            ..task(1, n as u64, "f")
        })
        .collect();
    h.submit(1, 0, tasks);
    let first = runs(&h.join(1, 1, &["f"]));
    let order = drain_order(&mut h, first);
    let expected: Vec<_> = [2, 4, 0, 1, 3].iter().map(|&n| task_id(1, n)).collect();
    assert_eq!(order, expected);
}

#[test]
fn tasks_go_only_to_workers_serving_their_function() {
    let mut h = Harness::new(no_prefetch());
    h.join(1, 4, &["g"]);
    h.open(1, 0);
    let out = h.submit(1, 0, vec![task(1, 0, "f"), task(1, 1, "g")]);
    assert_eq!(runs(&out), vec![(1, task_id(1, 1), 1)]);
    assert_eq!(h.state_of(task_id(1, 0)), "queued");
    let out = h.join(2, 1, &["f", "h"]);
    assert_eq!(runs(&out), vec![(2, task_id(1, 0), 1)]);
}

#[test]
fn cpus_take_slots() {
    let mut h = Harness::new(no_prefetch());
    h.join(1, 4, &["f"]);
    h.open(1, 0);
    let cpus = [2, 2, 2, 0, 8];
    let tasks = cpus
        .iter()
        .enumerate()
        .map(|(n, &c)| TaskSpec {
            cpus: c,
            ..task(1, n as u64, "f")
        })
        .collect();
    let out = h.submit(1, 0, tasks);
    assert_eq!(runs(&out).len(), 2, "two 2-cpu tasks fill 4 slots");
    let out = h.succeed(1, task_id(1, 0), 1);
    // Task 2 (2 cpus) and task 3 (0 counts as 1) fit; task 4 waits.
    assert_eq!(
        runs(&out).iter().map(|r| r.1).collect::<Vec<_>>(),
        vec![task_id(1, 2)]
    );
    let out = h.succeed(1, task_id(1, 1), 1);
    assert_eq!(
        runs(&out).iter().map(|r| r.1).collect::<Vec<_>>(),
        vec![task_id(1, 3)]
    );
    h.succeed(1, task_id(1, 2), 1);
    // 8 cpus on a 4-slot worker: runs alone, once the worker is empty.
    let out = h.succeed(1, task_id(1, 3), 1);
    assert_eq!(runs(&out)[0].1, task_id(1, 4));
}

#[test]
fn prefetch_while_tasks_are_short_none_once_they_are_long() {
    let config = CoreConfig {
        prefetch_per_slot: 2,
        prefetch_unmeasured_per_slot: 2,
        prefetch_short_task_ms: 20,
        ..CoreConfig::default()
    };
    let mut h = Harness::new(config);
    h.join(1, 2, &["f"]);
    h.open(1, 0);
    let out = h.submit(1, 0, (0..20).map(|n| task(1, n, "f")).collect());
    assert_eq!(runs(&out).len(), 6, "2 slots + 2 × 2 prefetch");

    // A 100 ms attempt makes the function long: no more prefetch.
    h.start(1, task_id(1, 0), 1);
    h.now = 100;
    assert!(runs(&h.succeed(1, task_id(1, 0), 1)).is_empty());
    for n in 1..=3 {
        assert!(runs(&h.succeed(1, task_id(1, n), 1)).is_empty());
    }
    // Two left on the worker: one more finishes, one more is sent.
    assert_eq!(runs(&h.succeed(1, task_id(1, 4), 1)).len(), 1);
}

/// Runs `rounds` of the tasks worker `w` holds (`held`, kept up to date),
/// each attempt taking `ms`; returns how many it held at most at once.
fn run_held(h: &mut Harness, w: u32, held: &mut Vec<TaskId>, ms: u64, rounds: usize) -> usize {
    let mut most = held.len();
    for _ in 0..rounds {
        let Some(t) = held.pop() else { break };
        h.start(w, t, 1);
        h.now += ms;
        held.extend(runs(&h.succeed(w, t, 1)).into_iter().map(|r| r.1));
        most = most.max(held.len());
    }
    most
}

#[test]
fn prefetch_depth_follows_the_moving_mean_of_attempts() {
    let config = CoreConfig {
        prefetch_per_slot: 256,
        prefetch_work_ms: 50,
        prefetch_unmeasured_per_slot: 4,
        prefetch_short_task_ms: 20,
        ..CoreConfig::default()
    };
    let mut h = Harness::new(config);
    h.join(1, 1, &["f"]);
    h.open(1, 0);
    let out = h.submit(1, 0, (0..5_000).map(|n| task(1, n, "f")).collect());
    let mut held: Vec<TaskId> = runs(&out).into_iter().map(|r| r.1).collect();
    assert_eq!(held.len(), 5, "1 slot + 4 before anything was measured");

    // 10 ms attempts: about 50 ms of work queued: 4 tasks (a power of two).
    assert_eq!(run_held(&mut h, 1, &mut held, 10, 20), 5);
    // Sub-millisecond attempts: up to the cap.
    assert_eq!(run_held(&mut h, 1, &mut held, 0, 100), 257);
    // Then long attempts: the mean moves on, and prefetch stops.
    run_held(&mut h, 1, &mut held, 200, 300);
    assert_eq!(held.len(), 1, "no prefetch once tasks are long");
}

#[test]
fn work_without_inputs_spreads_over_workers() {
    let mut h = Harness::new(CoreConfig::default());
    for w in 1..=10 {
        h.join(w, 4, &["f"]);
    }
    h.open(1, 0);
    let out = h.submit(1, 0, (0..10).map(|n| task(1, n, "f")).collect());
    let workers: BTreeSet<u32> = runs(&out).iter().map(|r| r.0).collect();
    assert_eq!(workers.len(), 10);
    assert_eq!(info(&h).tasks_local + info(&h).tasks_remote, 0);
}

#[test]
fn prefers_the_worker_caching_most_input_bytes() {
    let (small, big) = (shard("small", 100), shard("big", 1_000));
    let mut h = Harness::new(no_prefetch());
    h.join_cached(1, 1, &["f"], &[&small]);
    h.join_cached(2, 1, &["f"], &[&big]);
    h.join(3, 1, &["f"]);
    h.open(1, 0);
    let out = h.submit(1, 0, vec![with_inputs(task(1, 0, "f"), &[&small, &big])]);
    assert_eq!(runs(&out), vec![(2, task_id(1, 0), 1)]);

    // Worker 3 caches both now; worker 2 evicted its copy.
    h.send(Event::CacheDelta {
        worker: WorkerId(3),
        added: [&small, &big]
            .iter()
            .map(|d| CacheEntry::whole(d.object_key(), d.size))
            .collect(),
        evicted: vec![],
    });
    h.send(Event::CacheDelta {
        worker: WorkerId(2),
        added: vec![],
        evicted: vec![CacheEntry::whole(big.object_key(), big.size)],
    });
    let out = h.submit(1, 0, vec![with_inputs(task(1, 1, "f"), &[&small, &big])]);
    assert_eq!(runs(&out), vec![(3, task_id(1, 1), 1)]);
    assert_eq!((info(&h).tasks_local, info(&h).tasks_remote), (2, 0));
}

#[test]
fn a_cache_on_a_worker_not_serving_the_function_does_not_attract() {
    let data = shard("d", 10);
    let mut h = Harness::new(no_prefetch());
    h.join_cached(1, 1, &["g"], &[&data]);
    h.join(2, 1, &["f"]);
    h.open(1, 0);
    let out = h.submit(1, 0, vec![with_inputs(task(1, 0, "f"), &[&data])]);
    assert_eq!(runs(&out), vec![(2, task_id(1, 0), 1)]);
    assert_eq!(info(&h).tasks_remote, 1);
}

/// Which worker each of 40 shard tasks of one job is sent to, with room for
/// all of them at once.
fn owners(h: &mut Harness, client: u32, job: u64) -> BTreeMap<String, String> {
    h.open(client, job);
    let tasks = (0..40)
        .map(|n| {
            with_inputs(
                task(client, n, "f"),
                &[&shard(&format!("part-{n}"), 1 << 20)],
            )
        })
        .collect();
    let out = h.submit(client, job, tasks);
    runs(&out)
        .into_iter()
        .map(|(w, t, _)| {
            let key = h.core.task_status(t).unwrap().key;
            (key, h.core.worker_name(WorkerId(w)).unwrap().to_string())
        })
        .collect()
}

#[test]
fn rendezvous_owners_are_stable_across_jobs_and_restarts() {
    let config = CoreConfig {
        prefetch_per_slot: 100,
        prefetch_unmeasured_per_slot: 100,
        ..CoreConfig::default()
    };
    let mut h = Harness::new(config.clone());
    for w in 1..=8 {
        h.join(w, 1 + w % 3, &["f"]);
    }
    let first = owners(&mut h, 1, 0);
    let second = owners(&mut h, 2, 0);
    assert_eq!(first.len(), 40);
    assert_eq!(first, second);
    assert!(first.values().collect::<BTreeSet<_>>().len() > 4);
    assert_eq!(info(&h).tasks_remote, 40, "nothing was cached yet");

    // A new scheduler, workers joining in another order under other ids but
    // with the same names: the same shards go to the same names.
    let mut restarted = Harness::new(config);
    for w in (1..=8).rev() {
        restarted.send(Event::WorkerJoined {
            worker: WorkerId(100 + w),
            name: format!("w{w}"),
            slots: 1 + w % 3,
            functions: vec!["f".into()],
            inventory: vec![],
            host: String::new(),
        });
    }
    assert_eq!(owners(&mut restarted, 1, 0), first);
}

#[test]
fn the_load_cap_sends_overflow_to_the_next_ranked_worker() {
    let config = CoreConfig {
        prefetch_per_slot: 100,
        prefetch_unmeasured_per_slot: 100,
        owner_load_cap: 1.0,
        ..CoreConfig::default()
    };
    let mut h = Harness::new(config);
    for w in 1..=4 {
        h.join(w, 1, &["f"]);
    }
    h.open(1, 0);
    // Every task reads the same uncached shard: one owner, capped at its share.
    let hot = shard("hot", 10);
    let out = h.submit(
        1,
        0,
        (0..40)
            .map(|n| with_inputs(task(1, n, "f"), &[&hot]))
            .collect(),
    );
    let mut per_worker: BTreeMap<u32, u32> = BTreeMap::new();
    for (w, _, _) in runs(&out) {
        *per_worker.entry(w).or_default() += 1;
    }
    assert_eq!(
        per_worker.values().copied().collect::<Vec<_>>(),
        vec![10; 4]
    );

    // Without a binding cap the same tasks all go to the one owner.
    let mut uncapped = Harness::new(CoreConfig {
        prefetch_per_slot: 100,
        prefetch_unmeasured_per_slot: 100,
        owner_load_cap: 100.0,
        ..CoreConfig::default()
    });
    for w in 1..=4 {
        uncapped.join(w, 1, &["f"]);
    }
    uncapped.open(1, 0);
    let out = uncapped.submit(
        1,
        0,
        (0..40)
            .map(|n| with_inputs(task(1, n, "f"), &[&hot]))
            .collect(),
    );
    let used: BTreeSet<u32> = runs(&out).iter().map(|r| r.0).collect();
    assert_eq!(used.len(), 1);
}

/// Tasks `first..first + count` of job (1, 0), each reading its own
/// 16 MiB shard `shard-<n>`.
fn shard_tasks(first: u64, count: u64) -> Vec<TaskSpec> {
    (first..first + count)
        .map(|n| with_inputs(task(1, n, "f"), &[&shard(&format!("shard-{n}"), 16 << 20)]))
        .collect()
}

fn shards(range: std::ops::Range<u64>) -> Vec<quarry_proto::DataRef> {
    range
        .map(|n| shard(&format!("shard-{n}"), 16 << 20))
        .collect()
}

/// One attempt as [`drive`] ran it.
#[derive(Clone, Copy, Debug)]
struct Ran {
    started: u64,
    worker: u32,
    task: TaskId,
}

/// Plays the workers for `Run`s in `first` and everything they lead to:
/// each attempt starts when it is sent and takes `duration(worker, task)`
/// milliseconds; the shell ticks every 100 ms. Returns every attempt in
/// the order they were sent.
fn drive(h: &mut Harness, first: Vec<Command>, duration: impl Fn(u32, TaskId) -> u64) -> Vec<Ran> {
    let mut ran = Vec::new();
    let mut running: Vec<(u64, u32, TaskId, u32)> = Vec::new();
    let mut sent = runs(&first);
    loop {
        for (worker, task, attempt) in sent.drain(..) {
            h.start(worker, task, attempt);
            ran.push(Ran {
                started: h.now,
                worker,
                task,
            });
            running.push((h.now + duration(worker, task), worker, task, attempt));
        }
        let Some(next) = (0..running.len()).min_by_key(|&i| (running[i].0, running[i].1)) else {
            return ran;
        };
        let next_tick = (h.now / 100 + 1) * 100;
        if next_tick <= running[next].0 {
            sent = runs(&h.tick_at(next_tick));
        } else {
            let (ends, worker, task, attempt) = running.swap_remove(next);
            h.now = ends;
            sent = runs(&h.succeed(worker, task, attempt));
        }
    }
}

/// Tasks that ran on each worker.
fn tasks_per_worker(ran: &[Ran]) -> BTreeMap<u32, usize> {
    let mut per_worker = BTreeMap::new();
    for r in ran {
        *per_worker.entry(r.worker).or_default() += 1;
    }
    per_worker
}

#[test]
fn a_task_waits_for_its_preferred_worker_when_it_frees_up_within_the_wait() {
    let data = shard("d", 10);
    let mut h = Harness::new(no_prefetch()); // locality wait 500 ms
    h.join_cached(1, 1, &["f"], &[&data]);
    h.join(2, 1, &["f"]);
    h.open(1, 0);
    let tasks = (0..2)
        .map(|n| with_inputs(task(1, n, "f"), &[&data]))
        .collect();
    let out = h.submit(1, 0, tasks);
    assert_eq!(runs(&out), vec![(1, task_id(1, 0), 1)], "worker 2 waits");
    assert!(runs(&h.tick_at(300)).is_empty());
    let out = h.succeed(1, task_id(1, 0), 1);
    assert_eq!(runs(&out), vec![(1, task_id(1, 1), 1)]);
    assert_eq!((info(&h).tasks_local, info(&h).tasks_remote), (2, 0));
}

/// Issue #3: a pass over cached shards, split evenly between two workers of
/// equal speed. One slow attempt puts worker 2 more than a task behind, so
/// worker 1 runs out of its own shards while one of worker 2's is still
/// queued, long after the locality wait. Worker 2 will start it well before
/// worker 1 could download it and run it: nothing is stolen.
#[test]
fn an_even_split_runs_every_task_on_its_holder_after_the_wait() {
    let mut h = Harness::new(no_prefetch());
    h.join_cached(1, 1, &["f"], &shards(0..8).iter().collect::<Vec<_>>());
    h.join_cached(2, 1, &["f"], &shards(8..16).iter().collect::<Vec<_>>());
    h.open(1, 0);
    let out = h.submit(1, 0, shard_tasks(0, 16));
    let slow = task_id(1, 8);
    let ran = drive(&mut h, out, |_, t| if t == slow { 2_300 } else { 1_000 });

    assert_eq!(ran.len(), 16);
    for r in &ran {
        let holder = if r.task.0 - task_id(1, 0).0 < 8 { 1 } else { 2 };
        assert_eq!(r.worker, holder, "{r:?} ran away from its shard");
    }
    // Worker 1 was idle from 8 s on, with the wait long over.
    assert_eq!(
        ran.iter()
            .filter(|r| r.worker == 1)
            .map(|r| r.started)
            .max(),
        Some(7_000)
    );
    assert_eq!((info(&h).tasks_local, info(&h).tasks_remote), (16, 0));
}

/// The other half of issue #3: one worker holds every shard and has a long
/// backlog. An idle worker steals as soon as the wait is over (before any
/// duration is known, by task counts), keeps stealing while the holder is
/// more than a fetch and a task behind, and stops when the holder will get
/// to the rest about as soon.
#[test]
fn an_idle_worker_steals_from_a_long_backlog_after_the_wait() {
    let mut h = Harness::new(no_prefetch());
    h.join_cached(1, 1, &["f"], &shards(0..8).iter().collect::<Vec<_>>());
    h.join(2, 1, &["f"]);
    h.open(1, 0);
    let out = h.submit(1, 0, shard_tasks(0, 8));
    assert_eq!(runs(&out), vec![(1, task_id(1, 0), 1)]);
    let ran = drive(&mut h, out, |_, _| 1_000);

    let stolen: Vec<(u64, TaskId)> = ran
        .iter()
        .filter(|r| r.worker == 2)
        .map(|r| (r.started, r.task))
        .collect();
    assert_eq!(
        stolen,
        vec![
            (500, task_id(1, 1)),
            (1_500, task_id(1, 3)),
            (2_500, task_id(1, 5))
        ]
    );
    assert_eq!(tasks_per_worker(&ran), BTreeMap::from([(1, 5), (2, 3)]));
    assert_eq!((info(&h).tasks_local, info(&h).tasks_remote), (5, 3));
}

#[test]
fn a_holder_about_to_start_its_task_does_not_hide_a_backlogged_one() {
    let (a, b) = (shard("a", 10), shard("b", 10));
    let mut h = Harness::new(no_prefetch());
    h.join_cached(1, 1, &["f"], &[&a]);
    h.join_cached(2, 1, &["f"], &[&b]);
    h.join(3, 1, &["f"]);
    h.open(1, 0);
    let mut tasks: Vec<TaskSpec> = (0..2)
        .map(|n| with_inputs(task(1, n, "f"), &[&a]))
        .collect();
    tasks.extend((2..12).map(|n| with_inputs(task(1, n, "f"), &[&b])));
    let out = h.submit(1, 0, tasks);
    assert_eq!(
        runs(&out),
        vec![(1, task_id(1, 0), 1), (2, task_id(1, 2), 1)]
    );
    // Task 1, the oldest waiting, is next on worker 1 anyway; worker 3
    // takes from worker 2's backlog instead.
    assert_eq!(runs(&h.tick_at(500)), vec![(3, task_id(1, 3), 1)]);
    let out = h.succeed(1, task_id(1, 0), 1);
    assert_eq!(runs(&out), vec![(1, task_id(1, 1), 1)]);
}

#[test]
fn tasks_waiting_for_a_lost_worker_are_placed_again_at_once() {
    let data = shard("d", 10);
    let mut h = Harness::new(no_prefetch());
    h.join_cached(1, 1, &["f"], &[&data]);
    h.join(2, 1, &["f"]);
    h.open(1, 0);
    let tasks = (0..2)
        .map(|n| with_inputs(task(1, n, "f"), &[&data]))
        .collect();
    h.submit(1, 0, tasks);
    let out = h.send(Event::WorkerLeft {
        worker: WorkerId(1),
    });
    // Worker 2 takes the task that ran on worker 1 first; the other waits
    // for a free slot, not for the locality wait.
    assert_eq!(runs(&out), vec![(2, task_id(1, 0), 2)]);
    let out = h.succeed(2, task_id(1, 0), 2);
    assert_eq!(runs(&out), vec![(2, task_id(1, 1), 1)]);
}

/// 100 one-slot workers, worker 0 caching a 1 GiB shard, and 1,000 tasks
/// all reading it, just submitted; returns the harness and what the
/// submission produced.
fn hot_shard_cluster() -> (Harness, Vec<Command>) {
    let data = shard("hot", 1 << 30);
    let mut h = Harness::new(no_prefetch());
    h.join_cached(0, 1, &["f"], &[&data]);
    for w in 1..100 {
        h.join(w, 1, &["f"]);
    }
    h.open(1, 0);
    let tasks = (0..1_000)
        .map(|n| with_inputs(task(1, n, "f"), &[&data]))
        .collect();
    let out = h.submit(1, 0, tasks);
    (h, out)
}

/// SPARK-18886: tasks that all prefer one worker must not leave the rest
/// of the cluster idle once their locality wait is over, even while the
/// preferred worker keeps launching local tasks.
#[test]
fn a_locality_preference_never_leaves_most_workers_idle() {
    let (mut h, out) = hot_shard_cluster();
    assert_eq!(
        runs(&out).len(),
        1,
        "only the preferred worker starts at once"
    );

    // The preferred worker keeps finishing and launching local tasks during
    // the wait: that must not extend the others' wait.
    let mut current = runs(&out)[0];
    for now in [100, 200, 300, 400] {
        h.now = now;
        let next = runs(&h.succeed(0, current.1, current.2));
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].0, 0);
        current = next[0];
        assert!(runs(&h.tick_at(now + 50)).is_empty());
    }

    let out = h.tick_at(500);
    let busy: BTreeSet<u32> = runs(&out).iter().map(|r| r.0).collect();
    assert_eq!(busy, (1..100).collect(), "every other worker got work");
    // And they keep getting work as they finish.
    let (w, t, a) = runs(&out)[17];
    assert_eq!(runs(&h.succeed(w, t, a)).len(), 1);
    assert_eq!(h.core.queued_tasks(), 1_000 - 5 - 99 - 1);
    let stats = info(&h);
    assert_eq!((stats.tasks_local, stats.tasks_remote), (5, 100));
}

/// The same guard with measured durations: a 1 GiB input takes seconds to
/// fetch, but a thousand 100 ms tasks behind one worker take far longer.
#[test]
fn a_locality_preference_never_leaves_most_workers_idle_with_known_durations() {
    let (mut h, out) = hot_shard_cluster();
    let ran = drive(&mut h, out, |_, _| 100);
    let busy_by_wait_end: BTreeSet<u32> = ran
        .iter()
        .filter(|r| r.started <= 500)
        .map(|r| r.worker)
        .collect();
    assert_eq!(busy_by_wait_end, (0..100).collect());
    assert_eq!(ran.len(), 1_000);
}

#[test]
fn job_context_is_sent_before_runs_to_each_worker() {
    let mut h = Harness::new(CoreConfig::default());
    for w in 1..=3 {
        h.join(w, 2, &["f"]);
    }
    h.open(1, 0);
    let out = without_answers(h.submit(1, 0, (0..30).map(|n| task(1, n, "f")).collect()));
    let mut sent = BTreeSet::new();
    for command in &out {
        match command {
            Command::SendJob { worker, .. } => assert!(sent.insert(worker.0), "once per worker"),
            Command::Run { worker, .. } => assert!(sent.contains(&worker.0)),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(sent.len(), 3);
}

/// Task `n` reading `input`, whose data lies on `hosts` (as HDFS block
/// locations say).
fn on_hosts(n: u64, input: &quarry_proto::DataRef, hosts: &[&str]) -> TaskSpec {
    TaskSpec {
        replica_hosts: hosts.iter().map(|h| h.to_string()).collect(),
        ..with_inputs(task(1, n, "f"), &[input])
    }
}

/// Which worker each task of `out` was sent to.
fn ran_on(out: &[Command]) -> BTreeMap<u64, u32> {
    runs(out)
        .into_iter()
        .map(|(w, t, _)| (t.0 - task_id(1, 0).0, w))
        .collect()
}

#[test]
fn the_first_pass_prefers_workers_on_replica_hosts() {
    let mut h = Harness::new(no_prefetch());
    h.join_on_host(1, 1, &["f"], "dn-a");
    h.join_on_host(2, 1, &["f"], "dn-a");
    h.join_on_host(3, 1, &["f"], "dn-b");
    // HDFS may name a host by its full name while the worker knows its short one.
    h.join_on_host(4, 1, &["f"], "DN-C.example.com");
    h.join_on_host(5, 1, &["f"], "edge");
    h.open(1, 0);
    let shards: Vec<_> = (0..4)
        .map(|i| shard(&format!("block-{i}"), 1 << 20))
        .collect();
    let out = h.submit(
        1,
        0,
        vec![
            on_hosts(0, &shards[0], &["dn-a"]),
            on_hosts(1, &shards[1], &["dn-a"]),
            on_hosts(2, &shards[2], &["dn-b", "dn-x"]),
            on_hosts(3, &shards[3], &["dn-c"]),
        ],
    );
    let placed = ran_on(&out);
    assert_eq!(placed.len(), 4, "{placed:?}");
    // Both dn-a workers get one of its two blocks, not one worker both.
    let on_a: BTreeSet<u32> = [placed[&0], placed[&1]].into();
    assert_eq!(on_a, BTreeSet::from([1, 2]));
    assert_eq!(placed[&2], 3);
    assert_eq!(placed[&3], 4);
    assert!(
        !placed.values().any(|&w| w == 5),
        "the worker on no replica host waits: {placed:?}"
    );
    assert_eq!(info(&h).tasks_remote, 4, "nothing was cached yet");
}

#[test]
fn a_replica_host_backlog_is_shared_by_its_workers() {
    let mut h = Harness::new(no_prefetch());
    h.join_on_host(1, 1, &["f"], "dn-a");
    h.join_on_host(2, 2, &["f"], "dn-a");
    h.join_on_host(3, 1, &["f"], "dn-b");
    h.open(1, 0);
    let tasks = (0..12)
        .map(|n| on_hosts(n, &shard(&format!("a-{n}"), 1000), &["dn-a"]))
        .collect();
    let out = h.submit(1, 0, tasks);
    let mut per_worker: BTreeMap<u32, usize> = BTreeMap::new();
    for w in ran_on(&out).values() {
        *per_worker.entry(*w).or_default() += 1;
    }
    // Slots fill on the replica host only; dn-b stays free for other work
    // until the locality wait ends.
    assert_eq!(per_worker, BTreeMap::from([(1, 1), (2, 2)]));
}

#[test]
fn cached_data_beats_replica_hosts_and_unknown_hosts_fall_back_to_owners() {
    let cached = shard("cached", 1 << 20);
    let elsewhere = shard("elsewhere", 1 << 20);
    let mut h = Harness::new(no_prefetch());
    h.join_on_host(1, 1, &["f"], "dn-a");
    h.join_cached(2, 2, &["f"], &[&cached]);
    h.open(1, 0);
    let out = h.submit(
        1,
        0,
        vec![
            on_hosts(0, &cached, &["dn-a"]),
            on_hosts(1, &elsewhere, &["dn-z"]),
        ],
    );
    let placed = ran_on(&out);
    assert_eq!(
        placed[&0], 2,
        "the worker caching the data wins: {placed:?}"
    );
    assert!(
        placed.contains_key(&1),
        "no worker on dn-z: the rendezvous owner takes it at once: {placed:?}"
    );
}
