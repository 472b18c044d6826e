//! `quarry slurm script`: an sbatch script that runs quarry workers as a
//! Slurm job, the way dask-jobqueue's `SLURMCluster` runs dask workers.
//!
//! The script asks for `--workers` Slurm tasks and starts one `quarry
//! worker` per task with `srun`. Each caches on its node's local disk, in a
//! directory named after the job and the task, and is named
//! `HOST-slurm-JOB-TASK`. Workers are told to leave a little before the
//! walltime (`quarry worker --lifetime`, when this quarry has it), and
//! Slurm sends them SIGTERM shortly before it kills the job, so that their
//! tasks go back to the scheduler at once rather than after its heartbeat
//! timeout.

use crate::config::{ByteSize, Span};
use crate::jobs::connect::SchedulerArgs;
use anyhow::{bail, Context, Result};
use std::fmt::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// `quarry slurm …`.
#[derive(clap::Subcommand)]
pub enum Slurm {
    /// Print an sbatch script that runs quarry workers for a scheduler:
    /// `quarry slurm script --workers 8 --time 4h -- --partition=batch | sbatch`.
    Script(ScriptArgs),
}

/// Options of `quarry slurm script`.
#[derive(clap::Args)]
pub struct ScriptArgs {
    /// Worker processes (Slurm tasks) to run.
    #[arg(long)]
    workers: u32,
    /// The job's walltime, such as 1h or 90m (sbatch --time).
    #[arg(long)]
    time: Span,
    /// The scheduler the workers join, as the compute nodes reach it
    /// [default: the client settings' `scheduler`: --scheduler of the
    /// client commands, QUARRY_SCHEDULER or client.toml].
    #[arg(long)]
    scheduler: Option<String>,
    /// Task slots per worker, and CPUs per Slurm task.
    #[arg(long, default_value_t = 1)]
    nthreads: u32,
    /// Shard cache capacity of each worker.
    #[arg(long, default_value = "10GiB")]
    cache_size: ByteSize,
    /// Node-local directory for the caches, as the compute nodes see it
    /// [default: $TMPDIR on each node, else /tmp].
    #[arg(long)]
    local_dir: Option<String>,
    /// The quarry program on the compute nodes [default: this one].
    #[arg(long)]
    quarry: Option<PathBuf>,
    /// The scheduler's public key file (scheduler.pub), for CURVE.
    #[arg(long)]
    server_key: Option<String>,
    /// The workers' key pair file (worker.key), for CURVE.
    #[arg(long)]
    key_file: Option<String>,
    /// The Slurm job's name.
    #[arg(long, default_value = "quarry-workers")]
    job_name: String,
    /// More sbatch options, after `--`: each becomes an `#SBATCH` line.
    #[arg(last = true)]
    sbatch: Vec<String>,
}

