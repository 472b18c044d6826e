//! The cache directory's layout.
//!
//! Each entry is two files named by the SHA-256 of its object key, so no
//! key (however long, or full of `..`, `/` or NUL bytes) can name a path
//! outside the directory:
//!
//! - `<sha256 hex>.data`: the whole object;
//! - `<sha256 hex>.meta`: a JSON sidecar with the object key, size and the
//!   SHA-256 of the data. It is renamed into place after the data, so it
//!   marks a complete entry.
//!
//! Downloads and sidecars are written to `*.tmp` files first. A `.lock`
//! file, locked while a cache is open, keeps two processes out of one
//! directory.

use crate::error::CacheError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

const DATA_SUFFIX: &str = ".data";
const META_SUFFIX: &str = ".meta";
const TEMP_SUFFIX: &str = ".tmp";
const LOCK_FILE: &str = ".lock";
const SIDECAR_FORMAT: u32 = 1;

/// The file-name stem of an entry: the SHA-256 hex of its object key.
pub(crate) fn entry_stem(object_key: &str) -> String {
    hex::encode(Sha256::digest(object_key.as_bytes()))
}

/// The data file of the entry for `object_key`.
pub(crate) fn data_path(dir: &Path, object_key: &str) -> PathBuf {
    dir.join(format!("{}{DATA_SUFFIX}", entry_stem(object_key)))
}

/// The sidecar of the entry for `object_key`.
pub(crate) fn meta_path(dir: &Path, object_key: &str) -> PathBuf {
    dir.join(format!("{}{META_SUFFIX}", entry_stem(object_key)))
}

/// A fresh temporary file name for the entry of `object_key`.
pub(crate) fn temp_path(dir: &Path, object_key: &str, serial: u64) -> PathBuf {
    dir.join(format!("{}.{serial}{TEMP_SUFFIX}", entry_stem(object_key)))
}

/// What the sidecar records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Sidecar {
    pub format: u32,
    pub object_key: String,
    pub size: u64,
    pub sha256: String,
}

impl Sidecar {
    pub(crate) fn new(object_key: &str, size: u64, sha256: String) -> Self {
        Sidecar {
            format: SIDECAR_FORMAT,
            object_key: object_key.to_string(),
            size,
            sha256,
        }
    }
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
            if let Err(error) = std::fs::remove_file(&self.path) {
                if error.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %self.path.display(), %error, "cannot remove a temporary cache file");
                }
            }
        }
    }
}

/// Writes `sidecar` to a temporary file and returns it.
pub(crate) fn write_sidecar(path: PathBuf, sidecar: &Sidecar) -> Result<TempFile, CacheError> {
    let temp = TempFile::new(path);
    let json = serde_json::to_vec(sidecar).map_err(|e| CacheError::io(temp.path(), e.into()))?;
    std::fs::write(temp.path(), json).map_err(|e| CacheError::io(temp.path(), e))?;
    Ok(temp)
}

/// SHA-256 hex of a file's content, read in bounded buffers.
pub(crate) fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1024 * 1024];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&buffer[..read]);
    }
}

/// Removes an entry's files; missing files are fine.
pub(crate) fn remove_entry(dir: &Path, object_key: &str) {
    for path in [meta_path(dir, object_key), data_path(dir, object_key)] {
        if let Err(error) = std::fs::remove_file(&path) {
            if error.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), %error, "cannot remove a cache file");
            }
        }
    }
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

/// A complete entry found on disk at open.
#[derive(Debug)]
pub(crate) struct Indexed {
    pub sidecar: Sidecar,
    pub modified: SystemTime,
}

/// Scans the cache directory: deletes temporary files, sidecars that do not
/// parse or do not match their data file (missing, wrong size, wrong name)
/// and data files without a sidecar; returns the complete entries. Their
/// checksums are not verified here (that would read the whole cache at
/// start-up); see `ShardCache` for when they are.
pub(crate) fn reindex(dir: &Path) -> Result<Vec<Indexed>, CacheError> {
    let names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| CacheError::io(dir, e))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect();
    let remove = |name: &str, why: &str| {
        tracing::info!(file = name, why, "removing from the shard cache");
        if let Err(error) = std::fs::remove_file(dir.join(name)) {
            tracing::warn!(file = name, %error, "cannot remove a cache file");
        }
    };

    let mut entries = Vec::new();
    let mut valid_stems = std::collections::HashSet::new();
    for name in &names {
        if name.ends_with(TEMP_SUFFIX) {
            remove(name, "stray temporary file");
            continue;
        }
        let Some(stem) = name.strip_suffix(META_SUFFIX) else {
            continue;
        };
        match check_sidecar(dir, stem) {
            Ok(indexed) => {
                valid_stems.insert(stem.to_string());
                entries.push(indexed);
            }
            Err(why) => {
                remove(name, &why);
                if let Some(data) = names.iter().find(|n| **n == format!("{stem}{DATA_SUFFIX}")) {
                    remove(data, &why);
                }
            }
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

fn check_sidecar(dir: &Path, stem: &str) -> Result<Indexed, String> {
    let meta = std::fs::read(dir.join(format!("{stem}{META_SUFFIX}")))
        .map_err(|e| format!("unreadable sidecar: {e}"))?;
    let sidecar: Sidecar =
        serde_json::from_slice(&meta).map_err(|e| format!("malformed sidecar: {e}"))?;
    if sidecar.format != SIDECAR_FORMAT {
        return Err(format!("unknown sidecar format {}", sidecar.format));
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
    Ok(Indexed {
        modified: data.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        sidecar,
    })
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
            temp_path(dir, key, 7),
        ] {
            assert_eq!(path.parent(), Some(dir), "{key:?} escaped to {path:?}");
            assert!(path.file_name().unwrap().len() < 80);
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
    fn reindex_keeps_complete_entries_and_removes_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let write_entry = |key: &str, data: &[u8], sidecar_size: u64| {
            std::fs::write(data_path(d, key), data).unwrap();
            let sidecar = Sidecar::new(key, sidecar_size, "00".into());
            std::fs::write(meta_path(d, key), serde_json::to_vec(&sidecar).unwrap()).unwrap();
        };
        write_entry("good", b"1234", 4);
        write_entry("truncated", b"12", 4);
        std::fs::write(data_path(d, "no-sidecar"), b"x").unwrap();
        std::fs::write(meta_path(d, "garbage"), b"{not json").unwrap();
        std::fs::write(data_path(d, "garbage"), b"x").unwrap();
        // A sidecar under the wrong name (copied or tampered with).
        let sidecar = Sidecar::new("other-key", 1, "00".into());
        std::fs::write(
            meta_path(d, "renamed"),
            serde_json::to_vec(&sidecar).unwrap(),
        )
        .unwrap();
        std::fs::write(data_path(d, "renamed"), b"x").unwrap();
        std::fs::write(temp_path(d, "good", 3), b"partial").unwrap();
        std::fs::write(d.join("notes.txt"), b"not ours").unwrap();

        let entries = reindex(d).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].sidecar.object_key, "good");

        let mut left: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let mut expected = vec![
            format!("{}.data", entry_stem("good")),
            format!("{}.meta", entry_stem("good")),
            "notes.txt".to_string(),
        ];
        expected.sort();
        assert_eq!(left, expected);
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
