use quarry_core::Change;
use quarry_proto::{ClientSession, JobId};
use serde::{Deserialize, Serialize};

/// One journal record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Record {
    /// The core's durable changes from one turn of the scheduler loop, in
    /// order; replayed with [`quarry_core::Core::replay`].
    Changes(Vec<Change>),
    /// A client session was opened: a client presenting it gets its id
    /// (and with it its task and job ids) back after a restart.
    Session(ClientSession),
    /// Client ids below this were given out (kept by compaction, which
    /// drops the sessions of clients long gone): a restarted scheduler
    /// never gives a used id to a new client.
    NextClient(u32),
    /// A finished job's manifest was written; jobs that finished without
    /// one get theirs written after a restart.
    ManifestWritten(JobId),
}
