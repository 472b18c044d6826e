//! The writer thread: takes batches of records from the scheduler loop
//! over a channel, so the loop never waits on the disk.
//!
//! Group commit: whatever batches are waiting are written with one
//! `write`, so a record reaches the operating system (and survives the
//! scheduler being killed) moments after the loop made it. `fdatasync`
//! follows at once when a batch asks for it (a submission, a seal), and
//! otherwise at most `flush_interval` after the first unsynced write, so
//! that a machine crash loses at most that much. Each sync publishes the
//! sequence number of the last batch it covers; the shell holds back its
//! acknowledgements until then.

use crate::format::{encode_record, open_for_append, write_atomically};
use crate::{JournalError, JournalLock, Record};
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tracing::{debug, error};

/// How the writer flushes.
#[derive(Clone, Copy, Debug)]
pub struct WriterOptions {
    /// Longest time between a write and its `fdatasync`.
    pub flush_interval: Duration,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            flush_interval: Duration::from_secs(1),
        }
    }
}

/// What the writer has done, published after every sync.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriterState {
    /// Every batch up to this sequence number is on disk.
    pub synced: u64,
    /// The journal file's length.
    pub bytes: u64,
    /// Compactions done.
    pub compactions: u64,
    /// Why the writer stopped, if it did: nothing after `synced` is
    /// durable, and nothing more will be.
    pub failed: Option<String>,
}

enum Op {
    Append {
        seq: u64,
        records: Vec<Record>,
        sync_now: bool,
    },
    Compact {
        seq: u64,
        records: Vec<Record>,
    },
}

/// The sending side of the writer thread. Dropping it (or
/// [`JournalWriter::close`]) writes and syncs what is pending, then stops
/// the thread.
pub struct JournalWriter {
    ops: Option<mpsc::Sender<Op>>,
    last_seq: u64,
    state: watch::Receiver<WriterState>,
    thread: Option<JoinHandle<()>>,
}

impl JournalWriter {
    /// Opens the locked journal for appending after its last good record
    /// (`good_len`, from reading it: a torn tail is cut away) and starts
    /// the writer thread.
    pub fn start(
        lock: JournalLock,
        good_len: u64,
        options: WriterOptions,
    ) -> Result<JournalWriter, JournalError> {
        let path = lock.path().to_path_buf();
        let file = open_for_append(&path, good_len)?;
        let bytes = file
            .metadata()
            .map_err(JournalError::io(&path, "read its size"))?
            .len();
        let (ops, inbox) = mpsc::channel();
        let (publish, state) = watch::channel(WriterState {
            bytes,
            ..WriterState::default()
        });
        let thread = Thread {
            path: path.clone(),
            file,
            _lock: lock,
            inbox,
            publish,
            options,
            buffer: Vec::with_capacity(1 << 20),
            written_seq: 0,
            state: WriterState {
                bytes,
                ..WriterState::default()
            },
            unsynced_since: None,
            sync_requested: false,
        };
        let thread = std::thread::Builder::new()
            .name("quarry-journal".into())
            .spawn(move || thread.run())
            .map_err(JournalError::io(&path, "start its writer thread"))?;
        Ok(JournalWriter {
            ops: Some(ops),
            last_seq: 0,
            state,
            thread: Some(thread),
        })
    }

    /// Queues records to append; returns the batch's sequence number.
    /// `sync_now` asks for an `fdatasync` as soon as it is written.
    pub fn append(&mut self, records: Vec<Record>, sync_now: bool) -> u64 {
        self.last_seq += 1;
        self.send(Op::Append {
            seq: self.last_seq,
            records,
            sync_now,
        });
        self.last_seq
    }

    /// Queues a compaction: the journal is replaced, atomically, by
    /// `records` (a snapshot of everything kept, taken after the batches
    /// queued before it). Returns its sequence number.
    pub fn compact(&mut self, records: Vec<Record>) -> u64 {
        self.last_seq += 1;
        self.send(Op::Compact {
            seq: self.last_seq,
            records,
        });
        self.last_seq
    }

    fn send(&self, op: Op) {
        // A stopped thread has published why; the state says so.
        if let Some(ops) = &self.ops {
            let _ = ops.send(op);
        }
    }

