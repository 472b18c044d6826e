use crate::disk::{
    block_path, data_path, lock_dir, meta_path, punch_hole, reindex, remove_entry, remove_quietly,
    sha256_range, temp_path, write_json, BlockSidecar, Sidecar,
};
use crate::error::CacheError;
use crate::fetch::{fetch_range, write_bytes, OnBlock};
use crate::table::{
    Acquire, CacheTable, EntryId, FileDamage, Geometry, Need, OpId, Pinned, Removal,
};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use quarry_proto::{ByteRange, CacheEntry, DataRef};
use quarry_store::StoreResolver;
use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;
use tokio::sync::watch;

/// The default block size: 8 MiB.
pub const DEFAULT_BLOCK_SIZE: u64 = 8 * 1024 * 1024;

/// Tuning of a [`ShardCache`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    /// Bytes of cached blocks to keep. Blocks in use are never evicted, so
    /// the cache may exceed this while they are (see [`ShardCache`]).
    pub max_bytes: u64,
    /// Objects are cached in blocks of this many bytes (the last block of
    /// an object may be shorter); a reader of a byte range fetches only
    /// the blocks it touches.
    pub block_size: u64,
    /// A run of missing blocks larger than this is fetched one ranged GET
    /// per block, in parallel; a smaller run with one GET.
    pub parallel_threshold: u64,
    /// Ranged GETs of one run in flight at once.
    pub max_parallel_parts: usize,
    /// Hash every block on every hit, not only on its first hit after the
    /// cache was opened or its file was modified. Costs one read of the
    /// block per hit.
    pub verify_checksum_on_hit: bool,
}

impl CacheConfig {
    /// Defaults for everything but the size: 8 MiB blocks, parallel GETs
    /// for runs above 16 MiB, 4 at a time; checksums verified after
    /// restarts and after outside modifications.
    pub fn new(max_bytes: u64) -> Self {
        CacheConfig {
            max_bytes,
            block_size: DEFAULT_BLOCK_SIZE,
            parallel_threshold: 16 * 1024 * 1024,
            max_parallel_parts: 4,
            verify_checksum_on_hit: false,
        }
    }
}

/// A snapshot of how full the cache is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheUsage {
    /// Objects with cached blocks.
    pub entries: usize,
    /// Bytes of cached blocks.
    pub stored_bytes: u64,
    /// Objects currently in use (held by a [`ShardGuard`]).
    pub pinned_entries: usize,
    /// The configured budget.
    pub max_bytes: u64,
    /// Blocks evicted to make room since the cache was opened.
    pub evicted_blocks: u64,
    /// Bytes of blocks downloaded from the store since the cache was
    /// opened.
    pub downloaded_bytes: u64,
}

/// A cached object (or the part of it a reference means) handed to a
/// reader.
///
/// [`Shard::path`] is one file as long as the whole object; the bytes the
/// reference means, [`Shard::range`] (or all of them), are in it while the
/// guard lives. Other parts of the file may be holes that read as zeros:
/// read only the range.
#[derive(Debug)]
pub struct Shard {
    /// The local file holding the object at its offsets.
    pub path: PathBuf,
    /// The reference that was asked for.
    pub data_ref: DataRef,
    /// The part of the file the reference means; `None` is all of it.
    pub range: Option<ByteRange>,
    /// Whether this call found everything it needed without downloading
    /// (callers that joined another caller's download count as cached: the
    /// bytes were downloaded once and reported once).
    pub from_cache: bool,
    /// Bytes this call downloaded from the store.
    pub bytes_from_store: u64,
    /// Keeps the blocks from being evicted until dropped.
    pub guard: ShardGuard,
}

/// Pins cached blocks: while it lives, they are not evicted.
pub struct ShardGuard {
    inner: Arc<Inner>,
    entry: EntryId,
    blocks: Range<u64>,
}

impl fmt::Debug for ShardGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardGuard")
            .field("entry", &self.entry)
            .field("blocks", &self.blocks)
            .finish()
    }
}

impl Drop for ShardGuard {
    fn drop(&mut self) {
        let removals = self.inner.lock().table.unpin(
            self.entry,
            self.blocks.clone(),
            self.inner.config.max_bytes,
        );
        self.inner.carry_out(removals);
    }
}

