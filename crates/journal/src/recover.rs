//! Getting a scheduler's state back from its journal, and compacting the
//! journal down to what is kept.

use crate::format::{read_records, write_atomically, ReadSummary};
use crate::{JournalError, JournalLock, Record};
use quarry_core::{Core, CoreConfig};
use quarry_proto::{ClientId, ClientSession, JobId};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// What a journal held besides the core's jobs.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Client sessions that may be resumed, by id.
    pub sessions: BTreeMap<ClientId, ClientSession>,
    /// The lowest client id never given out.
    pub next_client: u32,
    /// Kept jobs whose manifest was written.
    pub manifests_written: BTreeSet<JobId>,
    /// What reading found (records, a torn tail).
    pub read: ReadSummary,
}

/// Replays the journal at `path` into `core` (a new core that has handled
/// no event), and returns the sessions and manifests it recorded. Call
/// [`Core::finish_replay`] afterwards. A missing journal is an empty one.
pub fn recover(path: &Path, core: &mut Core) -> Result<Recovery, JournalError> {
    let mut recovery = Recovery {
        next_client: 1,
        ..Recovery::default()
    };
    recovery.read = read_records(path, |record| match record {
        Record::Changes(changes) => {
            for change in changes {
                core.replay(change);
            }
        }
        Record::Session(session) => {
            recovery.next_client = recovery.next_client.max(session.id.0.saturating_add(1));
            recovery.sessions.insert(session.id, session);
        }
        Record::NextClient(next) => recovery.next_client = recovery.next_client.max(next),
        Record::ManifestWritten(job) => {
            recovery.manifests_written.insert(job);
        }
    })?;
    // Dropped jobs need no memory of their manifests.
    recovery
        .manifests_written
        .retain(|&job| core.job_info(job, 0).is_some());
    Ok(recovery)
}

/// The records of a compacted journal: the client-id mark, the sessions
/// still to keep, every kept job (one record each) and the manifests
/// already written among them.
pub fn snapshot_records<'a>(
    core: &Core,
    next_client: u32,
    sessions: impl IntoIterator<Item = &'a ClientSession>,
    manifests_written: impl IntoIterator<Item = JobId>,
) -> Vec<Record> {
    let mut records = vec![Record::NextClient(next_client)];
    records.extend(sessions.into_iter().copied().map(Record::Session));
    records.extend(
        core.snapshot()
            .into_iter()
            .map(|change| Record::Changes(vec![change])),
    );
    records.extend(
        manifests_written
            .into_iter()
            .filter(|&job| core.job_info(job, 0).is_some())
            .map(Record::ManifestWritten),
    );
    records
}

/// What a compaction did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compacted {
    /// The journal's length before.
    pub bytes_before: u64,
    /// Its length after.
    pub bytes_after: u64,
    /// Jobs kept.
    pub jobs: usize,
    /// Their tasks.
    pub tasks: usize,
    /// Bytes of a torn tail that were dropped.
    pub torn_bytes: u64,
}

/// Rewrites the journal at `path` (which no scheduler may be using) as a
/// snapshot of what it keeps, atomically: the records of dropped jobs go,
/// and so do the attempts of finished tasks.
pub fn compact(path: &Path) -> Result<Compacted, JournalError> {
    let _lock = JournalLock::acquire(path)?;
    let bytes_before = std::fs::metadata(path)
        .map_err(JournalError::io(path, "read its size"))?
        .len();
    let mut core = Core::new(CoreConfig::default());
    let recovery = recover(path, &mut core)?;
    let records = snapshot_records(
        &core,
        recovery.next_client,
        recovery.sessions.values(),
        recovery.manifests_written.iter().copied(),
    );
    let restored = core.finish_replay(0, &mut Vec::new());
    let bytes_after = write_atomically(path, &records)?;
    Ok(Compacted {
        bytes_before,
        bytes_after,
        jobs: restored.jobs,
        tasks: restored.tasks,
        torn_bytes: recovery.read.torn_bytes,
    })
}
