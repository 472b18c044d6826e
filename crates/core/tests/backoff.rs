//! Retries back off: a failed attempt's retry is queued only after a wait
//! that doubles per failure, up to a cap, jittered per task. Time is the
//! harness's clock, moved by hand.

mod common;

use common::*;
use quarry_core::CoreConfig;
use quarry_proto::{ErrorKind, TaskId};

fn backing_off(base_ms: u64, max_ms: u64) -> CoreConfig {
    CoreConfig {
        retry_backoff_ms: base_ms,
        retry_backoff_max_ms: max_ms,
        ..no_prefetch()
    }
}

/// Fails `id`'s attempt `attempt` on worker 1, then ticks every 10 ms until
/// the retry is sent; returns how long that took.
fn fail_and_time_the_retry(h: &mut Harness, id: TaskId, attempt: u32) -> u64 {
    let failed_at = h.now;
    let out = h.finish(1, err_report(id, attempt, ErrorKind::Failed, "flaky"));
    assert!(runs(&out).is_empty(), "retried at once: {out:?}");
    assert_eq!(h.state_of(id), "queued");
    for _ in 0..100_000 {
        let out = h.tick_at(h.now + 10);
        if !runs(&out).is_empty() {
            assert_eq!(runs(&out), vec![(1, id, attempt + 1)]);
            return h.now - failed_at;
        }
    }
    panic!("the retry of {id} attempt {attempt} was never queued");
}

#[test]
fn retries_wait_longer_each_time_within_the_jitter_and_the_cap() {
    let mut h = Harness::new(backing_off(1_000, 5_000));
    h.join(1, 1, &["f"]);
    h.open(1, 0);
    let mut spec = task(1, 0, "f");
    spec.retries = 5;
    let id = spec.id;
    assert_eq!(runs(&h.submit(1, 0, vec![spec])), vec![(1, id, 1)]);
    // Nominal waits 1 s, 2 s, 4 s, then the 5 s cap; each within half and
    // one and a half times its nominal length (plus one 10 ms tick).
    for (attempt, nominal) in [(1, 1_000), (2, 2_000), (3, 4_000), (4, 5_000), (5, 5_000)] {
        let waited = fail_and_time_the_retry(&mut h, id, attempt);
        assert!(
            waited >= nominal / 2 && waited <= nominal * 3 / 2 + 10,
            "attempt {attempt} waited {waited} ms for a nominal {nominal} ms"
        );
    }
    let out = h.finish(1, err_report(id, 6, ErrorKind::Failed, "flaky"));
    assert_eq!(dones(&out).len(), 1, "out of retries: final at once");
}

#[test]
fn tasks_failing_together_do_not_retry_together() {
    let mut h = Harness::new(backing_off(1_000, 60_000));
    h.join(1, 50, &["f"]);
    h.open(1, 0);
    let specs: Vec<_> = (0..50)
        .map(|n| {
            let mut spec = task(1, n, "f");
            spec.retries = 1;
            spec
        })
        .collect();
    assert_eq!(runs(&h.submit(1, 0, specs)).len(), 50);
    for n in 0..50 {
        h.finish(1, err_report(task_id(1, n), 1, ErrorKind::Failed, "down"));
    }
    let mut retry_times = std::collections::BTreeSet::new();
    let start = h.now;
    while h.now < start + 2_000 {
        let out = h.tick_at(h.now + 10);
        if !runs(&out).is_empty() {
            retry_times.insert(h.now);
        }
    }
    assert!(
        retry_times.len() >= 10,
        "50 retries came at only {} distinct times",
        retry_times.len()
    );
    assert!(retry_times.iter().all(|&t| t >= start + 500));
}

#[test]
fn a_task_cancelled_during_its_backoff_is_not_retried() {
    let mut h = Harness::new(backing_off(1_000, 60_000));
    h.join(1, 1, &["f"]);
    h.open(1, 0);
    let mut spec = task(1, 0, "f");
    spec.retries = 3;
    let id = spec.id;
    h.submit(1, 0, vec![spec]);
    h.finish(1, err_report(id, 1, ErrorKind::Failed, "flaky"));
    h.send(quarry_core::Event::CancelJob {
        client: quarry_proto::ClientId(1),
        request: quarry_proto::RequestId(1),
        job: job_id(1, 0),
    });
    assert_eq!(h.state_of(id), "cancelled");
    assert!(runs(&h.tick_at(h.now + 10_000)).is_empty());
}
