//! Reaching a running scheduler, and naming its jobs.

use crate::config::{self, Settings, Span};
use crate::keys;
use anyhow::{bail, Context, Result};
use quarry_client::{Client, ClientOptions, JobList};
use quarry_proto::{JobId, JobInfo, TaskId, DEFAULT_SCHEDULER_PORT};
use quarry_store::{StoreConfig, StoreResolver};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the scheduler is and how to authenticate to it: the settings of
/// every client command. Each is also the environment variable
/// `QUARRY_<NAME>` and the key `<name>` of the client config file
/// (configs/client.toml); flags win over the environment, which wins over
/// the file.
#[derive(clap::Args, Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerArgs {
    /// The scheduler's address [default: tcp://127.0.0.1:8786].
    #[arg(long)]
    pub scheduler: Option<String>,
    /// The scheduler's public key (Z85 text or path to scheduler.pub), for
    /// CURVE.
    #[arg(long)]
    pub server_key: Option<String>,
    /// This client's key pair file (client.key from `quarry keygen`).
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// How long to wait for the scheduler to answer [default: 10s].
    #[arg(long)]
    pub connect_timeout: Option<Span>,
    /// How long a lost scheduler is waited for (it may be restarting)
    /// before everything waiting for it fails [default: 60s].
    #[arg(long)]
    pub reconnect_timeout: Option<Span>,
    /// Object store access for listing inputs at submit time: the `[store]`
    /// table of the config file only; the `AWS_*` variables win over it.
    #[arg(skip)]
    #[serde(default, skip_serializing)]
    pub store: StoreConfig,
    /// TOML config file (see configs/client.toml)
    /// [default: ~/.config/quarry/client.toml, if it exists].
    #[arg(long, env = "QUARRY_CLIENT_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
}

impl Settings for SchedulerArgs {
    const KIND: &'static str = "client";

    fn config_file(&self) -> Option<&Path> {
        self.config.as_deref()
    }
}

/// How long a client command waits for the scheduler unless told otherwise.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client command waits for a lost scheduler to come back.
const DEFAULT_RECONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// A client command's settings with every source and default applied.
#[derive(Debug)]
pub struct ClientSettings {
    /// The scheduler's address.
    pub address: String,
    server_key: Option<String>,
    key_file: Option<PathBuf>,
    connect_timeout: Duration,
    reconnect_timeout: Duration,
    store: StoreConfig,
}

impl SchedulerArgs {
    /// Merges the flags over the environment and the client config file.
    pub fn resolve(&self) -> Result<ClientSettings> {
        let settings = config::resolve(self)?;
        Ok(ClientSettings {
            address: settings
                .scheduler
                .unwrap_or_else(|| format!("tcp://127.0.0.1:{DEFAULT_SCHEDULER_PORT}")),
            server_key: settings.server_key,
            key_file: settings.key_file,
            connect_timeout: settings
                .connect_timeout
                .map_or(DEFAULT_CONNECT_TIMEOUT, |span| span.0),
            reconnect_timeout: settings
                .reconnect_timeout
                .map_or(DEFAULT_RECONNECT_TIMEOUT, |span| span.0),
            store: settings.store,
        })
    }
}

impl ClientSettings {
    /// Connects a client (with CURVE when keys are given).
    pub async fn connect(&self) -> Result<Client> {
        let mut options = ClientOptions::new(self.address.clone());
        options.handshake_timeout = self.connect_timeout;
        options.reconnect_timeout = self.reconnect_timeout;
        if let Some(curve) =
            keys::client_keys(self.server_key.as_deref(), self.key_file.as_deref())?
        {
            options = options.with_curve(curve);
        }
        Client::connect_with(options)
            .await
            .with_context(|| format!("cannot connect to the scheduler at {}", self.address))
    }

    /// Connects, runs `body` with the client, then ends the session
    /// whatever `body` returned, so that a short CLI call gives its
    /// connection slot back at once.
    pub async fn with_client<T>(&self, body: impl AsyncFnOnce(&Client) -> Result<T>) -> Result<T> {
        let client = self.connect().await?;
        let result = body(&client).await;
        client.close().await;
        result
    }

    /// The object stores, as the config file's `[store]` table and the
    /// `AWS_*` variables (which win) describe them.
    pub fn stores(&self) -> StoreResolver {
        StoreResolver::new(self.store.clone().overridden_by(StoreConfig::from_env()))
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
    use crate::config::testing::example_with_every_setting_on;

    #[test]
    fn the_example_config_parses_with_every_setting_on() {
        let settings: SchedulerArgs = example_with_every_setting_on(
            include_str!("../../../../configs/client.toml"),
            |flags: &mut SchedulerArgs, file| flags.config = Some(file),
        );
        assert_eq!(settings.scheduler.as_deref(), Some("tcp://127.0.0.1:8786"));
        assert_eq!(
            settings.key_file,
            Some(PathBuf::from("/home/me/.config/quarry/client.key"))
        );
        assert_eq!(
            settings.store.endpoint.as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(settings.store.access_key_id.as_deref(), Some("quarry"));
        assert_eq!(settings.store.allow_http, Some(true));
    }
    use quarry_proto::ClientId;

    #[test]
    fn default_jobs_are_the_first_of_their_client_range() {
        assert!(is_default_job(JobId::first_for(ClientId(3))));
        assert!(!is_default_job(JobId(JobId::first_for(ClientId(3)).0 + 1)));
    }
}
