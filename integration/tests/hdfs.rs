//! The data plane against a real HDFS: one MiniDFSCluster per test binary
//! (`scripts/minidfs.sh`, three DataNodes named dn-a, dn-b and dn-c, one
//! replica per block), `quarry scheduler` and `quarry worker` processes,
//! and Hadoop's own FileSystem API (the Java helper) to seed inputs and to
//! check what quarry wrote, never quarry's own store code.
//!
//! Covered: listing and globs, `hdfs:///` through `fs.defaultFS`, pinned
//! reads and a file replaced after submission, chunked reads with line
//! alignment, placement on replica hosts then on caches, a broadcast input
//! fetched once per worker, a worker killed mid-job, large arguments and
//! results staged on HDFS, `quarry run` with HDFS input and output
//! (temporary files renamed into place, manifest and `_SUCCESS`), the
//! Kerberos refusal, and an HA name service (a second cluster of two
//! NameNodes, the first standby) resolved from `HADOOP_CONF_DIR`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Once;
use std::time::Duration;

use futures::TryStreamExt;
use quarry::parts::client::MapPrefixOptions;
use quarry::parts::proto::{DataRef, Pin, TaskOutcome, Value};
use quarry::parts::store::object_store::{MultipartUpload, ObjectStoreExt};
use quarry::parts::store::{PutSource, StoreError, StoreResolver};
use quarry::{Client, ClientOptions, JobOptions};
use quarry_integration::{
    free_loopback_endpoint, quarry_bin, text_shard, ChildGuard, MiniDfs, MiniDfsOptions,
};
use tempfile::TempDir;

mod common;
use common::{
    assert_only_the_changed_input_failed, expected_counts, job_info, lines_file, reduce,
    run_broadcast_job, spawn_logged, Counts,
};

/// Workers report what they cached every 200 ms; a second pass started
/// earlier is placed on stale knowledge. A settling pause, not an assertion.
const SETTLE: Duration = Duration::from_secs(1);

/// The shared cluster, with this process's Hadoop environment pointing at
/// it (set once, before any quarry store reads it).
fn dfs() -> &'static MiniDfs {
    static ENV: Once = Once::new();
    let dfs = MiniDfs::shared();
    ENV.call_once(|| {
        for (key, value) in dfs.env() {
            std::env::set_var(key, value);
        }
    });
    dfs
}

/// Writes `files` (relative path, content) under a local directory and
/// copies it to HDFS as `hdfs_dir`, with one helper call.
fn seed(dfs: &MiniDfs, hdfs_dir: &str, files: &[(String, Vec<u8>)]) {
    let local = tempfile::tempdir().unwrap();
    let root = local.path().join("seed");
    for (path, content) in files {
        let file = root.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, content).unwrap();
    }
    dfs.put(&root, hdfs_dir).unwrap();
}

fn shards(count: usize, size: usize) -> Vec<(String, Vec<u8>)> {
    (0..count)
        .map(|i| (format!("part-{i:05}.txt"), text_shard(i, size)))
        .collect()
}

/// A `quarry scheduler` and `quarry worker` processes reaching the shared
/// HDFS, killed on drop.
struct Cluster {
    address: String,
    dir: TempDir,
    workers: Vec<ChildGuard>,
    _scheduler: ChildGuard,
}

