//! Turning the positioned YAML tree into a [`JobSpec`], with an error that
//! names file, line, column and key for everything that is wrong.

use crate::error::{suggest, JobError, JobErrorKind, Position};
use crate::location::{resolve, split_glob, url_problem, GLOB_CHARS};
use crate::size::parse_size;
use crate::spec::{
    BroadcastInput, FunctionCall, Grid, GridAxis, JobSpec, MapOver, OpCall, PrefixInput, RangeSpec,
    ReduceSpec, Resources, Run, Split, BUILTIN_OPS, DEFAULT_RETRIES, MAX_TASKS,
};
use crate::yaml::{self, Key, Node, NodeValue, YamlErrorKind};
use quarry_command::{input_env_var, param_env_var, ArgTemplate, Placeholder};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

const JOB_KEYS: &[&str] = &[
    "name",
    "input",
    "items",
    "range",
    "grid",
    "inputs",
    "function",
    "command",
    "op",
    "output",
    "retries",
    "timeout",
    "max_fails",
    "priority",
    "resources",
    "env",
    "reduce",
];
const MAP_OVER_KEYS: &[&str] = &["input", "items", "range", "grid"];
const MAP_OVER_GROUP: &str = "`input`, `items`, `range` or `grid`";
const RUN_KEYS: &[&str] = &["function", "command", "op"];
const RUN_GROUP: &str = "`function`, `command` or `op`";

/// What every error needs: the file name and its lines.
struct Ctx<'a> {
    file: &'a str,
    lines: Vec<&'a str>,
    base_dir: &'a Path,
}

type Result<T> = std::result::Result<T, JobError>;

impl Ctx<'_> {
    fn error(&self, at: Position, key: &str, kind: JobErrorKind) -> JobError {
        JobError {
            file: self.file.to_owned(),
            position: Some(at),
            key: key.to_owned(),
            kind: Box::new(kind),
            line_text: usize::try_from(at.line)
                .ok()
                .and_then(|line| self.lines.get(line.checked_sub(1)?))
                .map(|line| line.to_string()),
        }
    }

    fn invalid(&self, at: Position, key: &str, message: impl Into<String>) -> JobError {
        self.error(
            at,
            key,
            JobErrorKind::InvalidValue {
                message: message.into(),
            },
        )
    }

    fn wrong_type(&self, node: &Node, key: &str, expected: &'static str) -> JobError {
        self.error(
            node.at,
            key,
            JobErrorKind::WrongType {
                expected,
                found: node.value.describe(),
            },
        )
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// A mapping whose keys were checked against the allowed ones.
struct Section<'n> {
    path: String,
    name: &'static str,
    /// Where the section is named (its key), for "missing key" errors.
    at: Position,
    entries: &'n [(Key, Node)],
}

impl<'n> Section<'n> {
    fn new(
        ctx: &Ctx<'_>,
        node: &'n Node,
        path: &str,
        name: &'static str,
        at: Position,
        allowed: &[&str],
    ) -> Result<Section<'n>> {
        let NodeValue::Map(entries) = &node.value else {
            return Err(ctx.wrong_type(node, path, "a mapping"));
        };
        for (key, _) in entries {
            if !allowed.contains(&key.name.as_str()) {
                return Err(ctx.error(
                    key.at,
                    &join(path, &key.name),
                    JobErrorKind::UnknownKey {
                        name: key.name.clone(),
                        section: name.to_owned(),
                        suggestion: suggest(&key.name, allowed.iter().copied()),
                    },
                ));
            }
        }
        Ok(Section {
            path: path.to_owned(),
            name,
            at,
            entries,
        })
    }

    fn entry(&self, key: &str) -> Option<&'n (Key, Node)> {
        self.entries.iter().find(|(k, _)| k.name == key)
    }

    fn get(&self, key: &str) -> Option<&'n Node> {
        self.entry(key).map(|(_, node)| node)
    }

    fn required(&self, ctx: &Ctx<'_>, key: &'static str) -> Result<&'n Node> {
        self.get(key).ok_or_else(|| {
            ctx.error(
                self.at,
                &self.path_of(key),
                JobErrorKind::MissingKey {
                    name: key,
                    section: self.name.to_owned(),
                },
            )
        })
    }

    fn path_of(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// The one key of `group` present; an error if none or several are.
    fn exactly_one(
        &self,
        ctx: &Ctx<'_>,
        group: &[&str],
        purpose: &'static str,
        group_text: &'static str,
    ) -> Result<&'n (Key, Node)> {
        let mut present = self
            .entries
            .iter()
            .filter(|(key, _)| group.contains(&key.name.as_str()));
        let first = present.next().ok_or_else(|| {
            ctx.error(
                self.at,
                &self.path,
                JobErrorKind::MissingOneOf {
                    purpose,
                    group: group_text,
                },
            )
        })?;
        if let Some((second, _)) = present.next() {
            return Err(ctx.error(
                second.at,
                &self.path_of(&second.name),
                JobErrorKind::Conflict {
                    first: first.0.name.clone(),
                    first_at: first.0.at,
                    group: group_text,
                },
            ));
        }
        Ok(first)
    }
}

