//! The worker's data plane: staging inputs through the shard cache (all of
//! a task's inputs at once, and the inputs of queued tasks ahead of time,
//! within a byte budget), the local directories command attempts run in,
//! and writing large results to the store (and into the cache, from
//! memory).

use crate::command::Commands;
use crate::execute::failure;
use crate::registry::Shard;
use crate::runtime::{WorkerError, WorkerOptions};
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use quarry_cache::{CacheConfig, CacheError, ShardCache, ShardGuard};
use quarry_proto::{
    msgpack_to_json, CacheEntry, DataRef, ErrorKind, JobSpec, Limits, Pin, ResultFormat, TaskError,
    TaskSpec, TaskStats, Value,
};
use quarry_store::{StoreError, StoreResolver};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The shard cache plus the store resolver that fills it, and what
/// command attempts share (their directories and prepared commands).
pub(crate) struct Inputs {
    cache: ShardCache,
    store: StoreResolver,
    commands: Commands,
    /// Most input bytes being fetched ahead for queued tasks at once.
    prefetch_budget: u64,
    /// Input bytes being fetched ahead right now.
    prefetching: Arc<AtomicU64>,
}

/// Inputs of one attempt, staged as local files. The guards keep them from
/// being evicted until the attempt is over.
pub(crate) struct Staged {
    pub(crate) inputs: Vec<Shard>,
    pub(crate) broadcast: HashMap<String, Shard>,
    pub(crate) args: Option<Vec<u8>>,
    _guards: Vec<ShardGuard>,
}

/// Inputs fetched ahead for a queued task: per input of
/// [`staged_refs`], whether it was already cached and the bytes downloaded
/// (`None` if the fetch failed; the task then meets the error itself).
pub(crate) struct Prefetch(tokio::task::JoinHandle<Vec<Option<(bool, u64)>>>);

/// What a task's attempt stages, in order: its inputs, the job's broadcast
/// inputs, and its arguments when they travel by reference.
fn staged_refs<'a>(task: &'a TaskSpec, job: &'a JobSpec) -> Vec<&'a DataRef> {
    task.inputs
        .iter()
        .chain(job.broadcast.iter().map(|(_, r)| r))
        .chain(task.args_ref.iter())
        .collect()
}

fn input_error(data_ref: &DataRef, error: CacheError) -> TaskError {
    match error.store_error() {
        Some(StoreError::Changed { .. }) => failure(ErrorKind::InputChanged, error.to_string()),
        _ => failure(
            ErrorKind::InputUnavailable,
            format!("cannot read input {}: {error}", data_ref.url),
        ),
    }
}

impl Inputs {
    pub(crate) async fn open(options: &WorkerOptions) -> Result<Inputs, WorkerError> {
        let store = StoreResolver::from_env();
        let config = CacheConfig {
            parallel_threshold: options.parallel_get_threshold,
            block_size: options.cache_block_size,
            verify_checksum_on_hit: options.verify_cache_checksums,
            ..CacheConfig::new(options.cache_size)
        };
        let cache = ShardCache::open_with(&options.cache_dir, config, store.clone())
            .await
            .map_err(|e| WorkerError::Cache(e.to_string()))?;
        Ok(Inputs {
            cache,
            store,
            commands: Commands::new(options.scratch_dir.clone()),
            prefetch_budget: options.prefetch_bytes,
            prefetching: Arc::default(),
        })
    }

