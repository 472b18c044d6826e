//! A real HDFS (Hadoop's MiniDFSCluster, started by `scripts/minidfs.sh`)
//! and an HDFS client independent of quarry: Hadoop's own `FileSystem` API
//! in the same Java helper.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::Duration;

use tempfile::TempDir;

use crate::error::{HarnessError, Result};
use crate::process::ChildGuard;

/// How long a starting MiniDFSCluster may take to accept clients (a bound
/// on setup: it takes about ten seconds, more while other builds run).
const STARTUP_LIMIT: Duration = Duration::from_secs(240);
/// How long one helper client command may run.
const COMMAND_LIMIT: Duration = Duration::from_secs(180);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The helper's class path, from `scripts/minidfs-build.sh` (which builds
/// it once per machine).
fn helper_classpath() -> Result<&'static str> {
    static CLASSPATH: OnceLock<std::result::Result<String, String>> = OnceLock::new();
    CLASSPATH
        .get_or_init(|| {
            let output = Command::new(repo_root().join("scripts/minidfs-build.sh"))
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("cannot run scripts/minidfs-build.sh: {e}"))?;
            if !output.status.success() {
                return Err(format!(
                    "scripts/minidfs-build.sh failed ({}): {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr)
                ));
            }
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
        })
        .as_deref()
        .map_err(|detail| HarnessError::Hdfs {
            context: "building the helper".into(),
            detail: detail.clone(),
        })
}

/// How to start a cluster.
#[derive(Clone, Debug)]
pub struct MiniDfsOptions {
    /// DataNode host names, one DataNode each (all listen on 127.0.0.1).
    pub hosts: Vec<String>,
    /// Default replication of new files.
    pub replication: u32,
    /// Default block size of new files.
    pub block_size: u64,
    /// Two NameNodes as the HA name service `minidfs-ns`, the second one
    /// active, defined in [`MiniDfs::conf_dir`] (`fs.defaultFS` names it).
    pub ha: bool,
}

impl Default for MiniDfsOptions {
    /// Three DataNodes named `dn-a`, `dn-b`, `dn-c`, one replica per block
    /// (so each block lives on exactly one named host), 1 MiB blocks.
    fn default() -> Self {
        MiniDfsOptions {
            hosts: ["dn-a", "dn-b", "dn-c"].map(String::from).to_vec(),
            replication: 1,
            block_size: 1 << 20,
            ha: false,
        }
    }
}

/// One block of a file as Hadoop's client reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HdfsBlock {
    /// The file's absolute path.
    pub path: String,
    /// Where the block starts in the file.
    pub offset: u64,
    /// Its length.
    pub length: u64,
    /// The hosts holding its replicas.
    pub hosts: Vec<String>,
}

/// A file as Hadoop's client lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HdfsFile {
    /// The absolute path.
    pub path: String,
    /// Its length.
    pub length: u64,
    /// Its modification time in milliseconds.
    pub mtime_ms: u64,
    /// The user who owns it.
    pub owner: String,
}

/// A running MiniDFSCluster with its data in a temporary directory, killed
/// (with its data) on drop, or with the test process.
#[derive(Debug)]
pub struct MiniDfs {
    /// Declared before `dir` so that the cluster stops before its files go.
    _process: ChildGuard,
    dir: TempDir,
    url: String,
    http: String,
    conf_dir: PathBuf,
}