/// The error for a job file whose bytes are not UTF-8: where the first bad
/// byte is.
pub(crate) fn not_utf8(bytes: &[u8], error: &std::str::Utf8Error, file: &str) -> JobError {
    let at = yaml::first_invalid_utf8(bytes, error.valid_up_to());
    JobError {
        file: file.to_owned(),
        position: Some(at),
        key: String::new(),
        kind: Box::new(JobErrorKind::NotText {
            found: format!("byte 0x{:02X}", bytes[error.valid_up_to()]),
        }),
        line_text: None,
    }
}

/// Parses and validates a whole job file.
pub(crate) fn parse_job(text: &str, file: &str, base_dir: &Path) -> Result<JobSpec> {
    let ctx = Ctx {
        file,
        lines: text.lines().collect(),
        base_dir,
    };
    let root = yaml::parse(text).map_err(|e| match e.kind {
        YamlErrorKind::DuplicateKey(key) => ctx.error(e.at, &key, JobErrorKind::DuplicateKey),
        YamlErrorKind::MultipleDocuments => ctx.error(e.at, "", JobErrorKind::MultipleDocuments),
        YamlErrorKind::Syntax(message) => ctx.error(e.at, "", JobErrorKind::Syntax { message }),
        YamlErrorKind::NotText(character) => JobError {
            line_text: None,
            ..ctx.error(
                e.at,
                "",
                JobErrorKind::NotText {
                    found: format!("character U+{:04X}", u32::from(character)),
                },
            )
        },
    })?;
    if !matches!(root.value, NodeValue::Map(_)) {
        return Err(ctx.wrong_type(&root, "", "a mapping of job keys"));
    }
    let job = Section::new(&ctx, &root, "", "job", root.at, JOB_KEYS)?;

    let name = non_empty_string(&ctx, job.required(&ctx, "name")?, "name")?;
    let inputs = match job.get("inputs") {
        Some(node) => broadcast_inputs(&ctx, node)?,
        None => Vec::new(),
    };
    let (over_key, over_node) =
        job.exactly_one(&ctx, MAP_OVER_KEYS, "what to map over", MAP_OVER_GROUP)?;
    let map_over = match over_key.name.as_str() {
        "input" => MapOver::Prefix(prefix_input(&ctx, over_key, over_node)?),
        "items" => MapOver::Items(items(&ctx, over_node)?),
        "range" => MapOver::Range(range(&ctx, over_key, over_node)?),
        _ => MapOver::Grid(grid(&ctx, over_key, over_node)?),
    };
    let (run_key, run_node) = job.exactly_one(&ctx, RUN_KEYS, "what to run", RUN_GROUP)?;
    let run = match run_key.name.as_str() {
        "function" => Run::Function(function(&ctx, run_key, run_node, &map_over)?),
        "command" => Run::Command(command(&ctx, run_node, &map_over, &inputs)?),
        _ => Run::Op(op(&ctx, run_key, run_node)?),
    };

    let output = job
        .get("output")
        .map(|node| location(&ctx, node, "output"))
        .transpose()?;
    let retries = match job.get("retries") {
        Some(node) => bounded(&ctx, node, "retries", "a non-negative integer", 0, u32::MAX)?,
        None => DEFAULT_RETRIES,
    };
    let timeout = job
        .get("timeout")
        .map(|node| duration(&ctx, node, "timeout"))
        .transpose()?;
    let max_fails = job
        .get("max_fails")
        .map(|node| bounded(&ctx, node, "max_fails", "a positive integer", 1, u64::MAX))
        .transpose()?;
    let priority = match job.get("priority") {
        Some(node) => bounded(&ctx, node, "priority", "an integer", i32::MIN, i32::MAX)?,
        None => 0,
    };
    let resources = match job.entry("resources") {
        Some((key, node)) => resources(&ctx, key, node)?,
        None => Resources::default(),
    };
    let env = match job.entry("env") {
        Some((key, node)) => {
            if !matches!(run, Run::Command(_)) {
                return Err(ctx.invalid(
                    key.at,
                    "env",
                    format!(
                        "applies only to `command` jobs; a `{}` runs inside the worker process",
                        run_key.name
                    ),
                ));
            }
            env(&ctx, node)?
        }
        None => BTreeMap::new(),
    };
    let reduce = match job.entry("reduce") {
        Some((key, node)) => {
            if output.is_none() {
                return Err(ctx.invalid(
                    key.at,
                    "reduce",
                    "needs `output:`: the job's result is written to OUTPUT/_result.json, and \
                     reducers read the map results stored there",
                ));
            }
            Some(reduce(&ctx, key, node)?)
        }
        None => None,
    };
    Ok(JobSpec {
        name,
        map_over,
        inputs,
        run,
        output,
        retries,
        timeout,
        max_fails,
        priority,
        resources,
        env,
        reduce,
    })
}