pub fn run(slurm: Slurm) -> Result<ExitCode> {
    match slurm {
        Slurm::Script(args) => {
            let scheduler = match args.scheduler.clone() {
                Some(scheduler) => scheduler,
                None => crate::config::resolve(&SchedulerArgs::default())?
                    .scheduler
                    .context(
                        "which scheduler? give --scheduler tcp://HOST:8786 (an address the \
                         compute nodes reach), or set QUARRY_SCHEDULER",
                    )?,
            };
            let quarry = match &args.quarry {
                Some(path) => path.clone(),
                None => std::env::current_exe().context("cannot find the quarry executable")?,
            };
            let lifetime = worker_has_lifetime();
            if !lifetime {
                eprintln!(
                    "note: this quarry's workers have no --lifetime yet; the script relies on \
                     Slurm's SIGTERM before the walltime instead"
                );
            }
            print!("{}", script(&args, &scheduler, &quarry, lifetime)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Whether `quarry worker` takes `--lifetime` (another part of the work
/// adds it; until then the script leaves it out).
fn worker_has_lifetime() -> bool {
    crate::config::keys::<super::worker::Args>()
        .iter()
        .any(|key| key == "lifetime")
}

/// How long before the walltime workers are asked to leave: a tenth of it,
/// between 2 and 10 minutes, and at most half of a short walltime.
fn leave_margin(walltime: Duration) -> Duration {
    let margin = (walltime / 10).clamp(Duration::from_secs(120), Duration::from_secs(600));
    margin.min(walltime / 2)
}

/// A walltime in Slurm's `[D-]HH:MM:SS`.
fn slurm_time(walltime: Duration) -> String {
    let total = walltime.as_secs();
    let (days, rest) = (total / 86_400, total % 86_400);
    let clock = format!(
        "{:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    );
    if days > 0 {
        format!("{days}-{clock}")
    } else {
        clock
    }
}

/// `text` quoted for a POSIX shell.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn script(
    args: &ScriptArgs,
    scheduler: &str,
    quarry: &std::path::Path,
    lifetime: bool,
) -> Result<String> {
    let walltime = args.time.0;
    if walltime < Duration::from_secs(60) {
        bail!(
            "--time {} is shorter than a minute",
            humantime::format_duration(walltime)
        );
    }
    if args.workers == 0 || args.nthreads == 0 {
        bail!("--workers and --nthreads must be at least 1");
    }
    for option in &args.sbatch {
        if !option.starts_with('-') || option.contains('\n') {
            bail!("`{option}` is not an sbatch option (such as --partition=batch)");
        }
    }
    let margin = leave_margin(walltime);
    let signal_before = (margin / 2).as_secs().max(30);
    let quarry = quarry
        .to_str()
        .context("the quarry path is not valid UTF-8")?;
    let mut s = String::new();
    let _ = writeln!(s, "#!/bin/sh");
    let _ = writeln!(
        s,
        "# quarry workers as a Slurm job, written by `quarry slurm script`.\n\
         # Submit it with `sbatch FILE`. {workers} worker process(es) of {nthreads} task \
         slot(s) join\n# {scheduler}; each caches shards on its node's local disk.",
        workers = args.workers,
        nthreads = args.nthreads,
    );
    let _ = writeln!(s, "#SBATCH --job-name={}", args.job_name);
    let _ = writeln!(s, "#SBATCH --ntasks={}", args.workers);
    let _ = writeln!(s, "#SBATCH --cpus-per-task={}", args.nthreads);
    let _ = writeln!(s, "#SBATCH --time={}", slurm_time(walltime));
    let _ = writeln!(
        s,
        "# SIGTERM {signal_before} s before the walltime: a worker still running then \
         leaves at once,\n# and the scheduler requeues its tasks without waiting for a \
         heartbeat to fail.\n#SBATCH --signal=TERM@{signal_before}"
    );
    for option in &args.sbatch {
        let _ = writeln!(s, "#SBATCH {option}");
    }
    let _ = writeln!(s, "set -u");
    let _ = writeln!(s);
    let _ = writeln!(s, "QUARRY={}", shell_quote(quarry));
    let _ = writeln!(s, "SCHEDULER={}", shell_quote(scheduler));
    let _ = writeln!(s, "NTHREADS={}", args.nthreads);
    let _ = writeln!(s, "CACHE_SIZE={}", args.cache_size.0);
    let _ = writeln!(
        s,
        "# Node-local disk for the caches; empty: $TMPDIR on each node, else /tmp.\n\
         LOCAL_DIR={}",
        shell_quote(args.local_dir.as_deref().unwrap_or(""))
    );
    let mut exported = vec!["QUARRY", "SCHEDULER", "NTHREADS", "CACHE_SIZE", "LOCAL_DIR"];
    let mut key_flags = String::new();
    if let Some(key) = &args.server_key {
        let _ = writeln!(s, "SERVER_KEY={}", shell_quote(key));
        exported.push("SERVER_KEY");
        key_flags.push_str(" --server-key \"$SERVER_KEY\"");
    }
    if let Some(file) = &args.key_file {
        let _ = writeln!(s, "KEY_FILE={}", shell_quote(file));
        exported.push("KEY_FILE");
        key_flags.push_str(" --key-file \"$KEY_FILE\"");
    }
    let _ = writeln!(s, "export {}", exported.join(" "));
    let lifetime_flag = if lifetime {
        let leave_after = walltime - margin;
        format!(
            " \\\n        --lifetime {}",
            humantime::format_duration(Duration::from_secs(leave_after.as_secs()))
        )
    } else {
        String::new()
    };
    let _ = writeln!(s);
    if lifetime {
        let _ = writeln!(
            s,
            "# One worker per Slurm task; each leaves {} before the walltime (--lifetime).",
            humantime::format_duration(margin)
        );
    } else {
        let _ = writeln!(
            s,
            "# One worker per Slurm task. This quarry's workers have no --lifetime: they \
             run\n# until the SIGTERM above."
        );
    }
    let _ = writeln!(
        s,
        "status=0\nsrun --kill-on-bad-exit=0 sh -c '\n    \
         cache=\"${{LOCAL_DIR:-${{TMPDIR:-/tmp}}}}/quarry-$SLURM_JOB_ID/$SLURM_PROCID\"\n    \
         exec \"$QUARRY\" worker \"$SCHEDULER\" \\\n        \
         --name \"$(hostname -s)-slurm-$SLURM_JOB_ID-$SLURM_PROCID\" \\\n        \
         --nthreads \"$NTHREADS\" --cache-dir \"$cache\" \
         --cache-size \"$CACHE_SIZE\"{key_flags}{lifetime_flag}' || status=$?"
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "# The workers left before the walltime: remove their caches on every node.\n\
         srun --ntasks-per-node=1 --ntasks=\"$SLURM_JOB_NUM_NODES\" \
         sh -c 'rm -rf \"${{LOCAL_DIR:-${{TMPDIR:-/tmp}}}}/quarry-$SLURM_JOB_ID\"'\n\
         exit \"$status\""
    );
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        slurm: Slurm,
    }

    fn args(line: &[&str]) -> ScriptArgs {
        let Slurm::Script(args) =
            Cli::parse_from(["slurm", "script"].iter().chain(line.iter())).slurm;
        args
    }

    #[test]
    fn walltimes_are_written_the_slurm_way() {
        assert_eq!(slurm_time(Duration::from_secs(3600)), "01:00:00");
        assert_eq!(slurm_time(Duration::from_secs(90 * 60 + 5)), "01:30:05");
        assert_eq!(
            slurm_time(Duration::from_secs(2 * 86_400 + 61)),
            "2-00:01:01"
        );
    }

    #[test]
    fn workers_leave_a_little_before_the_walltime() {
        let minutes = |m: u64| Duration::from_secs(m * 60);
        assert_eq!(leave_margin(minutes(60)), minutes(6));
        assert_eq!(leave_margin(minutes(600)), minutes(10));
        assert_eq!(leave_margin(minutes(10)), minutes(2));
        assert_eq!(leave_margin(minutes(2)), minutes(1));
    }

    #[test]
    fn the_script_asks_slurm_for_the_workers_and_starts_them_with_srun() {
        let args = args(&[
            "--workers",
            "8",
            "--time",
            "1h",
            "--nthreads",
            "4",
            "--server-key",
            "/shared/keys/scheduler.pub",
            "--key-file",
            "/shared/keys/worker.key",
            "--",
            "--partition=batch",
            "--mem=16G",
        ]);
        let text = script(
            &args,
            "tcp://10.0.0.5:8786",
            std::path::Path::new("/opt/it's/quarry"),
            true,
        )
        .unwrap();
        for line in [
            "#SBATCH --ntasks=8",
            "#SBATCH --cpus-per-task=4",
            "#SBATCH --time=01:00:00",
            "#SBATCH --partition=batch",
            "#SBATCH --mem=16G",
            "#SBATCH --signal=TERM@180",
            "QUARRY='/opt/it'\\''s/quarry'",
            "SCHEDULER='tcp://10.0.0.5:8786'",
            "SERVER_KEY='/shared/keys/scheduler.pub'",
            "        --lifetime 54m' || status=$?",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "no line `{line}` in:\n{text}"
            );
        }
        assert!(text.contains("srun --kill-on-bad-exit=0 sh -c"), "{text}");
        assert!(text.contains("--key-file \"$KEY_FILE\""), "{text}");
        // The #SBATCH lines come before the first command, or sbatch
        // ignores them.
        let first_command = text.lines().position(|l| l == "set -u").unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let last_option = lines
            .iter()
            .rposition(|l| l.starts_with("#SBATCH"))
            .unwrap();
        assert!(last_option < first_command);
    }

    #[test]
    fn without_lifetime_the_script_says_so_and_passes_none() {
        let text = script(
            &args(&["--workers", "1", "--time", "30m"]),
            "tcp://h:8786",
            std::path::Path::new("/q"),
            false,
        )
        .unwrap();
        assert!(!text.contains("--lifetime "), "{text}");
        assert!(text.contains("have no --lifetime"), "{text}");
    }

    #[test]
    fn nonsense_is_refused() {
        let refused = |line: &[&str]| {
            script(&args(line), "tcp://h:1", std::path::Path::new("/q"), true).is_err()
        };
        assert!(refused(&["--workers", "1", "--time", "30s"]));
        assert!(refused(&["--workers", "0", "--time", "1h"]));
        assert!(refused(&[
            "--workers",
            "1",
            "--time",
            "1h",
            "--",
            "partition=x"
        ]));
    }
}
