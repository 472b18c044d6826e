//! Capturing a child's output: the child writes its stdout and stderr
//! straight into log files, and once it is gone the end of each file is read
//! back into memory. No pipe sits in between, so the worker copies nothing
//! while the command runs and no stray process can hold a pipe open.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// The last bytes of a log, at most the capacity given to [`read_tail`].
#[derive(Debug, Default)]
pub(crate) struct Tail {
    bytes: Vec<u8>,
    /// Whether earlier bytes were left out to stay within the capacity.
    truncated: bool,
}

impl Tail {
    /// The tail as text (invalid UTF-8 replaced).
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// The last non-empty line, if it is complete: a line cut at the front
    /// by truncation is not returned.
    pub(crate) fn last_line(&self) -> Option<String> {
        let text = self.text();
        let trimmed = text.trim_end();
        let start = trimmed.rfind('\n').map(|i| i + 1);
        if start.is_none() && self.truncated {
            return None;
        }
        let line = trimmed[start.unwrap_or(0)..].trim();
        (!line.is_empty()).then(|| line.to_owned())
    }
}

/// Reads the last `capacity` bytes of the log at `path`. An empty log (the
/// common case for commands that print nothing) costs one `stat`.
pub(crate) fn read_tail(path: &Path, capacity: usize) -> io::Result<Tail> {
    let len = std::fs::metadata(path)?.len();
    if len == 0 {
        return Ok(Tail::default());
    }
    let keep = len.min(capacity as u64);
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(len - keep))?;
    let mut bytes = Vec::with_capacity(keep as usize);
    // `take` bounds memory even if a process that escaped the group is
    // still appending.
    file.take(keep).read_to_end(&mut bytes)?;
    Ok(Tail {
        bytes,
        truncated: len > keep,
    })
}

/// The last `max_bytes` of `text`, cut at a character boundary.
pub(crate) fn text_tail(text: &str, max_bytes: usize) -> &str {
    let mut start = text.len().saturating_sub(max_bytes);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tail_of(content: &[u8], capacity: usize) -> Tail {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, content).unwrap();
        read_tail(&path, capacity).unwrap()
    }

    #[test]
    fn keeps_only_the_last_bytes() {
        assert_eq!(tail_of(b"hello world!", 8).text(), "o world!");
        assert_eq!(tail_of(b"hello world!0123456789", 8).text(), "23456789");
        assert_eq!(tail_of(b"short", 8).text(), "short");
        assert_eq!(tail_of(b"", 8).text(), "");
    }

    #[test]
    fn last_line_skips_blank_lines_and_truncated_lines() {
        let tail = tail_of(b"progress 1\n{\"acc\": 0.9}\n\n  \n", 64);
        assert_eq!(tail.last_line().as_deref(), Some("{\"acc\": 0.9}"));
        assert_eq!(tail_of(b"[1,2,3]", 4).last_line(), None);
        assert_eq!(tail_of(b"42", 16).last_line().as_deref(), Some("42"));
        assert_eq!(tail_of(b"", 4).last_line(), None);
    }

    #[test]
    fn a_missing_log_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_tail(&dir.path().join("nope"), 8).is_err());
    }

    #[test]
    fn text_tail_respects_char_boundaries() {
        assert_eq!(text_tail("héllo", 4), "llo");
        assert_eq!(text_tail("abc", 10), "abc");
    }
}
