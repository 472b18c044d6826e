use crate::error::{Result, StoreError};
use crate::hdfs::{record_locations, BlockLocator, SharedLocations};
use crate::resolve::{SplitUrl, StoreLocation, StoreResolver};
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};
use globset::{GlobBuilder, GlobMatcher};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStoreExt};
use quarry_proto::{DataRef, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use quarry_proto::url::GLOB_CHARS;

/// The pin of a listed or fetched object: its ETag, else its version id.
pub(crate) fn pin_of(meta: &ObjectMeta, url: &str) -> Result<Pin> {
    match (&meta.e_tag, &meta.version) {
        (Some(etag), _) => Ok(Pin::ETag(etag.clone())),
        (None, Some(version)) => Ok(Pin::Version(version.clone())),
        (None, None) => Err(StoreError::Unpinnable {
            url: url.to_string(),
        }),
    }
}

/// What a listing URL asks for.
struct Listing {
    location: StoreLocation,
    /// Matched against each key relative to the listed prefix.
    glob: Option<GlobMatcher>,
    /// A URL without glob or trailing slash may name one object, which
    /// prefix listings do not return on every store; it is looked up when
    /// the listing comes back empty.
    single_object_fallback: bool,
    /// For HDFS: who tells the listed files' block locations, and where
    /// they are kept.
    block_locations: Option<(Arc<BlockLocator>, SharedLocations)>,
}

impl Listing {
    fn parse(resolver: &StoreResolver, url: &str) -> Result<Listing> {
        let split = SplitUrl::parse(url)?;
        let segments: Vec<&str> = split.key.split('/').collect();
        let glob_at = segments.iter().position(|s| s.contains(GLOB_CHARS));
        let (literal, glob) = match glob_at {
            None => (split.key.clone(), None),
            Some(at) => {
                let pattern = segments[at..].join("/");
                let glob = GlobBuilder::new(&pattern)
                    // `*` stays within one path segment; `**` crosses them.
                    .literal_separator(true)
                    .build()
                    .map_err(|source| StoreError::Glob {
                        url: url.to_string(),
                        pattern: pattern.clone(),
                        source,
                    })?
                    .compile_matcher();
                let mut literal = segments[..at].join("/");
                if split.is_file() && literal.is_empty() {
                    literal.push('/');
                }
                (literal, Some(glob))
            }
        };
        let path = split.path_of(&literal, url)?;
        let single_object_fallback =
            glob.is_none() && !url.ends_with('/') && !path.as_ref().is_empty();
        Ok(Listing {
            location: resolver.location(&split, path, url)?,
            glob,
            single_object_fallback,
            block_locations: resolver.block_locator(&split),
        })
    }

    fn into_stream(self) -> BoxStream<'static, Result<DataRef>> {
        let Listing {
            location,
            glob,
            single_object_fallback,
            block_locations,
        } = self;
        let location = Arc::new(location);
        let prefix = location.path.clone();
        let listed_prefix = (!prefix.as_ref().is_empty()).then_some(&prefix);
        let seen_any = Arc::new(AtomicBool::new(false));

        let listed = {
            let location = Arc::clone(&location);
            let seen_any = Arc::clone(&seen_any);
            let prefix = prefix.clone();
            location
                .store
                .list(listed_prefix)
                .map_err({
                    let url = location.url();
                    move |source| StoreError::from_store(&url, source)
                })
                .try_filter_map(move |meta| {
                    seen_any.store(true, Ordering::Relaxed);
                    let keep = glob
                        .as_ref()
                        .is_none_or(|glob| glob.is_match(relative_key(&meta.location, &prefix)));
                    let item = keep.then(|| data_ref_of(&location, &meta)).transpose();
                    futures::future::ready(item)
                })
        };

        let single_object = stream::once(async move {
            if !single_object_fallback || seen_any.load(Ordering::Relaxed) {
                return None;
            }
            match location.store.head(&location.path).await {
                Ok(meta) => Some(data_ref_of(&location, &meta)),
                Err(object_store::Error::NotFound { .. }) => None,
                Err(source) => Some(Err(StoreError::from_store(&location.url(), source))),
            }
        })
        .filter_map(futures::future::ready);

        let refs = listed.chain(single_object).boxed();
        match block_locations {
            Some((locator, table)) => record_locations(refs, locator, table),
            None => refs,
        }
    }
}

/// `key` relative to `prefix` (which it lies under), as `a/b/c`.
fn relative_key(key: &Path, prefix: &Path) -> String {
    match key.prefix_match(prefix) {
        Some(parts) => parts
            .map(|part| part.as_ref().to_string())
            .collect::<Vec<_>>()
            .join("/"),
        None => key.as_ref().to_string(),
    }
}

