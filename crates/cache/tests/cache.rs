//! Behaviour of the shard cache against in-memory and local-file stores.

use futures::TryStreamExt;
use quarry_cache::{CacheConfig, CacheError, ShardCache};
use quarry_proto::{ByteRange, DataRef};
use quarry_store::object_store::path::Path;
use quarry_store::object_store::ObjectStoreExt;
use quarry_store::{
    memory_store, CountingStore, FaultStore, StoreConfig, StoreCounters, StoreError, StoreResolver,
};
use std::sync::Arc;

fn counted_resolver() -> (StoreResolver, Arc<StoreCounters>) {
    let counters = Arc::new(StoreCounters::default());
    let shared = Arc::clone(&counters);
    let resolver = StoreResolver::new(StoreConfig::default()).with_layer(move |store| {
        Arc::new(CountingStore::with_counters(store, Arc::clone(&shared)))
    });
    (resolver, counters)
}

/// Stores `content` at `memory://{store}/{key}` and returns the pinned
/// reference, as listing at submit time would.
async fn seed(resolver: &StoreResolver, store: &str, key: &str, content: &[u8]) -> DataRef {
    memory_store(store)
        .put(&Path::parse(key).unwrap(), content.to_vec().into())
        .await
        .unwrap();
    pinned(resolver, &format!("memory://{store}/{key}")).await
}

async fn pinned(resolver: &StoreResolver, url: &str) -> DataRef {
    let refs: Vec<DataRef> = resolver.list_refs(url).try_collect().await.unwrap();
    assert_eq!(refs.len(), 1, "{url}");
    refs.into_iter().next().unwrap()
}

fn gets(counters: &StoreCounters) -> u64 {
    counters.snapshot().get_requests
}

fn bytes_read(counters: &StoreCounters) -> u64 {
    counters.snapshot().bytes_read
}

/// A configuration with small blocks, so that tests see several.
fn blocks_of(block_size: u64) -> CacheConfig {
    CacheConfig {
        block_size,
        ..CacheConfig::new(1 << 30)
    }
}

fn ranged(r: &DataRef, start: u64, end: u64) -> DataRef {
    DataRef {
        range: Some(ByteRange { start, end }),
        ..r.clone()
    }
}

/// The bytes a shard means, read as a task would.
fn read_shard(shard: &quarry_cache::Shard) -> Vec<u8> {
    let data = std::fs::read(&shard.path).unwrap();
    match shard.range {
        Some(r) => data[r.start as usize..r.end as usize].to_vec(),
        None => data,
    }
}

fn temp_files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".tmp"))
        .collect()
}

#[tokio::test]
async fn miss_then_hit_reports_stats_and_serves_the_content() {
    let dir = tempfile::tempdir().unwrap();
    let (resolver, counters) = counted_resolver();
    let r = seed(&resolver, "cache-basic", "data/a.txt", b"hello shard").await;
    let cache = ShardCache::open(dir.path(), 1 << 20, resolver)
        .await
        .unwrap();

    let first = cache.get(&r).await.unwrap();
    assert!(!first.from_cache);
    assert_eq!(first.bytes_from_store, 11);
    assert_eq!(std::fs::read(&first.path).unwrap(), b"hello shard");
    assert!(first.path.starts_with(cache.dir()));
    drop(first);

    let second = cache.get(&r).await.unwrap();
    assert!(second.from_cache);
    assert_eq!(second.bytes_from_store, 0);
    assert_eq!(std::fs::read(&second.path).unwrap(), b"hello shard");
    assert_eq!(gets(&counters), 1);
    assert_eq!(cache.usage().stored_bytes, 11);
    assert!(cache.contains(&r.object_key()));
}

