use serde::{Deserialize, Serialize};
use std::fmt;

/// What pins the content a [`DataRef`] points at, so that a worker never
/// silently reads a newer version than the one listed at submit time.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Pin {
    /// The object's ETag (S3, MinIO, local files via object_store).
    ETag(String),
    /// The object's version id, where the store versions objects.
    Version(String),
    /// No pin: content-addressed data whose key already names its content.
    Unpinned,
}

/// A half-open byte range `start..end` inside an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ByteRange {
    /// First byte, inclusive.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

impl ByteRange {
    /// Number of bytes in the range.
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Whether the range holds no byte.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A reference to data in an object store: what tasks carry instead of
/// payloads.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DataRef {
    /// Where the object lives: `s3://bucket/key`, `file:///abs/path`,
    /// `hdfs://…` or `memory://…`.
    pub url: String,
    /// What pins its content.
    pub pin: Pin,
    /// The whole object's size in bytes.
    pub size: u64,
    /// The part of the object this reference means; `None` is all of it.
    pub range: Option<ByteRange>,
}

impl DataRef {
    /// Bytes a reader of this reference transfers.
    pub fn read_len(&self) -> u64 {
        self.range.map_or(self.size, |r| r.len())
    }

    /// The identity of the *object version* this reference reads, ignoring
    /// the byte range: workers cache whole objects under this key, and the
    /// scheduler's locality index speaks the same key.
    pub fn object_key(&self) -> String {
        match &self.pin {
            Pin::ETag(e) => format!("{}#etag={}", self.url, e),
            Pin::Version(v) => format!("{}#version={}", self.url, v),
            Pin::Unpinned => self.url.clone(),
        }
    }
}

impl fmt::Display for DataRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.object_key())?;
        if let Some(r) = self.range {
            write!(f, "[{}..{}]", r.start, r.end)?;
        }
        Ok(())
    }
}
