//! Runs real processes (`sh`, `true`, `false`, `python3`) through
//! `quarry_command::run`.

use quarry_command::{
    run, run_cancellable, CommandError, CommandInvocation, CommandTemplate, ExitReason, RunLimits,
    TemplateError,
};
use quarry_proto::ErrorKind;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

struct Dirs {
    _root: tempfile::TempDir,
    invocation: CommandInvocation,
}

fn dirs() -> Dirs {
    let root = tempfile::tempdir().unwrap();
    let invocation = CommandInvocation {
        task_id: "t7".into(),
        task_key: "00007".into(),
        work_dir: root.path().join("work"),
        output_dir: root.path().join("out"),
        log_dir: root.path().join("logs"),
        ..Default::default()
    };
    Dirs {
        _root: root,
        invocation,
    }
}

fn template(argv: &[&str]) -> CommandTemplate {
    CommandTemplate {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn sh(script: &str) -> CommandTemplate {
    template(&["sh", "-c", script])
}

/// Whether a process is gone: no /proc entry, or a zombie waiting for
/// whoever inherited it (it no longer runs).
fn is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            // The state follows the parenthesised command name.
            let after_name = &stat[stat.rfind(')').unwrap() + 1..];
            after_name.trim_start().starts_with('Z')
        }
    }
}

