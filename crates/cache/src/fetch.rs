//! Writing an object's bytes into its data file: runs of blocks or
//! fragments fetched from the store with the object's pin, or bytes the
//! worker already holds.

use crate::error::CacheError;
use crate::table::Geometry;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use quarry_proto::DataRef;
use quarry_store::StoreResolver;
use sha2::{Digest, Sha256};
use std::ops::Range;
use std::path::Path;
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

/// Called once per whole block written, with the block number and the
/// SHA-256 of its bytes, after they reached the file.
pub(crate) type OnBlock<'a> = &'a mut (dyn FnMut(u64, String) -> Result<(), CacheError> + Send);

/// Opens the data file for writing, making it as long as the object (a
/// sparse file: unwritten bytes take no space) if it is not already.
async fn open_data(path: &Path, size: u64) -> Result<tokio::fs::File, CacheError> {
    let io = |e| CacheError::io(path, e);
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .await
        .map_err(io)?;
    if file.metadata().await.map_err(io)?.len() != size {
        file.set_len(size).await.map_err(io)?;
    }
    Ok(file)
}

/// Reads `range` of the object `object` pins from the store (one ranged
/// GET, conditional on the pin) and writes it at its offset of the data
/// file `path`; returns the bytes received.
pub(crate) async fn fetch_range(
    resolver: &StoreResolver,
    object: &DataRef,
    geometry: Geometry,
    path: &Path,
    range: Range<u64>,
    on_block: OnBlock<'_>,
) -> Result<u64, CacheError> {
    let body = resolver
        .get_pinned_range(object, range.clone())
        .await?
        .body
        .map_err(CacheError::from)
        .boxed();
    let written = write_stream(path, geometry, range.clone(), body, on_block).await?;
    if written != range.end - range.start {
        return Err(CacheError::Incomplete {
            url: object.url.clone(),
            expected: range.end - range.start,
            actual: written,
        });
    }
    Ok(written)
}

/// Writes `bytes`, the whole object, into the data file `path`.
pub(crate) async fn write_bytes(
    bytes: Bytes,
    geometry: Geometry,
    path: &Path,
    range: Range<u64>,
    on_block: OnBlock<'_>,
) -> Result<u64, CacheError> {
    let part = bytes.slice(range.start as usize..range.end as usize);
    let body = futures::stream::iter([Ok(part)]).boxed();
    write_stream(path, geometry, range, body, on_block).await
}

/// Writes `body`, the bytes of `range`, at their offset; hashes each whole
/// block as it passes and reports it once its bytes are in the file.
/// Stops at the end of `range` even if the body goes on.
async fn write_stream(
    path: &Path,
    geometry: Geometry,
    range: Range<u64>,
    mut body: BoxStream<'_, Result<Bytes, CacheError>>,
    on_block: OnBlock<'_>,
) -> Result<u64, CacheError> {
    let io = |e| CacheError::io(path, e);
    let mut file = open_data(path, geometry.size).await?;
    file.seek(std::io::SeekFrom::Start(range.start))
        .await
        .map_err(io)?;
    let mut position = range.start;
    // The block being hashed: its number, and a hasher when the write
    // started at its first byte (a fragment hashes nothing).
    let block_of = |offset: u64| offset / geometry.block_size.max(1);
    let starts_block = |offset: u64| geometry.block_range(block_of(offset)).start == offset;
    let mut hasher = starts_block(position).then(Sha256::new);
    while position < range.end {
        let Some(chunk) = body.try_next().await? else {
            break;
        };
        let mut chunk = &chunk[..];
        while !chunk.is_empty() && position < range.end {
            let block = geometry.block_range(block_of(position));
            let take = chunk
                .len()
                .min((block.end.min(range.end) - position) as usize);
            file.write_all(&chunk[..take]).await.map_err(io)?;
            if let Some(hasher) = hasher.as_mut() {
                hasher.update(&chunk[..take]);
            }
            chunk = &chunk[take..];
            position += take as u64;
            if position == block.end {
                if let Some(done) = hasher.take() {
                    // The bytes must be in the file before the block
                    // counts as cached.
                    file.flush().await.map_err(io)?;
                    on_block(block_of(block.start), hex::encode(done.finalize()))?;
                }
                hasher = Some(Sha256::new());
            }
        }
    }
    file.flush().await.map_err(io)?;
    Ok(position - range.start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn whole_blocks_are_reported_and_fragments_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d");
        let geometry = Geometry {
            size: 10,
            block_size: 4,
        };
        let bytes = Bytes::from_static(b"0123456789");
        let mut blocks = Vec::new();
        let mut record = |index: u64, sha: String| {
            blocks.push((index, sha));
            Ok(())
        };
        // A fragment of block 0, then blocks 1 and 2 (the last one short).
        write_bytes(bytes.clone(), geometry, &path, 1..3, &mut record)
            .await
            .unwrap();
        write_bytes(bytes.clone(), geometry, &path, 4..10, &mut record)
            .await
            .unwrap();
        let indices: Vec<u64> = blocks.iter().map(|b| b.0).collect();
        assert_eq!(indices, [1, 2]);
        assert_eq!(blocks[1].1, hex::encode(Sha256::digest(b"89")));
        assert_eq!(std::fs::read(&path).unwrap(), b"\x0012\x00456789");
    }
}
