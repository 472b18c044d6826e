//! A real MinIO server per test (or per test binary), on loopback.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use rand::distr::{Alphanumeric, SampleString};
use tempfile::TempDir;

use crate::error::{HarnessError, Result};
use crate::process::ChildGuard;

/// Environment variable naming the MinIO binary explicitly.
pub const MINIO_BIN_ENV: &str = "QUARRY_MINIO_BIN";

/// How often MinIO refreshes the metrics [`MinioServer::s3_bytes_sent`]
/// reads, with a margin.
pub const MINIO_METRICS_REFRESH: std::time::Duration = std::time::Duration::from_secs(11);
/// Environment variable naming the directory `scripts/minio.sh` installs tools
/// into (default `$HOME/.cache/quarry/bin`).
pub const TOOLS_DIR_ENV: &str = "QUARRY_TOOLS_DIR";

/// The region MinIO answers for unless configured otherwise.
const REGION: &str = "us-east-1";
/// How long a starting MinIO may take to pass its health checks. A bound on
/// setup, not an assertion: startup normally takes about a second.
const STARTUP_LIMIT: Duration = Duration::from_secs(120);
/// Startup attempts: a free port picked by binding port 0 can be taken by
/// someone else before MinIO binds it, and then MinIO exits at once.
const START_ATTEMPTS: usize = 3;

/// Where the MinIO binary is expected: `$QUARRY_MINIO_BIN`, else
/// `$QUARRY_TOOLS_DIR/minio`, else `$HOME/.cache/quarry/bin/minio` (where
/// `scripts/minio.sh` builds it). The file may not exist.
pub fn minio_binary_path() -> PathBuf {
    if let Some(explicit) = std::env::var_os(MINIO_BIN_ENV).filter(|v| !v.is_empty()) {
        return PathBuf::from(explicit);
    }
    tools_dir().join("minio")
}

/// Where `scripts/minio.sh` and `scripts/deploy-tools.sh` install tools:
/// `$QUARRY_TOOLS_DIR`, else `$HOME/.cache/quarry/bin`.
pub fn tools_dir() -> PathBuf {
    std::env::var_os(TOOLS_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
            Path::new(&home).join(".cache/quarry/bin")
        })
}

/// A running MinIO server on `127.0.0.1` with its own data directory and random
/// root credentials. Dropping it kills the server and deletes its data.
#[derive(Debug)]
pub struct MinioServer {
    /// Declared before `workdir` so the server dies before its files go.
    process: ChildGuard,
    workdir: TempDir,
    address: SocketAddr,
    access_key: String,
    secret_key: String,
    client: aws_sdk_s3::Client,
}

impl MinioServer {
    /// Starts MinIO from [`minio_binary_path`] and waits until it is healthy.
    ///
    /// Fails with [`HarnessError::MinioMissing`] (which says to run
    /// `scripts/minio.sh`) when there is no binary.
    pub fn start() -> Result<MinioServer> {
        MinioServer::start_with_binary(&minio_binary_path())
    }

