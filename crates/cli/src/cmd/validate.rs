//! `quarry validate JOB.yaml`: check a job file and show what it would run.

use crate::jobs::load::load_or_report;
use anyhow::Result;
use futures::StreamExt;
use quarry_job::{JobSpec, MapOver, Run};
use quarry_plan::plan_job;
use quarry_store::StoreResolver;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Options of `quarry validate`.
#[derive(clap::Args)]
pub struct Args {
    /// The job file.
    job: PathBuf,
    /// How many of the first tasks to show.
    #[arg(long, default_value_t = 5)]
    preview: usize,
    /// Do not touch the store (no listing, no broadcast or output checks):
    /// prefix jobs then show no task count.
    #[arg(long)]
    offline: bool,
    /// The job is for a cluster (`quarry submit`): a command program
    /// missing from this machine's `PATH` is a warning, not an error, since
    /// the workers' machines may have it.
    #[arg(long)]
    cluster: bool,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let spec = match load_or_report(&args.job) {
        Ok(spec) => spec,
        Err(code) => return Ok(code),
    };
    let summary = spec.summary(args.preview);
    let program_found = check_program(&spec, args.cluster);
    if args.offline {
        print!("{summary}");
        return Ok(exit(program_found));
    }
    // Planning is reading, not running: it pins the broadcast inputs,
    // checks that the output prefix can be written and lists the input,
    // exactly as a submission would, without opening a job.
    let store = StoreResolver::from_env();
    let mut plan = match plan_job(&store, &spec).await {
        Ok(plan) => plan,
        Err(error) => {
            print!("{summary}");
            eprintln!("error: {error}");
            return Ok(ExitCode::FAILURE);
        }
    };
    if !matches!(spec.map_over, MapOver::Prefix(_)) {
        print!("{summary}");
    } else {
        let mut tasks = 0u64;
        let mut first = Vec::new();
        while let Some(task) = plan.tasks.next().await {
            let task = match task {
                Ok(task) => task,
                Err(error) => {
                    print!("{summary}");
                    eprintln!("error: {error}");
                    return Ok(ExitCode::FAILURE);
                }
            };
            if first.len() < args.preview {
                first.push(task);
            }
            tasks += 1;
        }
        println!("job:      {}", summary.name);
        println!("maps:     {}", summary.map_over);
        println!("runs:     {}", summary.runs);
        println!("tasks:    {tasks} (listed now)");
        if let Some(output) = &summary.output {
            println!("output:   {output}");
        }
        if !first.is_empty() {
            println!("first tasks:");
            for task in &first {
                let input = task
                    .inputs
                    .first()
                    .map(|r| r.to_string())
                    .unwrap_or_default();
                println!("  {}  {input}", task.key);
            }
        }
    }
    if let Some(output) = &plan.output {
        println!("output prefix writable: {output}");
    }
    if !plan.broadcast.is_empty() {
        println!("broadcast inputs:");
        for (name, data_ref) in &plan.broadcast {
            println!("  {name}: {} ({} bytes)", data_ref.url, data_ref.size);
        }
    }
    Ok(exit(program_found))
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Checks that a command job's program exists on this machine (on `PATH`,
/// or at the path it names). Prints an error (a warning for a cluster) and
/// returns false if it does not; true otherwise.
fn check_program(spec: &JobSpec, cluster: bool) -> bool {
    let Run::Command(argv) = &spec.run else {
        return true;
    };
    let Some(program) = argv.first() else {
        return true;
    };
    // A templated program name is only known per task.
    if program.contains('{') || find_program(program) {
        return true;
    }
    if cluster {
        eprintln!(
            "warning: the command program `{program}` is not on this machine's PATH; the \
             workers' machines need it"
        );
        true
    } else {
        eprintln!("error: the command program `{program}` is not on PATH (nor a file)");
        false
    }
}

/// Whether `program` names an executable file: an absolute path, or a
/// name found in a directory of `PATH`. A relative path (`./run.sh`) is
/// taken on trust: it is relative to where the task runs.
fn find_program(program: &str) -> bool {
    if program.starts_with('/') {
        return is_executable(Path::new(program));
    }
    if program.contains('/') {
        return true;
    }
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| is_executable(&dir.join(program)))
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_found_on_path_or_by_path() {
        assert!(find_program("sh"));
        assert!(find_program("/bin/sh"));
        assert!(!find_program("quarry-no-such-program-here"));
        assert!(!find_program("/nonexistent/sh"));
    }
}
