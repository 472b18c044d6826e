use crate::error::{Result, StoreError};
use crate::resolve::{StoreLocation, StoreResolver};
use bytes::Bytes;
use object_store::{ObjectStoreExt, PutPayload, PutResult, WriteMultipart};
use quarry_proto::{DataRef, Pin};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use tokio::io::AsyncReadExt;

/// Files up to this size are uploaded with one PUT; larger ones in parts.
const SINGLE_PUT_MAX: u64 = 8 * 1024 * 1024;
/// Multipart part size (S3 wants at least 5 MiB for all parts but the last).
const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts uploading at once; bounds memory to about this many parts.
const PARTS_IN_FLIGHT: usize = 4;
/// Read buffer for hashing and uploading files.
const READ_BUFFER: usize = 1024 * 1024;

/// What [`StoreResolver::put_content_addressed`] uploads.
#[derive(Clone, Debug)]
pub enum PutSource {
    /// Bytes already in memory.
    Bytes(Bytes),
    /// A local file, read by streaming (never whole in memory when large).
    File(PathBuf),
}

impl StoreResolver {
    /// Writes `bytes` to `url` in one PUT, replacing what was there.
    pub async fn put_object(&self, url: &str, bytes: Bytes) -> Result<PutResult> {
        let location = self.resolve(url)?;
        location
            .store
            .put(&location.path, PutPayload::from_bytes(bytes))
            .await
            .map_err(|source| StoreError::from_store(url, source))
    }

    /// Uploads `source` to `<prefix_url>/<sha256 hex of the content>` and
    /// returns a reference to it.
    ///
    /// Identical content is uploaded once: a HEAD comes first and the upload
    /// is skipped when an object of the same size already sits at that key.
    /// Since the key names the content, the reference is
    /// [`Pin::Unpinned`]. Files are hashed by streaming and, above 8 MiB,
    /// uploaded in parts; a file that changes during the upload aborts it
    /// with [`StoreError::SourceChanged`].
    pub async fn put_content_addressed(
        &self,
        prefix_url: &str,
        source: PutSource,
    ) -> Result<DataRef> {
        let prefix = self.resolve(prefix_url)?;
        match source {
            PutSource::Bytes(bytes) => {
                let digest = hex::encode(Sha256::digest(&bytes));
                let size = bytes.len() as u64;
                let target = Target::new(&prefix, &digest);
                if !target.already_stored(size).await? {
                    target
                        .location
                        .store
                        .put(&target.location.path, PutPayload::from_bytes(bytes))
                        .await
                        .map_err(|source| StoreError::from_store(&target.url, source))?;
                    tracing::debug!(url = %target.url, size, "uploaded content-addressed bytes");
                }
                Ok(target.data_ref(size))
            }
            PutSource::File(path) => {
                let (digest, size) = hash_file(&path).await?;
                let target = Target::new(&prefix, &digest);
                if !target.already_stored(size).await? {
                    if size <= SINGLE_PUT_MAX {
                        target.put_small_file(&path, &digest).await?;
                    } else {
                        target.put_large_file(&path, &digest).await?;
                    }
                    tracing::debug!(url = %target.url, size, file = %path.display(), "uploaded content-addressed file");
                }
                Ok(target.data_ref(size))
            }
        }
    }
}

/// Where content with a given digest goes.
struct Target {
    location: StoreLocation,
    url: String,
}

impl Target {
    fn new(prefix: &StoreLocation, digest: &str) -> Target {
        let path = prefix.path.clone().join(digest);
        let location = StoreLocation {
            store: prefix.store.clone(),
            root: prefix.root.clone(),
            path,
        };
        Target {
            url: location.url(),
            location,
        }
    }

    fn data_ref(&self, size: u64) -> DataRef {
        DataRef {
            url: self.url.clone(),
            pin: Pin::Unpinned,
            size,
            range: None,
        }
    }

    async fn already_stored(&self, size: u64) -> Result<bool> {
        match self.location.store.head(&self.location.path).await {
            Ok(meta) => Ok(meta.size == size),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(source) => Err(StoreError::from_store(&self.url, source)),
        }
    }

    async fn put_small_file(&self, path: &std::path::Path, digest: &str) -> Result<()> {
        let content = tokio::fs::read(path)
            .await
            .map_err(|source| StoreError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        if hex::encode(Sha256::digest(&content)) != digest {
            return Err(StoreError::SourceChanged {
                path: path.to_path_buf(),
            });
        }
        self.location
            .store
            .put(&self.location.path, PutPayload::from(content))
            .await
            .map_err(|source| StoreError::from_store(&self.url, source))?;
        Ok(())
    }

    async fn put_large_file(&self, path: &std::path::Path, digest: &str) -> Result<()> {
        let io_error = |source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        };
        let store_error = |source| StoreError::from_store(&self.url, source);
        let upload = self
            .location
            .store
            .put_multipart(&self.location.path)
            .await
            .map_err(store_error)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut file = tokio::fs::File::open(path).await.map_err(io_error)?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; READ_BUFFER];
        loop {
            let read = match file.read(&mut buffer).await {
                Ok(read) => read,
                Err(source) => {
                    abort(writer, &self.url).await;
                    return Err(io_error(source));
                }
            };
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
            if let Err(source) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                abort(writer, &self.url).await;
                return Err(store_error(source));
            }
            writer.write(&buffer[..read]);
        }
        if hex::encode(hasher.finalize()) != digest {
            abort(writer, &self.url).await;
            return Err(StoreError::SourceChanged {
                path: path.to_path_buf(),
            });
        }
        writer.finish().await.map_err(store_error)?;
        Ok(())
    }
}

