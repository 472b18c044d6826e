//! The properties the `task_key` fuzz target checks, shared with the
//! regression test (crates/job/tests/fuzz_regressions.rs) so that both
//! check exactly the same thing.

use quarry_command::{output_object_key, sanitize_key, MAX_OUTPUT_KEY_BYTES, MAX_TASK_KEY_BYTES};

/// Splits a `task_key` input: one flag byte (`force_hash`), then a raw key
/// and a relative path separated by the first 0xFF byte (never part of
/// UTF-8, so the split is unambiguous). `None` when a part is not UTF-8.
pub fn split_task_key_input(bytes: &[u8]) -> Option<(&str, &str, bool)> {
    let (&flags, rest) = bytes.split_first()?;
    let (key, relative) = match rest.iter().position(|&b| b == 0xFF) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &[][..]),
    };
    Some((
        std::str::from_utf8(key).ok()?,
        std::str::from_utf8(relative).ok()?,
        flags & 1 == 1,
    ))
}

/// Checks the two rules that keep task outputs inside their directory:
/// `sanitize_key` (object key under a prefix → task key) and
/// `output_object_key` (task key + file the command wrote → object key).
///
/// Panics when a property breaks: a sanitised key is too long or refused by
/// the output-key rule, or an accepted object key is absolute, holds NUL,
/// `\` or a control character, or has a `..`, `.` or empty segment.
pub fn check_task_key(raw_key: &str, relative: &str, force_hash: bool) {
    let sanitized = sanitize_key(raw_key, force_hash);
    assert!(
        sanitized.len() <= MAX_TASK_KEY_BYTES,
        "sanitize_key({raw_key:?}) = {sanitized:?} is too long"
    );
    if let Err(e) = output_object_key(&sanitized, "x") {
        panic!("sanitize_key({raw_key:?}) = {sanitized:?} breaks the output-key rule: {e}");
    }
    if let Ok(key) = output_object_key(raw_key, relative) {
        assert!(key.len() <= MAX_OUTPUT_KEY_BYTES, "{key:?} is too long");
        assert!(!key.starts_with('/'), "{key:?} is absolute");
        assert!(
            !key.chars().any(|c| c == '\\' || c.is_control()),
            "{key:?} holds a forbidden character"
        );
        assert!(
            key.split('/')
                .all(|s| !s.is_empty() && s != "." && s != ".."),
            "{key:?} has a traversal segment"
        );
        assert_eq!(key, format!("{raw_key}/{relative}"));
    }
}
