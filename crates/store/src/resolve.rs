use crate::config::StoreConfig;
use crate::error::{Result, StoreError};
use crate::hdfs::{BlockLocator, SharedLocations};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::ObjectStore;
use quarry_proto::DataRef;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

/// A function that wraps every store the resolver builds, e.g. in a
/// [`crate::CountingStore`] or a [`crate::FaultStore`].
pub type StoreLayer = Arc<dyn Fn(Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> + Send + Sync>;

static MEMORY_STORES: LazyLock<Mutex<HashMap<String, Arc<InMemory>>>> =
    LazyLock::new(Default::default);

/// The process-global in-memory store named `name` (created empty on first
/// use): what `memory://name/...` URLs resolve to. For unit tests only; use a
/// unique name per test so that parallel tests do not share objects.
pub fn memory_store(name: &str) -> Arc<InMemory> {
    let mut stores = MEMORY_STORES.lock().unwrap_or_else(PoisonError::into_inner);
    Arc::clone(stores.entry(name.to_string()).or_default())
}

/// A store plus a path inside it: what a URL resolves to.
#[derive(Clone, Debug)]
pub struct StoreLocation {
    /// The store (with the resolver's layers applied).
    pub store: Arc<dyn ObjectStore>,
    /// The URL of the store's root, without a trailing slash:
    /// `s3://bucket`, `file://` or `memory://name`.
    pub root: String,
    /// The object key (or listing prefix) inside the store.
    pub path: Path,
}

impl StoreLocation {
    /// The URL of `path` in this location's store; the inverse of
    /// [`StoreResolver::resolve`].
    pub fn url_of(&self, path: &Path) -> String {
        format!("{}/{}", self.root, path.as_ref())
    }

    /// The URL of this location itself.
    pub fn url(&self) -> String {
        self.url_of(&self.path)
    }
}

/// Which backend a URL names.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Backend {
    S3 {
        bucket: String,
    },
    /// `authority` is `namenode:port`, a name service, or empty for
    /// `hdfs:///path`: the cluster of `fs.defaultFS`, looked up when the
    /// store is built. URLs listed under `hdfs:///` keep that form, as
    /// Hadoop's own tools do, so that keys relative to the prefix hold.
    Hdfs {
        authority: String,
    },
    File,
    Memory {
        name: String,
    },
}

/// A URL split into its store and a raw key, before the key becomes a
/// [`Path`] (listing first strips a glob off the key).
#[derive(Clone, Debug)]
pub(crate) struct SplitUrl {
    backend: Backend,
    /// For `s3`, `hdfs` and `memory`, the key inside the bucket or file
    /// system (no leading slash);
    /// for files, the absolute, normalized filesystem path.
    pub(crate) key: String,
}

