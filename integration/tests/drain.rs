//! Draining a worker (issue #14 item 5) with real processes over TCP
//! loopback: `quarry drain NAME`, SIGTERM and `--lifetime` each make a
//! worker finish its running tasks, give back its queued ones and exit 0,
//! while the job goes on on another worker. No task is lost or run twice:
//! every command notes its start and its end in files, and each task
//! appears once in each.
//!
//! The scheduler's heartbeat timeout is 10 minutes, so only the drain can
//! hand the tasks on: a drain that relied on the timeout would not finish
//! within the test's bounds.
//!
//! Build the binary first: `cargo build -p quarry-cli`.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use quarry_integration::{quarry_bin, CapturedProcess};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Bounds waits for things that take a few seconds when they work (not a
/// timing assertion).
const PATIENCE: Duration = Duration::from_secs(90);
const TASKS: usize = 24;

fn quarry(name: &str, args: &[&str]) -> CapturedProcess {
    let mut command = Command::new(quarry_bin());
    command.args(args).env("RUST_LOG", "info");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("QUARRY_") && key != "QUARRY_BIN" {
            command.env_remove(&key);
        }
    }
    CapturedProcess::spawn(name, command, PATIENCE).expect("cannot start quarry")
}

/// How many times each line appears in a file (missing: none).
fn tally(path: &Path) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        *counts.entry(line.to_string()).or_insert(0) += 1;
    }
    counts
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How the first worker is made to drain.
enum Drain {
    Command,
    Sigterm,
    Lifetime,
}

fn drain_mid_job(how: Drain) {
    let dir = tempfile::tempdir().unwrap();
    let (started, ended) = (dir.path().join("started"), dir.path().join("ended"));
    let job = dir.path().join("job.yaml");
    let items: Vec<String> = (0..TASKS).map(|i| format!("t{i}")).collect();
    std::fs::write(
        &job,
        format!(
            "name: drain\nitems: [{}]\ncommand: [sh, -c, 'echo \"$QUARRY_TASK_KEY\" >> \"$STARTED\"; \
             sleep 0.5; echo \"$QUARRY_TASK_KEY\" >> \"$ENDED\"']\nenv:\n  STARTED: {}\n  ENDED: {}\n",
            items.join(", "),
            started.display(),
            ended.display()
        ),
    )
    .unwrap();
    let scheduler = quarry(
        "scheduler",
        &[
            "scheduler",
            "--listen",
            "tcp://127.0.0.1:0",
            "--dashboard",
            "none",
            "--heartbeat-timeout",
            "10m",
        ],
    );
    let endpoint = scheduler.wait_for_scheduler_endpoint();
    let cache = |name: &str| dir.path().join(name).display().to_string();
    let mut first_args = vec![
        "worker".to_string(),
        endpoint.clone(),
        "--nthreads".into(),
        "2".into(),
        "--name".into(),
        "first".into(),
        "--cache-dir".into(),
        cache("first"),
    ];
    if matches!(how, Drain::Lifetime) {
        first_args.extend(["--lifetime".into(), "3s".into()]);
    }
    let first_args: Vec<&str> = first_args.iter().map(String::as_str).collect();
    let mut first = quarry("worker first", &first_args);
    first.wait_for_line("registered with the scheduler");
    let job_path = job.display().to_string();
    let mut submit = quarry(
        "submit",
        &["submit", &job_path, "--scheduler", &endpoint, "--watch"],
    );
    wait_until("the first worker to start tasks", || {
        tally(&started).len() >= 2
    });
    let second = quarry(
        "worker second",
        &[
            "worker",
            &endpoint,
            "--nthreads",
            "2",
            "--name",
            "second",
            "--cache-dir",
            &cache("second"),
        ],
    );
    second.wait_for_line("registered with the scheduler");
    match how {
        Drain::Command => {
            let mut drain = quarry("drain", &["drain", "first", "--scheduler", &endpoint]);
            assert!(drain.wait_exit().success(), "{}", drain.output());
            assert!(drain.output().contains("is draining"), "{}", drain.output());
        }
        Drain::Sigterm => kill(Pid::from_raw(first.id() as i32), Signal::SIGTERM).unwrap(),
        Drain::Lifetime => {}
    }
    let status = first.wait_exit();
    let first_output = first.output();
    assert!(
        status.success(),
        "the drained worker exited {status}:\n{first_output}"
    );
    assert!(first_output.contains("drained; leaving"), "{first_output}");

    let status = submit.wait_exit();
    assert!(status.success(), "submit --watch:\n{}", submit.output());
    // Every task ran once, to its end: none lost, none started twice.
    // Task keys are the items' positions.
    let expected: BTreeMap<String, usize> = (0..TASKS).map(|i| (format!("{i:05}"), 1)).collect();
    println!("{first_output}");
    assert_eq!(tally(&ended), expected, "tasks that ran to their end");
    assert_eq!(tally(&started), expected, "tasks that started");
    let scheduler_output = scheduler.stop();
    assert!(
        scheduler_output.contains("worker drained and left"),
        "{scheduler_output}"
    );
    drop(second);
}

#[test]
fn quarry_drain_hands_a_workers_queue_on_and_it_exits_0() {
    drain_mid_job(Drain::Command);
}

#[test]
fn sigterm_drains_a_worker() {
    drain_mid_job(Drain::Sigterm);
}

#[test]
fn a_worker_drains_at_the_end_of_its_lifetime() {
    drain_mid_job(Drain::Lifetime);
}

#[test]
fn draining_an_unknown_worker_is_refused_by_name() {
    let scheduler = quarry(
        "scheduler",
        &[
            "scheduler",
            "--listen",
            "tcp://127.0.0.1:0",
            "--dashboard",
            "none",
        ],
    );
    let endpoint = scheduler.wait_for_scheduler_endpoint();
    let mut drain = quarry("drain", &["drain", "nobody", "--scheduler", &endpoint]);
    let status = drain.wait_exit();
    assert!(!status.success());
    assert!(
        drain.output().contains("no worker `nobody` is connected"),
        "{}",
        drain.output()
    );
}
