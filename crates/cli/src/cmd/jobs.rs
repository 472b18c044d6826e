//! `quarry jobs`, `quarry status [JOB]` and `quarry cancel JOB`: looking at
//! and stopping the jobs of a running scheduler.

use crate::jobs::connect::{find_job, is_default_job, SchedulerArgs};
use crate::jobs::progress::{cache_hit_percent, locality_line, progress_line};
use crate::jobs::view::duration_text;
use anyhow::Result;
use indicatif::HumanBytes;
use quarry_client::JobList;
use quarry_proto::{JobInfo, JobState};
use std::process::ExitCode;

/// Options of `quarry jobs`.
#[derive(clap::Args)]
pub struct JobsArgs {
    #[command(flatten)]
    scheduler: SchedulerArgs,
    /// Print JSON (one object per job) instead of a table.
    #[arg(long)]
    json: bool,
}

/// Options of `quarry status`.
#[derive(clap::Args)]
pub struct StatusArgs {
    /// A job id (j123 or 123) or name; without it, the scheduler's workers
    /// and jobs.
    job: Option<String>,
    #[command(flatten)]
    scheduler: SchedulerArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Options of `quarry cancel`.
#[derive(clap::Args)]
pub struct CancelArgs {
    /// A job id (j123 or 123) or name.
    job: String,
    #[command(flatten)]
    scheduler: SchedulerArgs,
}

/// Options of `quarry drain`.
#[derive(clap::Args)]
pub struct DrainArgs {
    /// The worker's name or id, as `quarry status` lists them.
    worker: String,
    #[command(flatten)]
    scheduler: SchedulerArgs,
}

/// The jobs worth listing: every named job, and library clients' default
/// jobs only when they hold tasks.
fn listed(jobs: Vec<JobInfo>) -> Vec<JobInfo> {
    jobs.into_iter()
        .filter(|j| !is_default_job(j.id) || j.counts.total > 0)
        .collect()
}

fn state_text(state: JobState) -> &'static str {
    match state {
        JobState::Running => "running",
        JobState::Succeeded => "succeeded",
        JobState::Failed => "failed",
        JobState::Cancelled => "cancelled",
    }
}

fn job_json(info: &JobInfo) -> serde_json::Value {
    serde_json::json!({
        "id": info.id.to_string(),
        "name": info.name,
        "state": state_text(info.state),
        "counts": {
            "total": info.counts.total,
            "queued": info.counts.queued,
            "assigned": info.counts.assigned,
            "running": info.counts.running,
            "done": info.counts.done,
            "failed": info.counts.failed,
            "cancelled": info.counts.cancelled,
        },
        "tasks_local": info.tasks_local,
        "tasks_remote": info.tasks_remote,
        "bytes_from_cache": info.stats.bytes_from_cache,
        "bytes_from_store": info.stats.bytes_from_store,
        "cache_hits": info.stats.cache_hits,
        "cache_misses": info.stats.cache_misses,
        "cache_hit_percent": cache_hit_percent(info),
        "elapsed_ms": info.elapsed_ms,
    })
}

