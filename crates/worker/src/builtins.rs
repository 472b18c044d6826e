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

/// Counts words (lower-cased) in every input shard. A word is a maximal run
/// of characters that are not Unicode `White_Space` (Rust's
/// `char::is_whitespace`); bytes that are not UTF-8 count as U+FFFD, as in
/// `String::from_utf8_lossy`.
pub fn wordcount(ctx: &TaskContext) -> Result<BTreeMap<String, u64>, String> {
    let mut counts = WordCounts::default();
    for shard in &ctx.inputs {
        let bytes = shard
            .read()
            .map_err(|e| format!("cannot read {}: {e}", shard.data_ref.url))?;
        // `from_utf8` first: it validates several times faster than the
        // lossy decoder, which only text that is not UTF-8 needs.
        match std::str::from_utf8(&bytes) {
            Ok(text) => counts.add_text(text),
            Err(_) => counts.add_text(&String::from_utf8_lossy(&bytes)),
        }
    }
    Ok(counts.into_sorted())
}

/// Word counts keyed by the lower-cased word. Each text is first counted by
/// its words as written, borrowed from the text, so a word is lower-cased
/// once per distinct spelling, not once per occurrence. foldhash: several
/// times cheaper than SipHash on short keys, which is most of the cost once
/// splitting is fast.
#[derive(Default)]
struct WordCounts {
    counts: HashMap<Box<str>, u64, foldhash::fast::RandomState>,
}

impl WordCounts {
    /// Adds the words of `text`: `char::is_whitespace` is Unicode's
    /// `White_Space` (U+000B included, which `u8::is_ascii_whitespace`
    /// leaves out), with its own fast path for ASCII.
    fn add_text(&mut self, text: &str) {
        let mut as_written: HashMap<&str, u64, foldhash::fast::RandomState> = HashMap::default();
        for word in text.split(char::is_whitespace).filter(|w| !w.is_empty()) {
            *as_written.entry(word).or_insert(0) += 1;
        }
        for (word, n) in as_written {
            self.add_word(word, n);
        }
    }

    /// `str::to_lowercase`, not per-char mapping: a final sigma lower-cases
    /// to `ς` only in the context of its word. Called once per distinct
    /// spelling, so its allocation is off the per-word path.
    fn add_word(&mut self, word: &str, n: u64) {
        *self.counts.entry(word.to_lowercase().into()).or_insert(0) += n;
    }

    fn into_sorted(self) -> BTreeMap<String, u64> {
        self.counts
            .into_iter()
            .map(|(word, n)| (word.into_string(), n))
            .collect()
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

    fn counts_of(text: &str) -> BTreeMap<String, u64> {
        let mut counts = WordCounts::default();
        counts.add_text(text);
        counts.into_sorted()
    }

    /// The definition the built-in promises: Unicode `White_Space` splits,
    /// full Unicode lower-casing.
    fn plain_counts(text: &str) -> BTreeMap<String, u64> {
        let mut plain = BTreeMap::new();
        for word in text.split(char::is_whitespace).filter(|w| !w.is_empty()) {
            *plain.entry(word.to_lowercase()).or_insert(0) += 1;
        }
        plain
    }

    #[test]
    fn word_counting_agrees_with_the_plain_definition() {
        for text in [
            "The cat\tsat on THE mat.\n\nthe  Cat\r\n",
            "The cat\tsat on THE mat.\n\nthe  Cat\r\nÉté été x",
            "alpha\x0bbeta\x0cgamma\u{85}delta\u{a0}eps\u{3000}ZETA\u{2028}η Θ",
            "",
            "   ",
            "one",
            "ÀB\u{1680}àb\u{200a}İSTANBUL \u{1c}not-a-space\u{1c} ΟΔΟΣ οδος ǅ",
        ] {
            assert_eq!(counts_of(text), plain_counts(text), "{text:?}");
        }
        let ascii = counts_of("The cat\tsat on THE mat.\n\nthe  Cat\r\n");
        assert_eq!(ascii["the"], 3);
        assert_eq!(ascii["cat"], 2);
        assert_eq!(ascii.len(), 5);
    }

    #[test]
    fn vertical_tab_splits_with_or_without_other_non_ascii_text() {
        assert_eq!(counts_of("alpha\x0bbeta").len(), 2);
        assert_eq!(counts_of("alpha\x0bbeta é").len(), 3);
    }

    #[test]
    fn inc_matches_the_closed_form() {
        let n: i64 = 10_000_000;
        assert_eq!(inc(10), 10 + n * (n - 1) / 2);
    }
}
