//! The function table holds only names something still uses: a worker
//! that leaves takes the names only it served with it, and a job dropped
//! after its retention takes the names only its tasks used.

mod common;

use common::*;
use quarry_core::{CoreConfig, Event, Retention};
use quarry_proto::WorkerId;

#[test]
fn names_only_a_departed_worker_served_are_freed() {
    let mut h = Harness::new(no_prefetch());
    h.join(1, 1, &["f"]);
    for round in 0..20u32 {
        let worker = 100 + round;
        let names: Vec<String> = (0..500).map(|i| format!("made-up-{round}-{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        h.join(worker, 1, &names);
        assert_eq!(h.core.function_count(), 501);
        h.send(Event::WorkerLeft {
            worker: WorkerId(worker),
        });
        assert_eq!(h.core.function_count(), 1, "round {round}");
    }
    // A name still served by a live worker stays, and still works.
    h.open(1, 0);
    let out = h.submit(1, 0, vec![task(1, 0, "f")]);
    assert_eq!(runs(&out), vec![(1, task_id(1, 0), 1)]);
}

#[test]
fn names_only_dropped_tasks_used_are_freed() {
    let mut h = Harness::new(CoreConfig {
        retention: Retention {
            max_age_ms: None,
            max_jobs: Some(0),
        },
        ..no_prefetch()
    });
    h.join(1, 1, &["f"]);
    h.open(1, 0);
    h.submit(
        1,
        0,
        vec![task(1, 0, "f"), task(1, 1, "nobody-serves-this")],
    );
    h.seal(1, 0);
    assert_eq!(h.core.function_count(), 2);
    h.send(Event::CancelJob {
        client: quarry_proto::ClientId(1),
        request: quarry_proto::RequestId(1),
        job: job_id(1, 0),
    });
    h.tick_at(10);
    assert!(h.core.jobs(h.now).is_empty(), "the finished job is dropped");
    assert_eq!(h.core.function_count(), 1);
    // The freed slot is reused by the next new name.
    h.join(2, 1, &["g"]);
    assert_eq!(h.core.function_count(), 2);
    h.open(1, 1);
    let out = h.submit(1, 1, vec![task(1, 2, "g")]);
    assert_eq!(runs(&out), vec![(2, task_id(1, 2), 1)]);
}
