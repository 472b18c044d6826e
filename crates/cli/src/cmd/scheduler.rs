//! `quarry scheduler`.

use crate::config::{self, ByteSize, Settings, Span};
use anyhow::{bail, Context, Result};
use quarry_core::Retention;
use quarry_net::CurveServerKeys;
use quarry_proto::{DEFAULT_DASHBOARD_PORT, DEFAULT_SCHEDULER_PORT};
use quarry_scheduler::{JournalConfig, SchedulerConfig};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;
use tracing::{info, warn};

/// Options of `quarry scheduler`. Each is also the environment variable
/// `QUARRY_<NAME>` and the key `<name>` of the config file
/// (configs/scheduler.toml); flags win over the environment, which wins over
/// the file.
#[derive(clap::Args, Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// ZeroMQ endpoint to listen on [default: tcp://0.0.0.0:8786].
    #[arg(long)]
    listen: Option<String>,
    /// Key directory from `quarry keygen`: enables CURVE authentication and
    /// encryption, admitting only the keys listed in its authorized-clients
    /// and authorized-workers files.
    #[arg(long)]
    keys: Option<PathBuf>,
    /// Allow listening on a non-loopback address without --keys. Anyone who
    /// can reach the port can then run commands on every worker.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    insecure: Option<bool>,
    /// HTTP dashboard address (pages, `/api/`, `/metrics`), or `none`
    /// [default: 127.0.0.1:8787].
    #[arg(long)]
    dashboard: Option<String>,
    /// A worker (or client) silent this long is declared lost; its tasks are
    /// requeued [default: 15s].
    #[arg(long)]
    heartbeat_timeout: Option<Span>,
    /// A worker that holds tasks it was sent but has started none of them,
    /// and finished none, for this long loses them to the queue and gets no
    /// work until it makes progress; `0s` turns this off [default: 2m].
    #[arg(long)]
    start_deadline: Option<Span>,
    /// How long a failed task waits before its first retry; each further
    /// retry waits twice as long, jittered by ±50% [default: 1s].
    #[arg(long)]
    retry_backoff: Option<Span>,
    /// The longest wait before a retry (before jitter) [default: 1m].
    #[arg(long)]
    retry_backoff_max: Option<Span>,
    /// Largest frame accepted, in bytes [default: 1MiB].
    #[arg(long)]
    max_frame_bytes: Option<ByteSize>,
    /// Largest inline task argument, in bytes [default: 64KiB].
    #[arg(long)]
    max_inline_bytes: Option<ByteSize>,
    /// Most tasks in one submission message [default: 10000].
    #[arg(long)]
    max_tasks_per_submit: Option<usize>,
    /// Most client connections from one peer address (or CURVE key);
    /// workers do not count [default: 1024].
    #[arg(long)]
    max_connections_per_peer: Option<usize>,
    /// Most function names one worker may register; a worker listing more
    /// is refused [default: 1024].
    #[arg(long)]
    max_worker_functions: Option<usize>,
    /// Longest function, worker or host name a peer may register, in bytes
    /// [default: 256].
    #[arg(long)]
    max_name_bytes: Option<usize>,
    /// New sessions one peer address (or CURVE key) may open per second,
    /// and at once; more are refused until the rate allows them, so a
    /// flood cannot fill the scheduler. 0 is no limit [default: 200].
    #[arg(long)]
    new_sessions_per_second: Option<u32>,
    /// Journal file: every job, result and client session is recorded
    /// there, and a scheduler restarted with the same file gets them back
    /// (tasks that were running run again). Without it, a restart starts
    /// empty. See docs/operations.md.
    #[arg(long)]
    journal: Option<PathBuf>,
    /// Longest time between writing a journal record and syncing it to
    /// disk (submissions and seals are synced at once) [default: 1s].
    #[arg(long)]
    journal_flush: Option<Span>,
    /// How long, and how many, finished jobs are kept before they are
    /// dropped from memory, /metrics and the journal (their manifests stay
    /// in the store): a duration, a count, or both (`24h,100`); a limit not
    /// given is no limit [default: 24h,100].
    #[arg(long)]
    job_retention: Option<JobRetention>,
    /// TOML config file (see configs/scheduler.toml)
    /// [default: ~/.config/quarry/scheduler.toml, if it exists].
    #[arg(long, env = "QUARRY_SCHEDULER_CONFIG")]
    #[serde(skip)]
    config: Option<PathBuf>,
}

impl Settings for Args {
    const KIND: &'static str = "scheduler";

    fn config_file(&self) -> Option<&Path> {
        self.config.as_deref()
    }
}