    /// Starts the MinIO binary at `binary` and waits until it is healthy.
    ///
    /// This blocks the calling thread for the second or so MinIO needs to start,
    /// which is harmless in a test, async or not.
    pub fn start_with_binary(binary: &Path) -> Result<MinioServer> {
        if !binary.is_file() {
            return Err(HarnessError::MinioMissing {
                path: binary.to_path_buf(),
            });
        }
        let mut attempt = 1;
        loop {
            match MinioServer::start_once(binary) {
                Err(HarnessError::MinioExited { log_tail, .. })
                    if attempt < START_ATTEMPTS && log_tail.contains("already in use") =>
                {
                    tracing::warn!(attempt, "MinIO lost its port to another process; retrying");
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
    }

    fn start_once(binary: &Path) -> Result<MinioServer> {
        let workdir = tempfile::Builder::new()
            .prefix("quarry-minio-")
            .tempdir()
            .map_err(HarnessError::io("creating MinIO's temporary directory"))?;
        let data_dir = workdir.path().join("data");
        let certs_dir = workdir.path().join("certs");
        let log_path = workdir.path().join("minio.log");
        let log = std::fs::File::create(&log_path)
            .map_err(HarnessError::io(format!("creating {}", log_path.display())))?;
        let log_for_stderr = log
            .try_clone()
            .map_err(HarnessError::io("duplicating MinIO's log file handle"))?;

        let address = free_loopback_port()?;
        let console_address = free_loopback_port()?;
        let mut rng = rand::rng();
        let access_key = format!("quarry{}", Alphanumeric.sample_string(&mut rng, 10));
        let secret_key = Alphanumeric.sample_string(&mut rng, 32);

        let mut command = Command::new(binary);
        command
            .arg("server")
            .arg(&data_dir)
            .arg("--address")
            .arg(address.to_string())
            .arg("--console-address")
            .arg(console_address.to_string())
            // Keeps MinIO away from the user's ~/.minio.
            .arg("--certs-dir")
            .arg(&certs_dir);
        // The developer's own MinIO settings must not leak into tests.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("MINIO_") {
                command.env_remove(name);
            }
        }
        command
            .env("MINIO_ROOT_USER", &access_key)
            .env("MINIO_ROOT_PASSWORD", &secret_key)
            .env("MINIO_BROWSER", "off")
            .env("MINIO_UPDATE", "off")
            // Allows a data directory on the root drive, as in CI.
            .env("MINIO_CI_CD", "on")
            // Its own byte counters, readable without a token
            // ([`MinioServer::s3_bytes_sent`]).
            .env("MINIO_PROMETHEUS_AUTH_TYPE", "public")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_for_stderr);
        let process = ChildGuard::spawn(command)
            .map_err(HarnessError::io(format!("starting {}", binary.display())))?;
        tracing::info!(%address, pid = process.id(), "started MinIO");

        let client = build_client(&format!("http://{address}"), &access_key, &secret_key);
        let mut server = MinioServer {
            process,
            workdir,
            address,
            access_key,
            secret_key,
            client,
        };
        server.wait_until_healthy()?;
        Ok(server)
    }

    /// Polls the liveness probe, then the cluster probe (which answers 200 only
    /// once the object layer can take writes), failing early if MinIO exits.
    fn wait_until_healthy(&mut self) -> Result<()> {
        let started = Instant::now();
        for probe in ["/minio/health/live", "/minio/health/cluster"] {
            loop {
                if let Some(status) = self
                    .process
                    .try_wait()
                    .map_err(HarnessError::io("checking on MinIO"))?
                {
                    return Err(HarnessError::MinioExited {
                        status,
                        log_tail: self.log_tail(),
                    });
                }
                if http_get_status(self.address, probe) == Some(200) {
                    break;
                }
                if started.elapsed() > STARTUP_LIMIT {
                    return Err(HarnessError::MinioNotReady {
                        endpoint: self.endpoint(),
                        waited: started.elapsed(),
                        log_tail: self.log_tail(),
                    });
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// MinIO's own count of bytes it sent over S3
    /// (`minio_s3_traffic_sent_bytes` on its node metrics). MinIO refreshes
    /// the figure every 10 s: wait [`MINIO_METRICS_REFRESH`] after the
    /// traffic to be counted, before reading it.
    pub async fn s3_bytes_sent(&self) -> Result<u64> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let io = || HarnessError::io("reading MinIO's metrics");
        let mut stream = tokio::net::TcpStream::connect(self.address())
            .await
            .map_err(io())?;
        let request = format!(
            "GET /minio/v2/metrics/node HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.address()
        );
        stream.write_all(request.as_bytes()).await.map_err(io())?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.map_err(io())?;
        let sent: f64 = response
            .lines()
            .filter(|line| line.starts_with("minio_s3_traffic_sent_bytes"))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        Ok(sent as u64)
    }

    /// The S3 endpoint, e.g. `http://127.0.0.1:40123`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The socket address MinIO listens on (for [`crate::FaultProxy::start`]).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The root user, usable as `AWS_ACCESS_KEY_ID`.
    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    /// The root password, usable as `AWS_SECRET_ACCESS_KEY`.
    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// The environment a quarry process needs to reach this server: pass it to
    /// `Command::envs`.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        self.env_with_endpoint(&self.endpoint())
    }

    /// As [`MinioServer::env`], but reaching the server through `endpoint`, e.g. a
    /// [`crate::FaultProxy`] in front of it.
    pub fn env_with_endpoint(&self, endpoint: &str) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", endpoint.to_owned()),
            ("AWS_ACCESS_KEY_ID", self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.clone()),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_ALLOW_HTTP", "true".to_owned()),
            // Nothing on loopback answers the EC2 metadata service; don't wait for it.
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ]
    }

