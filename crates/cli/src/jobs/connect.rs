//! Reaching a running scheduler, and naming its jobs.

use crate::keys;
use anyhow::{bail, Context, Result};
use quarry_client::{Client, ClientOptions, JobList};
use quarry_proto::{JobId, JobInfo, TaskId, DEFAULT_SCHEDULER_PORT};
use std::path::PathBuf;
use std::time::Duration;

/// Where the scheduler is and how to authenticate to it.
#[derive(clap::Args, Clone, Debug)]
pub struct SchedulerArgs {
    /// The scheduler's address.
    #[arg(long, env = "QUARRY_SCHEDULER", default_value_t = default_scheduler())]
    pub scheduler: String,
    /// The scheduler's public key (Z85 text or path to scheduler.pub), for
    /// CURVE.
    #[arg(long, env = "QUARRY_SERVER_KEY")]
    pub server_key: Option<String>,
    /// This client's key pair file (client.key from `quarry keygen`).
    #[arg(long, env = "QUARRY_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// How long to wait for the scheduler to answer.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,
    /// How long a lost scheduler is waited for (it may be restarting)
    /// before everything waiting for it fails.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub reconnect_timeout: Duration,
}

fn default_scheduler() -> String {
    format!("tcp://127.0.0.1:{DEFAULT_SCHEDULER_PORT}")
}

impl SchedulerArgs {
    /// Connects a client (with CURVE when keys are given).
    pub async fn connect(&self) -> Result<Client> {
        let mut options = ClientOptions::new(self.scheduler.clone());
        options.handshake_timeout = self.connect_timeout;
        options.reconnect_timeout = self.reconnect_timeout;
        if let Some(curve) =
            keys::client_keys(self.server_key.as_deref(), self.key_file.as_deref())?
        {
            options = options.with_curve(curve);
        }
        Client::connect_with(options)
            .await
            .with_context(|| format!("cannot connect to the scheduler at {}", self.scheduler))
    }
}

/// Whether a job is a library client's default job (the one `Client::map`
/// and `submit` use), whose id is the first of its client's range. Those
/// are listed only when they hold tasks.
pub fn is_default_job(id: JobId) -> bool {
    id.0 & ((1u64 << TaskId::CLIENT_SEQUENCE_BITS) - 1) == 0
}

/// The job a user names: its id (`j1099511627777` or the bare number) or
/// its name (the most recent job of that name).
pub async fn find_job(client: &Client, name_or_id: &str) -> Result<JobInfo> {
    let JobList { jobs, dropped } = client.list_jobs().await?;
    let as_id = name_or_id
        .strip_prefix('j')
        .unwrap_or(name_or_id)
        .parse::<u64>()
        .ok();
    if let Some(id) = as_id {
        if let Some(job) = jobs.iter().find(|j| j.id.0 == id) {
            return Ok(job.clone());
        }
    }
    if let Some(job) = jobs
        .iter()
        .filter(|j| j.name == name_or_id)
        .max_by_key(|j| j.id)
    {
        return Ok(job.clone());
    }
    let known: Vec<String> = jobs
        .iter()
        .filter(|j| !is_default_job(j.id) || j.counts.total > 0)
        .map(|j| format!("{} ({})", j.id, j.name))
        .collect();
    let dropped = if dropped > 0 {
        format!(
            " ({dropped} finished jobs were dropped after their retention; a dropped job's \
             manifest stays under its output prefix)"
        )
    } else {
        String::new()
    };
    if known.is_empty() {
        bail!("no job `{name_or_id}`: the scheduler has no jobs{dropped}");
    }
    bail!(
        "no job `{name_or_id}` on this scheduler{dropped}; it has: {}",
        known.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use quarry_proto::ClientId;

    #[test]
    fn default_jobs_are_the_first_of_their_client_range() {
        assert!(is_default_job(JobId::first_for(ClientId(3))));
        assert!(!is_default_job(JobId(JobId::first_for(ClientId(3)).0 + 1)));
    }
}
