//! The shell's side of the journal: what one turn of the loop changed
//! goes to the writer thread as one batch, and the answers that promise
//! durability (`Accepted`, a new session's `Welcome`) wait until the
//! writer says their batch is on disk. The journal is compacted once the
//! records of dropped jobs are most of it.

use crate::peers::Peers;
use quarry_core::{Change, Core};
use quarry_journal::{
    recover, snapshot_records, JournalError, JournalLock, JournalWriter, Record, Recovery,
    WriterOptions, WriterState,
};
use quarry_net::PeerId;
use quarry_proto::{ClientId, JobId, Message};
use std::collections::{BTreeSet, VecDeque};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::watch;
use tracing::info;

/// Where the journal is and how often it is synced.
#[derive(Clone, Debug)]
pub struct JournalConfig {
    /// The journal file (created if missing).
    pub path: PathBuf,
    /// Longest time between a record's write and its `fdatasync`.
    pub flush_interval: Duration,
}

impl JournalConfig {
    /// A journal at `path`, synced at least every second.
    pub fn new(path: impl Into<PathBuf>) -> JournalConfig {
        JournalConfig {
            path: path.into(),
            flush_interval: Duration::from_secs(1),
        }
    }
}

/// A journal this small is never compacted.
const COMPACT_MIN_BYTES: u64 = 16 << 20;

/// Who a held message is for.
#[derive(Clone, Debug)]
pub(crate) enum Target {
    /// A connection (a Welcome, before the session is registered).
    Peer(PeerId),
    /// A client session, wherever it is connected by then.
    Client(ClientId),
}

/// A message and whom it is for.
pub(crate) type Held = (Target, Message);

pub(crate) struct Journaling {
    writer: JournalWriter,
    state: watch::Receiver<WriterState>,
    /// This turn's core changes.
    changes: Vec<Change>,
    /// This turn's other records.
    records: Vec<Record>,
    /// Messages to send once this turn's batch is on disk.
    waiting: Vec<Held>,
    /// Messages waiting for the sync of the batch with their number.
    held: VecDeque<(u64, Vec<Held>)>,
    /// Kept finished jobs whose manifest was written.
    manifests_written: BTreeSet<JobId>,
    /// The core's dropped-task count at the last compaction.
    dropped_at_compaction: u64,
    path: PathBuf,
}

impl Journaling {
    /// Locks the journal, replays it into `core` (which has handled no
    /// event yet; call [`Core::finish_replay`] next) and starts its
    /// writer after the last good record.
    pub(crate) fn open(
        config: &JournalConfig,
        core: &mut Core,
    ) -> Result<(Journaling, Recovery), JournalError> {
        let lock = JournalLock::acquire(&config.path)?;
        let recovery = recover(&config.path, core)?;
        let writer = JournalWriter::start(
            lock,
            recovery.read.good_len,
            WriterOptions {
                flush_interval: config.flush_interval,
            },
        )?;
        let journaling = Journaling {
            state: writer.state(),
            writer,
            changes: Vec::new(),
            records: Vec::new(),
            waiting: Vec::new(),
            held: VecDeque::new(),
            manifests_written: recovery.manifests_written.clone(),
            dropped_at_compaction: 0,
            path: config.path.clone(),
        };
        Ok((journaling, recovery))
    }

    /// A core change of this turn.
    pub(crate) fn change(&mut self, change: Change) {
        self.changes.push(change);
    }

    /// A record of this turn that the shell itself makes.
    pub(crate) fn record(&mut self, record: Record) {
        self.records.push(record);
    }

    /// Sends `message` once everything recorded so far is on disk.
    pub(crate) fn send_when_durable(&mut self, target: Target, message: Message) {
        self.waiting.push((target, message));
    }

    /// A job's manifest was written.
    pub(crate) fn manifest_written(&mut self, job: JobId) {
        self.manifests_written.insert(job);
        self.record(Record::ManifestWritten(job));
    }

    /// Kept finished jobs whose manifest was written before a restart.
    pub(crate) fn has_manifest(&self, job: JobId) -> bool {
        self.manifests_written.contains(&job)
    }

    /// A job was dropped: its manifest needs no memory.
    pub(crate) fn job_dropped(&mut self, job: JobId) {
        self.manifests_written.remove(&job);
    }

    /// Hands this turn's records to the writer as one batch (synced at
    /// once if answers wait for it); returns the waiting answers that need
    /// not wait because nothing they depend on is unsynced.
    pub(crate) fn end_turn(&mut self) -> Vec<Held> {
        let mut batch = std::mem::take(&mut self.records);
        if !self.changes.is_empty() {
            batch.insert(0, Record::Changes(std::mem::take(&mut self.changes)));
        }
        if batch.is_empty() && self.waiting.is_empty() {
            return Vec::new();
        }
        if batch.is_empty() && self.writer.last_seq() <= self.state.borrow().synced {
            return std::mem::take(&mut self.waiting);
        }
        let sync_now = !self.waiting.is_empty();
        let seq = self.writer.append(batch, sync_now);
        if sync_now {
            self.held
                .push_back((seq, std::mem::take(&mut self.waiting)));
        }
        Vec::new()
    }

    /// Waits until the writer publishes progress.
    pub(crate) async fn progressed(&mut self) {
        if self.state.changed().await.is_err() {
            // The writer is gone; its last state says why.
            std::future::pending::<()>().await
        }
    }

    /// The answers whose batches are now on disk, or why the journal
    /// stopped.
    pub(crate) fn durable(&mut self) -> Result<Vec<Held>, JournalError> {
        let state = self.state.borrow_and_update().clone();
        if let Some(reason) = state.failed {
            return Err(JournalError::WriterStopped(reason));
        }
        let mut ready = Vec::new();
        while self
            .held
            .front()
            .is_some_and(|(seq, _)| *seq <= state.synced)
        {
            ready.extend(self.held.pop_front().expect("checked").1);
        }
        Ok(ready)
    }

    /// Writes and syncs what is pending, and stops the writer.
    pub(crate) fn close(mut self) -> Result<(), JournalError> {
        let _ = self.end_turn();
        self.writer.close()
    }

    /// The journal's length and compactions so far.
    pub(crate) fn stats(&self) -> WriterState {
        self.state.borrow().clone()
    }

    /// Rewrites the journal as a snapshot once the records of dropped jobs
    /// are most of it (and it is big enough to matter). Call after
    /// [`Journaling::end_turn`], so the snapshot follows every batch.
    pub(crate) fn compact_if_due(&mut self, core: &Core, peers: &Peers) {
        let dead = core.dropped_tasks() - self.dropped_at_compaction;
        let bytes = self.state.borrow().bytes;
        if bytes < COMPACT_MIN_BYTES || dead <= core.task_count() as u64 {
            return;
        }
        info!(
            journal = %self.path.display(),
            bytes,
            dropped_tasks = dead,
            kept_tasks = core.task_count(),
            "compacting the journal: dropped jobs are most of it"
        );
        let records = snapshot_records(
            core,
            peers.next_client(),
            &peers.sessions(),
            self.manifests_written.iter().copied(),
        );
        self.writer.compact(records);
        self.dropped_at_compaction = core.dropped_tasks();
    }
}