/// A worker's local cache of objects, in fixed blocks keyed by
/// [`DataRef::object_key`] (URL plus ETag or version) and block number,
/// evicting the least recently used blocks when it holds more than
/// `max_bytes`.
///
/// - **Ranges**: [`ShardCache::get`] of a reference with a byte range
///   fetches only the blocks the range touches; of an edge block it needs
///   less than half of (the few bytes of a line running into the next
///   chunk), only those bytes. A whole-object reference fetches every
///   block (with one GET up to `parallel_threshold`).
/// - **Restarts**: entries are files plus sidecars in one directory (see
///   the crate docs); opening re-indexes them and deletes leftovers. Each
///   re-indexed block's SHA-256 is verified on its first hit.
/// - **Integrity**: every hit checks the data file's size and modification
///   time against what the cache last wrote. A file changed by anyone else
///   has its blocks hashed before they are used again; a damaged block is
///   fetched again, never used. With `verify_checksum_on_hit`, every hit
///   is hashed.
/// - **Pinning**: a [`Shard`]'s [`ShardGuard`] keeps its blocks. If every
///   block is pinned, the cache grows past `max_bytes` and shrinks back as
///   guards drop.
/// - **Single flight**: concurrent readers of one block share one
///   download, which runs on its own task and completes even if its caller
///   goes away.
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

/// What a block download's waiters learn when it ends.
type FlightOutcome = Option<Result<(), CacheError>>;

struct Inner {
    dir: PathBuf,
    config: CacheConfig,
    resolver: StoreResolver,
    state: Mutex<State>,
    /// Bumped each time a removal is carried out, for readers waiting on a
    /// block or entry that was being removed.
    removals_done: watch::Sender<u64>,
    temp_serial: AtomicU64,
    /// Held (locked) for as long as the cache is open.
    _dir_lock: std::fs::File,
}

/// The table plus the block downloads in flight, under one lock.
struct State {
    table: CacheTable,
    flights: HashMap<OpId, watch::Receiver<FlightOutcome>>,
}

/// Where the bytes of led blocks come from.
#[derive(Clone)]
enum Source {
    /// The store, with the reference's pin.
    Store,
    /// The whole object, already in memory.
    Bytes(Bytes),
}

/// What one reader does about the blocks it pinned.
struct Plan {
    leads: Vec<Flight>,
    joins: Vec<watch::Receiver<FlightOutcome>>,
    verify: Vec<(u64, String)>,
    fragments: Vec<Range<u64>>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn temp(&self, key: &str) -> PathBuf {
        temp_path(
            &self.dir,
            key,
            self.temp_serial.fetch_add(1, Ordering::Relaxed),
        )
    }

    /// Carries out removals the table decided on, outside the lock, and
    /// tells the table (and anyone waiting) when they are done. Removing a
    /// block can leave its entry empty, whose removal follows.
    fn carry_out(&self, mut removals: Vec<Removal>) {
        if removals.is_empty() {
            return;
        }
        while let Some(removal) = removals.pop() {
            match removal {
                Removal::Block {
                    entry,
                    key,
                    index,
                    range,
                } => {
                    remove_quietly(&block_path(&self.dir, &key, index));
                    punch_hole(&data_path(&self.dir, &key), range);
                    removals.extend(self.lock().table.block_removed(entry, index));
                }
                Removal::Entry { entry, key } => {
                    remove_entry(&self.dir, &key);
                    self.lock().table.entry_removed(entry);
                }
            }
        }
        self.removals_done.send_modify(|done| *done += 1);
    }

