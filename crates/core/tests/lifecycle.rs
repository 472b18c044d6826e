//! Task and job lifecycle rules: retries, failures, cancellation, release,
//! worker loss, stale reports, exactly-once results, jobs and watchers.

mod common;

use common::*;
use quarry_core::{Command, CoreConfig, Event};
use quarry_proto::{ClientId, ErrorKind, JobSpec, JobState, RequestId, TaskOutcome, WorkerId};

#[test]
fn failed_attempt_is_retried_with_a_new_attempt_number() {
    let mut h = Harness::new(no_prefetch());
    h.join(1, 1, &["f"]);
    h.open(1, 0);
    let mut spec = task(1, 0, "f");
    spec.retries = 2;
    let id = spec.id;
    assert_eq!(runs(&h.submit(1, 0, vec![spec])), vec![(1, id, 1)]);

    let out = h.finish(1, err_report(id, 1, ErrorKind::Failed, "flaky"));
    assert!(dones(&out).is_empty(), "a retried attempt is not final");
    assert_eq!(runs(&out), vec![(1, id, 2)]);

    let out = h.succeed(1, id, 2);
    assert_eq!(dones(&out).len(), 1);
    assert!(matches!(dones(&out)[0].2, TaskOutcome::Ok(_)));
    let status = h.core.task_status(id).unwrap();
    assert_eq!((status.state.as_str(), status.attempts), ("done", 2));
}

#[test]
fn a_reported_lost_attempt_is_retried_from_the_worker_loss_budget() {
    let config = CoreConfig {
        max_worker_losses: 2,
        ..no_prefetch()
    };
    let mut h = Harness::new(config);
    h.join(1, 1, &["f"]);
    h.open(1, 0);
    // No retries of its own: an interpreter dying under the task is not
    // the task's failure, so it runs again anyway, at once.
    let id = task(1, 0, "f").id;
    assert_eq!(
        runs(&h.submit(1, 0, vec![task(1, 0, "f")])),
        vec![(1, id, 1)]
    );
    for attempt in 1..=2 {
        let out = h.finish(1, err_report(id, attempt, ErrorKind::WorkerLost, "killed"));
        assert!(dones(&out).is_empty(), "attempt {attempt} is retried");
        assert_eq!(runs(&out), vec![(1, id, attempt + 1)]);
    }
    let out = h.finish(
        1,
        err_report(id, 3, ErrorKind::WorkerLost, "killed by SIGKILL"),
    );
    let (kind, message) = error_of(&dones(&out)[0].2);
    assert_eq!(
        (kind, message.as_str()),
        (ErrorKind::WorkerLost, "killed by SIGKILL")
    );
    assert_eq!(h.state_of(id), "failed");
}

#[test]
fn the_final_error_text_reaches_the_client_after_the_last_retry() {
    let mut h = Harness::new(no_prefetch());
    h.join(1, 1, &["f"]);
    h.open(1, 0);
    let mut spec = task(1, 0, "f");
    spec.retries = 1;
    let id = spec.id;
    h.submit(1, 0, vec![spec]);
    h.finish(1, err_report(id, 1, ErrorKind::Failed, "first error"));
    let out = h.finish(1, err_report(id, 2, ErrorKind::Panicked, "second error"));
    let done = dones(&out);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].0, 1, "the owner gets it");
    assert_eq!(
        error_of(&done[0].2),
        (ErrorKind::Panicked, "second error".to_string())
    );
    let status = h.core.task_status(id).unwrap();
    assert_eq!(status.state, "failed");
    assert_eq!(status.outcome, Some(done[0].2.clone()));
}

#[test]
fn changed_inputs_and_rejections_are_not_retried() {
    for kind in [ErrorKind::InputChanged, ErrorKind::Rejected] {
        let mut h = Harness::new(no_prefetch());
        h.join(1, 1, &["f"]);
        h.open(1, 0);
        let mut spec = task(1, 0, "f");
        spec.retries = 5;
        let id = spec.id;
        h.submit(1, 0, vec![spec]);
        let out = h.finish(1, err_report(id, 1, kind, "no"));
        assert!(runs(&out).is_empty());
        assert_eq!(error_of(&dones(&out)[0].2).0, kind);
    }
}

