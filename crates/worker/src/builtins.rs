//! The stock worker's built-in functions (see [`Registry::with_builtins`]).

use crate::registry::{Registry, TaskContext};
use serde_json::Number;
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

/// The `merge_counts` reducer: the key-by-key sum of maps of numbers
/// (integers stay exact; a float anywhere makes that key's sum a float).
pub fn merge_counts(
    maps: Vec<BTreeMap<String, Number>>,
) -> Result<BTreeMap<String, Number>, String> {
    let mut totals: HashMap<String, Total, foldhash::fast::RandomState> = HashMap::default();
    for map in maps {
        for (key, n) in map {
            totals.entry(key).or_default().add(&n);
        }
    }
    totals
        .into_iter()
        .map(|(key, total)| {
            let n = total
                .number()
                .ok_or_else(|| format!("the sum for `{key}` is not a finite number"))?;
            Ok((key, n))
        })
        .collect()
}

/// The `sum` reducer: the sum of numbers (exact for integers).
pub fn sum(values: Vec<Number>) -> Result<Number, String> {
    let mut total = Total::default();
    for n in &values {
        total.add(n);
    }
    total
        .number()
        .ok_or_else(|| "the sum is not a finite number".to_string())
}

/// A running sum: exact while every term is an integer.
#[derive(Clone, Copy, Debug)]
enum Total {
    Integer(i128),
    Float(f64),
}

impl Default for Total {
    fn default() -> Self {
        Total::Integer(0)
    }
}

impl Total {
    fn add(&mut self, n: &Number) {
        let integer = n
            .as_u64()
            .map(i128::from)
            .or_else(|| n.as_i64().map(i128::from));
        *self = match (*self, integer) {
            (Total::Integer(a), Some(b)) => match a.checked_add(b) {
                Some(sum) => Total::Integer(sum),
                None => Total::Float(a as f64 + b as f64),
            },
            (total, _) => Total::Float(total.as_f64() + n.as_f64().unwrap_or(f64::NAN)),
        };
    }

    fn as_f64(self) -> f64 {
        match self {
            Total::Integer(n) => n as f64,
            Total::Float(x) => x,
        }
    }

    /// The sum as a number: an integer when it fits 64 bits, else a float;
    /// `None` when it is not finite.
    fn number(self) -> Option<Number> {
        match self {
            Total::Integer(n) => u64::try_from(n)
                .map(Number::from)
                .or_else(|_| i64::try_from(n).map(Number::from))
                .ok()
                .or_else(|| Number::from_f64(n as f64)),
            Total::Float(x) => Number::from_f64(x),
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
        .reducer("merge_counts", merge_counts)
        .reducer("sum", sum)
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

    #[test]
    fn merge_counts_sums_key_by_key_exactly_and_floats_where_given() {
        let map = |pairs: &[(&str, Number)]| -> BTreeMap<String, Number> {
            pairs
                .iter()
                .map(|(k, n)| (k.to_string(), n.clone()))
                .collect()
        };
        let merged = merge_counts(vec![
            map(&[("a", 1.into()), ("b", u64::MAX.into())]),
            map(&[("a", 2.into()), ("c", Number::from_f64(0.5).unwrap())]),
            map(&[("c", 1.into()), ("b", 0.into()), ("d", (-3).into())]),
        ])
        .unwrap();
        assert_eq!(merged["a"], Number::from(3));
        assert_eq!(merged["b"], Number::from(u64::MAX));
        assert_eq!(merged["c"].as_f64(), Some(1.5));
        assert_eq!(merged["d"], Number::from(-3));
        assert_eq!(merge_counts(Vec::new()).unwrap(), BTreeMap::new());
    }

    #[test]
    fn sum_stays_exact_past_two_to_the_fifty_three() {
        let big = 1u64 << 60;
        assert_eq!(
            sum(vec![big.into(), 1.into(), (-1).into(), 1.into()]).unwrap(),
            Number::from(big + 1)
        );
        assert_eq!(sum(Vec::new()).unwrap(), Number::from(0));
        assert_eq!(
            sum(vec![1.into(), Number::from_f64(0.25).unwrap()])
                .unwrap()
                .as_f64(),
            Some(1.25)
        );
    }
}
