//! The cache directory's layout.
//!
//! Each cached object is a few files named by the SHA-256 of its object
//! key, so no key (however long, or full of `..`, `/` or NUL bytes) can
//! name a path outside the directory:
//!
//! - `<sha256 hex>.data`: a sparse file as long as the object, holding the
//!   cached blocks at their offsets (evicted blocks are punched out);
//! - `<sha256 hex>.meta`: a JSON sidecar with the object key, its size and
//!   the block size;
//! - `<sha256 hex>.<N>.block`: one JSON sidecar per cached block N, with
//!   the SHA-256 of its bytes. It is renamed into place after the bytes
//!   are written, so it marks a complete block, and removed before the
//!   bytes are punched out.
//!
//! Sidecars are written to `*.tmp` files first. A `.lock` file, locked
//! while a cache is open, keeps two processes out of one directory.

use crate::error::CacheError;
use crate::table::Geometry;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

const DATA_SUFFIX: &str = ".data";
const META_SUFFIX: &str = ".meta";
const BLOCK_SUFFIX: &str = ".block";
const TEMP_SUFFIX: &str = ".tmp";
const LOCK_FILE: &str = ".lock";
/// Format 1 held whole objects; its entries are dropped on open.
const SIDECAR_FORMAT: u32 = 2;

/// The file-name stem of an entry: the SHA-256 hex of its object key.
pub(crate) fn entry_stem(object_key: &str) -> String {
    hex::encode(Sha256::digest(object_key.as_bytes()))
}

/// The data file of the entry for `object_key`.
pub(crate) fn data_path(dir: &Path, object_key: &str) -> PathBuf {
    dir.join(format!("{}{DATA_SUFFIX}", entry_stem(object_key)))
}

/// The object sidecar of the entry for `object_key`.
pub(crate) fn meta_path(dir: &Path, object_key: &str) -> PathBuf {
    dir.join(format!("{}{META_SUFFIX}", entry_stem(object_key)))
}

/// The sidecar of block `index` of the entry for `object_key`.
pub(crate) fn block_path(dir: &Path, object_key: &str, index: u64) -> PathBuf {
    dir.join(format!("{}.{index}{BLOCK_SUFFIX}", entry_stem(object_key)))
}

/// A fresh temporary file name for the entry of `object_key`.
pub(crate) fn temp_path(dir: &Path, object_key: &str, serial: u64) -> PathBuf {
    dir.join(format!("{}.{serial}{TEMP_SUFFIX}", entry_stem(object_key)))
}

/// What the object sidecar records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Sidecar {
    pub format: u32,
    pub object_key: String,
    pub size: u64,
    pub block_size: u64,
}

impl Sidecar {
    pub(crate) fn new(object_key: &str, geometry: Geometry) -> Self {
        Sidecar {
            format: SIDECAR_FORMAT,
            object_key: object_key.to_string(),
            size: geometry.size,
            block_size: geometry.block_size,
        }
    }

    fn geometry(&self) -> Geometry {
        Geometry {
            size: self.size,
            block_size: self.block_size,
        }
    }
}

/// What a block sidecar records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BlockSidecar {
    pub sha256: String,
}

/// A file removed on drop unless [`TempFile::persisted`] was called.
#[derive(Debug)]
pub(crate) struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl TempFile {
    pub(crate) fn new(path: PathBuf) -> Self {
        TempFile { path, keep: false }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The file was renamed away; nothing to clean up.
    pub(crate) fn persisted(mut self) {
        self.keep = true;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            remove_quietly(&self.path);
        }
    }
}

/// Writes `value` as JSON to the temporary file `temp`, then renames it to
/// `path`.
pub(crate) fn write_json(
    temp: PathBuf,
    path: &Path,
    value: &impl Serialize,
) -> Result<(), CacheError> {
    let temp = TempFile::new(temp);
    let json = serde_json::to_vec(value).map_err(|e| CacheError::io(temp.path(), e.into()))?;
    std::fs::write(temp.path(), json).map_err(|e| CacheError::io(temp.path(), e))?;
    std::fs::rename(temp.path(), path).map_err(|e| CacheError::io(path, e))?;
    temp.persisted();
    Ok(())
}

