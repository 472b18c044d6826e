//! Expansion into tasks: order, counts, keys and parameters.

use quarry_job::{ExpandError, JobSpec, MapOver, TaskDescription, MAX_TASK_KEY_BYTES};
use quarry_proto::{ByteRange, DataRef, Pin};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

fn parse(yaml: &str) -> JobSpec {
    JobSpec::from_yaml(yaml, "job.yaml", Path::new("/jobs/wc")).unwrap_or_else(|e| panic!("{e}"))
}

fn object(url: &str, size: u64) -> DataRef {
    DataRef {
        url: url.into(),
        pin: Pin::ETag(format!("etag-{size}")),
        size,
        range: None,
    }
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
    let task = prefix
        .expand_listing([object("s3://b/x", 1)])
        .unwrap()
        .next()
        .unwrap();
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
    assert!(matches!(
        range.expand_listing(Vec::new()),
        Err(ExpandError::NotAPrefixJob { kind: "range", .. })
    ));
}

#[test]
fn listed_objects_are_keyed_by_their_relative_key() {
    let spec = parse("name: p\nfunction: f\ninput: {prefix: \"s3://b/logs/**/*.txt\"}\n");
    let MapOver::Prefix(input) = &spec.map_over else {
        panic!("not a prefix job")
    };
    assert_eq!(input.base(), "s3://b/logs/");
    assert_eq!(input.glob().as_deref(), Some("**/*.txt"));
    let tasks: Vec<_> = spec
        .expand_listing([
            object("s3://b/logs/2024/01/a.txt", 10),
            object("s3://b/logs/b.txt", 20),
        ])
        .unwrap()
        .collect();
    assert_eq!(tasks.len(), 2);
    assert_eq!(tasks[0].key, "2024/01/a.txt");
    assert_eq!(
        tasks[0].input,
        Some(object("s3://b/logs/2024/01/a.txt", 10))
    );
    assert_eq!(tasks[1].key, "b.txt");
    assert_eq!(tasks[1].index, 1);
    assert!(tasks[1].params.is_empty());
}

#[test]
fn local_prefixes_resolve_against_the_job_file() {
    let spec = parse("name: p\nfunction: f\ninput: ./data/*.csv\noutput: ../out/\n");
    let MapOver::Prefix(input) = &spec.map_over else {
        panic!("not a prefix job")
    };
    assert_eq!(input.prefix, "file:///jobs/wc/data/*.csv");
    assert_eq!(spec.output.as_deref(), Some("file:///jobs/out/"));
    let task = spec
        .expand_listing([object("file:///jobs/wc/data/x.csv", 3)])
        .unwrap()
        .next()
        .unwrap();
    assert_eq!(task.key, "x.csv");
}

#[test]
fn a_prefix_naming_one_object_keys_it_by_file_name() {
    let spec = parse("name: p\nfunction: f\ninput: s3://b/data/big.csv\n");
    let task = spec
        .expand_listing([object("s3://b/data/big.csv", 3)])
        .unwrap()
        .next()
        .unwrap();
    assert_eq!(task.key, "big.csv");
}

#[test]
fn chunk_size_splits_objects_into_byte_ranges() {
    let spec = parse("name: p\nfunction: f\ninput:\n  prefix: s3://b/\n  chunk_size: 64\n");
    let tasks: Vec<_> = spec
        .expand_listing([
            object("s3://b/big", 150),
            object("s3://b/small", 10),
            object("s3://b/empty", 0),
        ])
        .unwrap()
        .collect();
    let summary: Vec<(u64, &str, Option<ByteRange>)> = tasks
        .iter()
        .map(|t| (t.index, t.key.as_str(), t.input.as_ref().unwrap().range))
        .collect();
    let range = |start, end| Some(ByteRange { start, end });
    assert_eq!(
        summary,
        vec![
            (0, "big/part-00000", range(0, 64)),
            (1, "big/part-00001", range(64, 128)),
            (2, "big/part-00002", range(128, 150)),
            (3, "small/part-00000", None),
            (4, "empty/part-00000", None),
        ]
    );
    let spec = parse("name: p\nfunction: f\ninput: {prefix: s3://b/, chunk_size: 64MiB}\n");
    let MapOver::Prefix(input) = &spec.map_over else {
        panic!("not a prefix job")
    };
    assert_eq!(input.chunk_size, Some(64 << 20));
}

#[test]
fn hostile_object_keys_give_safe_unique_task_keys() {
    let spec = parse("name: p\nfunction: f\ninput: s3://b/logs/\n");
    let long = "x".repeat(300);
    let urls = [
        "s3://b/logs/../../etc/passwd".to_string(),
        "s3://b/logs/..".to_string(),
        "s3://b/logs//abs".to_string(),
        "s3://b/logs/a\0b".to_string(),
        "s3://b/logs/a b".to_string(),
        "s3://b/logs/a_b".to_string(),
        "s3://b/logs/a\\..\\b".to_string(),
        "s3://b/logs/./.".to_string(),
        "s3://b/logs/日本語.txt".to_string(),
        format!("s3://b/logs/{long}"),
        format!("s3://b/logs/{long}/.."),
        format!("s3://b/logs/{}/y", "z/".repeat(150)),
        "s3://elsewhere/other".to_string(),
        "s3://b/logs/ok/fine.txt".to_string(),
    ];
    let tasks: Vec<_> = spec
        .expand_listing(urls.iter().map(|u| object(u, 1)))
        .unwrap()
        .collect();
    let mut seen = HashSet::new();
    for (task, url) in tasks.iter().zip(&urls) {
        let key = &task.key;
        assert!(
            !key.contains('\0') && !key.starts_with('/'),
            "{url:?} -> {key:?}"
        );
        assert!(
            !key.split('/')
                .any(|s| s.is_empty() || s == "." || s == ".."),
            "{url:?} -> {key:?}"
        );
        assert!(
            key.len() <= MAX_TASK_KEY_BYTES,
            "{url:?} -> {} bytes",
            key.len()
        );
        quarry_command::output_object_key(key, "result.json")
            .unwrap_or_else(|e| panic!("{url:?} -> {key:?}: {e}"));
        assert!(seen.insert(key.clone()), "duplicate key {key:?}");
    }
    assert_eq!(tasks.last().unwrap().key, "ok/fine.txt");
    assert_eq!(tasks[5].key, "a_b", "an unchanged key keeps its form");
    assert!(tasks[4].key.starts_with("a_b~"), "{}", tasks[4].key);
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
