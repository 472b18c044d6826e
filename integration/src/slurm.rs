//! A real single-node Slurm on 127.0.0.1: MUNGE, `slurmctld` and `slurmd`
//! from Debian's packages (`scripts/deploy-tools.sh` installs them), with
//! a throw-away configuration, state, spool and MUNGE key, on free ports.
//! Dropping it stops the daemons. Needs root, as `slurmd` does.

use crate::error::{HarnessError, Result};
use crate::process::ChildGuard;
use crate::tools::tool;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long the daemons may take to report the node idle. A bound on setup,
/// not an assertion: it normally takes a few seconds.
const STARTUP_LIMIT: Duration = Duration::from_secs(60);
/// The node's name, in the configuration and for `slurmd -N`.
const NODE: &str = "localhost";

/// A running single-node Slurm cluster.
pub struct SlurmCluster {
    // Declared first: the daemons stop before their files go.
    slurmd: ChildGuard,
    slurmctld: ChildGuard,
    munged: ChildGuard,
    dir: TempDir,
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(HarnessError::io("binding a port"))?;
    Ok(listener
        .local_addr()
        .map_err(HarnessError::io("reading a bound port"))?
        .port())
}

fn daemon(program: &str, args: &[&str], log: &Path) -> Result<ChildGuard> {
    let log_file = std::fs::File::create(log)
        .map_err(HarnessError::io(format!("creating {}", log.display())))?;
    let stderr = log_file
        .try_clone()
        .map_err(HarnessError::io("duplicating a log file"))?;
    let mut command = Command::new(tool(program)?);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(stderr);
    ChildGuard::spawn(command).map_err(HarnessError::io(format!("starting {program}")))
}

impl SlurmCluster {
    /// Starts MUNGE, the controller and one node with `cpus` CPUs, and
    /// waits until the node is idle.
    pub fn start(cpus: u32) -> Result<SlurmCluster> {
        let dir = tempfile::Builder::new()
            .prefix("quarry-slurm-")
            .tempdir()
            .map_err(HarnessError::io("creating Slurm's directory"))?;
        let path = |name: &str| dir.path().join(name);
        for sub in ["state", "spool"] {
            std::fs::create_dir(path(sub))
                .map_err(HarnessError::io("creating Slurm's directories"))?;
        }
        let key = path("munge.key");
        let status = Command::new(tool("mungekey")?)
            .arg("--create")
            .arg(format!("--keyfile={}", key.display()))
            .status()
            .map_err(HarnessError::io("running mungekey"))?;
        if !status.success() {
            return Err(HarnessError::Io {
                context: "mungekey --create".into(),
                source: std::io::Error::other(status.to_string()),
            });
        }
        let socket = path("munge.socket");
        let munged = daemon(
            "munged",
            &[
                "--foreground",
                &format!("--socket={}", socket.display()),
                &format!("--key-file={}", key.display()),
                &format!("--pid-file={}", path("munged.pid").display()),
                &format!("--seed-file={}", path("munged.seed").display()),
                "--log-file=/dev/null",
            ],
            &path("munged.log"),
        )?;
        let conf = path("slurm.conf");
        let text = format!(
            "ClusterName=quarrytest\n\
             SlurmctldHost={NODE}(127.0.0.1)\n\
             SlurmctldPort={ctld_port}\n\
             SlurmdPort={slurmd_port}\n\
             AuthType=auth/munge\n\
             AuthInfo=socket={socket}\n\
             CredType=cred/munge\n\
             SlurmUser=root\n\
             SlurmdUser=root\n\
             StateSaveLocation={state}\n\
             SlurmdSpoolDir={spool}\n\
             SlurmctldPidFile={dir}/slurmctld.pid\n\
             SlurmdPidFile={dir}/slurmd.pid\n\
             SlurmctldLogFile={dir}/slurmctld.log\n\
             SlurmdLogFile={dir}/slurmd.log\n\
             ProctrackType=proctrack/linuxproc\n\
             TaskPlugin=task/none\n\
             JobAcctGatherType=jobacct_gather/none\n\
             AccountingStorageType=accounting_storage/none\n\
             SchedulerType=sched/backfill\n\
             SelectType=select/cons_tres\n\
             SelectTypeParameters=CR_Core\n\
             MpiDefault=none\n\
             ReturnToService=2\n\
             KillWait=5\n\
             NodeName={NODE} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=1000 State=UNKNOWN\n\
             PartitionName=debug Nodes={NODE} Default=YES MaxTime=INFINITE State=UP\n",
            ctld_port = free_port()?,
            slurmd_port = free_port()?,
            socket = socket.display(),
            state = path("state").display(),
            spool = path("spool").display(),
            dir = dir.path().display(),
        );
        std::fs::write(&conf, text).map_err(HarnessError::io("writing slurm.conf"))?;
        let conf_text = conf.display().to_string();
        wait_for(STARTUP_LIMIT, || socket.exists());
        let slurmctld = daemon(
            "slurmctld",
            &["-D", "-i", "-f", &conf_text],
            &path("slurmctld.out"),
        )?;
        let slurmd = daemon(
            "slurmd",
            &["-D", "-f", &conf_text, "-N", NODE],
            &path("slurmd.out"),
        )?;
        let cluster = SlurmCluster {
            slurmd,
            slurmctld,
            munged,
            dir,
        };
        let idle = wait_for(STARTUP_LIMIT, || {
            cluster
                .command("sinfo")
                .and_then(|mut sinfo| {
                    sinfo
                        .args(["--noheader", "--format=%T"])
                        .output()
                        .map_err(HarnessError::io("running sinfo"))
                })
                .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "idle")
        });
        if !idle {
            return Err(HarnessError::Io {
                context: format!(
                    "the Slurm node did not become idle within {STARTUP_LIMIT:?}; logs:\n{}",
                    cluster.logs()
                ),
                source: std::io::Error::from(std::io::ErrorKind::TimedOut),
            });
        }
        Ok(cluster)
    }

    /// The configuration file (`SLURM_CONF`).
    pub fn conf(&self) -> PathBuf {
        self.dir.path().join("slurm.conf")
    }

    /// A Slurm client command (`sbatch`, `squeue`, `scancel`, …) for this
    /// cluster.
    pub fn command(&self, program: &str) -> Result<Command> {
        let mut command = Command::new(tool(program)?);
        command.env("SLURM_CONF", self.conf()).stdin(Stdio::null());
        Ok(command)
    }

    /// The end of the daemons' logs, for failure messages.
    pub fn logs(&self) -> String {
        let mut all = String::new();
        for name in [
            "slurmctld.log",
            "slurmd.log",
            "slurmctld.out",
            "slurmd.out",
            "munged.log",
        ] {
            let text = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            all.push_str(&format!("--- {name}\n"));
            for line in tail.into_iter().rev() {
                all.push_str(line);
                all.push('\n');
            }
        }
        all
    }

    /// Stops the daemons (node first).
    pub fn stop(mut self) {
        for daemon in [&mut self.slurmd, &mut self.slurmctld, &mut self.munged] {
            let _ = daemon.kill();
        }
    }
}

/// Polls `done` every 100 ms until it holds or `limit` passes; whether it held.
fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
