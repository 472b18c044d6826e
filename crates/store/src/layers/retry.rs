use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Whether retrying `error` may help.
///
/// `object_store` reports network failures, timeouts and server errors as
/// `Generic`; everything else (not found, precondition failed, permission
/// denied, invalid path, not supported, …) is an answer that a retry would
/// only repeat.
pub fn is_transient(error: &object_store::Error) -> bool {
    matches!(error, object_store::Error::Generic { .. })
}

/// How [`RetryStore`] retries: at most `max_retries` extra attempts, waiting
/// `initial_backoff`, then twice as long each time, capped at `max_backoff`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Extra attempts after the first one.
    pub max_retries: u32,
    /// Wait before the first retry.
    pub initial_backoff: Duration,
    /// Longest wait between two attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0-based).
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.min(31));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// Retries transient failures ([`is_transient`]) of the inner store with
/// bounded exponential backoff.
///
/// What is retried: single PUTs, starting a multipart upload, GET and HEAD
/// requests (until the response starts; an error in the middle of a body is
/// the reader's to handle), `list_with_delimiter`, copies and renames, and
/// listings that fail before yielding their first object. A listing that
/// fails later is not restarted, because restarting would yield objects
/// twice. Multipart parts and deletes pass through unretried (the S3 client
/// retries each HTTP request itself).
#[derive(Debug)]
pub struct RetryStore {
    inner: Arc<dyn ObjectStore>,
    policy: RetryPolicy,
}

impl RetryStore {
    /// Wraps `inner` with `policy`.
    pub fn new(inner: Arc<dyn ObjectStore>, policy: RetryPolicy) -> Self {
        RetryStore { inner, policy }
    }

    async fn retry<T, F, Fut>(
        &self,
        what: &str,
        location: &Path,
        mut attempt: F,
    ) -> object_store::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = object_store::Result<T>>,
    {
        let mut retry = 0;
        loop {
            match attempt().await {
                Err(error) if is_transient(&error) && retry < self.policy.max_retries => {
                    let wait = self.policy.backoff(retry);
                    tracing::debug!(%location, %error, retry, ?wait, "retrying store {what}");
                    tokio::time::sleep(wait).await;
                    retry += 1;
                }
                outcome => return outcome,
            }
        }
    }
}

impl fmt::Display for RetryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RetryStore({})", self.inner)
    }
}

/// Listing state for [`RetryStore::list`]: the current attempt's stream and
/// whether anything was yielded yet.
struct ListRetry {
    inner: Arc<dyn ObjectStore>,
    prefix: Option<Path>,
    policy: RetryPolicy,
    retry: u32,
    yielded: bool,
    stream: BoxStream<'static, object_store::Result<ObjectMeta>>,
}

#[async_trait]
impl ObjectStore for RetryStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.retry("put", location, || {
            self.inner.put_opts(location, payload.clone(), opts.clone())
        })
        .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.retry("multipart start", location, || {
            self.inner.put_multipart_opts(location, opts.clone())
        })
        .await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.retry("get", location, || {
            self.inner.get_opts(location, options.clone())
        })
        .await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let state = ListRetry {
            inner: Arc::clone(&self.inner),
            prefix: prefix.cloned(),
            policy: self.policy.clone(),
            retry: 0,
            yielded: false,
            stream: self.inner.list(prefix),
        };
        futures::stream::unfold(state, |mut state| async move {
            loop {
                match state.stream.next().await? {
                    Ok(meta) => {
                        state.yielded = true;
                        return Some((Ok(meta), state));
                    }
                    Err(error)
                        if !state.yielded
                            && is_transient(&error)
                            && state.retry < state.policy.max_retries =>
                    {
                        let wait = state.policy.backoff(state.retry);
                        tracing::debug!(%error, retry = state.retry, ?wait, "retrying store list");
                        tokio::time::sleep(wait).await;
                        state.retry += 1;
                        state.stream = state.inner.list(state.prefix.as_ref());
                    }
                    Err(error) => return Some((Err(error), state)),
                }
            }
        })
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let location = prefix.cloned().unwrap_or_default();
        self.retry("list", &location, || self.inner.list_with_delimiter(prefix))
            .await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.retry("copy", from, || {
            self.inner.copy_opts(from, to, options.clone())
        })
        .await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.retry("rename", from, || {
            self.inner.rename_opts(from, to, options.clone())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CountingStore, FaultStore};
    use futures::TryStreamExt;
    use object_store::memory::InMemory;
    use object_store::ObjectStoreExt;

    fn quick(max_retries: u32) -> RetryPolicy {
        RetryPolicy {
            max_retries,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
        }
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let policy = RetryPolicy {
            max_retries: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
        };
        let waits: Vec<u128> = (0..6).map(|r| policy.backoff(r).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(policy.backoff(u32::MAX), Duration::from_millis(1000));
    }

    #[tokio::test]
    async fn transient_get_failures_are_retried_until_success() {
        let memory = Arc::new(InMemory::new());
        memory.put(&Path::from("k"), "value".into()).await.unwrap();
        let counting = Arc::new(CountingStore::new(memory));
        let counters = counting.counters();
        // Requests 1 and 2 fail; the third attempt succeeds.
        let faulty = Arc::new(FaultStore::new(counting).fail_request(1).fail_request(2));
        let store = RetryStore::new(faulty.clone(), quick(3));
        let bytes = store
            .get(&Path::from("k"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&bytes[..], b"value");
        assert_eq!(faulty.injected_faults(), 2);
        assert_eq!(counters.snapshot().get_requests, 1);
    }

    #[tokio::test]
    async fn retries_are_bounded() {
        let memory = Arc::new(InMemory::new());
        memory.put(&Path::from("k"), "value".into()).await.unwrap();
        let faulty = Arc::new(FaultStore::new(memory).fail_every_kth_get(1));
        let store = RetryStore::new(faulty.clone(), quick(2));
        let err = store.get(&Path::from("k")).await.unwrap_err();
        assert!(is_transient(&err));
        assert_eq!(faulty.injected_faults(), 3, "one attempt plus two retries");
    }

    #[tokio::test]
    async fn permanent_errors_are_not_retried() {
        let counting = Arc::new(CountingStore::new(Arc::new(InMemory::new())));
        let store = RetryStore::new(counting.clone(), quick(5));
        let err = store.get(&Path::from("missing")).await.unwrap_err();
        assert!(matches!(err, object_store::Error::NotFound { .. }));
        assert_eq!(counting.counters().snapshot().get_requests, 1);
    }

    #[tokio::test]
    async fn puts_and_listings_that_fail_up_front_are_retried() {
        let memory = Arc::new(InMemory::new());
        // Request 1 is the first put attempt; request 3 the first list.
        let faulty = Arc::new(
            FaultStore::new(memory.clone())
                .fail_request(1)
                .fail_request(3),
        );
        let store = RetryStore::new(faulty.clone(), quick(1));
        store.put(&Path::from("a"), "1".into()).await.unwrap();
        let listed: Vec<ObjectMeta> = store.list(None).try_collect().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(faulty.injected_faults(), 2);
    }
}
