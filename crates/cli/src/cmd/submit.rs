//! `quarry submit JOB.yaml`: send a job to a running scheduler.

use crate::jobs::connect::SchedulerArgs;
use crate::jobs::load::load_or_report;
use crate::jobs::progress::{exit_code, follow, summarize};
use crate::jobs::submit::submit_job;
use anyhow::Result;
use std::path::PathBuf;
use std::process::ExitCode;

/// Options of `quarry submit`.
#[derive(clap::Args)]
pub struct Args {
    /// The job file.
    job: PathBuf,
    #[command(flatten)]
    scheduler: SchedulerArgs,
    /// Follow the job with a progress bar until it ends; exit non-zero if
    /// any task failed. Without it, print the job id and exit (the job runs
    /// on).
    #[arg(long)]
    watch: bool,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let spec = match load_or_report(&args.job) {
        Ok(spec) => spec,
        Err(code) => return Ok(code),
    };
    let scheduler = args.scheduler.resolve()?;
    scheduler
        .with_client(async |client| {
            let store = scheduler.stores();
            let submitted = submit_job(client, &store, &spec, |_| {}).await?;
            eprintln!(
                "submitted job {} ({}): {} tasks to {}",
                submitted.id, submitted.name, submitted.tasks, scheduler.address
            );
            if !args.watch {
                // The id alone on stdout, for scripts: JOB=$(quarry submit job.yaml)
                println!("{}", submitted.id);
                submitted.leave_results_on_scheduler();
                return Ok(ExitCode::SUCCESS);
            }
            let info = follow(client, submitted.id, submitted.tasks).await?;
            summarize(client, &info, submitted.output.as_deref()).await?;
            submitted.leave_results_on_scheduler();
            Ok(exit_code(&info))
        })
        .await
}