impl MiniDfs {
    /// The cluster shared by the tests of one test binary (started on first
    /// use with [`MiniDfsOptions::default`]): starting one takes seconds.
    /// Tests keep apart by using paths of their own.
    pub fn shared() -> &'static MiniDfs {
        static SHARED: OnceLock<MiniDfs> = OnceLock::new();
        SHARED.get_or_init(|| {
            MiniDfs::start(&MiniDfsOptions::default()).unwrap_or_else(|e| panic!("{e}"))
        })
    }

    /// Starts a cluster through `scripts/minidfs.sh` and waits until it
    /// accepts clients.
    pub fn start(options: &MiniDfsOptions) -> Result<MiniDfs> {
        helper_classpath()?;
        let dir = tempfile::Builder::new()
            .prefix("quarry-minidfs-")
            .tempdir()
            .map_err(HarnessError::io("creating the MiniDFSCluster's directory"))?;
        let log_path = dir.path().join("minidfs.log");
        let log = std::fs::File::create(&log_path)
            .map_err(HarnessError::io(format!("creating {}", log_path.display())))?;
        let mut command = Command::new(repo_root().join("scripts/minidfs.sh"));
        command
            .arg(dir.path().join("cluster"))
            .args(["--hosts", &options.hosts.join(",")])
            .args(["--replication", &options.replication.to_string()])
            .args(["--block-size", &options.block_size.to_string()])
            .args(options.ha.then_some("--ha"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        let mut process =
            ChildGuard::spawn(command).map_err(HarnessError::io("starting scripts/minidfs.sh"))?;
        let stdout = process.child_mut().stdout.take().expect("stdout was piped");
        let (lines, received) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let mut said: Vec<String> = Vec::new();
        while !said.iter().any(|line| line.starts_with("datanodes ")) {
            match received.recv_timeout(STARTUP_LIMIT) {
                Ok(line) => said.push(line),
                Err(_) => {
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(30).collect();
                    return Err(HarnessError::Hdfs {
                        context: "starting the MiniDFSCluster".into(),
                        detail: format!(
                            "it printed {said:?} and then stopped or exited; log tail:\n{}",
                            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                        ),
                    });
                }
            }
        }
        let field = |prefix: &str| {
            said.iter()
                .find_map(|line| line.strip_prefix(prefix))
                .map(str::to_string)
        };
        let url = said[0].clone();
        let (Some(http), Some(conf_dir)) = (field("http "), field("conf ")) else {
            return Err(HarnessError::Hdfs {
                context: "starting the MiniDFSCluster".into(),
                detail: format!("unexpected first lines {said:?}"),
            });
        };
        tracing::info!(%url, %http, "started MiniDFSCluster");
        Ok(MiniDfs {
            _process: process,
            dir,
            url,
            http,
            conf_dir: PathBuf::from(conf_dir),
        })
    }

    /// `hdfs://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL of `path` (absolute, such as `/data/a.txt`).
    pub fn url_of(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// The NameNode's web address (`127.0.0.1:PORT`, WebHDFS).
    pub fn http_address(&self) -> &str {
        &self.http
    }

    /// A directory with `core-site.xml` (`fs.defaultFS` is this cluster) and
    /// `hdfs-site.xml`, for `HADOOP_CONF_DIR`.
    pub fn conf_dir(&self) -> &Path {
        &self.conf_dir
    }

    /// A scratch directory that lives as long as the cluster.
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    /// What quarry's processes need to reach this cluster.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("HADOOP_CONF_DIR", self.conf_dir.display().to_string()),
            ("HADOOP_USER_NAME", "quarry".to_string()),
        ]
    }

    /// Runs a client command of the helper (Hadoop's FileSystem API) with
    /// `stdin` and returns its stdout.
    pub fn hadoop(&self, args: &[&str], stdin: &[u8]) -> Result<Vec<u8>> {
        let context = format!("minidfs {}", args.join(" "));
        let classpath = format!("{}:{}", self.conf_dir.display(), helper_classpath()?);
        let mut child = Command::new("java")
            .args(["-Xmx512m", "-cp", &classpath, "quarry.minidfs.Main"])
            .args(args)
            .env("HADOOP_USER_NAME", "quarry")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(HarnessError::io(format!("starting {context}")))?;
        let mut input = child.stdin.take().expect("stdin was piped");
        let stdin = stdin.to_vec();
        let writer = std::thread::spawn(move || input.write_all(&stdin));
        let (done, finished) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(child.wait_with_output());
        });
        let output = finished
            .recv_timeout(COMMAND_LIMIT)
            .map_err(|_| HarnessError::Hdfs {
                context: context.clone(),
                detail: format!("no answer within {COMMAND_LIMIT:?}"),
            })?
            .map_err(HarnessError::io(format!("waiting for {context}")))?;
        let _ = writer.join();
        if !output.status.success() {
            return Err(HarnessError::Hdfs {
                context,
                detail: format!(
                    "{}: {}",
                    output.status,
                    // The exception and where it was thrown; not the whole trace.
                    String::from_utf8_lossy(&output.stderr)
                        .lines()
                        .filter(|l| !l.starts_with("SLF4J"))
                        .take(4)
                        .collect::<Vec<_>>()
                        .join("\n")
                ),
            });
        }
        Ok(output.stdout)
    }

    /// Writes `bytes` to the file at `path` (replacing it).
    pub fn write(&self, path: &str, bytes: &[u8]) -> Result<()> {
        self.hadoop(&["write", &self.url_of(path)], bytes).map(drop)
    }

    /// Copies a local file or directory to `path`.
    pub fn put(&self, local: &Path, path: &str) -> Result<()> {
        let local = local.display().to_string();
        self.hadoop(&["put", &local, &self.url_of(path)], &[])
            .map(drop)
    }

    /// The bytes of the file at `path`.
    pub fn cat(&self, path: &str) -> Result<Vec<u8>> {
        self.hadoop(&["cat", &self.url_of(path)], &[])
    }

    /// Every file under `path`, recursively, sorted by path.
    pub fn ls(&self, path: &str) -> Result<Vec<HdfsFile>> {
        let text = self.hadoop(&["ls", &self.url_of(path)], &[])?;
        let mut files: Vec<HdfsFile> = String::from_utf8_lossy(&text)
            .lines()
            .filter_map(|line| {
                let mut fields = line.split('\t');
                Some(HdfsFile {
                    path: fields.next()?.to_string(),
                    length: fields.next()?.parse().ok()?,
                    mtime_ms: fields.next()?.parse().ok()?,
                    owner: fields.next()?.to_string(),
                })
            })
            .collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }

    /// The blocks of every file under `path` and their hosts.
    pub fn locations(&self, path: &str) -> Result<Vec<HdfsBlock>> {
        let text = self.hadoop(&["locations", &self.url_of(path)], &[])?;
        Ok(String::from_utf8_lossy(&text)
            .lines()
            .filter_map(|line| {
                let mut fields = line.split('\t');
                Some(HdfsBlock {
                    path: fields.next()?.to_string(),
                    offset: fields.next()?.parse().ok()?,
                    length: fields.next()?.parse().ok()?,
                    hosts: fields
                        .next()?
                        .split(',')
                        .filter(|h| !h.is_empty())
                        .map(String::from)
                        .collect(),
                })
            })
            .collect())
    }
}
