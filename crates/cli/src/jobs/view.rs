//! A job's result table: filtering, sorting and the output formats of
//! `quarry results` (and `quarry run --results`).

use anyhow::{bail, Context, Result};
use indicatif::HumanBytes;
use quarry_manifest::{manifest_parquet, ManifestRow};
use serde_json::Value;
use std::cmp::Ordering;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

/// How rows are written.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns for people (long cells are cut).
    Table,
    /// A JSON array, one task object per line.
    Json,
    /// CSV with a header; params, result and outputs as JSON text.
    Csv,
    /// The manifest's Parquet layout (needs --out, or stdout redirected).
    Parquet,
}

/// Columns that `--sort-by` takes besides `result.…` and `params.…`.
const SORT_COLUMNS: &[&str] = &[
    "key",
    "task_id",
    "state",
    "worker",
    "attempts",
    "duration_ms",
    "bytes_from_cache",
    "bytes_from_store",
    "result",
    "params",
];

/// The longest cell the table shows; JSON and CSV are never cut.
const MAX_CELL_CHARS: usize = 48;

/// Which rows to show, in which order.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ViewArgs {
    /// Sort by a column (key, task_id, state, worker, attempts,
    /// duration_ms, bytes_from_cache, bytes_from_store) or a field of the
    /// result or the parameters: `result.accuracy`, `params.max_depth`.
    /// Rows without the field come last. Default: task order.
    #[arg(long, value_name = "FIELD")]
    pub sort_by: Option<String>,
    /// Sort in descending order (largest first): with
    /// `--sort-by result.accuracy --limit 5`, the five best tasks.
    #[arg(long, requires = "sort_by")]
    pub desc: bool,
    /// Show only the first N rows (after sorting).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Show only tasks in this state: done, failed, cancelled, running,
    /// queued or assigned.
    #[arg(long, value_name = "STATE")]
    pub state: Option<String>,
    /// Write to this file instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// The value a row has for a `--sort-by` field (`None` when it lacks it).
fn field(row: &Value, path: &str) -> Option<Value> {
    let pointer: String = path.split('.').map(|part| format!("/{part}")).collect();
    row.pointer(&pointer).filter(|v| !v.is_null()).cloned()
}

/// Orders numbers numerically, strings lexically, and other values by
/// their JSON text; mixed kinds order numbers first.
fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x.total_cmp(&y)
        }
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Number(_), _) => Ordering::Less,
        (_, Value::Number(_)) => Ordering::Greater,
        _ => a.to_string().cmp(&b.to_string()),
    }
}

/// Applies `--state`, `--sort-by`/`--desc` and `--limit`.
pub fn select(rows: Vec<ManifestRow>, view: &ViewArgs) -> Result<Vec<ManifestRow>> {
    let mut rows: Vec<ManifestRow> = match &view.state {
        Some(state) => rows.into_iter().filter(|r| &r.state == state).collect(),
        None => rows,
    };
    if let Some(path) = &view.sort_by {
        let root = path.split('.').next().unwrap_or_default();
        if !SORT_COLUMNS.contains(&root) {
            bail!(
                "cannot sort by `{path}`: use one of {}, or a field such as result.accuracy \
                 or params.max_depth",
                SORT_COLUMNS.join(", ")
            );
        }
        let mut keyed: Vec<(Option<Value>, ManifestRow)> = rows
            .into_iter()
            .map(|row| {
                let as_json = serde_json::to_value(&row).unwrap_or(Value::Null);
                (field(&as_json, path), row)
            })
            .collect();
        keyed.sort_by(|(a, _), (b, _)| match (a, b) {
            (Some(a), Some(b)) if view.desc => compare(b, a),
            (Some(a), Some(b)) => compare(a, b),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        });
        rows = keyed.into_iter().map(|(_, row)| row).collect();
    }
    if let Some(limit) = view.limit {
        rows.truncate(limit);
    }
    Ok(rows)
}

/// Writes rows in `format` to `out`, or to stdout.
pub fn render(rows: &[ManifestRow], format: Format, out: Option<&Path>) -> Result<()> {
    let bytes = match format {
        Format::Table => table(rows).into_bytes(),
        Format::Json => json_lines_array(rows)?.into_bytes(),
        Format::Csv => csv(rows).into_bytes(),
        Format::Parquet => {
            if out.is_none() && std::io::stdout().is_terminal() {
                bail!("Parquet is binary: give --out FILE (or redirect stdout)");
            }
            manifest_parquet(rows).context("cannot encode Parquet")?
        }
    };
    match out {
        Some(path) => {
            std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&bytes)?;
            stdout.flush()?;
            Ok(())
        }
    }
}

