//! The validated job: what the YAML means once it has passed every check.

use crate::error::{JobError, JobErrorKind};
use crate::location::split_glob;
use quarry_command::CommandTemplate;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Built-in ops this build knows. Empty: the `op:` slot is parsed and
/// validated so job files can name ops, but the ops themselves (Arrow and
/// Parquet operators) arrive in a later release.
pub const BUILTIN_OPS: &[&str] = &[];

/// The most tasks one job may expand to: the size of one client's task-id
/// range.
pub const MAX_TASKS: u64 = 1 << 40;

/// Retries when the job file does not say.
pub const DEFAULT_RETRIES: u32 = 2;

/// A validated job file.
#[derive(Clone, Debug, PartialEq)]
pub struct JobSpec {
    /// `name`: human-readable job name.
    pub name: String,
    /// What the job maps over (exactly one of `input`, `items`, `range`,
    /// `grid`).
    pub map_over: MapOver,
    /// `inputs`: named broadcast inputs, in file order; each worker fetches
    /// each one once.
    pub inputs: Vec<BroadcastInput>,
    /// What each task runs (exactly one of `function`, `command`, `op`).
    pub run: Run,
    /// `output`: the prefix task outputs go under, as a URL.
    pub output: Option<String>,
    /// `retries`: how often a failed task is retried (default 2).
    pub retries: u32,
    /// `timeout`: kill an attempt after this long.
    pub timeout: Option<Duration>,
    /// `max_fails`: stop the job after this many tasks failed for good.
    pub max_fails: Option<u64>,
    /// `priority`: higher runs first (default 0).
    pub priority: i32,
    /// `resources`: what one attempt occupies on a worker.
    pub resources: Resources,
    /// `env`: environment variables for command tasks.
    pub env: BTreeMap<String, String>,
    /// `reduce`: how the map results are combined into the job's result.
    pub reduce: Option<ReduceSpec>,
}

/// `reduce: {function, fan_in}` (or `reduce: NAME`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReduceSpec {
    /// The registered reducer, such as the built-in `merge_counts` or
    /// `sum`.
    pub function: String,
    /// `fan_in`: most results one reduce task combines; `None` leaves it
    /// to the client's default (`quarry_client::DEFAULT_FAN_IN`, 64).
    pub fan_in: Option<usize>,
}

/// What a job maps over.
#[derive(Clone, Debug, PartialEq)]
pub enum MapOver {
    /// `input:`: one task per object under a prefix (or per chunk of it).
    Prefix(PrefixInput),
    /// `items:`: one task per value; params `{"item": value}`.
    Items(Vec<Value>),
    /// `range:`: one task per integer; params `{"item": n}`.
    Range(RangeSpec),
    /// `grid:`: one task per point of a Cartesian product.
    Grid(Grid),
}

impl MapOver {
    /// The YAML key this mode comes from.
    pub fn kind(&self) -> &'static str {
        match self {
            MapOver::Prefix(_) => "input",
            MapOver::Items(_) => "items",
            MapOver::Range(_) => "range",
            MapOver::Grid(_) => "grid",
        }
    }
}

/// `input: {prefix, chunk_size, split}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrefixInput {
    /// The prefix or glob as a URL (`s3://b/logs/`, `file:///data/*.csv`);
    /// local paths in the job file were resolved against its directory.
    /// This is what the planner lists.
    pub prefix: String,
    /// Split each object into chunks of about this size, one task each.
    pub chunk_size: Option<u64>,
    /// How chunks are cut (`lines` unless the file says `bytes`).
    pub split: Split,
}

/// How an object is cut into chunks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Split {
    /// Every boundary moves forward to the next line start, so no line is
    /// split and every line is read by exactly one task.
    #[default]
    Lines,
    /// Raw byte ranges of exactly the chunk size (the last may be
    /// shorter), for data that is not line-oriented.
    Bytes,
}

impl PrefixInput {
    /// The listed part of the prefix, ending in `/`: task keys are object
    /// URLs relative to it.
    pub fn base(&self) -> String {
        split_glob(&self.prefix).0
    }

    /// The glob below [`PrefixInput::base`], if the prefix has one.
    pub fn glob(&self) -> Option<String> {
        split_glob(&self.prefix).1
    }
}

/// `range: {start, stop, step}`: like Python's `range`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RangeSpec {
    /// First value (default 0).
    pub start: i64,
    /// End, exclusive.
    pub stop: i64,
    /// Increment, not 0 (default 1); negative counts down.
    pub step: i64,
}

impl RangeSpec {
    /// How many values the range has.
    pub fn len(&self) -> u64 {
        let (start, stop, step) = (
            i128::from(self.start),
            i128::from(self.stop),
            i128::from(self.step),
        );
        let span = if step > 0 { stop - start } else { start - stop };
        let step = step.abs();
        if span <= 0 {
            0
        } else {
            ((span + step - 1) / step) as u64
        }
    }

    /// Whether the range has no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `index`-th value (the caller keeps `index < len()`).
    pub(crate) fn value(&self, index: u64) -> i64 {
        // In range by construction: start + index*step lies between start
        // and stop.
        (i128::from(self.start) + i128::from(index) * i128::from(self.step)) as i64
    }
}

/// `grid: {name: [values…], …}`: the Cartesian product of its axes.
#[derive(Clone, Debug, PartialEq)]
pub struct Grid {
    /// Axes in file order; the last varies fastest.
    pub axes: Vec<GridAxis>,
}