impl SplitUrl {
    /// Parses `url`: `s3://bucket/key`, `hdfs://namenode:port/path`,
    /// `hdfs://nameservice/path`, `hdfs:///path` (the cluster of
    /// `fs.defaultFS`), `file:///abs/path`, `memory://name/key` or a plain
    /// local path (made absolute against the current directory).
    pub(crate) fn parse(url: &str) -> Result<SplitUrl> {
        let invalid = |reason: &str| StoreError::InvalidUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let Some((scheme, rest)) = url.split_once("://") else {
            if url.is_empty() {
                return Err(invalid("empty"));
            }
            return Ok(SplitUrl {
                backend: Backend::File,
                key: absolute_local_path(std::path::Path::new(url)).map_err(|e| invalid(&e))?,
            });
        };
        match scheme.to_ascii_lowercase().as_str() {
            "s3" => {
                let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(invalid("no bucket name after s3://"));
                }
                Ok(SplitUrl {
                    backend: Backend::S3 {
                        bucket: bucket.to_string(),
                    },
                    key: key.to_string(),
                })
            }
            "memory" => {
                let (name, key) = rest.split_once('/').unwrap_or((rest, ""));
                Ok(SplitUrl {
                    backend: Backend::Memory {
                        name: name.to_string(),
                    },
                    key: key.to_string(),
                })
            }
            "file" => {
                let path = rest.strip_prefix("localhost").unwrap_or(rest);
                if !path.starts_with('/') {
                    return Err(invalid(
                        "file:// URLs need an absolute path (file:///abs/path)",
                    ));
                }
                let decoded = percent_decode(path).ok_or_else(|| {
                    invalid("bad percent-encoding (the decoded path is not UTF-8)")
                })?;
                Ok(SplitUrl {
                    backend: Backend::File,
                    key: absolute_local_path(std::path::Path::new(&decoded))
                        .map_err(|e| invalid(&e))?,
                })
            }
            "hdfs" => {
                let (authority, key) = rest.split_once('/').unwrap_or((rest, ""));
                Ok(SplitUrl {
                    backend: Backend::Hdfs {
                        authority: authority.to_string(),
                    },
                    key: key.to_string(),
                })
            }
            other => Err(StoreError::UnsupportedScheme {
                scheme: other.to_string(),
                url: url.to_string(),
            }),
        }
    }

    /// The URL of the store root, as [`StoreLocation::root`].
    pub(crate) fn root(&self) -> String {
        match &self.backend {
            Backend::S3 { bucket } => format!("s3://{bucket}"),
            Backend::Hdfs { authority } => format!("hdfs://{authority}"),
            Backend::File => "file://".to_string(),
            Backend::Memory { name } => format!("memory://{name}"),
        }
    }

    /// Converts a key of this URL's store (all of [`SplitUrl::key`] or its
    /// literal part before a glob) into an object path.
    pub(crate) fn path_of(&self, key: &str, url: &str) -> Result<Path> {
        let result = match self.backend {
            Backend::File => Path::from_absolute_path(key),
            Backend::S3 { .. } | Backend::Hdfs { .. } | Backend::Memory { .. } => Path::parse(key),
        };
        result.map_err(|e| StoreError::InvalidUrl {
            url: url.to_string(),
            reason: e.to_string(),
        })
    }

    /// Whether keys are filesystem paths (then globs apply after the root
    /// slash).
    pub(crate) fn is_file(&self) -> bool {
        self.backend == Backend::File
    }

    /// The HDFS cluster this URL names, if it is an `hdfs://` URL.
    pub(crate) fn hdfs_authority(&self) -> Option<&str> {
        match &self.backend {
            Backend::Hdfs { authority } => Some(authority),
            _ => None,
        }
    }
}

/// Makes `path` absolute (against the current directory) and removes `.`
/// and `..` components lexically, without touching the filesystem.
fn absolute_local_path(path: &std::path::Path) -> std::result::Result<String, String> {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| format!("cannot read the current directory: {e}"))?
            .join(path)
    };
    quarry_proto::url::normalize_path(&absolute)
        .into_os_string()
        .into_string()
        .map_err(|_| "the path is not valid UTF-8".to_string())
}

/// Decodes `%XX` escapes; `None` when the result is not UTF-8. A `%` not
/// followed by two hex digits is kept as is.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

struct ResolverInner {
    config: StoreConfig,
    layer: Option<StoreLayer>,
    /// Built stores by root URL, so that connection pools are reused.
    stores: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
    /// HDFS block locators by root URL (`None`: locality unavailable).
    block_locators: Mutex<HashMap<String, Option<Arc<BlockLocator>>>>,
    /// Block locations of recently listed HDFS files.
    block_locations: SharedLocations,
}

/// Turns URLs into stores: `s3://bucket/key` (configured by a
/// [`StoreConfig`]), `file:///abs/path` or a plain local path, and
/// `memory://name/key` (see [`memory_store`]). `hdfs://` is recognised and
/// refused with [`StoreError::UnsupportedScheme`].
///
/// Each store is built once per root (bucket) and shared. Cloning the
/// resolver is cheap and shares those stores.
#[derive(Clone)]
pub struct StoreResolver {
    inner: Arc<ResolverInner>,
}

