//! Task keys: one scheme for every way in.
//!
//! A task that reads an object is named after the object's key relative to
//! the listed prefix (the part of the URL before any glob), made safe by
//! [`quarry_command::sanitize_key`]: `logs/2026/a.txt` under `s3://b/logs/`
//! is `2026/a.txt`. A URL naming one object names its task by the file
//! name. The chunks of a large object add `@` and the chunk's number,
//! `2026/a.txt@00003`; `@` never survives sanitising, so a chunk key never
//! equals an object's key.

use quarry_command::sanitize_key;
use quarry_proto::url::split_glob;
use quarry_store::{StoreError, StoreResolver};

/// Digits of a chunk number (at least: more chunks get more digits).
const CHUNK_DIGITS: usize = 5;

/// The key of chunk `index` of the object whose task key is `object_key`.
pub fn chunk_key(object_key: &str, index: usize) -> String {
    format!("{object_key}@{index:0CHUNK_DIGITS$}")
}

/// Names tasks after their objects' keys relative to a listed prefix.
#[derive(Clone, Debug)]
pub struct KeyNamer {
    /// The listed prefix as the store spells listed URLs, ending in `/`.
    base: String,
    /// The URL as listings spell it, when it has no glob (it may name one
    /// object).
    exact: Option<String>,
}

impl KeyNamer {
    /// A namer for what listing `url` (a prefix, a glob or one object)
    /// returns.
    pub fn new(store: &StoreResolver, url: &str) -> Result<KeyNamer, StoreError> {
        let (literal, glob) = split_glob(url);
        let listed = store.resolve(&literal)?.url();
        let base = if listed.ends_with('/') {
            listed
        } else {
            format!("{listed}/")
        };
        let exact = match glob {
            Some(_) => None,
            None => Some(store.resolve(url)?.url()),
        };
        Ok(KeyNamer { base, exact })
    }

    /// The task key of the listed object at `url`: deterministic, a safe
    /// relative path, and unique among the objects of one listing.
    pub fn key(&self, url: &str) -> String {
        if let Some(relative) = url.strip_prefix(&self.base).filter(|r| !r.is_empty()) {
            return sanitize_key(relative, false);
        }
        if self.exact.as_deref() == Some(url) {
            // The URL names one object: its key is its file name.
            let name = url.rsplit('/').next().unwrap_or(url);
            return sanitize_key(name, false);
        }
        // Outside the prefix (which a listing should not return): the
        // whole path, marked as altered so it cannot equal a relative key.
        let path = url.split_once("://").map_or(url, |(_, rest)| rest);
        sanitize_key(path, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quarry_store::StoreConfig;

    #[test]
    fn keys_are_relative_to_the_literal_prefix() {
        let store = StoreResolver::new(StoreConfig::default());
        let namer = KeyNamer::new(&store, "s3://b/logs/2026/").unwrap();
        assert_eq!(namer.key("s3://b/logs/2026/day1/a.txt"), "day1/a.txt");
        let without_slash = KeyNamer::new(&store, "s3://b/logs/2026").unwrap();
        assert_eq!(without_slash.key("s3://b/logs/2026/a.txt"), "a.txt");
        let globbed = KeyNamer::new(&store, "s3://b/logs/*/part-*.txt").unwrap();
        assert_eq!(
            globbed.key("s3://b/logs/2026/part-1.txt"),
            "2026/part-1.txt"
        );
        let one = KeyNamer::new(&store, "s3://b/logs/a.txt").unwrap();
        assert_eq!(one.key("s3://b/logs/a.txt"), "a.txt");
        let root = KeyNamer::new(&store, "s3://b").unwrap();
        assert_eq!(root.key("s3://b/x/y"), "x/y");
        assert!(root.key("s3://other/x").contains('~'));
        assert_eq!(chunk_key("a.txt", 3), "a.txt@00003");
        assert_eq!(chunk_key("a.txt", 123_456), "a.txt@123456");
    }

    #[test]
    fn local_prefixes_name_keys_like_listed_file_urls() {
        let store = StoreResolver::new(StoreConfig::default());
        let namer = KeyNamer::new(&store, "/tmp/quarry-keys/in/").unwrap();
        assert_eq!(namer.key("file:///tmp/quarry-keys/in/x/y.txt"), "x/y.txt");
        let url = KeyNamer::new(&store, "file:///tmp/quarry-keys/in/*.txt").unwrap();
        assert_eq!(url.key("file:///tmp/quarry-keys/in/y.txt"), "y.txt");
    }
}
