//! `map_prefix`: one task per object (or per line-aligned chunk of an
//! object) under a store prefix, with results streamed back as they finish.
//!
//! The listing is never collected: a background driver pins objects as the
//! store lists them, page by page, and submits them in batches. At most
//! [`MapPrefixOptions::max_in_flight`] tasks are submitted and not yet
//! handed to the caller, so a prefix of millions of objects runs in
//! constant client memory (and does not flood the scheduler's queue).

use crate::client::Client;
use crate::error::ClientError;
use crate::future::TaskFuture;
use crate::job::{Job, JobOptions};
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, Stream, StreamExt};
use quarry_proto::{ByteRange, DataRef, JobId, JobInfo, TaskSpec};
use quarry_store::StoreResolver;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

/// Most tasks sent in one submission while the listing keeps up.
const SUBMIT_BATCH: usize = 1_000;
/// Objects whose chunk boundaries are probed at the same time.
const CHUNK_PROBES_IN_FLIGHT: usize = 8;
/// Characters that make a URL segment a glob (as `StoreResolver::list_refs`
/// reads them).
const GLOB_CHARS: &[char] = &['*', '?', '[', '{'];

/// How [`Client::map_prefix`] lists, splits and runs.
#[derive(Clone, Debug)]
pub struct MapPrefixOptions {
    /// The job's name; defaults to `map_prefix <url>`.
    pub name: Option<String>,
    /// A glob matched against each key relative to the prefix, such as
    /// `*.txt` (one level), `**/*.csv` (any depth) or `{a,b}/*.log`.
    pub glob: Option<String>,
    /// Split objects larger than this many bytes into line-aligned chunks of
    /// at least this size (the last may be smaller), one task each. Meant for
    /// newline-delimited objects; an empty object then yields no task.
    pub chunk_size: Option<u64>,
    /// The function's argument, MessagePack-encoded, the same for every
    /// task (see [`MapPrefixOptions::with_args`]); defaults to nil.
    pub args: Vec<u8>,
    /// Named inputs every task reads; each worker fetches each once.
    pub broadcast: Vec<(String, DataRef)>,
    /// Output prefix for task outputs and large results.
    pub output: Option<String>,
    /// Opaque executor context (MessagePack), such as a command template.
    pub context: Vec<u8>,
    /// Times a failed attempt is retried.
    pub retries: u32,
    /// Kill an attempt after this many milliseconds.
    pub timeout_ms: Option<u64>,
    /// Higher runs first.
    pub priority: i32,
    /// Cancel the rest of the job after this many tasks failed for good.
    pub max_fails: Option<u64>,
    /// Most tasks submitted whose results the caller has not taken yet; the
    /// listing pauses while this many are outstanding.
    pub max_in_flight: usize,
}

impl Default for MapPrefixOptions {
    fn default() -> Self {
        MapPrefixOptions {
            name: None,
            glob: None,
            chunk_size: None,
            args: nil_args(),
            broadcast: Vec::new(),
            output: None,
            context: Vec::new(),
            retries: 0,
            timeout_ms: None,
            priority: 0,
            max_fails: None,
            max_in_flight: 10_000,
        }
    }
}

impl MapPrefixOptions {
    /// Sets the argument every task receives besides its input.
    pub fn with_args<A: Serialize>(mut self, args: &A) -> Result<Self, ClientError> {
        self.args = rmp_serde::to_vec_named(args).map_err(|e| ClientError::Codec(e.to_string()))?;
        Ok(self)
    }
}

fn nil_args() -> Vec<u8> {
    // MessagePack nil: what `()` encodes to, and what any argument type that
    // ignores its value (such as `serde::de::IgnoredAny`) accepts.
    vec![0xc0]
}

/// One finished task of a [`PrefixMap`].
#[derive(Debug)]
pub struct PrefixResult<R> {
    /// The task's key: the object's key relative to the prefix, with
    /// `@start-end` appended for a chunk.
    pub key: String,
    /// The pinned object (with its byte range for a chunk) the task read.
    pub input: DataRef,
    /// The task's result, or its final error.
    pub result: Result<R, ClientError>,
}

/// How much of the listing a [`PrefixMap`] has submitted so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrefixProgress {
    /// Objects listed and pinned.
    pub objects: u64,
    /// Tasks submitted (more than `objects` when chunking).
    pub tasks: u64,
    /// Input bytes of the submitted tasks.
    pub bytes: u64,
    /// Whether the listing is over and the job sealed.
    pub listed: bool,
}

#[derive(Default)]
struct ProgressCounters {
    objects: AtomicU64,
    tasks: AtomicU64,
    bytes: AtomicU64,
    listed: AtomicBool,
}