#[tokio::test]
async fn concurrent_gets_share_one_download() {
    let dir = tempfile::tempdir().unwrap();
    let (resolver, counters) = counted_resolver();
    let r = seed(&resolver, "cache-single-flight", "k", &[7u8; 5000]).await;
    let cache = ShardCache::open(dir.path(), 1 << 20, resolver)
        .await
        .unwrap();

    // On this single-threaded runtime all eight calls register before the
    // download task first runs, so seven of them wait on the eighth.
    let shards = futures::future::try_join_all((0..8).map(|_| cache.get(&r)))
        .await
        .unwrap();
    assert_eq!(gets(&counters), 1);
    assert_eq!(shards.iter().filter(|s| !s.from_cache).count(), 1);
    assert_eq!(shards.iter().map(|s| s.bytes_from_store).sum::<u64>(), 5000);
    for shard in &shards {
        assert_eq!(shard.path, shards[0].path);
    }
    assert_eq!(std::fs::read(&shards[0].path).unwrap(), vec![7u8; 5000]);
    assert_eq!(cache.usage().pinned_entries, 1);
    drop(shards);
    assert_eq!(cache.usage().pinned_entries, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_gets_from_many_tasks_share_one_download() {
    let dir = tempfile::tempdir().unwrap();
    let (resolver, counters) = counted_resolver();
    let content: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    let r = seed(&resolver, "cache-single-flight-mt", "k", &content).await;
    let cache = ShardCache::open(dir.path(), 1 << 20, resolver)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let cache = cache.clone();
            let r = r.clone();
            tokio::spawn(async move {
                let shard = cache.get(&r).await.unwrap();
                (shard.bytes_from_store, std::fs::read(&shard.path).unwrap())
            })
        })
        .collect();
    let mut downloaded = 0;
    for task in tasks {
        let (bytes, read) = task.await.unwrap();
        downloaded += bytes;
        assert!(read == content);
    }
    assert_eq!(gets(&counters), 1);
    assert_eq!(downloaded, content.len() as u64);
}

#[tokio::test]
async fn large_objects_download_in_parallel_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let (resolver, counters) = counted_resolver();
    let content: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let r = seed(&resolver, "cache-parallel", "big.bin", &content).await;
    let config = CacheConfig {
        parallel_threshold: 1000,
        block_size: 256,
        max_parallel_parts: 3,
        ..CacheConfig::new(1 << 20)
    };
    let cache = ShardCache::open_with(dir.path(), config, resolver)
        .await
        .unwrap();
    let shard = cache.get(&r).await.unwrap();
    assert_eq!(gets(&counters), 10_000u64.div_ceil(256));
    assert_eq!(shard.bytes_from_store, 10_000);
    assert!(std::fs::read(&shard.path).unwrap() == content);
}

#[tokio::test]
async fn a_fault_during_a_parallel_download_fails_the_read_and_keeps_the_blocks_that_landed() {
    let dir = tempfile::tempdir().unwrap();
    let counters = Arc::new(StoreCounters::default());
    let shared = Arc::clone(&counters);
    let resolver = StoreResolver::new(StoreConfig::default()).with_layer(move |store| {
        let counted = Arc::new(CountingStore::with_counters(store, Arc::clone(&shared)));
        Arc::new(FaultStore::new(counted).fail_request(5))
    });
    let plain = StoreResolver::new(StoreConfig::default());
    let content: Vec<u8> = (0..20_000u32).map(|i| (i % 241) as u8).collect();
    let r = seed(&plain, "cache-faults", "big.bin", &content).await;
    let config = CacheConfig {
        parallel_threshold: 1000,
        block_size: 1000,
        // One block at a time keeps the GET numbering, and so the faults,
        // deterministic.
        max_parallel_parts: 1,
        ..CacheConfig::new(1 << 20)
    };
    let cache = ShardCache::open_with(dir.path(), config, resolver)
        .await
        .unwrap();
    // The store layer does not retry: the read fails, and the task's own
    // retry (here, the next call) takes it from there.
    let err = cache.get(&r).await.unwrap_err();
    assert!(
        matches!(err.store_error(), Some(StoreError::Request { .. })),
        "{err}"
    );
    let landed = cache.usage().stored_bytes;
    assert!(
        landed >= 4000,
        "blocks before the fault stay cached: {landed}"
    );
    let shard = cache.get(&r).await.unwrap();
    assert!(read_shard(&shard) == content);
    assert_eq!(
        counters.snapshot().bytes_read,
        20_000,
        "no block was read twice"
    );
}

