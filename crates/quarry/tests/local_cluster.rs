//! The library API on an embedded cluster (real ZeroMQ over loopback, in one
//! process): submit, map, gather, as_completed, map_unordered, cancel, caps.

use futures::StreamExt;
use quarry::{as_completed, ClientError, LocalCluster, Registry};
use std::collections::HashSet;
use std::time::Duration;

async fn cluster() -> LocalCluster {
    let dir = tempfile::tempdir().unwrap().keep();
    LocalCluster::builder()
        .workers(2)
        .nthreads(2)
        .work_dir(dir)
        .registry(
            Registry::new()
                .with_builtins()
                .task("square", |x: u64| x * x),
        )
        .start()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_gather_and_as_completed_agree() {
    let cluster = cluster().await;
    let client = cluster.client().await.unwrap();
    let one = client.submit::<u64, u64>("square", &12).unwrap();
    assert_eq!(one.result().await.unwrap(), 144);

    let futures = client.map::<u64, u64, _>("square", 0..2_000).unwrap();
    let gathered = client.gather(futures).await.unwrap();
    assert_eq!(gathered, (0..2_000u64).map(|x| x * x).collect::<Vec<_>>());

    let futures = client.map::<u64, u64, _>("square", 0..2_000).unwrap();
    let mut seen = HashSet::new();
    let mut stream = std::pin::pin!(as_completed(futures));
    while let Some((index, result)) = stream.next().await {
        assert_eq!(result.unwrap(), (index as u64) * (index as u64));
        assert!(seen.insert(index), "index {index} came twice");
    }
    assert_eq!(seen.len(), 2_000);
    drop(client);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_unordered_keeps_a_bounded_window_and_loses_nothing() {
    let cluster = cluster().await;
    let client = cluster.client().await.unwrap();
    let mut stream =
        std::pin::pin!(client.map_unordered::<u64, u64, _>("square", 0..20_000u64, 256));
    let mut seen = vec![false; 20_000];
    while let Some((index, result)) = stream.next().await {
        assert_eq!(result.unwrap(), index * index);
        assert!(!seen[index as usize], "index {index} came twice");
        seen[index as usize] = true;
        if index % 1000 == 0 {
            // The window bounds what the scheduler holds for this client.
            let in_flight: u64 = client
                .jobs()
                .await
                .unwrap()
                .iter()
                .filter(|j| j.id.client() == client.id())
                .map(|j| j.counts.queued + j.counts.assigned + j.counts.running)
                .sum();
            assert!(in_flight <= 256, "{in_flight} tasks in flight");
        }
    }
    assert!(seen.iter().all(|s| *s));
    drop(client);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_arguments_are_refused_with_the_cap_named() {
    let cluster = cluster().await;
    let client = cluster.client().await.unwrap();
    let big = "x".repeat(100 * 1024);
    let refused = client.submit::<String, String>("echo", &big).unwrap_err();
    let text = refused.to_string();
    assert!(
        matches!(refused, ClientError::TooLarge { cap: 65536, .. }),
        "{text}"
    );
    assert!(
        text.contains("65536-byte inline cap") && text.contains("reference"),
        "{text}"
    );
    // Without a staging store, putting it is refused with directions.
    let mut options = quarry::ClientOptions::new(cluster.address());
    options.staging = None;
    let plain = quarry::Client::connect_with(options).await.unwrap();
    let refused = plain
        .submit_async::<String, String>("echo", &big)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("QUARRY_STAGING"), "{refused}");
    drop((client, plain));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_arguments_travel_by_reference_through_staging() {
    let cluster = cluster().await;
    let staging = tempfile::tempdir().unwrap();
    let mut options = quarry::ClientOptions::new(cluster.address());
    options.staging = Some(staging.path().display().to_string());
    let client = quarry::Client::connect_with(options).await.unwrap();
    let big = "y".repeat(300 * 1024);
    let echoed = client
        .submit_async::<String, String>("echo", &big)
        .await
        .unwrap()
        .result()
        .await;
    // The argument reached the worker by reference; the echoed value is
    // over the inline cap too, and this job has no output prefix for large
    // results: the worker says so.
    let text = echoed.unwrap_err().to_string();
    assert!(text.contains("output prefix"), "{text}");
    // Identical content is stored once.
    let first = client.put_bytes(vec![7; 200_000]).await.unwrap();
    let second = client.put_bytes(vec![7; 200_000]).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(std::fs::read_dir(staging.path()).unwrap().count(), 2);
    drop(client);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_tasks_never_run_and_report_cancelled() {
    let cluster = cluster().await;
    let client = cluster.client().await.unwrap();
    // Four slots busy for a while, then a queue behind them.
    let busy = client.map::<u64, u64, _>("sleep_ms", [300; 4]).unwrap();
    let queued = client.map::<u64, u64, _>("sleep_ms", [5_000; 20]).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    client.cancel(&queued).unwrap();
    for future in queued {
        match future.result().await {
            Err(ClientError::Task { kind, .. }) => {
                assert_eq!(kind, quarry::parts::proto::ErrorKind::Cancelled)
            }
            other => panic!("expected cancelled, got {other:?}"),
        }
    }
    assert_eq!(client.gather(busy).await.unwrap(), vec![300; 4]);
    drop(client);
    cluster.shutdown().await;
}

/// `Job::map` and `Job::map_unordered` run in the job they are called on:
/// the tasks read its broadcast input, come back in input order (or with
/// their index), and count towards that job only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_map_runs_in_the_job_with_its_broadcast_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let offset_file = dir.path().join("offset.txt");
    std::fs::write(&offset_file, "1000").unwrap();
    let offset = quarry::parts::store::StoreResolver::from_env()
        .list_refs(&offset_file.display().to_string())
        .next()
        .await
        .unwrap()
        .unwrap();
    let cluster = LocalCluster::builder()
        .workers(2)
        .work_dir(dir.path().join("work"))
        .registry(
            Registry::new().task_with_context("add_offset", |ctx, x: u64| {
                let text = ctx
                    .broadcast("offset")?
                    .read()
                    .map_err(|e| format!("cannot read the offset: {e}"))?;
                let offset: u64 = String::from_utf8_lossy(&text)
                    .trim()
                    .parse()
                    .map_err(|e| format!("bad offset: {e}"))?;
                Ok::<u64, String>(x + offset)
            }),
        )
        .start()
        .await
        .unwrap();
    let client = cluster.client().await.unwrap();
    let job = client
        .open_job(quarry::JobOptions {
            name: "job-map".into(),
            broadcast: vec![("offset".into(), offset)],
            ..Default::default()
        })
        .unwrap();

    let futures = job.map::<u64, u64, _>("add_offset", 0..500).unwrap();
    assert_eq!(
        job.gather(futures).await.unwrap(),
        (1000..1500).collect::<Vec<u64>>()
    );
    let mut seen = vec![false; 300];
    let mut stream = std::pin::pin!(job.map_unordered::<u64, u64, _>("add_offset", 0..300, 64));
    while let Some((index, result)) = stream.next().await {
        assert_eq!(result.unwrap(), index + 1000);
        assert!(!std::mem::replace(&mut seen[index as usize], true));
    }
    assert!(seen.iter().all(|s| *s));
    job.seal().unwrap();

    let jobs = client.jobs().await.unwrap();
    let info = jobs.iter().find(|j| j.id == job.id()).unwrap();
    assert_eq!((info.counts.total, info.counts.done), (800, 800));
    // Without the job's broadcast input the same function fails.
    let outside = client.map::<u64, u64, _>("add_offset", [1]).unwrap();
    let error = client.gather(outside).await.unwrap_err().to_string();
    assert!(error.contains("offset"), "{error}");
    drop((job, client));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_reduce_and_job_reduce_sum_in_a_tree() {
    let cluster = cluster().await;
    let client = cluster.client().await.unwrap();
    let output = tempfile::tempdir().unwrap();
    let output_url = format!("file://{}/", output.path().display());
    // 1,000 squares summed by tasks of at most 4 values each: 5 levels.
    let mut reduce = quarry::ReduceOptions::new("sum");
    reduce.fan_in = 4;
    let total: u64 = client
        .map_reduce("square", 0..1_000u64, &reduce, Some(&output_url))
        .await
        .unwrap();
    let expected: u64 = (0..1_000u64).map(|x| x * x).sum();
    assert_eq!(total, expected);
    // The job's answer is also in OUTPUT/_result.json, as JSON.
    let written = std::fs::read(output.path().join(quarry::JOB_RESULT_FILE)).unwrap();
    let written: u64 = serde_json::from_slice(&written).unwrap();
    assert_eq!(written, expected);

    // dask's `client.submit(sum, futures)`, as a tree within one job.
    let job = client
        .open_job(quarry::JobOptions {
            name: "job-reduce".into(),
            ..Default::default()
        })
        .unwrap();
    let futures = job.map::<u64, u64, _>("square", 1..=100u64).unwrap();
    let total: u64 = job
        .reduce(futures, &quarry::ReduceOptions::new("sum"))
        .await
        .unwrap();
    assert_eq!(total, (1..=100u64).map(|x| x * x).sum::<u64>());
    job.seal().unwrap().await.unwrap();
    drop(client);
    cluster.shutdown().await;
}