fn jobs_table(jobs: &[JobInfo]) -> String {
    let header = [
        "ID", "NAME", "STATE", "TASKS", "DONE", "FAILED", "RUNNING", "QUEUED", "ELAPSED",
    ];
    let rows: Vec<[String; 9]> = jobs
        .iter()
        .map(|j| {
            [
                j.id.to_string(),
                j.name.clone(),
                state_text(j.state).to_owned(),
                j.counts.total.to_string(),
                j.counts.done.to_string(),
                j.counts.failed.to_string(),
                j.counts.running.to_string(),
                (j.counts.queued + j.counts.assigned).to_string(),
                duration_text(j.elapsed_ms),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let format_line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut text = format_line(header.to_vec());
    for row in &rows {
        text.push_str(&format_line(row.iter().map(String::as_str).collect()));
    }
    text
}

pub async fn jobs(args: JobsArgs) -> Result<ExitCode> {
    let scheduler = args.scheduler.resolve()?;
    scheduler
        .with_client(async |client| {
            let JobList { jobs, dropped } = client.list_jobs().await?;
            let jobs = listed(jobs);
            if args.json {
                for job in &jobs {
                    println!("{}", job_json(job));
                }
            } else if jobs.is_empty() {
                println!("no jobs on {}", scheduler.address);
            } else {
                print!("{}", jobs_table(&jobs));
            }
            if dropped > 0 {
                // On stderr, so that --json output stays one job per line.
                eprintln!("{}", dropped_line(dropped));
            }
            Ok(ExitCode::SUCCESS)
        })
        .await
}

/// What `quarry jobs` says about jobs dropped after their retention.
fn dropped_line(dropped: u64) -> String {
    format!(
        "{dropped} finished job{} dropped after the scheduler's --job-retention (their \
         manifests and outputs stay in the store)",
        if dropped == 1 { " was" } else { "s were" }
    )
}

pub async fn status(args: StatusArgs) -> Result<ExitCode> {
    let scheduler = args.scheduler.resolve()?;
    scheduler
        .with_client(async |client| {
        let Some(name) = &args.job else {
            let workers = client.workers().await?;
            let JobList { jobs, dropped } = client.list_jobs().await?;
            let jobs = listed(jobs);
            if args.json {
                let workers: Vec<serde_json::Value> = workers
                    .iter()
                    .map(|w| serde_json::json!({"id": w.id.to_string(), "name": w.name}))
                    .collect();
                let jobs: Vec<serde_json::Value> = jobs.iter().map(job_json).collect();
                println!(
                    "{}",
                    serde_json::json!({"workers": workers, "jobs": jobs, "dropped_jobs": dropped})
                );
                return Ok(ExitCode::SUCCESS);
            }
            println!("scheduler: {}", scheduler.address);
            println!("workers:   {}", workers.len());
            for worker in &workers {
                println!("  {}  {}", worker.id, worker.name);
            }
            let running = jobs.iter().filter(|j| j.state == JobState::Running).count();
            println!("jobs:      {} ({running} running)", jobs.len());
            if !jobs.is_empty() {
                print!("{}", jobs_table(&jobs));
            }
            if dropped > 0 {
                println!("{}", dropped_line(dropped));
            }
            return Ok(ExitCode::SUCCESS);
        };
        let info = find_job(client, name).await?;
        if args.json {
            println!("{}", job_json(&info));
            return Ok(ExitCode::SUCCESS);
        }
        let c = &info.counts;
        println!("job:       {} ({})", info.id, info.name);
        println!("state:     {}", state_text(info.state));
        println!("elapsed:   {}", duration_text(info.elapsed_ms));
        println!(
            "tasks:     {} total · {} done · {} failed · {} cancelled · {} running · {} queued",
            c.total,
            c.done,
            c.failed,
            c.cancelled,
            c.running,
            c.queued + c.assigned
        );
        println!("progress:  {}", progress_line(&info));
        println!("locality:  {}", locality_line(&info));
        println!(
            "bytes:     {} from cache, {} from store",
            HumanBytes(info.stats.bytes_from_cache),
            HumanBytes(info.stats.bytes_from_store)
        );
        Ok(ExitCode::SUCCESS)
        })
        .await
}

pub async fn cancel(args: CancelArgs) -> Result<ExitCode> {
    let scheduler = args.scheduler.resolve()?;
    scheduler
        .with_client(async |client| {
            let info = find_job(client, &args.job).await?;
            if info.state != JobState::Running {
                println!(
                    "job {} ({}) already {}; nothing to cancel",
                    info.id,
                    info.name,
                    state_text(info.state)
                );
                return Ok(ExitCode::SUCCESS);
            }
            client.cancel_job(info.id)?.await?;
            let after = find_job(client, &info.id.to_string()).await?;
            println!(
                "cancelled job {} ({}): {} done, {} failed, {} cancelled of {}",
                after.id,
                after.name,
                after.counts.done,
                after.counts.failed,
                after.counts.cancelled,
                after.counts.total
            );
            Ok(ExitCode::SUCCESS)
        })
        .await
}

pub async fn drain(args: DrainArgs) -> Result<ExitCode> {
    let scheduler = args.scheduler.resolve()?;
    scheduler
        .with_client(async |client| {
            client.drain_worker(&args.worker)?.await?;
            println!(
            "worker {} is draining: it finishes its running tasks, gives back the queued ones, \
             then exits",
            args.worker
        );
            Ok(ExitCode::SUCCESS)
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use quarry_proto::{ClientId, JobCounts, JobId, TaskStats};

    fn job(id: JobId, name: &str, total: u64) -> JobInfo {
        JobInfo {
            id,
            name: name.into(),
            state: JobState::Running,
            counts: JobCounts {
                total,
                done: total,
                ..JobCounts::default()
            },
            tasks_local: 0,
            tasks_remote: 0,
            stats: TaskStats::default(),
            elapsed_ms: 2500,
        }
    }

    #[test]
    fn empty_default_jobs_are_not_listed() {
        let default = JobId::first_for(ClientId(2));
        let jobs = vec![
            job(default, "client-2", 0),
            job(JobId::first_for(ClientId(3)), "client-3", 5),
            job(JobId(default.0 + 1), "wordcount", 0),
        ];
        let names: Vec<String> = listed(jobs).into_iter().map(|j| j.name).collect();
        assert_eq!(names, ["client-3", "wordcount"]);
    }

    #[test]
    fn the_jobs_table_aligns_columns() {
        let text = jobs_table(&[job(JobId(7), "wordcount", 12)]);
        assert_eq!(
            text,
            "ID  NAME       STATE    TASKS  DONE  FAILED  RUNNING  QUEUED  ELAPSED\n\
             j7  wordcount  running  12     12    0       0        0       2.5 s\n"
        );
    }
}
