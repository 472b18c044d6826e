//! Bounded state: finished jobs are dropped after their retention (by
//! count and by age), dropped jobs are gone from every query, and the
//! shell learns what changed without the core walking every job.

mod common;

use common::*;
use quarry_core::{Change, Command, CoreConfig, Event, Retention};
use quarry_proto::{ClientId, JobState, RequestId};

fn keeping(max_age_ms: Option<u64>, max_jobs: Option<usize>) -> CoreConfig {
    CoreConfig {
        retention: Retention {
            max_age_ms,
            max_jobs,
        },
        record_changes: true,
        ..no_prefetch()
    }
}

/// Runs job `n` of client 1 (two tasks) to its end on worker 1.
fn run_job(h: &mut Harness, n: u64) {
    h.open(1, n);
    h.submit(1, n, vec![task(1, 2 * n, "f"), task(1, 2 * n + 1, "f")]);
    h.seal(1, n);
    h.succeed(1, task_id(1, 2 * n), 1);
    h.succeed(1, task_id(1, 2 * n + 1), 1);
}

#[test]
fn the_oldest_finished_jobs_beyond_the_count_are_dropped_at_the_next_tick() {
    let mut h = Harness::new(keeping(None, Some(2)));
    h.join(1, 1, &["f"]);
    h.open(2, 0); // unfinished: never dropped
    for n in 0..5 {
        h.now += 10;
        run_job(&mut h, n);
    }
    assert_eq!(h.core.jobs(h.now).len(), 6, "dropping waits for a tick");
    let out = h.tick_at(h.now + 1);
    let dropped: Vec<_> = out
        .iter()
        .filter_map(|c| match c {
            Command::Record(Change::JobDropped { job }) => Some(*job),
            _ => None,
        })
        .collect();
    assert_eq!(dropped, vec![job_id(1, 0), job_id(1, 1), job_id(1, 2)]);
    let kept: Vec<_> = h.core.jobs(h.now).iter().map(|j| j.id).collect();
    assert_eq!(kept, vec![job_id(1, 3), job_id(1, 4), job_id(2, 0)]);
    assert_eq!(h.core.dropped_jobs(), 3);
    assert_eq!(h.core.task_count(), 4);
    assert!(h.core.task_status(task_id(1, 0)).is_none());
    assert!(h.core.results(job_id(1, 0), None, 10).is_none());
    let out = h.send(Event::Watch {
        client: ClientId(1),
        request: RequestId(1),
        job: job_id(1, 0),
    });
    assert!(refusals(&out)[0].contains("--job-retention"), "{out:?}");
}

#[test]
fn finished_jobs_older_than_the_age_are_dropped() {
    let mut h = Harness::new(keeping(Some(1_000), None));
    h.join(1, 1, &["f"]);
    run_job(&mut h, 0);
    h.now = 500;
    run_job(&mut h, 1);
    h.tick_at(999);
    assert_eq!(h.core.jobs(h.now).len(), 2);
    h.tick_at(1_000);
    assert_eq!(h.core.jobs(h.now).len(), 1, "job 0 finished at 0");
    h.tick_at(1_500);
    assert!(h.core.jobs(h.now).is_empty());
    assert_eq!(h.core.dropped_jobs(), 2);
}

#[test]
fn job_updates_report_unfinished_jobs_those_that_finished_and_those_dropped() {
    let mut h = Harness::new(keeping(None, Some(1)));
    h.join(1, 1, &["f"]);
    h.open(2, 0);
    run_job(&mut h, 0);
    let updates = h.core.job_updates(h.now);
    let ids: Vec<_> = updates.changed.iter().map(|j| (j.id, j.state)).collect();
    assert_eq!(
        ids,
        vec![
            (job_id(2, 0), JobState::Running),
            (job_id(1, 0), JobState::Succeeded)
        ]
    );
    assert!(updates.dropped.is_empty());
    // A finished job is reported once, then only the unfinished ones.
    let ids: Vec<_> = h
        .core
        .job_updates(h.now)
        .changed
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(ids, vec![job_id(2, 0)]);
    run_job(&mut h, 1);
    h.tick_at(h.now + 1);
    let updates = h.core.job_updates(h.now);
    assert_eq!(updates.dropped, vec![job_id(1, 0)]);
}

#[test]
fn a_worker_in_a_reused_record_is_sent_the_job_context_again() {
    let mut h = Harness::new(no_prefetch());
    h.join(1, 1, &["f"]);
    h.open(1, 0);
    let out = without_answers(h.submit(1, 0, vec![task(1, 0, "f")]));
    assert!(matches!(&out[0], Command::SendJob { worker, .. } if worker.0 == 1));
    // Worker 1 leaves holding task 0, which still names it...
    h.send(Event::WorkerLeft {
        worker: quarry_proto::WorkerId(1),
    });
    // ...until task 0 runs on worker 2: then nothing names worker 1's
    // record, and it is reused by worker 3.
    let out = without_answers(h.join(2, 1, &["f"]));
    assert_eq!(runs(&out), vec![(2, task_id(1, 0), 2)]);
    h.join(3, 1, &["f"]);
    let out = without_answers(h.submit(1, 0, vec![task(1, 1, "f")]));
    assert!(
        matches!(&out[0], Command::SendJob { worker, .. } if worker.0 == 3),
        "the new worker in the old record gets the job context: {out:?}"
    );
    assert_eq!(runs(&out), vec![(3, task_id(1, 1), 1)]);
}