#[test]
fn cancelling_queued_and_running_tasks() {
    let mut h = Harness::new(no_prefetch());
    h.join(1, 1, &["f"]);
    h.open(1, 0);
    let (a, b) = (task_id(1, 0), task_id(1, 1));
    h.submit(1, 0, vec![task(1, 0, "f"), task(1, 1, "f")]);
    h.start(1, a, 1);
    assert_eq!(
        (h.state_of(a).as_str(), h.state_of(b).as_str()),
        ("running", "queued")
    );

    let out = h.send(Event::CancelTasks {
        client: ClientId(1),
        request: RequestId(0),
        tasks: vec![b],
    });
    assert_eq!(error_of(&dones(&out)[0].2).0, ErrorKind::Cancelled);
    assert!(!out
        .iter()
        .any(|c| matches!(c, Command::CancelOnWorker { .. })));

    let out = h.send(Event::CancelTasks {
        client: ClientId(1),
        request: RequestId(0),
        tasks: vec![a],
    });
    assert!(out.contains(&Command::CancelOnWorker {
        worker: WorkerId(1),
        task: a
    }));
    assert_eq!(dones(&out).len(), 1);
    assert_eq!(h.state_of(a), "cancelled");

    // The worker's late report changes nothing.
    assert!(h.succeed(1, a, 1).is_empty());
    assert_eq!(h.state_of(a), "cancelled");
    let counts = h.core.job_info(job_id(1, 0), h.now).unwrap().counts;
    assert_eq!((counts.cancelled, counts.done), (2, 0));
}

#[test]
fn cancel_job_cancels_the_rest_and_later_submissions() {
    let mut h = Harness::new(no_prefetch());
    h.join(1, 1, &["f"]);
    h.open(1, 0);
    h.submit(1, 0, vec![task(1, 0, "f"), task(1, 1, "f")]);
    h.succeed(1, task_id(1, 0), 1);
    let out = h.send(Event::CancelJob {
        client: ClientId(1),
        request: RequestId(0),
        job: job_id(1, 0),
    });
    assert_eq!(dones(&out).len(), 1);
    let out = h.submit(1, 0, vec![task(1, 2, "f")]);
    assert!(runs(&out).is_empty());
    assert_eq!(error_of(&dones(&out)[0].2).0, ErrorKind::Cancelled);
    let out = without_answers(h.seal(1, 0));
    let Some(Command::JobFinished { info }) = out.last() else {
        panic!("expected JobFinished, got {out:?}");
    };
    assert_eq!(info.state, JobState::Cancelled);
    assert_eq!((info.counts.done, info.counts.cancelled), (1, 2));
}

#[test]
fn release_forgets_results_but_keeps_counts() {
    let mut h = Harness::new(no_prefetch());
    h.join(1, 2, &["f"]);
    h.open(1, 0);
    let (a, b) = (task_id(1, 0), task_id(1, 1));
    h.submit(1, 0, vec![task(1, 0, "f"), task(1, 1, "f")]);
    h.succeed(1, a, 1);
    assert!(h.core.task_status(a).unwrap().outcome.is_some());
    h.send(Event::Release { tasks: vec![a, b] });
    assert_eq!(h.core.task_status(a).unwrap().outcome, None);
    // Released before it finished: the owner still hears once, nothing is kept.
    assert_eq!(dones(&h.succeed(1, b, 1)).len(), 1);
    let b_status = h.core.task_status(b).unwrap();
    assert_eq!((b_status.state.as_str(), b_status.outcome), ("done", None));
    assert_eq!(h.core.job_info(job_id(1, 0), h.now).unwrap().counts.done, 2);
}

