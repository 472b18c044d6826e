//! Rebuilding the core from its durable changes: a full replay gives back
//! every job and result exactly; a replay of any prefix (a journal cut
//! anywhere) gives back what that prefix had finished and queues the rest
//! with the next attempt number; a snapshot replays to the same state.

mod common;

use common::*;
use quarry_core::{Change, Command, Core, CoreConfig, Event};
use quarry_proto::{ClientId, ErrorKind, JobSpec, RequestId, TaskId, TaskStatus, WorkerId};
use std::collections::BTreeMap;

fn recording() -> CoreConfig {
    CoreConfig {
        record_changes: true,
        ..no_prefetch()
    }
}

/// The durable changes among `commands`.
fn changes(commands: &[Command]) -> Vec<Change> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::Record(change) => Some(change.clone()),
            _ => None,
        })
        .collect()
}

/// A run with everything the journal must survive: retries, a final
/// failure, a cancelled task, a job stopped by `max_fails`, a lost worker,
/// an unsealed job left open and a finished job. Returns the core and
/// every change it emitted, in order.
fn eventful_run() -> (Harness, Vec<Change>) {
    let mut h = Harness::new(recording());
    let mut log = Vec::new();
    let mut keep = |out: Vec<Command>| log.extend(changes(&out));
    keep(h.join(1, 2, &["f"]));
    keep(h.join(2, 2, &["f"]));
    // Job 0: 20 tasks, retries, sealed, runs to the end.
    keep(h.open(1, 0));
    let tasks = (0..20)
        .map(|n| {
            let mut spec = task(1, n, "f");
            spec.retries = 1;
            spec
        })
        .collect();
    keep(h.submit(1, 0, tasks));
    keep(h.seal(1, 0));
    // Job 1: stops after 2 failures.
    keep(h.open_spec(
        1,
        JobSpec {
            max_fails: Some(2),
            ..job_spec(1, 1)
        },
    ));
    keep(h.submit(1, 1, (100..110).map(|n| task(1, n, "f")).collect()));
    keep(h.seal(1, 1));
    // Job 2: never sealed, a few tasks queued behind the others.
    keep(h.open(2, 2));
    keep(h.submit(2, 2, (0..5).map(|n| task(2, n, "f")).collect()));

    let mut step = 0u64;
    while let Some((worker, id, attempt)) = next_run(&h) {
        h.now += 3;
        step += 1;
        // Every seventh attempt fails (retried once in job 0), and every
        // other task of job 1 (which stops it).
        let in_job_1 = (100..110).contains(&(id.0 & 0xff_ffff));
        let fails = step.is_multiple_of(7) || (in_job_1 && id.0.is_multiple_of(2));
        let report = match fails {
            true => err_report(id, attempt, ErrorKind::Failed, &format!("flaky {step}")),
            false => {
                let mut report = ok_report(id, attempt);
                report.stats.duration_ms = step;
                report.outputs = vec![format!("file:///out/{}", id.0)];
                report
            }
        };
        keep(h.start(worker, id, attempt));
        keep(h.finish(worker, report));
        if step == 9 {
            keep(h.send(Event::CancelTasks {
                client: ClientId(1),
                request: RequestId(0),
                tasks: vec![task_id(1, 19)],
            }));
        }
        if step == 12 {
            // Worker 2 goes: what it held is requeued.
            keep(h.send(Event::WorkerLeft {
                worker: WorkerId(2),
            }));
        }
        if step == 25 {
            // Stop with attempts in flight.
            break;
        }
    }
    (h, log)
}

/// An attempt some worker holds, by asking the core for running rows.
fn next_run(h: &Harness) -> Option<(u32, TaskId, u32)> {
    let jobs = [job_id(1, 0), job_id(1, 1), job_id(2, 2)];
    for job in jobs {
        let (rows, _) = h.core.results(job, None, usize::MAX)?;
        if let Some(row) = rows
            .iter()
            .find(|r| r.state == "assigned" || r.state == "running")
        {
            let worker = row
                .worker
                .as_deref()?
                .trim_start_matches('w')
                .parse()
                .ok()?;
            return Some((worker, row.id, row.attempts));
        }
    }
    None
}

fn all_rows(core: &Core) -> BTreeMap<TaskId, TaskStatus> {
    let mut rows = BTreeMap::new();
    for info in core.jobs(0) {
        for row in core.results(info.id, None, usize::MAX).unwrap().0 {
            rows.insert(row.id, row);
        }
    }
    rows
}

fn replayed(changes: &[Change], now: u64) -> (Core, Vec<Command>, quarry_core::Restored) {
    let mut core = Core::new(recording());
    for change in changes {
        core.replay(change.clone());
    }
    let mut out = Vec::new();
    let restored = core.finish_replay(now, &mut out);
    (core, out, restored)
}