async fn abort(writer: WriteMultipart, url: &str) {
    if let Err(error) = writer.abort().await {
        tracing::warn!(%url, %error, "could not abort a multipart upload");
    }
}

/// SHA-256 (hex) and length of a file, read in bounded buffers.
async fn hash_file(path: &std::path::Path) -> Result<(String, u64)> {
    let io_error = |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = tokio::fs::File::open(path).await.map_err(io_error)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; READ_BUFFER];
    let mut size = 0u64;
    loop {
        let read = file.read(&mut buffer).await.map_err(io_error)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        size += read as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StoreConfig;
    use crate::{memory_store, CountingStore, StoreCounters};
    use object_store::path::Path;
    use std::sync::Arc;

    fn counted_resolver() -> (StoreResolver, Arc<StoreCounters>) {
        let counters = Arc::new(StoreCounters::default());
        let shared = Arc::clone(&counters);
        let resolver = StoreResolver::new(StoreConfig::default()).with_layer(move |store| {
            Arc::new(CountingStore::with_counters(store, Arc::clone(&shared)))
        });
        (resolver, counters)
    }

    #[tokio::test]
    async fn identical_bytes_are_uploaded_once_under_their_hash() {
        let (resolver, counters) = counted_resolver();
        let content = Bytes::from_static(b"broadcast me");
        let digest = hex::encode(Sha256::digest(&content));
        let first = resolver
            .put_content_addressed(
                "memory://put-bytes/staging",
                PutSource::Bytes(content.clone()),
            )
            .await
            .unwrap();
        assert_eq!(first.url, format!("memory://put-bytes/staging/{digest}"));
        assert_eq!(first.size, content.len() as u64);
        assert_eq!(first.pin, Pin::Unpinned);
        let second = resolver
            .put_content_addressed(
                "memory://put-bytes/staging/",
                PutSource::Bytes(content.clone()),
            )
            .await
            .unwrap();
        assert_eq!(first, second);
        let snapshot = counters.snapshot();
        assert_eq!(snapshot.put_requests, 1);
        assert_eq!(snapshot.head_requests, 2);
        let stored = resolver
            .get_pinned(&first)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(stored, content);
    }

    #[tokio::test]
    async fn large_files_are_uploaded_in_parts_and_match_their_hash() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("big.bin");
        let content: Vec<u8> = (0..(SINGLE_PUT_MAX as usize + PART_SIZE + 12345))
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        std::fs::write(&file, &content).unwrap();
        let (resolver, counters) = counted_resolver();
        let r = resolver
            .put_content_addressed("memory://put-file/staging", PutSource::File(file.clone()))
            .await
            .unwrap();
        let digest = hex::encode(Sha256::digest(&content));
        assert_eq!(r.url, format!("memory://put-file/staging/{digest}"));
        assert_eq!(r.size, content.len() as u64);
        let stored = memory_store("put-file")
            .get(&Path::from(format!("staging/{digest}")))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert!(stored == content, "stored content differs");
        assert_eq!(counters.snapshot().bytes_written, content.len() as u64);

        // Uploading the same file again only costs a HEAD.
        let again = resolver
            .put_content_addressed("memory://put-file/staging", PutSource::File(file))
            .await
            .unwrap();
        assert_eq!(again, r);
        assert_eq!(counters.snapshot().put_requests, 1);
    }

    #[tokio::test]
    async fn small_files_go_to_local_directories_too() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("small.txt");
        std::fs::write(&file, "tiny").unwrap();
        let staging = dir.path().join("staging");
        let resolver = StoreResolver::new(StoreConfig::default());
        let r = resolver
            .put_content_addressed(staging.to_str().unwrap(), PutSource::File(file))
            .await
            .unwrap();
        let digest = hex::encode(Sha256::digest(b"tiny"));
        assert_eq!(std::fs::read(staging.join(&digest)).unwrap(), b"tiny");
        assert_eq!(r.url, format!("file://{}/{digest}", staging.display()));
    }

    #[tokio::test]
    async fn missing_file_is_an_io_error() {
        let resolver = StoreResolver::new(StoreConfig::default());
        let err = resolver
            .put_content_addressed(
                "memory://put-missing/s",
                PutSource::File("/no/such/file".into()),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Io { .. }), "{err}");
        assert!(err.to_string().contains("/no/such/file"));
    }
}
