//! Metrics and the dashboard (issue #14 items 1 and 2) with real processes
//! on loopback: a scheduler and two workers serving `/metrics`, a word
//! count over local files, then a command job that runs while headless
//! Chromium (Debian's `chromium`, installed by `scripts/browser.sh`) loads
//! every page. The scraped series are parsed and checked against what the
//! jobs did (tasks, bytes, downloads), the JSON under `/api/` against the
//! jobs, and each page against what it renders; a screenshot of each page
//! is kept under `target/dashboard-screenshots/`. The journal's series
//! follow its file. A retention of one
//! finished job then drops the first job, and its per-job series go.
//!
//! Build the binary first: `cargo build -p quarry-cli`.

use quarry_integration::{
    free_loopback_endpoint, quarry_command, tool, worker_args, CapturedProcess,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Bounds waits for things that take a few seconds when they work (not a
/// timing assertion).
const PATIENCE: Duration = Duration::from_secs(120);
/// Files the word count reads, one task each.
const FILES: usize = 12;
/// Tasks of the command job (one of them fails at once).
const COMMAND_TASKS: usize = 12;

fn quarry(name: &str, args: &[&str]) -> CapturedProcess {
    let mut command = quarry_command();
    command.args(args).env("RUST_LOG", "info");
    CapturedProcess::spawn(name, command, PATIENCE).expect("cannot start quarry")
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One HTTP GET; returns the status code and the body.
fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response from {addr}{path}: {response}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line from {addr}{path}: {head}"));
    (status, body.to_string())
}

fn get_json(addr: &str, path: &str) -> Value {
    let (status, body) = http_get(addr, path);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path} is not JSON ({e}): {body}"))
}

/// The samples of an OpenMetrics text, by series (name and labels as
/// written).
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    assert!(text.ends_with("# EOF\n"), "not OpenMetrics text: {text}");
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("bad sample line: {line}"));
            let value = value
                .parse()
                .unwrap_or_else(|_| panic!("bad sample value: {line}"));
            (series.to_string(), value)
        })
        .collect()
}

fn scrape(addr: &str) -> BTreeMap<String, f64> {
    let (status, body) = http_get(addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    parse_metrics(&body)
}

/// The value of a series; panics, with every series, when it is absent.
fn sample(metrics: &BTreeMap<String, f64>, series: &str) -> f64 {
    *metrics
        .get(series)
        .unwrap_or_else(|| panic!("no series {series} in {metrics:#?}"))
}

/// Where the screenshots go: the workspace's target directory (or
/// `$CARGO_TARGET_DIR`).
fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs headless Chromium on `url` with `mode` (`--dump-dom` or
/// `--screenshot=PATH`), giving the page's script three seconds of
/// (virtual) time to fetch and render; returns its standard output.
fn chromium(url: &str, mode: &str) -> String {
    let browser = tool("chromium").expect("chromium is missing: run scripts/browser.sh");
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--hide-scrollbars",
            "--window-size=1280,900",
            "--virtual-time-budget=3000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(mode)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot start chromium");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish with {url} within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "chromium {mode} {url}: {status}");
    reader.join().unwrap()
}

/// Loads a page, checks what it rendered with `check`, and keeps a
/// screenshot named `name`.
fn load_page(dashboard: &str, path: &str, name: &str, check: impl Fn(&str) -> Result<(), String>) {
    let url = format!("http://{dashboard}{path}");
    // The page may be caught between two refreshes of the data it shows:
    // load it again (a few times, within the bound) before giving up.
    let mut last = String::new();
    let mut verdict = Err(String::new());
    for _ in 0..5 {
        last = chromium(&url, "--dump-dom");
        verdict = check(&last);
        if verdict.is_ok() {
            break;
        }
    }
    if let Err(why) = verdict {
        panic!("page {path}: {why}; it rendered:\n{last}");
    }
    assert!(
        last.contains("class=\"ok\""),
        "page {path} says it could not load its data:\n{last}"
    );
    let shot = screenshot_dir().join(format!("{name}.png"));
    let _ = std::fs::remove_file(&shot);
    chromium(&url, &format!("--screenshot={}", shot.display()));
    let png =
        std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot {}: {e}", shot.display()));
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} is not a page's screenshot",
        shot.display()
    );
}

/// Whether `page` contains every one of `needles`; the error names the
/// first missing one.
fn contains_all(page: &str, needles: &[&str]) -> Result<(), String> {
    match needles.iter().find(|needle| !page.contains(**needle)) {
        Some(missing) => Err(format!("`{missing}` is missing")),
        None => Ok(()),
    }
}

