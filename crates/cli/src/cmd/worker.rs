//! `quarry worker`, including the `--nprocs` supervisor.

use crate::config::{self, ByteSize, Settings, Span};
use crate::keys;
use anyhow::{Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use quarry_net::ConnectOptions;
use quarry_worker::{machine_host_name, run_worker, Registry, WorkerOptions, DEFAULT_DRAIN_GRACE};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};
use tracing::{info, warn};

/// Options of `quarry worker`. Each is also the environment variable
/// `QUARRY_<NAME>` and the key `<name>` of the config file
/// (configs/worker.toml); flags win over the environment, which wins over
/// the file.
#[derive(clap::Args, Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// The scheduler, such as tcp://10.0.0.5:8786.
    pub scheduler: Option<String>,
    /// Task slots per worker process [default: CPUs / nprocs].
    #[arg(long)]
    pub nthreads: Option<u32>,
    /// Worker processes to run and supervise (a crashed one is restarted)
    /// [default: 1].
    #[arg(long)]
    pub nprocs: Option<u32>,
    /// Worker name; keep it stable across restarts so shards keep going to
    /// the same worker. With --nprocs, the processes are NAME-0, NAME-1, …
    /// [default: HOSTNAME-N, with the lowest N no other worker of this user
    /// on this host holds].
    #[arg(long)]
    pub name: Option<String>,
    /// This machine's host name as HDFS names its DataNodes; tasks whose
    /// blocks have a replica here are placed here first [default: the
    /// kernel's host name].
    #[arg(long)]
    pub host: Option<String>,
    /// Shard cache directory. With --nprocs, each process caches in a
    /// directory of its own below it, named after the process
    /// [default: ~/.cache/quarry/workers/NAME].
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Shard cache capacity, such as 50GiB [default: 10GiB].
    #[arg(long)]
    pub cache_size: Option<ByteSize>,
    /// Objects larger than this are downloaded as parallel ranged GETs
    /// (8 MiB each), smaller ones with one GET [default: 16MiB].
    #[arg(long)]
    pub parallel_get_threshold: Option<ByteSize>,
    /// The shard cache's block: the unit it fetches, keeps and evicts.
    /// Tasks that read chunks smaller than a block on different workers
    /// each fetch the whole block, so keep it at or below the jobs'
    /// chunk_size [default: 8MiB].
    #[arg(long)]
    pub cache_block_size: Option<ByteSize>,
    /// Hash every cached block each time a task uses it, not only when its
    /// file's size or modification time changed or the worker restarted;
    /// a damaged block is fetched again [default: false].
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub verify_cache_checksums: Option<bool>,
    /// Drain after this long, such as 1h (like dask-worker's --lifetime):
    /// finish the running tasks, give back the queued ones, exit 0.
    #[arg(long)]
    pub lifetime: Option<Span>,
    /// A random extra of up to this much on --lifetime, so that workers
    /// started together leave at different times [default: 0s].
    #[arg(long)]
    pub lifetime_stagger: Option<Span>,
    /// How long a draining worker (SIGTERM, `quarry drain`, --lifetime)
    /// waits for its running tasks before giving them back unfinished
    /// [default: 30s].
    #[arg(long)]
    pub drain_grace: Option<Span>,
    /// Serve Prometheus /metrics (cache, downloads, slots) on this
    /// address, such as 0.0.0.0:8790. With --nprocs, process N listens on
    /// the port plus N [default: no metrics].
    #[arg(long)]
    pub metrics_addr: Option<String>,
    /// The Python interpreter each slot keeps warm for Python tasks
    /// (`quarry.python`, from the Python client); it needs cloudpickle
    /// [default: python3 on PATH].
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// The scheduler's public key (Z85 text or path to scheduler.pub).
    #[arg(long)]
    pub server_key: Option<String>,
    /// This worker's key pair file (worker.key from `quarry keygen`).
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// TOML config file (see configs/worker.toml)
    /// [default: ~/.config/quarry/worker.toml, if it exists].
    #[arg(long, env = "QUARRY_WORKER_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
}

impl Settings for Args {
    const KIND: &'static str = "worker";

    fn config_file(&self) -> Option<&Path> {
        self.config.as_deref()
    }
}

/// How much cache a worker keeps unless told otherwise.
const DEFAULT_CACHE_SIZE: u64 = 10 << 30;

fn hostname() -> String {
    machine_host_name().unwrap_or_else(|| "worker".to_string())
}