#[test]
fn release_keeps_the_rows_of_a_job_that_writes_a_manifest() {
    let mut h = Harness::new(no_prefetch());
    h.join(1, 2, &["f"]);
    h.open_spec(
        1,
        JobSpec {
            output: Some("s3://results/job/".into()),
            ..job_spec(1, 0)
        },
    );
    let (a, b) = (task_id(1, 0), task_id(1, 1));
    h.submit(1, 0, vec![task(1, 0, "f"), task(1, 1, "f")]);
    h.succeed(1, a, 1);
    h.send(Event::Release { tasks: vec![a, b] });
    assert_eq!(dones(&h.succeed(1, b, 1)).len(), 1);
    let (rows, _) = h.core.results(job_id(1, 0), None, 10).unwrap();
    assert!(rows.iter().all(|row| row.outcome.is_some()), "{rows:?}");
}

#[test]
fn a_silent_worker_is_dropped_and_its_tasks_go_first_to_another() {
    let config = CoreConfig {
        heartbeat_timeout_ms: 1_000,
        ..no_prefetch()
    };
    let mut h = Harness::new(config);
    h.join(1, 1, &["f"]);
    h.join(2, 1, &["f"]);
    h.open(1, 0);
    let tasks: Vec<_> = (0..4).map(|n| task(1, n, "f")).collect();
    let out = h.submit(1, 0, tasks);
    assert_eq!(
        runs(&out),
        vec![(1, task_id(1, 0), 1), (2, task_id(1, 1), 1)]
    );

    h.now = 600;
    h.send(Event::Heartbeat {
        worker: WorkerId(2),
    });
    assert!(h.tick_at(999).is_empty());
    let out = h.tick_at(1_000);
    assert_eq!(
        out[0],
        Command::DropWorker {
            worker: WorkerId(1)
        }
    );
    assert_eq!(h.core.worker_count(), 1);
    // Worker 2 finishes; the requeued task goes before tasks 2 and 3.
    let out = h.succeed(2, task_id(1, 1), 1);
    assert_eq!(runs(&out), vec![(2, task_id(1, 0), 2)]);
    // Reports from the dropped worker are ignored.
    assert!(h.succeed(1, task_id(1, 0), 1).is_empty());
}

#[test]
fn worker_left_requeues_without_drop_worker() {
    let mut h = Harness::new(no_prefetch());
    h.join(1, 1, &["f"]);
    h.open(1, 0);
    h.submit(1, 0, vec![task(1, 0, "f")]);
    let out = h.send(Event::WorkerLeft {
        worker: WorkerId(1),
    });
    assert!(out.is_empty());
    assert_eq!(h.state_of(task_id(1, 0)), "queued");
    let out = h.join(2, 1, &["f"]);
    assert_eq!(runs(&out), vec![(2, task_id(1, 0), 2)]);
}

#[test]
fn too_many_lost_workers_fail_the_task() {
    let config = CoreConfig {
        max_worker_losses: 2,
        ..no_prefetch()
    };
    let mut h = Harness::new(config);
    h.open(1, 0);
    h.submit(1, 0, vec![task(1, 0, "f")]);
    for w in 1..=3 {
        h.join(w, 1, &["f"]);
        let out = h.send(Event::WorkerLeft {
            worker: WorkerId(w),
        });
        if w < 3 {
            assert!(dones(&out).is_empty());
        } else {
            let (kind, message) = error_of(&dones(&out)[0].2);
            assert_eq!(kind, ErrorKind::WorkerLost);
            assert!(message.contains("3 times"), "{message}");
        }
    }
    assert_eq!(h.state_of(task_id(1, 0)), "failed");
}

