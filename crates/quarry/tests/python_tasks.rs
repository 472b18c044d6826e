//! The worker's `quarry.python` executor on an embedded cluster, with
//! stand-in interpreters (the real one, with cloudpickle, is tested by
//! python/tests): the frames, a crashed interpreter failing only its task
//! and being started again, and the one-line errors for a missing
//! interpreter, one that exits at once, and a version mismatch.

use quarry::parts::worker::{PythonCall, PYTHON_FUNCTION};
use quarry::{ClientError, LocalCluster};
use serde_bytes::ByteBuf;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// An interpreter that speaks the frames without Python's pickles: it says
/// hello as Python "3.0" with cloudpickle "stand-in", echoes each task's
/// body back as its result, kills itself on the body `die`, and logs its
/// pid to `pids` when it starts.
fn stand_in(dir: &Path, pids: &Path) -> PathBuf {
    let path = dir.join("stand-in-python");
    let script = format!(
        r#"#!/usr/bin/env python3
import json, os, struct, sys
out = os.fdopen(os.dup(1), "wb", buffering=0)
def frame(payload):
    out.write(struct.pack("<Q", len(payload)) + payload)
def read():
    (n,) = struct.unpack("<Q", sys.stdin.buffer.read(8))
    return sys.stdin.buffer.read(n)
with open({pids:?}, "a") as f:
    f.write("%d\n" % os.getpid())
frame(json.dumps({{"protocol": 1, "python": "3.0", "cloudpickle": "stand-in"}}).encode())
while True:
    header = json.loads(read())
    body = read()
    if body == b"die":
        os.kill(os.getpid(), 9)
    frame(b"\x00" + body)
"#,
        pids = pids.display().to_string()
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn call(python: &str, pickle: &[u8]) -> PythonCall {
    PythonCall {
        python: python.into(),
        cloudpickle: "stand-in".into(),
        quarry: env!("CARGO_PKG_VERSION").into(),
        shard: false,
        pickle: pickle.to_vec(),
    }
}

async fn cluster(python: &Path) -> LocalCluster {
    LocalCluster::builder()
        .workers(1)
        .nthreads(1)
        .python(python)
        .work_dir(tempfile::tempdir().unwrap().keep())
        .start()
        .await
        .unwrap()
}

async fn run(client: &quarry::Client, call: &PythonCall) -> Result<Vec<u8>, ClientError> {
    let future = client.submit::<PythonCall, ByteBuf>(PYTHON_FUNCTION, call)?;
    Ok(future.result().await?.into_vec())
}

fn failure(result: Result<Vec<u8>, ClientError>) -> String {
    match result {
        Err(ClientError::Task { message, .. }) => message,
        other => panic!("expected a failed task, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_interpreter_fails_only_its_task_and_is_started_again() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let cluster = cluster(&stand_in(dir.path(), &pids)).await;
    let client = cluster.client().await.unwrap();
    assert_eq!(run(&client, &call("3.0", b"one")).await.unwrap(), b"one");
    assert_eq!(run(&client, &call("3.0", b"two")).await.unwrap(), b"two");
    let died = failure(run(&client, &call("3.0", b"die")).await);
    assert!(died.contains("died running the task"), "{died}");
    assert!(died.contains("killed by SIGKILL"), "{died}");
    // The next task starts a new interpreter.
    assert_eq!(
        run(&client, &call("3.0", b"three")).await.unwrap(),
        b"three"
    );
    // A dead interpreter is a lost attempt, run again up to the default
    // `max_worker_losses` (3) even without retries: the first interpreter
    // died with attempt 1, a new one with each of attempts 2 to 4, and one
    // more ran `three`.
    let started = std::fs::read_to_string(&pids).unwrap();
    assert_eq!(
        started.lines().count(),
        5,
        "one interpreter until the crash, one per lost attempt, one after: {started}"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_mismatch_is_one_line_naming_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster(&stand_in(dir.path(), &dir.path().join("pids"))).await;
    let client = cluster.client().await.unwrap();
    let message = failure(run(&client, &call("3.99", b"x")).await);
    assert!(
        message.starts_with("version mismatch: the client runs Python 3.99"),
        "{message}"
    );
    assert!(message.contains("Python 3.0"), "{message}");
    assert!(!message.contains('\n'), "{message}");
    let mut other = call("3.0", b"x");
    other.cloudpickle = "9.9".into();
    let message = failure(run(&client, &other).await);
    assert!(message.contains("cloudpickle 9.9"), "{message}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_failing_interpreter_is_named() {
    let missing = cluster(Path::new("/nonexistent/python3")).await;
    let client = missing.client().await.unwrap();
    let message = failure(run(&client, &call("3.0", b"x")).await);
    assert!(
        message.contains("cannot start the Python interpreter `/nonexistent/python3`"),
        "{message}"
    );
    assert!(message.contains("--python PATH"), "{message}");
    missing.shutdown().await;

    let dir = tempfile::tempdir().unwrap();
    let exits = dir.path().join("exits");
    std::fs::write(&exits, "#!/bin/sh\nexit 3\n").unwrap();
    std::fs::set_permissions(&exits, std::fs::Permissions::from_mode(0o755)).unwrap();
    let failing = cluster(&exits).await;
    let client = failing.client().await.unwrap();
    let message = failure(run(&client, &call("3.0", b"x")).await);
    assert!(
        message.contains("exited before it started: it exited with status 3"),
        "{message}"
    );
    failing.shutdown().await;
}
