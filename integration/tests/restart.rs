//! Issue #9 end to end: a scheduler killed with `kill -9` during a
//! 10,000-task job and restarted with the same journal. Real processes
//! over TCP loopback: `quarry scheduler --journal`, two `quarry worker`s
//! and `quarry submit --watch`, none of them touched after the kill
//! except the scheduler, which is started again.
//!
//! Each trial checks, with the manifest read by the `parquet` crate (not
//! quarry's code): the job completes, its manifest has exactly one row per
//! task, at least 99% of the tasks the scheduler had reported done before
//! the kill were not run again (their attempt count is 1), the workers
//! registered again once each, and the watching client reconnected by
//! itself and exited 0.
//!
//! `QUARRY_RESTART_TRIALS` sets the number of trials (3 by default);
//! `bench/restart/run.sh` runs 20 and prints the tally.

use arrow::array::{Array, StringArray, UInt32Array};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use quarry::{Client, ClientOptions};
use quarry_integration::{free_loopback_endpoint, quarry_bin, worker_args, CapturedProcess};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const TASKS: usize = 10_000;
/// Milliseconds each task sleeps: with 4 slots the job takes several
/// seconds, so the kill lands in the middle of it.
const TASK_MS: u64 = 3;
/// The kill comes once the scheduler reports this many tasks done.
const KILL_AFTER_DONE: u64 = 2_500;
/// Bounds every wait on a process (setup and the job itself, not a
/// measurement).
const LIMIT: Duration = Duration::from_secs(180);

fn quarry_process(name: &str, args: &[String]) -> CapturedProcess {
    let mut command = Command::new(quarry_bin());
    command.args(args).env("RUST_LOG", "info");
    CapturedProcess::spawn(name, command, LIMIT).expect("start quarry")
}

fn scheduler(address: &str, journal: &Path) -> CapturedProcess {
    let scheduler = quarry_process(
        "scheduler",
        &[
            "scheduler".into(),
            "--listen".into(),
            address.into(),
            "--dashboard".into(),
            "none".into(),
            "--journal".into(),
            journal.display().to_string(),
        ],
    );
    scheduler.wait_for_scheduler_endpoint();
    scheduler
}

fn write_job(dir: &Path) -> std::path::PathBuf {
    let items = vec![TASK_MS.to_string(); TASKS].join(", ");
    let job = dir.join("job.yaml");
    std::fs::write(
        &job,
        format!(
            "name: restart\nitems: [{items}]\nfunction: sleep_ms\noutput: {}/\n",
            dir.join("out").display()
        ),
    )
    .unwrap();
    job
}

/// `(key, attempts)` of every manifest row.
fn manifest_rows(path: &Path) -> Vec<(String, u32)> {
    let file = std::fs::File::open(path)
        .unwrap_or_else(|e| panic!("{}: {e} (no manifest was written)", path.display()));
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let keys = batch
            .column_by_name("key")
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .expect("a utf8 `key` column");
        let attempts = batch
            .column_by_name("attempts")
            .and_then(|c| c.as_any().downcast_ref::<UInt32Array>())
            .expect("a uint32 `attempts` column");
        for i in 0..batch.num_rows() {
            rows.push((keys.value(i).to_string(), attempts.value(i)));
        }
    }
    rows
}

/// What one trial saw.
struct Trial {
    done_before_kill: usize,
    rerun_after_done: usize,
    rerun_in_flight: usize,
    downtime: Duration,
}

