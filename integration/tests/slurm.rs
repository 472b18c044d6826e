//! `quarry slurm script` against a real single-node Slurm (issue #14 item
//! 7): the script, submitted with sbatch, starts workers with srun that
//! join the scheduler, cache on node-local disk and run a quarry job's
//! tasks inside the Slurm allocation; SIGTERM to the job's steps (what
//! `--signal` sends before the walltime) makes them leave, and the script
//! then removes their caches and ends.
//!
//! Needs root and Slurm (`scripts/deploy-tools.sh`), and the binary
//! (`cargo build -p quarry-cli`).

use quarry::{Client, ClientOptions};
use quarry_integration::{quarry_bin, CapturedProcess, SlurmCluster};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A bound on waits (daemons, workers joining, the job), so that a broken
/// setup fails instead of hanging. Not a timing assertion.
const PATIENCE: Duration = Duration::from_secs(120);

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn checked(output: Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

fn quarry(args: &[&str]) -> Command {
    let mut command = Command::new(quarry_bin());
    command
        .args(args)
        .env_remove("QUARRY_SCHEDULER")
        .stdin(Stdio::null());
    command
}

async fn worker_names(client: &Client) -> Vec<String> {
    let mut names: Vec<String> = client
        .workers()
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.name)
        .collect();
    names.sort();
    names
}

async fn wait_until_async<F: std::future::Future<Output = bool>>(
    what: &str,
    mut done: impl FnMut() -> F,
) {
    let deadline = Instant::now() + PATIENCE;
    while !done().await {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn short_hostname() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    host.trim().split('.').next().unwrap().to_owned()
}

fn job_state(cluster: &SlurmCluster, job: &str) -> String {
    let output = cluster
        .command("squeue")
        .unwrap()
        .args(["--noheader", "--jobs", job, "--format=%T"])
        .output()
        .unwrap();
    text(&output.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sbatch_script_runs_workers_that_run_a_quarry_job() {
    let cluster = SlurmCluster::start(2).unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let mut scheduler_command = quarry(&[
        "scheduler",
        "--listen",
        "tcp://127.0.0.1:0",
        "--dashboard",
        "none",
        "--heartbeat-timeout",
        "2s",
    ]);
    scheduler_command.env("RUST_LOG", "info");
    let scheduler = CapturedProcess::spawn("scheduler", scheduler_command, PATIENCE).unwrap();
    let endpoint = scheduler.wait_for_scheduler_endpoint();

    let local = dir.path().join("local");
    let log = dir.path().join("slurm-%j.out");
    let script = checked(
        quarry(&[
            "slurm",
            "script",
            "--workers",
            "2",
            "--time",
            "10m",
            "--scheduler",
            &endpoint,
            "--local-dir",
            local.to_str().unwrap(),
            "--job-name",
            "quarry-test",
            "--",
            &format!("--output={}", log.display()),
        ])
        .output()
        .unwrap(),
        "quarry slurm script",
    );
    assert!(script.contains("#SBATCH --time=00:10:00"), "{script}");
    let script_path = dir.path().join("workers.sbatch");
    std::fs::write(&script_path, &script).unwrap();
    let job = checked(
        cluster
            .command("sbatch")
            .unwrap()
            .arg("--parsable")
            .arg(&script_path)
            .output()
            .unwrap(),
        "sbatch",
    )
    .trim()
    .to_owned();

    let mut options = ClientOptions::new(endpoint.as_str());
    options.handshake_timeout = PATIENCE;
    let client = Client::connect_with(options).await.unwrap();
    let expected: Vec<String> = (0..2)
        .map(|task| format!("{}-slurm-{job}-{task}", short_hostname()))
        .collect();
    wait_until_async("the Slurm job's workers to join", || async {
        let names = worker_names(&client).await;
        if names != expected && job_state(&cluster, &job).is_empty() {
            panic!(
                "the Slurm job ended before its workers joined ({names:?}); its output:\n{}\n{}",
                std::fs::read_to_string(dir.path().join(format!("slurm-{job}.out")))
                    .unwrap_or_default(),
                cluster.logs()
            );
        }
        names == expected
    })
    .await;

    let out = dir.path().join("out");
    let job_file = dir.path().join("job.yaml");
    std::fs::write(
        &job_file,
        format!(
            "name: inside-slurm\nitems: [a, b, c, d, e, f]\n\
             command: [sh, -c, 'echo \"$SLURM_JOB_ID\" > \"$QUARRY_OUTPUT_DIR/slurm-job\"']\n\
             output: {}/\n",
            out.display()
        ),
    )
    .unwrap();
    checked(
        quarry(&[
            "submit",
            job_file.to_str().unwrap(),
            "--scheduler",
            &endpoint,
            "--watch",
        ])
        .output()
        .unwrap(),
        "quarry submit --watch",
    );
    let ran_in: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(|entry| {
            let path = entry.unwrap().path().join("slurm-job");
            std::fs::read_to_string(path).ok()
        })
        .map(|id| id.trim().to_owned())
        .collect();
    assert_eq!(
        ran_in,
        vec![job.clone(); 6],
        "every task ran inside Slurm job {job}"
    );
    for task in 0..2 {
        let cache = local.join(format!("quarry-{job}/{task}/shards"));
        assert!(cache.is_dir(), "no node-local cache {}", cache.display());
    }

    // What `#SBATCH --signal=TERM@…` delivers before the walltime.
    checked(
        cluster
            .command("scancel")
            .unwrap()
            .args(["--signal=TERM", &job])
            .output()
            .unwrap(),
        "scancel --signal=TERM",
    );
    wait_until_async("the workers to leave and the job to end", || async {
        worker_names(&client).await.is_empty() && job_state(&cluster, &job).is_empty()
    })
    .await;
    assert!(
        !Path::new(&local.join(format!("quarry-{job}"))).exists(),
        "the script removes the caches once its workers have left"
    );
    let output = std::fs::read_to_string(dir.path().join(format!("slurm-{job}.out"))).unwrap();
    assert_eq!(
        output.matches("worker shutting down").count(),
        2,
        "both workers left on the signal; the job's output:\n{output}"
    );
    assert!(!output.contains("panicked"), "the job's output:\n{output}");
    cluster.stop();
}
