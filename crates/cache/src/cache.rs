use crate::disk::{
    data_path, lock_dir, meta_path, reindex, remove_entry, sha256_file, temp_path, write_sidecar,
    Sidecar, TempFile,
};
use crate::error::CacheError;
use crate::fetch::{fetch, Fetched};
use crate::table::{CacheTable, Removal};
use quarry_proto::{ByteRange, CacheEntry, DataRef};
use quarry_store::StoreResolver;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::watch;

/// Tuning of a [`ShardCache`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    /// Bytes of cached objects to keep. Entries in use are never evicted, so
    /// the cache may exceed this while they are (see [`ShardCache`]).
    pub max_bytes: u64,
    /// Objects larger than this are downloaded with parallel ranged GETs.
    pub parallel_threshold: u64,
    /// Size of each ranged GET of a parallel download.
    pub part_size: u64,
    /// Ranged GETs of one object in flight at once.
    pub max_parallel_parts: usize,
    /// Re-hash an entry on every hit, not only on its first hit after the
    /// cache was opened. Costs one read of the entry per hit.
    pub verify_checksum_on_hit: bool,
}

impl CacheConfig {
    /// Defaults for everything but the size: parallel downloads above
    /// 16 MiB in 8 MiB parts, 4 at a time; checksums verified after restarts.
    pub fn new(max_bytes: u64) -> Self {
        CacheConfig {
            max_bytes,
            parallel_threshold: 16 * 1024 * 1024,
            part_size: 8 * 1024 * 1024,
            max_parallel_parts: 4,
            verify_checksum_on_hit: false,
        }
    }
}

/// A snapshot of how full the cache is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheUsage {
    /// Cached objects.
    pub entries: usize,
    /// Their total size.
    pub stored_bytes: u64,
    /// Objects currently in use (held by a [`ShardGuard`]).
    pub pinned_entries: usize,
    /// The configured budget.
    pub max_bytes: u64,
}

/// A cached object handed to a reader.
///
/// The cache always holds whole objects; when [`Shard::data_ref`] has a byte
/// range, [`Shard::path`] is still the whole object and [`Shard::range`]
/// says where to seek.
#[derive(Debug)]
pub struct Shard {
    /// The local file holding the whole object. Read it while `guard` lives.
    pub path: PathBuf,
    /// The reference that was asked for.
    pub data_ref: DataRef,
    /// The part of the file the reference means; `None` is all of it.
    pub range: Option<ByteRange>,
    /// Whether this call found the object without downloading it (callers
    /// that joined another caller's download count as cached: the bytes
    /// were downloaded once and reported once).
    pub from_cache: bool,
    /// Bytes this call downloaded from the store.
    pub bytes_from_store: u64,
    /// Keeps the entry from being evicted until dropped.
    pub guard: ShardGuard,
}

/// Pins a cache entry: while it lives, the entry is not evicted.
pub struct ShardGuard {
    inner: Arc<Inner>,
    object_key: String,
    id: u64,
}

impl fmt::Debug for ShardGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardGuard")
            .field("object_key", &self.object_key)
            .finish()
    }
}

impl Drop for ShardGuard {
    fn drop(&mut self) {
        let removals =
            self.inner
                .lock()
                .table
                .unpin(&self.object_key, self.id, self.inner.config.max_bytes);
        self.inner.remove_files(removals);
    }
}

/// A worker's local cache of whole objects, keyed by
/// [`DataRef::object_key`] (URL plus ETag or version), evicting the least
/// recently used entries when it holds more than `max_bytes`.
///
/// - **Restarts**: entries are files plus a sidecar in one directory (see
///   the crate docs); opening re-indexes them and deletes leftovers. Each
///   re-indexed entry's SHA-256 is verified on its first hit.
/// - **Pinning**: a [`Shard`]'s [`ShardGuard`] keeps its entry. If every
///   entry is pinned, the cache grows past `max_bytes` and shrinks back as
///   guards drop.
/// - **Single flight**: concurrent `get`s of one key share one download,
///   which runs on its own task and completes even if its caller goes away.
/// - **Integrity**: downloads stream into a temporary file, are checked for
///   size, hashed, then renamed into place; a hit whose file has the wrong
///   size (or, when verified, the wrong checksum) is dropped and fetched
///   again.
///
/// Cloning is cheap and shares the cache.
#[derive(Clone)]
pub struct ShardCache {
    inner: Arc<Inner>,
}

impl fmt::Debug for ShardCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardCache")
            .field("dir", &self.inner.dir)
            .field("usage", &self.usage())
            .finish()
    }
}

