//! Output files: listing what a command wrote, and the object keys they are
//! uploaded under.

use sha2::{Digest, Sha256};
use std::io;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Longest object key [`output_object_key`] returns, in bytes. S3 allows
/// 1024; the rest is left for the job's output prefix.
pub const MAX_OUTPUT_KEY_BYTES: usize = 768;

/// Longest single path segment, in bytes (the usual file-name limit, so that
/// outputs can also be written to a local directory).
pub const MAX_SEGMENT_BYTES: usize = 255;

/// Why a task key or relative path cannot name an output object.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum KeyError {
    /// The path is empty.
    #[error("{what} is empty")]
    Empty {
        /// Which part: `task key` or `output path`.
        what: &'static str,
    },
    /// The path starts with `/`.
    #[error("{what} `{path}` is absolute; it must be relative")]
    Absolute {
        /// Which part.
        what: &'static str,
        /// The offending path.
        path: String,
    },
    /// A segment is `..`, `.` or empty, which could escape or alias the
    /// task's directory.
    #[error("{what} `{path}` has a `{segment}` segment; `..`, `.` and empty segments are refused")]
    BadSegment {
        /// Which part.
        what: &'static str,
        /// The offending path.
        path: String,
        /// The offending segment.
        segment: String,
    },
    /// The path holds NUL, a backslash, `%` or another control character.
    #[error("{what} `{path}` contains the forbidden character {character:?}")]
    ForbiddenCharacter {
        /// Which part.
        what: &'static str,
        /// The offending path (with the character escaped by `{:?}` above).
        path: String,
        /// The offending character.
        character: char,
    },
    /// A segment or the whole key is too long.
    #[error("{what} is too long: {len} bytes (limit {limit})")]
    TooLong {
        /// Which part.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit it exceeds.
        limit: usize,
    },
}

/// Longest task key [`sanitize_key`] returns, in bytes (the planner may
/// append a chunk suffix `@NNNNN`). Longer keys are cut and get a hash
/// suffix.
pub const MAX_TASK_KEY_BYTES: usize = 200;

/// Hex digits of the hash that makes altered keys unique.
const KEY_HASH_HEX: usize = 16;

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '=')
}

/// A relative object key made safe to name an output directory: `/`
/// separates segments; empty, `.` and `..` segments are dropped; characters
/// other than ASCII letters, digits, `.`, `_`, `-` and `=` become `_`. If
/// anything changed (or `force_hash`), or the result is longer than
/// [`MAX_TASK_KEY_BYTES`], it is cut to fit and `~` plus a hash of the
/// original is appended: `~` never appears in an unchanged key, so keys stay
/// unique within a listing.
pub fn sanitize_key(relative: &str, force_hash: bool) -> String {
    let mut altered = force_hash;
    let mut segments = Vec::new();
    for segment in relative.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            altered = true;
            continue;
        }
        let clean: String = segment
            .chars()
            .map(|c| {
                if is_key_char(c) {
                    c
                } else {
                    altered = true;
                    '_'
                }
            })
            .collect();
        segments.push(clean);
    }
    let mut key = segments.join("/");
    if !altered && !key.is_empty() && key.len() <= MAX_TASK_KEY_BYTES {
        return key;
    }
    let digest = hex::encode(Sha256::digest(relative.as_bytes()));
    // Only ASCII remains, so any byte index is a character boundary.
    key.truncate(MAX_TASK_KEY_BYTES - 1 - KEY_HASH_HEX);
    while key.ends_with('/') {
        key.pop();
    }
    format!("{key}~{}", &digest[..KEY_HASH_HEX])
}