#[tokio::test]
async fn least_recently_used_entries_are_evicted_by_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (resolver, _) = counted_resolver();
    let a = seed(&resolver, "cache-lru", "a", &[1; 40]).await;
    let b = seed(&resolver, "cache-lru", "b", &[2; 40]).await;
    let c = seed(&resolver, "cache-lru", "c", &[3; 40]).await;
    let cache = ShardCache::open(dir.path(), 100, resolver).await.unwrap();

    drop(cache.get(&a).await.unwrap());
    drop(cache.get(&b).await.unwrap());
    drop(cache.get(&a).await.unwrap()); // a is now more recent than b
    drop(cache.get(&c).await.unwrap());

    assert!(cache.contains(&a.object_key()));
    assert!(!cache.contains(&b.object_key()));
    assert!(cache.contains(&c.object_key()));
    let usage = cache.usage();
    assert_eq!(usage.stored_bytes, 80);
    assert_eq!(usage.entries, 2);
    assert_eq!(usage.evicted_blocks, 1, "b made room for c");
    assert_eq!(
        usage.downloaded_bytes, 120,
        "a, b and c downloaded once each"
    );
    let data_files = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_str()
                .unwrap()
                .ends_with(".data")
        })
        .count();
    assert_eq!(data_files, 2, "the evicted entry's file is deleted");
}

#[tokio::test]
async fn entries_in_use_are_never_evicted() {
    let dir = tempfile::tempdir().unwrap();
    let (resolver, _) = counted_resolver();
    let a = seed(&resolver, "cache-pinned", "a", &[1; 40]).await;
    let b = seed(&resolver, "cache-pinned", "b", &[2; 40]).await;
    let cache = ShardCache::open(dir.path(), 50, resolver).await.unwrap();

    let shard_a = cache.get(&a).await.unwrap();
    let shard_b = cache.get(&b).await.unwrap();
    // Both are in use: the cache is over budget rather than pulling a file
    // from under a reader.
    assert_eq!(cache.usage().stored_bytes, 80);
    assert_eq!(std::fs::read(&shard_a.path).unwrap(), vec![1; 40]);

    let a_path = shard_a.path.clone();
    drop(shard_a);
    assert!(!cache.contains(&a.object_key()));
    assert!(
        !a_path.exists(),
        "released and over budget: evicted at once"
    );
    assert!(cache.contains(&b.object_key()));
    assert_eq!(cache.usage().stored_bytes, 40);
    assert_eq!(std::fs::read(&shard_b.path).unwrap(), vec![2; 40]);
}

#[tokio::test]
async fn the_cache_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (resolver, counters) = counted_resolver();
    let r = seed(&resolver, "cache-restart", "k", b"persisted").await;
    {
        let cache = ShardCache::open(dir.path(), 1 << 20, resolver.clone())
            .await
            .unwrap();
        drop(cache.get(&r).await.unwrap());
    }
    // Debris of a crash mid-download.
    std::fs::write(dir.path().join("0123.5.tmp"), b"partial").unwrap();

    let cache = ShardCache::open(dir.path(), 1 << 20, resolver)
        .await
        .unwrap();
    let inventory = cache.inventory();
    assert_eq!(
        inventory,
        vec![quarry_proto::CacheEntry::whole(r.object_key(), 9)]
    );
    assert_eq!(
        cache.take_delta(),
        (vec![], vec![]),
        "re-indexed entries are not a delta"
    );
    assert!(temp_files(dir.path()).is_empty());

    let shard = cache.get(&r).await.unwrap();
    assert!(shard.from_cache);
    assert_eq!(std::fs::read(&shard.path).unwrap(), b"persisted");
    assert_eq!(gets(&counters), 1);
}

