//! `quarry bench`: throughput, latency and memory measurements on real
//! processes over TCP loopback. Results are printed, never asserted: see
//! BENCHMARKS.md for figures and the scripts that compare against dask.

use anyhow::{bail, Context, Result};
use quarry_client::{Client, ClientOptions};
use serde_json::json;
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// Benchmarks.
#[derive(clap::Subcommand)]
pub enum Bench {
    /// Map no-op tasks over a scheduler and worker processes: throughput,
    /// round-trip latency and scheduler memory.
    Noop(NoopArgs),
    /// Map a word count over a prefix several times with the same workers:
    /// store and cache bytes, locality and time per pass.
    Prefix(super::bench_prefix::PrefixArgs),
    /// Run command tasks (`true`) over a scheduler and worker processes:
    /// throughput, comparable with HyperQueue's and `xargs -P`.
    Command(super::bench_command::CommandArgs),
    /// Time a scheduler's restart from a journal of many finished tasks:
    /// from its start to its first answer.
    Restart(super::bench_restart::RestartArgs),
}

/// Options of `quarry bench noop`.
#[derive(clap::Args)]
pub struct NoopArgs {
    /// Tasks to map and gather.
    #[arg(long, default_value_t = 100_000)]
    tasks: u64,
    /// Worker processes.
    #[arg(long, default_value_t = 2)]
    workers: u32,
    /// Slots per worker.
    #[arg(long, default_value_t = 1)]
    nthreads: u32,
    /// Sequential submit→result round trips to time.
    #[arg(long, default_value_t = 1000)]
    roundtrips: u32,
    /// Start no workers: submit the tasks, wait until the scheduler has
    /// queued them all, and report its memory.
    #[arg(long)]
    queue_only: bool,
    /// Also run the same measurement with the scheduler journaling to this
    /// file (removed first), and report both and their ratio.
    #[arg(long)]
    journal: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub async fn run(bench: Bench) -> Result<ExitCode> {
    match bench {
        Bench::Noop(args) => noop(args).await,
        Bench::Command(args) => super::bench_command::command(args).await,
        Bench::Prefix(args) => super::bench_prefix::prefix(args).await,
        Bench::Restart(args) => super::bench_restart::restart(args).await,
    }
}

/// Child processes killed when the benchmark ends, however it ends.
pub(super) struct Processes(pub(super) Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.start_kill();
        }
    }
}

pub(super) fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

pub(super) fn quarry(args: &[String]) -> Result<Child> {
    let exe = std::env::current_exe().context("cannot find the quarry executable")?;
    Command::new(exe)
        .args(args)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start a quarry process")
}

/// Peak resident memory of a process (VmHWM), in bytes.
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[rank]
}

