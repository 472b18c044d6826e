//! Downloading one object into a temporary file of the cache directory.

use crate::disk::{sha256_file, TempFile};
use crate::error::CacheError;
use crate::CacheConfig;
use futures::{StreamExt, TryStreamExt};
use quarry_proto::DataRef;
use quarry_store::StoreResolver;
use sha2::{Digest, Sha256};
use std::ops::Range;
use std::path::Path;
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

/// A complete download, not yet part of the cache.
pub(crate) struct Fetched {
    pub temp: TempFile,
    pub sha256: String,
    pub bytes_from_store: u64,
}

/// Streams the whole object `object` pins into `temp`: one GET up to
/// `config.parallel_threshold`, ranged GETs in parallel above it. Every
/// request carries the pin, so an object modified meanwhile fails the
/// download with `StoreError::Changed`.
pub(crate) async fn fetch(
    resolver: &StoreResolver,
    config: &CacheConfig,
    object: &DataRef,
    temp: TempFile,
) -> Result<Fetched, CacheError> {
    let size = object.size;
    let (sha256, received) = if size > config.parallel_threshold {
        let received = fetch_parallel(resolver, config, object, temp.path()).await?;
        let path = temp.path().to_path_buf();
        let sha256 = tokio::task::spawn_blocking(move || sha256_file(&path))
            .await
            .map_err(|_| CacheError::Interrupted {
                object_key: object.object_key(),
            })?
            .map_err(|e| CacheError::io(temp.path(), e))?;
        (sha256, received)
    } else {
        fetch_sequential(resolver, object, temp.path()).await?
    };
    if received != size {
        return Err(CacheError::Incomplete {
            url: object.url.clone(),
            expected: size,
            actual: received,
        });
    }
    let on_disk = tokio::fs::metadata(temp.path())
        .await
        .map_err(|e| CacheError::io(temp.path(), e))?
        .len();
    if on_disk != size {
        return Err(CacheError::Incomplete {
            url: object.url.clone(),
            expected: size,
            actual: on_disk,
        });
    }
    Ok(Fetched {
        temp,
        sha256,
        bytes_from_store: received,
    })
}

/// One GET, written and hashed as it arrives.
async fn fetch_sequential(
    resolver: &StoreResolver,
    object: &DataRef,
    path: &Path,
) -> Result<(String, u64), CacheError> {
    let io = |e| CacheError::io(path, e);
    let mut file = tokio::fs::File::create(path).await.map_err(io)?;
    let mut body = resolver
        .get_pinned_range(object, 0..object.size)
        .await?
        .body;
    let mut hasher = Sha256::new();
    let mut received = 0u64;
    while let Some(chunk) = body.try_next().await? {
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(io)?;
        received += chunk.len() as u64;
    }
    // Finish the writes still in flight before the file is checked and
    // renamed.
    file.flush().await.map_err(io)?;
    Ok((hex::encode(hasher.finalize()), received))
}

/// Ranged GETs of `config.part_size`, at most `config.max_parallel_parts`
/// at once, each written at its offset through its own file handle.
async fn fetch_parallel(
    resolver: &StoreResolver,
    config: &CacheConfig,
    object: &DataRef,
    path: &Path,
) -> Result<u64, CacheError> {
    let io = |e| CacheError::io(path, e);
    let file = tokio::fs::File::create(path).await.map_err(io)?;
    file.set_len(object.size).await.map_err(io)?;
    drop(file);

    let part_size = config.part_size.max(1);
    let parts = (0..object.size.div_ceil(part_size)).map(|k| {
        let start = k * part_size;
        start..(start + part_size).min(object.size)
    });
    futures::stream::iter(parts)
        .map(|range| fetch_part(resolver, object, path, range))
        .buffer_unordered(config.max_parallel_parts.max(1))
        .try_fold(0u64, |total, part| futures::future::ready(Ok(total + part)))
        .await
}

async fn fetch_part(
    resolver: &StoreResolver,
    object: &DataRef,
    path: &Path,
    range: Range<u64>,
) -> Result<u64, CacheError> {
    let io = |e| CacheError::io(path, e);
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .await
        .map_err(io)?;
    file.seek(std::io::SeekFrom::Start(range.start))
        .await
        .map_err(io)?;
    let mut body = resolver.get_pinned_range(object, range.clone()).await?.body;
    let mut received = 0u64;
    while let Some(chunk) = body.try_next().await? {
        received += chunk.len() as u64;
        if received > range.end - range.start {
            break;
        }
        file.write_all(&chunk).await.map_err(io)?;
    }
    file.flush().await.map_err(io)?;
    if received != range.end - range.start {
        return Err(CacheError::Incomplete {
            url: object.url.clone(),
            expected: range.end - range.start,
            actual: received,
        });
    }
    Ok(received)
}