#[tokio::test]
async fn a_second_cache_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let resolver = StoreResolver::new(StoreConfig::default());
    let _first = ShardCache::open(dir.path(), 1 << 20, resolver.clone())
        .await
        .unwrap();
    let err = ShardCache::open(dir.path(), 1 << 20, resolver)
        .await
        .unwrap_err();
    assert!(matches!(err, CacheError::Locked { .. }), "{err}");
    assert!(err.to_string().contains("own cache directory"), "{err}");
}

#[tokio::test]
async fn a_truncated_entry_is_detected_and_refetched() {
    let dir = tempfile::tempdir().unwrap();
    let (resolver, counters) = counted_resolver();
    let r = seed(&resolver, "cache-truncated", "k", b"0123456789").await;
    let cache = ShardCache::open(dir.path(), 1 << 20, resolver)
        .await
        .unwrap();
    let path = cache.get(&r).await.unwrap().path;
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(4)
        .unwrap();

    let shard = cache.get(&r).await.unwrap();
    assert!(!shard.from_cache);
    assert_eq!(std::fs::read(&shard.path).unwrap(), b"0123456789");
    assert_eq!(gets(&counters), 2);
}

fn flip_first_byte(path: &std::path::Path) {
    let mut data = std::fs::read(path).unwrap();
    data[0] ^= 0xff;
    std::fs::write(path, data).unwrap();
}

#[tokio::test]
async fn a_corrupted_entry_is_detected_after_a_restart_and_refetched() {
    let dir = tempfile::tempdir().unwrap();
    let (resolver, counters) = counted_resolver();
    let r = seed(&resolver, "cache-corrupt", "k", b"precious bytes").await;
    {
        let cache = ShardCache::open(dir.path(), 1 << 20, resolver.clone())
            .await
            .unwrap();
        flip_first_byte(&cache.get(&r).await.unwrap().path);
    }
    let cache = ShardCache::open(dir.path(), 1 << 20, resolver)
        .await
        .unwrap();
    assert_eq!(
        cache.inventory().len(),
        1,
        "same size: only the checksum can tell"
    );
    let shard = cache.get(&r).await.unwrap();
    assert!(!shard.from_cache);
    assert_eq!(std::fs::read(&shard.path).unwrap(), b"precious bytes");
    assert_eq!(gets(&counters), 2);
    let (added, evicted) = cache.take_delta();
    assert_eq!(added.len(), 1, "refetched");
    assert!(evicted.is_empty(), "evicted then added again nets to added");

    // Verified once; the next hit does not re-hash or refetch.
    let again = cache.get(&r).await.unwrap();
    assert!(again.from_cache);
}

#[tokio::test]
async fn checksum_on_every_hit_catches_corruption_while_running() {
    let dir = tempfile::tempdir().unwrap();
    let (resolver, counters) = counted_resolver();
    let r = seed(&resolver, "cache-verify-hit", "k", b"precious bytes").await;
    let config = CacheConfig {
        verify_checksum_on_hit: true,
        ..CacheConfig::new(1 << 20)
    };
    let cache = ShardCache::open_with(dir.path(), config, resolver)
        .await
        .unwrap();
    flip_first_byte(&cache.get(&r).await.unwrap().path);
    let shard = cache.get(&r).await.unwrap();
    assert!(!shard.from_cache);
    assert_eq!(std::fs::read(&shard.path).unwrap(), b"precious bytes");
    assert_eq!(gets(&counters), 2);
}

