//! Capturing a child's output stream: everything goes to a log file, and a
//! bounded tail stays in memory.

use std::collections::VecDeque;
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// The last `capacity` bytes of a stream.
#[derive(Debug)]
pub(crate) struct Tail {
    bytes: VecDeque<u8>,
    capacity: usize,
    /// Whether earlier bytes were dropped to stay within `capacity`.
    truncated: bool,
}

impl Tail {
    pub(crate) fn new(capacity: usize) -> Tail {
        Tail {
            bytes: VecDeque::with_capacity(capacity.min(64 * 1024)),
            capacity,
            truncated: false,
        }
    }

    pub(crate) fn push(&mut self, chunk: &[u8]) {
        let keep = chunk.len().min(self.capacity);
        let overflow = (self.bytes.len() + keep).saturating_sub(self.capacity);
        if overflow > 0 || keep < chunk.len() {
            self.truncated = true;
        }
        self.bytes.drain(..overflow);
        self.bytes.extend(&chunk[chunk.len() - keep..]);
    }

    /// The tail as text (invalid UTF-8 replaced).
    pub(crate) fn text(&self) -> String {
        let (front, back) = self.bytes.as_slices();
        let mut all = Vec::with_capacity(self.bytes.len());
        all.extend_from_slice(front);
        all.extend_from_slice(back);
        String::from_utf8_lossy(&all).into_owned()
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

/// Copies `pipe` to `log` and into `tail` until the pipe closes. A failing
/// log write does not stop the copy (the child must never block on a full
/// pipe); the first such error is returned at the end.
pub(crate) async fn capture<R: AsyncRead + Unpin>(
    mut pipe: R,
    log: &mut tokio::fs::File,
    tail: &mut Tail,
) -> io::Result<()> {
    let mut buffer = vec![0u8; 16 * 1024];
    let mut log_error = None;
    loop {
        let n = pipe.read(&mut buffer).await?;
        if n == 0 {
            break;
        }
        if log_error.is_none() {
            if let Err(e) = log.write_all(&buffer[..n]).await {
                log_error = Some(e);
            }
        }
        tail.push(&buffer[..n]);
    }
    match log_error {
        Some(e) => Err(e),
        None => log.flush().await,
    }
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

    #[test]
    fn keeps_only_the_last_bytes() {
        let mut tail = Tail::new(8);
        tail.push(b"hello ");
        tail.push(b"world!");
        assert_eq!(tail.text(), "o world!");
        tail.push(b"0123456789");
        assert_eq!(tail.text(), "23456789");
    }

    #[test]
    fn last_line_skips_blank_lines_and_truncated_lines() {
        let mut tail = Tail::new(64);
        tail.push(b"progress 1\n{\"acc\": 0.9}\n\n  \n");
        assert_eq!(tail.last_line().as_deref(), Some("{\"acc\": 0.9}"));

        let mut cut = Tail::new(4);
        cut.push(b"[1,2,3]");
        assert_eq!(cut.last_line(), None);

        let mut whole = Tail::new(16);
        whole.push(b"42");
        assert_eq!(whole.last_line().as_deref(), Some("42"));
        assert_eq!(Tail::new(4).last_line(), None);
    }

    #[test]
    fn text_tail_respects_char_boundaries() {
        assert_eq!(text_tail("héllo", 4), "llo");
        assert_eq!(text_tail("abc", 10), "abc");
    }
}
