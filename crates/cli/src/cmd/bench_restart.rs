//! `quarry bench restart`: how long a scheduler takes from its start to its
//! first answer when its journal holds many finished tasks.

use super::bench::{free_port, print_report, quarry, remove_journal, wait_for_workers, Processes};
use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use quarry_client::{Client, ClientOptions};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Options of `quarry bench restart`.
#[derive(clap::Args)]
pub struct RestartArgs {
    /// Finished no-op tasks to put in the journal before the restart.
    #[arg(long, default_value_t = 1_000_000)]
    tasks: u64,
    /// Worker processes that run them.
    #[arg(long, default_value_t = 2)]
    workers: u32,
    /// Slots per worker.
    #[arg(long, default_value_t = 2)]
    nthreads: u32,
    /// The journal file (removed first, and at the end)
    /// [default: a file in the temporary directory].
    #[arg(long)]
    journal: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Longest wait for a restarted scheduler's first answer.
const SERVING_LIMIT: Duration = Duration::from_secs(300);

pub async fn restart(args: RestartArgs) -> Result<ExitCode> {
    let journal = args.journal.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!(
            "quarry-bench-restart-{}.journal",
            std::process::id()
        ))
    });
    remove_journal(&journal)?;
    let result = measure(&args, &journal).await;
    let journal_bytes = std::fs::metadata(&journal).map(|m| m.len()).ok();
    remove_journal(&journal)?;
    let (fill_seconds, serving_seconds, done) = result?;
    let report = json!({
        "bench": "restart",
        "tasks": args.tasks,
        "journal_bytes": journal_bytes,
        "fill_seconds": fill_seconds,
        "start_to_serving_seconds": serving_seconds,
        "tasks_done_after_restart": done,
    });
    print_report(&report, args.json)
}

fn scheduler_args(address: &str, journal: &std::path::Path) -> Vec<String> {
    vec![
        "scheduler".into(),
        "--listen".into(),
        address.into(),
        "--dashboard".into(),
        "none".into(),
        "--journal".into(),
        journal.display().to_string(),
    ]
}

async fn connect(address: &str) -> Result<Client> {
    let mut options = ClientOptions::new(address.to_string());
    options.handshake_timeout = SERVING_LIMIT;
    Ok(Client::connect_with(options).await?)
}

/// Fills the journal, stops the scheduler, restarts it and times it:
/// (seconds to fill, seconds from the restart to its first answer, tasks
/// it reports done).
async fn measure(args: &RestartArgs, journal: &std::path::Path) -> Result<(f64, f64, u64)> {
    let address = format!("tcp://127.0.0.1:{}", free_port()?);
    let scratch = std::env::temp_dir().join(format!("quarry-bench-restart-{}", std::process::id()));
    let mut workers = Processes(Vec::new());
    let mut first = Processes(vec![quarry(&scheduler_args(&address, journal))?]);
    for i in 0..args.workers {
        workers.0.push(quarry(&[
            "worker".into(),
            address.clone(),
            format!("--nthreads={}", args.nthreads),
            format!("--name=bench-restart-{i}"),
            "--cache-dir".into(),
            scratch.join(format!("w{i}")).display().to_string(),
        ])?);
    }
    let client = connect(&address).await?;
    wait_for_workers(&client, args.workers as usize).await?;
    let started = Instant::now();
    client
        .gather(client.map::<u64, (), _>("noop", 0..args.tasks)?)
        .await?;
    let fill_seconds = started.elapsed().as_secs_f64();
    drop(client);

    // A clean stop syncs the journal; the restart is what is measured.
    let scheduler = &mut first.0[0];
    let pid = scheduler.id().context("the scheduler exited early")?;
    kill(Pid::from_raw(pid as i32), Signal::SIGTERM).context("cannot stop the scheduler")?;
    tokio::time::timeout(Duration::from_secs(60), scheduler.wait())
        .await
        .context("the scheduler did not stop within 60 s")??;

    let restarted_at = Instant::now();
    let _second = Processes(vec![quarry(&scheduler_args(&address, journal))?]);
    let client = connect(&address).await?;
    let jobs = client.jobs().await?;
    let serving_seconds = restarted_at.elapsed().as_secs_f64();
    let done: u64 = jobs.iter().map(|j| j.counts.done).sum();
    if done < args.tasks {
        bail!(
            "the restarted scheduler reports {done} tasks done of the {} in its journal",
            args.tasks
        );
    }
    drop(workers);
    let _ = std::fs::remove_dir_all(&scratch);
    Ok((fill_seconds, serving_seconds, done))
}