/// SHA-256 hex of `range` of a file, read in bounded buffers; `None` when
/// the file ends first.
pub(crate) fn sha256_range(path: &Path, range: Range<u64>) -> io::Result<Option<String>> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(range.start))?;
    let mut left = range.end - range.start;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1024 * 1024];
    while left > 0 {
        let want = buffer
            .len()
            .min(usize::try_from(left).unwrap_or(usize::MAX));
        let read = file.read(&mut buffer[..want])?;
        if read == 0 {
            return Ok(None);
        }
        hasher.update(&buffer[..read]);
        left -= read as u64;
    }
    Ok(Some(hex::encode(hasher.finalize())))
}

/// Frees the disk space of `range` of a data file, keeping its length
/// (the bytes read back as zeros). Filesystems that cannot punch holes
/// keep the bytes; only the space is lost until the entry goes.
pub(crate) fn punch_hole(path: &Path, range: Range<u64>) {
    use std::os::fd::AsRawFd;
    let Ok(file) = File::options().write(true).open(path) else {
        return;
    };
    let (Ok(offset), Ok(len)) = (
        libc::off_t::try_from(range.start),
        libc::off_t::try_from(range.end - range.start),
    ) else {
        return;
    };
    // SAFETY: a plain system call on a file descriptor that stays open for
    // its duration; no memory is shared with the kernel.
    let result = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset,
            len,
        )
    };
    if result != 0 {
        tracing::debug!(
            path = %path.display(),
            error = %io::Error::last_os_error(),
            "cannot punch an evicted block out of a cache file"
        );
    }
}

/// Removes a file; a missing one is fine.
pub(crate) fn remove_quietly(path: &Path) {
    if let Err(error) = std::fs::remove_file(path) {
        if error.kind() != io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), %error, "cannot remove a cache file");
        }
    }
}

/// Removes an entry's object sidecar and data file. Block sidecars are
/// gone by then (each goes with its block).
pub(crate) fn remove_entry(dir: &Path, object_key: &str) {
    remove_quietly(&meta_path(dir, object_key));
    remove_quietly(&data_path(dir, object_key));
}

/// Creates `dir` if needed and locks it for this process.
pub(crate) fn lock_dir(dir: &Path) -> Result<File, CacheError> {
    std::fs::create_dir_all(dir).map_err(|e| CacheError::io(dir, e))?;
    let path = dir.join(LOCK_FILE);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| CacheError::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(CacheError::Locked {
            dir: dir.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(CacheError::io(&path, e)),
    }
}

/// An entry found on disk at open.
#[derive(Debug)]
pub(crate) struct Indexed {
    pub object_key: String,
    pub geometry: Geometry,
    /// Its complete blocks and their checksums, by block number.
    pub blocks: Vec<(u64, String)>,
    pub modified: SystemTime,
}

/// Scans the cache directory: deletes temporary files, sidecars that do not
/// parse or do not match their data file (missing, wrong size, wrong name),
/// block sidecars without their entry, and data files without a sidecar;
/// returns the complete entries. Block checksums are not verified here
/// (that would read the whole cache at start-up); see `ShardCache` for
/// when they are.
pub(crate) fn reindex(dir: &Path) -> Result<Vec<Indexed>, CacheError> {
    let names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| CacheError::io(dir, e))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect();
    let remove = |name: &str, why: &str| {
        tracing::info!(file = name, why, "removing from the shard cache");
        remove_quietly(&dir.join(name));
    };

    // Block sidecars by entry stem.
    let mut blocks: HashMap<&str, BTreeMap<u64, &str>> = HashMap::new();
    for name in &names {
        if name.ends_with(TEMP_SUFFIX) {
            remove(name, "stray temporary file");
        } else if let Some(rest) = name.strip_suffix(BLOCK_SUFFIX) {
            match rest
                .split_once('.')
                .and_then(|(stem, n)| Some((stem, n.parse().ok()?)))
            {
                Some((stem, index)) => {
                    blocks.entry(stem).or_default().insert(index, name.as_str());
                }
                None => remove(name, "malformed block sidecar name"),
            }
        }
    }

    let mut entries = Vec::new();
    let mut valid_stems = HashSet::new();
    for name in &names {
        let Some(stem) = name.strip_suffix(META_SUFFIX) else {
            continue;
        };
        match check_sidecar(dir, stem) {
            Ok((sidecar, modified)) => {
                let geometry = sidecar.geometry();
                let mut complete = Vec::new();
                for (index, block_name) in blocks.remove(stem).unwrap_or_default() {
                    match check_block(dir, block_name, index, geometry) {
                        Ok(sha256) => complete.push((index, sha256)),
                        Err(why) => remove(block_name, &why),
                    }
                }
                valid_stems.insert(stem.to_string());
                entries.push(Indexed {
                    object_key: sidecar.object_key,
                    geometry,
                    blocks: complete,
                    modified,
                });
            }
            Err(why) => {
                remove(name, &why);
                let data = format!("{stem}{DATA_SUFFIX}");
                if names.contains(&data) {
                    remove(&data, &why);
                }
            }
        }
    }
    for orphans in blocks.values() {
        for name in orphans.values() {
            remove(name, "block sidecar without its entry");
        }
    }
    for name in &names {
        if let Some(stem) = name.strip_suffix(DATA_SUFFIX) {
            if !valid_stems.contains(stem) && dir.join(name).exists() {
                remove(name, "data file without a valid sidecar");
            }
        }
    }
    Ok(entries)
}