/// A submitted task on its way from the driver to the stream, holding its
/// share of the in-flight window.
struct Submitted<R> {
    future: TaskFuture<R>,
    input: DataRef,
    permit: OwnedSemaphorePermit,
}

/// The results of [`Client::map_prefix`], in completion order: a
/// [`Stream`] of `Result<PrefixResult<R>, ClientError>`, also readable
/// without `StreamExt` through [`PrefixMap::next`] and [`PrefixMap::fold`].
///
/// An outer `Err` means the listing (or a submission) failed: the job is
/// cancelled, because a partial listing would give a wrong answer, and the
/// stream then ends after the already submitted tasks report. A task's own
/// failure is the inner [`PrefixResult::result`].
///
/// Dropping the map before its end cancels the job's unfinished tasks.
pub struct PrefixMap<R> {
    job: JobId,
    client: Client,
    submitted: mpsc::UnboundedReceiver<Result<Submitted<R>, ClientError>>,
    running: FuturesUnordered<BoxFuture<'static, PrefixResult<R>>>,
    progress: Arc<ProgressCounters>,
    driver: JoinHandle<()>,
    driver_done: bool,
    ended: bool,
}

impl<R> std::fmt::Debug for PrefixMap<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrefixMap")
            .field("job", &self.job)
            .field("progress", &self.progress())
            .field("running", &self.running.len())
            .finish()
    }
}

impl<R> PrefixMap<R> {
    /// The job the tasks belong to: ask [`Client::job_info`] for its
    /// locality and cache metrics.
    pub fn job(&self) -> JobId {
        self.job
    }

    /// How much has been listed and submitted so far.
    pub fn progress(&self) -> PrefixProgress {
        PrefixProgress {
            objects: self.progress.objects.load(Ordering::Relaxed),
            tasks: self.progress.tasks.load(Ordering::Relaxed),
            bytes: self.progress.bytes.load(Ordering::Relaxed),
            listed: self.progress.listed.load(Ordering::Acquire),
        }
    }
}

impl<R: DeserializeOwned + Send + 'static> PrefixMap<R> {
    /// The next finished task, or `None` once every task has been handed
    /// out.
    pub async fn next(&mut self) -> Option<Result<PrefixResult<R>, ClientError>> {
        StreamExt::next(self).await
    }

    /// Folds every result into an accumulator (the final reduce of a
    /// map-reduce), stopping at the first failed task or listing error.
    pub async fn fold<T>(
        mut self,
        init: T,
        mut reduce: impl FnMut(T, R) -> T,
    ) -> Result<T, ClientError> {
        let mut acc = init;
        while let Some(item) = self.next().await {
            acc = reduce(acc, item?.result?);
        }
        Ok(acc)
    }

    fn start(&mut self, submitted: Submitted<R>) {
        let Submitted {
            future,
            input,
            permit,
        } = submitted;
        self.running.push(Box::pin(async move {
            let key = future.key().to_string();
            let result = future.result().await;
            // The result is about to be handed out: make room for the next
            // task of the listing.
            drop(permit);
            PrefixResult { key, input, result }
        }));
    }
}

impl<R: DeserializeOwned + Send + 'static> Stream for PrefixMap<R> {
    type Item = Result<PrefixResult<R>, ClientError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        while !this.driver_done {
            match this.submitted.poll_recv(cx) {
                Poll::Ready(Some(Ok(submitted))) => this.start(submitted),
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error))),
                Poll::Ready(None) => this.driver_done = true,
                Poll::Pending => break,
            }
        }
        match this.running.poll_next_unpin(cx) {
            Poll::Ready(Some(done)) => Poll::Ready(Some(Ok(done))),
            Poll::Ready(None) if this.driver_done => {
                this.ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        }
    }
}

impl<R> Drop for PrefixMap<R> {
    fn drop(&mut self) {
        if !self.ended {
            self.driver.abort();
            let _ = self.client.cancel_job(self.job);
        }
    }
}

