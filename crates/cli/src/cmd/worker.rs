//! `quarry worker`, including the `--nprocs` supervisor.

use crate::{config, keys};
use anyhow::{Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use quarry_net::ConnectOptions;
use quarry_worker::{machine_host_name, run_worker, Registry, WorkerOptions};
use serde::Deserialize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};
use tracing::{info, warn};

/// Options of `quarry worker`.
#[derive(clap::Args, Clone)]
pub struct Args {
    /// The scheduler, such as tcp://10.0.0.5:8786.
    #[arg(env = "QUARRY_SCHEDULER")]
    scheduler: Option<String>,
    /// Task slots per worker process [default: CPUs / nprocs].
    #[arg(long)]
    nthreads: Option<u32>,
    /// Worker processes to run and supervise (a crashed one is restarted).
    #[arg(long)]
    nprocs: Option<u32>,
    /// Worker name; keep it stable across restarts so shards keep going to
    /// the same worker [default: HOSTNAME-INDEX].
    #[arg(long)]
    name: Option<String>,
    /// This machine's host name as HDFS names its DataNodes; tasks whose
    /// blocks have a replica here are placed here first [default: the
    /// kernel's host name].
    #[arg(long)]
    host: Option<String>,
    /// Shard cache directory [default: ~/.cache/quarry/workers/NAME].
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Shard cache capacity, such as 50GiB [default: 10GiB].
    #[arg(long, value_parser = config::parse_size)]
    cache_size: Option<u64>,
    /// Objects larger than this are downloaded as parallel ranged GETs
    /// (8 MiB each), smaller ones with one GET [default: 16MiB].
    #[arg(long, value_parser = config::parse_size)]
    parallel_get_threshold: Option<u64>,
    /// The scheduler's public key (Z85 text or path to scheduler.pub).
    #[arg(long, env = "QUARRY_SERVER_KEY")]
    server_key: Option<String>,
    /// This worker's key pair file (worker.key from `quarry keygen`).
    #[arg(long, env = "QUARRY_KEY_FILE")]
    key_file: Option<PathBuf>,
    /// TOML config file (see configs/worker.toml); flags win over it.
    #[arg(long, env = "QUARRY_WORKER_CONFIG")]
    config: Option<PathBuf>,
}

/// The worker's config file.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    scheduler: Option<String>,
    nthreads: Option<u32>,
    nprocs: Option<u32>,
    name: Option<String>,
    host: Option<String>,
    cache_dir: Option<PathBuf>,
    cache_size: Option<String>,
    parallel_get_threshold: Option<String>,
    server_key: Option<String>,
    key_file: Option<PathBuf>,
}

fn hostname() -> String {
    machine_host_name().unwrap_or_else(|| "worker".to_string())
}