/// Polls until `pid` is dead; panics if it is still alive after a generous
/// bound (this checks that it dies, not how fast).
async fn assert_dies(pid: u32) {
    for _ in 0..400 {
        if is_dead(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("process {pid} is still alive");
}

/// Waits until the command has written the pid of its background child.
async fn wait_for_pid(path: &Path) -> u32 {
    for _ in 0..400 {
        if let Ok(text) = std::fs::read_to_string(path) {
            if let Ok(pid) = text.trim().parse() {
                return pid;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{} never appeared", path.display());
}

const BACKGROUND_SLEEPER: &str = "sleep 1000 & echo $! > bg.pid; sleep 1000";

#[tokio::test]
async fn last_json_line_of_stdout_is_the_result() {
    let d = dirs();
    let mut invocation = d.invocation.clone();
    invocation.params = json!({"n": 3}).as_object().unwrap().clone();
    let outcome = run(
        // Literal braces are doubled: `{{` and `}}`.
        &sh("echo working; echo \"{{\\\"n\\\": $QUARRY_PARAM_N}}\"; echo"),
        &invocation,
        &RunLimits::default(),
    )
    .await
    .unwrap();
    assert_eq!(outcome.result, json!({"n": 3}));
    assert_eq!(outcome.stdout_tail, "working\n{\"n\": 3}\n\n");
    assert_eq!(
        std::fs::read_to_string(&outcome.stdout_log).unwrap(),
        outcome.stdout_tail
    );
    assert_eq!(outcome.stdout_log, invocation.log_dir.join("stdout.log"));
}

#[tokio::test]
async fn non_json_stdout_gives_a_null_result() {
    let d = dirs();
    let outcome = run(&sh("echo hello"), &d.invocation, &RunLimits::default())
        .await
        .unwrap();
    assert_eq!(outcome.result, Value::Null);
    let outcome = run(&template(&["true"]), &d.invocation, &RunLimits::default())
        .await
        .unwrap();
    assert_eq!(outcome.result, Value::Null);
    assert_eq!(outcome.outputs, Vec::<String>::new());
}

#[tokio::test]
async fn placeholders_and_environment_reach_the_command() {
    let d = dirs();
    let mut invocation = d.invocation.clone();
    invocation.input = Some(PathBuf::from("/cache/shard-1.txt"));
    invocation.inputs = BTreeMap::from([("model".into(), PathBuf::from("/cache/model.pkl"))]);
    invocation.params = json!({"lr": 0.1, "kind": "rf"})
        .as_object()
        .unwrap()
        .clone();
    let mut t = template(&[
        "python3",
        "-c",
        "import json, os, sys\n\
         env = {{k: v for k, v in os.environ.items() if k.startswith(('QUARRY_', 'EXTRA'))}}\n\
         print(json.dumps({{'argv': sys.argv[1:], 'env': env, 'cwd': os.getcwd()}}))",
        "{input}",
        "--model={inputs.model}",
        "{params.lr}",
        "{params.kind}",
        "{output_dir}",
        "{task_id}/{task_key}",
        "{{braces}}",
    ]);
    t.env = BTreeMap::from([("EXTRA".into(), "yes".into())]);
    let outcome = run(&t, &invocation, &RunLimits::default()).await.unwrap();
    let out = invocation.output_dir.to_str().unwrap();
    assert_eq!(
        outcome.result["argv"],
        json!([
            "/cache/shard-1.txt",
            "--model=/cache/model.pkl",
            "0.1",
            "rf",
            out,
            "t7/00007",
            "{braces}"
        ])
    );
    let params: Value =
        serde_json::from_str(outcome.result["env"]["QUARRY_PARAMS"].as_str().unwrap()).unwrap();
    assert_eq!(params, json!({"lr": 0.1, "kind": "rf"}));
    let mut env = outcome.result["env"].as_object().unwrap().clone();
    env.remove("QUARRY_PARAMS");
    // Variables the test process itself inherited (QUARRY_MINIO_BIN under
    // CI, say) pass through untouched; only what quarry sets is checked.
    env.retain(|name, _| std::env::var_os(name).is_none());
    assert_eq!(
        Value::Object(env),
        json!({
            "EXTRA": "yes",
            "QUARRY_INPUT": "/cache/shard-1.txt",
            "QUARRY_INPUT_MODEL": "/cache/model.pkl",
            "QUARRY_PARAM_LR": "0.1",
            "QUARRY_PARAM_KIND": "rf",
            "QUARRY_OUTPUT_DIR": out,
            "QUARRY_TASK_ID": "t7",
            "QUARRY_TASK_KEY": "00007",
        })
    );
    assert_eq!(
        outcome.result["cwd"],
        json!(invocation.work_dir.to_str().unwrap())
    );
}

#[tokio::test]
async fn parameters_cannot_inject_shell_syntax() {
    let d = dirs();
    let mut invocation = d.invocation.clone();
    let hostile = "$(touch pwned); `touch pwned2` && touch pwned3 | cat";
    invocation.params = json!({ "x": hostile }).as_object().unwrap().clone();
    let outcome = run(
        &template(&["printf", "%s", "{params.x}"]),
        &invocation,
        &RunLimits::default(),
    )
    .await
    .unwrap();
    assert_eq!(outcome.stdout_tail, hostile);
    let created: Vec<_> = std::fs::read_dir(&invocation.work_dir).unwrap().collect();
    assert!(created.is_empty(), "the command created {created:?}");
}

#[tokio::test]
async fn non_zero_exit_fails_with_status_and_stderr_tail() {
    let d = dirs();
    let err = run(
        &sh("echo 'bad input line 3' >&2; exit 3"),
        &d.invocation,
        &RunLimits::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(
        &err,
        CommandError::Failed { reason: ExitReason::Code(3), stderr_tail, .. }
            if stderr_tail == "bad input line 3\n"
    ));
    assert_eq!(err.kind(), ErrorKind::Failed);
    assert_eq!(
        err.to_string(),
        "`sh` failed with exit status 3; stderr ends with:\nbad input line 3"
    );
    let err = run(&template(&["false"]), &d.invocation, &RunLimits::default())
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "`false` failed with exit status 1");
}

#[tokio::test]
async fn death_by_signal_is_a_failure() {
    let d = dirs();
    let err = run(&sh("kill -9 $$"), &d.invocation, &RunLimits::default())
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        CommandError::Failed {
            reason: ExitReason::Signal(9),
            ..
        }
    ));
    assert_eq!(err.to_string(), "`sh` failed with signal 9 (SIGKILL)");
}

#[tokio::test]
async fn timeout_kills_the_whole_process_group() {
    let d = dirs();
    let mut t = sh(&format!("echo started >&2; {BACKGROUND_SLEEPER}"));
    // Long enough for `sh` to start its background child first, even on a
    // loaded machine.
    t.timeout = Some(Duration::from_secs(3));
    let err = run(&t, &d.invocation, &RunLimits::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut);
    assert_eq!(
        err.to_string(),
        "`sh` timed out after 3s; its process group was killed; stderr ends with:\nstarted"
    );
    let background = wait_for_pid(&d.invocation.work_dir.join("bg.pid")).await;
    assert_dies(background).await;
}

#[tokio::test]
async fn the_shorter_of_template_and_task_timeouts_wins() {
    let d = dirs();
    let mut t = sh("sleep 1000");
    t.timeout = Some(Duration::from_secs(3600));
    let limits = RunLimits {
        timeout: Some(Duration::from_millis(200)),
        ..Default::default()
    };
    let err = run(&t, &d.invocation, &limits).await.unwrap_err();
    assert!(
        matches!(err, CommandError::TimedOut { timeout, .. } if timeout == Duration::from_millis(200))
    );
}

#[tokio::test]
async fn explicit_cancellation_kills_the_whole_process_group() {
    let d = dirs();
    let (cancel, cancelled) = tokio::sync::oneshot::channel::<()>();
    let pid_file = d.invocation.work_dir.join("bg.pid");
    let canceller = async move {
        let pid = wait_for_pid(&pid_file).await;
        cancel.send(()).unwrap();
        pid
    };
    let t = sh(BACKGROUND_SLEEPER);
    let limits = RunLimits::default();
    let running = run_cancellable(&t, &d.invocation, &limits, async {
        let _ = cancelled.await;
    });
    let (result, background) = tokio::join!(running, canceller);
    let err = result.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled);
    assert_dies(background).await;
}

#[tokio::test]
async fn dropping_the_future_kills_the_whole_process_group() {
    let d = dirs();
    let invocation = d.invocation.clone();
    let task = tokio::spawn(async move {
        run(&sh(BACKGROUND_SLEEPER), &invocation, &RunLimits::default()).await
    });
    let background = wait_for_pid(&d.invocation.work_dir.join("bg.pid")).await;
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert_dies(background).await;
}

#[tokio::test]
async fn background_children_die_when_the_command_exits() {
    let d = dirs();
    let outcome = run(
        &sh("sleep 1000 & echo $! > bg.pid; echo '[1, 2]'"),
        &d.invocation,
        &RunLimits::default(),
    )
    .await
    .unwrap();
    assert_eq!(outcome.result, json!([1, 2]));
    let background = wait_for_pid(&d.invocation.work_dir.join("bg.pid")).await;
    assert_dies(background).await;
}

#[tokio::test]
async fn large_output_goes_to_logs_and_only_a_tail_stays_in_memory() {
    let d = dirs();
    let limits = RunLimits {
        tail_bytes: 1024,
        ..Default::default()
    };
    let outcome = run(
        &template(&[
            "python3",
            "-c",
            "import sys\n\
             for i in range(20000): print('line %06d' % i)\n\
             sys.stderr.write('e' * 300000)\n\
             print('{{\"lines\": 20000}}')",
        ]),
        &d.invocation,
        &limits,
    )
    .await
    .unwrap();
    assert_eq!(outcome.result, json!({"lines": 20000}));
    assert_eq!(outcome.stdout_tail.len(), 1024);
    assert!(outcome
        .stdout_tail
        .ends_with("line 019999\n{\"lines\": 20000}\n"));
    assert_eq!(outcome.stderr_tail, "e".repeat(1024));
    let stdout_log = std::fs::read_to_string(&outcome.stdout_log).unwrap();
    assert_eq!(stdout_log.len(), 20000 * 12 + "{\"lines\": 20000}\n".len());
    assert!(stdout_log.starts_with("line 000000\nline 000001\n"));
    assert_eq!(
        std::fs::metadata(&outcome.stderr_log).unwrap().len(),
        300000
    );
}

#[tokio::test]
async fn a_truncated_last_line_is_not_a_result() {
    let d = dirs();
    let limits = RunLimits {
        tail_bytes: 16,
        ..Default::default()
    };
    let outcome = run(
        &template(&["python3", "-c", "print([0] * 100)"]),
        &d.invocation,
        &limits,
    )
    .await
    .unwrap();
    assert_eq!(outcome.result, Value::Null);
}

#[tokio::test]
async fn files_in_the_output_directory_are_listed() {
    let d = dirs();
    let outcome = run(
        &sh(
            "mkdir -p \"$QUARRY_OUTPUT_DIR/part\" && echo 1 > {output_dir}/summary.json \
             && echo 2 > {output_dir}/part/0.csv && ln -s /etc/passwd {output_dir}/leak",
        ),
        &d.invocation,
        &RunLimits::default(),
    )
    .await
    .unwrap();
    assert_eq!(outcome.outputs, ["part/0.csv", "summary.json"]);
    assert_eq!(outcome.skipped_outputs.len(), 1);
    assert_eq!(outcome.skipped_outputs[0].path, Path::new("leak"));
    for relative in &outcome.outputs {
        assert_eq!(
            quarry_command::output_object_key("00007", relative).unwrap(),
            format!("00007/{relative}")
        );
    }
}

#[tokio::test]
async fn a_missing_program_is_a_spawn_error() {
    let d = dirs();
    let err = run(
        &template(&["quarry-no-such-program-xyz"]),
        &d.invocation,
        &RunLimits::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, CommandError::Spawn { program, .. } if program == "quarry-no-such-program-xyz")
    );
    assert!(err
        .to_string()
        .starts_with("cannot start `quarry-no-such-program-xyz`: "));
}

#[tokio::test]
async fn template_errors_are_rejections() {
    let d = dirs();
    let err = run(
        &template(&["cat", "{input}"]),
        &d.invocation,
        &RunLimits::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(
        err,
        CommandError::Template(TemplateError::NoInput { .. })
    ));
    assert_eq!(err.kind(), ErrorKind::Rejected);
    let err = run(&template(&[]), &d.invocation, &RunLimits::default())
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        CommandError::Template(TemplateError::EmptyArgv)
    ));
}