impl fmt::Debug for StoreResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let roots: Vec<String> = self.lock_stores().keys().cloned().collect();
        f.debug_struct("StoreResolver")
            .field("config", &self.inner.config)
            .field("layered", &self.inner.layer.is_some())
            .field("stores", &roots)
            .finish()
    }
}

impl StoreResolver {
    /// A resolver using exactly `config` for S3.
    pub fn new(config: StoreConfig) -> Self {
        StoreResolver {
            inner: Arc::new(ResolverInner {
                config,
                layer: None,
                stores: Mutex::new(HashMap::new()),
                block_locators: Mutex::default(),
                block_locations: SharedLocations::default(),
            }),
        }
    }

    /// A resolver configured from the `AWS_*` environment variables.
    pub fn from_env() -> Self {
        Self::new(StoreConfig::from_env())
    }

    /// The S3 settings in use.
    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    /// Wraps every store built from now on with `layer`. Stores already
    /// built or registered keep their current shape, so call this first.
    pub fn with_layer(
        self,
        layer: impl Fn(Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> + Send + Sync + 'static,
    ) -> Self {
        let stores = self.lock_stores().clone();
        StoreResolver {
            inner: Arc::new(ResolverInner {
                config: self.inner.config.clone(),
                layer: Some(Arc::new(layer)),
                stores: Mutex::new(stores),
                block_locators: Mutex::default(),
                block_locations: Arc::clone(&self.inner.block_locations),
            }),
        }
    }

    /// Serves URLs under `root` (`s3://bucket`, `memory://name`, `file://`)
    /// from `store`, used as given (no layer is applied).
    pub fn with_store(self, root: &str, store: Arc<dyn ObjectStore>) -> Self {
        self.lock_stores()
            .insert(root.trim_end_matches('/').to_string(), store);
        self
    }

    fn lock_stores(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<dyn ObjectStore>>> {
        self.inner
            .stores
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The hosts holding most of the bytes a task's `inputs` read, most
    /// first: for `hdfs://` files listed by this resolver (or a clone)
    /// recently, the DataNodes with replicas of their blocks in the
    /// references' ranges. Empty for other stores, or when the locations
    /// are not known. It is what [`quarry_proto::TaskSpec::replica_hosts`]
    /// holds.
    pub fn replica_hosts(&self, inputs: &[DataRef]) -> Vec<String> {
        if !inputs.iter().any(|input| input.url.starts_with("hdfs://")) {
            return Vec::new();
        }
        self.inner
            .block_locations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .hosts(inputs)
    }

    /// The block locator for an `hdfs://` URL's cluster and the table it
    /// fills, for listings; `None` for other stores or when locations are
    /// unavailable.
    pub(crate) fn block_locator(
        &self,
        split: &SplitUrl,
    ) -> Option<(Arc<BlockLocator>, SharedLocations)> {
        let authority = split.hdfs_authority()?;
        let mut locators = self
            .inner
            .block_locators
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let locator = locators
            .entry(split.root())
            .or_insert_with(|| BlockLocator::new(authority).map(Arc::new))
            .clone()?;
        Some((locator, Arc::clone(&self.inner.block_locations)))
    }

    /// Resolves an object URL (or listing prefix) to its store and path.
    pub fn resolve(&self, url: &str) -> Result<StoreLocation> {
        let split = SplitUrl::parse(url)?;
        let path = split.path_of(&split.key, url)?;
        self.location(&split, path, url)
    }

    /// The store for `split`'s root with `path` inside it.
    pub(crate) fn location(
        &self,
        split: &SplitUrl,
        path: Path,
        url: &str,
    ) -> Result<StoreLocation> {
        let root = split.root();
        let store = self.store_for(split, &root, url)?;
        Ok(StoreLocation { store, root, path })
    }

    fn store_for(&self, split: &SplitUrl, root: &str, url: &str) -> Result<Arc<dyn ObjectStore>> {
        if let Some(store) = self.lock_stores().get(root) {
            return Ok(Arc::clone(store));
        }
        if let (Backend::S3 { .. }, Some(reason)) =
            (&split.backend, self.inner.config.endpoint_problem())
        {
            return Err(StoreError::Endpoint {
                url: url.to_string(),
                reason,
            });
        }
        let base: Arc<dyn ObjectStore> = match &split.backend {
            Backend::S3 { bucket } => Arc::new(
                self.inner
                    .config
                    .s3_builder(bucket)
                    .build()
                    .map_err(|source| StoreError::Config {
                        url: url.to_string(),
                        source,
                    })?,
            ),
            Backend::Hdfs { .. } => crate::hdfs::build_store(root, url)?,
            Backend::File => Arc::new(LocalFileSystem::new()),
            Backend::Memory { name } => memory_store(name),
        };
        let store = match &self.inner.layer {
            Some(layer) => layer(base),
            None => base,
        };
        // Another caller may have built the same root meanwhile; keep the
        // first so that everyone shares one store.
        let mut stores = self.lock_stores();
        Ok(Arc::clone(stores.entry(root.to_string()).or_insert(store)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CountingStore, StoreCounters};
    use object_store::ObjectStoreExt;

    #[test]
    fn s3_urls_split_into_bucket_and_key() {
        let resolver = StoreResolver::new(StoreConfig::default());
        let location = resolver.resolve("s3://bucket/logs/2026/a.txt").unwrap();
        assert_eq!(location.root, "s3://bucket");
        assert_eq!(location.path.as_ref(), "logs/2026/a.txt");
        assert_eq!(location.url(), "s3://bucket/logs/2026/a.txt");
        let bucket_only = resolver.resolve("s3://bucket").unwrap();
        assert_eq!(bucket_only.path.as_ref(), "");
    }

    #[test]
    fn s3_store_is_built_once_per_bucket() {
        let resolver = StoreResolver::new(StoreConfig {
            endpoint: Some("http://127.0.0.1:9000".into()),
            allow_http: Some(true),
            ..StoreConfig::default()
        });
        let a = resolver.resolve("s3://one/a").unwrap();
        let b = resolver.resolve("s3://one/b").unwrap();
        let c = resolver.resolve("s3://two/c").unwrap();
        assert!(Arc::ptr_eq(&a.store, &b.store));
        assert!(!Arc::ptr_eq(&a.store, &c.store));
    }

    #[test]
    fn resolver_debug_and_errors_never_show_secrets() {
        let resolver = StoreResolver::new(StoreConfig {
            endpoint: Some("not a url".into()),
            secret_access_key: Some(crate::Secret::new("hunter2-secret")),
            session_token: Some(crate::Secret::new("hunter2-token")),
            ..StoreConfig::default()
        });
        let err = resolver.resolve("s3://bucket/key").map(|_| ()).unwrap_err();
        let shown = format!("{resolver:?} {err} {err:?}");
        assert!(!shown.contains("hunter2"), "{shown}");

        let resolver = StoreResolver::new(StoreConfig {
            endpoint: Some("http://127.0.0.1:9000".into()),
            allow_http: Some(true),
            access_key_id: Some("AKIDEXAMPLE".into()),
            secret_access_key: Some(crate::Secret::new("hunter2-secret")),
            session_token: Some(crate::Secret::new("hunter2-token")),
            ..StoreConfig::default()
        });
        let built = resolver.resolve("s3://bucket/key").unwrap();
        let shown = format!("{resolver:?} {built:?} {}", built.store);
        assert!(
            shown.contains("AKIDEXAMPLE"),
            "the store was printed: {shown}"
        );
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn local_paths_become_absolute_normalized_file_urls() {
        let resolver = StoreResolver::new(StoreConfig::default());
        let cwd = std::env::current_dir().unwrap();
        let relative = resolver.resolve("data/../data/./x.csv").unwrap();
        assert_eq!(relative.root, "file://");
        assert_eq!(
            format!("/{}", relative.path.as_ref()),
            cwd.join("data/x.csv").to_str().unwrap()
        );
        let url = resolver.resolve("file:///tmp/a%20b/c").unwrap();
        assert_eq!(url.path.as_ref(), "tmp/a b/c");
        assert_eq!(url.url(), "file:///tmp/a b/c");
        let plain = resolver.resolve("/tmp/a b/c").unwrap();
        assert_eq!(plain.path, url.path);
        assert!(matches!(
            resolver.resolve("file://relative/x"),
            Err(StoreError::InvalidUrl { .. })
        ));
    }

    #[test]
    fn hdfs_urls_split_into_cluster_and_path() {
        let resolver = StoreResolver::new(StoreConfig::default());
        // Building the client does not connect; nothing listens here.
        let location = resolver.resolve("hdfs://namenode:8020/data/a.txt").unwrap();
        assert_eq!(location.root, "hdfs://namenode:8020");
        assert_eq!(location.path.as_ref(), "data/a.txt");
        assert_eq!(location.url(), "hdfs://namenode:8020/data/a.txt");
        // A name service needs its NameNodes in hdfs-site.xml.
        let err = resolver.resolve("hdfs://ns1/logs/").unwrap_err();
        assert!(matches!(err, StoreError::Config { .. }), "{err}");
        assert!(err.to_string().contains("hdfs://ns1/logs/"), "{err}");
        let again = resolver.resolve("hdfs://namenode:8020/other").unwrap();
        assert!(Arc::ptr_eq(&location.store, &again.store));
        assert!(resolver
            .replica_hosts(&[quarry_proto::DataRef {
                url: location.url(),
                pin: quarry_proto::Pin::ETag("1-1".into()),
                size: 1,
                range: None,
            }])
            .is_empty());
    }

    #[test]
    fn unknown_schemes_and_bad_urls_are_refused_clearly() {
        let resolver = StoreResolver::new(StoreConfig::default());
        let err = resolver.resolve("gs://bucket/x").unwrap_err();
        assert!(matches!(err, StoreError::UnsupportedScheme { ref scheme, .. } if scheme == "gs"));
        assert!(err.to_string().contains("gs:// is not supported"), "{err}");
        assert!(matches!(
            resolver.resolve("s3:///key"),
            Err(StoreError::InvalidUrl { .. })
        ));
        assert!(matches!(
            resolver.resolve("s3://bucket/a//b"),
            Err(StoreError::InvalidUrl { .. })
        ));
        assert!(matches!(
            resolver.resolve("hdfs://nn:1/a//b"),
            Err(StoreError::InvalidUrl { .. })
        ));
    }

    #[tokio::test]
    async fn memory_urls_share_one_named_store_and_layers_apply() {
        let counters = Arc::new(StoreCounters::default());
        let layer_counters = Arc::clone(&counters);
        let resolver = StoreResolver::new(StoreConfig::default()).with_layer(move |store| {
            Arc::new(CountingStore::with_counters(
                store,
                Arc::clone(&layer_counters),
            ))
        });
        memory_store("resolve-test")
            .put(&Path::from("k"), "hello".into())
            .await
            .unwrap();
        let location = resolver.resolve("memory://resolve-test/k").unwrap();
        let bytes = location
            .store
            .get(&location.path)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&bytes[..], b"hello");
        assert_eq!(counters.snapshot().get_requests, 1);
        assert_eq!(counters.snapshot().bytes_read, 5);
    }

    #[test]
    fn percent_decoding_keeps_stray_percent_signs() {
        assert_eq!(percent_decode("/a%20b%2fc").unwrap(), "/a b/c");
        assert_eq!(percent_decode("/100%").unwrap(), "/100%");
        assert_eq!(percent_decode("/%zz%4").unwrap(), "/%zz%4");
        assert_eq!(percent_decode("/%ff"), None);
    }
}