#[test]
fn stale_reports_are_ignored_and_each_task_ends_once() {
    let mut h = Harness::new(no_prefetch());
    h.join(1, 1, &["f"]);
    h.join(2, 1, &["f"]);
    h.open(1, 0);
    let mut spec = task(1, 0, "f");
    spec.retries = 3;
    let id = spec.id;
    h.submit(1, 0, vec![spec]);
    h.finish(1, err_report(id, 1, ErrorKind::Failed, "x"));
    // Attempt 2 now runs on worker 1 again; worker 2 and attempt 1 are stale.
    assert!(h.succeed(2, id, 2).is_empty());
    assert!(h.succeed(1, id, 1).is_empty());
    assert!(h.start(1, id, 1).is_empty());
    assert_eq!(h.state_of(id), "assigned");
    assert_eq!(dones(&h.succeed(1, id, 2)).len(), 1);
    // A duplicate of the final report changes nothing.
    assert!(h.succeed(1, id, 2).is_empty());
    assert_eq!(h.state_of(id), "done");
}

#[test]
fn max_fails_stops_the_job() {
    let mut h = Harness::new(no_prefetch());
    h.join(1, 1, &["f"]);
    let mut spec = job_spec(1, 0);
    spec.max_fails = Some(1);
    h.open_spec(1, spec);
    let tasks: Vec<_> = (0..3).map(|n| task(1, n, "f")).collect();
    h.submit(1, 0, tasks);
    h.seal(1, 0);
    let out = h.finish(1, err_report(task_id(1, 0), 1, ErrorKind::Failed, "bad"));
    let done = dones(&out);
    assert_eq!(done.len(), 3);
    assert_eq!(error_of(&done[1].2).0, ErrorKind::Cancelled);
    assert!(error_of(&done[1].2).1.contains("max_fails"));
    assert!(runs(&out).is_empty());
    let Some(Command::JobFinished { info }) = out.last() else {
        panic!("expected JobFinished, got {out:?}");
    };
    assert_eq!(info.state, JobState::Cancelled);
    assert_eq!((info.counts.failed, info.counts.cancelled), (1, 2));
}

#[test]
fn send_job_precedes_the_first_run_on_each_worker_and_again_after_rejoin() {
    let mut h = Harness::new(no_prefetch());
    h.join(1, 1, &["f"]);
    h.open(1, 0);
    let out = h.submit(1, 0, vec![task(1, 0, "f"), task(1, 1, "f")]);
    let out = without_answers(out);
    assert!(
        matches!(&out[0], Command::SendJob { worker: WorkerId(1), spec } if spec.id == job_id(1, 0))
    );
    assert!(matches!(out[1], Command::Run { .. }));
    let out = h.succeed(1, task_id(1, 0), 1);
    assert!(!out.iter().any(|c| matches!(c, Command::SendJob { .. })));
    assert_eq!(runs(&out).len(), 1);

    h.send(Event::WorkerLeft {
        worker: WorkerId(1),
    });
    let out = h.join(1, 1, &["f"]);
    assert!(matches!(out[0], Command::SendJob { .. }));
    assert_eq!(runs(&out), vec![(1, task_id(1, 1), 2)]);
}

#[test]
fn job_rules_open_before_submit_unique_ids_and_owner_ranges() {
    let mut h = Harness::new(no_prefetch());
    let out = h.submit(1, 0, vec![task(1, 0, "f")]);
    assert!(
        matches!(&out[..], [Command::Refused { client: ClientId(1), reason, .. }] if reason.contains("OpenJob"))
    );
    assert!(matches!(&h.open(1, 0)[..], [Command::Accepted { .. }]));
    let other = JobSpec {
        name: "another".into(),
        ..job_spec(1, 0)
    };
    assert!(refusals(&h.open_spec(1, other))[0].contains("already open"));
    let out = h.open_spec(2, job_spec(1, 5));
    assert!(refusals(&out)[0].contains("id range"), "{out:?}");
    h.submit(1, 0, vec![task(1, 0, "f")]);
    let mut changed = task(1, 0, "f");
    changed.key = "changed".into();
    let out = h.submit(1, 0, vec![task(1, 1, "f"), changed]);
    assert!(refusals(&out)[0].contains("duplicate"), "{out:?}");
    let out = h.submit(1, 0, vec![task(1, 2, "f"), task(1, 2, "f")]);
    assert_eq!(refusals(&out).len(), 1);
    let out = h.submit(1, 0, vec![task(2, 0, "f")]);
    assert!(refusals(&out)[0].contains("id range"));
    assert_eq!(h.core.job_info(job_id(1, 0), 0).unwrap().counts.total, 1);
    h.seal(1, 0);
    let out = h.submit(1, 0, vec![task(1, 3, "f")]);
    assert!(refusals(&out)[0].contains("sealed"));
}

