//! Draining a worker: nothing new is placed on it, what it runs may
//! finish there, and what it held unstarted when it left goes to another
//! worker without counting as a lost worker.

mod common;

use common::*;
use quarry_core::{CoreConfig, Event};
use quarry_proto::WorkerId;

#[test]
fn a_draining_worker_gets_nothing_new_and_its_unstarted_tasks_move_on_when_it_leaves() {
    let mut h = Harness::new(CoreConfig {
        max_worker_losses: 0,
        ..no_prefetch()
    });
    h.join(1, 2, &["f"]);
    h.open(1, 0);
    let specs: Vec<_> = (0..4).map(|n| task(1, n, "f")).collect();
    let ids: Vec<_> = specs.iter().map(|s| s.id).collect();
    let first = runs(&h.submit(1, 0, specs));
    assert_eq!(first, vec![(1, ids[0], 1), (1, ids[1], 1)]);
    h.start(1, ids[0], 1);

    let out = h.send(Event::WorkerDraining {
        worker: WorkerId(1),
    });
    assert!(runs(&out).is_empty());
    // A finished task frees a slot, but the draining worker is given nothing.
    assert!(runs(&h.succeed(1, ids[0], 1)).is_empty());
    // A new worker takes the queue.
    let taken = runs(&h.join(2, 2, &["f"]));
    assert_eq!(taken, vec![(2, ids[2], 1), (2, ids[3], 1)]);

    // The first worker leaves holding ids[1], which it never started: it
    // goes to worker 2 with its next attempt, and max_worker_losses = 0
    // does not fail it.
    h.succeed(2, ids[2], 1);
    let out = h.send(Event::WorkerDrained {
        worker: WorkerId(1),
    });
    assert_eq!(runs(&out), vec![(2, ids[1], 2)]);
    assert!(dones(&out).is_empty(), "not failed as a lost worker");
    h.succeed(2, ids[1], 2);
    h.succeed(2, ids[3], 1);
    for id in &ids {
        assert_eq!(h.state_of(*id), "done");
    }
}

#[test]
fn a_draining_worker_that_vanishes_counts_as_lost() {
    let mut h = Harness::new(CoreConfig {
        max_worker_losses: 0,
        ..no_prefetch()
    });
    h.join(1, 1, &["f"]);
    h.open(1, 0);
    let spec = task(1, 0, "f");
    let id = spec.id;
    h.submit(1, 0, vec![spec]);
    h.start(1, id, 1);
    h.send(Event::WorkerDraining {
        worker: WorkerId(1),
    });
    // It died instead of saying it drained: the running task was lost
    // with it, and counts against the task.
    let out = h.send(Event::WorkerLeft {
        worker: WorkerId(1),
    });
    assert_eq!(dones(&out).len(), 1);
    assert_eq!(h.state_of(id), "failed");
}