#[test]
fn a_full_replay_gives_back_every_job_and_result() {
    let (h, log) = eventful_run();
    let (core, out, restored) = replayed(&log, h.now);
    assert_eq!(restored.skipped, 0);
    assert_eq!(restored.jobs, 3);
    let original = all_rows(&h.core);
    // The scenario has what it claims: every end state, a stopped job,
    // retried and requeued attempts, tasks in flight.
    for state in ["done", "failed", "cancelled", "assigned", "queued"] {
        assert!(
            original.values().any(|r| r.state == state),
            "no {state} task"
        );
    }
    assert!(log.iter().any(|c| matches!(c, Change::JobStopped { .. })));
    assert!(original.values().any(|r| r.attempts > 1));
    assert!(restored.requeued > 0);
    let back = all_rows(&core);
    assert_eq!(original.len(), 35);
    for (id, row) in &original {
        let again = &back[id];
        if row.state == "assigned" || row.state == "running" {
            // In flight at the end: queued again, its next attempt to come.
            assert_eq!(again.state, "queued", "{id}");
            assert_eq!(again.attempts, row.attempts, "{id}");
        } else {
            assert_eq!(again, row, "{id}");
        }
    }
    for info in h.core.jobs(h.now) {
        let again = core.job_info(info.id, h.now).unwrap();
        if info.state != quarry_proto::JobState::Running {
            assert_eq!(again, info);
        }
    }
    // Finished jobs do not finish again.
    assert!(
        !out.iter().any(|c| matches!(c, Command::JobFinished { .. })),
        "{out:?}"
    );
}

#[test]
fn a_replay_of_any_prefix_keeps_what_it_finished_and_requeues_the_rest() {
    let (h, log) = eventful_run();
    let finals = all_rows(&h.core);
    for cut in 0..=log.len() {
        let (mut core, _, restored) = replayed(&log[..cut], h.now);
        assert_eq!(restored.skipped, 0, "cut at {cut}");
        let rows = all_rows(&core);
        let mut requeued = 0;
        for (id, row) in &rows {
            let last = &finals[id];
            match row.state.as_str() {
                "done" | "failed" | "cancelled" => {
                    // What ended before the cut ended the same way.
                    assert_eq!(row.state, last.state, "{id} at cut {cut}");
                    assert_eq!(row.outcome, last.outcome, "{id} at cut {cut}");
                }
                "queued" => requeued += usize::from(row.attempts > 0),
                other => panic!("{id} is {other} after a replay"),
            }
            assert!(row.attempts <= last.attempts, "{id} at cut {cut}");
        }
        assert_eq!(requeued, restored.requeued, "cut at {cut}");
        // The restored core runs the rest with the next attempt numbers.
        let mut out = Vec::new();
        core.handle(
            h.now,
            Event::WorkerJoined {
                worker: WorkerId(7),
                name: "w7".into(),
                slots: 64,
                functions: vec!["f".into()],
                inventory: Vec::new(),
                host: String::new(),
            },
            &mut out,
        );
        let mut ran = 0;
        for command in &out {
            if let Command::Run { run, .. } = command {
                let before = rows[&run.task.id()].attempts;
                assert_eq!(run.attempt, before + 1, "cut at {cut}");
                ran += 1;
            }
        }
        let queued = rows.values().filter(|r| r.state == "queued").count();
        assert_eq!(ran, queued.min(64), "every queued task runs, cut at {cut}");
    }
}

#[test]
fn a_snapshot_replays_to_the_same_state() {
    let (h, log) = eventful_run();
    let (from_log, _, _) = replayed(&log, h.now);
    let (from_snapshot, _, restored) = replayed(&h.core.snapshot(), h.now);
    assert_eq!(restored.skipped, 0);
    assert_eq!(all_rows(&from_snapshot), all_rows(&from_log));
    for info in from_log.jobs(h.now) {
        assert_eq!(from_snapshot.job_info(info.id, h.now).unwrap(), info);
    }
    // And a snapshot of the restored core is the same snapshot again.
    assert_eq!(from_snapshot.snapshot(), from_log.snapshot());
}

#[test]
fn changes_naming_unknown_jobs_or_tasks_are_skipped_and_counted() {
    let mut core = Core::new(recording());
    core.replay(Change::JobSealed { job: job_id(1, 0) });
    core.replay(Change::Assigned {
        task: task_id(1, 0),
        attempt: 1,
        local: None,
    });
    let restored = core.finish_replay(0, &mut Vec::new());
    assert_eq!((restored.jobs, restored.skipped), (0, 2));
}

#[test]
fn a_resumed_client_gets_final_results_again_and_lost_tasks_fail() {
    let mut h = Harness::new(no_prefetch());
    h.join(1, 1, &["f"]);
    h.open(1, 0);
    h.submit(1, 0, vec![task(1, 0, "f"), task(1, 1, "f")]);
    h.succeed(1, task_id(1, 0), 1);
    let out = h.send(Event::Resume {
        client: ClientId(1),
        request: RequestId(3),
        tasks: vec![task_id(1, 0), task_id(1, 1), task_id(1, 9), task_id(2, 0)],
    });
    let done = dones(&out);
    assert_eq!(done.len(), 3, "{out:?}");
    assert_eq!(done[0].1, task_id(1, 0));
    assert!(matches!(done[0].2, quarry_proto::TaskOutcome::Ok(_)));
    assert_eq!(error_of(&done[1].2).0, ErrorKind::Lost);
    assert!(error_of(&done[1].2).1.contains("unknown"));
    assert_eq!(
        done[2].1,
        task_id(2, 0),
        "another client's task is not shown"
    );
    assert_eq!(error_of(&done[2].2).0, ErrorKind::Lost);
    assert!(matches!(
        out.last(),
        Some(Command::Accepted {
            request: RequestId(3),
            ..
        })
    ));
}
