//! The stock worker's built-in functions (see [`Registry::with_builtins`]).

use crate::registry::{Registry, TaskContext};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

/// The seed's `inc`: `for i in range(10000000): x += i`. `black_box` keeps
/// the optimiser from folding the loop into a formula, so the task does the
/// same work as the Python original.
pub fn inc(mut x: i64) -> i64 {
    for i in 0..10_000_000i64 {
        x = x.wrapping_add(black_box(i));
    }
    x
}

/// Counts whitespace-separated words in every input shard.
pub fn wordcount(ctx: &TaskContext) -> Result<BTreeMap<String, u64>, String> {
    let mut counts = BTreeMap::new();
    for shard in &ctx.inputs {
        let bytes = shard
            .read()
            .map_err(|e| format!("cannot read {}: {e}", shard.data_ref.url))?;
        for word in String::from_utf8_lossy(&bytes).split_whitespace() {
            *counts.entry(word.to_lowercase()).or_insert(0) += 1;
        }
    }
    Ok(counts)
}

pub(crate) fn register(registry: Registry) -> Registry {
    registry
        .task("noop", |_: serde::de::IgnoredAny| ())
        .task("sleep_ms", |ms: u64| {
            std::thread::sleep(Duration::from_millis(ms));
            ms
        })
        .task("inc", inc)
        .task("echo", |value: serde_json::Value| value)
        .task_with_context("fail", |_: &TaskContext, message: String| {
            Err::<(), String>(message)
        })
        .task("panic", |message: String| -> () { panic!("{message}") })
        .task_with_context("wordcount", |ctx: &TaskContext, _: serde::de::IgnoredAny| {
            wordcount(ctx)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inc_matches_the_closed_form() {
        let n: i64 = 10_000_000;
        assert_eq!(inc(10), 10 + n * (n - 1) / 2);
    }
}
