//! Liveness means progress: a worker that heartbeats but starts none of
//! the tasks it was sent within the start deadline loses them to the queue
//! (and other workers), and gets no more work until it makes progress.
//! Time is the harness's clock, moved by hand.

mod common;

use common::*;
use quarry_core::{Command, CoreConfig, Event};
use quarry_proto::WorkerId;

fn deadline(ms: u64) -> CoreConfig {
    CoreConfig {
        start_deadline_ms: ms,
        heartbeat_timeout_ms: 1_000_000,
        ..no_prefetch()
    }
}

fn cancels(commands: &[Command]) -> Vec<(u32, quarry_proto::TaskId)> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::CancelOnWorker { worker, task } => Some((worker.0, *task)),
            _ => None,
        })
        .collect()
}

#[test]
fn tasks_a_silent_worker_never_started_go_to_a_worker_that_runs_them() {
    let mut h = Harness::new(deadline(10_000));
    h.join(1, 2, &["f"]);
    h.open(1, 0);
    let out = h.submit(1, 0, vec![task(1, 0, "f"), task(1, 1, "f")]);
    assert_eq!(runs(&out).len(), 2);
    // Worker 1 heartbeats but never starts anything.
    for now in (1_000..10_000).step_by(1_000) {
        h.now = now;
        h.send(Event::Heartbeat {
            worker: WorkerId(1),
        });
        assert!(h.tick_at(now).is_empty(), "nothing before the deadline");
    }
    h.join(2, 2, &["f"]);
    let out = h.tick_at(10_000);
    let mut back = cancels(&out);
    back.sort();
    assert_eq!(back, vec![(1, task_id(1, 0)), (1, task_id(1, 1))]);
    let mut moved = runs(&out);
    moved.sort();
    assert_eq!(moved, vec![(2, task_id(1, 0), 2), (2, task_id(1, 1), 2)]);

    // The stalled worker gets nothing new, and its late reports are stale.
    let out = h.submit(
        1,
        0,
        vec![task(1, 2, "f"), task(1, 3, "f"), task(1, 4, "f")],
    );
    assert!(runs(&out).iter().all(|&(w, _, _)| w == 2), "{out:?}");
    assert!(h.succeed(1, task_id(1, 0), 1).is_empty());
    assert_eq!(h.state_of(task_id(1, 4)), "queued");

    // Once it makes progress (a task of its own ends), it takes work again.
    h.succeed(2, task_id(1, 0), 2);
    h.succeed(2, task_id(1, 1), 2);
    let out = h.succeed(2, task_id(1, 2), 1);
    assert_eq!(runs(&out), vec![(2, task_id(1, 4), 1)]);
}

#[test]
fn a_worker_busy_with_long_tasks_keeps_the_ones_waiting_behind_them() {
    let mut h = Harness::new(deadline(10_000));
    h.join(1, 1, &["f"]);
    h.open(1, 0);
    h.submit(1, 0, vec![task(1, 0, "f")]);
    h.start(1, task_id(1, 0), 1);
    h.tick_at(100_000);
    assert_eq!(h.state_of(task_id(1, 0)), "running");

    // A worker given work after a long idle time has the whole deadline.
    h.join(2, 1, &["f"]);
    h.now = 200_000;
    let out = h.submit(1, 0, vec![task(1, 1, "f")]);
    assert_eq!(runs(&out), vec![(2, task_id(1, 1), 1)]);
    assert!(cancels(&h.tick_at(209_999)).is_empty());
    assert_eq!(h.state_of(task_id(1, 1)), "assigned");
    assert_eq!(cancels(&h.tick_at(210_000)), vec![(2, task_id(1, 1))]);
}

#[test]
fn no_deadline_when_turned_off() {
    let mut h = Harness::new(deadline(0));
    h.join(1, 1, &["f"]);
    h.open(1, 0);
    h.submit(1, 0, vec![task(1, 0, "f")]);
    assert!(h.tick_at(900_000).is_empty());
    assert_eq!(h.state_of(task_id(1, 0)), "assigned");
}
