//! Every kind of job-file error, with its exact position, key and message.

use quarry_job::{JobError, JobErrorKind, JobSpec, Position};
use std::path::Path;

fn parse(yaml: &str) -> Result<JobSpec, JobError> {
    JobSpec::from_yaml(yaml, "job.yaml", Path::new("/jobs"))
}

/// Parses `yaml`, expecting an error at `line:column` about `key`, and
/// returns its message.
#[track_caller]
fn error_at(yaml: &str, line: u64, column: u64, key: &str) -> String {
    let error = parse(yaml).expect_err("the job should be refused");
    assert_eq!(
        (error.position, error.key.as_str()),
        (Some(Position::new(line, column)), key),
        "{error}"
    );
    error.to_string()
}

#[test]
fn unknown_top_level_key_suggests_the_closest() {
    let yaml = "name: x\nrange: 10\nfunction: inc\nretires: 3\n";
    assert_eq!(
        error_at(yaml, 4, 1, "retires"),
        "job.yaml:4:1: unknown key `retires` in job; did you mean `retries`?"
    );
    let error = parse(yaml).unwrap_err();
    assert_eq!(
        *error.kind,
        JobErrorKind::UnknownKey {
            name: "retires".into(),
            section: "job".into(),
            suggestion: Some("retries".into())
        }
    );
}

#[test]
fn unknown_nested_key_names_its_section() {
    let yaml = "name: x\nfunction: inc\n\nrange:\n  start: 0\n  stop: 10\n  stpe: 2\n";
    assert_eq!(
        error_at(yaml, 7, 3, "range.stpe"),
        "job.yaml:7:3: unknown key `stpe` in range; did you mean `step`?"
    );
    let yaml = "name: x\nrange: 3\ncommand: [nproc]\nresources:\n  memory: 4GiB\n";
    assert_eq!(
        error_at(yaml, 5, 3, "resources.memory"),
        "job.yaml:5:3: unknown key `memory` in resources"
    );
}

#[test]
fn unknown_key_without_a_close_match_has_no_suggestion() {
    assert_eq!(
        error_at("name: x\ncolour: red\n", 2, 1, "colour"),
        "job.yaml:2:1: unknown key `colour` in job"
    );
}

#[test]
fn wrong_types_name_the_expected_type() {
    let base = "name: x\nrange: 10\nfunction: inc\n";
    assert_eq!(
        error_at(&format!("{base}retries: three\n"), 4, 10, "retries"),
        "job.yaml:4:10: `retries` must be a non-negative integer, found a string"
    );
    assert_eq!(
        error_at(&format!("{base}retries: 2.5\n"), 4, 10, "retries"),
        "job.yaml:4:10: `retries` must be a non-negative integer, found a number with a fraction"
    );
    assert_eq!(
        error_at(&format!("{base}resources: 4\n"), 4, 12, "resources"),
        "job.yaml:4:12: `resources` must be a mapping, found an integer"
    );
    assert_eq!(
        error_at("name: [a, b]\n", 1, 7, "name"),
        "job.yaml:1:7: `name` must be a string, found a list"
    );
    assert_eq!(
        error_at(
            "name: x\nrange: 5\ncommand: python3 train.py\n",
            3,
            10,
            "command"
        ),
        "job.yaml:3:10: `command` must be a list of arguments such as [python3, train.py, \
         \"{params.lr}\"] (no shell is involved), found a string"
    );
    assert_eq!(
        error_at("name: x\nitems: {a: 1}\nfunction: f\n", 2, 8, "items"),
        "job.yaml:2:8: `items` must be a list, found a mapping"
    );
}

#[test]
fn the_document_must_be_a_mapping() {
    assert_eq!(
        error_at("", 1, 1, ""),
        "job.yaml:1:1: the job file must be a mapping of job keys, found nothing (null)"
    );
    assert_eq!(
        error_at("# comment\n- a\n- b\n", 2, 1, ""),
        "job.yaml:2:1: the job file must be a mapping of job keys, found a list"
    );
}

#[test]
fn missing_keys_point_at_their_section() {
    assert_eq!(
        error_at("range: 10\nfunction: inc\n", 1, 1, "name"),
        "job.yaml:1:1: missing key `name` in job"
    );
    assert_eq!(
        error_at(
            "name: x\nfunction: inc\nrange:\n  start: 1\n",
            3,
            1,
            "range.stop"
        ),
        "job.yaml:3:1: missing key `stop` in range"
    );
    assert_eq!(
        error_at(
            "name: x\nrange: 1\nfunction:\n  args: {a: 1}\n",
            3,
            1,
            "function.name"
        ),
        "job.yaml:3:1: missing key `name` in function"
    );
}