/// Parses a retention: a duration (`24h`), a count of finished jobs
/// (`100`), or both separated by a comma; what is not given is unlimited.
pub fn parse_retention(text: &str) -> Result<Retention, String> {
    let mut retention = Retention {
        max_age_ms: None,
        max_jobs: None,
    };
    for part in text.split(',').map(str::trim) {
        if part.is_empty() {
            continue;
        }
        if part.bytes().all(|b| b.is_ascii_digit()) {
            if retention.max_jobs.is_some() {
                return Err(format!("`{text}` gives two counts"));
            }
            retention.max_jobs = Some(part.parse().map_err(|e| format!("`{part}`: {e}"))?);
        } else {
            if retention.max_age_ms.is_some() {
                return Err(format!("`{text}` gives two durations"));
            }
            let age = humantime::parse_duration(part).map_err(|e| {
                format!("`{part}` is neither a count of jobs nor a duration (such as 24h): {e}")
            })?;
            retention.max_age_ms = Some(age.as_millis() as u64);
        }
    }
    if retention.max_age_ms.is_none() && retention.max_jobs.is_none() {
        return Err(format!(
            "`{text}` gives neither a duration nor a count (such as `24h,100`)"
        ));
    }
    Ok(retention)
}

/// How long and how many finished jobs are kept, as a setting: written
/// like `24h,100` on the command line, in `QUARRY_JOB_RETENTION` and in the
/// config file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobRetention(pub Retention);

impl FromStr for JobRetention {
    type Err = String;

    fn from_str(text: &str) -> Result<JobRetention, String> {
        parse_retention(text).map(JobRetention)
    }
}

impl fmt::Display for JobRetention {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let age = self
            .0
            .max_age_ms
            .map(|ms| humantime::format_duration(Duration::from_millis(ms)).to_string());
        let count = self.0.max_jobs.map(|n| n.to_string());
        let parts: Vec<String> = age.into_iter().chain(count).collect();
        f.write_str(&parts.join(","))
    }
}

