//! Issue #2 end to end: a scheduler and workers started through the CLI as
//! real processes over TCP loopback, and a client mapping 10,000 tasks.

use quarry::{Client, ClientError, ClientOptions};
use quarry_integration::{quarry_bin, ChildGuard};
use quarry_proto::ErrorKind;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn quarry(args: &[&str]) -> ChildGuard {
    let mut command = Command::new(quarry_bin());
    command
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    ChildGuard::spawn(command).expect("start quarry")
}

/// A scheduler with a short heartbeat timeout, so a killed worker is
/// noticed within seconds.
fn scheduler(address: &str) -> ChildGuard {
    quarry(&[
        "scheduler",
        "--listen",
        address,
        "--dashboard",
        "none",
        "--heartbeat-timeout",
        "2s",
    ])
}

fn worker(address: &str, name: &str, dir: &std::path::Path, extra: &[&str]) -> ChildGuard {
    let cache = dir.join(name);
    let mut args = vec![
        "worker",
        address,
        "--nthreads",
        "2",
        "--name",
        name,
        "--cache-dir",
        cache.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    quarry(&args)
}

async fn connect(address: &str) -> Client {
    let mut options = ClientOptions::new(address);
    options.handshake_timeout = Duration::from_secs(30);
    Client::connect_with(options).await.expect("connect")
}

async fn wait_for_workers(client: &Client, n: usize) -> Vec<quarry_proto::WorkerInfo> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let workers = client.workers().await.unwrap();
        if workers.len() == n {
            return workers;
        }
        assert!(
            Instant::now() < deadline,
            "expected {n} workers, have {workers:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_tasks_arrive_exactly_once_despite_a_killed_worker() {
    let dir = tempfile::tempdir().unwrap();
    let address = format!("tcp://127.0.0.1:{}", free_port());
    let _scheduler = scheduler(&address);
    let mut doomed = worker(&address, "doomed", dir.path(), &[]);
    let _survivor = worker(&address, "survivor", dir.path(), &[]);
    let client = connect(&address).await;
    wait_for_workers(&client, 2).await;

    // 10,000 tasks of 0–2 ms: long enough for the kill to land mid-map.
    let inputs: Vec<u64> = (0..10_000).map(|i| i % 3).collect();
    let futures = client
        .map::<u64, u64, _>("sleep_ms", inputs.iter().copied())
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    doomed.kill().unwrap();

    let results = client.gather(futures).await.unwrap();
    assert_eq!(
        results, inputs,
        "every result, in order, with its own value"
    );

    // Exactly once on the scheduler too: 10,000 done, nothing failed or
    // counted twice.
    let jobs = client.jobs().await.unwrap();
    let job = jobs
        .iter()
        .find(|j| j.id.client() == client.id())
        .expect("the client's job");
    assert_eq!(job.counts.total, 10_000);
    assert_eq!(job.counts.done, 10_000);
    assert_eq!(job.counts.failed, 0);
    assert_eq!(wait_for_workers(&client, 1).await[0].name, "survivor");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_task_reports_its_message_and_the_worker_lives_on() {
    let dir = tempfile::tempdir().unwrap();
    let address = format!("tcp://127.0.0.1:{}", free_port());
    let _scheduler = scheduler(&address);
    let _worker = worker(&address, "w", dir.path(), &[]);
    let client = connect(&address).await;
    wait_for_workers(&client, 1).await;

    let failed = client
        .submit::<String, ()>("panic", &"the flux capacitor broke".to_string())
        .unwrap()
        .result()
        .await;
    match failed {
        Err(ClientError::Task { kind, message, .. }) => {
            assert_eq!(kind, ErrorKind::Panicked);
            assert!(message.contains("the flux capacitor broke"), "{message}");
        }
        other => panic!("expected a panicked task, got {other:?}"),
    }
    let failed = client
        .submit::<String, ()>("fail", &"no such row".to_string())
        .unwrap()
        .result()
        .await;
    assert!(
        matches!(&failed, Err(ClientError::Task { kind: ErrorKind::Failed, message, .. }) if message == "no such row"),
        "{failed:?}"
    );
    // The same worker still serves.
    let x = client
        .submit::<i64, i64>("inc", &10)
        .unwrap()
        .result()
        .await;
    assert_eq!(x.unwrap(), quarry::parts::worker::inc(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nprocs_supervisor_restarts_a_crashed_worker_process() {
    let dir = tempfile::tempdir().unwrap();
    let address = format!("tcp://127.0.0.1:{}", free_port());
    let _scheduler = scheduler(&address);
    let supervisor = worker(&address, "pool", dir.path(), &["--nprocs", "2"]);
    let client = connect(&address).await;
    let before = wait_for_workers(&client, 2).await;
    let mut names: Vec<&str> = before.iter().map(|w| w.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["pool-0", "pool-1"]);

    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", supervisor.id())).unwrap();
    let victim: i32 = children.split_whitespace().next().unwrap().parse().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();

    // The replacement registers under the same name with a new worker id,
    // and the lost one is dropped after the heartbeat timeout.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let workers = client.workers().await.unwrap();
        let fresh = workers.iter().any(|w| !before.iter().any(|b| b.id == w.id));
        if fresh && workers.len() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "no replacement: {workers:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let results = client
        .gather(client.map::<i64, i64, _>("echo", 0..100).unwrap())
        .await
        .unwrap();
    assert_eq!(results, (0..100).collect::<Vec<_>>());
}