#[test]
fn impossible_range_values() {
    assert_eq!(
        error_at(
            "name: x\nfunction: f\nrange:\n  stop: 10\n  step: 0\n",
            5,
            9,
            "range.step"
        ),
        "job.yaml:5:9: `range.step` must not be 0"
    );
    assert_eq!(
        error_at(
            "name: x\nfunction: f\nrange: {start: 5, stop: 3}\n",
            3,
            8,
            "range"
        ),
        "job.yaml:3:8: `range` is empty: start 5, stop 3 (exclusive), step 1 gives no value"
    );
    assert_eq!(
        error_at(
            "name: x\nfunction: f\nrange: {stop: 2000000000000}\n",
            3,
            8,
            "range"
        ),
        "job.yaml:3:8: `range` has 2000000000000 values; a job has at most 1099511627776 tasks"
    );
}

#[test]
fn empty_grid_and_items_are_refused() {
    let yaml = "name: x\nfunction: f\ngrid:\n  lr: [0.1, 0.01]\n  depth: []\n";
    assert_eq!(
        error_at(yaml, 5, 10, "grid.depth"),
        "job.yaml:5:10: `grid.depth` is an empty list: every grid parameter needs at least one \
         value"
    );
    assert_eq!(
        error_at("name: x\nfunction: f\ngrid: {}\n", 3, 1, "grid"),
        "job.yaml:3:1: `grid` is empty: give at least one parameter"
    );
    assert_eq!(
        error_at("name: x\nfunction: f\ngrid:\n  lr: 0.1\n", 4, 7, "grid.lr"),
        "job.yaml:4:7: `grid.lr` must be a list of values, found a number with a fraction"
    );
    assert_eq!(
        error_at("name: x\nfunction: f\nitems: []\n", 3, 8, "items"),
        "job.yaml:3:8: `items` is an empty list: give at least one item"
    );
}

#[test]
fn grid_names_must_be_usable_and_distinct() {
    assert_eq!(
        error_at(
            "name: x\nfunction: f\ngrid:\n  \"learning rate\": [1]\n",
            4,
            3,
            "grid.learning rate"
        ),
        "job.yaml:4:3: `grid.learning rate` is not a valid parameter name: use letters, digits, \
         `_` and `-`, starting with a letter or `_`"
    );
    assert_eq!(
        error_at(
            "name: x\nfunction: f\ngrid:\n  max-depth: [1]\n  max_depth: [2]\n",
            5,
            3,
            "grid.max_depth"
        ),
        "job.yaml:5:3: `grid.max_depth` clashes with `max-depth` (line 4): both become the \
         environment variable QUARRY_PARAM_MAX_DEPTH"
    );
}

#[test]
fn two_things_to_run_conflict() {
    let yaml = "name: x\nrange: 3\ncommand: [echo, hi]\nfunction: inc\n";
    assert_eq!(
        error_at(yaml, 4, 1, "function"),
        "job.yaml:4:1: `function` cannot be combined with `command` (line 3): a job has exactly \
         one of `function`, `command` or `op`"
    );
    let yaml = "name: x\nitems: [1]\nrange: 3\nfunction: inc\n";
    assert_eq!(
        error_at(yaml, 3, 1, "range"),
        "job.yaml:3:1: `range` cannot be combined with `items` (line 2): a job has exactly one \
         of `input`, `items`, `range` or `grid`"
    );
}

#[test]
fn nothing_to_run_or_map_over() {
    assert_eq!(
        error_at("name: x\nrange: 3\nretries: 1\n", 1, 1, ""),
        "job.yaml:1:1: the job does not say what to run: add one of `function`, `command` or `op`"
    );
    assert_eq!(
        error_at("name: x\nfunction: inc\n", 1, 1, ""),
        "job.yaml:1:1: the job does not say what to map over: add one of `input`, `items`, \
         `range` or `grid`"
    );
}

#[test]
fn ops_are_a_slot_without_ops_yet() {
    let yaml = "name: x\ninput: s3://b/logs/\nop:\n  name: wordcount\n  column: text\n";
    assert_eq!(
        error_at(yaml, 4, 9, "op.name"),
        "job.yaml:4:9: no built-in op named `wordcount` (built-in ops arrive in a later release)"
    );
    assert_eq!(
        error_at("name: x\ninput: s3://b/\nop: wordcount\n", 3, 5, "op"),
        "job.yaml:3:5: `op` must be a mapping with the op's `name` and its settings, found a \
         string"
    );
}