fn check_sidecar(dir: &Path, stem: &str) -> Result<(Sidecar, SystemTime), String> {
    let meta = std::fs::read(dir.join(format!("{stem}{META_SUFFIX}")))
        .map_err(|e| format!("unreadable sidecar: {e}"))?;
    let sidecar: Sidecar =
        serde_json::from_slice(&meta).map_err(|e| format!("malformed sidecar: {e}"))?;
    if sidecar.format != SIDECAR_FORMAT {
        return Err(format!("unknown sidecar format {}", sidecar.format));
    }
    if sidecar.block_size == 0 {
        return Err("sidecar says blocks of 0 bytes".to_string());
    }
    if entry_stem(&sidecar.object_key) != stem {
        return Err("sidecar names a different object key".to_string());
    }
    let data = std::fs::metadata(dir.join(format!("{stem}{DATA_SUFFIX}")))
        .map_err(|e| format!("data file missing: {e}"))?;
    if data.len() != sidecar.size {
        return Err(format!(
            "data file has {} bytes, sidecar says {}",
            data.len(),
            sidecar.size
        ));
    }
    Ok((sidecar, data.modified().unwrap_or(SystemTime::UNIX_EPOCH)))
}

fn check_block(dir: &Path, name: &str, index: u64, geometry: Geometry) -> Result<String, String> {
    if index >= geometry.blocks() {
        return Err(format!("block {index} lies past the object's end"));
    }
    let text = std::fs::read(dir.join(name)).map_err(|e| format!("unreadable: {e}"))?;
    let block: BlockSidecar =
        serde_json::from_slice(&text).map_err(|e| format!("malformed block sidecar: {e}"))?;
    if block.sha256.len() != 64 || !block.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("malformed block checksum".to_string());
    }
    Ok(block.sha256)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_confined(dir: &Path, key: &str) {
        let stem = entry_stem(key);
        assert_eq!(stem.len(), 64);
        assert!(stem
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        for path in [
            data_path(dir, key),
            meta_path(dir, key),
            block_path(dir, key, 12345),
            temp_path(dir, key, 7),
        ] {
            assert_eq!(path.parent(), Some(dir), "{key:?} escaped to {path:?}");
            assert!(path.file_name().unwrap().len() < 100);
        }
    }

    #[test]
    fn traversal_keys_stay_inside_the_directory() {
        let dir = Path::new("/var/cache/quarry");
        assert_confined(dir, "../../etc/x");
        assert_confined(dir, "memory://t/../../etc/passwd#etag=\"1\"");
        assert_confined(dir, "..");
    }

    #[test]
    fn absolute_path_keys_stay_inside_the_directory() {
        let dir = Path::new("/var/cache/quarry");
        assert_confined(dir, "/etc/passwd");
        assert_confined(dir, "file:///etc/passwd#etag=\"1-2-3\"");
    }

    #[test]
    fn nul_bytes_in_keys_stay_inside_the_directory() {
        let dir = Path::new("/var/cache/quarry");
        assert_confined(dir, "s3://b/a\0/../../x");
        assert_confined(dir, "\0");
    }

    #[test]
    fn huge_keys_get_short_names() {
        let dir = Path::new("/var/cache/quarry");
        assert_confined(dir, &"k".repeat(10 * 1024));
        assert_ne!(
            entry_stem(&"k".repeat(10 * 1024)),
            entry_stem(&"k".repeat(10 * 1024 + 1))
        );
    }

    #[test]
    fn reindex_keeps_complete_entries_and_blocks_and_removes_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let geometry = Geometry {
            size: 10,
            block_size: 4,
        };
        let write_entry = |key: &str, data: &[u8], geometry: Geometry| {
            std::fs::write(data_path(d, key), data).unwrap();
            let sidecar = Sidecar::new(key, geometry);
            std::fs::write(meta_path(d, key), serde_json::to_vec(&sidecar).unwrap()).unwrap();
        };
        let write_block = |key: &str, index: u64| {
            let block = BlockSidecar {
                sha256: "ab".repeat(32),
            };
            std::fs::write(
                block_path(d, key, index),
                serde_json::to_vec(&block).unwrap(),
            )
            .unwrap();
        };
        write_entry("good", b"0123456789", geometry);
        write_block("good", 0);
        write_block("good", 2);
        write_block("good", 3); // past the end: the object has 3 blocks
        write_entry("truncated", b"01", geometry);
        write_block("truncated", 0);
        std::fs::write(data_path(d, "no-sidecar"), b"x").unwrap();
        write_block("no-sidecar", 0);
        std::fs::write(meta_path(d, "garbage"), b"{not json").unwrap();
        std::fs::write(data_path(d, "garbage"), b"x").unwrap();
        // A sidecar under the wrong name (copied or tampered with).
        let sidecar = Sidecar::new("other-key", geometry);
        std::fs::write(
            meta_path(d, "renamed"),
            serde_json::to_vec(&sidecar).unwrap(),
        )
        .unwrap();
        std::fs::write(data_path(d, "renamed"), b"0123456789").unwrap();
        std::fs::write(temp_path(d, "good", 3), b"partial").unwrap();
        std::fs::write(d.join("notes.txt"), b"not ours").unwrap();

        let entries = reindex(d).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].object_key, "good");
        assert_eq!(entries[0].geometry, geometry);
        let indices: Vec<u64> = entries[0].blocks.iter().map(|b| b.0).collect();
        assert_eq!(indices, [0, 2]);

        let mut left: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let mut expected = vec![
            format!("{}.data", entry_stem("good")),
            format!("{}.meta", entry_stem("good")),
            format!("{}.0.block", entry_stem("good")),
            format!("{}.2.block", entry_stem("good")),
            "notes.txt".to_string(),
        ];
        expected.sort();
        assert_eq!(left, expected);
    }

    #[test]
    fn punched_blocks_read_as_zeros_and_keep_the_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![7u8; 3 * 4096]).unwrap();
        punch_hole(&path, 4096..8192);
        let data = std::fs::read(&path).unwrap();
        assert_eq!(data.len(), 3 * 4096);
        assert!(data[..4096].iter().all(|&b| b == 7));
        assert!(data[4096..8192].iter().all(|&b| b == 0));
        assert_eq!(sha256_range(&path, 0..4096).unwrap().unwrap().len(), 64);
        assert_eq!(sha256_range(&path, 0..4 * 4096).unwrap(), None);
    }

    #[test]
    fn a_locked_directory_refuses_a_second_cache() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock_dir(dir.path()).unwrap();
        assert!(matches!(
            lock_dir(dir.path()),
            Err(CacheError::Locked { .. })
        ));
        drop(held);
        lock_dir(dir.path()).unwrap();
    }
}
