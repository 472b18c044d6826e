//! Expansion into tasks: order, counts, keys and parameters.

use quarry_job::{ExpandError, JobSpec, MapOver, Split, TaskDescription};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

fn parse(yaml: &str) -> JobSpec {
    JobSpec::from_yaml(yaml, "job.yaml", Path::new("/jobs/wc")).unwrap_or_else(|e| panic!("{e}"))
}

fn keys_and_params(tasks: impl Iterator<Item = TaskDescription>) -> Vec<(String, Value)> {
    tasks
        .map(|t| (t.key.clone(), Value::Object(t.params)))
        .collect()
}

#[test]
fn grid_order_is_file_order_with_the_last_key_fastest() {
    let spec = parse("name: g\ngrid:\n  b: [1, 2]\n  a: [x, y, z]\nfunction: f\n");
    assert_eq!(spec.task_count(), Some(6));
    assert_eq!(
        keys_and_params(spec.expand().unwrap()),
        vec![
            ("00000".into(), json!({"b": 1, "a": "x"})),
            ("00001".into(), json!({"b": 1, "a": "y"})),
            ("00002".into(), json!({"b": 1, "a": "z"})),
            ("00003".into(), json!({"b": 2, "a": "x"})),
            ("00004".into(), json!({"b": 2, "a": "y"})),
            ("00005".into(), json!({"b": 2, "a": "z"})),
        ]
    );
}

#[test]
fn a_3000_point_grid_is_counted_without_expanding_and_expands_lazily() {
    let spec = parse(
        "name: g\nfunction: f\ngrid:\n  a: [1, 2, 3, 4, 5]\n  b: [1, 2, 3, 4, 5]\n  \
         c: [1, 2, 3, 4]\n  d: [1, 2]\n  e: [1, 2, 3]\n  f: [1, 2, 3, 4, 5]\n",
    );
    assert_eq!(spec.task_count(), Some(3000));
    let tasks = spec.expand().unwrap();
    assert_eq!(tasks.size_hint(), (3000, Some(3000)));
    let last = spec.expand().unwrap().nth(2999).unwrap();
    assert_eq!(last.key, "02999");
    assert_eq!(
        Value::Object(last.params),
        json!({"a": 5, "b": 5, "c": 4, "d": 2, "e": 3, "f": 5})
    );
    let all: Vec<_> = spec.expand().unwrap().collect();
    assert_eq!(all.len(), 3000);
    let distinct: HashSet<String> = all.iter().map(|t| t.params_json()).collect();
    assert_eq!(distinct.len(), 3000, "every point appears once");
    assert!(all.iter().enumerate().all(|(i, t)| t.index == i as u64));
}

