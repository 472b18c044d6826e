//! `quarry results JOB`: one row per task of a job.

use crate::jobs::connect::{find_job, SchedulerArgs};
use crate::jobs::progress::job_rows;
use crate::jobs::view::{render, select, Format, ViewArgs};
use anyhow::Result;
use std::process::ExitCode;

/// Options of `quarry results`.
#[derive(clap::Args)]
pub struct Args {
    /// A job id (j123 or 123) or name.
    job: String,
    #[command(flatten)]
    scheduler: SchedulerArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    #[command(flatten)]
    view: ViewArgs,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let scheduler = args.scheduler.resolve()?;
    let store = scheduler.stores();
    scheduler
        .with_client(async |client| {
            let info = find_job(client, &args.job).await?;
            let rows = job_rows(client, &store, info.id).await?;
            render(
                &select(rows, &args.view)?,
                args.format,
                args.view.out.as_deref(),
            )?;
            Ok(ExitCode::SUCCESS)
        })
        .await
}
