//! `quarry validate JOB.yaml`: check a job file and show what it would run.

use crate::jobs::load::load_or_report;
use crate::jobs::submit::{pin_broadcast, PrefixListing};
use anyhow::Result;
use quarry_job::MapOver;
use quarry_store::StoreResolver;
use std::path::PathBuf;
use std::process::ExitCode;

/// Options of `quarry validate`.
#[derive(clap::Args)]
pub struct Args {
    /// The job file.
    job: PathBuf,
    /// How many of the first tasks to show.
    #[arg(long, default_value_t = 5)]
    preview: usize,
    /// Do not list the input prefix or check the broadcast inputs (no store
    /// access): prefix jobs then show no task count.
    #[arg(long)]
    offline: bool,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let spec = match load_or_report(&args.job) {
        Ok(spec) => spec,
        Err(code) => return Ok(code),
    };
    let summary = spec.summary(args.preview);
    let MapOver::Prefix(input) = &spec.map_over else {
        print!("{summary}");
        if !args.offline {
            check_broadcast(&spec).await?;
        }
        return Ok(ExitCode::SUCCESS);
    };
    if args.offline {
        print!("{summary}");
        return Ok(ExitCode::SUCCESS);
    }
    // Listing is reading, not running: count the objects and show the
    // first tasks as a submission would build them.
    let store = StoreResolver::from_env();
    let mut listing = PrefixListing::new(&store, &input.prefix);
    let mut objects = 0u64;
    let mut tasks = 0u64;
    let mut first = Vec::new();
    loop {
        let batch = listing.next_batch(10_000).await?;
        if batch.is_empty() {
            break;
        }
        objects += batch.len() as u64;
        for task in spec.expand_listing(batch)? {
            if first.len() < args.preview {
                first.push(task);
            }
            tasks += 1;
        }
    }
    println!("job:      {}", summary.name);
    println!("maps:     {}", summary.map_over);
    println!("runs:     {}", summary.runs);
    println!("tasks:    {tasks} ({objects} objects listed now)");
    if let Some(output) = &summary.output {
        println!("output:   {output}");
    }
    if !first.is_empty() {
        println!("first tasks:");
        for task in &first {
            let input = task
                .input
                .as_ref()
                .map(|r| r.to_string())
                .unwrap_or_default();
            println!("  {}  {input}", task.key);
        }
    }
    check_broadcast(&spec).await?;
    if tasks == 0 {
        eprintln!("error: no object matches the input prefix {}", input.prefix);
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

async fn check_broadcast(spec: &quarry_job::JobSpec) -> Result<()> {
    if spec.inputs.is_empty() {
        return Ok(());
    }
    let store = StoreResolver::from_env();
    println!("broadcast inputs:");
    for (name, data_ref) in pin_broadcast(&store, spec).await? {
        println!("  {name}: {} ({} bytes)", data_ref.url, data_ref.size);
    }
    Ok(())
}