    /// An independent S3 client for this server (path-style, SDK default retries).
    pub fn s3_client(&self) -> aws_sdk_s3::Client {
        self.client.clone()
    }

    /// Client settings for this server's credentials, reaching it through
    /// `endpoint`: adjust (e.g. `retry_config`) and `build()` them, then pass the
    /// result to `aws_sdk_s3::Client::from_conf`.
    pub fn s3_config(&self, endpoint: &str) -> aws_sdk_s3::config::Builder {
        client_config(endpoint, &self.access_key, &self.secret_key)
    }

    /// MinIO's own log (stdout and stderr), for debugging a failed test.
    pub fn log_path(&self) -> PathBuf {
        self.workdir.path().join("minio.log")
    }

    /// The MinIO process, e.g. to kill it in a fault test.
    pub fn process_mut(&mut self) -> &mut ChildGuard {
        &mut self.process
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

fn client_config(
    endpoint: &str,
    access_key: &str,
    secret_key: &str,
) -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(
            access_key,
            secret_key,
            None,
            None,
            "quarry-integration",
        ))
        // `bucket.127.0.0.1` does not resolve; MinIO serves `127.0.0.1/bucket`.
        .force_path_style(true)
}

fn build_client(endpoint: &str, access_key: &str, secret_key: &str) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(client_config(endpoint, access_key, secret_key).build())
}

/// A loopback address whose port was free a moment ago.
fn free_loopback_port() -> Result<SocketAddr> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(HarnessError::io(
        "binding a probe socket to find a free port",
    ))?;
    listener
        .local_addr()
        .map_err(HarnessError::io("reading the probe socket's address"))
}

/// The status code of `GET path` on `address`, or `None` if there is no
/// well-formed answer (yet). Plain HTTP/1.0 over a socket: no client library is
/// needed to ask one question of a local server.
fn http_get_status(address: SocketAddr, path: &str) -> Option<u16> {
    let timeout = Duration::from_secs(2);
    let mut stream = TcpStream::connect_timeout(&address, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").ok()?;
    let mut head = [0u8; 32];
    let mut read = 0;
    while read < head.len() {
        match stream.read(&mut head[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(_) => return None,
        }
    }
    parse_status_line(&head[..read])
}

/// The status code of an HTTP status line such as `HTTP/1.1 200 OK`.
fn parse_status_line(head: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(head).ok()?;
    let mut parts = text.split(' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_parse() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r\nServer"), Some(200));
        assert_eq!(
            parse_status_line(b"HTTP/1.0 503 Service Unavailable"),
            Some(503)
        );
        assert_eq!(parse_status_line(b"SSH-2.0-OpenSSH"), None);
        assert_eq!(parse_status_line(b""), None);
    }

    #[test]
    fn a_missing_binary_says_how_to_build_one() {
        let missing = Path::new("/nonexistent/quarry-test/minio");
        let error = MinioServer::start_with_binary(missing).unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, HarnessError::MinioMissing { .. }));
        assert!(message.contains("scripts/minio.sh"), "{message}");
        assert!(
            message.contains("/nonexistent/quarry-test/minio"),
            "{message}"
        );
    }
}