impl Client {
    /// Runs `function` once per object under `url` (an `s3://`, `file://`
    /// or local prefix, or a glob such as `s3://b/logs/*/part-*.txt`), each
    /// task reading its object as its input, and streams the results back
    /// as they finish.
    ///
    /// Every object is pinned by its ETag when listed: a worker reading an
    /// object that changed since fails that task with
    /// [`quarry_proto::ErrorKind::InputChanged`]. With
    /// [`MapPrefixOptions::chunk_size`], larger objects are split into
    /// line-aligned byte ranges, one task each, so every line is read by
    /// exactly one task. The tasks form one job, sealed once the listing
    /// ends; its metrics come from [`Client::job_info`].
    ///
    /// Must be called inside a tokio runtime: the listing runs on a task of
    /// its own.
    ///
    /// ```no_run
    /// # async fn demo(client: quarry_client::Client) -> Result<(), quarry_client::ClientError> {
    /// use quarry_client::MapPrefixOptions;
    /// use std::collections::BTreeMap;
    /// let options = MapPrefixOptions { glob: Some("*.txt".into()), ..Default::default() };
    /// let counts = client
    ///     .map_prefix::<BTreeMap<String, u64>>("wordcount", "s3://bucket/logs/2026/", options)?
    ///     .fold(BTreeMap::new(), |mut total, shard| {
    ///         for (word, n) in shard {
    ///             *total.entry(word).or_insert(0) += n;
    ///         }
    ///         total
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn map_prefix<R: DeserializeOwned + Send + 'static>(
        &self,
        function: &str,
        url: &str,
        options: MapPrefixOptions,
    ) -> Result<PrefixMap<R>, ClientError> {
        let listing_url = listing_url(url, options.glob.as_deref());
        let job = self.open_job(JobOptions {
            name: options
                .name
                .clone()
                .unwrap_or_else(|| format!("map_prefix {listing_url}")),
            broadcast: options.broadcast.clone(),
            output: options.output.clone(),
            context: options.context.clone(),
            max_fails: options.max_fails,
        })?;
        let job_id = job.id();
        let (sender, submitted) = mpsc::unbounded_channel();
        let progress = Arc::new(ProgressCounters::default());
        let driver = Driver {
            client: self.clone(),
            job,
            store: self.inner.store.clone(),
            keys: KeyNamer::new(&self.inner.store, url),
            function: function.to_string(),
            window: Arc::new(Semaphore::new(options.max_in_flight.max(1))),
            batch: SUBMIT_BATCH.min(options.max_in_flight.max(1)),
            options,
            progress: progress.clone(),
            sender,
        };
        let driver = tokio::spawn(driver.run(listing_url));
        Ok(PrefixMap {
            job: job_id,
            client: self.clone(),
            submitted,
            running: FuturesUnordered::new(),
            progress,
            driver,
            driver_done: false,
            ended: false,
        })
    }

    /// The status and metrics of one job: task counts, `tasks_local` /
    /// `tasks_remote` (locality) and the summed [`quarry_proto::TaskStats`]
    /// (bytes from cache and from the store, cache hits and misses).
    pub async fn job_info(&self, job: JobId) -> Result<JobInfo, ClientError> {
        self.jobs()
            .await?
            .into_iter()
            .find(|info| info.id == job)
            .ok_or_else(|| ClientError::Refused(format!("the scheduler knows no job {job}")))
    }
}

/// The URL handed to `list_refs`: the prefix, joined with the glob if any.
fn listing_url(url: &str, glob: Option<&str>) -> String {
    match glob {
        Some(glob) if !glob.is_empty() => format!(
            "{}/{}",
            url.trim_end_matches('/'),
            glob.trim_start_matches('/')
        ),
        _ => url.to_string(),
    }
}

/// Names tasks after their object's key relative to the mapped prefix.
struct KeyNamer {
    /// The prefix as the store spells listed URLs (`s3://b/logs`,
    /// `file:///abs/dir`), without a trailing slash.
    base: Option<String>,
}

impl KeyNamer {
    fn new(store: &StoreResolver, url: &str) -> KeyNamer {
        // Keys are relative to the literal part of the URL, before any glob.
        let literal = match url.find(GLOB_CHARS) {
            Some(at) => &url[..url[..at].rfind('/').map_or(0, |slash| slash + 1)],
            None => url,
        };
        let base = store.resolve(literal).ok().map(|location| location.url());
        KeyNamer { base }
    }

    /// A deterministic task key, valid as a relative output path: the key
    /// under the prefix (the file name when the URL named one object),
    /// with `@start-end` appended for a chunk.
    fn key(&self, input: &DataRef) -> String {
        let url = input.url.as_str();
        let relative = self
            .base
            .as_deref()
            .and_then(|base| url.strip_prefix(base))
            .map(|rest| rest.trim_start_matches('/'))
            .filter(|rest| !rest.is_empty())
            .unwrap_or_else(|| match url.rsplit_once('/') {
                Some((_, name)) if !name.is_empty() => name,
                _ => url,
            });
        let mut key = sanitize_key(relative);
        if let Some(range) = input.range {
            key.push_str(&format!("@{}-{}", range.start, range.end));
        }
        key
    }
}

