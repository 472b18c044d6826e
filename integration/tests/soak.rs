//! Soak (issue #9): 1,000 jobs of 2,000 no-op tasks, one after another, on
//! one `quarry scheduler` process with two workers. The scheduler keeps
//! finished jobs only for its retention (100 by default), so its resident
//! memory after the last job is at most 1.2× what it was after the first
//! 100, and its job list stays at the retention count.
//!
//! `QUARRY_SOAK_JOBS` sets the number of jobs (1,000 by default; at least
//! 200, so that the comparison means something).

use quarry::{Client, ClientOptions, JobOptions};
use quarry_integration::{quarry_bin, worker_args, CapturedProcess};
use std::process::Command;
use std::time::Duration;

const TASKS_PER_JOB: u64 = 2_000;
/// Bounds every wait on a process's setup.
const LIMIT: Duration = Duration::from_secs(60);

/// A process's resident memory now (VmRSS), in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

fn quarry_process(name: &str, args: &[String]) -> CapturedProcess {
    let mut command = Command::new(quarry_bin());
    command.args(args).env("RUST_LOG", "warn");
    CapturedProcess::spawn(name, command, LIMIT).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_memory_stays_flat_over_a_thousand_jobs() {
    let jobs: usize = std::env::var("QUARRY_SOAK_JOBS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000)
        .max(200);
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("tcp://127.0.0.1:{port}");
    let scheduler = quarry_process(
        "scheduler",
        &[
            "scheduler".into(),
            "--listen".into(),
            address.clone(),
            "--dashboard".into(),
            "none".into(),
        ],
    );
    scheduler.wait_for_scheduler_endpoint();
    let _workers: Vec<CapturedProcess> = ["w1", "w2"]
        .iter()
        .map(|name| quarry_process(name, &worker_args(&address, name, dir.path())))
        .collect();
    let mut options = ClientOptions::new(address);
    options.handshake_timeout = Duration::from_secs(30);
    let client = Client::connect_with(options).await.unwrap();
    while client.workers().await.unwrap().len() < 2 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut after_100 = 0;
    for n in 1..=jobs {
        let job = client
            .open_job(JobOptions {
                name: format!("soak-{n}"),
                ..JobOptions::default()
            })
            .unwrap();
        let futures = job.map::<u64, (), _>("noop", 0..TASKS_PER_JOB).unwrap();
        job.seal().unwrap().await.unwrap();
        client.gather(futures).await.unwrap();
        if n == 100 {
            after_100 = rss(scheduler.id());
        }
    }
    // Let the last job's retention bookkeeping run (a tick or two).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after_last = rss(scheduler.id());
    let listed = client.list_jobs().await.unwrap();
    println!(
        "scheduler RSS after 100 jobs: {:.1} MB, after {jobs}: {:.1} MB ({:.2}x); {} jobs \
         listed, {} dropped",
        after_100 as f64 / 1e6,
        after_last as f64 / 1e6,
        after_last as f64 / after_100 as f64,
        listed.jobs.len(),
        listed.dropped
    );
    assert!(
        after_last * 10 <= after_100 * 12,
        "scheduler RSS grew from {after_100} bytes after 100 jobs to {after_last} after {jobs}"
    );
    let kept = listed
        .jobs
        .iter()
        .filter(|j| j.name.starts_with("soak-"))
        .count();
    assert!(kept <= 100, "{kept} finished jobs kept, over the retention");
    assert!(listed.dropped as usize >= jobs - 100);
}