#[tokio::test]
async fn a_changed_object_fails_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (resolver, _) = counted_resolver();
    let r = seed(&resolver, "cache-changed", "k", b"version one").await;
    memory_store("cache-changed")
        .put(&Path::from("k"), "version two".into())
        .await
        .unwrap();
    let cache = ShardCache::open(dir.path(), 1 << 20, resolver)
        .await
        .unwrap();
    let err = cache.get(&r).await.unwrap_err();
    assert!(
        matches!(err.store_error(), Some(StoreError::Changed { .. })),
        "{err}"
    );
    assert!(err
        .to_string()
        .contains("changed since the job was submitted"));
    assert!(cache.inventory().is_empty());
    assert_eq!(cache.usage().stored_bytes, 0);
    assert!(temp_files(dir.path()).is_empty());
}

#[tokio::test]
async fn a_failed_download_reaches_every_waiter_and_a_later_get_retries() {
    let dir = tempfile::tempdir().unwrap();
    let counters = Arc::new(StoreCounters::default());
    let shared = Arc::clone(&counters);
    let resolver = StoreResolver::new(StoreConfig::default()).with_layer(move |store| {
        let counted = Arc::new(CountingStore::with_counters(store, Arc::clone(&shared)));
        // The cache's first request to the store is the first download.
        Arc::new(FaultStore::new(counted).fail_request(1))
    });
    let plain = StoreResolver::new(StoreConfig::default());
    let r = seed(&plain, "cache-fail", "k", b"eventually").await;
    let cache = ShardCache::open(dir.path(), 1 << 20, resolver)
        .await
        .unwrap();

    let (first, second) = tokio::join!(cache.get(&r), cache.get(&r));
    for result in [first, second] {
        let err = result.unwrap_err();
        assert!(
            matches!(err.store_error(), Some(StoreError::Request { .. })),
            "{err}"
        );
    }
    assert!(temp_files(dir.path()).is_empty());
    assert_eq!(cache.usage().stored_bytes, 0);

    let shard = cache.get(&r).await.unwrap();
    assert_eq!(std::fs::read(&shard.path).unwrap(), b"eventually");
}