#[test]
fn ranges_count_like_python() {
    let spec = parse("name: r\nfunction: f\nrange: {stop: 1000000}\n");
    assert_eq!(spec.task_count(), Some(1_000_000));
    let mut tasks = spec.expand().unwrap();
    let first = tasks.next().unwrap();
    assert_eq!(
        (first.key.as_str(), first.params_json()),
        ("000000", r#"{"item":0}"#.into())
    );
    let last = tasks.nth(999_998).unwrap();
    assert_eq!(
        (last.key.as_str(), last.params_json()),
        ("999999", r#"{"item":999999}"#.into())
    );
    assert!(tasks.next().is_none());

    let down = parse("name: r\nfunction: f\nrange: {start: 10, stop: 0, step: -3}\n");
    let items: Vec<Value> = down
        .expand()
        .unwrap()
        .map(|t| t.params["item"].clone())
        .collect();
    assert_eq!(items, [json!(10), json!(7), json!(4), json!(1)]);

    let stepped = parse("name: r\nfunction: f\nrange: {start: -5, stop: 6, step: 5}\n");
    assert_eq!(stepped.task_count(), Some(3));
    let short = parse("name: r\nfunction: f\nrange: 7\n");
    assert_eq!(short.task_count(), Some(7));
}

#[test]
fn items_become_item_params() {
    let spec = parse("name: i\nfunction: f\nitems: [a, 2, {k: v}, [1, 2], null, no]\n");
    assert_eq!(
        keys_and_params(spec.expand().unwrap()),
        vec![
            ("00000".into(), json!({"item": "a"})),
            ("00001".into(), json!({"item": 2})),
            ("00002".into(), json!({"item": {"k": "v"}})),
            ("00003".into(), json!({"item": [1, 2]})),
            ("00004".into(), json!({"item": null})),
            ("00005".into(), json!({"item": "no"})),
        ]
    );
}

#[test]
fn function_arguments_follow_the_documented_rule() {
    let range = parse("name: r\nfunction: inc\nrange: 3\n");
    let task = range.expand().unwrap().nth(2).unwrap();
    assert_eq!(range.function_args(&task), Some(json!(2)));

    let grid = parse("name: g\nfunction: {name: fit, args: {folds: 5}}\ngrid: {lr: [0.1]}\n");
    let task = grid.expand().unwrap().next().unwrap();
    assert_eq!(
        grid.function_args(&task),
        Some(json!({"folds": 5, "lr": 0.1}))
    );

    let bare_grid = parse("name: g\nfunction: fit\ngrid: {lr: [0.1]}\n");
    let task = bare_grid.expand().unwrap().next().unwrap();
    assert_eq!(bare_grid.function_args(&task), Some(json!({"lr": 0.1})));

    let prefix = parse("name: p\nfunction: {name: wc, args: [1]}\ninput: s3://b/\n");
    let task = TaskDescription {
        index: 0,
        key: "x".into(),
        params: Default::default(),
    };
    assert_eq!(prefix.function_args(&task), Some(json!([1])));

    let command = parse("name: c\ncommand: [true]\nrange: 1\n");
    let task = command.expand().unwrap().next().unwrap();
    assert_eq!(command.function_args(&task), None);
}

#[test]
fn command_jobs_yield_their_template() {
    let spec = parse(
        "name: c\nrange: 2\ncommand: [sleep, 1, \"{params.item}\"]\nenv: {N: 4}\ntimeout: 1m 30s\n",
    );
    let template = spec.command_template().unwrap();
    assert_eq!(template.argv, ["sleep", "1", "{params.item}"]);
    assert_eq!(template.env["N"], "4");
    assert_eq!(template.timeout, Some(Duration::from_secs(90)));
    template.validate().unwrap();
    assert_eq!(
        parse("name: f\nrange: 2\nfunction: f\n").command_template(),
        None
    );
}

#[test]
fn the_wrong_expansion_is_an_error() {
    let prefix = parse("name: p\nfunction: f\ninput: s3://b/logs/\n");
    assert_eq!(prefix.task_count(), None);
    assert_eq!(
        prefix.expand().unwrap_err(),
        ExpandError::NeedsListing {
            job: "p".into(),
            prefix: "s3://b/logs/".into()
        }
    );
    let range = parse("name: r\nfunction: f\nrange: 3\n");
    assert_eq!(range.task_at(2).unwrap().params["item"], json!(2));
    assert_eq!(range.task_at(3), None);
    assert_eq!(prefix.task_at(0), None);
}

#[test]
fn prefixes_split_into_base_and_glob_and_resolve_against_the_job_file() {
    let spec = parse("name: p\nfunction: f\ninput: {prefix: \"s3://b/logs/**/*.txt\"}\n");
    let MapOver::Prefix(input) = &spec.map_over else {
        panic!("not a prefix job")
    };
    assert_eq!(input.base(), "s3://b/logs/");
    assert_eq!(input.glob().as_deref(), Some("**/*.txt"));
    let spec = parse("name: p\nfunction: f\ninput: ./data/*.csv\noutput: ../out/\n");
    let MapOver::Prefix(input) = &spec.map_over else {
        panic!("not a prefix job")
    };
    assert_eq!(input.prefix, "file:///jobs/wc/data/*.csv");
    assert_eq!(spec.output.as_deref(), Some("file:///jobs/out/"));
}

#[test]
fn chunking_is_line_aligned_unless_the_file_says_bytes() {
    let chunked = |yaml: &str| match parse(yaml).map_over {
        MapOver::Prefix(input) => (input.chunk_size, input.split),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        chunked("name: p\nfunction: f\ninput: {prefix: s3://b/, chunk_size: 64MiB}\n"),
        (Some(64 << 20), Split::Lines)
    );
    assert_eq!(
        chunked("name: p\nfunction: f\ninput: {prefix: s3://b/, chunk_size: 64, split: bytes}\n"),
        (Some(64), Split::Bytes)
    );
    assert_eq!(
        chunked("name: p\nfunction: f\ninput: s3://b/\n"),
        (None, Split::Lines)
    );
    for (yaml, message) in [
        (
            "name: p\nfunction: f\ninput: {prefix: s3://b/, chunk_size: 64, split: words}\n",
            "must be `lines` or `bytes`",
        ),
        (
            "name: p\nfunction: f\ninput: {prefix: s3://b/, split: bytes}\n",
            "no `chunk_size`",
        ),
    ] {
        let error = JobSpec::from_yaml(yaml, "job.yaml", Path::new("/jobs")).unwrap_err();
        let text = error.render();
        assert!(
            text.contains("input.split") && text.contains(message),
            "{text}"
        );
        assert_eq!(error.position.map(|p| p.line), Some(3));
    }
}

#[test]
fn summary_describes_the_job_and_its_first_tasks() {
    let spec = parse("name: g\ngrid:\n  lr: [0.1, 0.01]\n  depth: [2, 4]\ncommand: [fit, \"{params.lr}\"]\noutput: s3://r/\n");
    assert_eq!(
        spec.summary(2).to_string(),
        "job:      g\n\
         maps:     a grid of lr (2) × depth (2)\n\
         runs:     command fit {params.lr}\n\
         tasks:    4\n\
         output:   s3://r/\n\
         first tasks:\n  \
         00000  {\"depth\":2,\"lr\":0.1}\n  \
         00001  {\"depth\":4,\"lr\":0.1}\n"
    );
    let prefix = parse("name: p\nfunction: wordcount\ninput: s3://b/\n");
    assert_eq!(
        prefix.summary(5).to_string(),
        "job:      p\n\
         maps:     the objects under s3://b/\n\
         runs:     function wordcount\n\
         tasks:    one per listed object (counted at submit)\n"
    );
}