impl Grid {
    /// Number of points (the product of the axis lengths).
    pub fn len(&self) -> u64 {
        self.axes
            .iter()
            .try_fold(1u64, |n, axis| n.checked_mul(axis.values.len() as u64))
            .unwrap_or(u64::MAX)
    }

    /// Whether the grid has no point.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One parameter of a grid and its values.
#[derive(Clone, Debug, PartialEq)]
pub struct GridAxis {
    /// Parameter name (`{params.NAME}`).
    pub name: String,
    /// Its values, in file order.
    pub values: Vec<Value>,
}

/// One entry of `inputs:`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BroadcastInput {
    /// Its name (`{inputs.NAME}`).
    pub name: String,
    /// Its URL (local paths resolved as for the prefix).
    pub url: String,
}

/// What each task runs.
#[derive(Clone, Debug, PartialEq)]
pub enum Run {
    /// `function:`: a function registered in the workers.
    Function(FunctionCall),
    /// `command:`: a program and its argument templates, run without a
    /// shell.
    Command(Vec<String>),
    /// `op:`: a built-in op (none exist yet, see [`BUILTIN_OPS`]).
    Op(OpCall),
}

/// `function: {name, args}`.
#[derive(Clone, Debug, PartialEq)]
pub struct FunctionCall {
    /// The registered name.
    pub name: String,
    /// `args`: arguments shared by every task. For jobs whose tasks have
    /// parameters it is a mapping, and each task's parameters are merged
    /// into it (see [`JobSpec::function_args`]).
    pub args: Option<Value>,
}

/// `op: {name, …}`.
#[derive(Clone, Debug, PartialEq)]
pub struct OpCall {
    /// One of [`BUILTIN_OPS`].
    pub name: String,
    /// The op's other keys, for the op to validate.
    pub params: Map<String, Value>,
}

/// `resources: {cpus}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resources {
    /// Worker slots one attempt occupies (default 1).
    pub cpus: u32,
}

impl Default for Resources {
    fn default() -> Self {
        Resources { cpus: 1 }
    }
}

impl JobSpec {
    /// Reads and validates a job file. Relative local paths in it are
    /// resolved against the file's directory.
    pub fn from_file(path: &Path) -> Result<JobSpec, JobError> {
        let file = path.display().to_string();
        let read_error = |reason: String| JobError {
            file: file.clone(),
            position: None,
            key: String::new(),
            kind: Box::new(JobErrorKind::Read { reason }),
            line_text: None,
        };
        let bytes = std::fs::read(path).map_err(|e| read_error(e.to_string()))?;
        let text =
            std::str::from_utf8(&bytes).map_err(|e| crate::parse::not_utf8(&bytes, &e, &file))?;
        let absolute = std::path::absolute(path).map_err(|e| read_error(e.to_string()))?;
        let base_dir = absolute.parent().unwrap_or(Path::new("/"));
        JobSpec::from_yaml(text, &file, base_dir)
    }

    /// Validates job YAML. `file` names it in errors; relative local paths
    /// are resolved against `base_dir`.
    pub fn from_yaml(text: &str, file: &str, base_dir: &Path) -> Result<JobSpec, JobError> {
        crate::parse::parse_job(text, file, base_dir)
    }

    /// How many tasks the job has, computed without expanding it; `None`
    /// for prefix jobs, whose count is known only once the prefix is listed.
    pub fn task_count(&self) -> Option<u64> {
        match &self.map_over {
            MapOver::Prefix(_) => None,
            MapOver::Items(items) => Some(items.len() as u64),
            MapOver::Range(range) => Some(range.len()),
            MapOver::Grid(grid) => Some(grid.len()),
        }
    }

    /// The arguments a function job passes to its function for `task`
    /// (`None` for command and op jobs):
    ///
    /// - without `args`: the item for items and range jobs (so `range` +
    ///   `function: inc` calls `inc(n)`), the grid point as a mapping for
    ///   grid jobs, and `null` for prefix jobs (the function reads its input
    ///   through the worker's task context);
    /// - with `args`: `args` with the task's parameters added (`item`, or the
    ///   grid keys); for prefix jobs, `args` as written.
    pub fn function_args(&self, task: &crate::TaskDescription) -> Option<Value> {
        let Run::Function(call) = &self.run else {
            return None;
        };
        Some(match (&call.args, &self.map_over) {
            (None, MapOver::Items(_) | MapOver::Range(_)) => {
                task.params.get("item").cloned().unwrap_or(Value::Null)
            }
            (None, MapOver::Grid(_)) => Value::Object(task.params.clone()),
            (None, MapOver::Prefix(_)) => Value::Null,
            (Some(Value::Object(args)), _) => {
                let mut merged = args.clone();
                merged.extend(task.params.clone());
                Value::Object(merged)
            }
            (Some(args), _) => args.clone(),
        })
    }

    /// For command jobs, the template the workers run (argv, `env`,
    /// `timeout`); it travels MessagePack-encoded in the job context.
    pub fn command_template(&self) -> Option<CommandTemplate> {
        match &self.run {
            Run::Command(argv) => Some(CommandTemplate {
                argv: argv.clone(),
                env: self.env.clone(),
                timeout: self.timeout,
            }),
            Run::Function(_) | Run::Op(_) => None,
        }
    }
}