/// What a download's waiters learn when it ends.
type FlightOutcome = Option<Result<(), CacheError>>;

struct Inner {
    dir: PathBuf,
    config: CacheConfig,
    resolver: StoreResolver,
    state: Mutex<State>,
    /// Bumped each time a removal's files are gone, for callers waiting to
    /// download a key that was being removed.
    removals_done: watch::Sender<u64>,
    temp_serial: AtomicU64,
    /// Held (locked) for as long as the cache is open.
    _dir_lock: std::fs::File,
}

/// The table plus the downloads in flight, under one lock.
#[derive(Default)]
struct State {
    table: CacheTable,
    inflight: HashMap<String, watch::Receiver<FlightOutcome>>,
}

/// What `get` does next for a key.
enum Step {
    /// The entry is cached (and now pinned).
    Hit {
        guard: ShardGuard,
        size: u64,
        sha256: String,
        verify_checksum: bool,
    },
    /// Another call is downloading it.
    Wait(watch::Receiver<FlightOutcome>),
    /// Its files are being deleted; try again once they are.
    AwaitRemoval(watch::Receiver<u64>),
    /// This call downloads it.
    Lead(watch::Sender<FlightOutcome>),
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Deletes the files of removals the table decided on, outside the
    /// lock, then tells the table (and anyone waiting) that they are gone.
    fn remove_files(&self, removals: Vec<Removal>) {
        if removals.is_empty() {
            return;
        }
        for removal in &removals {
            remove_entry(&self.dir, &removal.key);
        }
        let mut state = self.lock();
        for removal in &removals {
            state.table.removed(&removal.key);
        }
        drop(state);
        self.removals_done.send_modify(|done| *done += 1);
    }

    fn begin(self: &Arc<Self>, key: &str, size: u64) -> Step {
        let mut state = self.lock();
        if let Some(hit) = state.table.pin(key) {
            return Step::Hit {
                guard: ShardGuard {
                    inner: Arc::clone(self),
                    object_key: key.to_string(),
                    id: hit.id,
                },
                size: hit.size,
                sha256: hit.sha256,
                verify_checksum: !hit.verified || self.config.verify_checksum_on_hit,
            };
        }
        if let Some(flight) = state.inflight.get(key) {
            return Step::Wait(flight.clone());
        }
        if state.table.is_removing(key) {
            return Step::AwaitRemoval(self.removals_done.subscribe());
        }
        let (sender, receiver) = watch::channel(None);
        state.inflight.insert(key.to_string(), receiver);
        let removals = state.table.reserve(size, self.config.max_bytes);
        drop(state);
        self.remove_files(removals);
        Step::Lead(sender)
    }

    /// Checks a hit's file; `Err` says why it cannot be used.
    async fn check_hit(
        &self,
        key: &str,
        size: u64,
        sha256: &str,
        verify_checksum: bool,
    ) -> Result<(), String> {
        let path = data_path(&self.dir, key);
        let on_disk = std::fs::metadata(&path)
            .map_err(|e| format!("unreadable: {e}"))?
            .len();
        if on_disk != size {
            return Err(format!("has {on_disk} bytes instead of {size}"));
        }
        if verify_checksum {
            let hashed = tokio::task::spawn_blocking(move || sha256_file(&path))
                .await
                .map_err(|e| format!("checksum task failed: {e}"))?
                .map_err(|e| format!("unreadable: {e}"))?;
            if hashed != sha256 {
                return Err("checksum mismatch".to_string());
            }
        }
        Ok(())
    }

    fn mark_verified(&self, key: &str, id: u64) {
        self.lock().table.mark_verified(key, id);
    }

    fn discard(&self, key: &str, id: u64) {
        let removal = self.lock().table.discard(key, id);
        self.remove_files(removal.into_iter().collect());
    }

    /// Moves a finished download into place and indexes it, pinned once for
    /// the caller that led the download. No removal of `key` can be under
    /// way: a download only starts once the key's files are gone, and the
    /// key is not indexed (so not evictable) until it is committed here.
    fn commit(
        self: &Arc<Self>,
        key: &str,
        fetched: Fetched,
        sidecar: TempFile,
        flight: &mut Flight,
    ) -> Result<ShardGuard, CacheError> {
        let data = data_path(&self.dir, key);
        let moved = std::fs::rename(fetched.temp.path(), &data)
            .map_err(|e| CacheError::io(&data, e))
            .and_then(|()| {
                let meta = meta_path(&self.dir, key);
                std::fs::rename(sidecar.path(), &meta).map_err(|e| {
                    remove_entry(&self.dir, key);
                    CacheError::io(&meta, e)
                })
            });
        let mut state = self.lock();
        flight.settle(&mut state);
        moved?;
        fetched.temp.persisted();
        sidecar.persisted();
        let size = fetched.bytes_from_store;
        let (id, removals) =
            state
                .table
                .insert(key, size, fetched.sha256, true, 1, self.config.max_bytes);
        drop(state);
        self.remove_files(removals);
        Ok(ShardGuard {
            inner: Arc::clone(self),
            object_key: key.to_string(),
            id,
        })
    }

