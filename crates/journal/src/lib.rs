//! The scheduler's journal: an append-only file from which a restarted
//! scheduler gets back every job, every finished result and every client
//! session.
//!
//! It owns the file format ([`format`]: a versioned header, then records
//! that are each length-prefixed and CRC32-checksummed MessagePack), the
//! [`Record`]s themselves (batches of the core's durable
//! [`quarry_core::Change`]s, client sessions, written manifests), the
//! writer thread ([`JournalWriter`]: group commit, `fdatasync` at least
//! every flush interval and at once when asked), recovery ([`recover`]:
//! replaying into a [`quarry_core::Core`], cutting a torn tail back to the
//! last good record) and compaction ([`compact`]: rewriting the file,
//! atomically, as a snapshot of what is kept).
//!
//! It must not make scheduling decisions or touch sockets: what a record
//! means is the core's business, when to write one is the scheduler
//! shell's.

#![warn(missing_docs)]

mod error;
pub mod format;
mod lock;
mod record;
mod recover;
mod writer;

pub use error::JournalError;
pub use format::{ReadSummary, FORMAT_VERSION};
pub use lock::JournalLock;
pub use record::Record;
pub use recover::{compact, recover, snapshot_records, Compacted, Recovery};
pub use writer::{JournalWriter, WriterOptions, WriterState};
