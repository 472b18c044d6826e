//! YAML jobs through the `quarry` binary: `run`, `validate`, `submit`,
//! `jobs`, `status`, `results`, `cancel`, with outputs read back directly
//! (files on disk, or MinIO through aws-sdk-s3), never through quarry.
//!
//! Build the binary first: `cargo build -p quarry-cli`. The MinIO test needs
//! the MinIO binary (`scripts/minio.sh`).

use quarry_integration::{quarry_bin, text_shard, ChildGuard, MinioServer};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A bound on waiting for something that normally takes well under a
/// second (a scheduler starting, a job finishing), so that a broken build
/// fails instead of hanging. Not a timing assertion.
const PATIENCE: Duration = Duration::from_secs(120);

fn quarry(dir: &Path, args: &[&str]) -> Output {
    quarry_with_env(dir, args, &[])
}

fn quarry_with_env(dir: &Path, args: &[&str], env: &[(&str, String)]) -> Output {
    Command::new(quarry_bin())
        .args(args)
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env_remove("QUARRY_SCHEDULER")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("cannot run the quarry binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Panics with everything the command printed unless it exited with `code`.
fn expect_exit(output: &Output, code: i32, what: &str) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "{what}: unexpected exit status\n--- stdout\n{}\n--- stderr\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

fn write(path: &Path, content: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

/// Writes `yaml` to `dir/job.yaml` and runs it with `quarry run` on
/// `workers` embedded workers.
fn run_job_file(dir: &Path, yaml: &str, workers: &str) -> Output {
    write(&dir.join("job.yaml"), yaml);
    quarry(dir, &["run", "job.yaml", "--workers", workers])
}

/// Every regular file under `dir`, as sorted paths relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn word_counts(text: &str) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for word in text.split_whitespace() {
        *counts.entry(word.to_lowercase()).or_insert(0) += 1;
    }
    counts
}

/// The rows printed by `--results json` / `--format json`.
fn json_rows(output: &Output) -> Vec<Value> {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not a JSON array ({e}):\n{}\n--- stderr\n{}",
            text(&output.stdout),
            text(&output.stderr)
        )
    })
}

#[test]
fn run_writes_each_tasks_outputs_under_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = [
        ("data/a.txt", "one two three\n"),
        ("data/b.txt", "four five\nsix seven eight\n"),
        ("data/sub/c.txt", "nine\n"),
        ("data/skip.csv", "not,matched\n"),
    ];
    for (path, content) in inputs {
        write(&dir.path().join(path), content);
    }
    let output = run_job_file(
        dir.path(),
        r#"
name: count-words
input: ./data/**/*.txt
command: [sh, -c, 'wc -w < "$QUARRY_INPUT" > "$QUARRY_OUTPUT_DIR/words.txt"; echo "{{\"key\": \"$QUARRY_TASK_KEY\"}}"']
output: ./out/
"#,
        "2",
    );
    expect_exit(&output, 0, "quarry run");
    assert!(
        text(&output.stderr).contains("succeeded: 3 tasks"),
        "{}",
        text(&output.stderr)
    );

    let out = dir.path().join("out");
    for (key, words) in [("a.txt", 3), ("b.txt", 5), ("sub/c.txt", 1)] {
        let counted = std::fs::read_to_string(out.join(key).join("words.txt")).unwrap();
        assert_eq!(counted.trim(), words.to_string(), "{key}");
        let stdout_log = std::fs::read_to_string(out.join(key).join("_logs/stdout.log")).unwrap();
        assert_eq!(stdout_log, format!("{{\"key\": \"{key}\"}}\n"));
    }
    assert!(!out.join("skip.csv").exists(), "the glob excludes .csv");
}