#[test]
fn resent_requests_are_answered_again_without_doing_anything_twice() {
    let mut h = Harness::new(no_prefetch());
    h.open(1, 0);
    assert!(matches!(&h.open(1, 0)[..], [Command::Accepted { .. }]));
    h.submit(1, 0, vec![task(1, 0, "f"), task(1, 1, "f")]);
    let out = h.submit(1, 0, vec![task(1, 0, "f"), task(1, 1, "f")]);
    assert!(matches!(&out[..], [Command::Accepted { .. }]), "{out:?}");
    h.seal(1, 0);
    let out = h.seal(1, 0);
    assert!(matches!(&out[..], [Command::Accepted { .. }]), "{out:?}");
    // A resent submission of tasks already in a sealed job is no addition.
    let out = h.submit(1, 0, vec![task(1, 1, "f")]);
    assert!(matches!(&out[..], [Command::Accepted { .. }]), "{out:?}");
    assert_eq!(h.core.job_info(job_id(1, 0), 0).unwrap().counts.total, 2);
    // Only the owner seals.
    h.open(1, 1);
    let out = h.send(Event::JobSealed {
        client: ClientId(2),
        request: RequestId(0),
        job: job_id(1, 1),
    });
    assert!(
        refusals(&out)[0].contains("only the client that opened"),
        "{out:?}"
    );
}