fn json_lines_array(rows: &[ManifestRow]) -> Result<String> {
    let mut text = String::from("[");
    for (i, row) in rows.iter().enumerate() {
        text.push_str(if i == 0 { "\n" } else { ",\n" });
        text.push_str(&serde_json::to_string(row)?);
    }
    text.push_str("\n]\n");
    Ok(text)
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

fn csv(rows: &[ManifestRow]) -> String {
    let mut text = String::from(
        "key,task_id,params,input,input_etag,input_range,state,result,result_ref,\
         result_format,outputs,worker,attempts,duration_ms,bytes_from_cache,bytes_from_store,\
         error\n",
    );
    for row in rows {
        let fields = [
            row.key.clone(),
            row.task_id.to_string(),
            row.params.to_string(),
            row.input.clone().unwrap_or_default(),
            row.input_etag.clone().unwrap_or_default(),
            row.input_range.clone().unwrap_or_default(),
            row.state.clone(),
            row.result
                .as_ref()
                .map(Value::to_string)
                .unwrap_or_default(),
            row.result_ref.clone().unwrap_or_default(),
            row.result_format.clone().unwrap_or_default(),
            Value::from(row.outputs.clone()).to_string(),
            row.worker.clone().unwrap_or_default(),
            row.attempts.to_string(),
            row.duration_ms.to_string(),
            row.bytes_from_cache.to_string(),
            row.bytes_from_store.to_string(),
            row.error.clone().unwrap_or_default(),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        text.push_str(&line.join(","));
        text.push('\n');
    }
    text
}

fn cut(text: &str) -> String {
    let one_line = text.replace(['\n', '\r'], " ");
    if one_line.chars().count() <= MAX_CELL_CHARS {
        one_line
    } else {
        let kept: String = one_line.chars().take(MAX_CELL_CHARS - 1).collect();
        format!("{kept}…")
    }
}

/// A duration in milliseconds, as people read it.
pub fn duration_text(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

fn table(rows: &[ManifestRow]) -> String {
    let header = [
        "KEY", "STATE", "PARAMS", "RESULT", "OUTPUTS", "WORKER", "ATTEMPTS", "DURATION", "CACHE",
        "STORE",
    ];
    let cells: Vec<[String; 10]> = rows
        .iter()
        .map(|row| {
            let result = match (&row.result, &row.result_ref, &row.error) {
                (Some(result), _, _) => result.to_string(),
                // Too large to read in: where it is.
                (None, Some(url), _) => url.clone(),
                (None, None, Some(error)) => format!("error: {error}"),
                (None, None, None) => String::new(),
            };
            let params = match &row.params {
                Value::Object(map) if map.is_empty() => String::new(),
                params => params.to_string(),
            };
            [
                cut(&row.key),
                row.state.clone(),
                cut(&params),
                cut(&result),
                row.outputs.len().to_string(),
                row.worker.clone().unwrap_or_default(),
                row.attempts.to_string(),
                duration_text(row.duration_ms),
                HumanBytes(row.bytes_from_cache).to_string(),
                HumanBytes(row.bytes_from_store).to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let mut line = |fields: Vec<&str>| {
        let padded: Vec<String> = fields
            .iter()
            .zip(widths)
            .map(|(field, width)| format!("{field:<width$}"))
            .collect();
        text.push_str(padded.join("  ").trim_end());
        text.push('\n');
    };
    line(header.to_vec());
    for row in &cells {
        line(row.iter().map(String::as_str).collect());
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(key: &str, result: Option<Value>, state: &str) -> ManifestRow {
        ManifestRow {
            key: key.into(),
            task_id: key.len() as u64,
            params: json!({"depth": key.len()}),
            input: None,
            input_etag: None,
            input_range: None,
            state: state.into(),
            result_format: result.is_some().then(|| "inline".into()),
            result,
            result_ref: None,
            stored_result: None,
            outputs: vec!["file:///o/a,b".into()],
            worker: Some("w".into()),
            attempts: 1,
            duration_ms: 1500,
            bytes_from_cache: 0,
            bytes_from_store: 2048,
            error: (state == "failed").then(|| "Failed: exit status 1".into()),
        }
    }

    fn keys(rows: &[ManifestRow]) -> Vec<&str> {
        rows.iter().map(|r| r.key.as_str()).collect()
    }

    #[test]
    fn sorting_by_a_result_field_puts_the_best_first_and_missing_last() {
        let rows = vec![
            row("a", Some(json!({"accuracy": 0.7})), "done"),
            row("b", None, "failed"),
            row("c", Some(json!({"accuracy": 0.9})), "done"),
            row("d", Some(json!({"accuracy": 0.8})), "done"),
        ];
        let view = ViewArgs {
            sort_by: Some("result.accuracy".into()),
            desc: true,
            ..ViewArgs::default()
        };
        assert_eq!(
            keys(&select(rows.clone(), &view).unwrap()),
            ["c", "d", "a", "b"]
        );
        let view = ViewArgs {
            sort_by: Some("result.accuracy".into()),
            limit: Some(2),
            ..ViewArgs::default()
        };
        assert_eq!(keys(&select(rows.clone(), &view).unwrap()), ["a", "d"]);
        let view = ViewArgs {
            state: Some("failed".into()),
            ..ViewArgs::default()
        };
        assert_eq!(keys(&select(rows.clone(), &view).unwrap()), ["b"]);
        let view = ViewArgs {
            sort_by: Some("accuracy".into()),
            ..ViewArgs::default()
        };
        assert!(select(rows, &view).is_err());
    }

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let text = csv(&[row("k", Some(json!({"a": 1, "b": "x,y"})), "done")]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[1],
            r#"k,1,"{""depth"":1}",,,,done,"{""a"":1,""b"":""x,y""}",,inline,"[""file:///o/a,b""]",w,1,1500,0,2048,"#
        );
    }

    #[test]
    fn the_table_aligns_and_shows_errors_in_place_of_results() {
        let text = table(&[
            row("k1", Some(json!(3)), "done"),
            row("key-2", None, "failed"),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("KEY    STATE   PARAMS"), "{text}");
        assert!(lines[1].contains("  3  "), "{text}");
        assert!(lines[2].contains("error: Failed: exit status 1"), "{text}");
        assert!(lines[2].contains("1.5 s"), "{text}");
    }
}
