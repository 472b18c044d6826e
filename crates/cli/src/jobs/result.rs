//! Showing a reduced job's result (`OUTPUT/_result.json`) after the run:
//! all of it when it is short, else its head.

use anyhow::{Context, Result};
use quarry_client::JOB_RESULT_FILE;
use quarry_proto::{JobInfo, JobState};
use quarry_store::StoreResolver;
use serde_json::Value;

/// Lines of pretty JSON shown in full; longer results show their head.
const LINES_SHOWN: usize = 40;

/// Entries of a large map of numbers shown, largest first.
const TOP_SHOWN: usize = 20;

/// Prints the result of a job with a reduce stage (or its head) to stdout,
/// when the job succeeded and so wrote `OUTPUT/_result.json`.
pub async fn print_job_result(
    store: &StoreResolver,
    info: &JobInfo,
    output: Option<&str>,
) -> Result<()> {
    let (Some(output), JobState::Succeeded) = (output, info.state) else {
        return Ok(());
    };
    let url = format!("{}/{JOB_RESULT_FILE}", output.trim_end_matches('/'));
    let bytes = store.get_object(&url).await?;
    let value: Value =
        serde_json::from_slice(&bytes).with_context(|| format!("{url} is not JSON"))?;
    println!("{}", render_head(&value, &url));
    Ok(())
}

/// The result as pretty JSON when it has at most [`LINES_SHOWN`] lines.
/// A larger mapping of numbers (word counts) shows its largest entries, and
/// anything else its first lines, each saying where the rest is.
fn render_head(value: &Value, url: &str) -> String {
    let pretty = serde_json::to_string_pretty(value).unwrap_or_default();
    let lines = pretty.lines().count();
    if lines <= LINES_SHOWN {
        return pretty;
    }
    if let Value::Object(map) = value {
        let mut numbers: Vec<(&String, f64)> = map
            .iter()
            .filter_map(|(key, v)| Some((key, v.as_f64()?)))
            .collect();
        if numbers.len() == map.len() {
            numbers.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
            let width = numbers
                .iter()
                .take(TOP_SHOWN)
                .map(|(key, _)| key.chars().count())
                .max()
                .unwrap_or(0);
            let mut text = format!(
                "the {TOP_SHOWN} largest of {} entries (all of them in {url}):",
                map.len()
            );
            for (key, _) in numbers.iter().take(TOP_SHOWN) {
                text.push_str(&format!("\n  {key:<width$}  {}", map[*key]));
            }
            return text;
        }
    }
    let head: Vec<&str> = pretty.lines().take(LINES_SHOWN).collect();
    format!(
        "{}\n… {} more lines (all of it in {url})",
        head.join("\n"),
        lines - LINES_SHOWN
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_short_result_is_shown_whole() {
        assert_eq!(render_head(&json!(42), "u"), "42");
        assert_eq!(render_head(&json!({"a": 1}), "u"), "{\n  \"a\": 1\n}");
    }

    #[test]
    fn large_counts_show_the_largest_entries_first() {
        let counts: serde_json::Map<String, Value> =
            (0..100).map(|i| (format!("w{i:03}"), json!(i))).collect();
        let text = render_head(&Value::Object(counts), "s3://b/out/_result.json");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1 + TOP_SHOWN);
        assert!(
            lines[0].contains("of 100 entries") && lines[0].contains("s3://b/out/_result.json")
        );
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            ["w099", "99"]
        );
    }

    #[test]
    fn other_large_results_show_their_first_lines() {
        let list = Value::Array((0..100).map(|i| json!(i)).collect());
        let text = render_head(&list, "u");
        assert_eq!(text.lines().count(), LINES_SHOWN + 1);
        assert!(text.ends_with("(all of it in u)"));
    }
}