#[test]
fn the_wordcount_example_counts_every_word() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/wordcount");
    let dir = tempfile::tempdir().unwrap();
    // A copy, so the run's outputs land in the temporary directory.
    let copy = dir.path().join("wordcount");
    let status = Command::new("cp")
        .arg("-r")
        .arg(&example)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    let _ = std::fs::remove_dir_all(copy.join("out"));

    let output = quarry(
        dir.path(),
        &["run", "wordcount/job.yaml", "--results", "json"],
    );
    expect_exit(&output, 0, "quarry run examples/wordcount/job.yaml");
    let rows = json_rows(&output);
    let data = copy.join("data");
    let files = files_under(&data);
    assert!(
        files.len() >= 3,
        "the example ships several files: {files:?}"
    );
    assert_eq!(
        rows.len(),
        files.len() + 1,
        "one task per file and a reducer"
    );
    let mut total = BTreeMap::new();
    for file in files {
        let row = rows
            .iter()
            .find(|r| r["key"] == file.as_str())
            .unwrap_or_else(|| panic!("no row for {file}"));
        assert_eq!(row["state"], "done");
        let expected = word_counts(&std::fs::read_to_string(data.join(&file)).unwrap());
        let counted: BTreeMap<String, u64> = serde_json::from_value(row["result"].clone()).unwrap();
        assert_eq!(counted, expected, "{file}");
        for (word, n) in expected {
            *total.entry(word).or_insert(0) += n;
        }
    }
    // `reduce: merge_counts`: the job's answer, in the manifest's last
    // reducer row and in OUTPUT/_result.json.
    let reduced = rows
        .iter()
        .find(|r| r["key"] == "_reduce/result")
        .expect("no row for the final reducer");
    let reduced: BTreeMap<String, u64> = serde_json::from_value(reduced["result"].clone()).unwrap();
    assert_eq!(reduced, total);
    let result_file = copy.join("out/wordcount/_result.json");
    let written: BTreeMap<String, u64> =
        serde_json::from_slice(&std::fs::read(&result_file).unwrap()).unwrap();
    assert_eq!(written, total);

    // Without `--results`, the run shows the largest counts.
    let output = quarry(dir.path(), &["run", "wordcount/job.yaml"]);
    expect_exit(&output, 0, "quarry run examples/wordcount/job.yaml");
    let shown = text(&output.stdout);
    let mut lines = shown.lines();
    assert!(lines.next().unwrap().contains("_result.json"), "{shown}");
    let (top_word, top_count) = total
        .iter()
        .max_by_key(|(w, n)| (**n, std::cmp::Reverse(*w)))
        .unwrap();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        [top_word.as_str(), &top_count.to_string()],
        "{shown}"
    );
}

#[test]
fn a_tree_reduce_with_fan_in_two_sums_ten_thousand_results() {
    let dir = tempfile::tempdir().unwrap();
    let output = run_job_file(
        dir.path(),
        r#"
name: sum-range
range: {start: 0, stop: 10000}
function: echo
output: ./out/
reduce:
  function: sum
  fan_in: 2
"#,
        "2",
    );
    expect_exit(&output, 0, "quarry run with a fan-in of 2");
    assert_eq!(text(&output.stdout).trim(), "49995000");
    let written = std::fs::read_to_string(dir.path().join("out/_result.json")).unwrap();
    assert_eq!(written.trim(), "49995000");
    // 10,000 maps and, pairwise, 9,999 reducers (one more only if the final
    // reduction had one value left).
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("succeeded: 19999 tasks") || stderr.contains("succeeded: 20000 tasks"),
        "{stderr}"
    );
}

#[test]
fn a_failed_map_fails_the_reduce_and_names_the_task() {
    let dir = tempfile::tempdir().unwrap();
    let output = run_job_file(
        dir.path(),
        r#"
name: reduce-over-a-failure
items: ["ok", "boom"]
function: fail
output: ./out/
retries: 0
reduce: sum
"#,
        "1",
    );
    expect_exit(&output, 1, "quarry run with a failing map");
    let stderr = text(&output.stderr);
    assert!(stderr.contains("reduce stage"), "{stderr}");
    assert!(!dir.path().join("out/_result.json").exists());
}