/// What an earlier attempt or run left in a task's output directory that
/// this attempt does not write: of `listed` (paths relative to
/// `OUTPUT/<task key>/`), those not in `kept`, to delete before the new
/// outputs go up, so that the directory holds exactly this attempt's files
/// (and logs of one attempt never sit beside another's).
///
/// Directories that hold quarry's own files of another task (`_logs/` or a
/// `_result.*`: objects `a` and `a/b` under one prefix give the tasks `a`
/// and `a/b`, whose directories nest) are left alone.
pub fn stale_outputs<'a>(listed: &'a [String], kept: &[String]) -> Vec<&'a str> {
    let foreign: Vec<String> = listed
        .iter()
        .filter_map(|path| {
            let (dir, name) = path.rsplit_once('/')?;
            let dir = dir
                .strip_suffix("/_logs")
                .or_else(|| name.starts_with("_result.").then_some(dir))?;
            (!dir.is_empty() && dir != "_logs").then(|| format!("{dir}/"))
        })
        .collect();
    listed
        .iter()
        .filter(|path| !kept.contains(path))
        .filter(|path| !foreign.iter().any(|dir| path.starts_with(dir.as_str())))
        .map(String::as_str)
        .collect()
}

/// The object key (relative to the job's output prefix) of a file a task
/// wrote: `task_key/relative_path`. Both parts must be relative,
/// `/`-separated paths without `..`, `.` or empty segments, NUL, backslashes
/// `%` or control characters, with segments of at most [`MAX_SEGMENT_BYTES`] and
/// a result of at most [`MAX_OUTPUT_KEY_BYTES`]. This is the traversal rule:
/// no output of one task can land outside `OUTPUT/<task key>/`.
pub fn output_object_key(task_key: &str, relative_path: &str) -> Result<String, KeyError> {
    check_relative("task key", task_key)?;
    check_relative("output path", relative_path)?;
    let key = format!("{task_key}/{relative_path}");
    if key.len() > MAX_OUTPUT_KEY_BYTES {
        return Err(KeyError::TooLong {
            what: "output key",
            len: key.len(),
            limit: MAX_OUTPUT_KEY_BYTES,
        });
    }
    Ok(key)
}

/// The directory of a task's outputs under the job's output prefix
/// (`<task key>/`), checked as [`output_object_key`] checks the task key,
/// for listing or clearing it before any file is written.
pub fn output_dir_key(task_key: &str) -> Result<String, KeyError> {
    check_relative("task key", task_key)?;
    let key = format!("{task_key}/");
    if key.len() >= MAX_OUTPUT_KEY_BYTES {
        return Err(KeyError::TooLong {
            what: "task key",
            len: task_key.len(),
            limit: MAX_OUTPUT_KEY_BYTES - 1,
        });
    }
    Ok(key)
}

fn check_relative(what: &'static str, path: &str) -> Result<(), KeyError> {
    if path.is_empty() {
        return Err(KeyError::Empty { what });
    }
    if path.starts_with('/') {
        return Err(KeyError::Absolute {
            what,
            path: path.to_owned(),
        });
    }
    // `%` is refused because store URLs are percent-decoded: `%2e%2e`
    // would turn into `..` after this check.
    if let Some(character) = path
        .chars()
        .find(|&c| c == '\\' || c == '%' || c.is_control())
    {
        return Err(KeyError::ForbiddenCharacter {
            what,
            path: path.escape_debug().to_string(),
            character,
        });
    }
    for segment in path.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(KeyError::BadSegment {
                what,
                path: path.to_owned(),
                segment: segment.to_owned(),
            });
        }
        if segment.len() > MAX_SEGMENT_BYTES {
            return Err(KeyError::TooLong {
                what,
                len: segment.len(),
                limit: MAX_SEGMENT_BYTES,
            });
        }
    }
    Ok(())
}

/// A file in the output directory that is not uploaded, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedOutput {
    /// Its path relative to the output directory.
    pub path: PathBuf,
    /// Why it was skipped (a symlink, a special file, a name that is not
    /// UTF-8 or breaks the key rule).
    pub reason: String,
}

/// What [`list_outputs`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutputListing {
    /// Regular files, as sorted `/`-separated paths relative to the output
    /// directory.
    pub files: Vec<String>,
    /// Entries that are not uploaded.
    pub skipped: Vec<SkippedOutput>,
}