#[test]
fn yaml_syntax_errors_keep_the_parser_position() {
    let error = parse("name: x\nitems: [1, 2\nfunction: f\n").unwrap_err();
    assert!(
        matches!(*error.kind, JobErrorKind::Syntax { .. }),
        "{error:?}"
    );
    assert_eq!(error.position, Some(Position::new(3, 9)));
    assert!(
        error
            .to_string()
            .starts_with("job.yaml:3:9: invalid YAML: "),
        "{error}"
    );
}

#[test]
fn duplicate_keys_are_refused() {
    assert_eq!(
        error_at("name: x\nrange: 3\nfunction: f\nname: y\n", 4, 1, "name"),
        "job.yaml:4:1: duplicate key `name`: each key may appear once"
    );
}

#[test]
fn command_placeholders_are_checked_where_written() {
    let grid = "name: x\ngrid:\n  lr: [0.1]\ninputs:\n  data: s3://b/d.csv\n";
    assert_eq!(
        error_at(
            &format!("{grid}command: [python3, t.py, \"{{params.lrr}}\"]\n"),
            6,
            26,
            "command[2]"
        ),
        "job.yaml:6:26: `command[2]` uses `{params.lrr}`, but tasks of this job have `lr`; did \
         you mean `lr`?"
    );
    assert_eq!(
        error_at(
            &format!("{grid}command:\n  - cat\n  - \"{{inputs.dta}}\"\n"),
            8,
            5,
            "command[1]"
        ),
        "job.yaml:8:5: `command[1]` uses `{inputs.dta}`, but `inputs` has no `dta`; did you mean \
         `data`?"
    );
    assert_eq!(
        error_at(
            &format!("{grid}command: [cat, \"{{input}}\"]\n"),
            6,
            16,
            "command[1]"
        ),
        "job.yaml:6:16: `command[1]` uses `{input}`, but only `input:` jobs give each task an \
         input; tasks of a `grid` job get their values as `{params.lr}`"
    );
    assert_eq!(
        error_at(
            &format!("{grid}command: [echo, \"{{param.lr}}\"]\n"),
            6,
            17,
            "command[1]"
        ),
        "job.yaml:6:17: `command[1]` is not a valid argument template: unknown placeholder \
         `{param.lr}` in argument `{param.lr}`; known placeholders are {input}, {inputs.NAME}, \
         {params.KEY}, {output_dir}, {task_id}, {task_key} (write `{{` and `}}` for literal \
         braces)"
    );
    assert_eq!(
        error_at(
            "name: x\ninput: s3://b/\ncommand: [cat, \"{params.item}\"]\n",
            3,
            16,
            "command[1]"
        ),
        "job.yaml:3:16: `command[1]` uses `{params.item}`, but tasks of an `input` job have no \
         parameters"
    );
    assert_eq!(
        error_at("name: x\nrange: 3\ncommand: []\n", 3, 10, "command"),
        "job.yaml:3:10: `command` is empty: give at least the program to run"
    );
}

#[test]
fn durations_need_units() {
    let base = "name: x\nrange: 10\nfunction: inc\n";
    assert_eq!(
        error_at(&format!("{base}timeout: 30\n"), 4, 10, "timeout"),
        "job.yaml:4:10: `timeout` needs a unit: write `30s`, `5m` or `1h 30m`"
    );
    assert!(
        error_at(&format!("{base}timeout: 30 parsecs\n"), 4, 10, "timeout").starts_with(
            "job.yaml:4:10: `timeout` must be a duration such as `30s`, `5m` or `1h 30m` ("
        )
    );
    assert_eq!(
        error_at(&format!("{base}timeout: 0s\n"), 4, 10, "timeout"),
        "job.yaml:4:10: `timeout` must be longer than 0s"
    );
}

