//! The stock worker's built-in functions (see [`Registry::with_builtins`]).

use crate::registry::{Registry, TaskContext};
use std::collections::{BTreeMap, HashMap};
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

/// Counts the lines (newline bytes) of every input shard, reading each in
/// fixed-size blocks: the `wc -l` of quarry, a task whose cost is reading
/// its data, which is what shard caches and locality save.
pub fn linecount(ctx: &TaskContext) -> Result<u64, String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut lines = 0u64;
    let mut block = vec![0u8; 1 << 20];
    for shard in &ctx.inputs {
        let fail = |e: std::io::Error| format!("cannot read {}: {e}", shard.data_ref.url);
        let mut file = std::fs::File::open(&shard.path).map_err(fail)?;
        let mut left = match shard.data_ref.range {
            Some(range) => {
                file.seek(SeekFrom::Start(range.start)).map_err(fail)?;
                range.len()
            }
            None => u64::MAX,
        };
        while left > 0 {
            let want = block.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = file.read(&mut block[..want]).map_err(fail)?;
            if n == 0 {
                break;
            }
            lines += block[..n].iter().filter(|&&b| b == b'\n').count() as u64;
            left -= n as u64;
        }
    }
    Ok(lines)
}

/// Counts whitespace-separated words (lower-cased) in every input shard.
pub fn wordcount(ctx: &TaskContext) -> Result<BTreeMap<String, u64>, String> {
    let mut counts: HashMap<Vec<u8>, u64> = HashMap::new();
    for shard in &ctx.inputs {
        let bytes = shard
            .read()
            .map_err(|e| format!("cannot read {}: {e}", shard.data_ref.url))?;
        count_words(&bytes, &mut counts);
    }
    Ok(counts
        .into_iter()
        .map(|(word, n)| (String::from_utf8_lossy(&word).into_owned(), n))
        .collect())
}

/// Adds the words of `bytes` to `counts`. ASCII text (the common case) is
/// split and counted as byte slices without a string per word; anything
/// else goes through Unicode-aware splitting and lower-casing.
fn count_words(bytes: &[u8], counts: &mut HashMap<Vec<u8>, u64>) {
    if !bytes.is_ascii() {
        for word in String::from_utf8_lossy(bytes).split_whitespace() {
            *counts.entry(word.to_lowercase().into_bytes()).or_insert(0) += 1;
        }
        return;
    }
    for word in bytes
        .split(u8::is_ascii_whitespace)
        .filter(|w| !w.is_empty())
    {
        if word.iter().any(u8::is_ascii_uppercase) {
            *counts.entry(word.to_ascii_lowercase()).or_insert(0) += 1;
        } else if let Some(n) = counts.get_mut(word) {
            *n += 1;
        } else {
            counts.insert(word.to_vec(), 1);
        }
    }
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
        .task_with_context(
            "linecount",
            |ctx: &TaskContext, _: serde::de::IgnoredAny| linecount(ctx),
        )
        .task_with_context(
            "wordcount",
            |ctx: &TaskContext, _: serde::de::IgnoredAny| wordcount(ctx),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_counting_agrees_with_the_plain_definition() {
        let text = "The cat\tsat on THE mat.\n\nthe  Cat\r\nÉté été x";
        let mut fast = HashMap::new();
        count_words(text.as_bytes(), &mut fast);
        let mut plain: HashMap<Vec<u8>, u64> = HashMap::new();
        for word in text.split_whitespace() {
            *plain.entry(word.to_lowercase().into_bytes()).or_insert(0) += 1;
        }
        assert_eq!(fast, plain);
        let ascii = "The cat\tsat on THE mat.\n\nthe  Cat\r\n";
        let mut fast = HashMap::new();
        count_words(ascii.as_bytes(), &mut fast);
        assert_eq!(fast[&b"the"[..]], 3);
        assert_eq!(fast[&b"cat"[..]], 2);
        assert_eq!(fast.len(), 5);
    }

    #[test]
    fn inc_matches_the_closed_form() {
        let n: i64 = 10_000_000;
        assert_eq!(inc(10), 10 + n * (n - 1) / 2);
    }
}