#[test]
fn malformed_job_files_are_refused_with_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "typo.yaml",
            "name: typo\nrange: 10\nretires: 2\nfunction: inc\n",
            "typo.yaml:3:1: unknown key `retires` in job; did you mean `retries`?",
        ),
        (
            "type.yaml",
            "name: type\nrange: 10\nfunction: inc\nretries: many\n",
            "type.yaml:4:10: `retries` must be a non-negative integer, found a string",
        ),
        (
            "placeholder.yaml",
            "name: p\ngrid:\n  lr: [0.1]\ncommand: [echo, \"{params.lrr}\"]\n",
            "placeholder.yaml:4:17: `command[1]` uses `{params.lrr}`",
        ),
    ];
    for (file, yaml, expected) in cases {
        write(&dir.path().join(file), yaml);
        for command in ["validate", "run", "submit"] {
            let output = quarry(dir.path(), &[command, file]);
            let stderr = text(&output.stderr);
            assert_eq!(output.status.code(), Some(2), "{command} {file}: {stderr}");
            assert!(stderr.contains(expected), "{command} {file}: {stderr}");
        }
    }
    // The message shows the offending line with a caret under the column.
    let output = quarry(dir.path(), &["validate", "typo.yaml"]);
    assert!(
        text(&output.stderr).contains("3 | retires: 2\n  | ^"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn validate_shows_the_task_count_and_first_tasks_without_running() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("grid.yaml"),
        "name: g\ngrid:\n  depth: [2, 4, 8]\n  leaf: [1, 5]\ncommand: [touch, \"/nonexistent/{params.depth}\"]\n",
    );
    let output = quarry(dir.path(), &["validate", "grid.yaml", "--preview", "3"]);
    expect_exit(&output, 0, "quarry validate");
    let stdout = text(&output.stdout);
    assert!(stdout.contains("tasks:    6"), "{stdout}");
    assert!(
        stdout.contains("00000  {\"depth\":2,\"leaf\":1}"),
        "{stdout}"
    );
    assert!(
        stdout.contains("00002  {\"depth\":4,\"leaf\":1}"),
        "{stdout}"
    );
    assert!(!stdout.contains("00003"), "{stdout}");

    for i in 0..4 {
        write(&dir.path().join(format!("in/{i}.txt")), "x");
    }
    write(
        &dir.path().join("prefix.yaml"),
        "name: p\ninput: ./in/\nfunction: wordcount\n",
    );
    let output = quarry(dir.path(), &["validate", "prefix.yaml"]);
    expect_exit(&output, 0, "quarry validate (prefix)");
    assert!(text(&output.stdout).contains("tasks:    4 (listed now)"));
}

/// Whether a process is gone: no /proc entry, or a zombie (dead, waiting
/// for whichever ancestor adopted it to reap it).
fn process_is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            // The state follows the parenthesised command name.
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            state.starts_with('Z') || state.starts_with('X')
        }
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < PATIENCE, "gave up waiting: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_timed_out_command_is_killed_with_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    std::fs::create_dir(&pids).unwrap();
    write(
        &dir.path().join("slow.yaml"),
        r#"
name: slow
items: [only]
command: [sh, -c, 'sleep 300 & echo $! > "$PIDS/child"; echo $$ > "$PIDS/shell"; wait']
env:
  PIDS: PIDS_DIR
timeout: 1s
retries: 0
"#
        .replace("PIDS_DIR", &pids.display().to_string())
        .as_str(),
    );
    let output = quarry(dir.path(), &["run", "slow.yaml", "--workers", "1"]);
    expect_exit(&output, 1, "a job whose task timed out");
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("00000 [failed, 1 attempt(s)]: TimedOut"),
        "{stderr}"
    );
    for name in ["child", "shell"] {
        let pid: u32 = std::fs::read_to_string(pids.join(name))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        wait_until(&format!("{name} process {pid} to die"), || {
            process_is_dead(pid)
        });
    }
}

#[test]
fn interrupting_a_run_cancels_the_job_and_kills_its_commands() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    write(
        &dir.path().join("sleepy.yaml"),
        r#"
name: sleepy
range: 2
command: [sh, -c, 'sleep 300 & echo $! >> "$PIDS"; wait']
env:
  PIDS: PIDS_FILE
"#
        .replace("PIDS_FILE", &pids.display().to_string())
        .as_str(),
    );
    let mut command = Command::new(quarry_bin());
    command
        .args(["run", "sleepy.yaml", "--workers", "2"])
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut run = ChildGuard::spawn(command).unwrap();
    let started = || {
        std::fs::read_to_string(&pids)
            .map(|text| text.lines().count() == 2)
            .unwrap_or(false)
    };
    wait_until("both commands to start", started);
    // What Ctrl-C in a terminal does: SIGINT to the foreground process group,
    // which the commands (in groups of their own) are not part of.
    run.signal_group(quarry_integration::Signal::SIGINT)
        .unwrap();
    let status = run.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(run.child_mut().stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted: cancelling job"), "{stderr}");
    for pid in std::fs::read_to_string(&pids).unwrap().lines() {
        let pid: u32 = pid.parse().unwrap();
        wait_until(&format!("command child {pid} to die"), || {
            process_is_dead(pid)
        });
    }
}

