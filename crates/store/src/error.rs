use std::path::PathBuf;

/// Everything that can go wrong between quarry and an object store.
///
/// Messages name the URL (never a credential) and, where there is one, what
/// to do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL cannot be understood.
    #[error("invalid store URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The URL scheme names a store quarry does not support (yet).
    #[error(
        "{scheme}:// is not supported (in {url:?}); use s3://, hdfs://, file:// or a local path"
    )]
    UnsupportedScheme {
        /// The scheme, without `://`.
        scheme: String,
        /// The URL as given.
        url: String,
    },

    /// The Hadoop configuration asks for Kerberos, which quarry's HDFS
    /// client does not speak.
    #[error(
        "{url}: the Hadoop configuration asks for Kerberos (hadoop.security.authentication = \
         kerberos), which quarry does not support; use a cluster with simple authentication \
         (the user comes from HADOOP_USER_NAME)"
    )]
    KerberosUnsupported {
        /// The URL whose store was refused.
        url: String,
    },

    /// The Hadoop configuration files (`$HADOOP_CONF_DIR`) cannot be read.
    #[error("Hadoop configuration: {reason}")]
    HadoopConfig {
        /// What is wrong, naming the file.
        reason: String,
    },

    /// The store's endpoint cannot be used as configured; the reason says
    /// which setting to change.
    #[error("cannot reach {url}: {reason}")]
    Endpoint {
        /// The URL.
        url: String,
        /// What is wrong and what to set.
        reason: String,
    },

    /// The store for a URL could not be configured (for example a malformed
    /// endpoint).
    #[error("cannot configure the store for {url}: {source}")]
    Config {
        /// The URL whose store failed to build.
        url: String,
        /// The underlying error.
        #[source]
        source: object_store::Error,
    },

    /// A glob in a listing URL does not compile.
    #[error("invalid glob {pattern:?} in {url:?}: {source}")]
    Glob {
        /// The URL as given.
        url: String,
        /// The glob part of it.
        pattern: String,
        /// Why it does not compile.
        #[source]
        source: globset::Error,
    },

    /// The pinned object was modified after it was listed.
    #[error(
        "{url} changed since the job was submitted (pinned {pinned}, the store now has {current}); \
         resubmit the job to process the new version"
    )]
    Changed {
        /// The object's URL.
        url: String,
        /// The pin recorded at submit time.
        pinned: String,
        /// What the store reports now (`unknown` when the store only refused
        /// the conditional read).
        current: String,
    },

    /// The object does not exist (any more).
    #[error("{url} does not exist")]
    NotFound {
        /// The object's URL.
        url: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },

    /// The store holds a different number of bytes than the reference says.
    #[error("{url} has {actual} bytes in the store but the reference says {expected}")]
    SizeMismatch {
        /// The object's URL.
        url: String,
        /// Size recorded in the reference.
        expected: u64,
        /// Size the store reports or delivered.
        actual: u64,
    },

    /// A listed object carries neither an ETag nor a version, so it cannot
    /// be pinned.
    #[error("{url} has neither an ETag nor a version id, so it cannot be pinned")]
    Unpinnable {
        /// The object's URL.
        url: String,
    },

    /// A local source file changed while it was being uploaded.
    #[error("{path} changed while it was being uploaded; the upload was aborted")]
    SourceChanged {
        /// The local file.
        path: PathBuf,
    },

    /// A local file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The local file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// Any other store request failure.
    #[error("store request for {url} failed: {source}")]
    Request {
        /// The URL the request was about.
        url: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },
}

impl StoreError {
    /// Wraps an `object_store` error about `url`, keeping "not found" apart
    /// from other failures.
    pub fn from_store(url: &str, source: object_store::Error) -> Self {
        match source {
            object_store::Error::NotFound { .. } => StoreError::NotFound {
                url: url.to_string(),
                source,
            },
            source => StoreError::Request {
                url: url.to_string(),
                source,
            },
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