    fn temp_path(&self, key: &str) -> PathBuf {
        temp_path(
            &self.dir,
            key,
            self.temp_serial.fetch_add(1, Ordering::Relaxed),
        )
    }
}

/// One download in flight: releases its reservation and in-flight marker
/// exactly once, and tells waiters how it ended even if the task dies.
struct Flight {
    inner: Arc<Inner>,
    key: String,
    reserved: u64,
    settled: bool,
    sender: Option<watch::Sender<FlightOutcome>>,
}

impl Flight {
    fn settle(&mut self, state: &mut State) {
        if !self.settled {
            self.settled = true;
            state.table.release(self.reserved);
            state.inflight.remove(&self.key);
        }
    }

    fn finish(&mut self, outcome: Result<(), CacheError>) {
        if !self.settled {
            let inner = Arc::clone(&self.inner);
            self.settle(&mut inner.lock());
        }
        if let Some(sender) = self.sender.take() {
            sender.send_replace(Some(outcome));
        }
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        if self.sender.is_some() || !self.settled {
            let interrupted = CacheError::Interrupted {
                object_key: self.key.clone(),
            };
            self.finish(Err(interrupted));
        }
    }
}

/// The download task behind a [`Step::Lead`].
async fn download(
    inner: Arc<Inner>,
    object: DataRef,
    key: String,
    sender: watch::Sender<FlightOutcome>,
) -> Result<(ShardGuard, u64), CacheError> {
    let mut flight = Flight {
        inner: Arc::clone(&inner),
        key: key.clone(),
        reserved: object.size,
        settled: false,
        sender: Some(sender),
    };
    let outcome = async {
        let temp = TempFile::new(inner.temp_path(&key));
        let fetched = fetch(&inner.resolver, &inner.config, &object, temp).await?;
        let bytes = fetched.bytes_from_store;
        let sidecar = write_sidecar(
            inner.temp_path(&key),
            &Sidecar::new(&key, bytes, fetched.sha256.clone()),
        )?;
        let guard = inner.commit(&key, fetched, sidecar, &mut flight)?;
        tracing::debug!(object_key = %key, bytes, "cached a shard");
        Ok((guard, bytes))
    }
    .await;
    flight.finish(outcome.as_ref().map(|_| ()).map_err(CacheError::clone));
    outcome
}

impl ShardCache {
    /// Opens (creating if needed) the cache in `dir` with default tuning
    /// ([`CacheConfig::new`]).
    pub async fn open(
        dir: impl Into<PathBuf>,
        max_bytes: u64,
        resolver: StoreResolver,
    ) -> Result<ShardCache, CacheError> {
        Self::open_with(dir, CacheConfig::new(max_bytes), resolver).await
    }

    /// Opens (creating if needed) the cache in `dir`: locks the directory
    /// against other processes, deletes temporary and incomplete files,
    /// re-indexes complete entries (least recently modified first in LRU
    /// order) and evicts down to `config.max_bytes`. Re-indexed entries are
    /// reported by [`ShardCache::inventory`], not as a delta.
    pub async fn open_with(
        dir: impl Into<PathBuf>,
        config: CacheConfig,
        resolver: StoreResolver,
    ) -> Result<ShardCache, CacheError> {
        let dir = dir.into();
        let dir = std::path::absolute(&dir).map_err(|e| CacheError::io(&dir, e))?;
        let scan_dir = dir.clone();
        let (dir_lock, mut indexed) = tokio::task::spawn_blocking(move || {
            let dir_lock = lock_dir(&scan_dir)?;
            let indexed = reindex(&scan_dir)?;
            Ok::<_, CacheError>((dir_lock, indexed))
        })
        .await
        .map_err(|e| CacheError::io(&dir, std::io::Error::other(e)))??;

        indexed.sort_by_key(|entry| entry.modified);
        let mut table = CacheTable::default();
        let mut removals = Vec::new();
        for entry in indexed {
            let Sidecar {
                object_key,
                size,
                sha256,
                ..
            } = entry.sidecar;
            // Evicting while indexing never drops more than needed: the
            // least recently modified entries come first.
            let (_, evicted) = table.insert(&object_key, size, sha256, false, 0, u64::MAX);
            removals.extend(evicted);
        }
        removals.extend(table.evict_to_fit(config.max_bytes));
        drop(table.take_delta());
        let (entries, bytes, _) = table.usage();
        tracing::info!(
            dir = %dir.display(),
            entries,
            bytes,
            "opened the shard cache"
        );
        let inner = Arc::new(Inner {
            dir,
            config,
            resolver,
            state: Mutex::new(State {
                table,
                inflight: HashMap::new(),
            }),
            removals_done: watch::channel(0).0,
            temp_serial: AtomicU64::new(0),
            _dir_lock: dir_lock,
        });
        inner.remove_files(removals);
        Ok(ShardCache { inner })
    }

