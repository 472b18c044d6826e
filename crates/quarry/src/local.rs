use quarry_client::{Client, ClientError, ClientOptions};
use quarry_scheduler::{SchedulerConfig, SchedulerError, SchedulerHandle};
use quarry_worker::{run_worker, Registry, WorkerError, WorkerOptions};
use std::path::PathBuf;
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::warn;

/// The embedded cluster could not start.
#[derive(Debug, Error)]
pub enum LocalClusterError {
    /// The scheduler failed to start.
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
    /// The cluster's own client could not talk to it.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Workers did not register in time.
    #[error("the embedded workers did not all register within 30 s (wanted {0})")]
    WorkersMissing(usize),
}

/// How long `start` waits for the embedded workers to register.
const WORKER_START_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Builds a [`LocalCluster`].
#[derive(Clone)]
pub struct LocalClusterBuilder {
    workers: usize,
    nthreads: u32,
    registry: Registry,
    work_dir: Option<PathBuf>,
    python: Option<PathBuf>,
    configure: Option<fn(&mut SchedulerConfig)>,
}

impl LocalClusterBuilder {
    /// How many workers (default 2).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Slots per worker (default 1).
    pub fn nthreads(mut self, n: u32) -> Self {
        self.nthreads = n.max(1);
        self
    }

    /// The functions workers run (default: the built-ins).
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = registry;
        self
    }

    /// Where worker caches and scratch space live (default: a per-process
    /// directory under the system temp dir). Reusing a directory keeps the
    /// caches warm across runs.
    pub fn work_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.work_dir = Some(dir.into());
        self
    }

    /// The Python interpreter the workers' slots keep warm for Python
    /// tasks (default: `python3` on `PATH`); the Python package passes its
    /// own.
    pub fn python(mut self, program: impl Into<PathBuf>) -> Self {
        self.python = Some(program.into());
        self
    }

    /// Adjusts the scheduler's configuration before it starts.
    pub fn configure_scheduler(mut self, f: fn(&mut SchedulerConfig)) -> Self {
        self.configure = Some(f);
        self
    }

    /// Starts the scheduler on a loopback port and the workers as tasks of
    /// the current tokio runtime. It needs no keys: it binds 127.0.0.1 only.
    pub async fn start(self) -> Result<LocalCluster, LocalClusterError> {
        let mut config = SchedulerConfig::new("tcp://127.0.0.1:0");
        if let Some(configure) = self.configure {
            configure(&mut config);
        }
        let scheduler = quarry_scheduler::start(config).await?;
        let root = self.work_dir.unwrap_or_else(|| {
            std::env::temp_dir().join(format!("quarry-local-{}", std::process::id()))
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let workers = (0..self.workers)
            .map(|i| {
                let name = format!("local-{i}");
                let mut options = WorkerOptions::new(scheduler.endpoint(), name.clone());
                options.nthreads = self.nthreads;
                options.cache_dir = root.join(&name).join("cache");
                options.scratch_dir = root.join(&name).join("scratch");
                if let Some(python) = &self.python {
                    options.python = python.clone();
                }
                let registry = self.registry.clone();
                let mut stop = stop_rx.clone();
                tokio::spawn(async move {
                    let stopped = async move {
                        let _ = stop.wait_for(|s| *s).await;
                    };
                    run_worker(options, registry, stopped).await
                })
            })
            .collect();
        let cluster = LocalCluster {
            scheduler,
            workers,
            stop: stop_tx,
        };
        // Tasks submitted before every worker registered would all be
        // prefetched by the first one; wait so that work spreads at once.
        let client = cluster.client().await?;
        let deadline = std::time::Instant::now() + WORKER_START_TIMEOUT;
        while client.workers().await?.len() < self.workers {
            if std::time::Instant::now() > deadline {
                return Err(LocalClusterError::WorkersMissing(self.workers));
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        Ok(cluster)
    }
}

/// A scheduler and N workers inside this process, like dask's
/// `LocalCluster`.
pub struct LocalCluster {
    scheduler: SchedulerHandle,
    workers: Vec<JoinHandle<Result<(), WorkerError>>>,
    stop: watch::Sender<bool>,
}

impl LocalCluster {
    /// A builder with 2 workers of 1 slot running the built-ins.
    pub fn builder() -> LocalClusterBuilder {
        LocalClusterBuilder {
            workers: 2,
            nthreads: 1,
            registry: Registry::new().with_builtins(),
            work_dir: None,
            python: None,
            configure: None,
        }
    }

    /// The scheduler's endpoint, for clients.
    pub fn address(&self) -> &str {
        self.scheduler.endpoint()
    }

    /// Connects a client to this cluster.
    pub async fn client(&self) -> Result<Client, ClientError> {
        Client::connect_with(ClientOptions::new(self.address())).await
    }

    /// Stops the workers, then the scheduler.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for worker in self.workers {
            match worker.await {
                Ok(Err(e)) => warn!("local worker stopped with an error: {e}"),
                Err(e) => warn!("local worker task failed: {e}"),
                Ok(Ok(())) => {}
            }
        }
        if let Err(e) = self.scheduler.shutdown().await {
            warn!("local scheduler stopped with an error: {e}");
        }
    }
}
