//! The example job files in tests/specs, and every `yaml` block of
//! docs/job-spec.md, parse and mean what they say.

use quarry_job::{JobSpec, MapOver, Run};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn spec_file(name: &str) -> (PathBuf, JobSpec) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/specs")
        .join(name);
    let spec = JobSpec::from_file(&path).unwrap_or_else(|e| panic!("{}", e.render()));
    (path, spec)
}

#[test]
fn wordcount_maps_over_a_glob_with_a_function() {
    let (_, spec) = spec_file("wordcount.yaml");
    let MapOver::Prefix(input) = &spec.map_over else {
        panic!("not a prefix job")
    };
    assert_eq!(input.prefix, "s3://corpus/books/**/*.txt");
    assert_eq!(input.base(), "s3://corpus/books/");
    assert!(matches!(&spec.run, Run::Function(f) if f.name == "wordcount" && f.args.is_none()));
    assert_eq!(spec.retries, 3);
    assert_eq!(spec.timeout, Some(Duration::from_secs(600)));
    assert_eq!(spec.output.as_deref(), Some("s3://results/wordcount/"));
}

#[test]
fn items_keep_strings_that_yaml_1_1_would_make_booleans() {
    let (path, spec) = spec_file("items.yaml");
    let MapOver::Items(items) = &spec.map_over else {
        panic!("not an items job")
    };
    assert_eq!(
        items,
        &[
            json!("en"),
            json!("de"),
            json!("fr"),
            json!("NO"),
            json!("ja")
        ]
    );
    let script = format!(
        "file://{}",
        path.parent().unwrap().join("tokenize.py").display()
    );
    assert_eq!(spec.inputs[0].name, "script");
    assert_eq!(spec.inputs[0].url, script);
    assert_eq!(spec.inputs[1].url, "s3://corpus/wiki-sample.jsonl");
    assert_eq!(spec.task_count(), Some(5));
    assert_eq!(spec.command_template().unwrap().argv.len(), 8);
}

#[test]
fn range_is_the_seed_inc_example() {
    let (_, spec) = spec_file("range.yaml");
    assert_eq!(spec.task_count(), Some(1000));
    assert_eq!(spec.priority, 10);
    assert_eq!(spec.retries, 1);
    let last = spec.expand().unwrap().last().unwrap();
    assert_eq!(spec.function_args(&last), Some(json!(999)));
}

#[test]
fn grid_has_3000_points_and_a_command_template() {
    let (_, spec) = spec_file("grid.yaml");
    assert_eq!(spec.task_count(), Some(3000));
    assert_eq!(spec.max_fails, Some(50));
    assert_eq!(spec.resources.cpus, 1);
    let template = spec.command_template().unwrap();
    assert_eq!(template.env["OMP_NUM_THREADS"], "1");
    assert_eq!(template.env["PYTHONHASHSEED"], "0");
    assert_eq!(template.timeout, Some(Duration::from_secs(1800)));
    let first = spec.expand().unwrap().next().unwrap();
    assert_eq!(
        first.params_json(),
        r#"{"criterion":"gini","max_depth":2,"max_features":"sqrt","min_samples_leaf":1,"n_estimators":10,"seed":0}"#
    );
    // The template travels in the job context and decodes on the worker.
    let decoded = quarry_command::CommandTemplate::from_context(&template.to_context()).unwrap();
    assert_eq!(decoded, template);
}

#[test]
fn chunked_prefix_resolves_against_the_file() {
    let (path, spec) = spec_file("chunked.yaml");
    let MapOver::Prefix(input) = &spec.map_over else {
        panic!("not a prefix job")
    };
    let dir = path.parent().unwrap().display().to_string();
    assert_eq!(input.prefix, format!("file://{dir}/data/*.csv"));
    assert_eq!(input.chunk_size, Some(64 * 1024 * 1024));
    assert_eq!(spec.output, Some(format!("file://{dir}/out/")));
}

#[test]
fn every_yaml_block_of_the_documentation_parses() {
    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/job-spec.md");
    let doc = std::fs::read_to_string(&doc_path).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (number, line) in doc.lines().enumerate() {
        match &mut current {
            None if line.trim_end() == "```yaml" => current = Some((number + 2, String::new())),
            Some((start, text)) if line.trim_end() == "```" => {
                blocks.push((*start, std::mem::take(text)));
                current = None;
            }
            Some((_, text)) => {
                text.push_str(line);
                text.push('\n');
            }
            None => {}
        }
    }
    assert!(
        blocks.len() >= 10,
        "found only {} yaml blocks",
        blocks.len()
    );
    for (line, block) in blocks {
        let label = format!("docs/job-spec.md (block at line {line})");
        if let Err(error) = JobSpec::from_yaml(&block, &label, Path::new("/docs")) {
            panic!("{}", error.render());
        }
    }
}
