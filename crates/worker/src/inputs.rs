//! The worker's data plane: staging inputs through the shard cache, the
//! local directories command attempts run in, and writing large results to
//! the store.

use crate::command::Commands;
use crate::execute::failure;
use crate::registry::Shard;
use crate::runtime::{WorkerError, WorkerOptions};
use object_store::{ObjectStoreExt, PutPayload};
use quarry_cache::{CacheConfig, CacheError, ShardCache, ShardGuard};
use quarry_proto::{
    CacheEntry, DataRef, ErrorKind, JobSpec, Limits, Pin, TaskError, TaskSpec, TaskStats, Value,
};
use quarry_store::{StoreError, StoreResolver};
use std::collections::HashMap;

/// The shard cache plus the store resolver that fills it, and what
/// command attempts share (their directories and prepared commands).
pub(crate) struct Inputs {
    cache: ShardCache,
    store: StoreResolver,
    commands: Commands,
}

/// Inputs of one attempt, staged as local files. The guards keep them from
/// being evicted until the attempt is over.
pub(crate) struct Staged {
    pub(crate) inputs: Vec<Shard>,
    pub(crate) broadcast: HashMap<String, Shard>,
    pub(crate) args: Option<Vec<u8>>,
    _guards: Vec<ShardGuard>,
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
            ..CacheConfig::new(options.cache_size)
        };
        let cache = ShardCache::open_with(&options.cache_dir, config, store.clone())
            .await
            .map_err(|e| WorkerError::Cache(e.to_string()))?;
        Ok(Inputs {
            cache,
            store,
            commands: Commands::new(options.scratch_dir.clone()),
        })
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

    pub(crate) fn take_delta(&self) -> (Vec<CacheEntry>, Vec<String>) {
        self.cache.take_delta()
    }

    async fn fetch(
        &self,
        data_ref: &DataRef,
        stats: &mut TaskStats,
        guards: &mut Vec<ShardGuard>,
    ) -> Result<Shard, TaskError> {
        let cached = self
            .cache
            .get(data_ref)
            .await
            .map_err(|e| input_error(data_ref, e))?;
        if cached.from_cache {
            stats.cache_hits += 1;
            stats.bytes_from_cache += data_ref.read_len();
        } else {
            stats.cache_misses += 1;
        }
        stats.bytes_from_store += cached.bytes_from_store;
        guards.push(cached.guard);
        Ok(Shard {
            path: cached.path,
            data_ref: data_ref.clone(),
        })
    }

    /// Stages a task's inputs, the job's broadcast inputs and, for large
    /// arguments, the arguments, as local files from the cache.
    pub(crate) async fn stage(
        &self,
        task: &TaskSpec,
        job: &JobSpec,
        stats: &mut TaskStats,
    ) -> Result<Staged, TaskError> {
        let mut guards = Vec::new();
        let mut inputs = Vec::with_capacity(task.inputs.len());
        for data_ref in &task.inputs {
            inputs.push(self.fetch(data_ref, stats, &mut guards).await?);
        }
        let mut broadcast = HashMap::with_capacity(job.broadcast.len());
        for (name, data_ref) in &job.broadcast {
            let shard = self.fetch(data_ref, stats, &mut guards).await?;
            broadcast.insert(name.clone(), shard);
        }
        let args = match &task.args_ref {
            Some(data_ref) => {
                let shard = self.fetch(data_ref, stats, &mut guards).await?;
                Some(shard.read().map_err(|e| {
                    failure(
                        ErrorKind::InputUnavailable,
                        format!("cannot read the task's arguments: {e}"),
                    )
                })?)
            }
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
    pub(crate) async fn put(&self, url: &str, bytes: Vec<u8>) -> Result<DataRef, TaskError> {
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

    /// Turns a result into a [`Value`]: inline when small, else written
    /// under the job's output prefix and returned as a reference. The
    /// worker then caches its copy, so downstream tasks reading it here run
    /// from the cache.
    pub(crate) async fn result_value(
        &self,
        bytes: Vec<u8>,
        job: &JobSpec,
        task: &TaskSpec,
        limits: &Limits,
    ) -> Result<Value, TaskError> {
        if bytes.len() <= limits.max_inline_bytes {
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
        let key = quarry_command::output_object_key(&task.key, "_result.msgpack")
            .map_err(|e| failure(ErrorKind::Rejected, e.to_string()))?;
        let url = format!("{}/{key}", output.trim_end_matches('/'));
        let data_ref = self.put(&url, bytes).await?;
        if let Err(e) = self.cache.get(&data_ref).await {
            tracing::debug!("could not cache the result {url}: {e}");
        }
        Ok(Value::Ref(data_ref))
    }
}
