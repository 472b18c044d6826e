//! Cache files damaged under a running worker (issue #15 item 7), with a
//! real scheduler and worker process over TCP loopback: the worker's
//! cached copies of its inputs are overwritten between two runs of the
//! same word count, and the second run must still give the right answer.
//!
//! - A byte flipped the ordinary way changes the file's modification time:
//!   every hit checks size and modification time, so the worker hashes the
//!   blocks, finds the damage and fetches them again.
//! - A byte flipped with the modification time put back is what only
//!   `--verify-cache-checksums` catches: every hit is hashed.
//!
//! Build the binary first: `cargo build -p quarry-cli`.

mod common;

use common::{expected_counts, reduce, Counts};
use quarry::parts::client::MapPrefixOptions;
use quarry::Client;
use quarry_integration::{quarry_command, CapturedProcess};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Bounds waits for things that take a few seconds when they work (not a
/// timing assertion).
const PATIENCE: Duration = Duration::from_secs(90);
const FILES: usize = 6;

fn quarry(name: &str, args: &[&str]) -> CapturedProcess {
    let mut command = quarry_command();
    command.args(args).env("RUST_LOG", "info");
    CapturedProcess::spawn(name, command, PATIENCE).expect("cannot start quarry")
}

/// Input files whose words a flipped byte changes; returns their texts.
fn write_inputs(dir: &Path) -> Vec<Vec<u8>> {
    std::fs::create_dir_all(dir).unwrap();
    (0..FILES)
        .map(|i| {
            let text: String = (0..2_000)
                .map(|n| format!("alpha{i} beta{} gamma\n", n % 37))
                .collect();
            std::fs::write(dir.join(format!("part-{i}.txt")), &text).unwrap();
            text.into_bytes()
        })
        .collect()
}

/// The worker's cached data files.
fn cached_files(cache: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![cache.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "data") {
                found.push(path);
            }
        }
    }
    found
}

/// Overwrites the first `a` of `path` with `b`, keeping its size; with
/// `keep_mtime`, puts its modification time back as it was.
fn flip_a_byte(path: &Path, keep_mtime: bool) {
    let before: SystemTime = std::fs::metadata(path).unwrap().modified().unwrap();
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes
        .iter()
        .position(|&b| b == b'a')
        .expect("an `a` to flip");
    bytes[at] = b'b';
    // Make sure the new modification time differs where the file system
    // keeps coarse times.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(path, &bytes).unwrap();
    if keep_mtime {
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(before).unwrap();
    }
}

async fn word_count(client: &Client, url: &str) -> (Counts, u64) {
    let map = client
        .map_prefix::<Counts>("wordcount", url, MapPrefixOptions::default())
        .unwrap();
    let job = map.job();
    let (counts, keys) = tokio::time::timeout(PATIENCE, reduce(map))
        .await
        .expect("the word count finished in time");
    assert_eq!(keys.len(), FILES);
    let info = client.job_info(job).await.unwrap();
    (counts, info.stats.bytes_from_store)
}

/// Runs the word count, damages every cached copy, runs it again: the
/// answer must be the same, and the worker must say what it found.
async fn damaged_cache_is_caught(worker_flags: &[&str], keep_mtime: bool, warning: &str) {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    let texts = write_inputs(&inputs);
    let expected = expected_counts(texts.iter().map(Vec::as_slice));
    let cache = dir.path().join("cache");
    let cache_arg = cache.display().to_string();

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
    let mut args = vec![
        "worker",
        endpoint.as_str(),
        "--name",
        "keeper",
        "--nthreads",
        "2",
        "--cache-dir",
        &cache_arg,
    ];
    args.extend_from_slice(worker_flags);
    let mut worker = quarry("worker", &args);
    let client = tokio::time::timeout(PATIENCE, Client::connect(&endpoint))
        .await
        .expect("connected in time")
        .unwrap();
    let url = format!("file://{}/", inputs.display());

    let (first, fetched) = word_count(&client, &url).await;
    assert_eq!(first, expected);
    let total: u64 = texts.iter().map(|t| t.len() as u64).sum();
    assert_eq!(fetched, total, "the first run reads every input");

    let files = cached_files(&cache);
    assert_eq!(files.len(), FILES, "one cached file per input: {files:?}");
    for file in &files {
        flip_a_byte(file, keep_mtime);
    }

    let (second, refetched) = word_count(&client, &url).await;
    assert_eq!(second, expected, "a damaged cache entry was used");
    assert!(refetched > 0, "the damaged blocks were fetched again");
    worker.assert_running();
    let log = worker.output();
    assert!(log.contains(warning), "the worker did not warn:\n{log}");

    client.close().await;
    worker.stop();
    scheduler.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_file_modified_under_a_running_worker_is_detected_and_refetched() {
    damaged_cache_is_caught(&[], false, "modified outside quarry").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_checksums_on_every_hit_damage_that_keeps_size_and_mtime_is_caught() {
    damaged_cache_is_caught(&["--verify-cache-checksums"], true, "checksum mismatch").await;
}
