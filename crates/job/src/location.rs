//! Locations in job files: local paths become `file://` URLs, and prefixes
//! split into their listed base and glob.

use quarry_proto::url::{has_scheme, normalize_path};
use std::path::Path;

pub(crate) use quarry_proto::url::{split_glob, GLOB_CHARS};

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
    let normal = normalize_path(&base_dir.join(text));
    let mut path = normal.to_string_lossy().replace('%', "%25");
    if text.ends_with('/') && !path.ends_with('/') {
        path.push('/');
    }
    format!("file://{path}")
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
}
