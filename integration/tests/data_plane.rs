//! The data plane end to end, against a real MinIO: `Client::map_prefix`
//! over seeded objects run by `quarry scheduler` and `quarry worker`
//! processes, per-job cache and locality metrics, pinned inputs that
//! change, broadcast inputs, large results by reference, content-addressed
//! puts, chunked maps and injected S3 faults.
//!
//! Data is seeded and checked with aws-sdk-s3 (through the harness), never
//! with quarry's own store code. These tests need the MinIO binary
//! (`scripts/minio.sh`) and the quarry binary (`cargo build -p quarry-cli`).

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use quarry::parts::client::MapPrefixOptions;
use quarry::parts::proto::{DataRef, Pin, TaskOutcome, Value};
use quarry::parts::store::{StoreConfig, StoreResolver};
use quarry::{Client, ClientOptions, JobOptions};
use quarry_integration::{quarry_bin, ChildGuard, FaultProxy, MinioServer, MINIO_METRICS_REFRESH};
use tempfile::TempDir;

mod common;
use common::{
    assert_only_the_changed_input_failed, expected_counts, job_info, lines_file, reduce,
    run_broadcast_job, spawn_logged, Counts,
};

/// How long workers need to report what they cached: they send cache
/// deltas every 200 ms. A pass started earlier is placed on stale
/// knowledge; this is a settling pause, not an assertion.
const SETTLE: Duration = Duration::from_secs(1);

fn start_minio() -> MinioServer {
    MinioServer::start().unwrap_or_else(|error| panic!("{error}"))
}

