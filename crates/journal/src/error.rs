use std::path::PathBuf;
use thiserror::Error;

/// The journal could not be read or written.
#[derive(Debug, Error)]
pub enum JournalError {
    /// A file operation failed.
    #[error("journal {path}: cannot {op}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// The file does not start with the journal header.
    #[error(
        "{path} is not a quarry journal (its first bytes are not the journal header); \
         give --journal a new path or the journal a scheduler wrote"
    )]
    NotAJournal {
        /// The file.
        path: PathBuf,
    },
    /// The file was written in a format this build does not read.
    #[error(
        "journal {path} has format version {found}; this quarry reads version {supported}: \
         run the quarry release that wrote it (or move the file aside to start with an empty \
         journal)"
    )]
    UnknownVersion {
        /// The file.
        path: PathBuf,
        /// The version in its header.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// A record's checksum is right but its content cannot be read: not a
    /// torn write, so nothing is cut away.
    #[error(
        "journal {path}: the record at byte {offset} is intact but unreadable ({reason}); it was \
         written by another quarry release?"
    )]
    Undecodable {
        /// The file.
        path: PathBuf,
        /// Where the record starts.
        offset: u64,
        /// Why it could not be decoded.
        reason: String,
    },
    /// Another process holds the journal.
    #[error(
        "journal {path} is in use by another process (a running scheduler?): only one process \
         may hold a journal at a time"
    )]
    InUse {
        /// The file.
        path: PathBuf,
    },
    /// The writer thread stopped after an error.
    #[error("the journal writer stopped: {0}")]
    WriterStopped(String),
}

impl JournalError {
    pub(crate) fn io(
        path: &std::path::Path,
        op: &'static str,
    ) -> impl FnOnce(std::io::Error) -> JournalError {
        let path = path.to_path_buf();
        move |source| JournalError::Io { path, op, source }
    }
}
