use crate::error::{Result, StoreError};
use crate::list::pin_of;
use crate::resolve::StoreResolver;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::{GetOptions, ObjectMeta, ObjectStoreExt};
use quarry_proto::{DataRef, Pin};
use std::ops::Range;

/// An open read of a pinned object: what the store reported plus the body.
pub struct PinnedRead {
    /// The object's metadata; its ETag or version equals the pin.
    pub meta: ObjectMeta,
    /// The byte range of the object the body holds.
    pub range: Range<u64>,
    /// The body, chunk by chunk.
    pub body: BoxStream<'static, Result<Bytes>>,
}

impl std::fmt::Debug for PinnedRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinnedRead")
            .field("meta", &self.meta)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

impl PinnedRead {
    /// Collects the body. Only for reads known to be small.
    pub async fn bytes(self) -> Result<Bytes> {
        let chunks: Vec<Bytes> = self.body.try_collect().await?;
        Ok(match chunks.len() {
            1 => chunks.into_iter().next().unwrap_or_default(),
            _ => chunks.concat().into(),
        })
    }
}

pub(crate) fn describe(pin: &Pin) -> String {
    match pin {
        Pin::ETag(etag) => match crate::hdfs::describe_pin(etag) {
            Some(hdfs) => hdfs,
            None => format!("ETag {etag}"),
        },
        Pin::Version(version) => format!("version {version}"),
        Pin::Unpinned => "nothing".to_string(),
    }
}

impl StoreResolver {
    /// Reads the whole object at `url`, whatever its version. Only for
    /// objects known to be small, such as a job's `_result.json`.
    pub async fn get_object(&self, url: &str) -> Result<Bytes> {
        let location = self.resolve(url)?;
        let read = async { location.store.get(&location.path).await?.bytes().await };
        read.await
            .map_err(|source| StoreError::from_store(url, source))
    }

    /// Reads what `data_ref` means (its byte range if it has one, else the
    /// whole object), conditional on its pin: the ETag goes in `If-Match`,
    /// a version id selects that version. If the object changed since it was
    /// listed, the result is [`StoreError::Changed`].
    pub async fn get_pinned(&self, data_ref: &DataRef) -> Result<PinnedRead> {
        let range = data_ref.range.map_or(0..data_ref.size, |r| r.start..r.end);
        self.get_pinned_range(data_ref, range).await
    }

