//! Replays the `job_spec` and `task_key` fuzz corpora (fuzz/corpus/…) and
//! the inputs the fuzzer once failed on (fuzz/regressions/…) as plain
//! `cargo test` cases, with the same properties the fuzz targets check
//! (fuzz/checks/job_spec.rs and fuzz/checks/task_key.rs).
//!
//! File names say what is expected of a job file: `valid-*` must parse,
//! `invalid-*` must be refused with an error, any other name (inputs the
//! fuzzer found) must not panic. Every task-key input must keep the output
//! rules.

#[path = "../../../fuzz/checks/job_spec.rs"]
mod job_spec;
#[path = "../../../fuzz/checks/task_key.rs"]
mod task_key;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// Every input file of `fuzz/corpus/TARGET` and `fuzz/regressions/TARGET`,
/// sorted by directory then name; a missing directory adds nothing.
fn inputs(target: &str) -> Vec<PathBuf> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut all = Vec::new();
    for kind in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(kind).join(target)) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.is_file())
            .filter(|path| path.extension().is_none_or(|ext| ext != "md"))
            .collect();
        files.sort();
        all.extend(files);
    }
    all
}

fn name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn every_job_spec_input_parses_or_is_refused_without_panicking() {
    let files = inputs("job_spec");
    let valid = files
        .iter()
        .filter(|p| name(p).starts_with("valid-"))
        .count();
    let invalid = files
        .iter()
        .filter(|p| name(p).starts_with("invalid-"))
        .count();
    assert!(valid >= 5 && invalid >= 5, "the job_spec seeds are missing");
    let mut failures = Vec::new();
    for path in &files {
        let bytes = std::fs::read(path).unwrap();
        let name = name(path);
        match catch_unwind(AssertUnwindSafe(|| job_spec::check_job_spec(&bytes))) {
            Err(_) => failures.push(format!("{name}: panicked")),
            Ok(None) if name.starts_with("valid-") => {
                let text = String::from_utf8_lossy(&bytes);
                let error = quarry_job::JobSpec::from_yaml(&text, &name, Path::new("/fuzz/jobs"))
                    .err()
                    .map_or_else(|| "not UTF-8".to_string(), |e| e.to_string());
                failures.push(format!("{name}: refused, but it is a valid seed: {error}"));
            }
            Ok(Some(_)) if name.starts_with("invalid-") => {
                failures.push(format!("{name}: accepted, but it is an invalid seed"))
            }
            Ok(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_task_key_input_keeps_the_output_rules() {
    let files = inputs("task_key");
    assert!(files.len() >= 5, "the task_key seeds are missing");
    let mut failures = Vec::new();
    for path in &files {
        let bytes = std::fs::read(path).unwrap();
        let Some((raw_key, relative, force_hash)) = task_key::split_task_key_input(&bytes) else {
            continue;
        };
        let checked = catch_unwind(AssertUnwindSafe(|| {
            task_key::check_task_key(raw_key, relative, force_hash)
        }));
        if checked.is_err() {
            failures.push(format!("{}: panicked", name(path)));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn an_alias_bomb_is_refused_by_the_parser_budget() {
    // Ten levels of ten aliases each would expand to 10^10 nodes. Built here
    // rather than kept in the fuzz corpus: even refused, it costs the parser
    // its whole node budget, which would slow every fuzzing run down.
    let mut text = String::from("name: laughs\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for level in 1..10 {
        let aliases = vec![format!("*a{}", level - 1); 10].join(", ");
        text.push_str(&format!("a{level}: &a{level} [{aliases}]\n"));
    }
    text.push_str("items: *a9\nfunction: echo\n");
    let error = quarry_job::JobSpec::from_yaml(&text, "bomb.yaml", Path::new("/fuzz/jobs"))
        .unwrap_err()
        .to_string();
    assert!(error.contains("budget"), "{error}");
}
