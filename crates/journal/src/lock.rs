use crate::JournalError;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

/// Exclusive use of a journal by this process, held as a lock on a file
/// beside it (`PATH.lock`): the journal itself is replaced when it is
/// compacted, and a lock on it would go with the old file.
#[derive(Debug)]
pub struct JournalLock {
    path: PathBuf,
    _file: File,
}

impl JournalLock {
    /// Takes the lock, failing at once when another process holds it.
    pub fn acquire(journal: &Path) -> Result<JournalLock, JournalError> {
        if let Some(dir) = journal.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(JournalError::io(dir, "create its directory"))?;
        }
        let lock_path = lock_path(journal);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(JournalError::io(&lock_path, "open its lock file"))?;
        match file.try_lock() {
            Ok(()) => Ok(JournalLock {
                path: journal.to_path_buf(),
                _file: file,
            }),
            Err(std::fs::TryLockError::WouldBlock) => Err(JournalError::InUse {
                path: journal.to_path_buf(),
            }),
            Err(std::fs::TryLockError::Error(source)) => Err(JournalError::Io {
                path: lock_path,
                op: "lock",
                source,
            }),
        }
    }

    /// The journal this lock is for.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn lock_path(journal: &Path) -> PathBuf {
    let mut name = journal.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}