    /// Reads `range` of the object `data_ref` pins (ignoring the reference's
    /// own range), conditional on the pin as [`StoreResolver::get_pinned`].
    /// An empty range still checks the pin (with a HEAD request).
    pub async fn get_pinned_range(
        &self,
        data_ref: &DataRef,
        range: Range<u64>,
    ) -> Result<PinnedRead> {
        let url = data_ref.url.as_str();
        let location = self.resolve(url)?;
        let mut options = match &data_ref.pin {
            Pin::ETag(etag) => GetOptions::new().with_if_match(Some(etag.clone())),
            Pin::Version(version) => GetOptions::new().with_version(Some(version.clone())),
            Pin::Unpinned => GetOptions::new(),
        };
        if range.is_empty() {
            options = options.with_head(true);
        } else if range != (0..data_ref.size) {
            options = options.with_range(Some(range.clone()));
        }

        let result = match location.store.get_opts(&location.path, options).await {
            Ok(result) => result,
            Err(object_store::Error::Precondition { .. }) => {
                let current = match location.store.head(&location.path).await {
                    Ok(meta) => {
                        pin_of(&meta, url).map_or_else(|_| "no pin".into(), |p| describe(&p))
                    }
                    Err(_) => "unknown".to_string(),
                };
                return Err(StoreError::Changed {
                    url: url.to_string(),
                    pinned: describe(&data_ref.pin),
                    current,
                });
            }
            Err(source) => return Err(StoreError::from_store(url, source)),
        };

        // Some S3-compatible stores ignore conditional headers; check what
        // came back rather than trusting them.
        let changed = match &data_ref.pin {
            Pin::ETag(etag) => result.meta.e_tag.as_ref().is_some_and(|e| e != etag),
            Pin::Version(version) => result.meta.version.as_ref().is_some_and(|v| v != version),
            Pin::Unpinned => false,
        };
        if changed {
            return Err(StoreError::Changed {
                url: url.to_string(),
                pinned: describe(&data_ref.pin),
                current: pin_of(&result.meta, url)
                    .map_or_else(|_| "no pin".into(), |p| describe(&p)),
            });
        }
        if data_ref.pin != Pin::Unpinned && result.meta.size != data_ref.size {
            return Err(StoreError::SizeMismatch {
                url: url.to_string(),
                expected: data_ref.size,
                actual: result.meta.size,
            });
        }

        let meta = result.meta.clone();
        if range.is_empty() {
            return Ok(PinnedRead {
                meta,
                range,
                body: futures::stream::empty().boxed(),
            });
        }
        let range = result.range.clone();
        let body_url = url.to_string();
        let body = result
            .into_stream()
            .map_err(move |source| StoreError::from_store(&body_url, source))
            .boxed();
        let body = match location.root.starts_with("hdfs://") {
            true => crate::hdfs::recheck_pin_at_end(body, location, url, &data_ref.pin),
            false => body,
        };
        Ok(PinnedRead { meta, range, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StoreConfig;
    use crate::memory_store;
    use object_store::path::Path;
    use quarry_proto::ByteRange;

    async fn listed_one(resolver: &StoreResolver, url: &str) -> DataRef {
        let mut refs: Vec<DataRef> = resolver.list_refs(url).try_collect().await.unwrap();
        assert_eq!(refs.len(), 1);
        refs.remove(0)
    }

    #[tokio::test]
    async fn pinned_reads_return_the_listed_content_and_ranges() {
        memory_store("read-ok")
            .put(&Path::from("k"), "0123456789".into())
            .await
            .unwrap();
        let resolver = StoreResolver::new(StoreConfig::default());
        let r = listed_one(&resolver, "memory://read-ok/k").await;
        let whole = resolver
            .get_pinned(&r)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&whole[..], b"0123456789");

        let ranged = DataRef {
            range: Some(ByteRange { start: 3, end: 7 }),
            ..r.clone()
        };
        let read = resolver.get_pinned(&ranged).await.unwrap();
        assert_eq!(read.range, 3..7);
        assert_eq!(&read.bytes().await.unwrap()[..], b"3456");

        let explicit = resolver.get_pinned_range(&ranged, 8..10).await.unwrap();
        assert_eq!(&explicit.bytes().await.unwrap()[..], b"89");
    }

    #[tokio::test]
    async fn overwritten_object_is_reported_as_changed_in_memory() {
        let store = memory_store("read-changed");
        store.put(&Path::from("k"), "v1".into()).await.unwrap();
        let resolver = StoreResolver::new(StoreConfig::default());
        let r = listed_one(&resolver, "memory://read-changed/k").await;
        store.put(&Path::from("k"), "v2".into()).await.unwrap();

        for result in [
            resolver.get_pinned(&r).await,
            resolver.get_pinned_range(&r, 0..1).await,
            resolver.get_pinned_range(&r, 0..0).await,
        ] {
            let err = result.unwrap_err();
            assert!(matches!(err, StoreError::Changed { .. }), "{err}");
            let message = err.to_string();
            assert!(
                message.contains("changed since the job was submitted"),
                "{message}"
            );
            assert!(message.contains("memory://read-changed/k"), "{message}");
        }
    }

    #[tokio::test]
    async fn overwritten_local_file_is_reported_as_changed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("data.txt");
        std::fs::write(&file, "first version").unwrap();
        let resolver = StoreResolver::new(StoreConfig::default());
        let r = listed_one(&resolver, file.to_str().unwrap()).await;
        assert_eq!(
            &resolver
                .get_pinned(&r)
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()[..],
            b"first version"
        );

        // Replace the file the way object stores do: a new file renamed in.
        let replacement = dir.path().join("data.txt.new");
        std::fs::write(&replacement, "second version!").unwrap();
        std::fs::rename(&replacement, &file).unwrap();

        let err = resolver.get_pinned(&r).await.unwrap_err();
        assert!(matches!(err, StoreError::Changed { .. }), "{err}");
    }

    #[tokio::test]
    async fn deleted_object_is_not_found() {
        let store = memory_store("read-deleted");
        store.put(&Path::from("k"), "v1".into()).await.unwrap();
        let resolver = StoreResolver::new(StoreConfig::default());
        let r = listed_one(&resolver, "memory://read-deleted/k").await;
        store.delete(&Path::from("k")).await.unwrap();
        let err = resolver.get_pinned(&r).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
    }
}