    /// One attempt of [`Inner::acquire`]: `None` while a removal is in the
    /// way.
    fn try_acquire(
        self: &Arc<Self>,
        key: &str,
        geometry: Geometry,
        range: Range<u64>,
        file: Option<(u64, SystemTime)>,
    ) -> Option<(Pinned, Plan)> {
        let mut state = self.lock();
        let acquired = state.table.acquire(
            key,
            geometry,
            range,
            file,
            self.config.verify_checksum_on_hit,
            self.config.max_bytes,
        );
        let Acquire::Pinned(pinned) = acquired else {
            return None;
        };
        let mut plan = Plan {
            leads: Vec::new(),
            joins: Vec::new(),
            verify: Vec::new(),
            fragments: Vec::new(),
        };
        for need in &pinned.needs {
            match need {
                Need::Cached { index, verify } => {
                    if *verify {
                        let sha = state.table.block_sha(pinned.entry, *index);
                        plan.verify.push((*index, sha.unwrap_or_default()));
                    }
                }
                Need::Join { op, .. } => {
                    if let Some(flight) = state.flights.get(op) {
                        plan.joins.push(flight.clone());
                    }
                }
                Need::Lead { index, op } => {
                    plan.leads.push(Flight::register(
                        self,
                        &mut state,
                        pinned.entry,
                        *index,
                        *op,
                    ));
                }
                Need::Fragment { range, .. } => plan.fragments.push(range.clone()),
            }
        }
        Some((pinned, plan))
    }

    /// Pins the blocks `range` of `object` touches, waiting out removals
    /// under way, and registers this reader's downloads.
    async fn acquire(
        self: &Arc<Self>,
        object: &DataRef,
        range: Range<u64>,
    ) -> (Pinned, Plan, ShardGuard) {
        let key = object.object_key();
        let path = data_path(&self.dir, &key);
        let geometry = Geometry {
            size: object.size,
            block_size: self.config.block_size.max(1),
        };
        loop {
            let file = file_state(&path);
            let mut removed = self.removals_done.subscribe();
            let Some((mut pinned, plan)) = self.try_acquire(&key, geometry, range.clone(), file)
            else {
                // The sender lives as long as the cache.
                let _ = removed.changed().await;
                continue;
            };
            let guard = ShardGuard {
                inner: Arc::clone(self),
                entry: pinned.entry,
                blocks: pinned.blocks.clone(),
            };
            match &pinned.damage {
                Some(FileDamage::Modified) => tracing::warn!(
                    object_key = %key,
                    file = %path.display(),
                    "a cache file was modified outside quarry; its blocks are checked before use"
                ),
                Some(FileDamage::Size { expected, actual }) => tracing::warn!(
                    object_key = %key,
                    file = %path.display(),
                    expected,
                    actual = ?actual,
                    "a cache file is missing or has the wrong size; its blocks are fetched again"
                ),
                None => {}
            }
            let removals = std::mem::take(&mut pinned.removals);
            self.carry_out(removals);
            return (pinned, plan, guard);
        }
    }

    /// Hashes blocks that must be verified; a damaged one is fetched again
    /// (the reader leads its download).
    async fn verify(
        self: &Arc<Self>,
        key: &str,
        pinned: &Pinned,
        plan: &mut Plan,
    ) -> Result<(), CacheError> {
        let path = data_path(&self.dir, key);
        for (index, expected) in std::mem::take(&mut plan.verify) {
            let range = pinned.geometry.block_range(index);
            let file = path.clone();
            let hashed = tokio::task::spawn_blocking(move || sha256_range(&file, range))
                .await
                .map_err(|_| CacheError::Interrupted {
                    object_key: key.to_string(),
                })?;
            if matches!(&hashed, Ok(Some(sha)) if *sha == expected) {
                self.lock().table.verified(pinned.entry, index);
                continue;
            }
            tracing::warn!(
                object_key = %key,
                block = index,
                file = %path.display(),
                "a cached block is damaged (checksum mismatch); fetching it again"
            );
            plan.leads.extend(self.refetch(pinned.entry, index));
        }
        Ok(())
    }

    /// Makes a damaged block this reader's to fetch again.
    fn refetch(self: &Arc<Self>, entry: EntryId, index: u64) -> Option<Flight> {
        let mut state = self.lock();
        let op = state.table.refetch(entry, index)?;
        Some(Flight::register(self, &mut state, entry, index, op))
    }

    /// Runs a write into an entry's data file, telling the table it is
    /// under way (so that the file's new modification time is expected).
    async fn writing<T>(
        &self,
        entry: EntryId,
        path: &Path,
        write: impl std::future::Future<Output = T>,
    ) -> T {
        self.lock().table.begin_write(entry);
        let outcome = write.await;
        let modified = file_state(path).map(|(_, modified)| modified);
        let removals = self.lock().table.end_write(entry, modified);
        self.carry_out(removals);
        outcome
    }