#[test]
fn a_retried_task_leaves_exactly_one_set_of_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let marks = dir.path().join("marks");
    std::fs::create_dir(&marks).unwrap();
    // The first attempt of each task writes outputs, then fails; the second
    // writes different ones and succeeds.
    write(
        &dir.path().join("flaky.yaml"),
        r#"
name: flaky
items: [a, b]
command:
  - sh
  - -c
  - |
    mark="$MARKS/$QUARRY_TASK_KEY"
    if [ ! -e "$mark" ]; then
      touch "$mark"
      echo first > "$QUARRY_OUTPUT_DIR/result.txt"
      echo first > "$QUARRY_OUTPUT_DIR/first-attempt-only.txt"
      echo "first attempt fails" >&2
      exit 1
    fi
    echo second > "$QUARRY_OUTPUT_DIR/result.txt"
    echo '{{"attempt": 2}}'
env:
  MARKS: MARKS_DIR
retries: 2
output: ./out/
"#
        .replace("MARKS_DIR", &marks.display().to_string())
        .as_str(),
    );
    let output = quarry(
        dir.path(),
        &["run", "flaky.yaml", "--workers", "2", "--results", "json"],
    );
    expect_exit(&output, 0, "a job whose tasks succeed on retry");
    for row in json_rows(&output) {
        assert_eq!(row["attempts"], 2, "{row}");
        assert_eq!(row["result"], serde_json::json!({"attempt": 2}), "{row}");
    }
    for key in ["00000", "00001"] {
        let task_dir = dir.path().join("out").join(key);
        assert_eq!(
            files_under(&task_dir),
            // The second attempt wrote nothing to stderr: an empty log is
            // not uploaded, and the first attempt's is gone.
            ["_logs/stdout.log", "result.txt"],
            "{key}"
        );
        assert_eq!(
            std::fs::read_to_string(task_dir.join("result.txt")).unwrap(),
            "second\n"
        );
        // The logs are the successful attempt's, not the failed one's.
        assert_eq!(
            std::fs::read_to_string(task_dir.join("_logs/stdout.log")).unwrap(),
            "{\"attempt\": 2}\n"
        );
    }
}

