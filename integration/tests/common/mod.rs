//! Helpers shared by the data-plane tests against MinIO (`data_plane.rs`)
//! and HDFS (`hdfs.rs`): expected word counts computed without quarry,
//! draining a word-count map, and logged child processes.

#![allow(dead_code)] // each test binary uses a different part of it

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};

use quarry::parts::client::PrefixMap;
use quarry::parts::proto::{DataRef, ErrorKind, JobId, JobInfo};
use quarry::{Client, ClientError, JobOptions};
use quarry_integration::ChildGuard;
use tempfile::TempDir;

/// Word counts as the built-in `wordcount` returns them.
pub type Counts = BTreeMap<String, u64>;

/// What `wordcount` should say about some texts, computed without quarry.
pub fn expected_counts<'a>(texts: impl IntoIterator<Item = &'a [u8]>) -> Counts {
    let mut counts = Counts::new();
    for text in texts {
        for word in std::str::from_utf8(text).unwrap().split_whitespace() {
            *counts.entry(word.to_lowercase()).or_insert(0) += 1;
        }
    }
    counts
}

/// Drains a word-count map: the merged counts and the task keys seen.
pub async fn reduce(mut map: PrefixMap<Counts>) -> (Counts, Vec<String>) {
    let mut total = Counts::new();
    let mut keys = Vec::new();
    while let Some(finished) = map.next().await {
        let finished = finished.unwrap();
        let counts = finished
            .result
            .unwrap_or_else(|e| panic!("task {} failed: {e}", finished.key));
        keys.push(finished.key);
        for (word, n) in counts {
            *total.entry(word).or_insert(0) += n;
        }
    }
    keys.sort();
    (total, keys)
}

pub async fn job_info(client: &Client, job: JobId) -> JobInfo {
    client.job_info(job).await.unwrap()
}

/// Spawns `command` with RUST_LOG=warn, stdout discarded and stderr in
/// `dir/name.log`.
pub fn spawn_logged(mut command: Command, dir: &TempDir, name: &str) -> ChildGuard {
    let log = std::fs::File::create(dir.path().join(format!("{name}.log"))).unwrap();
    command
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    ChildGuard::spawn(command).unwrap()
}

/// A newline-delimited file of `lines` lines, each holding one unique
/// token; every `long_every`-th line (from the 17th) is padded with
/// `padding` blanks, longer than a chunk, so that lines cross chunk
/// boundaries.
pub fn lines_file(lines: usize, long_every: usize, padding: usize) -> Vec<u8> {
    let mut text = Vec::new();
    for i in 0..lines {
        if i % long_every == 17 {
            text.extend_from_slice(format!("long{i}").as_bytes());
            text.extend(std::iter::repeat_n(b' ', padding));
        } else {
            text.extend_from_slice(format!("line{i}").as_bytes());
        }
        text.push(b'\n');
    }
    text
}

/// Checks the outcomes of a word-count map over `shards` (task key, body)
/// where shard `changed`, at `changed_url`, was overwritten after the job
/// was submitted: that one failed as `InputChanged` naming its URL, every
/// other one counted its listed content.
pub fn assert_only_the_changed_input_failed(
    outcomes: &BTreeMap<String, Result<Counts, ClientError>>,
    shards: &[(String, &[u8])],
    changed: usize,
    changed_url: &str,
) {
    assert_eq!(outcomes.len(), shards.len());
    for (index, (key, body)) in shards.iter().enumerate() {
        match (&outcomes[key], index == changed) {
            (Ok(counts), false) => assert_eq!(counts, &expected_counts([*body])),
            (
                Err(ClientError::Task {
                    kind: ErrorKind::InputChanged,
                    message,
                    ..
                }),
                true,
            ) => {
                assert!(message.contains("changed"), "{message}");
                assert!(message.contains(changed_url), "{message}");
            }
            (other, _) => panic!("unexpected outcome for {key}: {other:?}"),
        }
    }
}

/// Runs `tasks` no-op tasks sharing `blob` as the broadcast input
/// `weights`, and checks that two workers ran them and each fetched the
/// blob once (the job's own cache accounting); returns the job's info.
pub async fn run_broadcast_job(client: &Client, blob: DataRef, tasks: usize) -> JobInfo {
    let size = blob.size;
    let job = client
        .open_job(JobOptions {
            name: "broadcast".into(),
            broadcast: vec![("weights".into(), blob)],
            ..JobOptions::default()
        })
        .unwrap();
    let specs = (0..tasks)
        .map(|_| job.new_task("noop", vec![0xc0]))
        .collect();
    let futures = job.submit::<()>(specs).unwrap();
    job.seal().unwrap();
    client.gather(futures).await.unwrap();

    let rows = client.results(job.id()).await.unwrap();
    assert_eq!(rows.len(), tasks);
    let ran_on: BTreeSet<String> = rows.into_iter().filter_map(|row| row.worker).collect();
    assert_eq!(ran_on.len(), 2, "both workers ran tasks: {ran_on:?}");
    let info = job_info(client, job.id()).await;
    assert_eq!(info.stats.cache_misses, 2, "{info:?}");
    assert_eq!(info.stats.bytes_from_store, 2 * size);
    assert_eq!(info.stats.cache_hits as usize, tasks - 2);
    info
}
