//! Expanding a job into task descriptions, lazily, and the deterministic
//! keys that name each task's outputs.

use crate::spec::{Grid, JobSpec, MapOver, PrefixInput, RangeSpec, Run};
use quarry_proto::{ByteRange, DataRef};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::fmt;
use thiserror::Error;

/// Longest task key derived from an object key, in bytes (a chunk suffix
/// `/part-NNNNN` may follow). Longer keys are cut and get a hash suffix.
pub const MAX_TASK_KEY_BYTES: usize = 200;

/// Index keys have at least this many digits (`00042`).
const MIN_INDEX_WIDTH: usize = 5;

/// Hex digits of the hash that makes altered keys unique.
const KEY_HASH_HEX: usize = 16;

/// One task of an expanded job.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskDescription {
    /// 0-based position in the job's deterministic task order.
    pub index: u64,
    /// Deterministic key, unique within the job: the zero-padded index for
    /// items, range and grid jobs; the object's key relative to the prefix
    /// (sanitised) for prefix jobs. It names the task's output directory.
    pub key: String,
    /// The task's parameters: `{"item": v}` for items and range jobs, one
    /// entry per grid key for grid jobs, empty for prefix jobs.
    pub params: Map<String, Value>,
    /// For prefix jobs, the object (or chunk of it) the task reads.
    pub input: Option<DataRef>,
}

impl TaskDescription {
    /// The parameters as a JSON object (for `TaskSpec.params_json`).
    pub fn params_json(&self) -> String {
        Value::Object(self.params.clone()).to_string()
    }
}

/// The wrong expansion was asked for.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ExpandError {
    /// A prefix job was expanded without its listing.
    #[error(
        "job `{job}` maps over the prefix {prefix}: list it and pass the objects to \
         `expand_listing`"
    )]
    NeedsListing {
        /// The job name.
        job: String,
        /// The prefix to list.
        prefix: String,
    },
    /// A listing was passed to a job that does not map over a prefix.
    #[error("job `{job}` maps over `{kind}`, not a prefix: use `expand`")]
    NotAPrefixJob {
        /// The job name.
        job: String,
        /// What it maps over.
        kind: &'static str,
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

    /// The tasks of a prefix job, one per object listed under
    /// [`PrefixInput::prefix`] (or one per chunk with `chunk_size`), in the
    /// listing's order. The caller lists the prefix (for example with
    /// quarry-store's `list_refs(prefix)`, which also applies the glob) and
    /// passes the pinned references in; they are consumed lazily.
    pub fn expand_listing<I>(&self, objects: I) -> Result<ListedTasks<'_, I::IntoIter>, ExpandError>
    where
        I: IntoIterator<Item = DataRef>,
    {
        match &self.map_over {
            MapOver::Prefix(input) => Ok(ListedTasks {
                input,
                base: input.base(),
                objects: objects.into_iter(),
                current: None,
                next_index: 0,
            }),
            other => Err(ExpandError::NotAPrefixJob {
                job: self.name.clone(),
                kind: other.kind(),
            }),
        }
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
                        "each {size}-byte chunk of the objects under {}",
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
            input: None,
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

/// The tasks of a prefix job ([`JobSpec::expand_listing`]).
#[derive(Debug)]
pub struct ListedTasks<'a, I> {
    input: &'a PrefixInput,
    base: String,
    objects: I,
    /// The object being split into chunks, its key and the next chunk.
    current: Option<(DataRef, String, u64)>,
    next_index: u64,
}

impl<I: Iterator<Item = DataRef>> Iterator for ListedTasks<'_, I> {
    type Item = TaskDescription;

    fn next(&mut self) -> Option<TaskDescription> {
        let Some(chunk_size) = self.input.chunk_size else {
            let object = self.objects.next()?;
            let key = object_task_key(&self.base, &self.input.prefix, &object.url);
            return Some(self.task(key, object));
        };
        loop {
            if let Some((object, key, chunk)) = &mut self.current {
                let (start, end) = match object.range {
                    Some(range) => (range.start, range.end),
                    None => (0, object.size),
                };
                let chunks = (end - start).div_ceil(chunk_size).max(1);
                if *chunk < chunks {
                    let mut input = object.clone();
                    let from = start + *chunk * chunk_size;
                    let to = end.min(from.saturating_add(chunk_size));
                    input.range = if chunks == 1 && object.range.is_none() {
                        None
                    } else {
                        Some(ByteRange {
                            start: from,
                            end: to,
                        })
                    };
                    let key = format!("{key}/part-{chunk:05}");
                    *chunk += 1;
                    return Some(self.task(key, input));
                }
            }
            let object = self.objects.next()?;
            let key = object_task_key(&self.base, &self.input.prefix, &object.url);
            self.current = Some((object, key, 0));
        }
    }
}

