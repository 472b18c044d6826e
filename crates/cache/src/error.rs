use quarry_store::StoreError;
use std::path::PathBuf;
use std::sync::Arc;

/// What can go wrong in the shard cache.
///
/// Cloneable, because every caller waiting on one shared download receives
/// the same error.
#[derive(Clone, Debug, thiserror::Error)]
pub enum CacheError {
    /// The store failed; [`StoreError::Changed`] means the object was
    /// modified since the job was submitted.
    #[error(transparent)]
    Store(Arc<StoreError>),

    /// A local file operation in the cache directory failed.
    #[error("shard cache I/O on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: Arc<std::io::Error>,
    },

    /// Another process holds the cache directory.
    #[error(
        "shard cache directory {dir} is in use by another process; \
         give each worker process its own cache directory"
    )]
    Locked {
        /// The cache directory.
        dir: PathBuf,
    },

    /// The store delivered a different number of bytes than the object has.
    #[error("downloaded {actual} bytes of {url} where {expected} were expected")]
    Incomplete {
        /// The object's URL.
        url: String,
        /// Bytes expected (the object, or the part of it requested).
        expected: u64,
        /// Bytes received.
        actual: u64,
    },

    /// The download task ended without a result (it panicked or the runtime
    /// shut down).
    #[error("the download of {object_key} was interrupted")]
    Interrupted {
        /// [`quarry_proto::DataRef::object_key`] of the object.
        object_key: String,
    },
}

impl CacheError {
    /// The store error behind this one, if any: lets a worker tell
    /// [`StoreError::Changed`] apart from other failures.
    pub fn store_error(&self) -> Option<&StoreError> {
        match self {
            CacheError::Store(error) => Some(error),
            _ => None,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CacheError::Io {
            path: path.into(),
            source: Arc::new(source),
        }
    }
}

impl From<StoreError> for CacheError {
    fn from(error: StoreError) -> Self {
        CacheError::Store(Arc::new(error))
    }
}
