//! Locations in job files: local paths become `file://` URLs, and prefixes
//! split into their listed base and glob.

use quarry_proto::url::{has_scheme, normalize_path};
use std::path::Path;

pub(crate) use quarry_proto::url::{split_glob, GLOB_CHARS};

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
}
