//! Test harness for quarry's end-to-end tests (test layers 3 and 4 of the design).
//!
//! This crate owns the machinery the tests in `integration/tests/` stand on:
//!
//! - [`MinioServer`]: a real MinIO server built from source (`scripts/minio.sh`),
//!   started on a free loopback port with a throw-away data directory and random
//!   credentials, killed when dropped. Data is seeded and checked through an
//!   independent `aws_sdk_s3::Client`, never through quarry itself.
//! - [`MiniDfs`]: a real HDFS (Hadoop's MiniDFSCluster via `scripts/minidfs.sh`)
//!   with named DataNodes on loopback, one per test binary
//!   ([`MiniDfs::shared`]); files are seeded and checked with Hadoop's own
//!   `FileSystem` API (the same Java helper), never through quarry.
//! - [`FaultProxy`]: a loopback TCP proxy in front of an S3 endpoint that answers a
//!   chosen share of requests with `503 SlowDown` or resets the connection.
//! - [`ChildGuard`]: a spawned process (and its process group) that is killed when
//!   the guard drops, and that the kernel kills if the test process dies first.
//! - [`quarry_bin`]: the path of the built `quarry` binary for CLI tests.
//! - [`text_shard`]: deterministic text content, so tests can compute expected
//!   results without reading the store.
//! - [`tool`], [`tool_file`] and [`k8s_schemas`]: the programs the deployment
//!   tests run (docker-compose, helm, kubeconform, Slurm's) and kubeconform
//!   schemas made offline.
//! - [`SlurmCluster`]: a real single-node Slurm (MUNGE, slurmctld, slurmd) on
//!   127.0.0.1 with a throw-away configuration.
//!
//! It must not depend on quarry's own crates: the point of the harness is to
//! observe quarry from the outside.
#![warn(missing_docs)]

mod binaries;
mod captured;
mod error;
mod fault_proxy;
mod hdfs;
pub mod k8s_schemas;
mod minio;
mod process;
mod s3;
mod shards;
mod slurm;
mod tools;

pub use binaries::{quarry_bin, quarry_command};
pub use captured::{worker_args, CapturedProcess};
pub use error::{HarnessError, Result};
pub use fault_proxy::{Fault, FaultProxy, ProxyStats};
pub use hdfs::{HdfsBlock, HdfsFile, MiniDfs, MiniDfsOptions};
pub use minio::{
    minio_binary_path, tools_dir, MinioServer, MINIO_BIN_ENV, MINIO_METRICS_REFRESH, TOOLS_DIR_ENV,
};
/// The signal type [`ChildGuard::signal_group`] takes, so tests need not depend on nix.
pub use nix::sys::signal::Signal;
pub use process::free_loopback_endpoint;
pub use process::{process_is_gone, ChildGuard};
pub use s3::SeededShard;
pub use shards::{shard_key, text_shard, SHARD_VOCABULARY};
pub use slurm::SlurmCluster;
pub use tools::{tool, tool_file};