    /// The sequence number of the last batch queued.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// What the writer has done so far (changes after every sync).
    pub fn state(&self) -> watch::Receiver<WriterState> {
        self.state.clone()
    }

    /// Writes and syncs everything queued, then stops the thread.
    pub fn close(mut self) -> Result<(), JournalError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), JournalError> {
        self.ops = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        match &self.state.borrow().failed {
            Some(reason) => Err(JournalError::WriterStopped(reason.clone())),
            None => Ok(()),
        }
    }
}

impl Drop for JournalWriter {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

struct Thread {
    path: PathBuf,
    file: File,
    _lock: JournalLock,
    inbox: mpsc::Receiver<Op>,
    publish: watch::Sender<WriterState>,
    options: WriterOptions,
    buffer: Vec<u8>,
    /// The last batch handed to the operating system.
    written_seq: u64,
    state: WriterState,
    /// When the oldest write not yet synced happened.
    unsynced_since: Option<Instant>,
    sync_requested: bool,
}

impl Thread {
    fn run(mut self) {
        if let Err(e) = self.serve() {
            error!(journal = %self.path.display(), "{e}");
            self.state.failed = Some(e.to_string());
            self.publish.send_replace(self.state.clone());
        }
        debug!("journal writer stopped");
    }

    fn serve(&mut self) -> Result<(), JournalError> {
        loop {
            let op = match self.unsynced_since {
                Some(since) => {
                    let due = since + self.options.flush_interval;
                    let wait = due.saturating_duration_since(Instant::now());
                    match self.inbox.recv_timeout(wait) {
                        Ok(op) => Some(op),
                        Err(mpsc::RecvTimeoutError::Timeout) => None,
                        Err(mpsc::RecvTimeoutError::Disconnected) => return self.sync(),
                    }
                }
                None => match self.inbox.recv() {
                    Ok(op) => Some(op),
                    Err(_) => return Ok(()),
                },
            };
            if let Some(op) = op {
                self.take(op)?;
                while let Ok(op) = self.inbox.try_recv() {
                    self.take(op)?;
                }
                self.write_out()?;
            }
            let due = self
                .unsynced_since
                .is_some_and(|since| since.elapsed() >= self.options.flush_interval);
            if self.sync_requested || due {
                self.sync()?;
            }
        }
    }

    fn take(&mut self, op: Op) -> Result<(), JournalError> {
        match op {
            Op::Append {
                seq,
                records,
                sync_now,
            } => {
                for record in &records {
                    encode_record(record, &mut self.buffer).map_err(JournalError::WriterStopped)?;
                }
                self.written_seq = seq;
                self.sync_requested |= sync_now;
                Ok(())
            }
            Op::Compact { seq, records } => {
                // The snapshot holds everything written before it.
                self.buffer.clear();
                let bytes = write_atomically(&self.path, &records)?;
                self.file = open_for_append(&self.path, bytes)?;
                self.written_seq = seq;
                self.state.bytes = bytes;
                self.state.compactions += 1;
                self.unsynced_since = None;
                self.sync_requested = false;
                self.state.synced = seq;
                self.publish.send_replace(self.state.clone());
                Ok(())
            }
        }
    }

    fn write_out(&mut self) -> Result<(), JournalError> {
        if self.buffer.is_empty() {
            if self.written_seq > self.state.synced && self.unsynced_since.is_none() {
                // Batches without records: nothing to write, but their
                // sequence numbers must still be published.
                self.unsynced_since = Some(Instant::now());
            }
            return Ok(());
        }
        self.file
            .write_all(&self.buffer)
            .map_err(JournalError::io(&self.path, "append"))?;
        self.state.bytes += self.buffer.len() as u64;
        self.buffer.clear();
        self.unsynced_since.get_or_insert_with(Instant::now);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), JournalError> {
        self.write_out()?;
        if self.written_seq == self.state.synced {
            self.unsynced_since = None;
            self.sync_requested = false;
            return Ok(());
        }
        self.file
            .sync_data()
            .map_err(JournalError::io(&self.path, "fdatasync"))?;
        self.state.synced = self.written_seq;
        self.unsynced_since = None;
        self.sync_requested = false;
        self.publish.send_replace(self.state.clone());
        Ok(())
    }
}