impl Cluster {
    /// A scheduler (noticing a silent worker after 2 s) and one worker per
    /// entry of `hosts`, each claiming that host name.
    fn start(hosts: &[&str]) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("quarry-hdfs-")
            .tempdir()
            .unwrap();
        let address = free_loopback_endpoint();
        let mut command = Command::new(quarry_bin());
        command.args(["scheduler", "--listen", &address, "--dashboard", "none"]);
        command.args(["--heartbeat-timeout", "2s"]);
        let scheduler = spawn_logged(command, &dir, "scheduler");
        let mut cluster = Cluster {
            address,
            dir,
            workers: Vec::new(),
            _scheduler: scheduler,
        };
        for host in hosts {
            cluster.add_worker(host);
        }
        cluster
    }

    /// Adds worker `hdfs-N` on `host`.
    fn add_worker(&mut self, host: &str) {
        let name = format!("hdfs-{}", self.workers.len());
        let cache = self.dir.path().join(format!("cache-{name}"));
        let mut command = Command::new(quarry_bin());
        command
            .args(["worker", &self.address, "--nthreads", "1", "--name", &name])
            .args(["--host", host])
            .arg("--cache-dir")
            .arg(&cache)
            .envs(dfs().env());
        let worker = spawn_logged(command, &self.dir, &name);
        self.workers.push(worker);
    }

    async fn client(&self, staging: Option<String>) -> Client {
        let mut options = ClientOptions::new(self.address.clone());
        options.handshake_timeout = Duration::from_secs(30);
        options.staging = staging;
        Client::connect_with(options).await.unwrap()
    }

    async fn wait_for_workers(&self, client: &Client, n: usize) {
        for _ in 0..600 {
            if client.workers().await.unwrap().len() == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "{n} workers did not register; logs are in {}",
            self.dir.path().display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarry_store_lists_pins_chunks_and_writes_on_hdfs() {
    let dfs = dfs();
    let lines = lines_file(6_000, 2_000, 40_000);
    seed(
        dfs,
        "/store/in",
        &[
            ("a.txt".into(), b"alpha beta\n".to_vec()),
            ("sub/b.csv".into(), b"x,y\n".to_vec()),
            ("sub/c.txt".into(), b"gamma\n".to_vec()),
            ("lines.txt".into(), lines.clone()),
        ],
    );
    let listed = dfs.ls("/store/in").unwrap();
    let store = StoreResolver::from_env();

    // Listing: every file with Hadoop's sizes; globs; hdfs:/// is fs.defaultFS.
    let refs: Vec<DataRef> = store
        .list_refs(&dfs.url_of("/store/in/"))
        .try_collect()
        .await
        .unwrap();
    let mut seen: Vec<(String, u64)> = refs.iter().map(|r| (r.url.clone(), r.size)).collect();
    seen.sort();
    let expected: Vec<(String, u64)> = listed
        .iter()
        .map(|f| (dfs.url_of(&f.path), f.length))
        .collect();
    assert_eq!(seen, expected);
    assert!(refs.iter().all(|r| matches!(r.pin, Pin::ETag(_))));
    let txt: Vec<DataRef> = store
        .list_refs("hdfs:///store/in/**/*.txt")
        .try_collect()
        .await
        .unwrap();
    let mut txt: Vec<String> = txt.into_iter().map(|r| r.url).collect();
    txt.sort();
    assert_eq!(
        txt,
        ["a.txt", "lines.txt", "sub/c.txt"].map(|p| format!("hdfs:///store/in/{p}")),
        "listed under fs.defaultFS, the URLs keep the hdfs:/// form"
    );

    // Block locations: the hosts Hadoop's client reports for the file.
    let a = refs
        .iter()
        .find(|r| r.url.ends_with("/a.txt"))
        .unwrap()
        .clone();
    let blocks = dfs.locations("/store/in/a.txt").unwrap();
    assert_eq!(
        store.replica_hosts(std::slice::from_ref(&a)),
        blocks[0].hosts
    );

    // A pinned read returns what Hadoop reads.
    let body = store.get_pinned(&a).await.unwrap().bytes().await.unwrap();
    assert_eq!(&body[..], &dfs.cat("/store/in/a.txt").unwrap()[..]);

    // Chunks are line-aligned: every line exactly once across them.
    let whole = refs
        .iter()
        .find(|r| r.url.ends_with("/lines.txt"))
        .unwrap()
        .clone();
    let ranges = store.chunk_ranges(&whole, 16 * 1024).await.unwrap();
    assert!(ranges.len() > 4, "{ranges:?}");
    let mut rebuilt = Vec::new();
    for range in ranges {
        let chunk = DataRef {
            range: Some(range),
            ..whole.clone()
        };
        let text = store
            .get_pinned(&chunk)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert!(text.ends_with(b"\n"), "chunk {range:?} ends mid-line");
        rebuilt.extend_from_slice(&text);
    }
    assert_eq!(rebuilt, lines, "the chunks' lines make up the file exactly");

    // Replaced after listing (same length, new modification time): refused.
    dfs.write("/store/in/a.txt", b"delta gamma\n").unwrap();
    let err = store.get_pinned(&a).await.unwrap_err();
    assert!(matches!(err, StoreError::Changed { .. }), "{err}");
    assert!(err.to_string().contains("modification time"), "{err}");

    // An upload in progress is invisible at its final path: Hadoop's
    // client sees only a hidden temporary file until it completes.
    let target = store.resolve("hdfs:///store/out/big.bin").unwrap();
    let mut upload = target.store.put_multipart(&target.path).await.unwrap();
    upload.put_part(vec![7u8; 1 << 20].into()).await.unwrap();
    let during: Vec<String> = dfs
        .ls("/store/out")
        .unwrap()
        .into_iter()
        .map(|f| f.path)
        .collect();
    assert!(
        !during.contains(&"/store/out/big.bin".to_string()),
        "{during:?}"
    );
    assert!(
        during
            .iter()
            .all(|p| p.starts_with("/store/out/.big.bin.tmp")),
        "{during:?}"
    );
    upload.complete().await.unwrap();
    let after = dfs.ls("/store/out").unwrap();
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(
        (after[0].path.as_str(), after[0].length),
        ("/store/out/big.bin", 1 << 20)
    );
    assert_eq!(after[0].owner, "quarry", "written as HADOOP_USER_NAME");

    // Writes land whole, checked with Hadoop's client.
    let staged = store
        .put_content_addressed(
            &dfs.url_of("/store/staging"),
            PutSource::Bytes(lines.clone().into()),
        )
        .await
        .unwrap();
    let path = staged.url.strip_prefix(dfs.url()).unwrap();
    assert_eq!(dfs.cat(path).unwrap(), lines);
    let leftovers: Vec<_> = dfs
        .ls("/store/staging")
        .unwrap()
        .into_iter()
        .filter(|f| f.path.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_map_runs_on_replica_hosts_first_then_from_caches() {
    let dfs = dfs();
    const SHARDS: usize = 12;
    const SIZE: usize = 64 * 1024;
    let files = shards(SHARDS, SIZE);
    seed(dfs, "/wordcount/logs", &files);
    let expected = expected_counts(files.iter().map(|(_, body)| &body[..]));
    // Where Hadoop put each file's only replica.
    let holder: BTreeMap<String, String> = dfs
        .locations("/wordcount/logs")
        .unwrap()
        .into_iter()
        .map(|b| {
            (
                b.path.rsplit('/').next().unwrap().to_string(),
                b.hosts[0].clone(),
            )
        })
        .collect();

    let cluster = Cluster::start(&["dn-a", "dn-b", "dn-c"]);
    let client = cluster.client(None).await;
    cluster.wait_for_workers(&client, 3).await;
    let worker_host: BTreeMap<String, &str> = (0..3)
        .map(|i| (format!("hdfs-{i}"), ["dn-a", "dn-b", "dn-c"][i]))
        .collect();

    let url = dfs.url_of("/wordcount/logs/");
    let first = client
        .map_prefix::<Counts>("wordcount", &url, MapPrefixOptions::default())
        .unwrap();
    let first_job = first.job();
    let (counts, keys) = reduce(first).await;
    assert_eq!(counts, expected);
    assert_eq!(keys.len(), SHARDS);
    let info = job_info(&client, first_job).await;
    assert_eq!(info.stats.bytes_from_store, (SHARDS * SIZE) as u64);
    assert_eq!(info.stats.cache_misses, SHARDS as u32);

    // Each task ran on the worker on the host holding its block.
    for row in client.results(first_job).await.unwrap() {
        let worker = row
            .worker
            .clone()
            .expect("a finished task names its worker");
        assert_eq!(
            worker_host[&worker], holder[&row.key],
            "task {} ran on {worker}",
            row.key
        );
    }

    tokio::time::sleep(SETTLE).await;
    let second = client
        .map_prefix::<Counts>("wordcount", &url, MapPrefixOptions::default())
        .unwrap();
    let second_job = second.job();
    let (counts, _) = reduce(second).await;
    assert_eq!(counts, expected);
    let info = job_info(&client, second_job).await;
    assert_eq!(info.stats.bytes_from_store, 0, "{info:?}");
    assert_eq!(info.stats.cache_hits, SHARDS as u32);
    assert_eq!(info.tasks_local, SHARDS as u64, "{info:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_replaced_after_submission_fails_its_task_as_changed() {
    let dfs = dfs();
    let files = shards(3, 4096);
    seed(dfs, "/pins/in", &files);

    // No worker yet: the tasks wait in the scheduler with their pins.
    let mut cluster = Cluster::start(&[]);
    let client = cluster.client(None).await;
    let mut map = client
        .map_prefix::<Counts>("wordcount", "hdfs:///pins/in/", MapPrefixOptions::default())
        .unwrap();
    while !map.progress().listed {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(map.progress().tasks, 3);
    dfs.write("/pins/in/part-00001.txt", b"a new version of the shard")
        .unwrap();
    cluster.add_worker("edge");

    let mut outcomes = BTreeMap::new();
    while let Some(finished) = map.next().await {
        let finished = finished.unwrap();
        outcomes.insert(finished.key, finished.result);
    }
    let expected: Vec<(String, &[u8])> = files
        .iter()
        .map(|(name, body)| (name.clone(), &body[..]))
        .collect();
    assert_only_the_changed_input_failed(&outcomes, &expected, 1, "/pins/in/part-00001.txt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_input_is_fetched_once_per_worker() {
    let dfs = dfs();
    const SIZE: usize = 3 << 20;
    let blob: Vec<u8> = (0..SIZE).map(|i| (i * 31 % 251) as u8).collect();
    seed(dfs, "/broadcast/model", &[("weights.bin".into(), blob)]);
    let store = StoreResolver::from_env();
    let url = dfs.url_of("/broadcast/model/weights.bin");
    let pinned: Vec<DataRef> = store.list_refs(&url).try_collect().await.unwrap();
    assert_eq!(pinned.len(), 1);

    let cluster = Cluster::start(&["dn-a", "edge"]);
    let client = cluster.client(None).await;
    cluster.wait_for_workers(&client, 2).await;
    run_broadcast_job(&client, pinned[0].clone(), 400).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_map_loses_nothing_when_a_worker_is_killed() {
    let dfs = dfs();
    let file = lines_file(40_000, 2_000, 40_000);
    seed(dfs, "/killed/big", &[("lines.txt".into(), file.clone())]);

    let mut cluster = Cluster::start(&["dn-a", "dn-b"]);
    let client = cluster.client(None).await;
    cluster.wait_for_workers(&client, 2).await;
    let mut map = client
        .map_prefix::<Counts>(
            "wordcount",
            &dfs.url_of("/killed/big/"),
            MapPrefixOptions {
                chunk_size: Some(16 * 1024),
                retries: 2,
                ..MapPrefixOptions::default()
            },
        )
        .unwrap();
    let mut counts = Counts::new();
    let mut keys = Vec::new();
    let mut killed = false;
    while let Some(finished) = map.next().await {
        let finished = finished.unwrap();
        let part = finished
            .result
            .unwrap_or_else(|e| panic!("chunk {} failed: {e}", finished.key));
        keys.push(finished.key);
        for (word, n) in part {
            *counts.entry(word).or_insert(0) += n;
        }
        if !killed && keys.len() == 20 {
            cluster.workers[0].kill().unwrap();
            killed = true;
        }
    }
    assert!(
        killed,
        "the map ended before the kill: {} chunks",
        keys.len()
    );
    assert!(keys.len() > 40, "{} chunks", keys.len());
    let unique: BTreeSet<&String> = keys.iter().collect();
    assert_eq!(unique.len(), keys.len(), "no chunk reported twice");
    assert_eq!(counts, expected_counts([&file[..]]));
    assert!(counts.values().all(|&n| n == 1), "every line exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_arguments_and_results_are_staged_on_hdfs() {
    let dfs = dfs();
    let cluster = Cluster::start(&["edge"]);
    let client = cluster.client(Some(dfs.url_of("/staging/args"))).await;
    cluster.wait_for_workers(&client, 1).await;
    let job = client
        .open_job(JobOptions {
            name: "large result".into(),
            output: Some("hdfs:///staging/results/".into()),
            ..JobOptions::default()
        })
        .unwrap();
    let text: String = (0..30_000).map(|i| format!("{i} ")).collect();
    let spec = client.task("echo", &text).await.unwrap();
    let args = spec
        .args_ref
        .clone()
        .expect("the argument travels by reference");
    assert!(
        args.url.starts_with(&dfs.url_of("/staging/args/")),
        "{}",
        args.url
    );
    let mut futures = job.submit::<String>(vec![spec]).unwrap();
    job.seal().unwrap();
    let outcome = futures.remove(0).outcome().await.unwrap();
    let TaskOutcome::Ok(value) = outcome else {
        panic!("the echo failed: {outcome:?}");
    };
    let Value::Ref(data_ref) = &value else {
        panic!("a large result must come back as a reference, got {value:?}");
    };
    let path = path_of(&data_ref.url).to_string();
    assert!(path.starts_with("/staging/results/"), "{path}");
    let through_client: String = client.value(&value).await.unwrap();
    assert_eq!(through_client, text);
    // Hadoop reads the staged argument (a MessagePack string holding the
    // text) and the result (stored as JSON, readable by any tool).
    let argument = dfs.cat(path_of(&args.url)).unwrap();
    assert!(
        argument.ends_with(text.as_bytes()),
        "{} bytes",
        argument.len()
    );
    assert!(argument.len() <= text.len() + 5);
    let result: serde_json::Value = serde_json::from_slice(&dfs.cat(&path).unwrap()).unwrap();
    assert_eq!(result, serde_json::Value::String(text.clone()));
}

/// The absolute path of an `hdfs://authority/path` or `hdfs:///path` URL.
fn path_of(url: &str) -> &str {
    let rest = url.strip_prefix("hdfs://").expect("an hdfs:// URL");
    &rest[rest.find('/').expect("a path")..]
}

/// Runs `quarry ARGS` in `dir` with `env` and returns its output.
fn quarry(dir: &Path, args: &[&str], env: &[(&str, String)]) -> std::process::Output {
    Command::new(quarry_bin())
        .args(args)
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn quarry_run_reads_and_writes_hdfs_with_a_manifest_and_no_partial_files() {
    let dfs = dfs();
    seed(
        dfs,
        "/cli/in",
        &[
            ("a.txt".into(), b"one two three\n".to_vec()),
            ("sub/b.txt".into(), b"four five\nsix\n".to_vec()),
            ("skip.csv".into(), b"not,matched\n".to_vec()),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("job.yaml"),
        r#"
name: hdfs-words
input: hdfs:///cli/in/**/*.txt
command: [sh, -c, 'wc -w < "$QUARRY_INPUT" > "$QUARRY_OUTPUT_DIR/words.txt"']
output: hdfs:///cli/out/
"#,
    )
    .unwrap();
    let env: Vec<(&str, String)> = dfs.env();
    let output = quarry(dir.path(), &["run", "job.yaml", "--workers", "2"], &env);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("succeeded: 2 tasks"), "{stderr}");

    for (key, words) in [("a.txt", 3), ("sub/b.txt", 3)] {
        let counted = dfs.cat(&format!("/cli/out/{key}/words.txt")).unwrap();
        assert_eq!(String::from_utf8_lossy(&counted).trim(), words.to_string());
    }
    let written: Vec<String> = dfs
        .ls("/cli/out")
        .unwrap()
        .into_iter()
        .map(|f| f.path)
        .collect();
    assert!(
        written.contains(&"/cli/out/_SUCCESS".to_string()),
        "{written:?}"
    );
    assert!(
        !written
            .iter()
            .any(|p| p.contains(".tmp") || p.contains("skip.csv")),
        "{written:?}"
    );
    let manifest = dfs.cat("/cli/out/_quarry/manifest.parquet").unwrap();
    let reader =
        parquet::file::reader::SerializedFileReader::new(bytes::Bytes::from(manifest)).unwrap();
    use parquet::file::reader::FileReader;
    assert_eq!(reader.metadata().file_metadata().num_rows(), 2);

    // A cluster that asks for Kerberos is refused with a clear error.
    let kerberos = dir.path().join("kerberos-conf");
    std::fs::create_dir(&kerberos).unwrap();
    std::fs::write(
        kerberos.join("core-site.xml"),
        format!(
            "<configuration><property><name>fs.defaultFS</name><value>{}</value></property>\
             <property><name>hadoop.security.authentication</name><value>kerberos</value>\
             </property></configuration>",
            dfs.url()
        ),
    )
    .unwrap();
    let env = [("HADOOP_CONF_DIR", kerberos.display().to_string())];
    let output = quarry(dir.path(), &["run", "job.yaml", "--workers", "1"], &env);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_ne!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("Kerberos"), "{stderr}");
    assert!(stderr.contains("not support"), "{stderr}");
}

#[test]
fn a_name_service_is_resolved_from_hadoop_conf_dir_through_the_standby() {
    // A cluster of its own: two NameNodes, the first one standby.
    let ha = MiniDfs::start(&MiniDfsOptions {
        hosts: vec!["dn-a".into()],
        ha: true,
        ..MiniDfsOptions::default()
    })
    .unwrap();
    seed(
        &ha,
        "/ha/in",
        &[
            ("a.txt".into(), b"one two\n".to_vec()),
            ("b.txt".into(), b"three\n".to_vec()),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("job.yaml"),
        r#"
name: name-service
input: hdfs://minidfs-ns/ha/in/
command: [sh, -c, 'wc -w < "$QUARRY_INPUT" > "$QUARRY_OUTPUT_DIR/words.txt"']
output: hdfs://minidfs-ns/ha/out/
"#,
    )
    .unwrap();
    let output = quarry(
        dir.path(),
        &["run", "job.yaml", "--workers", "1"],
        &ha.env(),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    for (key, words) in [("a.txt", 2), ("b.txt", 1)] {
        let counted = ha.cat(&format!("/ha/out/{key}/words.txt")).unwrap();
        assert_eq!(String::from_utf8_lossy(&counted).trim(), words.to_string());
    }
    assert_eq!(ha.cat("/ha/out/_SUCCESS").unwrap(), b"");
}
