//! Client sessions against a real `quarry scheduler` process over TCP
//! loopback (issue #9): every refusal reaches the futures it concerns, a
//! scheduler that disappears fails everything waiting for it within the
//! reconnect timeout, and futures of a job that survived a restart (from
//! the journal) resolve once it is back.
//!
//! The bounds below are the deadlines the issue promises (a refusal within
//! 1 s, a lost scheduler within the reconnect timeout), not performance
//! measurements: each operation answers in milliseconds when it works.

use quarry::{Client, ClientError, ClientOptions, JobOptions};
use quarry_integration::{quarry_bin, worker_args, CapturedProcess};
use quarry_proto::{TaskId, TaskSpec};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Bounds every wait on a process's setup.
const LIMIT: Duration = Duration::from_secs(60);

fn free_address() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("tcp://127.0.0.1:{port}")
}

fn scheduler(address: &str, journal: Option<&Path>) -> CapturedProcess {
    let mut command = Command::new(quarry_bin());
    command
        .args(["scheduler", "--listen", address, "--dashboard", "none"])
        .env("RUST_LOG", "info");
    if let Some(journal) = journal {
        command.arg("--journal").arg(journal);
    }
    let scheduler = CapturedProcess::spawn("scheduler", command, LIMIT).unwrap();
    scheduler.wait_for_scheduler_endpoint();
    scheduler
}

async fn client(address: &str, reconnect_timeout: Duration) -> Client {
    let mut options = ClientOptions::new(address.to_string());
    options.handshake_timeout = Duration::from_secs(30);
    options.reconnect_timeout = reconnect_timeout;
    Client::connect_with(options).await.expect("connect")
}

fn named(name: &str) -> JobOptions {
    JobOptions {
        name: name.into(),
        ..JobOptions::default()
    }
}

/// Waits for each future to fail, all within `within` of now; returns the
/// errors.
async fn failures(futures: Vec<quarry::TaskFuture<u64>>, within: Duration) -> Vec<ClientError> {
    let deadline = tokio::time::Instant::now() + within;
    let mut errors = Vec::new();
    for future in futures {
        match tokio::time::timeout_at(deadline, future.result()).await {
            Ok(Err(e)) => errors.push(e),
            Ok(Ok(value)) => panic!("a future that should have failed gave {value}"),
            Err(_) => panic!("a future was still waiting after {within:?}"),
        }
    }
    errors
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submission_to_a_sealed_job_fails_each_of_its_futures_with_the_reason() {
    let address = free_address();
    let _scheduler = scheduler(&address, None);
    let client = client(&address, Duration::from_secs(10)).await;
    let job = client.open_job(named("sealed")).unwrap();
    job.seal().unwrap().await.unwrap();
    let futures = job.map::<u64, u64, _>("sleep_ms", 0..5).unwrap();
    let errors = failures(futures, Duration::from_secs(1)).await;
    assert_eq!(errors.len(), 5);
    for error in errors {
        assert!(
            matches!(&error, ClientError::Refused(reason) if reason.contains("sealed")),
            "{error}"
        );
    }
    // The client is still usable afterwards.
    assert!(client
        .jobs()
        .await
        .unwrap()
        .iter()
        .any(|j| j.name == "sealed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_outside_the_clients_id_range_are_refused_and_their_futures_fail() {
    let address = free_address();
    let _scheduler = scheduler(&address, None);
    let client = client(&address, Duration::from_secs(10)).await;
    let job = client.open_job(named("foreign-ids")).unwrap();
    // Ids from the range of a client this one is not.
    let other = quarry_proto::ClientId(client.id().0 + 1000);
    let first = TaskId::first_for(other).0;
    let tasks: Vec<TaskSpec> = (0..3)
        .map(|i| {
            let mut spec = TaskSpec::new(TaskId(first + 1 + i), "sleep_ms", vec![0]);
            spec.key = format!("foreign-{i}");
            spec
        })
        .collect();
    let futures = job.submit::<u64>(tasks).unwrap();
    let errors = failures(futures, Duration::from_secs(1)).await;
    for error in errors {
        assert!(
            matches!(&error, ClientError::Refused(reason) if reason.contains("range")),
            "{error}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_that_disappears_fails_everything_waiting_within_the_reconnect_timeout() {
    let address = free_address();
    let scheduler = scheduler(&address, None);
    let reconnect_timeout = Duration::from_secs(2);
    let client = client(&address, reconnect_timeout).await;
    // No workers: the tasks wait in the queue until the scheduler goes.
    let futures = client.map::<u64, u64, _>("sleep_ms", 0..4).unwrap();
    let killed_at = Instant::now();
    scheduler.stop();
    // The timeout runs from when the client notices (a heartbeat or less),
    // so allow it that on top.
    let errors = failures(futures, reconnect_timeout + Duration::from_secs(10)).await;
    for error in &errors {
        assert!(
            matches!(error, ClientError::Disconnected { address: a, .. } if *a == address),
            "{error}"
        );
    }
    // Requests made after that fail as well, and do not hang.
    let jobs = tokio::time::timeout(reconnect_timeout * 5, client.jobs())
        .await
        .expect("client.jobs() answered");
    assert!(jobs.is_err(), "jobs() with no scheduler: {jobs:?}");
    println!(
        "futures failed {:.1} s after the kill",
        killed_at.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn futures_of_a_job_that_survived_a_restart_resolve_once_the_scheduler_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let address = free_address();
    let first = scheduler(&address, Some(&journal));
    let client = client(&address, Duration::from_secs(60)).await;
    // Accepted (and so journaled) before the kill; no worker runs them yet.
    let job = client.open_job(named("survivor")).unwrap();
    let futures = job.map::<u64, u64, _>("sleep_ms", 0..20).unwrap();
    job.seal().unwrap().await.unwrap();
    first.stop();

    let _second = scheduler(&address, Some(&journal));
    let _worker = CapturedProcess::spawn(
        "worker",
        {
            let mut command = Command::new(quarry_bin());
            command
                .args(worker_args(&address, "w1", dir.path()))
                .env("RUST_LOG", "info");
            command
        },
        LIMIT,
    )
    .unwrap();
    let results = tokio::time::timeout(LIMIT, client.gather(futures))
        .await
        .expect("the futures resolved")
        .expect("every task succeeded");
    assert_eq!(results, (0..20u64).collect::<Vec<_>>());
}