#[tokio::test]
async fn a_ranged_reference_fetches_only_the_blocks_it_reads() {
    let dir = tempfile::tempdir().unwrap();
    let (resolver, counters) = counted_resolver();
    let content: Vec<u8> = (0..1000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let r = seed(&resolver, "cache-range", "k", &content).await;
    let cache = ShardCache::open_with(dir.path(), blocks_of(100), resolver)
        .await
        .unwrap();
    // Blocks 2..5, plus 10 bytes of block 5: a fragment, not the block.
    let chunk = ranged(&r, 200, 510);
    let one = cache.get(&chunk).await.unwrap();
    assert!(!one.from_cache);
    assert_eq!(one.bytes_from_store, 310);
    assert_eq!(read_shard(&one), &content[200..510]);
    assert_eq!(
        one.range,
        Some(ByteRange {
            start: 200,
            end: 510
        })
    );
    assert_eq!(one.data_ref, chunk);
    assert_eq!(
        cache.inventory(),
        vec![quarry_proto::CacheEntry {
            object_key: r.object_key(),
            ranges: vec![ByteRange {
                start: 200,
                end: 500
            }]
        }]
    );
    drop(one);
    // The same chunk again: the blocks are cached, the fragment is not.
    let again = cache.get(&chunk).await.unwrap();
    assert_eq!(again.bytes_from_store, 10);
    assert_eq!(read_shard(&again), &content[200..510]);
    // A whole-object read fetches what is missing, once.
    let whole = cache.get(&r).await.unwrap();
    assert_eq!(whole.bytes_from_store, 700);
    assert_eq!(read_shard(&whole), content);
    assert_eq!(bytes_read(&counters), 310 + 10 + 700);

    let lines = quarry_store::read_chunk_lines(
        std::fs::File::open(&whole.path).unwrap(),
        ByteRange {
            start: 0,
            end: 1000,
        },
    )
    .unwrap();
    assert_eq!(lines.concat(), content);
}

#[tokio::test]
async fn neighbouring_chunks_on_two_workers_read_the_object_about_once() {
    let (resolver, counters) = counted_resolver();
    let content: Vec<u8> = (0..64_000u32).map(|i| (i % 251) as u8).collect();
    let r = seed(&resolver, "cache-two-workers", "k", &content).await;
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut caches = Vec::new();
    for dir in &dirs {
        caches.push(
            ShardCache::open_with(dir.path(), blocks_of(1000), resolver.clone())
                .await
                .unwrap(),
        );
    }
    // Line-aligned chunks start a few bytes past each 8,000-byte mark.
    let cuts: Vec<u64> = (0..8)
        .map(|i| if i == 0 { 0 } else { i * 8000 + 37 })
        .collect();
    for (i, start) in cuts.iter().enumerate() {
        let end = cuts.get(i + 1).copied().unwrap_or(64_000);
        let shard = caches[i % 2].get(&ranged(&r, *start, end)).await.unwrap();
        assert_eq!(read_shard(&shard), &content[*start as usize..end as usize]);
    }
    let read = bytes_read(&counters);
    assert!(
        read <= 64_000 + 7 * 37,
        "{read} bytes read for a 64,000-byte object"
    );
}

#[tokio::test]
async fn a_file_modified_under_a_running_cache_is_checked_and_its_damage_refetched() {
    let dir = tempfile::tempdir().unwrap();
    let (resolver, counters) = counted_resolver();
    let content = vec![b'x'; 300];
    let r = seed(&resolver, "cache-live-damage", "k", &content).await;
    // No checksum on hit: the size and modification time give it away.
    let cache = ShardCache::open_with(dir.path(), blocks_of(100), resolver)
        .await
        .unwrap();
    let path = cache.get(&r).await.unwrap().path;
    let written = std::fs::metadata(&path).unwrap().modified().unwrap();
    let mut data = std::fs::read(&path).unwrap();
    data[150] = b'!';
    std::fs::write(&path, &data).unwrap();
    // However coarse the file system's clock, the write came later.
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(written + std::time::Duration::from_secs(1))
        .unwrap();

    let shard = cache.get(&r).await.unwrap();
    assert!(!shard.from_cache);
    assert_eq!(shard.bytes_from_store, 100, "only the damaged block");
    assert_eq!(read_shard(&shard), content);
    assert_eq!(bytes_read(&counters), 400);
    drop(shard);
    // Checked once: the next hit trusts the file again.
    assert!(cache.get(&r).await.unwrap().from_cache);
    assert_eq!(bytes_read(&counters), 400);
}

#[tokio::test]
async fn a_result_inserted_from_memory_is_cached_without_a_download() {
    let dir = tempfile::tempdir().unwrap();
    let (resolver, counters) = counted_resolver();
    let content = b"a large result, already uploaded".to_vec();
    let r = seed(&resolver, "cache-insert", "result", &content).await;
    let cache = ShardCache::open_with(dir.path(), blocks_of(8), resolver)
        .await
        .unwrap();
    cache.insert(&r, content.clone().into()).await.unwrap();
    let shard = cache.get(&r).await.unwrap();
    assert!(shard.from_cache);
    assert_eq!(read_shard(&shard), content);
    assert_eq!(gets(&counters), 0);
    assert!(cache.insert(&r, b"short".to_vec().into()).await.is_err());
}

#[tokio::test]
async fn local_files_are_cached_too() {
    let source = tempfile::tempdir().unwrap();
    let file = source.path().join("input.csv");
    std::fs::write(&file, "x,y\n1,2\n").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (resolver, counters) = counted_resolver();
    let r = pinned(&resolver, file.to_str().unwrap()).await;
    assert!(r.url.starts_with("file:///"));
    let cache = ShardCache::open(dir.path(), 1 << 20, resolver)
        .await
        .unwrap();
    let shard = cache.get(&r).await.unwrap();
    assert_eq!(std::fs::read(&shard.path).unwrap(), b"x,y\n1,2\n");
    drop(shard);
    assert!(cache.get(&r).await.unwrap().from_cache);
    assert_eq!(gets(&counters), 1);
}

#[tokio::test]
async fn hostile_object_names_stay_inside_the_cache_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (resolver, _) = counted_resolver();
    let long_name = "n".repeat(10 * 1024);
    let keys = [
        long_name.as_str(),
        "a/..b/..../etc/passwd",
        "dir with spaces/#hash?query",
        "~/.ssh/id_rsa",
    ];
    let cache = ShardCache::open(dir.path(), 1 << 20, resolver.clone())
        .await
        .unwrap();
    for (i, key) in keys.iter().enumerate() {
        let r = seed(&resolver, "cache-hostile", key, key.as_bytes()).await;
        let shard = cache.get(&r).await.unwrap();
        assert_eq!(shard.path.parent(), Some(cache.dir()), "{key:?}");
        assert_eq!(std::fs::read(&shard.path).unwrap(), key.as_bytes());
        assert_eq!(cache.inventory().len(), i + 1);
    }
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let stem = name.split('.').next().unwrap();
        assert!(
            name == ".lock" || (stem.len() == 64 && stem.bytes().all(|b| b.is_ascii_hexdigit())),
            "unexpected file {name}"
        );
    }
}