/// Where workers cache by default, one directory per worker name; the
/// name claims live here too.
fn default_cache_root() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("quarry")
        .join("workers")
}

pub async fn run(flags: Args) -> Result<ExitCode> {
    let settings = config::resolve(&flags)?;
    let scheduler = settings.scheduler.clone().context(
        "which scheduler? give its address, such as `quarry worker tcp://HOST:8786` \
         (or set QUARRY_SCHEDULER, or `scheduler` in the config file)",
    )?;
    let nprocs = settings.nprocs.unwrap_or(1).max(1);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let nthreads = settings.nthreads.unwrap_or((cpus / nprocs).max(1));
    if nprocs > 1 {
        return supervise(settings, nprocs, nthreads).await;
    }
    // A name given is used as it is (a supervised child is given its
    // exact name); a default one is claimed for as long as this process
    // lives, so that a second worker on this host picks another.
    let (name, _claim) = match settings.name.clone() {
        Some(name) => (name, None),
        None => {
            let mut claims = claim_default_names(1);
            let claim = claims.remove(0);
            (claim.name.clone(), Some(claim))
        }
    };
    let cache_dir = settings
        .cache_dir
        .clone()
        .unwrap_or_else(|| default_cache_root().join(&name));
    let mut options = WorkerOptions::new(scheduler.clone(), name.clone());
    options.connect = ConnectOptions {
        curve: keys::client_keys(settings.server_key.as_deref(), settings.key_file.as_deref())?,
        ..ConnectOptions::insecure(scheduler)
    };
    options.nthreads = nthreads;
    if let Some(host) = settings.host.clone() {
        options.host = host;
    }
    options.scratch_dir = cache_dir.join("scratch");
    options.cache_dir = cache_dir.join("shards");
    options.cache_size = settings.cache_size.map_or(DEFAULT_CACHE_SIZE, |s| s.0);
    if let Some(threshold) = settings.parallel_get_threshold {
        options.parallel_get_threshold = threshold.0;
    }
    if let Some(block) = settings.cache_block_size {
        options.cache_block_size = block.0.max(1);
    }
    options.verify_cache_checksums = settings.verify_cache_checksums.unwrap_or(false);
    if let Some(python) = settings.python.clone() {
        options.python = python;
    }
    options.lifetime = settings.lifetime.map(|span| span.0);
    if let Some(Span(stagger)) = settings.lifetime_stagger {
        options.lifetime_stagger = stagger;
    }
    if let Some(Span(grace)) = settings.drain_grace {
        options.drain_grace = grace;
    }
    options.metrics_addr = settings
        .metrics_addr
        .as_deref()
        .map(parse_metrics_addr)
        .transpose()?;
    info!(name = %name, nthreads, cache = %options.cache_dir.display(), "starting worker");
    run_worker(
        options,
        Registry::new().with_builtins(),
        super::scheduler::handle_signals(),
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

fn parse_metrics_addr(text: &str) -> Result<SocketAddr> {
    text.parse()
        .with_context(|| format!("invalid metrics address `{text}` (give IP:PORT)"))
}

/// The metrics address of supervised process `index`: the port plus the
/// index, so that the processes do not compete for one port (port 0 stays
/// 0: each gets a free one).
fn child_metrics_addr(text: &str, index: usize) -> Result<String> {
    let mut addr = parse_metrics_addr(text)?;
    if addr.port() != 0 {
        let port = u16::try_from(usize::from(addr.port()) + index)
            .ok()
            .with_context(|| format!("metrics port {} + {index} is past 65535", addr.port()))?;
        addr.set_port(port);
    }
    Ok(addr.to_string())
}

/// A default worker name, `HOST-N`, held by this process: no other
/// process of this user on this host takes the same one while it lives.
/// The hold is a lock on `~/.cache/quarry/workers/HOST-N.lock`, which the
/// system lets go when the process ends, however it ends.
#[derive(Debug)]
struct NameClaim {
    name: String,
    /// Held for its lock; `None` for a fallback name that needs none.
    _lock: Option<File>,
}

/// The `count` lowest free default names. Where names cannot be claimed
/// (no writable cache directory), names made unique by the process id.
fn claim_default_names(count: usize) -> Vec<NameClaim> {
    let host = hostname();
    match claim_names(&default_cache_root(), &host, count) {
        Ok(claims) => claims,
        Err(e) => {
            let pid = std::process::id();
            warn!(
                "cannot claim a worker name under {} ({e}); naming workers {host}-{pid}-N",
                default_cache_root().display()
            );
            (0..count)
                .map(|index| NameClaim {
                    name: format!("{host}-{pid}-{index}"),
                    _lock: None,
                })
                .collect()
        }
    }
}

/// Claims the `count` lowest names `HOST-N` whose lock under `root` no
/// other process holds.
fn claim_names(root: &Path, host: &str, count: usize) -> io::Result<Vec<NameClaim>> {
    std::fs::create_dir_all(root)?;
    let mut claims = Vec::with_capacity(count);
    let mut index = 0u64;
    while claims.len() < count {
        let name = format!("{host}-{index}");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(root.join(format!("{name}.lock")))?;
        match lock.try_lock() {
            Ok(()) => claims.push(NameClaim {
                name,
                _lock: Some(lock),
            }),
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        index += 1;
    }
    Ok(claims)
}

/// One supervised worker process: its exact settings and, while it runs,
/// the process.
struct Supervised {
    settings: Args,
    child: Child,
    started: Instant,
    /// It drained and exited 0 (`quarry drain`, --lifetime): not restarted.
    done: bool,
}

/// Runs `nprocs` worker processes and restarts any that dies (a process
/// that drained and exited 0 is not restarted; once all have, this
/// returns), until asked
/// to stop. Each is given its whole settings on its command line, with a
/// name and a cache directory of its own, whatever source set them here.
async fn supervise(settings: Args, nprocs: u32, nthreads: u32) -> Result<ExitCode> {
    let exe = std::env::current_exe().context("cannot find the quarry executable")?;
    let (names, _claims): (Vec<String>, Vec<NameClaim>) = match &settings.name {
        Some(base) => (
            (0..nprocs).map(|i| format!("{base}-{i}")).collect(),
            Vec::new(),
        ),
        None => {
            let claims = claim_default_names(nprocs as usize);
            (claims.iter().map(|c| c.name.clone()).collect(), claims)
        }
    };
    let cache_root = settings
        .cache_dir
        .clone()
        .unwrap_or_else(default_cache_root);
    let mut workers = Vec::with_capacity(names.len());
    for (index, name) in names.into_iter().enumerate() {
        let child_settings = Args {
            nprocs: Some(1),
            nthreads: Some(nthreads),
            cache_dir: Some(cache_root.join(&name)),
            name: Some(name),
            metrics_addr: settings
                .metrics_addr
                .as_deref()
                .map(|addr| child_metrics_addr(addr, index))
                .transpose()?,
            config: None,
            ..settings.clone()
        };
        let child = spawn_worker(&exe, &child_settings)
            .with_context(|| format!("cannot start worker process {index}"))?;
        workers.push(Supervised {
            settings: child_settings,
            child,
            started: Instant::now(),
            done: false,
        });
    }
    info!(nprocs, "supervising worker processes");
    let stop = super::scheduler::handle_signals();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        for (index, worker) in workers.iter_mut().enumerate() {
            if worker.done {
                continue;
            }
            if let Ok(Some(status)) = worker.child.try_wait() {
                if status.success() {
                    info!(index, "worker process drained and left");
                    worker.done = true;
                    continue;
                }
                warn!(index, %status, "worker process exited; restarting it");
                // A process that keeps dying at once should not spin.
                if worker.started.elapsed() < Duration::from_secs(2) {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                worker.child = spawn_worker(&exe, &worker.settings)
                    .with_context(|| format!("cannot restart worker process {index}"))?;
                worker.started = Instant::now();
            }
        }
        if workers.iter().all(|w| w.done) {
            info!("every worker process drained; leaving");
            return Ok(ExitCode::SUCCESS);
        }
    }
    info!("stopping worker processes");
    for worker in &workers {
        if let Some(pid) = worker.child.id() {
            // SIGTERM lets the worker leave cleanly.
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
    }
    // Each drains first: give it its grace, and a little more to leave.
    let grace = settings
        .drain_grace
        .map_or(DEFAULT_DRAIN_GRACE, |span| span.0)
        + Duration::from_secs(5);
    for worker in &mut workers {
        if tokio::time::timeout(grace, worker.child.wait())
            .await
            .is_err()
        {
            let _ = worker.child.kill().await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Starts `quarry worker` with exactly `settings`, as a process that the
/// kernel kills (SIGKILL) if this supervisor dies, so that no worker
/// outlives it. The supervisor's own thread starts every child, and it
/// lives as long as the supervisor.
fn spawn_worker(exe: &Path, settings: &Args) -> Result<Child> {
    let mut command = Command::new(exe);
    command
        .arg("worker")
        .args(config::to_args(settings)?)
        // The child's settings are all on its command line.
        .env_remove("QUARRY_WORKER_CONFIG")
        .kill_on_drop(true);
    let supervisor = std::process::id();
    // SAFETY: the closure runs between fork and exec, where only
    // async-signal-safe calls are allowed: prctl and getppid are plain
    // system calls, and the error is built from a raw code without
    // allocating.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            // The supervisor may have died between the fork and the prctl.
            if nix::unistd::getppid().as_raw() as u32 != supervisor {
                return Err(io::Error::from_raw_os_error(
                    nix::errno::Errno::ESRCH as i32,
                ));
            }
            Ok(())
        });
    }
    Ok(command.spawn()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::example_with_every_setting_on;
    use std::ffi::OsString;

    #[test]
    fn the_example_config_parses_with_every_setting_on() {
        let settings: Args = example_with_every_setting_on(
            include_str!("../../../../configs/worker.toml"),
            |flags: &mut Args, file| flags.config = Some(file),
        );
        assert_eq!(settings.parallel_get_threshold, Some(ByteSize(16 << 20)));
        assert_eq!(settings.cache_size, Some(ByteSize(10 << 30)));
        assert_eq!(
            settings.key_file,
            Some(PathBuf::from("/etc/quarry/keys/worker.key"))
        );
        assert_eq!(settings.python, Some(PathBuf::from("/opt/venv/bin/python")));
    }

    #[test]
    fn supervised_processes_get_metrics_ports_of_their_own() {
        assert_eq!(
            child_metrics_addr("0.0.0.0:8790", 0).unwrap(),
            "0.0.0.0:8790"
        );
        assert_eq!(
            child_metrics_addr("0.0.0.0:8790", 3).unwrap(),
            "0.0.0.0:8793"
        );
        assert_eq!(child_metrics_addr("127.0.0.1:0", 2).unwrap(), "127.0.0.1:0");
        assert!(child_metrics_addr("0.0.0.0:65535", 1).is_err());
        assert!(parse_metrics_addr("localhost").is_err());
    }

    #[test]
    fn default_names_go_to_the_lowest_free_index() {
        let root = tempfile::tempdir().unwrap();
        let first = claim_names(root.path(), "host", 2).unwrap();
        let names: Vec<&str> = first.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["host-0", "host-1"]);
        let second = claim_names(root.path(), "host", 1).unwrap();
        assert_eq!(second[0].name, "host-2", "held names are skipped");
        drop(first);
        let third = claim_names(root.path(), "host", 2).unwrap();
        let names: Vec<&str> = third.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["host-0", "host-1"], "released names are reused");
    }

    #[test]
    fn a_supervised_worker_is_given_every_setting_on_its_command_line() {
        let settings = Args {
            scheduler: Some("tcp://10.0.0.5:8786".into()),
            nthreads: Some(2),
            nprocs: Some(1),
            name: Some("host-3".into()),
            host: Some("dn3.example.com".into()),
            cache_dir: Some("/data/quarry/host-3".into()),
            cache_size: Some(ByteSize(50 << 30)),
            parallel_get_threshold: None,
            cache_block_size: None,
            verify_cache_checksums: Some(true),
            lifetime: Some(Span(Duration::from_secs(3600))),
            lifetime_stagger: None,
            drain_grace: Some(Span(Duration::from_secs(90))),
            metrics_addr: Some("0.0.0.0:8790".into()),
            python: Some("/venv/bin/python".into()),
            server_key: Some("/keys/scheduler.pub".into()),
            key_file: Some("/keys/worker.key".into()),
            config: None,
        };
        let args = config::to_args(&settings).unwrap();
        let expected: Vec<OsString> = [
            "tcp://10.0.0.5:8786",
            "--nthreads=2",
            "--nprocs=1",
            "--name=host-3",
            "--host=dn3.example.com",
            "--cache-dir=/data/quarry/host-3",
            "--cache-size=53687091200",
            "--verify-cache-checksums=true",
            "--lifetime=1h",
            "--drain-grace=1m 30s",
            "--metrics-addr=0.0.0.0:8790",
            "--python=/venv/bin/python",
            "--server-key=/keys/scheduler.pub",
            "--key-file=/keys/worker.key",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        assert_eq!(args, expected);
    }
}
