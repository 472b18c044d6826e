//! `quarry bench prefix`: a line count (or word count, or command) mapped
//! over a prefix several times by the same worker processes, to measure what their shard caches and
//! data-local placement save. Pass 1 reads every shard from the store; later
//! passes should read none, on the worker that already holds each shard.
//! Optionally it also measures a broadcast input shared by many tasks,
//! which each worker should download exactly once.

use super::bench::BenchCluster;
use crate::config;
use anyhow::{bail, Context, Result};
use futures::TryStreamExt;
use quarry_client::{Client, JobOptions, MapPrefixOptions};
use quarry_command::{CommandTemplate, COMMAND_EXECUTOR};
use quarry_proto::{DataRef, JobInfo};
use quarry_store::StoreResolver;
use serde::de::IgnoredAny;
use serde_json::{json, Value as Json};
use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Words the seeded shards are made of.
const VOCABULARY: [&str; 24] = [
    "quarry", "shard", "cache", "worker", "prefix", "reduce", "object", "store", "bucket", "etag",
    "range", "chunk", "line", "word", "count", "locality", "schedule", "pin", "fetch", "task",
    "job", "result", "stream", "batch",
];
/// Words per seeded line.
const WORDS_PER_LINE: usize = 12;
/// How long to let workers report what they cached before the next pass:
/// they send cache deltas every 200 ms, and a pass that starts before the
/// scheduler heard of them is placed on stale knowledge.
const SETTLE: Duration = Duration::from_secs(1);
/// How long the `--floor` command may run.
const FLOOR_LIMIT: Duration = Duration::from_secs(1800);

/// Options of `quarry bench prefix`.
#[derive(clap::Args)]
pub struct PrefixArgs {
    /// Where the shards live (`s3://bucket/prefix/`, `file:///dir/` or a
    /// local directory); missing shards are written there first. S3
    /// settings come from the AWS_* variables, which workers inherit.
    #[arg(long)]
    url: String,
    /// Number of shards (`part-NNNNN.txt`).
    #[arg(long, default_value_t = 64)]
    shards: usize,
    /// Size of each shard, such as 16MiB.
    #[arg(long, default_value = "16MiB", value_parser = config::parse_size)]
    shard_size: u64,
    /// Worker processes.
    #[arg(long, default_value_t = 2)]
    workers: u32,
    /// Slots per worker.
    #[arg(long, default_value_t = 1)]
    nthreads: u32,
    /// Times the same map runs; the workers (and their caches) persist.
    #[arg(long, default_value_t = 2)]
    passes: u32,
    /// Built-in function to map: `linecount` reads every byte and does
    /// little else, so it shows the data plane; `wordcount` is
    /// compute-bound and shows word-counting speed.
    #[arg(long, default_value = "linecount", value_parser = ["linecount", "wordcount"])]
    function: String,
    /// Run this command per shard (`quarry.command`, such as
    /// "wc -l {input}") instead of `--function`.
    #[arg(long)]
    command: Option<String>,
    /// Seed one object of this size instead of `--shards` (it is
    /// `--shards 1 --shard-size SIZE`) and map over its chunks: needs
    /// `--chunk-size`, and shows that a chunked object is read from the
    /// store about once, however many workers share it.
    #[arg(long, value_parser = config::parse_size, requires = "chunk_size")]
    single_object: Option<u64>,
    /// Split shards into line-aligned chunks of this size, one task each.
    #[arg(long, value_parser = config::parse_size)]
    chunk_size: Option<u64>,
    /// After the passes, run a job of `--broadcast-tasks` tasks sharing one
    /// broadcast input of this size (written under URL/broadcast/).
    #[arg(long, value_parser = config::parse_size)]
    broadcast_size: Option<u64>,
    /// Tasks of the broadcast job.
    #[arg(long, default_value_t = 1000)]
    broadcast_tasks: u32,
    /// Passed to the workers: objects larger than this are downloaded as
    /// parallel ranged GETs [default: the worker's, 16MiB].
    #[arg(long, value_parser = config::parse_size)]
    parallel_get_threshold: Option<u64>,
    /// Host names given to the workers in turn (`quarry worker --host`),
    /// such as the DataNode names of a test HDFS, so that pass 1 is placed
    /// on the hosts holding each shard's blocks.
    #[arg(long, value_delimiter = ',')]
    worker_hosts: Vec<String>,
    /// A plain-read floor measured in the same run, before pass 1: a
    /// command (split on spaces; `{url}` is replaced by the shards' URL)
    /// that reads every shard once and prints `seconds=S` on a line of its
    /// stdout, such as `scripts/minidfs.sh read-all {url}` (Hadoop's own
    /// client). Pass 1 is then reported beside it.
    #[arg(long)]
    floor: Option<String>,
    /// Print one JSON object per line instead of indented JSON.
    #[arg(long)]
    json: bool,
}