#[test]
fn numeric_bounds() {
    let base = "name: x\nrange: 10\nfunction: inc\n";
    assert_eq!(
        error_at(&format!("{base}max_fails: 0\n"), 4, 12, "max_fails"),
        "job.yaml:4:12: `max_fails` must be at least 1, not 0"
    );
    assert_eq!(
        error_at(&format!("{base}retries: -1\n"), 4, 10, "retries"),
        "job.yaml:4:10: `retries` must be at least 0, not -1"
    );
    assert_eq!(
        error_at(&format!("{base}priority: 3000000000\n"), 4, 11, "priority"),
        "job.yaml:4:11: `priority` must be at most 2147483647, not 3000000000"
    );
    assert_eq!(
        error_at(
            &format!("{base}resources:\n  cpus: 0\n"),
            5,
            9,
            "resources.cpus"
        ),
        "job.yaml:5:9: `resources.cpus` must be at least 1, not 0"
    );
}

#[test]
fn chunk_sizes_are_sizes() {
    let job = |chunk: &str| {
        format!("name: x\nfunction: f\ninput:\n  prefix: s3://b/\n  chunk_size: {chunk}\n")
    };
    assert_eq!(
        error_at(&job("64 parsecs"), 5, 15, "input.chunk_size"),
        "job.yaml:5:15: `input.chunk_size` must be a size such as `64MiB`, `1GB` or `4096` \
         (bytes); `64 parsecs` is not one"
    );
    assert_eq!(
        error_at(&job("0"), 5, 15, "input.chunk_size"),
        "job.yaml:5:15: `input.chunk_size` must be at least 1 byte"
    );
    assert_eq!(
        error_at(
            "name: x\nfunction: f\ninput:\n  chunk_size: 1MiB\n",
            3,
            1,
            "input.prefix"
        ),
        "job.yaml:3:1: missing key `prefix` in input"
    );
}

#[test]
fn invalid_globs_and_glob_outputs() {
    let error = error_at(
        "name: x\nfunction: f\ninput: \"s3://b/[a.txt\"\n",
        3,
        8,
        "input.prefix",
    );
    assert!(
        error.starts_with("job.yaml:3:8: `input.prefix` has an invalid glob `[a.txt`: "),
        "{error}"
    );
    assert_eq!(
        error_at(
            "name: x\nrange: 2\nfunction: f\noutput: s3://b/out/*\n",
            4,
            9,
            "output"
        ),
        "job.yaml:4:9: `output` must name one location, not a glob: `s3://b/out/*` contains one \
         of `*` `?` `[` `{`"
    );
}

#[test]
fn env_rules() {
    assert_eq!(
        error_at("name: x\nrange: 2\nfunction: f\nenv: {A: 1}\n", 4, 1, "env"),
        "job.yaml:4:1: `env` applies only to `command` jobs; a `function` runs inside the worker \
         process"
    );
    let command = "name: x\nrange: 2\ncommand: [env]\n";
    assert_eq!(
        error_at(
            &format!("{command}env:\n  QUARRY_TASK_ID: x\n"),
            5,
            3,
            "env.QUARRY_TASK_ID"
        ),
        "job.yaml:5:3: `env.QUARRY_TASK_ID` is reserved: quarry sets the QUARRY_* variables itself"
    );
    assert_eq!(
        error_at(&format!("{command}env:\n  1BAD: x\n"), 5, 3, "env.1BAD"),
        "job.yaml:5:3: `env.1BAD` is not a valid environment variable name: use letters, digits \
         and `_`, not starting with a digit"
    );
    assert_eq!(
        error_at(&format!("{command}env:\n  A: [1]\n"), 5, 6, "env.A"),
        "job.yaml:5:6: `env.A` must be a string or a number, found a list"
    );
}

#[test]
fn broadcast_input_rules() {
    let base = "name: x\nrange: 2\ncommand: [ls]\n";
    assert_eq!(
        error_at(
            &format!("{base}inputs:\n  model: s3://m/*.pkl\n"),
            5,
            10,
            "inputs.model"
        ),
        "job.yaml:5:10: `inputs.model` must name one location, not a glob: `s3://m/*.pkl` \
         contains one of `*` `?` `[` `{`"
    );
    assert_eq!(
        error_at(
            &format!("{base}inputs:\n  data: a\n  DATA: b\n"),
            6,
            3,
            "inputs.DATA"
        ),
        "job.yaml:6:3: `inputs.DATA` clashes with `data` (line 5): both become the environment \
         variable QUARRY_INPUT_DATA"
    );
    assert_eq!(
        error_at(&format!("{base}inputs: [a, b]\n"), 4, 9, "inputs"),
        "job.yaml:4:9: `inputs` must be a mapping of names to URLs or paths, found a list"
    );
}

