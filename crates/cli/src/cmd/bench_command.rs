//! `quarry bench command`: throughput of command tasks (`true`), the
//! figure HyperQueue publishes, on a scheduler and worker processes over
//! TCP loopback. Printed, never asserted; `bench/command/compare.sh` puts it
//! next to `xargs -P`.

use super::bench::{print_report, BenchCluster};
use anyhow::{bail, Result};
use quarry_client::{Client, JobOptions};
use quarry_command::{CommandTemplate, COMMAND_EXECUTOR};
use quarry_proto::TaskOutcome;
use serde_json::json;
use std::process::ExitCode;
use std::time::Instant;

/// Options of `quarry bench command`.
#[derive(clap::Args)]
pub struct CommandArgs {
    /// Command tasks to run.
    #[arg(long, default_value_t = 10_000)]
    tasks: u64,
    /// Worker processes.
    #[arg(long, default_value_t = 2)]
    workers: u32,
    /// Slots per worker.
    #[arg(long, default_value_t = 1)]
    nthreads: u32,
    /// The program each task runs (with no arguments).
    #[arg(long, default_value = "true")]
    program: String,
    /// Print one JSON object instead of indented JSON.
    #[arg(long)]
    json: bool,
}

/// Tasks run before timing, to start connections and warm code paths.
const WARM_UP_TASKS: u64 = 200;

/// Runs `tasks` command tasks as one sealed job and returns how many failed.
async fn run_job(
    client: &Client,
    template: &CommandTemplate,
    name: &str,
    tasks: u64,
) -> Result<u64> {
    let job = client.open_job(JobOptions {
        name: name.to_owned(),
        context: template.to_context(),
        ..JobOptions::default()
    })?;
    let specs = (0..tasks)
        .map(|i| {
            let mut spec = job.new_task(COMMAND_EXECUTOR, Vec::new());
            spec.key = format!("{i:07}");
            spec
        })
        .collect();
    let futures = job.submit::<()>(specs)?;
    job.seal()?.await?;
    let mut failed = 0;
    let mut first_error = None;
    for future in futures {
        if let TaskOutcome::Err(error) = future.outcome().await? {
            failed += 1;
            first_error.get_or_insert(error.message);
        }
    }
    if failed == tasks && tasks > 0 {
        bail!(
            "every `{}` task failed; the first said: {}",
            template.argv.join(" "),
            first_error.unwrap_or_default()
        );
    }
    Ok(failed)
}

pub async fn command(args: CommandArgs) -> Result<ExitCode> {
    let (cluster, client) =
        BenchCluster::start("bench-command", args.workers, args.nthreads, &[], &[], &[]).await?;

    let template = CommandTemplate {
        argv: vec![args.program.clone()],
        ..CommandTemplate::default()
    };
    run_job(&client, &template, "bench-command-warm-up", WARM_UP_TASKS).await?;
    let started = Instant::now();
    let failed = run_job(&client, &template, "bench-command", args.tasks).await?;
    let seconds = started.elapsed().as_secs_f64();
    let report = json!({
        "bench": "command",
        "program": args.program,
        "tasks": args.tasks,
        "workers": args.workers,
        "nthreads": args.nthreads,
        "seconds": seconds,
        "tasks_per_sec": args.tasks as f64 / seconds,
        "failed": failed,
    });
    drop(client);
    drop(cluster);
    print_report(&report, args.json)
}