    /// Starts fetching the inputs of a task that waits in the queue into
    /// the cache, while no more than the prefetch budget is being fetched
    /// ahead; `None` when the task has no inputs or they do not fit (they
    /// are then fetched when the task runs). The task's staging waits for
    /// what was started and counts its downloads as its own.
    pub(crate) fn prefetch(
        &self,
        runtime: &tokio::runtime::Handle,
        task: &TaskSpec,
        job: &JobSpec,
    ) -> Option<Prefetch> {
        let refs: Vec<DataRef> = staged_refs(task, job).into_iter().cloned().collect();
        let bytes: u64 = refs.iter().map(DataRef::read_len).sum();
        if refs.is_empty() {
            return None;
        }
        self.prefetching
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                (now + bytes <= self.prefetch_budget).then_some(now + bytes)
            })
            .ok()?;
        let (cache, prefetching) = (self.cache.clone(), Arc::clone(&self.prefetching));
        Some(Prefetch(runtime.spawn(async move {
            let fetched = futures::future::join_all(refs.iter().map(|r| cache.get(r))).await;
            prefetching.fetch_sub(bytes, Ordering::AcqRel);
            fetched
                .into_iter()
                .map(|shard| shard.ok().map(|s| (s.from_cache, s.bytes_from_store)))
                .collect()
        })))
    }

    /// What command attempts share: their directories and prepared
    /// commands.
    pub(crate) fn commands(&self) -> &Commands {
        &self.commands
    }

    /// The shard cache.
    pub(crate) fn cache(&self) -> &ShardCache {
        &self.cache
    }

    pub(crate) fn inventory(&self) -> Vec<CacheEntry> {
        self.cache.inventory()
    }

    pub(crate) fn take_delta(&self) -> (Vec<CacheEntry>, Vec<CacheEntry>) {
        self.cache.take_delta()
    }

    /// Stages a task's inputs, the job's broadcast inputs and, for large
    /// arguments, the arguments, as local files from the cache, all fetched
    /// at the same time.
    pub(crate) async fn stage(
        &self,
        task: &TaskSpec,
        job: &JobSpec,
        stats: &mut TaskStats,
        prefetched: Option<Prefetch>,
    ) -> Result<Staged, TaskError> {
        let refs = staged_refs(task, job);
        // What was fetched ahead for this task counts as its own download.
        let ahead = match prefetched {
            Some(Prefetch(handle)) => handle.await.unwrap_or_default(),
            None => Vec::new(),
        };
        let fetched = futures::future::join_all(refs.iter().map(|r| self.cache.get(r))).await;
        let mut guards = Vec::with_capacity(refs.len());
        let mut shards = Vec::with_capacity(refs.len());
        for (i, (data_ref, cached)) in refs.iter().zip(fetched).enumerate() {
            let cached = cached.map_err(|e| input_error(data_ref, e))?;
            let (ahead_cached, ahead_bytes) = ahead.get(i).copied().flatten().unwrap_or((true, 0));
            if cached.from_cache && ahead_cached {
                stats.cache_hits += 1;
            } else {
                stats.cache_misses += 1;
            }
            let from_store = cached.bytes_from_store + ahead_bytes;
            stats.bytes_from_store += from_store;
            stats.bytes_from_cache += data_ref.read_len().saturating_sub(from_store);
            guards.push(cached.guard);
            shards.push(Shard {
                path: cached.path,
                data_ref: (*data_ref).clone(),
            });
        }
        let mut shards = shards.into_iter();
        let inputs: Vec<Shard> = shards.by_ref().take(task.inputs.len()).collect();
        let broadcast: HashMap<String, Shard> = job
            .broadcast
            .iter()
            .map(|(name, _)| name.clone())
            .zip(shards.by_ref())
            .collect();
        let args = match shards.next() {
            Some(shard) => Some(shard.read().map_err(|e| {
                failure(
                    ErrorKind::InputUnavailable,
                    format!("cannot read the task's arguments: {e}"),
                )
            })?),
            None => None,
        };
        Ok(Staged {
            inputs,
            broadcast,
            args,
            _guards: guards,
        })
    }

    /// Writes `bytes` to `url`, returning a reference pinned by the new
    /// ETag. One PUT replaces the object atomically, so a retried task
    /// overwrites rather than duplicates.
    pub(crate) async fn put(&self, url: &str, bytes: Bytes) -> Result<DataRef, TaskError> {
        let location = self
            .store
            .resolve(url)
            .map_err(|e| failure(ErrorKind::Failed, e.to_string()))?;
        let size = bytes.len() as u64;
        let result = location
            .store
            .put(&location.path, PutPayload::from(bytes))
            .await
            .map_err(|e| failure(ErrorKind::Failed, format!("cannot write {url}: {e}")))?;
        Ok(DataRef {
            url: url.to_string(),
            pin: result.e_tag.map_or(Pin::Unpinned, Pin::ETag),
            size,
            range: None,
        })
    }

    /// Deletes what earlier attempts or runs left under the task's output
    /// directory `OUTPUT/<task key>/` and this attempt does not write
    /// (`kept`, paths relative to the directory), before this attempt's
    /// files go up: see [`quarry_command::stale_outputs`].
    pub(crate) async fn clean_output_dir(
        &self,
        output: &str,
        task_key: &str,
        kept: &[String],
    ) -> Result<(), TaskError> {
        let dir_key = quarry_command::output_dir_key(task_key)
            .map_err(|e| failure(ErrorKind::Failed, e.to_string()))?;
        let dir = format!("{}/{dir_key}", output.trim_end_matches('/'));
        let fail = |e: String| {
            failure(
                ErrorKind::Failed,
                format!("cannot clear what earlier runs left in {dir}: {e}"),
            )
        };
        let location = self.store.resolve(&dir).map_err(|e| fail(e.to_string()))?;
        let listed: Vec<(String, ObjectPath)> = location
            .store
            .list(Some(&location.path))
            .map_ok(|meta| {
                let relative = meta
                    .location
                    .prefix_match(&location.path)
                    .map(|parts| parts.map(|p| p.as_ref().to_string()).collect::<Vec<_>>())
                    .unwrap_or_default()
                    .join("/");
                (relative, meta.location)
            })
            .try_collect()
            .await
            .map_err(|e| fail(e.to_string()))?;
        let names: Vec<String> = listed.iter().map(|(name, _)| name.clone()).collect();
        let stale = quarry_command::stale_outputs(&names, kept);
        for (_, path) in listed
            .iter()
            .filter(|(name, _)| stale.contains(&name.as_str()))
        {
            match location.store.delete(path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(fail(e.to_string())),
            }
        }
        Ok(())
    }

    /// Whether a result of `len` bytes goes to the store (it is over the
    /// inline cap).
    pub(crate) fn stored_result(len: usize, limits: &Limits) -> bool {
        len > limits.max_inline_bytes
    }

    /// Turns a result (MessagePack) into a [`Value`]: inline when small,
    /// else written under the job's output prefix, as JSON unless `binary`
    /// (`_result.json`, or `_result.msgpack`), and returned as a reference.
    /// The worker caches what it wrote from memory, so downstream tasks
    /// reading it here run from the cache without a download. With
    /// `clean`, what earlier runs left in the task's output directory goes
    /// first (callers that upload more files clean up themselves).
    pub(crate) async fn result_value(
        &self,
        bytes: Vec<u8>,
        job: &JobSpec,
        task: &TaskSpec,
        limits: &Limits,
        binary: bool,
        clean: bool,
    ) -> Result<Value, TaskError> {
        if !Self::stored_result(bytes.len(), limits) {
            return Ok(Value::Inline(bytes));
        }
        let Some(output) = &job.output else {
            return Err(failure(
                ErrorKind::Failed,
                format!(
                    "the result is {} bytes, over the {}-byte inline cap; give the job an \
                     output prefix so that large results are stored there and returned by \
                     reference",
                    bytes.len(),
                    limits.max_inline_bytes
                ),
            ));
        };
        let format = if binary {
            ResultFormat::MessagePack
        } else {
            ResultFormat::Json
        };
        let stored = match format {
            ResultFormat::MessagePack => Bytes::from(bytes),
            ResultFormat::Json => {
                let json = msgpack_to_json(&bytes).map_err(|e| {
                    failure(
                        ErrorKind::Failed,
                        format!("cannot render the result as JSON: {e}"),
                    )
                })?;
                Bytes::from(serde_json::to_vec(&json).map_err(|e| {
                    failure(
                        ErrorKind::Failed,
                        format!("cannot render the result as JSON: {e}"),
                    )
                })?)
            }
        };
        let key = quarry_command::output_object_key(&task.key, format.file_name())
            .map_err(|e| failure(ErrorKind::Rejected, e.to_string()))?;
        let url = format!("{}/{key}", output.trim_end_matches('/'));
        if clean {
            self.clean_output_dir(output, &task.key, &[format.file_name().to_string()])
                .await?;
        }
        let data_ref = self.put(&url, stored.clone()).await?;
        if let Err(e) = self.cache.insert(&data_ref, stored).await {
            tracing::debug!("could not cache the result {url}: {e}");
        }
        Ok(Value::Ref(data_ref))
    }
}

/// A shard as one local file for a program to read: the cached file
/// itself, or for a chunk (a byte range of a larger object) a file of its
/// own in the attempt's scratch space (which the caller removes).
pub(crate) fn local_file(shard: &Shard, scratch: &Path) -> Result<PathBuf, TaskError> {
    if shard.data_ref.range.is_none() {
        return Ok(shard.path.clone());
    }
    let bytes = shard.read().map_err(|e| {
        failure(
            ErrorKind::InputUnavailable,
            format!("cannot read input chunk: {e}"),
        )
    })?;
    let path = scratch.join("input.chunk");
    std::fs::create_dir_all(scratch)
        .and_then(|()| std::fs::write(&path, bytes))
        .map_err(|e| failure(ErrorKind::Failed, format!("cannot stage input chunk: {e}")))?;
    Ok(path)
}
