//! Expanding an items, range or grid job into task descriptions, lazily,
//! with the index keys that name each task's outputs. (Prefix jobs are
//! listed, chunked and keyed by the planner, `quarry-plan`.)

use crate::spec::{Grid, JobSpec, MapOver, RangeSpec, Run};
use serde_json::{Map, Value};
use std::fmt;
use thiserror::Error;

/// Index keys have at least this many digits (`00042`).
const MIN_INDEX_WIDTH: usize = 5;

/// One task of an expanded job.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskDescription {
    /// 0-based position in the job's deterministic task order.
    pub index: u64,
    /// Deterministic key, unique within the job: the zero-padded index for
    /// items, range and grid jobs (the planner names prefix tasks after
    /// their objects). It names the task's output directory.
    pub key: String,
    /// The task's parameters: `{"item": v}` for items and range jobs, one
    /// entry per grid key for grid jobs, empty for prefix jobs.
    pub params: Map<String, Value>,
}

impl TaskDescription {
    /// The parameters as a JSON object (for `TaskSpec.params_json`).
    pub fn params_json(&self) -> String {
        Value::Object(self.params.clone()).to_string()
    }
}

/// A prefix job was expanded without the planner.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ExpandError {
    /// A prefix job's tasks come from listing its prefix.
    #[error(
        "job `{job}` maps over the prefix {prefix}: its tasks come from listing it (quarry-plan)"
    )]
    NeedsListing {
        /// The job name.
        job: String,
        /// The prefix to list.
        prefix: String,
    },
}

impl JobSpec {
    /// The tasks of an items, range or grid job, in deterministic order,
    /// produced one at a time (nothing is materialised).
    pub fn expand(&self) -> Result<Tasks<'_>, ExpandError> {
        let (source, total) = match &self.map_over {
            MapOver::Prefix(input) => {
                return Err(ExpandError::NeedsListing {
                    job: self.name.clone(),
                    prefix: input.prefix.clone(),
                })
            }
            MapOver::Items(items) => (Source::Items(items), items.len() as u64),
            MapOver::Range(range) => (Source::Range(*range), range.len()),
            MapOver::Grid(grid) => (Source::Grid(grid), grid.len()),
        };
        Ok(Tasks {
            source,
            next: 0,
            total,
            width: index_width(total),
        })
    }

    /// Task `index` of an items, range or grid job (`None` past the end,
    /// or for a prefix job).
    pub fn task_at(&self, index: u64) -> Option<TaskDescription> {
        let mut tasks = self.expand().ok()?;
        tasks.next = index;
        tasks.next()
    }

    /// A short description of the job for `quarry validate`: what it maps
    /// over, what it runs, how many tasks, and the first `preview` tasks
    /// (none for prefix jobs, which need a listing).
    pub fn summary(&self, preview: usize) -> JobSummary {
        let first_tasks = match self.expand() {
            Ok(tasks) => tasks.take(preview).collect(),
            Err(_) => Vec::new(),
        };
        JobSummary {
            name: self.name.clone(),
            map_over: match &self.map_over {
                MapOver::Prefix(input) => match input.chunk_size {
                    Some(size) => format!(
                        "each {size}-byte chunk ({}) of the objects under {}",
                        match input.split {
                            crate::Split::Lines => "line-aligned",
                            crate::Split::Bytes => "byte ranges",
                        },
                        input.prefix
                    ),
                    None => format!("the objects under {}", input.prefix),
                },
                MapOver::Items(items) => format!("{} items", items.len()),
                MapOver::Range(r) => {
                    format!("range(start={}, stop={}, step={})", r.start, r.stop, r.step)
                }
                MapOver::Grid(grid) => format!(
                    "a grid of {}",
                    grid.axes
                        .iter()
                        .map(|a| format!("{} ({})", a.name, a.values.len()))
                        .collect::<Vec<_>>()
                        .join(" × ")
                ),
            },
            runs: match &self.run {
                Run::Function(f) => format!("function {}", f.name),
                Run::Command(argv) => format!("command {}", argv.join(" ")),
                Run::Op(op) => format!("op {}", op.name),
            },
            task_count: self.task_count(),
            output: self.output.clone(),
            first_tasks,
        }
    }
}