    /// Writes the led blocks (grouped into runs of consecutive blocks) from
    /// `source`, completing each block's flight as its bytes land; returns
    /// the bytes downloaded.
    async fn download(
        self: Arc<Self>,
        object: DataRef,
        geometry: Geometry,
        entry: EntryId,
        mut leads: Vec<Flight>,
        source: Source,
    ) -> Result<u64, CacheError> {
        let key = object.object_key();
        let path = data_path(&self.dir, &key);
        leads.sort_by_key(|flight| flight.index);
        let mut runs: Vec<Vec<Flight>> = Vec::new();
        for flight in leads {
            match runs.last_mut() {
                Some(run) if run.last().is_some_and(|f| f.index + 1 == flight.index) => {
                    run.push(flight)
                }
                _ => runs.push(vec![flight]),
            }
        }
        let mut downloaded = 0;
        let mut first_error = None;
        for run in runs {
            let start = geometry.block_range(run[0].index).start;
            let end = geometry.block_range(run[run.len() - 1].index).end;
            let parallel = matches!(source, Source::Store)
                && end - start > self.config.parallel_threshold
                && run.len() > 1;
            let outcome = if parallel {
                let parts = futures::stream::iter(run.into_iter().map(|flight| {
                    let (inner, object, path, source) =
                        (Arc::clone(&self), &object, &path, source.clone());
                    async move {
                        inner
                            .write_run(object, geometry, entry, path, vec![flight], source)
                            .await
                    }
                }))
                .buffer_unordered(self.config.max_parallel_parts.max(1));
                parts
                    .try_fold(0u64, |total, part| futures::future::ready(Ok(total + part)))
                    .await
            } else {
                self.write_run(&object, geometry, entry, &path, run, source.clone())
                    .await
            };
            match outcome {
                Ok(bytes) => downloaded += bytes,
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(downloaded),
        }
    }

    /// Writes one run of consecutive led blocks. Blocks of the run that did
    /// not complete fail their flights with the error.
    async fn write_run(
        &self,
        object: &DataRef,
        geometry: Geometry,
        entry: EntryId,
        path: &Path,
        run: Vec<Flight>,
        source: Source,
    ) -> Result<u64, CacheError> {
        let key = object.object_key();
        let range = geometry.block_range(run[0].index).start
            ..geometry.block_range(run[run.len() - 1].index).end;
        let mut flights: HashMap<u64, Flight> = run.into_iter().map(|f| (f.index, f)).collect();
        let mut on_block = |index: u64, sha256: String| -> Result<(), CacheError> {
            let Some(mut flight) = flights.remove(&index) else {
                return Ok(());
            };
            let meta = meta_path(&self.dir, &key);
            if !meta.exists() {
                write_json(self.temp(&key), &meta, &Sidecar::new(&key, geometry))?;
            }
            write_json(
                self.temp(&key),
                &block_path(&self.dir, &key, index),
                &BlockSidecar {
                    sha256: sha256.clone(),
                },
            )?;
            let mut state = self.lock();
            let removals =
                state
                    .table
                    .fetched(entry, index, flight.op, sha256, self.config.max_bytes);
            flight.settle(&mut state);
            drop(state);
            flight.finish(Ok(()));
            self.carry_out(removals);
            Ok(())
        };
        let on_block: OnBlock<'_> = &mut on_block;
        let written = self
            .writing(entry, path, async {
                match &source {
                    Source::Store => {
                        fetch_range(&self.resolver, object, geometry, path, range, on_block).await
                    }
                    Source::Bytes(bytes) => {
                        write_bytes(bytes.clone(), geometry, path, range, on_block).await
                    }
                }
            })
            .await;
        // Whatever did not complete fails, and its waiters learn why.
        if !flights.is_empty() {
            let error = match &written {
                Err(error) => error.clone(),
                Ok(_) => CacheError::Interrupted {
                    object_key: key.clone(),
                },
            };
            for (_, mut flight) in flights.drain() {
                flight.finish(Err(error.clone()));
            }
        }
        let written = written?;
        Ok(match source {
            Source::Store => written,
            Source::Bytes(_) => 0,
        })
    }

    /// Fetches the fragments a reader needs into the data file, uncached;
    /// returns the bytes downloaded.
    async fn fragments(
        &self,
        object: &DataRef,
        geometry: Geometry,
        entry: EntryId,
        fragments: Vec<Range<u64>>,
    ) -> Result<u64, CacheError> {
        let path = data_path(&self.dir, &object.object_key());
        let mut downloaded = 0;
        for range in fragments {
            let mut ignore = |_: u64, _: String| Ok(());
            downloaded += self
                .writing(
                    entry,
                    &path,
                    fetch_range(&self.resolver, object, geometry, &path, range, &mut ignore),
                )
                .await?;
        }
        Ok(downloaded)
    }

    /// Makes sure the data file exists (an empty read still hands out a
    /// path).
    async fn touch_file(&self, entry: EntryId, path: &Path, size: u64) -> Result<(), CacheError> {
        if file_state(path).is_some_and(|(len, _)| len == size) {
            return Ok(());
        }
        self.writing(entry, path, async {
            let file = std::fs::File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(path)
                .map_err(|e| CacheError::io(path, e))?;
            file.set_len(size).map_err(|e| CacheError::io(path, e))
        })
        .await
    }
}

/// The data file's size and modification time, or `None` if it is missing.
fn file_state(path: &Path) -> Option<(u64, SystemTime)> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((
        metadata.len(),
        metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH),
    ))
}

