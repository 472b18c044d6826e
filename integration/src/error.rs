//! The harness's error type.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// What can go wrong while setting up or driving a test fixture.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// No MinIO binary where the harness looked.
    #[error(
        "MinIO binary not found at {}: build it with `scripts/minio.sh` \
         (or point QUARRY_MINIO_BIN at a minio binary)",
        path.display()
    )]
    MinioMissing {
        /// Where the binary was expected.
        path: PathBuf,
    },
    /// MinIO exited before it became healthy.
    #[error("MinIO exited during startup ({status}); last log lines:\n{log_tail}")]
    MinioExited {
        /// How the process ended.
        status: std::process::ExitStatus,
        /// The end of MinIO's own log.
        log_tail: String,
    },
    /// MinIO kept running but never answered its health checks.
    #[error("MinIO at {endpoint} was not healthy after {waited:?}; last log lines:\n{log_tail}")]
    MinioNotReady {
        /// The endpoint that was polled.
        endpoint: String,
        /// How long the harness waited.
        waited: Duration,
        /// The end of MinIO's own log.
        log_tail: String,
    },
    /// An S3 call made by the harness failed.
    #[error("S3 {operation} failed: {message}")]
    S3 {
        /// The S3 operation, e.g. `PutObject s3://bucket/key`.
        operation: String,
        /// The SDK's full error chain.
        message: String,
    },
    /// Fault rates outside `0.0..=1.0`, or adding up to more than 1.
    #[error("fault rates must each be within 0..=1 and add up to at most 1 (got slow_down {slow_down}, reset {reset})")]
    InvalidFaultRates {
        /// The requested share of `503 SlowDown` answers.
        slow_down: f64,
        /// The requested share of connection resets.
        reset: f64,
    },
    /// A tool the deployment tests need was not installed.
    #[error(
        "{name} not found in {} or on PATH: install it with `scripts/deploy-tools.sh`",
        tools_dir.display()
    )]
    ToolMissing {
        /// The program or file.
        name: String,
        /// Where the harness looked first.
        tools_dir: PathBuf,
    },
    /// A schema source (OpenAPI document or CRD) could not be used.
    #[error("cannot make a schema from {}: {message}", source_path.display())]
    Schema {
        /// The document.
        source_path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The MiniDFSCluster or the Hadoop client helper failed.
    #[error("HDFS helper: {context}: {detail}")]
    Hdfs {
        /// What the harness asked of it.
        context: String,
        /// What went wrong (the helper's stderr, or the exit status).
        detail: String,
    },
    /// An operating-system call failed.
    #[error("{context}: {source}")]
    Io {
        /// What the harness was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl HarnessError {
    /// Wraps an I/O error with what the harness was doing when it happened.
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> HarnessError {
        let context = context.into();
        move |source| HarnessError::Io { context, source }
    }
}

/// `Result` with [`HarnessError`] as the default error.
pub type Result<T, E = HarnessError> = std::result::Result<T, E>;