/// A scheduler and one worker as separate processes on a free port.
struct Cluster {
    address: String,
    _scheduler: ChildGuard,
    _worker: ChildGuard,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_cluster() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let address = format!("tcp://127.0.0.1:{}", free_port());
    let mut scheduler = Command::new(quarry_bin());
    scheduler
        .args(["scheduler", "--listen", &address, "--dashboard", "none"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let scheduler = ChildGuard::spawn(scheduler).unwrap();
    let mut worker = Command::new(quarry_bin());
    worker
        .args(["worker", &address, "--nthreads", "2", "--name", "cli-test"])
        .arg("--cache-dir")
        .arg(dir.path().join("worker"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let worker = ChildGuard::spawn(worker).unwrap();
    let cluster = Cluster {
        address,
        _scheduler: scheduler,
        _worker: worker,
        _dir: dir,
    };
    wait_until("the worker to register", || {
        let output = cluster.quarry(Path::new("."), &["status", "--json"]);
        output.status.success()
            && serde_json::from_slice::<Value>(&output.stdout)
                .map(|v| v["workers"].as_array().is_some_and(|w| !w.is_empty()))
                .unwrap_or(false)
    });
    cluster
}

impl Cluster {
    fn quarry(&self, dir: &Path, args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--scheduler", &self.address, "--connect-timeout", "2s"]);
        quarry(dir, &all)
    }

    fn job_status(&self, job: &str) -> Value {
        let output = self.quarry(Path::new("."), &["status", job, "--json"]);
        expect_exit(&output, 0, "quarry status JOB");
        serde_json::from_slice(&output.stdout).unwrap()
    }
}

#[test]
fn submit_status_results_and_cancel_against_a_running_scheduler() {
    let cluster = start_cluster();
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("squares.yaml"),
        "name: squares\nitems: [1, 2, 3, 4]\ncommand: [sh, -c, 'echo \"{{\\\"square\\\": $(( $QUARRY_PARAM_ITEM * $QUARRY_PARAM_ITEM ))}}\"']\n",
    );
    // Without --watch: the id on stdout, and the job runs on.
    let output = cluster.quarry(dir.path(), &["submit", "squares.yaml"]);
    expect_exit(&output, 0, "quarry submit");
    let job = text(&output.stdout).trim().to_owned();
    assert!(job.starts_with('j'), "job id on stdout: {job:?}");
    wait_until("the job to finish", || {
        cluster.job_status(&job)["state"] != "running"
    });
    let status = cluster.job_status(&job);
    assert_eq!(status["state"], "succeeded", "{status}");
    assert_eq!(status["counts"]["done"], 4, "{status}");

    let output = cluster.quarry(
        dir.path(),
        &[
            "results",
            &job,
            "--format",
            "json",
            "--sort-by",
            "result.square",
            "--desc",
        ],
    );
    expect_exit(&output, 0, "quarry results --format json");
    let rows = json_rows(&output);
    let squares: Vec<&Value> = rows.iter().map(|r| &r["result"]["square"]).collect();
    assert_eq!(squares, [16, 9, 4, 1]);
    assert_eq!(rows[0]["params"], serde_json::json!({"item": 4}));
    assert_eq!(rows[0]["worker"], "cli-test");

    let output = cluster.quarry(dir.path(), &["results", "squares", "--format", "csv"]);
    expect_exit(&output, 0, "quarry results --format csv (by name)");
    let csv = text(&output.stdout);
    assert_eq!(csv.lines().count(), 5, "{csv}");
    assert!(
        csv.starts_with(
            "key,task_id,params,input,input_etag,input_range,state,result,result_ref,\
             result_format,outputs,"
        ),
        "{csv}"
    );

    let output = cluster.quarry(dir.path(), &["jobs"]);
    expect_exit(&output, 0, "quarry jobs");
    assert!(
        text(&output.stdout).contains("squares"),
        "{}",
        text(&output.stdout)
    );

    // A failing job followed with --watch exits non-zero and names the task.
    write(
        &dir.path().join("fails.yaml"),
        "name: fails\nitems: [ok, bad]\ncommand: [sh, -c, 'test \"$QUARRY_PARAM_ITEM\" = ok || (echo \"no good: $QUARRY_PARAM_ITEM\" >&2; exit 4)']\nretries: 1\n",
    );
    let output = cluster.quarry(dir.path(), &["submit", "fails.yaml", "--watch"]);
    expect_exit(&output, 1, "quarry submit --watch of a failing job");
    let stderr = text(&output.stderr);
    assert!(stderr.contains("00001 [failed, 2 attempt(s)]"), "{stderr}");
    assert!(stderr.contains("no good: bad"), "{stderr}");

    // Cancelling a job stops its running tasks.
    write(
        &dir.path().join("sleepy.yaml"),
        "name: sleepy\nrange: 6\ncommand: [sleep, '300']\n",
    );
    let output = cluster.quarry(dir.path(), &["submit", "sleepy.yaml"]);
    expect_exit(&output, 0, "quarry submit sleepy");
    let sleepy = text(&output.stdout).trim().to_owned();
    wait_until("a sleepy task to start", || {
        cluster.job_status(&sleepy)["counts"]["running"].as_u64() > Some(0)
    });
    let output = cluster.quarry(dir.path(), &["cancel", &sleepy]);
    expect_exit(&output, 0, "quarry cancel");
    wait_until("the job to end", || {
        cluster.job_status(&sleepy)["state"] != "running"
    });
    let status = cluster.job_status(&sleepy);
    assert_eq!(status["state"], "cancelled", "{status}");
    assert_eq!(status["counts"]["cancelled"], 6, "{status}");

    let output = cluster.quarry(dir.path(), &["status", "no-such-job"]);
    assert_ne!(output.status.code(), Some(0));
    assert!(text(&output.stderr).contains("no job `no-such-job`"));
}

#[tokio::test]
async fn a_job_over_minio_writes_outputs_an_independent_client_reads() {
    let minio = MinioServer::start().unwrap_or_else(|e| panic!("{e}"));
    minio.create_bucket("corpus").await.unwrap();
    let shards = minio
        .seed_text_shards("corpus", "books/", 5, 4000)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("s3.yaml"),
        r#"
name: s3-words
input: s3://corpus/books/
command: [sh, -c, 'wc -w < "$QUARRY_INPUT" > "$QUARRY_OUTPUT_DIR/words.txt"']
output: s3://corpus/counts/
"#,
    );
    let output = quarry_with_env(
        dir.path(),
        &["run", "s3.yaml", "--workers", "2"],
        &minio.env(),
    );
    expect_exit(&output, 0, "quarry run over MinIO");

    let keys = minio.list_keys("corpus", "counts/").await.unwrap();
    for (index, shard) in shards.iter().enumerate() {
        let task_key = shard.key.strip_prefix("books/").unwrap();
        let key = format!("counts/{task_key}/words.txt");
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
        let body = minio.get_object_bytes("corpus", &key).await.unwrap();
        let expected = text(&text_shard(index, 4000)).split_whitespace().count();
        assert_eq!(text(&body).trim(), expected.to_string(), "{key}");
    }
    let words_files = keys.iter().filter(|k| k.ends_with("/words.txt")).count();
    assert_eq!(
        words_files,
        shards.len(),
        "exactly one output per task: {keys:?}"
    );
}

/// The manifest the scheduler writes when a job ends (quarry-manifest,
/// called on `JobFinished`): `_quarry/manifest.parquet` plus `_SUCCESS`, or
/// `_quarry/FAILED.json` naming the failed tasks.
#[test]
fn run_leaves_a_manifest_and_a_marker() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("mixed.yaml"),
        "name: mixed\nitems: [1, 2, 3]\ncommand: [sh, -c, 'test \"$QUARRY_PARAM_ITEM\" != 2']\nretries: 0\noutput: ./mixed/\n",
    );
    write(
        &dir.path().join("good.yaml"),
        "name: good\nitems: [1, 2]\ncommand: [true]\noutput: ./good/\n",
    );
    expect_exit(&quarry(dir.path(), &["run", "good.yaml"]), 0, "good job");
    expect_exit(&quarry(dir.path(), &["run", "mixed.yaml"]), 1, "mixed job");