/// A `quarry scheduler` and `quarry worker` processes on loopback, killed
/// on drop.
struct Cluster {
    address: String,
    dir: TempDir,
    worker_env: Vec<(&'static str, String)>,
    workers: Vec<ChildGuard>,
    _scheduler: ChildGuard,
}

impl Cluster {
    /// A scheduler and `workers` workers reaching S3 with `worker_env`.
    fn start(worker_env: Vec<(&'static str, String)>, workers: usize) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("quarry-data-plane-")
            .tempdir()
            .unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let address = format!("tcp://127.0.0.1:{port}");
        let mut command = Command::new(quarry_bin());
        command.args(["scheduler", "--listen", &address, "--dashboard", "none"]);
        let scheduler = spawn_logged(command, &dir, "scheduler");
        let mut cluster = Cluster {
            address,
            dir,
            worker_env,
            workers: Vec::new(),
            _scheduler: scheduler,
        };
        for _ in 0..workers {
            cluster.add_worker();
        }
        cluster
    }

    fn add_worker(&mut self) {
        let index = self.workers.len();
        let name = format!("dp-{index}");
        let cache = self.dir.path().join(format!("cache-{index}"));
        let mut command = Command::new(quarry_bin());
        command
            .args(["worker", &self.address, "--nthreads", "1", "--name", &name])
            .arg("--cache-dir")
            .arg(&cache)
            .envs(self.worker_env.iter().map(|(k, v)| (*k, v.as_str())));
        let worker = spawn_logged(command, &self.dir, &name);
        self.workers.push(worker);
    }

    /// A client whose store (listing, staging, large results) reaches S3
    /// with `env`.
    async fn client(&self, env: &[(&'static str, String)], staging: Option<String>) -> Client {
        let mut options = ClientOptions::new(self.address.clone());
        options.handshake_timeout = Duration::from_secs(30);
        options.store = StoreResolver::new(StoreConfig::from_vars(|name| {
            env.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.clone())
        }));
        options.staging = staging;
        Client::connect_with(options).await.unwrap()
    }

    /// Waits until every started worker has registered.
    async fn wait_for_workers(&self, client: &Client) {
        for _ in 0..600 {
            if client.workers().await.unwrap().len() >= self.workers.len() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "{} workers did not register; logs are in {}",
            self.workers.len(),
            self.dir.path().display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_word_count_is_right_and_the_second_pass_reads_only_caches() {
    let minio = start_minio();
    minio.create_bucket("wordcount").await.unwrap();
    const SHARDS: usize = 12;
    const SIZE: usize = 64 * 1024;
    let shards = minio
        .seed_text_shards("wordcount", "logs/2026/", SHARDS, SIZE)
        .await
        .unwrap();
    // Not a shard: the glob must leave it out.
    minio
        .put_object("wordcount", "logs/2026/README.md", "not counted at all")
        .await
        .unwrap();
    let expected = expected_counts(shards.iter().map(|s| &s.body[..]));
    let total_bytes = (SHARDS * SIZE) as u64;

    let cluster = Cluster::start(minio.env(), 2);
    let client = cluster.client(&minio.env(), None).await;
    cluster.wait_for_workers(&client).await;

    let options = || MapPrefixOptions {
        glob: Some("*.txt".into()),
        ..MapPrefixOptions::default()
    };
    let first = client
        .map_prefix::<Counts>("wordcount", "s3://wordcount/logs/2026/", options())
        .unwrap();
    let first_job = first.job();
    let (counts, keys) = reduce(first).await;
    assert_eq!(counts, expected);
    let expected_keys: Vec<String> = (0..SHARDS).map(|i| format!("part-{i:05}.txt")).collect();
    assert_eq!(keys, expected_keys);

    let info = job_info(&client, first_job).await;
    assert_eq!(info.counts.done, SHARDS as u64);
    assert_eq!(info.stats.bytes_from_store, total_bytes);
    assert_eq!(info.stats.cache_misses, SHARDS as u32);
    assert_eq!(info.stats.cache_hits, 0);
    assert_eq!(info.stats.bytes_from_cache, 0);
    assert_eq!(info.tasks_local + info.tasks_remote, SHARDS as u64);

    tokio::time::sleep(SETTLE).await;
    let second = client
        .map_prefix::<Counts>("wordcount", "s3://wordcount/logs/2026/", options())
        .unwrap();
    let second_job = second.job();
    let (counts, _) = reduce(second).await;
    assert_eq!(counts, expected);

    let info = job_info(&client, second_job).await;
    assert_eq!(info.counts.done, SHARDS as u64);
    assert_eq!(info.stats.bytes_from_store, 0, "{info:?}");
    assert_eq!(info.stats.bytes_from_cache, total_bytes);
    assert_eq!(info.stats.cache_hits, SHARDS as u32);
    assert_eq!(info.stats.cache_misses, 0);
    assert_eq!(info.tasks_local, SHARDS as u64, "{info:?}");
    assert_eq!(info.tasks_remote, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_overwritten_after_submission_fails_its_task_as_changed() {
    let minio = start_minio();
    minio.create_bucket("pins").await.unwrap();
    let shards = minio
        .seed_text_shards("pins", "in/", 3, 4096)
        .await
        .unwrap();

    // No worker yet: the tasks wait in the scheduler with their pins.
    let mut cluster = Cluster::start(minio.env(), 0);
    let client = cluster.client(&minio.env(), None).await;
    let mut map = client
        .map_prefix::<Counts>("wordcount", "s3://pins/in/", MapPrefixOptions::default())
        .unwrap();
    while !map.progress().listed {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(map.progress().tasks, 3);
    minio
        .put_object("pins", &shards[1].key, "a new version of the shard")
        .await
        .unwrap();
    cluster.add_worker();

    let mut outcomes = BTreeMap::new();
    while let Some(finished) = map.next().await {
        let finished = finished.unwrap();
        outcomes.insert(finished.key, finished.result);
    }
    let expected: Vec<(String, &[u8])> = shards
        .iter()
        .enumerate()
        .map(|(index, shard)| (format!("part-{index:05}.txt"), &shard.body[..]))
        .collect();
    assert_only_the_changed_input_failed(&outcomes, &expected, 1, "s3://pins/in/part-00001.txt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_input_is_fetched_once_per_worker() {
    let minio = start_minio();
    minio.create_bucket("broadcast").await.unwrap();
    const SIZE: usize = 1 << 20;
    let blob: Vec<u8> = (0..SIZE).map(|i| (i * 31 % 251) as u8).collect();
    let etag = minio
        .put_object("broadcast", "model/weights.bin", blob)
        .await
        .unwrap();
    // Pinned by the ETag MinIO reported for the write.
    let pinned = DataRef {
        url: "s3://broadcast/model/weights.bin".into(),
        pin: Pin::ETag(etag),
        size: SIZE as u64,
        range: None,
    };

    // Workers reach MinIO only through the proxy, which counts requests.
    let proxy = FaultProxy::start(minio.address()).unwrap();
    let cluster = Cluster::start(minio.env_with_endpoint(&proxy.endpoint()), 2);
    let client = cluster.client(&minio.env(), None).await;
    cluster.wait_for_workers(&client).await;

    run_broadcast_job(&client, pinned, 1000).await;
    // One GET per worker, and nothing else reaches the store.
    let gets = proxy.stats().forwarded;
    assert_eq!(gets, 2, "GETs by the broadcast job: {gets}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_result_comes_back_as_a_readable_reference() {
    let minio = start_minio();
    minio.create_bucket("big").await.unwrap();
    let cluster = Cluster::start(minio.env(), 1);
    let client = cluster
        .client(&minio.env(), Some("s3://big/staging".into()))
        .await;
    cluster.wait_for_workers(&client).await;

    let job = client
        .open_job(JobOptions {
            name: "large result".into(),
            output: Some("s3://big/results/".into()),
            ..JobOptions::default()
        })
        .unwrap();
    // Over the 64 KiB inline cap both ways: the argument is staged and the
    // echoed result is stored under the job's output prefix.
    let text: String = (0..30_000).map(|i| format!("{i} ")).collect();
    assert!(text.len() > 128 * 1024);
    let spec = client.task("echo", &text).await.unwrap();
    assert!(spec.args_ref.is_some(), "the argument travels by reference");
    let mut futures = job.submit::<String>(vec![spec]).unwrap();
    job.seal().unwrap();
    let outcome = futures.remove(0).outcome().await.unwrap();
    let TaskOutcome::Ok(value) = outcome else {
        panic!("the echo failed: {outcome:?}");
    };
    let Value::Ref(data_ref) = &value else {
        panic!("a large result must come back as a reference, got {value:?}");
    };
    let key = data_ref
        .url
        .strip_prefix("s3://big/")
        .unwrap_or_else(|| panic!("result outside the bucket: {}", data_ref.url));
    assert!(key.starts_with("results/"), "{key}");
    assert!(key.ends_with("/_result.json"), "stored as JSON: {key}");

    // Readable through the client and, independently, with aws-sdk-s3.
    let through_client: String = client.value(&value).await.unwrap();
    assert_eq!(through_client, text);
    let stored = minio.get_object_bytes("big", key).await.unwrap();
    assert_eq!(stored.len() as u64, data_ref.size);
    let parsed: serde_json::Value = serde_json::from_slice(&stored).unwrap();
    assert_eq!(parsed, serde_json::Value::String(text));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_stores_identical_content_once() {
    let minio = start_minio();
    minio.create_bucket("cas").await.unwrap();
    let cluster = Cluster::start(minio.env(), 0);
    let client = cluster
        .client(&minio.env(), Some("s3://cas/staging/".into()))
        .await;

    let content = b"the same dataset, put three times".to_vec();
    let first = client.put_bytes(content.clone()).await.unwrap();
    let second = client.put_bytes(content.clone()).await.unwrap();
    let file = cluster.dir.path().join("dataset.bin");
    std::fs::write(&file, &content).unwrap();
    let third = client.put_file(&file).await.unwrap();
    assert_eq!(first.url, second.url);
    assert_eq!(first.url, third.url);
    assert_eq!(first.size, content.len() as u64);
    assert_eq!(minio.list_keys("cas", "staging/").await.unwrap().len(), 1);
    let key = first.url.strip_prefix("s3://cas/").unwrap();
    assert_eq!(
        &minio.get_object_bytes("cas", key).await.unwrap()[..],
        &content[..]
    );

    let other = client.put_bytes(b"different".to_vec()).await.unwrap();
    assert_ne!(other.url, first.url);
    assert_eq!(minio.list_keys("cas", "staging/").await.unwrap().len(), 2);
}

/// A line count over one large object in 32 MiB chunks on two workers
/// reads it from MinIO about once, as MinIO itself counts the bytes it
/// sent (256 MiB here, to keep the suite short; `quarry bench prefix
/// --single-object` measures bigger ones).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_object_is_read_from_minio_about_once_as_minio_counts() {
    let minio = start_minio();
    minio.create_bucket("once").await.unwrap();
    const SIZE: usize = 256 << 20;
    let mut file = Vec::with_capacity(SIZE);
    let mut n = 0u64;
    while file.len() < SIZE {
        file.extend_from_slice(format!("row {n} of the big object\n").as_bytes());
        n += 1;
    }
    let lines = file.iter().filter(|&&b| b == b'\n').count() as u64;
    let size = file.len() as u64;
    minio
        .put_object("once", "big/rows.txt", file)
        .await
        .unwrap();

    let cluster = Cluster::start(minio.env(), 2);
    let client = cluster.client(&minio.env(), None).await;
    cluster.wait_for_workers(&client).await;
    tokio::time::sleep(MINIO_METRICS_REFRESH).await;
    let before = minio.s3_bytes_sent().await.unwrap();

    let mut map = client
        .map_prefix::<u64>(
            "linecount",
            "s3://once/big/",
            MapPrefixOptions {
                chunk_size: Some(32 << 20),
                ..MapPrefixOptions::default()
            },
        )
        .unwrap();
    let mut counted = 0;
    while let Some(finished) = map.next().await {
        counted += finished.unwrap().result.unwrap();
    }
    assert_eq!(counted, lines, "the line count equals a count of newlines");

    tokio::time::sleep(MINIO_METRICS_REFRESH).await;
    let sent = minio.s3_bytes_sent().await.unwrap() - before;
    assert!(
        sent >= size,
        "MinIO sent {sent} bytes for a {size}-byte object"
    );
    assert!(
        sent <= size + size / 20,
        "MinIO sent {sent} bytes for a {size}-byte object (more than 1.05x)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_map_counts_every_line_exactly_once() {
    let minio = start_minio();
    minio.create_bucket("chunks").await.unwrap();
    const LINES: usize = 20_000;
    let file = lines_file(LINES, 5_000, 300_000);
    let size = file.len() as u64;
    minio
        .put_object("chunks", "big/lines.txt", file.clone())
        .await
        .unwrap();

    // Blocks smaller than the chunks, as the worker's docs advise.
    let mut env = minio.env();
    env.push(("QUARRY_CACHE_BLOCK_SIZE", "64KiB".to_string()));
    let cluster = Cluster::start(env, 2);
    let client = cluster.client(&minio.env(), None).await;
    cluster.wait_for_workers(&client).await;

    const CHUNK: u64 = 128 * 1024;
    let map = client
        .map_prefix::<Counts>(
            "wordcount",
            "s3://chunks/big/",
            MapPrefixOptions {
                chunk_size: Some(CHUNK),
                // Fewer than the object's chunks: submission waits for
                // results to be taken, a few tasks at a time.
                max_in_flight: 4,
                ..MapPrefixOptions::default()
            },
        )
        .unwrap();
    let job = map.job();
    let (counts, keys) = reduce(map).await;
    assert!(
        keys.len() as u64 >= size / CHUNK / 2,
        "{} chunks of a {size}-byte file",
        keys.len()
    );
    assert!(keys.iter().all(|k| k.starts_with("lines.txt@")), "{keys:?}");
    assert_eq!(counts.len(), LINES, "every line's token seen");
    assert!(counts.values().all(|&n| n == 1), "no line counted twice");
    assert_eq!(counts, expected_counts([&file[..]]));

    // Each chunk fetches its own blocks: the object is read from the store
    // about once in all, not once per worker (2x before blocks). The
    // 300 KB lines that run past a chunk's end make the readers of
    // neighbouring chunks, on different workers, share a few blocks.
    let info = job_info(&client, job).await;
    assert!(info.stats.bytes_from_store >= size, "{info:?}");
    assert!(
        info.stats.bytes_from_store <= size + size / 10,
        "{} bytes from the store for a {size}-byte object",
        info.stats.bytes_from_store
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_503s_and_resets_lose_no_result() {
    let minio = start_minio();
    minio.create_bucket("faults").await.unwrap();
    const SHARDS: usize = 20;
    let shards = minio
        .seed_text_shards("faults", "in/", SHARDS, 16 * 1024)
        .await
        .unwrap();
    let expected = expected_counts(shards.iter().map(|s| &s.body[..]));

    // Workers and the client's listing both go through the faulty proxy.
    let proxy = FaultProxy::start(minio.address()).unwrap();
    proxy.set_rates(0.25, 0.05).unwrap();
    let env = minio.env_with_endpoint(&proxy.endpoint());
    let cluster = Cluster::start(env.clone(), 2);
    let client = cluster.client(&env, None).await;
    cluster.wait_for_workers(&client).await;

    let map = client
        .map_prefix::<Counts>(
            "wordcount",
            "s3://faults/in/",
            MapPrefixOptions {
                retries: 3,
                ..MapPrefixOptions::default()
            },
        )
        .unwrap();
    let job = map.job();
    let (counts, keys) = reduce(map).await;
    assert_eq!(keys.len(), SHARDS);
    assert_eq!(counts, expected);
    let stats = proxy.stats();
    assert!(stats.slow_downs > 0 && stats.resets > 0, "{stats:?}");
    let info = job_info(&client, job).await;
    assert_eq!(info.counts.done, SHARDS as u64);
    assert_eq!(info.counts.failed, 0);
}