#[test]
fn function_args_must_leave_room_for_parameters() {
    assert_eq!(
        error_at(
            "name: x\nrange: 3\nfunction:\n  name: f\n  args: [1]\n",
            5,
            9,
            "function.args"
        ),
        "job.yaml:5:9: `function.args` must be a mapping (the task parameters are merged into \
         it), found a list"
    );
    assert_eq!(
        error_at(
            "name: x\nrange: 3\nfunction:\n  name: f\n  args:\n    scale: 2\n    item: 1\n",
            7,
            5,
            "function.args.item"
        ),
        "job.yaml:7:5: `function.args.item` clashes with the task parameter `item` of this \
         `range` job"
    );
}

#[test]
fn render_quotes_the_offending_line() {
    let error = parse("name: x\nrange: 10\nfunction: inc\nretires: 3\n").unwrap_err();
    assert_eq!(
        error.render(),
        "job.yaml:4:1: unknown key `retires` in job; did you mean `retries`?\n  |\n4 | retires: \
         3\n  | ^"
    );
}

#[test]
fn unreadable_files_have_no_position() {
    let error = JobSpec::from_file(Path::new("/nonexistent/quarry/job.yaml")).unwrap_err();
    assert_eq!(error.position, None);
    assert!(matches!(*error.kind, JobErrorKind::Read { .. }));
    assert!(
        error
            .to_string()
            .starts_with("/nonexistent/quarry/job.yaml: cannot read the job file: "),
        "{error}"
    );
}

#[test]
fn binary_input_points_at_the_first_bad_character() {
    assert_eq!(
        error_at("name: x\nrange: 3\u{0}\u{1}\n", 2, 9, ""),
        "job.yaml:2:9: not a text file: character U+0000 cannot appear in YAML (is this a binary \
         file?)"
    );
    let error = parse("\u{7f}ELF\u{2}\u{1}").unwrap_err();
    assert_eq!(error.position, Some(Position::new(1, 1)));
    assert!(matches!(*error.kind, JobErrorKind::NotText { .. }));
    // The control character is not echoed back to the terminal.
    assert_eq!(
        error.render(),
        "job.yaml:1:1: not a text file: character U+007F cannot appear in YAML (is this a binary \
         file?)"
    );

    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("binary-job.yaml");
    std::fs::write(&path, b"name: x\nrange: 3\n\xff\xfe\x00garbage\n").unwrap();
    let error = JobSpec::from_file(&path).unwrap_err();
    assert_eq!(error.position, Some(Position::new(3, 1)));
    assert_eq!(
        error.to_string(),
        format!(
            "{}:3:1: not a text file: byte 0xFF cannot appear in YAML (is this a binary file?)",
            path.display()
        )
    );
}

#[test]
fn urls_without_a_bucket_are_refused_where_written() {
    assert_eq!(
        error_at(
            "name: x\nfunction: f\ninput:\n  prefix: \"s3://\"\n",
            4,
            11,
            "input.prefix"
        ),
        "job.yaml:4:11: `input.prefix` names no bucket: `s3://` should be written `s3://BUCKET/` \
         or `s3://BUCKET/PREFIX/`"
    );
    error_at("name: x\nfunction: f\ninput: s3://\n", 3, 8, "input.prefix");
    error_at(
        "name: x\nrange: 2\nfunction: f\noutput: s3:///out/\n",
        4,
        9,
        "output",
    );
    assert_eq!(
        error_at(
            "name: x\nrange: 2\ninputs:\n  model: file://model.pkl\ncommand: [cat]\n",
            4,
            10,
            "inputs.model"
        ),
        "job.yaml:4:10: `inputs.model` needs an absolute path: `file://model.pkl` should be \
         written `file:///ABSOLUTE/PATH`"
    );
}

#[test]
fn tab_errors_point_at_the_tab() {
    assert_eq!(
        error_at("name: x\n\trange: 10\nfunction: inc\n", 2, 1, ""),
        "job.yaml:2:1: invalid YAML: a tab is not allowed here: YAML indents with spaces"
    );
    error_at("name: x\nrange: 10\n\tfunction: inc\n", 3, 1, "");
    error_at(
        "name: x\nrange:\n  start: 1\n \tstop: 4\nfunction: f\n",
        4,
        2,
        "",
    );
    // Tabs where YAML allows them are fine.
    parse("name: \"a\tb\"\nrange: 10\nfunction: inc\n").unwrap();
}

