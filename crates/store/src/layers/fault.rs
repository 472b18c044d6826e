use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};
use std::collections::BTreeSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Deterministic fault injection for tests: chosen requests fail with a
/// transient error (an `object_store::Error::Generic`, as a network
/// failure is reported) instead of reaching the inner store.
///
/// Requests are numbered from 1 in the order they arrive, over every kind
/// (GET, HEAD, PUT, multipart start, list, delete, copy, rename); GETs
/// (HEADs excluded) are also numbered separately.
#[derive(Debug)]
pub struct FaultStore {
    inner: Arc<dyn ObjectStore>,
    failing_requests: BTreeSet<u64>,
    every_kth_get: Option<u64>,
    requests: AtomicU64,
    gets: AtomicU64,
    injected: AtomicU64,
}

impl FaultStore {
    /// A store that injects nothing until told to.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        FaultStore {
            inner,
            failing_requests: BTreeSet::new(),
            every_kth_get: None,
            requests: AtomicU64::new(0),
            gets: AtomicU64::new(0),
            injected: AtomicU64::new(0),
        }
    }

    /// Fails the `n`-th request (1-based, any kind).
    pub fn fail_request(mut self, n: u64) -> Self {
        self.failing_requests.insert(n);
        self
    }

    /// Fails GETs number k, 2k, 3k, … (1-based; `k == 0` disables).
    pub fn fail_every_kth_get(mut self, k: u64) -> Self {
        self.every_kth_get = (k > 0).then_some(k);
        self
    }

    /// How many faults were injected so far.
    pub fn injected_faults(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    /// Numbers the request and decides whether it fails.
    fn check(&self, is_get: bool) -> object_store::Result<()> {
        let request = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        let get_fails = is_get && {
            let get = self.gets.fetch_add(1, Ordering::Relaxed) + 1;
            self.every_kth_get.is_some_and(|k| get.is_multiple_of(k))
        };
        if get_fails || self.failing_requests.contains(&request) {
            self.injected.fetch_add(1, Ordering::Relaxed);
            return Err(object_store::Error::Generic {
                store: "FaultStore",
                source: format!("injected transient fault on request {request}").into(),
            });
        }
        Ok(())
    }
}

impl fmt::Display for FaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.check(false)?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.check(false)?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.check(!options.head)?;
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        match self.check(false) {
            Ok(()) => self.inner.delete_stream(locations),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        }
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        match self.check(false) {
            Ok(()) => self.inner.list(prefix),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        }
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        match self.check(false) {
            Ok(()) => self.inner.list_with_offset(prefix, offset),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.check(false)?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.check(false)?;
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.check(false)?;
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    /// A failure as a network error looks: `Generic`, which task retries
    /// treat as worth another attempt.
    fn is_transient(error: &object_store::Error) -> bool {
        matches!(error, object_store::Error::Generic { .. })
    }

    use super::*;
    use object_store::memory::InMemory;
    use object_store::ObjectStoreExt;

    #[tokio::test]
    async fn fails_exactly_the_chosen_request() {
        let store = FaultStore::new(Arc::new(InMemory::new())).fail_request(2);
        let path = Path::from("k");
        store.put(&path, "v".into()).await.unwrap(); // request 1
        let err = store.get(&path).await.unwrap_err(); // request 2
        assert!(is_transient(&err), "{err}");
        assert!(err.to_string().contains("request 2"), "{err}");
        store.get(&path).await.unwrap(); // request 3
        assert_eq!(store.injected_faults(), 1);
    }

    #[tokio::test]
    async fn fails_every_kth_get_but_not_heads_or_puts() {
        let store = FaultStore::new(Arc::new(InMemory::new())).fail_every_kth_get(3);
        let path = Path::from("k");
        store.put(&path, "v".into()).await.unwrap();
        let mut outcomes = Vec::new();
        for _ in 0..7 {
            store.head(&path).await.unwrap();
            outcomes.push(store.get(&path).await.is_ok());
        }
        assert_eq!(outcomes, [true, true, false, true, true, false, true]);
        assert_eq!(store.injected_faults(), 2);
    }

    #[tokio::test]
    async fn failing_list_yields_one_transient_error() {
        let store = FaultStore::new(Arc::new(InMemory::new())).fail_request(1);
        let results: Vec<_> = store.list(None).collect().await;
        assert_eq!(results.len(), 1);
        assert!(is_transient(results[0].as_ref().unwrap_err()));
    }
}
