//! `quarry submit JOB.yaml`: send a job to a running scheduler.

use crate::jobs::connect::SchedulerArgs;
use crate::jobs::load::load_or_report;
use crate::jobs::progress::{exit_code, summarize};
use crate::jobs::result::print_job_result;
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
    let store = scheduler.stores();
    scheduler
        .with_client(async |client| {
            let submitted = submit_job(client, &store, &spec).await?;
            let (id, name, output) = (
                submitted.id,
                submitted.name.clone(),
                submitted.output.clone(),
            );
            if !args.watch && submitted.reduce.is_some() {
                eprintln!(
                    "job {id} ({name}) has a reduce stage, which this command drives: following \
                     it to its end (as with --watch)"
                );
            } else if !args.watch {
                let tasks = submitted.detach(client).await?;
                eprintln!(
                    "submitted job {id} ({name}): {tasks} tasks to {}",
                    scheduler.address
                );
                // The id alone on stdout, for scripts: JOB=$(quarry submit job.yaml)
                println!("{id}");
                return Ok(ExitCode::SUCCESS);
            }
            match submitted.task_count {
                Some(tasks) => eprintln!(
                    "submitting job {id} ({name}): {tasks} tasks to {}",
                    scheduler.address
                ),
                None => eprintln!(
                    "submitting job {id} ({name}) to {}, as its input is listed",
                    scheduler.address
                ),
            }
            let reduced = submitted.reduce.is_some();
            let info = submitted.follow(client).await?;
            summarize(client, &info, output.as_deref()).await?;
            if reduced {
                print_job_result(&store, &info, output.as_deref()).await?;
            }
            Ok(exit_code(&info))
        })
        .await
}
