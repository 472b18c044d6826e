//! A worker that joins under the name of a live worker (the same worker,
//! restarted) takes it over: the old session's tasks are requeued at once,
//! not after the heartbeat timeout.

mod common;

use common::*;
use quarry_core::{Command, Event};
use quarry_proto::WorkerId;

fn join_named(h: &mut Harness, worker: u32, name: &str) -> Vec<Command> {
    h.send(Event::WorkerJoined {
        worker: WorkerId(worker),
        name: name.into(),
        slots: 1,
        functions: vec!["f".into()],
        inventory: Vec::new(),
        host: "h".into(),
    })
}

#[test]
fn a_worker_rejoining_under_its_name_gets_its_tasks_back_at_once() {
    let mut h = Harness::new(no_prefetch());
    join_named(&mut h, 1, "node-a");
    join_named(&mut h, 2, "node-b");
    h.open(1, 0);
    let out = h.submit(1, 0, vec![task(1, 0, "f"), task(1, 1, "f")]);
    let placed = runs(&out);
    assert_eq!(placed.len(), 2, "{out:?}");
    let on_a = placed.iter().find(|(w, _, _)| *w == 1).unwrap().1;
    h.start(1, on_a, 1);

    // Long before any heartbeat timeout, node-a comes back as worker 3.
    h.now += 100;
    let out = join_named(&mut h, 3, "node-a");
    assert!(
        out.contains(&Command::WorkerReplaced {
            worker: WorkerId(1),
            by: WorkerId(3),
            name: "node-a".into()
        }),
        "{out:?}"
    );
    assert_eq!(runs(&out), vec![(3, on_a, 2)], "requeued and run again");
    assert_eq!(h.core.worker_count(), 2);
    assert_eq!(h.core.worker_name(WorkerId(3)), Some("node-a"));
    assert_eq!(h.core.worker_name(WorkerId(1)), None);

    // The old session's reports are stale; the new attempt counts.
    assert!(h.succeed(1, on_a, 1).is_empty());
    let out = h.succeed(3, on_a, 2);
    assert_eq!(dones(&out).len(), 1, "{out:?}");

    // A worker with another name takes nothing over.
    let out = join_named(&mut h, 4, "node-c");
    assert!(
        !out.iter()
            .any(|c| matches!(c, Command::WorkerReplaced { .. })),
        "{out:?}"
    );
}

#[test]
fn a_name_freed_by_a_departed_worker_takes_nothing_over() {
    let mut h = Harness::new(no_prefetch());
    join_named(&mut h, 1, "node-a");
    h.send(Event::WorkerLeft {
        worker: WorkerId(1),
    });
    let out = join_named(&mut h, 2, "node-a");
    assert!(
        !out.iter()
            .any(|c| matches!(c, Command::WorkerReplaced { .. })),
        "{out:?}"
    );
    assert_eq!(h.core.worker_count(), 1);
}