/// What [`JobSpec::summary`] returns; its `Display` is a few readable
/// lines.
#[derive(Clone, Debug, PartialEq)]
pub struct JobSummary {
    /// The job name.
    pub name: String,
    /// What it maps over, in words.
    pub map_over: String,
    /// What it runs, in words.
    pub runs: String,
    /// How many tasks (`None`: known once the prefix is listed).
    pub task_count: Option<u64>,
    /// Where outputs go.
    pub output: Option<String>,
    /// The first tasks.
    pub first_tasks: Vec<TaskDescription>,
}

impl fmt::Display for JobSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "job:      {}", self.name)?;
        writeln!(f, "maps:     {}", self.map_over)?;
        writeln!(f, "runs:     {}", self.runs)?;
        match self.task_count {
            Some(n) => writeln!(f, "tasks:    {n}")?,
            None => writeln!(f, "tasks:    one per listed object (counted at submit)")?,
        }
        if let Some(output) = &self.output {
            writeln!(f, "output:   {output}")?;
        }
        if !self.first_tasks.is_empty() {
            writeln!(f, "first tasks:")?;
            for task in &self.first_tasks {
                writeln!(f, "  {}  {}", task.key, task.params_json())?;
            }
        }
        Ok(())
    }
}

fn index_width(total: u64) -> usize {
    let digits = total
        .saturating_sub(1)
        .checked_ilog10()
        .map_or(1, |d| d as usize + 1);
    digits.max(MIN_INDEX_WIDTH)
}

/// What [`Tasks`] walks through.
#[derive(Clone, Copy, Debug)]
enum Source<'a> {
    Items(&'a [Value]),
    Range(RangeSpec),
    Grid(&'a Grid),
}

/// The tasks of an items, range or grid job ([`JobSpec::expand`]).
#[derive(Clone, Debug)]
pub struct Tasks<'a> {
    source: Source<'a>,
    next: u64,
    total: u64,
    width: usize,
}

impl Tasks<'_> {
    fn describe(&self, index: u64) -> TaskDescription {
        let params = match self.source {
            Source::Items(items) => item_params(items[index as usize].clone()),
            Source::Range(range) => item_params(Value::from(range.value(index))),
            Source::Grid(grid) => grid_point(grid, index),
        };
        TaskDescription {
            index,
            key: format!("{index:0width$}", width = self.width),
            params,
        }
    }
}

fn item_params(value: Value) -> Map<String, Value> {
    let mut params = Map::new();
    params.insert("item".into(), value);
    params
}

/// The `index`-th point of the grid: mixed-radix digits, last axis fastest.
fn grid_point(grid: &Grid, mut index: u64) -> Map<String, Value> {
    let mut digits = vec![0usize; grid.axes.len()];
    for (digit, axis) in digits.iter_mut().zip(&grid.axes).rev() {
        let radix = axis.values.len() as u64;
        *digit = (index % radix) as usize;
        index /= radix;
    }
    grid.axes
        .iter()
        .zip(digits)
        .map(|(axis, digit)| (axis.name.clone(), axis.values[digit].clone()))
        .collect()
}

impl Iterator for Tasks<'_> {
    type Item = TaskDescription;

    fn next(&mut self) -> Option<TaskDescription> {
        if self.next >= self.total {
            return None;
        }
        let task = self.describe(self.next);
        self.next += 1;
        Some(task)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let remaining = usize::try_from(self.total - self.next).unwrap_or(usize::MAX);
        (remaining, Some(remaining))
    }

    fn nth(&mut self, n: usize) -> Option<TaskDescription> {
        self.next = self.next.saturating_add(n as u64).min(self.total);
        self.next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_width_has_a_minimum_and_grows() {
        assert_eq!(index_width(1), 5);
        assert_eq!(index_width(100_000), 5);
        assert_eq!(index_width(100_001), 6);
        assert_eq!(index_width(1_000_000), 6);
    }
}