impl<I> ListedTasks<'_, I> {
    fn task(&mut self, key: String, input: DataRef) -> TaskDescription {
        let index = self.next_index;
        self.next_index += 1;
        TaskDescription {
            index,
            key,
            params: Map::new(),
            input: Some(input),
        }
    }
}

/// The task key of a listed object: its URL relative to the listed base,
/// sanitised. An URL outside the base (which a listing should not return)
/// still gets a unique key from its whole path.
fn object_task_key(base: &str, prefix: &str, url: &str) -> String {
    if let Some(relative) = url.strip_prefix(base).filter(|r| !r.is_empty()) {
        return sanitize_key(relative, false);
    }
    if url == prefix {
        // The prefix names one object: its key is its file name.
        let name = url.rsplit('/').next().unwrap_or(url);
        return sanitize_key(name, false);
    }
    let path = url.split_once("://").map_or(url, |(_, rest)| rest);
    sanitize_key(path, true)
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '=')
}

/// A relative object key made safe to name an output directory: `/`
/// separates segments; empty, `.` and `..` segments are dropped; characters
/// other than ASCII letters, digits, `.`, `_`, `-` and `=` become `_`. If
/// anything changed (or `force_hash`), or the result is longer than
/// [`MAX_TASK_KEY_BYTES`], it is cut to fit and `~` plus a hash of the
/// original is appended: `~` never appears in an unchanged key, so keys stay
/// unique within a listing.
pub fn sanitize_key(relative: &str, force_hash: bool) -> String {
    let mut altered = force_hash;
    let mut segments = Vec::new();
    for segment in relative.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            altered = true;
            continue;
        }
        let clean: String = segment
            .chars()
            .map(|c| {
                if is_key_char(c) {
                    c
                } else {
                    altered = true;
                    '_'
                }
            })
            .collect();
        segments.push(clean);
    }
    let mut key = segments.join("/");
    if !altered && !key.is_empty() && key.len() <= MAX_TASK_KEY_BYTES {
        return key;
    }
    let digest = hex::encode(Sha256::digest(relative.as_bytes()));
    // Only ASCII remains, so any byte index is a character boundary.
    key.truncate(MAX_TASK_KEY_BYTES - 1 - KEY_HASH_HEX);
    while key.ends_with('/') {
        key.pop();
    }
    format!("{key}~{}", &digest[..KEY_HASH_HEX])
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

    #[test]
    fn clean_keys_stay_as_they_are() {
        assert_eq!(
            sanitize_key("2024/01/part-0001.csv", false),
            "2024/01/part-0001.csv"
        );
        assert_eq!(
            sanitize_key("date=2024-01-01/x.parquet", false),
            "date=2024-01-01/x.parquet"
        );
    }

    #[test]
    fn altered_keys_get_a_hash_suffix() {
        let key = sanitize_key("a b.txt", false);
        assert!(key.starts_with("a_b.txt~"), "{key}");
        assert_eq!(key.len(), "a_b.txt~".len() + KEY_HASH_HEX);
        assert_ne!(key, sanitize_key("a_b.txt", false));
        assert_ne!(key, sanitize_key("a?b.txt", false));
        assert_eq!(key, sanitize_key("a b.txt", false), "deterministic");
    }
}