    /// The cache directory (absolute).
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Returns the object `data_ref` pins as a local file, downloading it
    /// if needed (see [`ShardCache`] for single flight and integrity). A
    /// byte range in `data_ref` does not change the key: the whole object
    /// is cached and the range is passed on in [`Shard::range`].
    ///
    /// Store errors, including [`quarry_store::StoreError::Changed`] when
    /// the object was modified since it was pinned, come back as
    /// [`CacheError::Store`]; nothing is cached then.
    pub async fn get(&self, data_ref: &DataRef) -> Result<Shard, CacheError> {
        let key = data_ref.object_key();
        let object = DataRef {
            range: None,
            ..data_ref.clone()
        };
        loop {
            match self.inner.begin(&key, object.size) {
                Step::Hit {
                    guard,
                    size,
                    sha256,
                    verify_checksum,
                } => match self
                    .inner
                    .check_hit(&key, size, &sha256, verify_checksum)
                    .await
                {
                    Ok(()) => {
                        if verify_checksum {
                            self.inner.mark_verified(&key, guard.id);
                        }
                        return Ok(self.shard(data_ref, &key, true, 0, guard));
                    }
                    Err(reason) => {
                        tracing::warn!(object_key = %key, %reason, "dropping a damaged cache entry");
                        self.inner.discard(&key, guard.id);
                    }
                },
                Step::AwaitRemoval(mut done) => {
                    // The sender lives as long as the cache.
                    let _ = done.changed().await;
                }
                Step::Wait(mut flight) => {
                    if let Ok(outcome) = flight.wait_for(Option::is_some).await {
                        if let Some(Err(error)) = &*outcome {
                            return Err(error.clone());
                        }
                    }
                }
                Step::Lead(sender) => {
                    let task = tokio::spawn(download(
                        Arc::clone(&self.inner),
                        object.clone(),
                        key.clone(),
                        sender,
                    ));
                    let (guard, bytes) = task.await.map_err(|_| CacheError::Interrupted {
                        object_key: key.clone(),
                    })??;
                    return Ok(self.shard(data_ref, &key, false, bytes, guard));
                }
            }
        }
    }

    fn shard(
        &self,
        data_ref: &DataRef,
        key: &str,
        from_cache: bool,
        bytes_from_store: u64,
        guard: ShardGuard,
    ) -> Shard {
        Shard {
            path: data_path(&self.inner.dir, key),
            data_ref: data_ref.clone(),
            range: data_ref.range,
            from_cache,
            bytes_from_store,
            guard,
        }
    }

    /// Whether the object with this [`DataRef::object_key`] is cached.
    pub fn contains(&self, object_key: &str) -> bool {
        self.inner.lock().table.contains(object_key)
    }

    /// Every cached object, for the worker's `Hello`.
    pub fn inventory(&self) -> Vec<CacheEntry> {
        self.inner
            .lock()
            .table
            .inventory()
            .map(|(key, size)| CacheEntry {
                object_key: key.to_string(),
                size,
            })
            .collect()
    }

    /// Objects added and object keys evicted since the previous call (or
    /// since the cache was opened). The two lists never share a key: a key
    /// added then evicted shows as evicted, evicted then added as added, so
    /// they can be applied in either order.
    pub fn take_delta(&self) -> (Vec<CacheEntry>, Vec<String>) {
        let (added, evicted) = self.inner.lock().table.take_delta();
        let added = added
            .into_iter()
            .map(|(object_key, size)| CacheEntry { object_key, size })
            .collect();
        (added, evicted.into_iter().collect())
    }

    /// How full the cache is.
    pub fn usage(&self) -> CacheUsage {
        let (entries, stored_bytes, pinned_entries) = self.inner.lock().table.usage();
        CacheUsage {
            entries,
            stored_bytes,
            pinned_entries,
            max_bytes: self.inner.config.max_bytes,
        }
    }
}