fn data_ref_of(location: &StoreLocation, meta: &ObjectMeta) -> Result<DataRef> {
    let url = location.url_of(&meta.location);
    Ok(DataRef {
        pin: pin_of(meta, &url)?,
        url,
        size: meta.size,
        range: None,
    })
}

impl StoreResolver {
    /// Lists the objects a URL or glob names, each pinned by its ETag (else
    /// its version id), as the store returns them, page by page: nothing is
    /// collected, so a prefix of millions of objects streams in constant
    /// memory.
    ///
    /// - `s3://b/logs/` or `s3://b/logs`: everything under the prefix,
    ///   recursively; a URL naming one object yields that object.
    /// - `s3://b/logs/2026/*.txt`, `s3://b/logs/**/*.csv`: the part before
    ///   the first segment with a glob character (`* ? [ {`) is the listed
    ///   prefix; the rest is matched against each key relative to it. `*`
    ///   and `?` stay within one segment, `**` spans segments.
    /// - Local paths and `file://` URLs work the same way; keys with
    ///   characters `object_store` escapes (such as `#` or `%`) are matched
    ///   in their escaped form.
    ///
    /// A prefix with no object yields nothing. Errors (a bad URL, a failed
    /// listing page, an object without ETag or version) come as stream
    /// items.
    pub fn list_refs(&self, url_or_glob: &str) -> BoxStream<'static, Result<DataRef>> {
        match Listing::parse(self, url_or_glob) {
            Ok(listing) => listing.into_stream(),
            Err(error) => stream::once(async move { Err(error) }).boxed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StoreConfig;
    use crate::memory_store;
    use async_trait::async_trait;
    use object_store::{
        CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectStore,
        PutMultipartOptions, PutOptions, PutPayload, PutResult,
    };
    use std::fmt;
    use std::sync::atomic::AtomicU64;

    async fn seed(name: &str, keys: &[&str]) -> StoreResolver {
        let store = memory_store(name);
        for key in keys {
            store
                .put(&Path::from(*key), PutPayload::from(key.to_string()))
                .await
                .unwrap();
        }
        StoreResolver::new(StoreConfig::default())
    }

    async fn urls(resolver: &StoreResolver, url: &str) -> Vec<String> {
        let refs: Vec<DataRef> = resolver.list_refs(url).try_collect().await.unwrap();
        let mut urls: Vec<String> = refs.into_iter().map(|r| r.url).collect();
        urls.sort();
        urls
    }

    #[tokio::test]
    async fn prefix_listing_pins_every_object() {
        let resolver = seed("list-prefix", &["logs/a.txt", "logs/sub/b.txt", "other/c"]).await;
        let refs: Vec<DataRef> = resolver
            .list_refs("memory://list-prefix/logs/")
            .try_collect()
            .await
            .unwrap();
        assert_eq!(refs.len(), 2);
        for r in &refs {
            assert!(matches!(r.pin, Pin::ETag(_)), "{r:?}");
            assert_eq!(r.range, None);
            let key = r.url.strip_prefix("memory://list-prefix/").unwrap();
            assert_eq!(r.size, key.len() as u64);
        }
        assert_eq!(
            urls(&resolver, "memory://list-prefix").await.len(),
            3,
            "the bare root lists everything"
        );
    }

    #[tokio::test]
    async fn globs_match_relative_to_the_literal_prefix() {
        let resolver = seed(
            "list-glob",
            &[
                "logs/2026/a.txt",
                "logs/2026/b.csv",
                "logs/2026/deep/c.txt",
                "logs/2025/d.txt",
            ],
        )
        .await;
        assert_eq!(
            urls(&resolver, "memory://list-glob/logs/2026/*.txt").await,
            ["memory://list-glob/logs/2026/a.txt"]
        );
        assert_eq!(
            urls(&resolver, "memory://list-glob/logs/**/*.txt").await,
            [
                "memory://list-glob/logs/2025/d.txt",
                "memory://list-glob/logs/2026/a.txt",
                "memory://list-glob/logs/2026/deep/c.txt",
            ]
        );
        assert_eq!(
            urls(&resolver, "memory://list-glob/logs/202?/{a,d}.txt").await,
            [
                "memory://list-glob/logs/2025/d.txt",
                "memory://list-glob/logs/2026/a.txt",
            ]
        );
        let err = resolver
            .list_refs("memory://list-glob/logs/[")
            .try_collect::<Vec<_>>()
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Glob { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_url_naming_one_object_lists_it_and_missing_lists_nothing() {
        let resolver = seed("list-single", &["data/x.csv", "data/x.csv.bak"]).await;
        let refs: Vec<DataRef> = resolver
            .list_refs("memory://list-single/data/x.csv")
            .try_collect()
            .await
            .unwrap();
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].url, "memory://list-single/data/x.csv");
        assert!(urls(&resolver, "memory://list-single/nope")
            .await
            .is_empty());
    }

    #[tokio::test]
    async fn local_directories_files_and_globs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("in/sub")).unwrap();
        std::fs::write(dir.path().join("in/a.txt"), "aa").unwrap();
        std::fs::write(dir.path().join("in/b.csv"), "bbb").unwrap();
        std::fs::write(dir.path().join("in/sub/c.txt"), "c").unwrap();
        let resolver = StoreResolver::new(StoreConfig::default());
        let root = dir.path().to_str().unwrap();