impl Serialize for JobRetention {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for JobRetention {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<JobRetention, D::Error> {
        struct RetentionVisitor;
        impl Visitor<'_> for RetentionVisitor {
            type Value = JobRetention;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration, a count of jobs, or both, such as `24h,100`")
            }
            fn visit_u64<E: de::Error>(self, jobs: u64) -> Result<JobRetention, E> {
                self.visit_str(&jobs.to_string())
            }
            fn visit_i64<E: de::Error>(self, jobs: i64) -> Result<JobRetention, E> {
                self.visit_str(&jobs.to_string())
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<JobRetention, E> {
                text.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(RetentionVisitor)
    }
}

/// Whether an endpoint is reachable only from this machine.
pub fn is_loopback(endpoint: &str) -> bool {
    if endpoint.starts_with("inproc://") || endpoint.starts_with("ipc://") {
        return true;
    }
    let host = endpoint
        .strip_prefix("tcp://")
        .unwrap_or(endpoint)
        .rsplit_once(':')
        .map_or(endpoint, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.starts_with("127.") || host == "::1"
}

pub async fn run(flags: Args) -> Result<ExitCode> {
    let settings = config::resolve(&flags)?;
    let listen = settings
        .listen
        .unwrap_or_else(|| format!("tcp://0.0.0.0:{DEFAULT_SCHEDULER_PORT}"));
    let keys_dir = settings.keys;
    let insecure = settings.insecure.unwrap_or(false);
    if keys_dir.is_none() && !insecure && !is_loopback(&listen) {
        bail!(
            "refusing to listen on {listen} without CURVE keys: anyone who can reach that port \
             could run commands on every worker.\n\
             Create keys with `quarry keygen --out keys/`, then start the scheduler with \
             `--keys keys/` and give clients and workers `QUARRY_SERVER_KEY=keys/scheduler.pub` \
             plus `QUARRY_KEY_FILE=keys/client.key` (or worker.key).\n\
             To run unauthenticated on a trusted network anyway, pass --insecure."
        );
    }
    let mut config = SchedulerConfig::new(listen);
    if let Some(dir) = &keys_dir {
        config.curve = Some(
            CurveServerKeys::load_dir(dir)
                .with_context(|| format!("cannot load CURVE keys from {}", dir.display()))?,
        );
    }
    if let Some(n) = settings.max_frame_bytes {
        config.limits.max_frame_bytes = n.0 as usize;
    }
    if let Some(n) = settings.max_inline_bytes {
        config.limits.max_inline_bytes = n.0 as usize;
    }
    if let Some(n) = settings.max_tasks_per_submit {
        config.limits.max_tasks_per_submit = n;
    }
    if let Some(n) = settings.max_connections_per_peer {
        config.limits.max_connections_per_peer = n;
    }
    if let Some(n) = settings.max_worker_functions {
        config.hello_limits.max_worker_functions = n;
    }
    if let Some(n) = settings.max_name_bytes {
        config.hello_limits.max_name_bytes = n;
    }
    if let Some(n) = settings.new_sessions_per_second {
        config.hello_limits.new_sessions_per_second = n;
    }
    if let Some(Span(timeout)) = settings.heartbeat_timeout {
        config.core.heartbeat_timeout_ms = timeout.as_millis() as u64;
        config.heartbeat_interval = (timeout / 5).max(Duration::from_millis(50));
    }
    if let Some(Span(deadline)) = settings.start_deadline {
        config.core.start_deadline_ms = deadline.as_millis() as u64;
    }
    if let Some(Span(backoff)) = settings.retry_backoff {
        config.core.retry_backoff_ms = backoff.as_millis() as u64;
    }
    if let Some(Span(max)) = settings.retry_backoff_max {
        config.core.retry_backoff_max_ms = max.as_millis() as u64;
    }
    if let Some(path) = settings.journal {
        let mut journal = JournalConfig::new(path);
        if let Some(Span(flush)) = settings.journal_flush {
            journal.flush_interval = flush;
        }
        config.journal = Some(journal);
    }
    if let Some(JobRetention(retention)) = settings.job_retention {
        config.core.retention = retention;
    }
    let dashboard_setting = settings.dashboard;
    let explicit_dashboard = dashboard_setting.is_some();
    config.dashboard = match dashboard_setting.as_deref() {
        Some("none") | Some("off") => None,
        Some(text) => Some(
            text.parse::<SocketAddr>()
                .with_context(|| format!("invalid dashboard address `{text}`"))?,
        ),
        None => Some(SocketAddr::from(([127, 0, 0, 1], DEFAULT_DASHBOARD_PORT))),
    };
    let mut handle = match quarry_scheduler::start(config.clone()).await {
        Ok(handle) => handle,
        // The default dashboard port may be taken (another scheduler on this
        // host): the control plane matters more, so carry on without it.
        Err(quarry_scheduler::SchedulerError::Dashboard { addr, source })
            if !explicit_dashboard =>
        {
            warn!("dashboard not started on {addr}: {source}");
            config.dashboard = None;
            quarry_scheduler::start(config).await?
        }
        Err(e) => return Err(e.into()),
    };
    println!("scheduler at {}", handle.endpoint());
    if let Some(addr) = handle.dashboard() {
        println!("dashboard at http://{addr}/");
    }
    tokio::select! {
        _ = handle_signals() => info!("stopping the scheduler"),
        stopped = handle.stopped() => {
            // It stops by itself only when its journal fails.
            stopped?;
            return Ok(ExitCode::FAILURE);
        }
    }
    handle.shutdown().await?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn handle_signals() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::example_with_every_setting_on;

    #[test]
    fn the_example_config_parses_with_every_setting_on() {
        let settings: Args = example_with_every_setting_on(
            include_str!("../../../../configs/scheduler.toml"),
            |flags: &mut Args, file| flags.config = Some(file),
        );
        assert_eq!(settings.keys, Some(PathBuf::from("/etc/quarry/keys")));
        assert_eq!(settings.max_frame_bytes, Some(ByteSize(1 << 20)));
        assert_eq!(
            settings.heartbeat_timeout,
            Some(Span(Duration::from_secs(15)))
        );
        assert_eq!(settings.dashboard.as_deref(), Some("127.0.0.1:8787"));
        assert_eq!(
            settings.journal.as_deref(),
            Some(Path::new("/var/lib/quarry/journal"))
        );
        assert!(settings.job_retention.is_some());
        assert!(settings.journal_flush.is_some());
        assert_eq!(settings.max_worker_functions, Some(1024));
        assert_eq!(settings.max_name_bytes, Some(256));
        assert_eq!(settings.new_sessions_per_second, Some(200));
        assert_eq!(settings.retry_backoff, Some(Span(Duration::from_secs(1))));
        assert_eq!(
            settings.start_deadline,
            Some(Span(Duration::from_secs(120)))
        );
        assert_eq!(
            settings.retry_backoff_max,
            Some(Span(Duration::from_secs(60)))
        );
    }

    #[test]
    fn retentions_are_a_duration_a_count_or_both() {
        let day = Some(24 * 3600 * 1000);
        assert_eq!(
            parse_retention("24h,100"),
            Ok(Retention {
                max_age_ms: day,
                max_jobs: Some(100)
            })
        );
        assert_eq!(
            parse_retention("100"),
            Ok(Retention {
                max_age_ms: None,
                max_jobs: Some(100)
            })
        );
        assert_eq!(
            parse_retention("1day"),
            Ok(Retention {
                max_age_ms: day,
                max_jobs: None
            })
        );
        assert!(parse_retention("1h,2h")
            .unwrap_err()
            .contains("two durations"));
        assert!(parse_retention("soon")
            .unwrap_err()
            .contains("neither a count"));
        assert!(parse_retention("").is_err());
        let written = JobRetention(parse_retention("24h,100").unwrap()).to_string();
        assert_eq!(
            written.parse::<JobRetention>().unwrap().0,
            parse_retention("24h,100").unwrap()
        );
    }

    #[test]
    fn loopback_endpoints_are_recognised() {
        assert!(is_loopback("tcp://127.0.0.1:8786"));
        assert!(is_loopback("tcp://localhost:0"));
        assert!(is_loopback("tcp://[::1]:8786"));
        assert!(is_loopback("inproc://x"));
        assert!(!is_loopback("tcp://0.0.0.0:8786"));
        assert!(!is_loopback("tcp://*:8786"));
        assert!(!is_loopback("tcp://10.1.2.3:8786"));
    }
}
