//! `quarry run JOB.yaml`: a job on an embedded scheduler and workers, in
//! this process. Nothing to start first.

use crate::jobs::load::load_or_report;
use crate::jobs::progress::{exit_code, job_rows, summarize};
use crate::jobs::result::print_job_result;
use crate::jobs::submit::submit_job;
use crate::jobs::view::{render, select, Format, ViewArgs};
use anyhow::{bail, Context, Result};
use quarry::{LocalCluster, Registry};
use quarry_job::Run;
use quarry_store::StoreResolver;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// How long an interrupted run waits for its cancelled tasks to stop.
const CANCEL_GRACE: Duration = Duration::from_secs(30);

/// The exit status after Ctrl-C or SIGTERM (128 + SIGINT, as shells use).
const INTERRUPTED_EXIT: u8 = 130;

/// Options of `quarry run`.
#[derive(clap::Args)]
pub struct Args {
    /// The job file.
    job: PathBuf,
    /// Workers to start [default: one per CPU].
    #[arg(long)]
    workers: Option<usize>,
    /// Task slots per worker.
    #[arg(long, default_value_t = 1)]
    nthreads: u32,
    /// Directory for the workers' shard caches and scratch space. Reuse it
    /// to keep caches warm across runs [default: a temporary directory,
    /// removed at the end].
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// After the run, print the result table in this format.
    #[arg(long, value_enum, value_name = "FORMAT")]
    results: Option<Format>,
    #[command(flatten)]
    view: ViewArgs,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let spec = match load_or_report(&args.job) {
        Ok(spec) => spec,
        Err(code) => return Ok(code),
    };
    let registry = Registry::new().with_builtins();
    if let Run::Function(call) = &spec.run {
        if !registry.names().contains(&call.name) {
            bail!(
                "`quarry run` workers have no function `{}`; they serve the built-ins: {}. \
                 Functions of your own need a worker binary that registers them (see \
                 examples/grid_search.rs)",
                call.name,
                registry.names().join(", ")
            );
        }
    }
    if let Some(reduce) = &spec.reduce {
        if !registry.names().contains(&reduce.function) {
            bail!(
                "`quarry run` workers have no reducer `{}`; they serve the built-ins: {}",
                reduce.function,
                registry.names().join(", ")
            );
        }
    }
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    // Kept until the end of the run, then removed, unless the user chose a
    // directory to keep.
    let scratch = tempfile::Builder::new()
        .prefix("quarry-run-")
        .tempdir()
        .context("cannot create a work directory")?;
    let work_dir = args
        .work_dir
        .clone()
        .unwrap_or_else(|| scratch.path().to_path_buf());
    let cluster = LocalCluster::builder()
        .workers(workers)
        .nthreads(args.nthreads)
        .registry(registry)
        .work_dir(&work_dir)
        .start()
        .await?;
    let outcome = run_job(&cluster, &spec, &args).await;
    cluster.shutdown().await;
    drop(scratch);
    outcome
}

async fn run_job(
    cluster: &LocalCluster,
    spec: &quarry_job::JobSpec,
    args: &Args,
) -> Result<ExitCode> {
    let client = cluster.client().await?;
    let store = StoreResolver::from_env();
    let submitted = submit_job(&client, &store, spec).await?;
    let (id, output) = (submitted.id, submitted.output.clone());
    let following = submitted.follow(&client);
    tokio::pin!(following);
    let info = tokio::select! {
        info = &mut following => info?,
        _ = super::scheduler::handle_signals() => {
            // The commands run in process groups of their own, which a
            // terminal's Ctrl-C does not reach: cancelling the job is what
            // stops them.
            eprintln!("interrupted: cancelling job {id} and stopping its tasks");
            client.cancel_job(id)?.await?;
            match tokio::time::timeout(CANCEL_GRACE, &mut following).await {
                Ok(info) => info?,
                Err(_) => bail!("job {id} did not stop within {CANCEL_GRACE:?}"),
            };
            return Ok(ExitCode::from(INTERRUPTED_EXIT));
        }
    };
    summarize(&client, &info, output.as_deref()).await?;
    // With `--results`, the table's `_reduce/result` row holds the result.
    if spec.reduce.is_some() && args.results.is_none() {
        print_job_result(&store, &info, output.as_deref()).await?;
    }
    if let Some(format) = args.results {
        let rows = job_rows(&client, &store, id).await?;
        render(&select(rows, &args.view)?, format, args.view.out.as_deref())?;
    }
    Ok(exit_code(&info))
}