fn run_trial(n: usize) -> Trial {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let address = free_loopback_endpoint();
    let job = write_job(dir.path());
    let first = scheduler(&address, &journal);
    let workers: Vec<CapturedProcess> = ["w1", "w2"]
        .iter()
        .map(|name| {
            let worker = quarry_process(name, &worker_args(&address, name, dir.path()));
            worker.wait_for_line("registered with the scheduler");
            worker
        })
        .collect();
    let mut submit = quarry_process(
        "submit",
        &[
            "submit".into(),
            job.display().to_string(),
            "--scheduler".into(),
            address.clone(),
            "--watch".into(),
        ],
    );
    submit.wait_for_line("submitting job");

    // Watch from the outside until the job is well under way, then take
    // the tasks the scheduler reports done and kill it at once.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let done_before_kill: HashSet<String> = runtime.block_on(async {
        let mut options = ClientOptions::new(address.clone());
        options.handshake_timeout = Duration::from_secs(30);
        let observer = Client::connect_with(options).await.expect("connect");
        let deadline = Instant::now() + LIMIT;
        let job = loop {
            let jobs = observer.jobs().await.unwrap();
            if let Some(job) = jobs.iter().find(|j| j.name == "restart") {
                if job.counts.done >= KILL_AFTER_DONE {
                    break job.id;
                }
            }
            assert!(Instant::now() < deadline, "the job did not get going");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        observer
            .results(job)
            .await
            .unwrap()
            .into_iter()
            .filter(|row| row.state == "done")
            .map(|row| row.key)
            .collect()
    });
    let killed_at = Instant::now();
    let first_output = first.stop();
    assert!(done_before_kill.len() < TASKS, "killed after the job ended");

    let second = scheduler(&address, &journal);
    let downtime = killed_at.elapsed();
    let status = submit.wait_exit();
    let submit_output = submit.output();
    assert!(status.success(), "submit --watch failed:\n{submit_output}");
    assert!(
        submit_output.contains("reconnected to the scheduler"),
        "the watching client did not say it reconnected:\n{submit_output}"
    );

    // The job's manifest: exactly one row per task.
    let rows = manifest_rows(&dir.path().join("out/_quarry/manifest.parquet"));
    assert_eq!(rows.len(), TASKS, "one row per task");
    let attempts: HashMap<String, u32> = rows.into_iter().collect();
    assert_eq!(attempts.len(), TASKS, "no task twice");
    assert!(dir.path().join("out/_SUCCESS").exists());
    let rerun_after_done = done_before_kill
        .iter()
        .filter(|key| attempts[*key] > 1)
        .count();
    let rerun_in_flight = attempts.values().filter(|&&a| a > 1).count() - rerun_after_done;
    assert!(
        rerun_after_done * 100 <= done_before_kill.len(),
        "trial {n}: {rerun_after_done} of the {} tasks done before the kill ran again",
        done_before_kill.len()
    );

    // The workers carried on by themselves: each registered once more.
    for worker in workers {
        let output = worker.stop();
        let registrations = output.matches("registered with the scheduler").count();
        assert_eq!(
            registrations, 2,
            "one registration per scheduler:\n{output}"
        );
    }
    let second_output = second.stop();
    assert!(
        second_output.contains("journal replayed"),
        "{first_output}\n{second_output}"
    );
    Trial {
        done_before_kill: done_before_kill.len(),
        rerun_after_done,
        rerun_in_flight,
        downtime,
    }
}

#[test]
fn a_scheduler_killed_mid_job_resumes_from_its_journal() {
    let trials: usize = std::env::var("QUARRY_RESTART_TRIALS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3);
    let mut tally = Vec::new();
    for n in 1..=trials {
        let trial = run_trial(n);
        println!(
            "trial {n}: {} tasks done before the kill, {} of them run again; {} in flight run \
             again; scheduler down {:.1} s",
            trial.done_before_kill,
            trial.rerun_after_done,
            trial.rerun_in_flight,
            trial.downtime.as_secs_f64()
        );
        tally.push(trial);
    }
    let done: usize = tally.iter().map(|t| t.done_before_kill).sum();
    let rerun: usize = tally.iter().map(|t| t.rerun_after_done).sum();
    let in_flight: usize = tally.iter().map(|t| t.rerun_in_flight).sum();
    println!(
        "tally: {trials} trials passed; {done} tasks done before the kills, {rerun} of them run \
         again ({:.3}%); {in_flight} in-flight tasks run again",
        rerun as f64 * 100.0 / done.max(1) as f64
    );
}
