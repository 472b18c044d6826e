//! `quarry scheduler`.

use crate::config;
use anyhow::{bail, Context, Result};
use quarry_net::CurveServerKeys;
use quarry_proto::{DEFAULT_DASHBOARD_PORT, DEFAULT_SCHEDULER_PORT};
use quarry_scheduler::SchedulerConfig;
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
    let handle = match quarry_scheduler::start(config.clone()).await {
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
    }
    handle.shutdown().await;
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
    use super::is_loopback;

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