/// The job named `name` in `/api/jobs`.
fn job_named(dashboard: &str, name: &str) -> Option<Value> {
    get_json(dashboard, "/api/jobs")["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|job| job["name"] == name)
        .cloned()
}

/// The address in a line such as `… at http://127.0.0.1:4321/…`.
fn http_address(line: &str) -> String {
    let start = line.find("http://").expect("an http:// address") + "http://".len();
    line[start..].split('/').next().unwrap().trim().to_string()
}

#[test]
fn metrics_api_and_pages_follow_real_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let mut input_bytes = 0u64;
    for i in 0..FILES {
        let text = "the quick brown fox jumps over the lazy dog\n".repeat(10 + i * 7);
        input_bytes += text.len() as u64;
        std::fs::write(data.join(format!("part-{i:02}.txt")), text).unwrap();
    }
    let wordcount = dir.path().join("wordcount.yaml");
    std::fs::write(
        &wordcount,
        "name: words\ninput:\n  prefix: ./data/*.txt\nfunction: wordcount\noutput: ./out/words/\n",
    )
    .unwrap();
    let items: Vec<String> = (0..COMMAND_TASKS)
        .map(|i| {
            if i == 0 {
                "bad".into()
            } else {
                format!("ok{i}")
            }
        })
        .collect();
    let slow = dir.path().join("slow.yaml");
    std::fs::write(
        &slow,
        format!(
            "name: slow\nitems: [{}]\nretries: 0\noutput: ./out/slow/\ncommand: [sh, -c, \
             'test \"{{params.item}}\" != bad || {{{{ echo boom >&2; exit 3; }}}}; sleep 5']\n",
            items.join(", ")
        ),
    )
    .unwrap();

    let endpoint = free_loopback_endpoint();
    let journal = dir.path().join("scheduler.journal");
    let journal_arg = journal.display().to_string();
    let scheduler = quarry(
        "scheduler",
        &[
            "scheduler",
            "--listen",
            &endpoint,
            "--dashboard",
            "127.0.0.1:0",
            "--job-retention",
            "1",
            "--journal",
            &journal_arg,
        ],
    );
    let dashboard = http_address(&scheduler.wait_for_line("dashboard at http://"));
    let mut workers = Vec::new();
    let mut worker_metrics = Vec::new();
    for name in ["alpha", "beta"] {
        let mut args = worker_args(&endpoint, name, dir.path());
        args.extend(["--metrics-addr".into(), "127.0.0.1:0".into()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let worker = quarry(name, &args);
        worker_metrics.push(http_address(
            &worker.wait_for_line("worker metrics at http://"),
        ));
        worker.wait_for_line("registered with the scheduler");
        workers.push(worker);
    }
    wait_until("both workers in /api/workers", || {
        get_json(&dashboard, "/api/workers")
            .as_array()
            .unwrap()
            .len()
            == 2
    });

    // The word count: every input read once, from the store.
    let path = wordcount.display().to_string();
    let mut submit = quarry(
        "submit words",
        &["submit", &path, "--scheduler", &endpoint, "--watch"],
    );
    assert!(submit.wait_exit().success(), "{}", submit.output());
    // The dashboard's snapshot follows within a tick of the scheduler loop.
    wait_until("the word count to show as succeeded", || {
        job_named(&dashboard, "words").is_some_and(|job| job["state"] == "Succeeded")
    });
    let words = job_named(&dashboard, "words").unwrap();
    let words_ref = words["ref"].as_str().unwrap().to_string();
    let metrics = scrape(&dashboard);
    let files = FILES as f64;
    assert_eq!(
        sample(&metrics, "quarry_scheduler_tasks{state=\"done\"}"),
        files
    );
    assert_eq!(
        sample(&metrics, "quarry_scheduler_tasks{state=\"failed\"}"),
        0.0
    );
    assert_eq!(
        sample(
            &metrics,
            &format!("quarry_job_tasks{{job=\"{words_ref}\",state=\"done\"}}")
        ),
        files
    );
    assert_eq!(
        sample(&metrics, "quarry_scheduler_jobs{state=\"succeeded\"}"),
        1.0
    );
    assert_eq!(
        sample(
            &metrics,
            "quarry_scheduler_input_bytes_total{source=\"store\"}"
        ),
        input_bytes as f64
    );
    assert_eq!(
        sample(
            &metrics,
            "quarry_scheduler_input_bytes_total{source=\"cache\"}"
        ),
        0.0
    );
    assert_eq!(
        sample(
            &metrics,
            &format!("quarry_job_input_bytes_total{{job=\"{words_ref}\",source=\"store\"}}")
        ),
        input_bytes as f64
    );
    assert_eq!(
        sample(
            &metrics,
            "quarry_scheduler_cache_lookups_total{result=\"miss\"}"
        ),
        files
    );
    assert_eq!(
        sample(
            &metrics,
            "quarry_scheduler_tasks_placed_total{locality=\"local\"}"
        ) + sample(
            &metrics,
            "quarry_scheduler_tasks_placed_total{locality=\"remote\"}"
        ),
        files
    );
    assert_eq!(
        sample(
            &metrics,
            "quarry_scheduler_task_duration_seconds_count{function=\"wordcount\"}"
        ),
        files
    );
    assert_eq!(
        sample(
            &metrics,
            "quarry_scheduler_task_duration_seconds_bucket{le=\"+Inf\",function=\"wordcount\"}"
        ),
        files
    );
    assert!(sample(&metrics, "quarry_scheduler_tick_duration_seconds_count") > 0.0);
    // The journal: every submission was synced before it was accepted.
    assert!(
        sample(
            &metrics,
            "quarry_scheduler_journal_flush_duration_seconds_count"
        ) >= 1.0
    );
    assert_eq!(
        sample(
            &metrics,
            "quarry_scheduler_journal_flush_duration_seconds_count"
        ),
        sample(
            &metrics,
            "quarry_scheduler_journal_flush_duration_seconds_bucket{le=\"+Inf\"}"
        )
    );
    wait_until("the journal's size in /metrics to match its file", || {
        let file = std::fs::metadata(&journal).unwrap().len() as f64;
        sample(&scrape(&dashboard), "quarry_scheduler_journal_bytes") == file
    });
    assert_eq!(
        sample(&metrics, "quarry_scheduler_workers{state=\"idle\"}"),
        2.0
    );
    assert_eq!(
        sample(&metrics, "quarry_scheduler_slots{state=\"free\"}"),
        4.0
    );

    // The workers' own series: together they downloaded every input once.
    let worker_series: Vec<_> = worker_metrics.iter().map(|addr| scrape(addr)).collect();
    let total = |series: &str| -> f64 {
        ["alpha", "beta"]
            .iter()
            .zip(&worker_series)
            .map(|(name, m)| sample(m, &format!("{series}{{worker=\"{name}\"}}")))
            .sum()
    };
    assert_eq!(
        total("quarry_worker_download_bytes_total"),
        input_bytes as f64
    );
    assert_eq!(total("quarry_worker_cache_bytes"), input_bytes as f64);
    assert_eq!(total("quarry_worker_cache_objects"), files);
    assert_eq!(total("quarry_worker_cache_evictions_total"), 0.0);
    assert_eq!(total("quarry_worker_slots"), 4.0);
    assert_eq!(total("quarry_worker_slots_busy"), 0.0);

    // The same through /api/: the workers' caches (as they reported them)
    // and the job's task table.
    wait_until("the workers' cache reports", || {
        let listed = get_json(&dashboard, "/api/workers");
        let cached: u64 = listed
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["cached_bytes"].as_u64().unwrap())
            .sum();
        cached == input_bytes
    });
    let listed = get_json(&dashboard, "/api/workers");
    let mut names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["alpha", "beta"]);
    for worker in listed.as_array().unwrap() {
        assert_eq!(worker["slots"], 2, "{worker}");
        assert_eq!(worker["state"], "idle", "{worker}");
    }
    let table = get_json(&dashboard, &format!("/api/jobs/{words_ref}/tasks"));
    let rows = table["tasks"].as_array().unwrap();
    assert_eq!(rows.len(), FILES, "{table}");
    assert!(rows.iter().all(|row| row["state"] == "done"), "{table}");
    let remote: u64 = rows
        .iter()
        .map(|r| r["bytes_remote"].as_u64().unwrap())
        .sum();
    assert_eq!(remote, input_bytes);
    assert!(rows
        .iter()
        .all(|r| ["alpha", "beta"].contains(&r["worker"].as_str().unwrap())));
    assert_eq!(table["job"]["progress"], 1.0);

    // The command job runs while every page is loaded.
    let path = slow.display().to_string();
    let mut submit = quarry(
        "submit slow",
        &["submit", &path, "--scheduler", &endpoint, "--watch"],
    );
    wait_until("the command job to run and one task to fail", || {
        job_named(&dashboard, "slow").is_some_and(|job| {
            job["counts"]["running"].as_u64().unwrap() > 0
                && job["counts"]["failed"].as_u64().unwrap() == 1
        })
    });
    let slow_ref = job_named(&dashboard, "slow").unwrap()["ref"]
        .as_str()
        .unwrap()
        .to_string();
    load_page(&dashboard, "/", "jobs", |page| {
        contains_all(
            page,
            &[
                "<table id=\"jobs\"",
                &format!("href=\"/jobs/{slow_ref}\""),
                &format!("href=\"/jobs/{words_ref}\""),
                "<span class=\"state running\">running</span>",
                "<span class=\"state succeeded\">succeeded</span>",
                &format!("<span class=\"count\">{FILES}/{FILES}</span>"),
                "1 failed",
                "tasks/s",
            ],
        )
    });
    load_page(&dashboard, &format!("/jobs/{slow_ref}"), "job", |page| {
        contains_all(
            page,
            &[
                "<table id=\"tasks\"",
                &format!("<h2 id=\"job-title\">{slow_ref} slow"),
                "<span class=\"state running\">running</span>",
                "<span class=\"state failed\">failed</span>",
                "boom",
                "<td>alpha</td>",
                "<td>beta</td>",
            ],
        )
    });
    load_page(&dashboard, "/workers", "workers", |page| {
        contains_all(
            page,
            &[
                "<table id=\"workers\"",
                "<td>alpha</td>",
                "<td>beta</td>",
                "<span class=\"state saturated\">saturated</span>",
                "2/2",
            ],
        )
    });
    load_page(&dashboard, "/failures", "failures", |page| {
        contains_all(
            page,
            &[
                "<table id=\"failures\"",
                &format!("href=\"/jobs/{slow_ref}\""),
                "exit status 3",
                "boom",
                "/_logs/ (stdout.log, stderr.log)",
            ],
        )
    });
    load_page(&dashboard, "/stream", "stream", |page| {
        contains_all(
            page,
            &[
                "<svg id=\"timeline\"",
                "<rect class=\"attempt\"",
                "fill=\"#d33\"",
                "<text x=\"0\" y=\"13\" class=\"lane\">",
                "<table id=\"stream-table\"",
                "wordcount",
                "quarry.command",
            ],
        )
    });

    // The failed task's logs are where the failures page says.
    let failures = get_json(&dashboard, "/api/failures");
    let failure = &failures.as_array().unwrap()[0];
    assert_eq!(failure["kind"], "Failed");
    let logs = failure["logs"].as_str().unwrap();
    let logs_dir = logs.split(' ').next().unwrap();
    let logs_dir = logs_dir.strip_prefix("file://").unwrap_or(logs_dir);
    let stderr_log = dir.path().join(logs_dir).join("stderr.log");
    let log = std::fs::read_to_string(&stderr_log)
        .unwrap_or_else(|e| panic!("no log at {} ({logs}): {e}", stderr_log.display()));
    assert!(log.contains("boom"), "{log}");

    // The command job ends; with a retention of one finished job, the word
    // count is dropped, and its per-job series with it.
    assert!(
        !submit.wait_exit().success(),
        "one task failed: {}",
        submit.output()
    );
    wait_until("the word count to be dropped", || {
        http_get(&dashboard, &format!("/api/jobs/{words_ref}/tasks")).0 == 404
    });
    let metrics = scrape(&dashboard);
    assert!(
        !metrics.keys().any(|series| series.contains(&words_ref)),
        "the dropped job's series are gone: {metrics:#?}"
    );
    assert_eq!(
        sample(
            &metrics,
            &format!("quarry_job_tasks{{job=\"{slow_ref}\",state=\"failed\"}}")
        ),
        1.0
    );
    assert_eq!(
        sample(
            &metrics,
            &format!("quarry_job_tasks{{job=\"{slow_ref}\",state=\"done\"}}")
        ),
        (COMMAND_TASKS - 1) as f64
    );
    assert_eq!(
        sample(&metrics, "quarry_scheduler_jobs_forgotten_total"),
        1.0
    );
    assert_eq!(
        sample(&metrics, "quarry_scheduler_tasks_forgotten_total"),
        files
    );
    assert_eq!(
        sample(&metrics, "quarry_scheduler_jobs{state=\"failed\"}"),
        1.0
    );
    assert_eq!(
        sample(
            &metrics,
            "quarry_scheduler_task_duration_seconds_count{function=\"quarry.command\"}"
        ),
        COMMAND_TASKS as f64
    );
    // Counters keep what the dropped job added.
    assert_eq!(
        sample(
            &metrics,
            "quarry_scheduler_input_bytes_total{source=\"store\"}"
        ),
        input_bytes as f64
    );
    drop(workers);
    drop(scheduler);
}
