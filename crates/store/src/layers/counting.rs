use super::map_body;
use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, UploadPart,
};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Shared request and byte counters, updated by every [`CountingStore`]
/// that holds them.
#[derive(Debug, Default)]
pub struct StoreCounters {
    get_requests: AtomicU64,
    head_requests: AtomicU64,
    put_requests: AtomicU64,
    list_requests: AtomicU64,
    delete_requests: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
}

/// A point-in-time copy of [`StoreCounters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// GET requests (ranged or not), HEADs excluded.
    pub get_requests: u64,
    /// HEAD requests.
    pub head_requests: u64,
    /// Single PUTs plus multipart uploads started (one per upload).
    pub put_requests: u64,
    /// Listing requests (one per listing call, however many pages).
    pub list_requests: u64,
    /// Objects passed to delete.
    pub delete_requests: u64,
    /// Body bytes delivered to readers of GET responses.
    pub bytes_read: u64,
    /// Payload bytes handed to PUTs and multipart parts.
    pub bytes_written: u64,
}

impl StoreCounters {
    /// The current values.
    pub fn snapshot(&self) -> CounterSnapshot {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        CounterSnapshot {
            get_requests: load(&self.get_requests),
            head_requests: load(&self.head_requests),
            put_requests: load(&self.put_requests),
            list_requests: load(&self.list_requests),
            delete_requests: load(&self.delete_requests),
            bytes_read: load(&self.bytes_read),
            bytes_written: load(&self.bytes_written),
        }
    }
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

/// Counts requests and bytes going through to the inner store.
#[derive(Debug)]
pub struct CountingStore {
    inner: Arc<dyn ObjectStore>,
    counters: Arc<StoreCounters>,
}

impl CountingStore {
    /// Counts into fresh counters; see [`CountingStore::counters`].
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self::with_counters(inner, Arc::default())
    }

    /// Counts into `counters`, which may be shared by several stores.
    pub fn with_counters(inner: Arc<dyn ObjectStore>, counters: Arc<StoreCounters>) -> Self {
        CountingStore { inner, counters }
    }

    /// The counters this store updates.
    pub fn counters(&self) -> Arc<StoreCounters> {
        Arc::clone(&self.counters)
    }
}

impl fmt::Display for CountingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CountingStore({})", self.inner)
    }
}

#[derive(Debug)]
struct CountingUpload {
    inner: Box<dyn MultipartUpload>,
    counters: Arc<StoreCounters>,
}

#[async_trait]
impl MultipartUpload for CountingUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        bump(&self.counters.bytes_written, data.content_length() as u64);
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        self.inner.complete().await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await
    }
}

#[async_trait]
impl ObjectStore for CountingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        bump(&self.counters.put_requests, 1);
        bump(
            &self.counters.bytes_written,
            payload.content_length() as u64,
        );
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        bump(&self.counters.put_requests, 1);
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(CountingUpload {
            inner,
            counters: Arc::clone(&self.counters),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        if options.head {
            bump(&self.counters.head_requests, 1);
            return self.inner.get_opts(location, options).await;
        }
        bump(&self.counters.get_requests, 1);
        let result = self.inner.get_opts(location, options).await?;
        let counters = Arc::clone(&self.counters);
        Ok(map_body(result, move |body| {
            body.inspect(move |chunk| {
                if let Ok(bytes) = chunk {
                    bump(&counters.bytes_read, bytes.len() as u64);
                }
            })
            .boxed()
        }))
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let counters = Arc::clone(&self.counters);
        let counted = locations
            .inspect(move |location| {
                if location.is_ok() {
                    bump(&counters.delete_requests, 1);
                }
            })
            .boxed();
        self.inner.delete_stream(counted)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        bump(&self.counters.list_requests, 1);
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        bump(&self.counters.list_requests, 1);
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        bump(&self.counters.list_requests, 1);
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use object_store::memory::InMemory;
    use object_store::{ObjectStoreExt, WriteMultipart};

    #[tokio::test]
    async fn counts_requests_and_bytes_both_ways() {
        let store = CountingStore::new(Arc::new(InMemory::new()));
        let counters = store.counters();
        store
            .put(&Path::from("a"), PutPayload::from_static(b"0123456789"))
            .await
            .unwrap();
        let whole = store
            .get(&Path::from("a"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(whole.len(), 10);
        let part = store.get_range(&Path::from("a"), 2..5).await.unwrap();
        assert_eq!(&part[..], b"234");
        store.head(&Path::from("a")).await.unwrap();
        let listed: Vec<_> = store.list(None).try_collect().await.unwrap();
        assert_eq!(listed.len(), 1);
        store.delete(&Path::from("a")).await.unwrap();

        assert_eq!(
            counters.snapshot(),
            CounterSnapshot {
                get_requests: 2,
                head_requests: 1,
                put_requests: 1,
                list_requests: 1,
                delete_requests: 1,
                bytes_read: 13,
                bytes_written: 10,
            }
        );
    }

    #[tokio::test]
    async fn multipart_parts_count_as_written_bytes_and_one_put() {
        let inner = Arc::new(InMemory::new());
        let store = CountingStore::new(inner.clone());
        let upload = store.put_multipart(&Path::from("big")).await.unwrap();
        let mut writer = WriteMultipart::new_with_chunk_size(upload, 4);
        writer.write(b"abcdefghij");
        writer.finish().await.unwrap();
        let snapshot = store.counters().snapshot();
        assert_eq!(snapshot.put_requests, 1);
        assert_eq!(snapshot.bytes_written, 10);
        let stored = inner
            .get(&Path::from("big"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&stored[..], b"abcdefghij");
    }

    #[tokio::test]
    async fn counters_can_be_shared_between_stores() {
        let shared = Arc::new(StoreCounters::default());
        let a = CountingStore::with_counters(Arc::new(InMemory::new()), Arc::clone(&shared));
        let b = CountingStore::with_counters(Arc::new(InMemory::new()), Arc::clone(&shared));
        a.put(&Path::from("x"), "12".into()).await.unwrap();
        b.put(&Path::from("y"), "345".into()).await.unwrap();
        assert_eq!(shared.snapshot().put_requests, 2);
        assert_eq!(shared.snapshot().bytes_written, 5);
    }
}
