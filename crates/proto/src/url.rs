//! The syntax of the URLs that [`crate::DataRef`]s, prefixes and globs are
//! written in, defined once for every crate that reads them: which
//! characters make a glob, where a prefix's listed part ends, and how a
//! local path is normalised.

use std::path::{Component, Path, PathBuf};

/// Characters that make a path segment a glob.
pub const GLOB_CHARS: &[char] = &['*', '?', '[', '{'];

/// Whether `text` starts with a URL scheme such as `s3://`.
pub fn has_scheme(text: &str) -> bool {
    match text.split_once("://") {
        Some((scheme, _)) => {
            let mut chars = scheme.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        None => false,
    }
}

/// The part of a prefix URL that is listed, ending in `/`, and the glob
/// matched below it, if any: the glob starts at the first segment holding
/// one of [`GLOB_CHARS`].
pub fn split_glob(prefix: &str) -> (String, Option<String>) {
    let (scheme, key) = match prefix.split_once("://") {
        Some((scheme, key)) => (Some(scheme), key),
        None => (None, prefix),
    };
    let rejoin = |key: String| match scheme {
        Some(scheme) => format!("{scheme}://{key}"),
        None => key,
    };
    let segments: Vec<&str> = key.split('/').collect();
    match segments.iter().position(|s| s.contains(GLOB_CHARS)) {
        Some(at) => (
            rejoin(format!("{}/", segments[..at].join("/"))),
            Some(segments[at..].join("/")),
        ),
        None if prefix.ends_with('/') => (prefix.to_owned(), None),
        None => (format!("{prefix}/"), None),
    }
}

/// `path` with `.` and `..` components removed lexically (without
/// touching the filesystem), as an absolute path: a relative `path` is
/// taken from `/`. `..` at the root stays at the root.
pub fn normalize_path(path: &Path) -> PathBuf {
    let mut normal = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::Normal(part) => normal.push(part),
            Component::ParentDir => {
                normal.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    normal
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_are_recognised() {
        assert!(has_scheme("s3://b/k"));
        assert!(has_scheme("memory://t/x"));
        assert!(!has_scheme("C:/data"));
        assert!(!has_scheme("weird/a://b"));
        assert!(!has_scheme("/abs/path"));
    }

    #[test]
    fn prefixes_split_at_the_first_glob_segment() {
        assert_eq!(split_glob("s3://b/logs/"), ("s3://b/logs/".into(), None));
        assert_eq!(split_glob("s3://b/logs"), ("s3://b/logs/".into(), None));
        assert_eq!(
            split_glob("s3://b/logs/**/*.gz"),
            ("s3://b/logs/".into(), Some("**/*.gz".into()))
        );
        assert_eq!(
            split_glob("file:///d/2024-*/part-?.csv"),
            ("file:///d/".into(), Some("2024-*/part-?.csv".into()))
        );
        assert_eq!(
            split_glob("/tmp/in/*.txt"),
            ("/tmp/in/".into(), Some("*.txt".into()))
        );
    }

    #[test]
    fn paths_normalise_lexically() {
        assert_eq!(normalize_path(Path::new("/a/./b/../c")), Path::new("/a/c"));
        assert_eq!(normalize_path(Path::new("/../x")), Path::new("/x"));
        assert_eq!(normalize_path(Path::new("rel/dir")), Path::new("/rel/dir"));
    }
}