pub(super) async fn wait_for_workers(client: &Client, n: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.workers().await?.len() < n {
        if Instant::now() > deadline {
            bail!("workers did not register within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// A scheduler and worker processes on a loopback port, plus a connected
/// client, for one benchmark run. Dropping it stops the processes and
/// removes the workers' scratch space.
pub(super) struct BenchCluster {
    processes: Processes,
    scratch: PathBuf,
    /// The scheduler's process id, for memory readings.
    pub(super) scheduler_pid: u32,
}

impl BenchCluster {
    /// Starts the scheduler (given `scheduler_args` too) and `workers`
    /// worker processes named `LABEL-N` (each also given `worker_args`,
    /// and the host names of `hosts` in turn, if any), connects a client
    /// and waits until every worker registered.
    pub(super) async fn start(
        label: &str,
        workers: u32,
        nthreads: u32,
        scheduler_args: &[String],
        worker_args: &[String],
        hosts: &[String],
    ) -> Result<(BenchCluster, Client)> {
        let address = format!("tcp://127.0.0.1:{}", free_port()?);
        let scratch = std::env::temp_dir().join(format!("quarry-{label}-{}", std::process::id()));
        let mut processes = Processes(Vec::new());
        let mut args = vec![
            "scheduler".into(),
            "--listen".into(),
            address.clone(),
            "--dashboard".into(),
            "none".into(),
        ];
        args.extend_from_slice(scheduler_args);
        processes.0.push(quarry(&args)?);
        let scheduler_pid = processes.0[0].id().context("scheduler exited at once")?;
        for i in 0..workers {
            let mut args = vec![
                "worker".into(),
                address.clone(),
                format!("--nthreads={nthreads}"),
                format!("--name={label}-{i}"),
                "--cache-dir".into(),
                scratch.join(format!("w{i}")).display().to_string(),
            ];
            args.extend_from_slice(worker_args);
            if !hosts.is_empty() {
                args.push(format!("--host={}", hosts[i as usize % hosts.len()]));
            }
            processes.0.push(quarry(&args)?);
        }
        let cluster = BenchCluster {
            processes,
            scratch,
            scheduler_pid,
        };
        let mut options = ClientOptions::new(address);
        options.handshake_timeout = Duration::from_secs(30);
        let client = Client::connect_with(options).await?;
        wait_for_workers(&client, workers as usize).await?;
        Ok((cluster, client))
    }
}

impl Drop for BenchCluster {
    fn drop(&mut self) {
        for child in &mut self.processes.0 {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

async fn noop(args: NoopArgs) -> Result<ExitCode> {
    let Some(journal) = args.journal.clone() else {
        let report = noop_pass(&args, &[]).await?;
        return print_report(&report, args.json);
    };
    // The baseline first, then the journaled run, in the same process and
    // on the same machine state.
    let without = noop_pass(&args, &[]).await?;
    remove_journal(&journal)?;
    let journal_args = ["--journal".to_string(), journal.display().to_string()];
    let with = noop_pass(&args, &journal_args).await?;
    let journal_bytes = std::fs::metadata(&journal).map(|m| m.len()).ok();
    remove_journal(&journal)?;
    let rate = |report: &serde_json::Value| report["tasks_per_sec"].as_f64();
    let ratio = rate(&with).zip(rate(&without)).map(|(w, o)| w / o);
    let report = json!({
        "bench": "noop-journal",
        "without_journal": without,
        "with_journal": with,
        "journal_bytes": journal_bytes,
        "throughput_ratio": ratio,
    });
    print_report(&report, args.json)
}

/// Removes a journal file and its lock, if they are there.
pub(super) fn remove_journal(journal: &std::path::Path) -> Result<()> {
    let mut lock = journal.as_os_str().to_owned();
    lock.push(".lock");
    for path in [journal.to_path_buf(), PathBuf::from(lock)] {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove {}", path.display())),
        }
    }
    Ok(())
}

/// One measurement of `bench noop`, on a fresh cluster whose scheduler is
/// given `scheduler_args`.
async fn noop_pass(args: &NoopArgs, scheduler_args: &[String]) -> Result<serde_json::Value> {
    let workers = if args.queue_only { 0 } else { args.workers };
    let (cluster, client) =
        BenchCluster::start("bench", workers, args.nthreads, scheduler_args, &[], &[]).await?;
    let scheduler_pid = cluster.scheduler_pid;

    let report = if args.queue_only {
        let started = Instant::now();
        let futures = client.map::<u64, (), _>("noop", 0..args.tasks)?;
        loop {
            let jobs = client.jobs().await?;
            let queued: u64 = jobs.iter().map(|j| j.counts.queued).sum();
            if queued >= args.tasks {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let seconds = started.elapsed().as_secs_f64();
        let rss = peak_rss(scheduler_pid);
        drop(futures);
        json!({
            "bench": "noop-queue-only",
            "tasks": args.tasks,
            "workers": 0,
            "seconds": seconds,
            "scheduler_peak_rss_bytes": rss,
            "scheduler_bytes_per_task": rss.map(|r| r as f64 / args.tasks.max(1) as f64),
        })
    } else {
        // Warm up connections and code paths.
        client
            .gather(client.map::<u64, (), _>("noop", 0..1000)?)
            .await?;
        let started = Instant::now();
        let futures = client.map::<u64, (), _>("noop", 0..args.tasks)?;
        client.gather(futures).await?;
        let seconds = started.elapsed().as_secs_f64();
        let mut latencies = Vec::with_capacity(args.roundtrips as usize);
        for i in 0..args.roundtrips {
            let t = Instant::now();
            client.submit::<u32, ()>("noop", &i)?.result().await?;
            latencies.push(t.elapsed().as_micros() as u64);
        }
        latencies.sort_unstable();
        json!({
            "bench": "noop",
            "tasks": args.tasks,
            "workers": args.workers,
            "nthreads": args.nthreads,
            "seconds": seconds,
            "tasks_per_sec": args.tasks as f64 / seconds,
            "roundtrips": args.roundtrips,
            "roundtrip_p50_us": percentile(&latencies, 0.50),
            "roundtrip_p99_us": percentile(&latencies, 0.99),
            "scheduler_peak_rss_bytes": peak_rss(scheduler_pid),
        })
    };
    drop(client);
    drop(cluster);
    Ok(report)
}

/// Prints a benchmark's report: one JSON line, or indented for people.
pub(super) fn print_report(report: &serde_json::Value, one_line: bool) -> Result<ExitCode> {
    if one_line {
        println!("{report}");
    } else {
        println!("{}", serde_json::to_string_pretty(report)?);
    }
    Ok(ExitCode::SUCCESS)
}