fn string<'n>(ctx: &Ctx<'_>, node: &'n Node, key: &str) -> Result<&'n str> {
    match &node.value {
        NodeValue::Str(text) => Ok(text),
        _ => Err(ctx.wrong_type(node, key, "a string")),
    }
}

fn non_empty_string(ctx: &Ctx<'_>, node: &Node, key: &str) -> Result<String> {
    let text = string(ctx, node, key)?;
    if text.trim().is_empty() {
        return Err(ctx.invalid(node.at, key, "must not be empty"));
    }
    Ok(text.to_owned())
}

/// A scalar as text: strings verbatim, numbers and booleans as written in
/// canonical form (quote a value to keep its exact spelling).
fn scalar_text(ctx: &Ctx<'_>, node: &Node, key: &str) -> Result<String> {
    match &node.value {
        NodeValue::Str(text) => Ok(text.clone()),
        NodeValue::Int(i) => Ok(i.to_string()),
        NodeValue::UInt(u) => Ok(u.to_string()),
        NodeValue::Float(f) => Ok(f.to_string()),
        NodeValue::BigInt(text) => Ok(text.clone()),
        NodeValue::Bool(b) => Ok(b.to_string()),
        _ => Err(ctx.wrong_type(node, key, "a string or a number")),
    }
}

fn integer(ctx: &Ctx<'_>, node: &Node, key: &str, expected: &'static str) -> Result<i128> {
    match node.value {
        NodeValue::Int(i) => Ok(i128::from(i)),
        NodeValue::UInt(u) => Ok(i128::from(u)),
        _ => Err(ctx.wrong_type(node, key, expected)),
    }
}

/// An integer within `min..=max` of the target type.
fn bounded<T>(
    ctx: &Ctx<'_>,
    node: &Node,
    key: &str,
    expected: &'static str,
    min: T,
    max: T,
) -> Result<T>
where
    T: Copy + Into<i128> + TryFrom<i128> + std::fmt::Display,
{
    if let NodeValue::BigInt(text) = &node.value {
        let message = if text.starts_with('-') {
            format!("must be at least {min}, not {text}")
        } else {
            format!("must be at most {max}, not {text}")
        };
        return Err(ctx.invalid(node.at, key, message));
    }
    let value = integer(ctx, node, key, expected)?;
    if value < min.into() {
        return Err(ctx.invalid(node.at, key, format!("must be at least {min}, not {value}")));
    }
    if value > max.into() {
        return Err(ctx.invalid(node.at, key, format!("must be at most {max}, not {value}")));
    }
    T::try_from(value).map_err(|_| ctx.invalid(node.at, key, "is out of range"))
}