/// Runs the `--floor` command for the shards at `base` and returns what it
/// measured: the `seconds=` it printed (its own timing of the reads,
/// without its start-up).
async fn read_floor(command: &str, base: &str) -> Result<f64> {
    let argv: Vec<String> = command
        .split_whitespace()
        .map(|word| word.replace("{url}", base))
        .collect();
    let (program, rest) = argv.split_first().context("--floor is empty")?;
    let output = tokio::time::timeout(
        FLOOR_LIMIT,
        tokio::process::Command::new(program)
            .args(rest)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .with_context(|| format!("the floor command `{command}` ran past {FLOOR_LIMIT:?}"))?
    .with_context(|| format!("cannot run the floor command `{command}`"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "the floor command `{command}` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    floor_seconds(&stdout)
        .with_context(|| format!("the floor command `{command}` printed no seconds=S: {stdout}"))
}

/// The `seconds=S` of the last line that has one: a floor command that
/// reads twice prints its warm pass last.
fn floor_seconds(stdout: &str) -> Option<f64> {
    stdout.lines().rev().find_map(|line| {
        line.split_whitespace()
            .find_map(|field| field.strip_prefix("seconds="))
            .and_then(|value| value.parse().ok())
    })
}

/// Deterministic text of exactly `size` bytes: lines of words, each line
/// ending in `\n`.
fn shard_text(index: usize, size: u64) -> Vec<u8> {
    let size = size as usize;
    let mut text = Vec::with_capacity(size);
    let mut state = (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut on_line = 0;
    loop {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let word = VOCABULARY[(state >> 59) as usize % VOCABULARY.len()].as_bytes();
        if text.len() + word.len() + 1 > size {
            break;
        }
        text.extend_from_slice(word);
        on_line += 1;
        if on_line == WORDS_PER_LINE {
            text.push(b'\n');
            on_line = 0;
        } else {
            text.push(b' ');
        }
    }
    if let Some(last) = text.last_mut() {
        *last = b'\n';
    }
    text.resize(size, b'\n');
    text
}

fn shard_url(base: &str, index: usize) -> String {
    format!("{base}/part-{index:05}.txt")
}

/// Sizes of the objects a URL or glob lists, by URL.
async fn listed_sizes(store: &StoreResolver, url: &str) -> Result<HashMap<String, u64>> {
    let refs: Vec<DataRef> = store.list_refs(url).try_collect().await?;
    Ok(refs.into_iter().map(|r| (r.url, r.size)).collect())
}

/// Writes the shards that are missing or have another size; returns how
/// many were written.
async fn seed_shards(store: &StoreResolver, base: &str, args: &PrefixArgs) -> Result<usize> {
    let present = listed_sizes(store, &format!("{base}/part-*.txt")).await?;
    let mut written = 0;
    for index in 0..args.shards {
        let url = shard_url(base, index);
        if present.get(&url) == Some(&args.shard_size) {
            continue;
        }
        store
            .put_object(&url, shard_text(index, args.shard_size).into())
            .await
            .with_context(|| format!("cannot write {url}"))?;
        written += 1;
    }
    Ok(written)
}

/// The pinned broadcast object of `size` bytes, written first if missing.
async fn seed_broadcast(store: &StoreResolver, base: &str, size: u64) -> Result<DataRef> {
    let url = format!("{base}/broadcast/blob-{size}.bin");
    if listed_sizes(store, &url).await?.get(&url) != Some(&size) {
        let mut bytes = Vec::with_capacity(size as usize);
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        while (bytes.len() as u64) < size {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            bytes.extend_from_slice(&state.to_le_bytes());
        }
        bytes.truncate(size as usize);
        store
            .put_object(&url, bytes.into())
            .await
            .with_context(|| format!("cannot write {url}"))?;
    }
    let mut refs: Vec<DataRef> = store.list_refs(&url).try_collect().await?;
    refs.pop()
        .with_context(|| format!("{url} was written but does not list"))
}

fn locality_pct(info: &JobInfo) -> f64 {
    let placed = info.tasks_local + info.tasks_remote;
    if placed == 0 {
        0.0
    } else {
        100.0 * info.tasks_local as f64 / placed as f64
    }
}

fn job_metrics(info: &JobInfo) -> Json {
    json!({
        "bytes_from_store": info.stats.bytes_from_store,
        "bytes_from_cache": info.stats.bytes_from_cache,
        "cache_hits": info.stats.cache_hits,
        "cache_misses": info.stats.cache_misses,
        "tasks_local": info.tasks_local,
        "tasks_remote": info.tasks_remote,
        "locality_pct": locality_pct(info),
        "failed": info.counts.failed,
    })
}

/// One map over the shards (`--function`, or `--command`); returns its
/// report.
async fn map_pass(client: &Client, base: &str, pass: u32, args: &PrefixArgs) -> Result<Json> {
    let mut options = MapPrefixOptions {
        name: Some(format!("bench prefix pass {pass}")),
        glob: Some("part-*.txt".into()),
        chunk_size: args.chunk_size,
        retries: 2,
        ..MapPrefixOptions::default()
    };
    let started = Instant::now();
    let mut tasks = 0u64;
    // What the function counted: lines, or words summed over the map.
    let mut counted = None::<u64>;
    let (job, input_bytes) = match &args.command {
        None => {
            let mut results = client.map_prefix::<Json>(&args.function, base, options)?;
            while let Some(finished) = results.next().await {
                let finished = finished?;
                let result = finished
                    .result
                    .with_context(|| format!("task {} failed", finished.key))?;
                tasks += 1;
                *counted.get_or_insert(0) += count_of(&result);
            }
            (results.job(), results.progress().bytes)
        }
        Some(command) => {
            options.context = CommandTemplate {
                argv: command.split_whitespace().map(String::from).collect(),
                ..CommandTemplate::default()
            }
            .to_context();
            let mut results = client.map_prefix::<IgnoredAny>(COMMAND_EXECUTOR, base, options)?;
            while let Some(finished) = results.next().await {
                let finished = finished?;
                finished
                    .result
                    .with_context(|| format!("task {} failed", finished.key))?;
                tasks += 1;
            }
            (results.job(), results.progress().bytes)
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    let info = client.job_info(job).await?;
    let mut report = json!({
        "bench": "prefix",
        "function": args.command.as_deref().unwrap_or(&args.function),
        "pass": pass,
        "seconds": seconds,
        "tasks": tasks,
        "input_bytes": input_bytes,
        "mib_per_sec": input_bytes as f64 / (1 << 20) as f64 / seconds,
        "counted": counted,
    });
    merge(&mut report, job_metrics(&info));
    Ok(report)
}

/// The number a task's result stands for: `linecount`'s lines, or the sum
/// of `wordcount`'s per-word counts.
fn count_of(result: &Json) -> u64 {
    match result {
        Json::Number(n) => n.as_u64().unwrap_or(0),
        Json::Object(counts) => counts.values().filter_map(Json::as_u64).sum(),
        _ => 0,
    }
}

/// Many no-op tasks sharing one broadcast input; returns its report.
async fn broadcast_pass(client: &Client, blob: DataRef, args: &PrefixArgs) -> Result<Json> {
    let size = blob.size;
    let job = client.open_job(JobOptions {
        name: "bench prefix broadcast".into(),
        broadcast: vec![("blob".into(), blob)],
        ..JobOptions::default()
    })?;
    let started = Instant::now();
    // MessagePack nil: `noop` ignores its argument.
    let specs = (0..args.broadcast_tasks)
        .map(|_| job.new_task("noop", vec![0xc0]))
        .collect();
    let futures = job.submit::<()>(specs)?;
    job.seal()?.await?;
    client.gather(futures).await?;
    let seconds = started.elapsed().as_secs_f64();
    let info = client.job_info(job.id()).await?;
    let mut report = json!({
        "bench": "prefix-broadcast",
        "tasks": args.broadcast_tasks,
        "broadcast_bytes": size,
        "seconds": seconds,
        "workers": args.workers,
        "downloads_per_worker": f64::from(info.stats.cache_misses) / f64::from(args.workers.max(1)),
        "store_bytes_per_worker": info.stats.bytes_from_store as f64 / f64::from(args.workers.max(1)),
    });
    merge(&mut report, job_metrics(&info));
    Ok(report)
}

fn merge(into: &mut Json, from: Json) {
    if let (Some(into), Json::Object(from)) = (into.as_object_mut(), from) {
        into.extend(from);
    }
}

pub async fn prefix(mut args: PrefixArgs) -> Result<ExitCode> {
    if let Some(size) = args.single_object {
        args.shards = 1;
        args.shard_size = size;
    }
    if args.shards == 0 || args.shard_size == 0 {
        bail!("--shards and --shard-size must be positive");
    }
    let store = StoreResolver::from_env();
    // Spelled as listings spell URLs, so that present shards are recognised.
    let base = store
        .resolve(&args.url)?
        .url()
        .trim_end_matches('/')
        .to_string();
    let seeding = Instant::now();
    let written = seed_shards(&store, &base, &args).await?;
    let blob = match args.broadcast_size {
        Some(size) => Some(seed_broadcast(&store, &base, size).await?),
        None => None,
    };
    let print = |report: &Json| -> Result<()> {
        if args.json {
            println!("{report}");
        } else {
            println!("{}", serde_json::to_string_pretty(report)?);
        }
        Ok(())
    };
    print(&json!({
        "bench": "prefix-seed",
        "url": args.url,
        "shards": args.shards,
        "shard_size": args.shard_size,
        "shards_written": written,
        "seconds": seeding.elapsed().as_secs_f64(),
    }))?;

    let floor = match &args.floor {
        Some(command) => {
            let seconds = read_floor(command, &base).await?;
            let bytes = args.shards as u64 * args.shard_size;
            print(&json!({
                "bench": "prefix-floor",
                "command": command,
                "seconds": seconds,
                "input_bytes": bytes,
                "mib_per_sec": bytes as f64 / (1 << 20) as f64 / seconds,
            }))?;
            Some(seconds)
        }
        None => None,
    };

    let worker_args: Vec<String> = args
        .parallel_get_threshold
        .map(|size| format!("--parallel-get-threshold={size}"))
        .into_iter()
        .collect();
    let (cluster, client) = BenchCluster::start(
        "bench-prefix",
        args.workers,
        args.nthreads,
        &[],
        &worker_args,
        &args.worker_hosts,
    )
    .await?;

    let outcome = async {
        for pass in 1..=args.passes {
            if pass > 1 {
                tokio::time::sleep(SETTLE).await;
            }
            let mut report = map_pass(&client, &base, pass, &args).await?;
            if let (Some(floor), Some(seconds)) = (floor, report["seconds"].as_f64()) {
                merge(
                    &mut report,
                    json!({ "floor_seconds": floor, "over_floor": seconds / floor }),
                );
            }
            print(&report)?;
        }
        if let Some(blob) = blob {
            tokio::time::sleep(SETTLE).await;
            print(&broadcast_pass(&client, blob, &args).await?)?;
        }
        anyhow::Ok(())
    }
    .await;
    drop(client);
    drop(cluster);
    outcome?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_exact_deterministic_lines_of_words() {
        for size in [1u64, 7, 100, 10_000] {
            let text = shard_text(3, size);
            assert_eq!(text.len() as u64, size);
            assert_eq!(text.last(), Some(&b'\n'));
            for word in String::from_utf8(text).unwrap().split_whitespace() {
                assert!(VOCABULARY.contains(&word), "{word}");
            }
        }
        assert_eq!(shard_text(5, 4096), shard_text(5, 4096));
        assert_ne!(shard_text(5, 4096), shard_text(6, 4096));
    }

    #[test]
    fn the_floor_is_the_last_seconds_printed() {
        let printed = "files=4 bytes=10 seconds=2.5\nfiles=4 bytes=10 seconds=1.25\n";
        assert_eq!(floor_seconds(printed), Some(1.25));
        assert_eq!(floor_seconds("nothing here\n"), None);
    }

    #[tokio::test]
    async fn a_floor_command_is_run_on_the_shards_url() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("floor.sh");
        std::fs::write(
            &script,
            "#!/bin/sh\necho \"read $1\"\necho files=1 seconds=0.75\n",
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let command = format!("{} {{url}}", script.display());
        assert_eq!(
            read_floor(&command, "hdfs://nn/shards").await.unwrap(),
            0.75
        );
        let err = read_floor("false", "x").await.unwrap_err();
        assert!(err.to_string().contains("failed"), "{err}");
    }

    #[tokio::test]
    async fn seeding_writes_only_what_is_missing() {
        let dir = std::env::temp_dir().join(format!("quarry-bench-seed-{}", std::process::id()));
        let base = format!("file://{}", dir.display());
        let store = StoreResolver::from_env();
        let args = PrefixArgs {
            url: base.clone(),
            shards: 3,
            shard_size: 500,
            workers: 1,
            nthreads: 1,
            passes: 1,
            function: "linecount".into(),
            command: None,
            single_object: None,
            chunk_size: None,
            broadcast_size: None,
            broadcast_tasks: 1,
            parallel_get_threshold: None,
            worker_hosts: Vec::new(),
            floor: None,
            json: true,
        };
        assert_eq!(seed_shards(&store, &base, &args).await.unwrap(), 3);
        assert_eq!(seed_shards(&store, &base, &args).await.unwrap(), 0);
        std::fs::write(dir.join("part-00001.txt"), "short").unwrap();
        assert_eq!(seed_shards(&store, &base, &args).await.unwrap(), 1);
        assert_eq!(
            std::fs::read(dir.join("part-00001.txt")).unwrap(),
            shard_text(1, 500)
        );
        let blob = seed_broadcast(&store, &base, 1000).await.unwrap();
        assert_eq!(blob.size, 1000);
        assert!(blob.url.ends_with("/broadcast/blob-1000.bin"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
