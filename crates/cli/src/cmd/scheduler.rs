//! `quarry scheduler`.

use crate::config;
use anyhow::{bail, Context, Result};
use quarry_core::Retention;
use quarry_net::CurveServerKeys;
use quarry_proto::{DEFAULT_DASHBOARD_PORT, DEFAULT_SCHEDULER_PORT};
use quarry_scheduler::{JournalConfig, SchedulerConfig};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tracing::{info, warn};

/// Options of `quarry scheduler`.
#[derive(clap::Args)]
pub struct Args {
    /// ZeroMQ endpoint to listen on [default: tcp://0.0.0.0:8786].
    #[arg(long, env = "QUARRY_LISTEN")]
    listen: Option<String>,
    /// Key directory from `quarry keygen`: enables CURVE authentication and
    /// encryption, admitting only the keys listed in its authorized-clients
    /// and authorized-workers files.
    #[arg(long, env = "QUARRY_KEYS")]
    keys: Option<PathBuf>,
    /// Allow listening on a non-loopback address without --keys. Anyone who
    /// can reach the port can then run commands on every worker.
    #[arg(long)]
    insecure: bool,
    /// HTTP dashboard address (`/`, `/api/jobs`, `/metrics`), or `none`
    /// [default: 127.0.0.1:8787].
    #[arg(long, env = "QUARRY_DASHBOARD")]
    dashboard: Option<String>,
    /// A worker (or client) silent this long is declared lost; its tasks are
    /// requeued [default: 15s].
    #[arg(long, value_parser = humantime::parse_duration)]
    heartbeat_timeout: Option<Duration>,
    /// Largest frame accepted, in bytes [default: 1MiB].
    #[arg(long, value_parser = config::parse_size)]
    max_frame_bytes: Option<u64>,
    /// Largest inline task argument, in bytes [default: 64KiB].
    #[arg(long, value_parser = config::parse_size)]
    max_inline_bytes: Option<u64>,
    /// Most tasks in one submission message [default: 10000].
    #[arg(long)]
    max_tasks_per_submit: Option<usize>,
    /// Journal file: every job, result and client session is recorded
    /// there, and a scheduler restarted with the same file gets them back
    /// (tasks that were running run again). Without it, a restart starts
    /// empty. See docs/operations.md.
    #[arg(long, env = "QUARRY_JOURNAL")]
    journal: Option<PathBuf>,
    /// Longest time between writing a journal record and syncing it to
    /// disk (submissions and seals are synced at once) [default: 1s].
    #[arg(long, value_parser = humantime::parse_duration)]
    journal_flush: Option<Duration>,
    /// How long, and how many, finished jobs are kept before they are
    /// dropped from memory, /metrics and the journal (their manifests stay
    /// in the store): a duration, a count, or both (`24h,100`); a limit not
    /// given is no limit [default: 24h,100].
    #[arg(long, value_parser = parse_retention)]
    job_retention: Option<Retention>,
    /// TOML config file (see configs/scheduler.toml); flags win over it.
    #[arg(long, env = "QUARRY_SCHEDULER_CONFIG")]
    config: Option<PathBuf>,
}

/// The scheduler's config file.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    keys: Option<PathBuf>,
    insecure: Option<bool>,
    dashboard: Option<String>,
    heartbeat_timeout: Option<String>,
    max_frame_bytes: Option<u64>,
    max_inline_bytes: Option<u64>,
    max_tasks_per_submit: Option<usize>,
    max_connections_per_peer: Option<usize>,
    journal: Option<PathBuf>,
    journal_flush: Option<String>,
    job_retention: Option<String>,
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

pub async fn run(args: Args) -> Result<ExitCode> {
    let file: FileConfig = config::read(args.config.as_deref())?;
    let listen = args
        .listen
        .or(file.listen)
        .unwrap_or_else(|| format!("tcp://0.0.0.0:{DEFAULT_SCHEDULER_PORT}"));
    let keys_dir = args.keys.or(file.keys);
    let insecure = args.insecure || file.insecure.unwrap_or(false);
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
    if let Some(n) = args.max_frame_bytes.or(file.max_frame_bytes) {
        config.limits.max_frame_bytes = n as usize;
    }
    if let Some(n) = args.max_inline_bytes.or(file.max_inline_bytes) {
        config.limits.max_inline_bytes = n as usize;
    }
    if let Some(n) = args.max_tasks_per_submit.or(file.max_tasks_per_submit) {
        config.limits.max_tasks_per_submit = n;
    }
    if let Some(n) = file.max_connections_per_peer {
        config.limits.max_connections_per_peer = n;
    }
    let heartbeat_timeout = match (args.heartbeat_timeout, file.heartbeat_timeout) {
        (Some(d), _) => Some(d),
        (None, Some(text)) => Some(
            humantime::parse_duration(&text)
                .with_context(|| format!("invalid heartbeat_timeout `{text}`"))?,
        ),
        (None, None) => None,
    };
    if let Some(timeout) = heartbeat_timeout {
        config.core.heartbeat_timeout_ms = timeout.as_millis() as u64;
        config.heartbeat_interval = (timeout / 5).max(Duration::from_millis(50));
    }
    if let Some(path) = args.journal.or(file.journal) {
        let mut journal = JournalConfig::new(path);
        let flush = match (args.journal_flush, file.journal_flush) {
            (Some(d), _) => Some(d),
            (None, Some(text)) => Some(
                humantime::parse_duration(&text)
                    .with_context(|| format!("invalid journal_flush `{text}`"))?,
            ),
            (None, None) => None,
        };
        if let Some(flush) = flush {
            journal.flush_interval = flush;
        }
        config.journal = Some(journal);
    }
    let retention = match (args.job_retention, file.job_retention) {
        (Some(r), _) => Some(r),
        (None, Some(text)) => Some(
            parse_retention(&text).map_err(|e| anyhow::anyhow!("invalid job_retention: {e}"))?,
        ),
        (None, None) => None,
    };
    if let Some(retention) = retention {
        config.core.retention = retention;
    }
    let dashboard_setting = args.dashboard.or(file.dashboard);
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
    use super::{is_loopback, parse_retention};
    use quarry_core::Retention;

    /// The shipped example, with its commented-out settings switched on:
    /// every key it shows must be one the scheduler reads.
    #[test]
    fn the_example_config_parses_with_every_setting_on() {
        let example = include_str!("../../../../configs/scheduler.toml");
        let all_on: String = example
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(setting) if setting.contains(" = ") => setting,
                _ => line,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let file: super::FileConfig = toml::from_str(&all_on).unwrap();
        assert_eq!(
            file.journal.as_deref(),
            Some(std::path::Path::new("/var/lib/quarry/journal"))
        );
        assert!(parse_retention(file.job_retention.as_deref().unwrap()).is_ok());
        assert!(humantime::parse_duration(file.journal_flush.as_deref().unwrap()).is_ok());
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