    let parquet_magic = |path: PathBuf| {
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (is the manifest writer wired?)", path.display()));
        assert!(
            bytes.starts_with(b"PAR1") && bytes.ends_with(b"PAR1"),
            "{}",
            path.display()
        );
    };
    let good = dir.path().join("good");
    parquet_magic(good.join("_quarry/manifest.parquet"));
    assert!(good.join("_SUCCESS").exists());
    assert!(!good.join("_quarry/FAILED.json").exists());

    let mixed = dir.path().join("mixed");
    parquet_magic(mixed.join("_quarry/manifest.parquet"));
    assert!(!mixed.join("_SUCCESS").exists());
    let failed: Value =
        serde_json::from_slice(&std::fs::read(mixed.join("_quarry/FAILED.json")).unwrap()).unwrap();
    assert_eq!(failed["name"], "mixed");
    assert_eq!(failed["total"], 3);
    assert_eq!(failed["done"], 2);
    let failed_keys: Vec<&Value> = failed["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["key"])
        .collect();
    assert_eq!(failed_keys, ["00001"]);
}

#[test]
fn a_job_whose_manifest_cannot_be_written_fails_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // The output prefix is writable when the job is checked and starts;
    // the task then puts a directory where the manifest goes.
    write(
        &dir.path().join("blocked.yaml"),
        &r#"
name: blocked
items: [a]
command: [sh, -c, "mkdir -p OUT/_quarry/manifest.parquet/x && echo '{{}}'"]
output: ./out/
"#
        .replace("OUT", &out.display().to_string()),
    );
    let output = quarry(dir.path(), &["run", "blocked.yaml", "--workers", "1"]);
    let stderr = text(&output.stderr);
    assert_ne!(output.status.code(), Some(0), "reported success:\n{stderr}");
    assert!(
        stderr.contains("cannot write the manifest under"),
        "does not say why:\n{stderr}"
    );
    assert!(
        stderr.contains("the manifest and _SUCCESS could not be written"),
        "the summary points to a manifest that is not there:\n{stderr}"
    );
    assert!(!out.join("_SUCCESS").exists(), "_SUCCESS was written");
}