/// Why the output directory could not be listed.
#[derive(Debug, Error)]
pub enum ListError {
    /// Reading a directory failed.
    #[error("cannot list output directory {}: {source}", path.display())]
    Io {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// More files than allowed (memory stays bounded).
    #[error("the command wrote more than {limit} output files")]
    TooMany {
        /// The limit.
        limit: usize,
    },
}

/// Lists the regular files under `output_dir`, recursively. Symlinks are
/// never followed (they are reported as skipped), so every listed file lies
/// inside `output_dir`; each relative path is also checked with the key rule
/// of [`output_object_key`]. At most `max_files` files are accepted.
pub fn list_outputs(output_dir: &Path, max_files: usize) -> Result<OutputListing, ListError> {
    let mut listing = OutputListing::default();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative_dir) = pending.pop() {
        let dir = output_dir.join(&relative_dir);
        let io_error = |source| ListError::Io {
            path: dir.clone(),
            source,
        };
        for entry in std::fs::read_dir(&dir).map_err(io_error)? {
            let entry = entry.map_err(io_error)?;
            let relative = relative_dir.join(entry.file_name());
            // `DirEntry::file_type` does not follow symlinks.
            let file_type = entry.file_type().map_err(io_error)?;
            let skip = |reason: &str| SkippedOutput {
                path: relative.clone(),
                reason: reason.to_owned(),
            };
            if file_type.is_dir() {
                pending.push(relative);
            } else if file_type.is_symlink() {
                listing.skipped.push(skip("a symlink (not followed)"));
            } else if !file_type.is_file() {
                listing.skipped.push(skip("not a regular file"));
            } else {
                let Some(text) = relative.to_str() else {
                    listing.skipped.push(skip("the name is not UTF-8"));
                    continue;
                };
                if let Err(e) = check_relative("output path", text) {
                    listing.skipped.push(skip(&e.to_string()));
                    continue;
                }
                if listing.files.len() == max_files {
                    return Err(ListError::TooMany { limit: max_files });
                }
                listing.files.push(text.to_owned());
            }
        }
    }
    listing.files.sort();
    listing.skipped.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(listing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_keys_stay_as_they_are() {
        assert_eq!(
            sanitize_key("2024/01/part-0001.csv", false),
            "2024/01/part-0001.csv"
        );
        assert_eq!(
            sanitize_key("date=2024-01-01/x.parquet", false),
            "date=2024-01-01/x.parquet"
        );
    }

    #[test]
    fn altered_keys_get_a_hash_suffix() {
        let key = sanitize_key("a b.txt", false);
        assert!(key.starts_with("a_b.txt~"), "{key}");
        assert_eq!(key.len(), "a_b.txt~".len() + KEY_HASH_HEX);
        assert_ne!(key, sanitize_key("a_b.txt", false));
        assert_ne!(key, sanitize_key("a?b.txt", false));
        assert_ne!(sanitize_key("a\\b", false), sanitize_key("a_b", false));
        assert_eq!(key, sanitize_key("a b.txt", false), "deterministic");
    }

    #[test]
    fn stale_outputs_are_what_this_attempt_does_not_write() {
        let listed: Vec<String> = [
            "part.csv",
            "old/extra.csv",
            "_logs/stdout.log",
            "_logs/stderr.log",
            "_result.json",
            // Another task's directory nested in this one.
            "b/_logs/stdout.log",
            "b/out.txt",
            "c/_result.msgpack",
        ]
        .map(String::from)
        .to_vec();
        let kept = ["part.csv".to_string(), "_logs/stderr.log".to_string()];
        assert_eq!(
            stale_outputs(&listed, &kept),
            ["old/extra.csv", "_logs/stdout.log", "_result.json"]
        );
    }

    #[test]
    fn joins_task_key_and_relative_path() {
        assert_eq!(
            output_object_key("00042", "counts.json").unwrap(),
            "00042/counts.json"
        );
        assert_eq!(
            output_object_key("logs/a.txt", "sub/dir/x.parquet").unwrap(),
            "logs/a.txt/sub/dir/x.parquet"
        );
        assert_eq!(
            output_object_key("k", "..hidden/a..b").unwrap(),
            "k/..hidden/a..b"
        );
    }

    #[test]
    fn refuses_parent_segments() {
        for path in ["..", "../x", "a/../../x", "a/.."] {
            assert!(
                matches!(
                    output_object_key("k", path),
                    Err(KeyError::BadSegment { ref segment, .. }) if segment == ".."
                ),
                "{path}"
            );
        }
        assert!(matches!(
            output_object_key("a/../b", "x"),
            Err(KeyError::BadSegment {
                what: "task key",
                ..
            })
        ));
    }

    #[test]
    fn refuses_dot_and_empty_segments() {
        assert!(matches!(
            output_object_key("k", "./x"),
            Err(KeyError::BadSegment { .. })
        ));
        assert!(matches!(
            output_object_key("k", "a//b"),
            Err(KeyError::BadSegment { .. })
        ));
        assert!(matches!(
            output_object_key("k", "a/"),
            Err(KeyError::BadSegment { .. })
        ));
        assert_eq!(
            output_object_key("k", ""),
            Err(KeyError::Empty {
                what: "output path"
            })
        );
        assert_eq!(
            output_object_key("", "x"),
            Err(KeyError::Empty { what: "task key" })
        );
    }

    #[test]
    fn refuses_absolute_paths() {
        assert!(matches!(
            output_object_key("k", "/etc/passwd"),
            Err(KeyError::Absolute { .. })
        ));
        assert!(matches!(
            output_object_key("/k", "x"),
            Err(KeyError::Absolute {
                what: "task key",
                ..
            })
        ));
    }

    #[test]
    fn refuses_nul_backslash_and_control_characters() {
        for (path, character) in [
            ("a\0b", '\0'),
            ("..\\x", '\\'),
            ("a\nb", '\n'),
            ("%2e%2e/x", '%'),
        ] {
            assert!(
                matches!(
                    output_object_key("k", path),
                    Err(KeyError::ForbiddenCharacter { character: c, .. }) if c == character
                ),
                "{path:?}"
            );
        }
    }

    #[test]
    fn refuses_over_long_names() {
        let segment = "s".repeat(MAX_SEGMENT_BYTES + 1);
        assert_eq!(
            output_object_key("k", &segment),
            Err(KeyError::TooLong {
                what: "output path",
                len: MAX_SEGMENT_BYTES + 1,
                limit: MAX_SEGMENT_BYTES
            })
        );
        let segment = "s".repeat(MAX_SEGMENT_BYTES);
        assert!(output_object_key("k", &segment).is_ok());
        let deep = [segment.as_str(); 4].join("/");
        assert!(matches!(
            output_object_key("k", &deep),
            Err(KeyError::TooLong {
                what: "output key",
                ..
            })
        ));
    }

    #[test]
    fn lists_regular_files_and_skips_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
        std::fs::write(root.join("b.txt"), "b").unwrap();
        std::fs::write(root.join("sub/a.txt"), "a").unwrap();
        std::fs::write(root.join("sub/deeper/c.txt"), "c").unwrap();
        std::os::unix::fs::symlink("/etc", root.join("escape")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", root.join("sub/link.txt")).unwrap();
        let listing = list_outputs(root, 100).unwrap();
        assert_eq!(listing.files, ["b.txt", "sub/a.txt", "sub/deeper/c.txt"]);
        let skipped: Vec<_> = listing
            .skipped
            .iter()
            .map(|s| s.path.to_str().unwrap())
            .collect();
        assert_eq!(skipped, ["escape", "sub/link.txt"]);
        assert_eq!(listing.skipped[0].reason, "a symlink (not followed)");
    }

    #[test]
    fn refuses_too_many_files() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..4 {
            std::fs::write(dir.path().join(format!("f{i}")), "").unwrap();
        }
        assert!(matches!(
            list_outputs(dir.path(), 3),
            Err(ListError::TooMany { limit: 3 })
        ));
        assert_eq!(list_outputs(dir.path(), 4).unwrap().files.len(), 4);
    }
}