#[test]
fn integers_too_large_for_their_field_say_so() {
    let base = "name: x\nrange: 10\nfunction: inc\n";
    assert_eq!(
        error_at(
            &format!("{base}retries: 99999999999999999999999\n"),
            4,
            10,
            "retries"
        ),
        "job.yaml:4:10: `retries` must be at most 4294967295, not 99999999999999999999999"
    );
    assert_eq!(
        error_at(
            &format!("{base}priority: -99999999999999999999\n"),
            4,
            11,
            "priority"
        ),
        "job.yaml:4:11: `priority` must be at least -2147483648, not -99999999999999999999"
    );
    assert_eq!(
        error_at(
            "name: x\nrange: 18446744073709551616\nfunction: inc\n",
            2,
            8,
            "range"
        ),
        "job.yaml:2:8: `range` must be at most 9223372036854775807, not 18446744073709551616"
    );
    assert_eq!(
        error_at(
            "name: x\nrange:\n  stop: &big 18446744073709551616\nfunction: inc\n",
            3,
            14,
            "range.stop"
        ),
        "job.yaml:3:14: `range.stop` must be at most 9223372036854775807, not 18446744073709551616"
    );
    assert_eq!(
        error_at(
            "name: x\nitems: [1, 99999999999999999999]\nfunction: inc\n",
            2,
            12,
            "items[1]"
        ),
        "job.yaml:2:12: `items[1]` is an integer too large for 64 bits (99999999999999999999); \
         quote it to pass it as a string"
    );
    // Command arguments keep the number as written.
    let spec = parse("name: x\nrange: 2\ncommand: [echo, 99999999999999999999]\n").unwrap();
    assert_eq!(
        spec.run,
        quarry_job::Run::Command(vec!["echo".into(), "99999999999999999999".into()])
    );
    // Real fractions are still named as such.
    assert_eq!(
        error_at(&format!("{base}retries: 1e30\n"), 4, 10, "retries"),
        "job.yaml:4:10: `retries` must be a non-negative integer, found a number with a fraction"
    );
}

#[test]
fn a_second_document_is_refused_in_plain_words() {
    let message = error_at(
        "name: x\nrange: 10\nfunction: inc\n---\nname: y\n",
        4,
        1,
        "",
    );
    assert_eq!(
        message,
        "job.yaml:4:1: a second YAML document starts here; a job file holds one job (remove \
         this `---` line, or give each job a file of its own)"
    );
    let error = parse("---\nname: x\nrange: 10\nfunction: inc\n--- # more\n").unwrap_err();
    assert_eq!(error.position, Some(Position::new(5, 1)));
    assert_eq!(*error.kind, JobErrorKind::MultipleDocuments);
    // One document that starts with `---` is fine.
    parse("# a job\n---\nname: x\nrange: 10\nfunction: inc\n").unwrap();
}

#[test]
fn a_reduce_needs_an_output_and_a_registered_function() {
    let message = error_at(
        "name: x\nrange: 10\nfunction: inc\nreduce: sum\n",
        4,
        1,
        "reduce",
    );
    assert!(message.contains("needs `output:`"), "{message}");

    let message = error_at(
        "name: x\nrange: 10\nfunction: inc\noutput: ./out/\nreduce:\n  command: [cat]\n",
        6,
        3,
        "reduce.command",
    );
    assert!(message.contains("not supported yet"), "{message}");

    let message = error_at(
        "name: x\nrange: 10\nfunction: inc\noutput: ./out/\nreduce:\n  function: sum\n  fan_in: 1\n",
        7,
        11,
        "reduce.fan_in",
    );
    assert_eq!(
        message,
        "job.yaml:7:11: `reduce.fan_in` must be at least 2, not 1"
    );
}

#[test]
fn a_reduce_is_a_name_or_a_section_with_a_fan_in() {
    let short = parse("name: x\nrange: 10\nfunction: inc\noutput: ./out/\nreduce: sum\n").unwrap();
    let reduce = short.reduce.expect("a reduce stage");
    assert_eq!((reduce.function.as_str(), reduce.fan_in), ("sum", None));
    let long = parse(
        "name: x\nrange: 10\nfunction: inc\noutput: ./out/\nreduce:\n  function: merge_counts\n  fan_in: 8\n",
    )
    .unwrap();
    let reduce = long.reduce.expect("a reduce stage");
    assert_eq!(
        (reduce.function.as_str(), reduce.fan_in),
        ("merge_counts", Some(8))
    );
}