        let all = urls(&resolver, &format!("{root}/in")).await;
        assert_eq!(all.len(), 3, "{all:?}");
        assert!(all.iter().all(|u| u.starts_with("file:///")));

        let one: Vec<DataRef> = resolver
            .list_refs(&format!("file://{root}/in/a.txt"))
            .try_collect()
            .await
            .unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].url, format!("file://{root}/in/a.txt"));
        assert_eq!(one[0].size, 2);
        assert!(matches!(one[0].pin, Pin::ETag(_)));

        let txt = urls(&resolver, &format!("{root}/in/**/*.txt")).await;
        assert_eq!(
            txt,
            [
                format!("file://{root}/in/a.txt"),
                format!("file://{root}/in/sub/c.txt")
            ]
        );
    }

    /// A store whose listing never ends: proves that `list_refs` yields as
    /// the store lists instead of collecting.
    #[derive(Debug, Default)]
    struct EndlessListing {
        produced: Arc<AtomicU64>,
    }

    impl fmt::Display for EndlessListing {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("EndlessListing")
        }
    }

    fn not_needed(operation: &str) -> object_store::Error {
        object_store::Error::NotImplemented {
            operation: operation.to_string(),
            implementer: "EndlessListing".to_string(),
        }
    }

    #[async_trait]
    impl ObjectStore for EndlessListing {
        async fn put_opts(
            &self,
            _: &Path,
            _: PutPayload,
            _: PutOptions,
        ) -> object_store::Result<PutResult> {
            Err(not_needed("put"))
        }
        async fn put_multipart_opts(
            &self,
            _: &Path,
            _: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            Err(not_needed("put_multipart"))
        }
        async fn get_opts(&self, _: &Path, _: GetOptions) -> object_store::Result<GetResult> {
            Err(not_needed("get"))
        }
        fn delete_stream(
            &self,
            _: BoxStream<'static, object_store::Result<Path>>,
        ) -> BoxStream<'static, object_store::Result<Path>> {
            stream::once(async { Err(not_needed("delete")) }).boxed()
        }
        fn list(&self, _: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            let produced = Arc::clone(&self.produced);
            stream::iter(0u64..)
                .map(move |i| {
                    produced.fetch_add(1, Ordering::Relaxed);
                    Ok(ObjectMeta {
                        location: Path::from(format!("part-{i:09}")),
                        last_modified: Default::default(),
                        size: i,
                        e_tag: Some(format!("\"{i}\"")),
                        version: None,
                    })
                })
                .boxed()
        }
        async fn list_with_delimiter(&self, _: Option<&Path>) -> object_store::Result<ListResult> {
            Err(not_needed("list_with_delimiter"))
        }
        async fn copy_opts(&self, _: &Path, _: &Path, _: CopyOptions) -> object_store::Result<()> {
            Err(not_needed("copy"))
        }
    }

    #[tokio::test]
    async fn listing_streams_without_collecting() {
        let endless = Arc::new(EndlessListing::default());
        let produced = Arc::clone(&endless.produced);
        let resolver =
            StoreResolver::new(StoreConfig::default()).with_store("memory://endless", endless);
        let first: Vec<DataRef> = resolver
            .list_refs("memory://endless/")
            .take(100_000)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(first.len(), 100_000);
        assert_eq!(first[99_999].url, "memory://endless/part-000099999");
        assert_eq!(first[99_999].pin, Pin::ETag("\"99999\"".into()));
        // The store produced exactly what was consumed: nothing was read ahead.
        assert_eq!(produced.load(Ordering::Relaxed), 100_000);
    }
}
