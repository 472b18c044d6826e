//! Locations in job files: local paths become `file://` URLs, and prefixes
//! split into their listed base and glob.

use std::path::{Component, Path, PathBuf};

/// Characters that make a path segment a glob (as quarry-store's listing
/// understands them).
pub(crate) const GLOB_CHARS: &[char] = &['*', '?', '[', '{'];

/// Whether `text` starts with a URL scheme such as `s3://`.
pub(crate) fn has_scheme(text: &str) -> bool {
    match text.split_once("://") {
        Some((scheme, _)) => {
            let mut chars = scheme.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        None => false,
    }
}

/// What is wrong with a URL that no store could serve, as a sentence
/// fragment following the key: an `s3://` or `memory://` URL without a
/// bucket, a `file://` URL without an absolute path. `None` for a local path
/// or a URL that looks servable (the store decides the rest).
pub(crate) fn url_problem(url: &str) -> Option<String> {
    if !has_scheme(url) {
        return None;
    }
    let (scheme, rest) = url.split_once("://")?;
    let first = rest.split('/').next().unwrap_or("");
    match scheme.to_ascii_lowercase().as_str() {
        "s3" if first.is_empty() => Some(format!(
            "names no bucket: `{url}` should be written `s3://BUCKET/` or `s3://BUCKET/PREFIX/`"
        )),
        "memory" if first.is_empty() => Some(format!(
            "names no store: `{url}` should be written `memory://NAME/PATH`"
        )),
        "file"
            if !rest
                .strip_prefix("localhost")
                .unwrap_or(rest)
                .starts_with('/') =>
        {
            Some(format!(
                "needs an absolute path: `{url}` should be written `file:///ABSOLUTE/PATH`"
            ))
        }
        _ => None,
    }
}

/// A URL left as written, or a local path (relative ones against
/// `base_dir`) made absolute, normalised lexically (`.` and `..` removed
/// without touching the filesystem) and written as a `file://` URL. A
/// trailing `/` is kept; `%` is escaped as `%25` so that decoding the URL
/// gives the path back exactly.
pub(crate) fn resolve(text: &str, base_dir: &Path) -> String {
    if has_scheme(text) {
        return text.to_owned();
    }
    let joined = base_dir.join(text);
    let mut normal = PathBuf::from("/");
    for component in joined.components() {
        match component {
            Component::Normal(part) => normal.push(part),
            Component::ParentDir => {
                normal.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    let mut path = normal.to_string_lossy().replace('%', "%25");
    if text.ends_with('/') && !path.ends_with('/') {
        path.push('/');
    }
    format!("file://{path}")
}

/// The part of a prefix URL that is listed, ending in `/`, and the glob
/// matched below it, if any.
pub(crate) fn split_glob(prefix: &str) -> (String, Option<String>) {
    let (scheme, key) = prefix.split_once("://").unwrap_or(("", prefix));
    let segments: Vec<&str> = key.split('/').collect();
    match segments.iter().position(|s| s.contains(GLOB_CHARS)) {
        Some(at) => (
            format!("{scheme}://{}/", segments[..at].join("/")),
            Some(segments[at..].join("/")),
        ),
        None if prefix.ends_with('/') => (prefix.to_owned(), None),
        None => (format!("{prefix}/"), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_stay_and_paths_become_file_urls() {
        let base = Path::new("/jobs/wc");
        assert_eq!(resolve("s3://bucket/logs/", base), "s3://bucket/logs/");
        assert_eq!(resolve("memory://t/x", base), "memory://t/x");
        assert_eq!(resolve("data/", base), "file:///jobs/wc/data/");
        assert_eq!(resolve("./data/*.txt", base), "file:///jobs/wc/data/*.txt");
        assert_eq!(
            resolve("../shared/model.pkl", base),
            "file:///jobs/shared/model.pkl"
        );
        assert_eq!(resolve("/abs/100%/x", base), "file:///abs/100%25/x");
        assert!(!has_scheme("C:/data"));
        assert!(!has_scheme("weird/a://b"));
    }

    #[test]
    fn urls_without_a_bucket_or_absolute_path_are_named() {
        for ok in [
            "s3://b/",
            "s3://b",
            "memory://t/x",
            "file:///d/",
            "hdfs:///d",
            "data/",
        ] {
            assert_eq!(url_problem(ok), None, "{ok}");
        }
        for bad in ["s3://", "S3:///key", "memory://", "file://", "file://rel/x"] {
            assert!(url_problem(bad).is_some(), "{bad}");
        }
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
    }
}