#[test]
fn sealed_job_finishes_once_with_metrics() {
    let mut h = Harness::new(no_prefetch());
    h.join(1, 2, &["f"]);
    h.now = 100;
    h.open(1, 0);
    h.submit(1, 0, vec![task(1, 0, "f"), task(1, 1, "f")]);
    h.now = 150;
    h.start(1, task_id(1, 0), 1);
    h.now = 180;
    let mut report = ok_report(task_id(1, 0), 1);
    report.stats.bytes_from_store = 7;
    h.finish(1, report);
    h.seal(1, 0);
    h.now = 400;
    let out = h.succeed(1, task_id(1, 1), 1);
    let finished: Vec<_> = out
        .iter()
        .filter_map(|c| match c {
            Command::JobFinished { info } => Some(info.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(finished.len(), 1);
    let info = &finished[0];
    assert_eq!(info.state, JobState::Succeeded);
    assert_eq!((info.counts.total, info.counts.done), (2, 2));
    assert_eq!((info.stats.bytes_from_store, info.elapsed_ms), (7, 300));
    assert_eq!(
        h.core.job_info(job_id(1, 0), 9_999).unwrap().elapsed_ms,
        300
    );
    assert!(
        without_answers(h.seal(1, 0)).is_empty(),
        "finishes only once"
    );
}

#[test]
fn a_failed_task_fails_the_job() {
    let mut h = Harness::new(no_prefetch());
    h.join(1, 1, &["f"]);
    h.open(1, 0);
    h.submit(1, 0, vec![task(1, 0, "f")]);
    h.seal(1, 0);
    let out = h.finish(1, err_report(task_id(1, 0), 1, ErrorKind::Failed, "x"));
    assert!(
        matches!(out.last(), Some(Command::JobFinished { info }) if info.state == JobState::Failed)
    );
}

#[test]
fn watchers_get_results_and_throttled_progress() {
    let mut h = Harness::new(no_prefetch());
    h.join(1, 1, &["f"]);
    h.open(1, 0);
    h.submit(1, 0, (0..3).map(|n| task(1, n, "f")).collect());
    h.seal(1, 0);
    let out = h.send(Event::Watch {
        client: ClientId(9),
        request: RequestId(4),
        job: job_id(1, 0),
    });
    assert!(
        matches!(&out[..], [Command::Accepted { client: ClientId(9), request: RequestId(4) }, Command::JobProgress { client: ClientId(9), info }] if info.counts.assigned == 1),
        "{out:?}"
    );

    h.now = 10;
    let out = h.succeed(1, task_id(1, 0), 1);
    let done = dones(&out);
    assert_eq!(done.iter().map(|d| d.0).collect::<Vec<_>>(), vec![9, 1]);
    assert!(
        h.tick_at(200).is_empty(),
        "less than 250 ms since the last progress"
    );
    let out = h.tick_at(260);
    assert!(
        matches!(&out[..], [Command::JobProgress { client: ClientId(9), info }] if info.counts.done == 1)
    );
    assert!(h.tick_at(600).is_empty(), "nothing changed");

    h.succeed(1, task_id(1, 1), 1);
    let out = h.succeed(1, task_id(1, 2), 1);
    let progress = out
        .iter()
        .filter(
            |c| matches!(c, Command::JobProgress { info, .. } if info.state == JobState::Succeeded),
        )
        .count();
    assert_eq!(progress, 1, "final progress once: {out:?}");
    assert!(h.tick_at(2_000).is_empty());
}

#[test]
fn the_owner_watching_its_own_job_gets_each_result_once() {
    let mut h = Harness::new(no_prefetch());
    h.join(1, 1, &["f"]);
    h.open(1, 0);
    h.submit(1, 0, vec![task(1, 0, "f")]);
    h.send(Event::Watch {
        client: ClientId(1),
        request: RequestId(0),
        job: job_id(1, 0),
    });
    assert_eq!(dones(&h.succeed(1, task_id(1, 0), 1)).len(), 1);
}

#[test]
fn client_left_cancels_unsealed_jobs_only() {
    let mut h = Harness::new(no_prefetch());
    h.join(1, 1, &["f"]);
    h.open(1, 0);
    h.open(1, 1);
    h.submit(1, 0, vec![task(1, 0, "f")]);
    h.submit(1, 1, vec![task(1, 1, "f")]);
    h.seal(1, 1);
    let out = h.send(Event::ClientLeft {
        client: ClientId(1),
    });
    assert!(out.contains(&Command::CancelOnWorker {
        worker: WorkerId(1),
        task: task_id(1, 0)
    }));
    assert!(out.iter().any(|c| matches!(c, Command::JobFinished { info }
        if info.id == job_id(1, 0) && info.state == JobState::Cancelled)));
    // The sealed job runs on.
    assert_eq!(runs(&out), vec![(1, task_id(1, 1), 1)]);
    assert_eq!(h.state_of(task_id(1, 1)), "assigned");
}

#[test]
fn results_are_paged_in_task_id_order() {
    let mut h = Harness::new(no_prefetch());
    h.open(1, 0);
    h.submit(
        1,
        0,
        vec![task(1, 5, "f"), task(1, 1, "f"), task(1, 3, "f")],
    );
    let (rows, more) = h.core.results(job_id(1, 0), None, 2).unwrap();
    assert_eq!(
        rows.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![task_id(1, 1), task_id(1, 3)]
    );
    assert!(more);
    assert_eq!(rows[0].state, "queued");
    let (rows, more) = h
        .core
        .results(job_id(1, 0), Some(task_id(1, 3)), 2)
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert!(!more);
    assert!(h.core.results(job_id(1, 7), None, 2).is_none());
    assert_eq!(h.core.jobs(0).len(), 1);
    assert_eq!(h.core.queued_tasks(), 3);
}
