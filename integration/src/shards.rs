//! Deterministic text content for seeded objects.
//!
//! Tests seed shards with [`text_shard`] and compute the results they expect from
//! the same function, so no expected value is read back through quarry.

/// Every word that [`text_shard`] writes. Words are separated by single spaces and
/// newlines; there is no punctuation, so any whitespace split yields these words.
pub const SHARD_VOCABULARY: [&str; 16] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
    "kilo", "lima", "mike", "november", "oscar", "papa",
];

/// Words per line in a shard.
const WORDS_PER_LINE: usize = 8;

/// The key of shard `index` under `prefix`: `{prefix}part-{index:05}.txt`, so keys
/// sort in index order.
pub fn shard_key(prefix: &str, index: usize) -> String {
    format!("{prefix}part-{index:05}.txt")
}

/// Exactly `size` bytes of text for shard `index`: lines of words from
/// [`SHARD_VOCABULARY`], each line ending in `\n`, padded at the end with `\n`
/// when the next word would not fit. The same arguments always give the same
/// bytes; different indexes give different word sequences.
pub fn text_shard(index: usize, size: usize) -> Vec<u8> {
    let mut text = Vec::with_capacity(size);
    // A 64-bit LCG (Knuth's MMIX constants): the content only has to be
    // reproducible and varied, not random.
    let mut state = (index as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(1);
    let mut words_on_line = 0;
    loop {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let word = SHARD_VOCABULARY[(state >> 60) as usize].as_bytes();
        // Each word is followed by one separator byte.
        if text.len() + word.len() + 1 > size {
            break;
        }
        text.extend_from_slice(word);
        words_on_line += 1;
        if words_on_line == WORDS_PER_LINE {
            text.push(b'\n');
            words_on_line = 0;
        } else {
            text.push(b' ');
        }
    }
    if let Some(last) = text.last_mut() {
        *last = b'\n';
    }
    text.resize(size, b'\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_have_the_exact_size_and_only_vocabulary_words() {
        for size in [0, 1, 5, 6, 100, 4096, 10_007] {
            let shard = text_shard(3, size);
            assert_eq!(shard.len(), size);
            let text = std::str::from_utf8(&shard).unwrap();
            for word in text.split_whitespace() {
                assert!(SHARD_VOCABULARY.contains(&word), "unexpected word {word:?}");
            }
            if size > 0 {
                assert!(text.ends_with('\n'));
            }
        }
    }

    #[test]
    fn shards_are_deterministic_and_differ_by_index() {
        assert_eq!(text_shard(7, 2000), text_shard(7, 2000));
        assert_ne!(text_shard(7, 2000), text_shard(8, 2000));
        // A shorter shard is the longer one's prefix, up to the padding.
        let long = text_shard(1, 2000);
        let short = text_shard(1, 1000);
        let kept = short.iter().rposition(|b| *b != b'\n').unwrap();
        assert_eq!(short[..kept], long[..kept]);
    }

    #[test]
    fn shards_use_the_whole_vocabulary() {
        let text = String::from_utf8(text_shard(0, 10_000)).unwrap();
        for word in SHARD_VOCABULARY {
            assert!(text.split_whitespace().any(|w| w == word), "{word} missing");
        }
    }

    #[test]
    fn keys_sort_in_index_order() {
        assert_eq!(shard_key("in/", 7), "in/part-00007.txt");
        assert!(shard_key("", 9) < shard_key("", 10));
    }
}