/// Any YAML value as JSON.
fn json(ctx: &Ctx<'_>, node: &Node, key: &str) -> Result<Value> {
    Ok(match &node.value {
        NodeValue::Null => Value::Null,
        NodeValue::Bool(b) => Value::Bool(*b),
        NodeValue::Int(i) => Value::from(*i),
        NodeValue::UInt(u) => Value::from(*u),
        NodeValue::Float(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .ok_or_else(|| ctx.invalid(node.at, key, "must be a finite number"))?,
        NodeValue::BigInt(text) => {
            return Err(ctx.invalid(
                node.at,
                key,
                format!(
                    "is an integer too large for 64 bits ({text}); quote it to pass it as a string"
                ),
            ))
        }
        NodeValue::Str(s) => Value::String(s.clone()),
        NodeValue::Seq(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| json(ctx, item, &format!("{key}[{i}]")))
                .collect::<Result<_>>()?,
        ),
        NodeValue::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| Ok((k.name.clone(), json(ctx, v, &join(key, &k.name))?)))
                .collect::<Result<_>>()?,
        ),
    })
}

/// A URL or local path naming one object or prefix (no glob).
fn location(ctx: &Ctx<'_>, node: &Node, key: &str) -> Result<String> {
    let text = non_empty_string(ctx, node, key)?;
    if text.contains(GLOB_CHARS) {
        return Err(ctx.invalid(
            node.at,
            key,
            format!(
                "must name one location, not a glob: `{text}` contains one of {}",
                GLOB_CHARS
                    .iter()
                    .map(|c| format!("`{c}`"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        ));
    }
    if let Some(problem) = url_problem(&text) {
        return Err(ctx.invalid(node.at, key, problem));
    }
    Ok(resolve(&text, ctx.base_dir))
}

/// Names usable in placeholders and environment variable names.
fn check_identifier(ctx: &Ctx<'_>, key: &Key, path: &str, what: &str) -> Result<()> {
    let mut chars = key.name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid {
        return Err(ctx.invalid(
            key.at,
            path,
            format!(
                "is not a valid {what} name: use letters, digits, `_` and `-`, starting with a \
                 letter or `_`"
            ),
        ));
    }
    Ok(())
}

/// Refuses two names that map to the same environment variable.
fn check_env_collision(
    ctx: &Ctx<'_>,
    seen: &mut HashMap<String, (String, Position)>,
    variable: String,
    key: &Key,
    path: &str,
) -> Result<()> {
    if let Some((other, at)) = seen.get(&variable) {
        return Err(ctx.invalid(
            key.at,
            path,
            format!(
                "clashes with `{other}` (line {}): both become the environment variable {variable}",
                at.line
            ),
        ));
    }
    seen.insert(variable, (key.name.clone(), key.at));
    Ok(())
}

fn broadcast_inputs(ctx: &Ctx<'_>, node: &Node) -> Result<Vec<BroadcastInput>> {
    let NodeValue::Map(entries) = &node.value else {
        return Err(ctx.wrong_type(node, "inputs", "a mapping of names to URLs or paths"));
    };
    let mut seen = HashMap::new();
    let mut inputs = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        let path = join("inputs", &key.name);
        check_identifier(ctx, key, &path, "input")?;
        check_env_collision(ctx, &mut seen, input_env_var(&key.name), key, &path)?;
        inputs.push(BroadcastInput {
            name: key.name.clone(),
            url: location(ctx, value, &path)?,
        });
    }
    Ok(inputs)
}

fn prefix_input(ctx: &Ctx<'_>, key: &Key, node: &Node) -> Result<PrefixInput> {
    // `input: s3://bucket/logs/` is short for `input: {prefix: …}`.
    let (prefix_node, chunk_size, split) = if let NodeValue::Str(_) = node.value {
        (node, None, Split::Lines)
    } else {
        let section = Section::new(
            ctx,
            node,
            "input",
            "input",
            key.at,
            &["prefix", "chunk_size", "split"],
        )?;
        let chunk_size = section
            .get("chunk_size")
            .map(|n| chunk_size(ctx, n))
            .transpose()?;
        let split = match section.get("split") {
            None => Split::Lines,
            Some(n) => {
                let split = match string(ctx, n, "input.split")? {
                    "lines" => Split::Lines,
                    "bytes" => Split::Bytes,
                    other => {
                        return Err(ctx.invalid(
                            n.at,
                            "input.split",
                            format!("must be `lines` or `bytes`, not `{other}`"),
                        ))
                    }
                };
                if chunk_size.is_none() {
                    return Err(ctx.invalid(
                        n.at,
                        "input.split",
                        "says how to cut chunks, but there is no `chunk_size`",
                    ));
                }
                split
            }
        };
        (section.required(ctx, "prefix")?, chunk_size, split)
    };
    let text = non_empty_string(ctx, prefix_node, "input.prefix")?;
    if let Some(problem) = url_problem(&text) {
        return Err(ctx.invalid(prefix_node.at, "input.prefix", problem));
    }
    let prefix = resolve(&text, ctx.base_dir);
    if let Some(pattern) = split_glob(&prefix).1 {
        globset::GlobBuilder::new(&pattern)
            .literal_separator(true)
            .build()
            .map_err(|e| {
                ctx.invalid(
                    prefix_node.at,
                    "input.prefix",
                    format!("has an invalid glob `{pattern}`: {}", e.kind()),
                )
            })?;
    }
    Ok(PrefixInput {
        prefix,
        chunk_size,
        split,
    })
}

fn chunk_size(ctx: &Ctx<'_>, node: &Node) -> Result<u64> {
    let key = "input.chunk_size";
    let bytes = match &node.value {
        NodeValue::Str(text) => parse_size(text).map_err(|m| ctx.invalid(node.at, key, m))?,
        NodeValue::Int(_) | NodeValue::UInt(_) | NodeValue::BigInt(_) => {
            bounded(ctx, node, key, "a size", 0, u64::MAX)?
        }
        _ => return Err(ctx.wrong_type(node, key, "a size such as `64MiB` or a number of bytes")),
    };
    if bytes == 0 {
        return Err(ctx.invalid(node.at, key, "must be at least 1 byte"));
    }
    Ok(bytes)
}

fn items(ctx: &Ctx<'_>, node: &Node) -> Result<Vec<Value>> {
    let NodeValue::Seq(values) = &node.value else {
        return Err(ctx.wrong_type(node, "items", "a list"));
    };
    if values.is_empty() {
        return Err(ctx.invalid(node.at, "items", "is an empty list: give at least one item"));
    }
    values
        .iter()
        .enumerate()
        .map(|(i, value)| json(ctx, value, &format!("items[{i}]")))
        .collect()
}

fn range(ctx: &Ctx<'_>, key: &Key, node: &Node) -> Result<RangeSpec> {
    let i64_of = |node: &Node, key: &str| bounded(ctx, node, key, "an integer", i64::MIN, i64::MAX);
    // `range: 1000` is short for `range: {stop: 1000}`.
    let spec = if let NodeValue::Int(_) | NodeValue::UInt(_) | NodeValue::BigInt(_) = node.value {
        RangeSpec {
            start: 0,
            stop: i64_of(node, "range")?,
            step: 1,
        }
    } else {
        let section = Section::new(
            ctx,
            node,
            "range",
            "range",
            key.at,
            &["start", "stop", "step"],
        )?;
        let stop = i64_of(section.required(ctx, "stop")?, "range.stop")?;
        let start = match section.get("start") {
            Some(n) => i64_of(n, "range.start")?,
            None => 0,
        };
        let step = match section.get("step") {
            Some(n) => {
                let step = i64_of(n, "range.step")?;
                if step == 0 {
                    return Err(ctx.invalid(n.at, "range.step", "must not be 0"));
                }
                step
            }
            None => 1,
        };
        RangeSpec { start, stop, step }
    };
    if spec.is_empty() {
        return Err(ctx.invalid(
            node.at,
            "range",
            format!(
                "is empty: start {}, stop {} (exclusive), step {} gives no value",
                spec.start, spec.stop, spec.step
            ),
        ));
    }
    if spec.len() > MAX_TASKS {
        return Err(ctx.invalid(
            node.at,
            "range",
            format!(
                "has {} values; a job has at most {MAX_TASKS} tasks",
                spec.len()
            ),
        ));
    }
    Ok(spec)
}

fn grid(ctx: &Ctx<'_>, key: &Key, node: &Node) -> Result<Grid> {
    let NodeValue::Map(entries) = &node.value else {
        return Err(ctx.wrong_type(
            node,
            "grid",
            "a mapping of parameter names to lists of values",
        ));
    };
    if entries.is_empty() {
        return Err(ctx.invalid(key.at, "grid", "is empty: give at least one parameter"));
    }
    let mut seen = HashMap::new();
    let mut axes = Vec::with_capacity(entries.len());
    let mut points: u128 = 1;
    for (axis_key, values) in entries {
        let path = join("grid", &axis_key.name);
        check_identifier(ctx, axis_key, &path, "parameter")?;
        check_env_collision(
            ctx,
            &mut seen,
            param_env_var(&axis_key.name),
            axis_key,
            &path,
        )?;
        let NodeValue::Seq(items) = &values.value else {
            return Err(ctx.wrong_type(values, &path, "a list of values"));
        };
        if items.is_empty() {
            return Err(ctx.invalid(
                values.at,
                &path,
                "is an empty list: every grid parameter needs at least one value",
            ));
        }
        let values = items
            .iter()
            .enumerate()
            .map(|(i, item)| json(ctx, item, &format!("{path}[{i}]")))
            .collect::<Result<Vec<_>>>()?;
        points = points.saturating_mul(values.len() as u128);
        axes.push(GridAxis {
            name: axis_key.name.clone(),
            values,
        });
    }
    if points > u128::from(MAX_TASKS) {
        return Err(ctx.invalid(
            key.at,
            "grid",
            format!("has {points} points; a job has at most {MAX_TASKS} tasks"),
        ));
    }
    Ok(Grid { axes })
}

fn function(ctx: &Ctx<'_>, key: &Key, node: &Node, map_over: &MapOver) -> Result<FunctionCall> {
    // `function: inc` is short for `function: {name: inc}`.
    if let NodeValue::Str(_) = node.value {
        return Ok(FunctionCall {
            name: non_empty_string(ctx, node, "function")?,
            args: None,
        });
    }
    let section = Section::new(ctx, node, "function", "function", key.at, &["name", "args"])?;
    let name = non_empty_string(ctx, section.required(ctx, "name")?, "function.name")?;
    let Some(args_node) = section.get("args") else {
        return Ok(FunctionCall { name, args: None });
    };
    let args = json(ctx, args_node, "function.args")?;
    // Tasks with parameters get them merged into `args`, so `args` must be
    // a mapping whose keys do not collide with them.
    let params: Vec<&str> = match map_over {
        MapOver::Prefix(_) => Vec::new(),
        MapOver::Items(_) | MapOver::Range(_) => vec!["item"],
        MapOver::Grid(grid) => grid.axes.iter().map(|a| a.name.as_str()).collect(),
    };
    if !params.is_empty() {
        let Value::Object(fields) = &args else {
            return Err(ctx.wrong_type(
                args_node,
                "function.args",
                "a mapping (the task parameters are merged into it)",
            ));
        };
        if let Some(clash) = params.iter().find(|p| fields.contains_key(**p)) {
            let at = match &args_node.value {
                NodeValue::Map(entries) => entries
                    .iter()
                    .find(|(k, _)| k.name == *clash)
                    .map_or(args_node.at, |(k, _)| k.at),
                _ => args_node.at,
            };
            return Err(ctx.invalid(
                at,
                &format!("function.args.{clash}"),
                format!(
                    "clashes with the task parameter `{clash}` of this `{}` job",
                    map_over.kind()
                ),
            ));
        }
    }
    Ok(FunctionCall {
        name,
        args: Some(args),
    })
}

fn command(
    ctx: &Ctx<'_>,
    node: &Node,
    map_over: &MapOver,
    inputs: &[BroadcastInput],
) -> Result<Vec<String>> {
    let NodeValue::Seq(elements) = &node.value else {
        return Err(ctx.wrong_type(
            node,
            "command",
            "a list of arguments such as [python3, train.py, \"{params.lr}\"] (no shell is \
             involved)",
        ));
    };
    if elements.is_empty() {
        return Err(ctx.invalid(
            node.at,
            "command",
            "is empty: give at least the program to run",
        ));
    }
    let params: Vec<&str> = match map_over {
        MapOver::Prefix(_) => Vec::new(),
        MapOver::Items(_) | MapOver::Range(_) => vec!["item"],
        MapOver::Grid(grid) => grid.axes.iter().map(|a| a.name.as_str()).collect(),
    };
    let mut argv = Vec::with_capacity(elements.len());
    for (i, element) in elements.iter().enumerate() {
        let path = format!("command[{i}]");
        let text = scalar_text(ctx, element, &path)?;
        let template = ArgTemplate::parse(&text).map_err(|e| {
            ctx.invalid(
                element.at,
                &path,
                format!("is not a valid argument template: {e}"),
            )
        })?;
        for placeholder in template.placeholders() {
            check_placeholder(
                ctx,
                element.at,
                &path,
                placeholder,
                map_over,
                inputs,
                &params,
            )?;
        }
        argv.push(text);
    }
    Ok(argv)
}

fn check_placeholder(
    ctx: &Ctx<'_>,
    at: Position,
    path: &str,
    placeholder: &Placeholder,
    map_over: &MapOver,
    inputs: &[BroadcastInput],
    params: &[&str],
) -> Result<()> {
    let did_you_mean = |given: &str, known: &mut dyn Iterator<Item = &str>| {
        suggest(given, known)
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default()
    };
    match placeholder {
        Placeholder::Input if !matches!(map_over, MapOver::Prefix(_)) => Err(ctx.invalid(
            at,
            path,
            format!(
                "uses `{{input}}`, but only `input:` jobs give each task an input; tasks of a \
                 `{}` job get their values as {}",
                map_over.kind(),
                params
                    .iter()
                    .map(|p| format!("`{{params.{p}}}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
        Placeholder::NamedInput(name) if !inputs.iter().any(|i| &i.name == name) => Err(ctx
            .invalid(
                at,
                path,
                format!(
                    "uses `{{inputs.{name}}}`, but `inputs` has no `{name}`{}",
                    did_you_mean(name, &mut inputs.iter().map(|i| i.name.as_str()))
                ),
            )),
        Placeholder::Param(key) if !params.contains(&key.as_str()) => {
            let known = if params.is_empty() {
                format!("tasks of an `{}` job have no parameters", map_over.kind())
            } else {
                format!(
                    "tasks of this job have {}",
                    params
                        .iter()
                        .map(|p| format!("`{p}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            Err(ctx.invalid(
                at,
                path,
                format!(
                    "uses `{{params.{key}}}`, but {known}{}",
                    did_you_mean(key, &mut params.iter().copied())
                ),
            ))
        }
        _ => Ok(()),
    }
}

fn op(ctx: &Ctx<'_>, key: &Key, node: &Node) -> Result<OpCall> {
    let NodeValue::Map(entries) = &node.value else {
        return Err(ctx.wrong_type(
            node,
            "op",
            "a mapping with the op's `name` and its settings",
        ));
    };
    let section = Section {
        path: "op".into(),
        name: "op",
        at: key.at,
        entries,
    };
    let name_node = section.required(ctx, "name")?;
    let name = non_empty_string(ctx, name_node, "op.name")?;
    if !BUILTIN_OPS.contains(&name.as_str()) {
        return Err(ctx.error(
            name_node.at,
            "op.name",
            JobErrorKind::UnknownOp {
                suggestion: suggest(&name, BUILTIN_OPS.iter().copied()),
                name,
            },
        ));
    }
    let mut params = Map::new();
    for (k, v) in entries.iter().filter(|(k, _)| k.name != "name") {
        params.insert(k.name.clone(), json(ctx, v, &join("op", &k.name))?);
    }
    Ok(OpCall { name, params })
}

fn duration(ctx: &Ctx<'_>, node: &Node, key: &str) -> Result<Duration> {
    let parsed = match &node.value {
        NodeValue::Str(text) => humantime::parse_duration(text).map_err(|e| {
            ctx.invalid(
                node.at,
                key,
                format!("must be a duration such as `30s`, `5m` or `1h 30m` ({e})"),
            )
        })?,
        NodeValue::Int(_) | NodeValue::UInt(_) | NodeValue::BigInt(_) | NodeValue::Float(_) => {
            return Err(ctx.invalid(node.at, key, "needs a unit: write `30s`, `5m` or `1h 30m`"))
        }
        _ => return Err(ctx.wrong_type(node, key, "a duration such as `30s`")),
    };
    if parsed.is_zero() {
        return Err(ctx.invalid(node.at, key, "must be longer than 0s"));
    }
    Ok(parsed)
}

fn reduce(ctx: &Ctx<'_>, key: &Key, node: &Node) -> Result<ReduceSpec> {
    // `reduce: merge_counts` is short for `reduce: {function: merge_counts}`.
    if let NodeValue::Str(_) = node.value {
        return Ok(ReduceSpec {
            function: non_empty_string(ctx, node, "reduce")?,
            fan_in: None,
        });
    }
    let section = Section::new(
        ctx,
        node,
        "reduce",
        "reduce",
        key.at,
        &["function", "command", "op", "fan_in"],
    )?;
    let (kind, kind_node) = section.exactly_one(ctx, RUN_KEYS, "how to reduce", RUN_GROUP)?;
    if kind.name != "function" {
        return Err(ctx.invalid(
            kind.at,
            &section.path_of(&kind.name),
            format!(
                "reducers are registered functions so far (`function: merge_counts`, `sum` \
                 or your own); a `{}` reducer is not supported yet",
                kind.name
            ),
        ));
    }
    Ok(ReduceSpec {
        function: non_empty_string(ctx, kind_node, "reduce.function")?,
        fan_in: section
            .get("fan_in")
            .map(|n| bounded::<u32>(ctx, n, "reduce.fan_in", "an integer from 2", 2, 1_000_000))
            .transpose()?
            .map(|n| n as usize),
    })
}

fn resources(ctx: &Ctx<'_>, key: &Key, node: &Node) -> Result<Resources> {
    let section = Section::new(ctx, node, "resources", "resources", key.at, &["cpus"])?;
    Ok(Resources {
        cpus: match section.get("cpus") {
            Some(n) => bounded(ctx, n, "resources.cpus", "a positive integer", 1, u32::MAX)?,
            None => 1,
        },
    })
}

fn env(ctx: &Ctx<'_>, node: &Node) -> Result<BTreeMap<String, String>> {
    let NodeValue::Map(entries) = &node.value else {
        return Err(ctx.wrong_type(node, "env", "a mapping of variable names to values"));
    };
    let mut env = BTreeMap::new();
    for (key, value) in entries {
        let path = join("env", &key.name);
        let mut chars = key.name.chars();
        let valid = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(ctx.invalid(
                key.at,
                &path,
                "is not a valid environment variable name: use letters, digits and `_`, not \
                 starting with a digit",
            ));
        }
        if key.name.starts_with("QUARRY_") {
            return Err(ctx.invalid(
                key.at,
                &path,
                "is reserved: quarry sets the QUARRY_* variables itself",
            ));
        }
        env.insert(key.name.clone(), scalar_text(ctx, value, &path)?);
    }
    Ok(env)
}