/// Makes `relative` a valid relative output path: no control characters or
/// backslashes, no empty, `.` or `..` segments.
fn sanitize_key(relative: &str) -> String {
    relative
        .split('/')
        .map(|segment| {
            let cleaned: String = segment
                .chars()
                .map(|c| if c == '\\' || c.is_control() { '_' } else { c })
                .collect();
            match cleaned.as_str() {
                "" | "." | ".." => "_".to_string(),
                _ => cleaned,
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Lists, pins, chunks and submits, in the background of a [`PrefixMap`].
struct Driver<R> {
    client: Client,
    job: Job,
    store: StoreResolver,
    keys: KeyNamer,
    function: String,
    options: MapPrefixOptions,
    window: Arc<Semaphore>,
    batch: usize,
    progress: Arc<ProgressCounters>,
    sender: mpsc::UnboundedSender<Result<Submitted<R>, ClientError>>,
}

impl<R: DeserializeOwned + Send + 'static> Driver<R> {
    async fn run(self, listing_url: String) {
        let outcome = self.submit_all(&listing_url).await;
        if let Err(error) = outcome {
            // A partial listing must not pass for the whole prefix.
            let _ = self.client.cancel_job(self.job.id());
            let _ = self.sender.send(Err(error));
        }
        let _ = self.job.seal();
        self.progress.listed.store(true, Ordering::Release);
    }

    async fn submit_all(&self, listing_url: &str) -> Result<(), ClientError> {
        let store = self.store.clone();
        let chunk_size = self.options.chunk_size;
        let progress = self.progress.clone();
        let pieces = self
            .store
            .list_refs(listing_url)
            .map(move |listed| {
                let store = store.clone();
                let progress = progress.clone();
                async move {
                    let object = listed?;
                    progress.objects.fetch_add(1, Ordering::Relaxed);
                    split(&store, object, chunk_size).await
                }
            })
            .buffered(CHUNK_PROBES_IN_FLIGHT);
        let mut batches = pieces.ready_chunks(self.batch);
        while let Some(batch) = batches.next().await {
            let mut inputs = Vec::new();
            for pieces in batch {
                inputs.extend(pieces?);
            }
            // Chunking can turn a batch of objects into more tasks than the
            // window holds; submit them a window's worth at a time.
            for part in inputs.chunks(self.batch) {
                self.submit(part.to_vec()).await?;
            }
        }
        Ok(())
    }

    async fn submit(&self, inputs: Vec<DataRef>) -> Result<(), ClientError> {
        if inputs.is_empty() {
            return Ok(());
        }
        let mut permits = Vec::with_capacity(inputs.len());
        for _ in 0..inputs.len() {
            permits.push(
                self.window
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| ClientError::Closed)?,
            );
        }
        let specs: Vec<TaskSpec> = inputs.iter().map(|input| self.spec(input)).collect();
        let futures = self.job.submit::<R>(specs)?;
        let bytes: u64 = inputs.iter().map(DataRef::read_len).sum();
        self.progress
            .tasks
            .fetch_add(inputs.len() as u64, Ordering::Relaxed);
        self.progress.bytes.fetch_add(bytes, Ordering::Relaxed);
        for ((future, input), permit) in futures.into_iter().zip(inputs).zip(permits) {
            let submitted = Submitted {
                future,
                input,
                permit,
            };
            if self.sender.send(Ok(submitted)).is_err() {
                // The map was dropped; its Drop cancels the job.
                return Err(ClientError::Closed);
            }
        }
        Ok(())
    }

    fn spec(&self, input: &DataRef) -> TaskSpec {
        let mut spec = self.job.new_task(&self.function, self.options.args.clone());
        spec.key = self.keys.key(input);
        spec.inputs = vec![input.clone()];
        spec.replica_hosts = self.store.replica_hosts(&spec.inputs);
        spec.retries = self.options.retries;
        spec.timeout_ms = self.options.timeout_ms;
        spec.priority = self.options.priority;
        spec
    }
}

/// The inputs one listed object becomes: itself, or its line-aligned
/// chunks when it is larger than `chunk_size`.
async fn split(
    store: &StoreResolver,
    object: DataRef,
    chunk_size: Option<u64>,
) -> Result<Vec<DataRef>, ClientError> {
    let Some(chunk_size) = chunk_size else {
        return Ok(vec![object]);
    };
    let ranges = store.chunk_ranges(&object, chunk_size).await?;
    let whole = ByteRange {
        start: 0,
        end: object.size,
    };
    Ok(ranges
        .into_iter()
        .map(|range| DataRef {
            // A chunk that is the whole object reads like an unchunked one.
            range: (range != whole).then_some(range),
            ..object.clone()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use quarry_proto::Pin;
    use quarry_store::StoreConfig;

    fn data_ref(url: &str, range: Option<ByteRange>) -> DataRef {
        DataRef {
            url: url.to_string(),
            pin: Pin::ETag("\"e\"".into()),
            size: 100,
            range,
        }
    }

    #[test]
    fn globs_join_the_prefix_with_one_slash() {
        assert_eq!(listing_url("s3://b/logs/", None), "s3://b/logs/");
        assert_eq!(
            listing_url("s3://b/logs/", Some("*.txt")),
            "s3://b/logs/*.txt"
        );
        assert_eq!(
            listing_url("s3://b/logs", Some("/**/*.csv")),
            "s3://b/logs/**/*.csv"
        );
        assert_eq!(listing_url("s3://b/logs", Some("")), "s3://b/logs");
    }

    #[test]
    fn keys_are_relative_to_the_prefix() {
        let store = StoreResolver::new(StoreConfig::default());
        let namer = KeyNamer::new(&store, "s3://b/logs/2026/");
        assert_eq!(
            namer.key(&data_ref("s3://b/logs/2026/day1/a.txt", None)),
            "day1/a.txt"
        );
        let chunk = ByteRange { start: 10, end: 60 };
        assert_eq!(
            namer.key(&data_ref("s3://b/logs/2026/a.txt", Some(chunk))),
            "a.txt@10-60"
        );

        let without_slash = KeyNamer::new(&store, "s3://b/logs/2026");
        assert_eq!(
            without_slash.key(&data_ref("s3://b/logs/2026/a.txt", None)),
            "a.txt"
        );

        let globbed = KeyNamer::new(&store, "s3://b/logs/*/part-*.txt");
        assert_eq!(
            globbed.key(&data_ref("s3://b/logs/2026/part-1.txt", None)),
            "2026/part-1.txt"
        );

        let one_object = KeyNamer::new(&store, "s3://b/logs/a.txt");
        assert_eq!(
            one_object.key(&data_ref("s3://b/logs/a.txt", None)),
            "a.txt"
        );
    }

    #[test]
    fn local_prefixes_name_keys_like_listed_file_urls() {
        let store = StoreResolver::new(StoreConfig::default());
        let namer = KeyNamer::new(&store, "/tmp/quarry-keys/in/");
        assert_eq!(
            namer.key(&data_ref("file:///tmp/quarry-keys/in/x/y.txt", None)),
            "x/y.txt"
        );
        let url = KeyNamer::new(&store, "file:///tmp/quarry-keys/in");
        assert_eq!(
            url.key(&data_ref("file:///tmp/quarry-keys/in/y.txt", None)),
            "y.txt"
        );
    }

    #[test]
    fn keys_are_valid_relative_paths() {
        assert_eq!(sanitize_key("a//b/./c/../d"), "a/_/b/_/c/_/d");
        assert_eq!(sanitize_key("tab\there\\x"), "tab_here_x");
        assert_eq!(sanitize_key("plain/key.txt"), "plain/key.txt");
    }

    #[test]
    fn default_arguments_decode_as_unit() {
        let args = MapPrefixOptions::default().args;
        let _: () = rmp_serde::from_slice(&args).unwrap();
        let with = MapPrefixOptions::default().with_args(&7u32).unwrap();
        assert_eq!(rmp_serde::from_slice::<u32>(&with.args).unwrap(), 7);
    }

    #[tokio::test]
    async fn chunks_cover_the_object_and_small_objects_stay_whole() {
        use quarry_store::object_store::ObjectStoreExt;
        let memory = quarry_store::memory_store("prefix-split");
        let text = "one\ntwo\nthree\nfour\nfive\n";
        memory
            .put(&"f".into(), text.as_bytes().to_vec().into())
            .await
            .unwrap();
        let store = StoreResolver::new(StoreConfig::default());
        let mut listed = store.list_refs("memory://prefix-split/f");
        let object = listed.next().await.unwrap().unwrap();

        let whole = split(&store, object.clone(), None).await.unwrap();
        assert_eq!(whole, vec![object.clone()]);
        let big_chunks = split(&store, object.clone(), Some(1_000)).await.unwrap();
        assert_eq!(big_chunks, vec![object.clone()]);

        let chunks = split(&store, object.clone(), Some(6)).await.unwrap();
        let texts: Vec<&str> = chunks
            .iter()
            .map(|c| {
                let r = c.range.unwrap();
                &text[r.start as usize..r.end as usize]
            })
            .collect();
        assert_eq!(texts, ["one\ntwo\n", "three\n", "four\nfive\n"]);
    }
}