/// One block download in flight: tells the table and the waiters how it
/// ended exactly once, even if its task dies.
struct Flight {
    inner: Arc<Inner>,
    entry: EntryId,
    index: u64,
    op: OpId,
    settled: bool,
    sender: Option<watch::Sender<FlightOutcome>>,
}

impl Flight {
    /// A flight for a block the table just marked as fetched by `op`,
    /// registered for joiners under the same lock.
    fn register(
        inner: &Arc<Inner>,
        state: &mut State,
        entry: EntryId,
        index: u64,
        op: OpId,
    ) -> Flight {
        let (sender, receiver) = watch::channel(None);
        state.flights.insert(op, receiver);
        Flight {
            inner: Arc::clone(inner),
            entry,
            index,
            op,
            settled: false,
            sender: Some(sender),
        }
    }

    /// Forgets the flight (the table already knows how it ended).
    fn settle(&mut self, state: &mut State) {
        if !self.settled {
            self.settled = true;
            state.flights.remove(&self.op);
        }
    }

    fn finish(&mut self, outcome: Result<(), CacheError>) {
        if !self.settled {
            let inner = Arc::clone(&self.inner);
            let mut state = inner.lock();
            let removals = state.table.fetch_failed(self.entry, self.index, self.op);
            self.settle(&mut state);
            drop(state);
            inner.carry_out(removals);
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
                object_key: format!("block {} of cache entry {}", self.index, self.entry),
            };
            self.finish(Err(interrupted));
        }
    }
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
    /// re-indexes complete blocks (least recently modified entries first in
    /// LRU order) and evicts down to `config.max_bytes`. Re-indexed blocks
    /// are reported by [`ShardCache::inventory`], not as a delta.
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
        let mut empty = Vec::new();
        for entry in indexed {
            if entry.blocks.is_empty() {
                empty.push(entry.object_key);
                continue;
            }
            table.restore(
                &entry.object_key,
                entry.geometry,
                entry.blocks,
                entry.modified,
            );
        }
        let removals = table.evict_to_fit(config.max_bytes);
        drop(table.take_delta());
        let (entries, bytes, _) = table.usage();
        tracing::info!(
            dir = %dir.display(),
            entries,
            bytes,
            "opened the shard cache"
        );
        for key in empty {
            remove_entry(&dir, &key);
        }
        let inner = Arc::new(Inner {
            dir,
            config,
            resolver,
            state: Mutex::new(State {
                table,
                flights: HashMap::new(),
            }),
            removals_done: watch::channel(0).0,
            temp_serial: AtomicU64::new(0),
            _dir_lock: dir_lock,
        });
        inner.carry_out(removals);
        Ok(ShardCache { inner })
    }

    /// The cache directory (absolute).
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &CacheConfig {
        &self.inner.config
    }

    /// Returns the bytes `data_ref` means (its range, or the whole object)
    /// in a local file, downloading the blocks that are missing (see
    /// [`ShardCache`] for ranges, single flight and integrity).
    ///
    /// Store errors, including [`quarry_store::StoreError::Changed`] when
    /// the object was modified since it was pinned, come back as
    /// [`CacheError::Store`]; nothing is cached then.
    pub async fn get(&self, data_ref: &DataRef) -> Result<Shard, CacheError> {
        self.get_from(data_ref, Source::Store).await
    }

    /// Caches `bytes` as the content of the object `data_ref` pins (for
    /// example a result this worker just uploaded), with no download.
    /// Blocks already cached are left as they are.
    pub async fn insert(&self, data_ref: &DataRef, bytes: Bytes) -> Result<(), CacheError> {
        if bytes.len() as u64 != data_ref.size {
            return Err(CacheError::Incomplete {
                url: data_ref.url.clone(),
                expected: data_ref.size,
                actual: bytes.len() as u64,
            });
        }
        let whole = DataRef {
            range: None,
            ..data_ref.clone()
        };
        self.get_from(&whole, Source::Bytes(bytes)).await.map(drop)
    }

    async fn get_from(&self, data_ref: &DataRef, source: Source) -> Result<Shard, CacheError> {
        let key = data_ref.object_key();
        let size = data_ref.size;
        let range = data_ref
            .range
            .map_or(0..size, |r| r.start.min(size)..r.end.min(size));
        let object = DataRef {
            range: None,
            ..data_ref.clone()
        };
        if range.is_empty() && matches!(source, Source::Store) {
            // Nothing to read, but a changed object must still fail.
            self.inner.resolver.get_pinned_range(&object, 0..0).await?;
        }
        let (pinned, mut plan, guard) = self.inner.acquire(&object, range.clone()).await;
        let path = data_path(&self.inner.dir, &key);
        if range.is_empty() {
            self.inner.touch_file(pinned.entry, &path, size).await?;
        }
        self.inner.verify(&key, &pinned, &mut plan).await?;
        let from_cache = plan.leads.is_empty() && plan.fragments.is_empty();
        let mut bytes_from_store = 0;
        if !plan.leads.is_empty() {
            // On a task of its own, so that it completes for the joiners
            // even if this caller goes away.
            let task = tokio::spawn(Arc::clone(&self.inner).download(
                object.clone(),
                pinned.geometry,
                pinned.entry,
                std::mem::take(&mut plan.leads),
                source,
            ));
            bytes_from_store += task.await.map_err(|_| CacheError::Interrupted {
                object_key: key.clone(),
            })??;
        }
        for mut flight in plan.joins {
            if let Ok(outcome) = flight.wait_for(Option::is_some).await {
                if let Some(Err(error)) = &*outcome {
                    return Err(error.clone());
                }
            }
        }
        bytes_from_store += self
            .inner
            .fragments(&object, pinned.geometry, pinned.entry, plan.fragments)
            .await?;
        Ok(Shard {
            path,
            data_ref: data_ref.clone(),
            range: data_ref.range,
            from_cache,
            bytes_from_store,
            guard,
        })
    }

    /// Whether any block of the object with this [`DataRef::object_key`]
    /// is cached.
    pub fn contains(&self, object_key: &str) -> bool {
        self.inner.lock().table.contains(object_key)
    }

    /// Every object with cached blocks and their byte ranges, for the
    /// worker's `Hello`.
    pub fn inventory(&self) -> Vec<CacheEntry> {
        self.inner.lock().table.inventory()
    }

    /// Byte ranges added and evicted since the previous call (or since the
    /// cache was opened). A block is in at most one of the two lists: added
    /// then evicted shows as evicted, evicted then added as added, so they
    /// can be applied in either order.
    pub fn take_delta(&self) -> (Vec<CacheEntry>, Vec<CacheEntry>) {
        self.inner.lock().table.take_delta()
    }

    /// How full the cache is.
    pub fn usage(&self) -> CacheUsage {
        let state = self.inner.lock();
        let (entries, stored_bytes, pinned_entries) = state.table.usage();
        let (evicted_blocks, downloaded_bytes) = state.table.counters();
        CacheUsage {
            entries,
            stored_bytes,
            pinned_entries,
            max_bytes: self.inner.config.max_bytes,
            evicted_blocks,
            downloaded_bytes,
        }
    }
}