#[tokio::test]
async fn deltas_report_additions_and_evictions_once() {
    let dir = tempfile::tempdir().unwrap();
    let (resolver, _) = counted_resolver();
    let a = seed(&resolver, "cache-delta", "a", &[1; 60]).await;
    let b = seed(&resolver, "cache-delta", "b", &[2; 60]).await;
    let c = seed(&resolver, "cache-delta", "c", &[3; 60]).await;
    let cache = ShardCache::open(dir.path(), 100, resolver).await.unwrap();

    drop(cache.get(&a).await.unwrap());
    let (added, evicted) = cache.take_delta();
    assert_eq!(
        added,
        vec![quarry_proto::CacheEntry::whole(a.object_key(), 60)]
    );
    assert!(evicted.is_empty());
    assert_eq!(cache.take_delta(), (vec![], vec![]));

    drop(cache.get(&b).await.unwrap()); // evicts a
    drop(cache.get(&c).await.unwrap()); // evicts b, which was never reported
    let (added, evicted) = cache.take_delta();
    let added: Vec<String> = added.into_iter().map(|e| e.object_key).collect();
    let mut evicted: Vec<String> = evicted.into_iter().map(|e| e.object_key).collect();
    evicted.sort();
    let mut expected_evicted = vec![a.object_key(), b.object_key()];
    expected_evicted.sort();
    assert_eq!(added, [c.object_key()]);
    assert_eq!(evicted, expected_evicted);
    assert_eq!(cache.inventory().len(), 1);
}

#[tokio::test]
async fn a_download_finishes_for_others_when_its_caller_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let (resolver, counters) = counted_resolver();
    let r = seed(&resolver, "cache-cancel", "k", b"still wanted").await;
    let cache = ShardCache::open(dir.path(), 1 << 20, resolver)
        .await
        .unwrap();

    let mut leader = Box::pin(cache.get(&r));
    // One poll starts the download task; then the caller gives up.
    assert!(futures::poll!(leader.as_mut()).is_pending());
    drop(leader);

    let shard = cache.get(&r).await.unwrap();
    assert!(
        shard.from_cache,
        "the abandoned download was joined, not repeated"
    );
    assert_eq!(std::fs::read(&shard.path).unwrap(), b"still wanted");
    assert_eq!(gets(&counters), 1);
    drop(shard);
    assert_eq!(
        cache.usage().pinned_entries,
        0,
        "the abandoned caller's pin was released"
    );
}