fn default_cache_root() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("quarry")
        .join("workers")
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let file: FileConfig = config::read(args.config.as_deref())?;
    let scheduler =
        args.scheduler.clone().or(file.scheduler).context(
            "which scheduler? give its address, such as `quarry worker tcp://HOST:8786`",
        )?;
    let nprocs = args.nprocs.or(file.nprocs).unwrap_or(1).max(1);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let nthreads = args
        .nthreads
        .or(file.nthreads)
        .unwrap_or((cpus / nprocs).max(1));
    let base_name = args.name.clone().or(file.name).unwrap_or_else(hostname);
    if nprocs > 1 {
        return supervise(&args, &scheduler, nprocs, nthreads, &base_name).await;
    }
    // A supervised child is given its exact name; a lone worker gets the
    // same `-0` suffix so that its name does not change if --nprocs is added.
    let name = if args.name.is_some() {
        base_name
    } else {
        format!("{base_name}-0")
    };
    let cache_size = match (args.cache_size, file.cache_size) {
        (Some(n), _) => n,
        (None, Some(text)) => config::parse_size(&text).map_err(anyhow::Error::msg)?,
        (None, None) => 10 << 30,
    };
    let parallel_get_threshold = match (args.parallel_get_threshold, file.parallel_get_threshold) {
        (Some(n), _) => Some(n),
        (None, Some(text)) => Some(config::parse_size(&text).map_err(anyhow::Error::msg)?),
        (None, None) => None,
    };
    let cache_dir = args
        .cache_dir
        .or(file.cache_dir)
        .unwrap_or_else(|| default_cache_root().join(&name));
    let server_key = args.server_key.or(file.server_key);
    let key_file = args.key_file.or(file.key_file);
    let mut options = WorkerOptions::new(scheduler.clone(), name.clone());
    options.connect = ConnectOptions {
        curve: keys::client_keys(server_key.as_deref(), key_file.as_deref())?,
        ..ConnectOptions::insecure(scheduler)
    };
    options.nthreads = nthreads;
    if let Some(host) = args.host.clone().or(file.host) {
        options.host = host;
    }
    options.scratch_dir = cache_dir.join("scratch");
    options.cache_dir = cache_dir.join("shards");
    options.cache_size = cache_size;
    if let Some(threshold) = parallel_get_threshold {
        options.parallel_get_threshold = threshold;
    }
    info!(name = %name, nthreads, cache = %options.cache_dir.display(), "starting worker");
    run_worker(
        options,
        Registry::new().with_builtins(),
        super::scheduler::handle_signals(),
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// Runs `nprocs` worker processes and restarts any that dies, until asked
/// to stop.
async fn supervise(
    args: &Args,
    scheduler: &str,
    nprocs: u32,
    nthreads: u32,
    base_name: &str,
) -> Result<ExitCode> {
    let exe = std::env::current_exe().context("cannot find the quarry executable")?;
    let spawn = |index: u32| -> Result<Child> {
        let mut command = Command::new(&exe);
        command
            .arg("worker")
            .arg(scheduler)
            .arg("--nprocs=1")
            .arg(format!("--nthreads={nthreads}"))
            .arg(format!("--name={base_name}-{index}"));
        if let Some(dir) = &args.cache_dir {
            command
                .arg("--cache-dir")
                .arg(dir.join(format!("{base_name}-{index}")));
        }
        if let Some(host) = &args.host {
            command.arg(format!("--host={host}"));
        }
        if let Some(size) = args.cache_size {
            command.arg(format!("--cache-size={size}"));
        }
        if let Some(size) = args.parallel_get_threshold {
            command.arg(format!("--parallel-get-threshold={size}"));
        }
        if let Some(config) = &args.config {
            command.arg("--config").arg(config);
        }
        if let Some(key) = &args.server_key {
            command.arg("--server-key").arg(key);
        }
        if let Some(file) = &args.key_file {
            command.arg("--key-file").arg(file);
        }
        command.kill_on_drop(true);
        command
            .spawn()
            .with_context(|| format!("cannot start worker process {index}"))
    };
    let mut children: Vec<(Child, Instant)> = (0..nprocs)
        .map(|i| spawn(i).map(|c| (c, Instant::now())))
        .collect::<Result<_>>()?;
    info!(nprocs, "supervising worker processes");
    let stop = super::scheduler::handle_signals();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        for (index, (child, started)) in children.iter_mut().enumerate() {
            if let Ok(Some(status)) = child.try_wait() {
                warn!(index, %status, "worker process exited; restarting it");
                // A process that keeps dying at once should not spin.
                if started.elapsed() < Duration::from_secs(2) {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                *child = spawn(index as u32)?;
                *started = Instant::now();
            }
        }
    }
    info!("stopping worker processes");
    for (child, _) in &mut children {
        if let Some(pid) = child.id() {
            // SIGTERM lets the worker leave cleanly.
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
    }
    for (child, _) in &mut children {
        if tokio::time::timeout(Duration::from_secs(5), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped example, with its commented-out settings switched on:
    /// every key it shows must be one the worker reads.
    #[test]
    fn the_example_config_parses_with_every_setting_on() {
        let example = include_str!("../../../../configs/worker.toml");
        let all_on: String = example
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(setting) if setting.contains(" = ") => setting,
                _ => line,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let file: FileConfig = toml::from_str(&all_on).unwrap();
        assert_eq!(file.parallel_get_threshold.as_deref(), Some("16MiB"));
        assert_eq!(
            file.key_file,
            Some(PathBuf::from("/etc/quarry/keys/worker.key"))
        );
        let threshold = config::parse_size(file.parallel_get_threshold.as_deref().unwrap());
        assert_eq!(threshold, Ok(16 << 20));
    }
}
