//! The journal file on a real disk: records come back in order, a journal
//! cut anywhere loses at most the records after the cut, unknown versions
//! and foreign files are errors, the writer syncs and publishes what is
//! durable, compaction keeps exactly what is kept, one process at a time.

use proptest::prelude::*;
use quarry_core::{Change, Command, Core, CoreConfig, Event, Retention};
use quarry_journal::format::{encode_record, header, read_records, HEADER_LEN};
use quarry_journal::{
    compact, recover, JournalError, JournalLock, JournalWriter, Record, WriterOptions,
};
use quarry_proto::{
    ClientId, ClientSession, EncodedTask, JobId, JobSpec, RequestId, TaskId, TaskOutcome,
    TaskReport, TaskSpec, TaskStats, Value, WorkerId,
};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn session(id: u32) -> ClientSession {
    ClientSession {
        id: ClientId(id),
        secret: 0xfeed_0000 + u64::from(id),
    }
}

/// Distinct records of varied sizes.
fn sample_records(n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| match i % 3 {
            0 => Record::Session(session(i as u32 + 1)),
            1 => Record::ManifestWritten(JobId(i as u64)),
            _ => Record::Changes(vec![Change::JobSealed {
                job: JobId(i as u64 * 1000),
            }]),
        })
        .collect()
}

fn write_file(path: &Path, records: &[Record]) -> Vec<u64> {
    let mut bytes = header().to_vec();
    let mut ends = Vec::new();
    for record in records {
        encode_record(record, &mut bytes).unwrap();
        ends.push(bytes.len() as u64);
    }
    std::fs::write(path, bytes).unwrap();
    ends
}

fn read_all(path: &Path) -> (Vec<Record>, quarry_journal::ReadSummary) {
    let mut records = Vec::new();
    let summary = read_records(path, |r| records.push(r)).unwrap();
    (records, summary)
}

#[test]
fn records_come_back_in_order_and_a_missing_file_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    assert_eq!(read_all(&path).0, Vec::new());
    let records = sample_records(30);
    write_file(&path, &records);
    let (back, summary) = read_all(&path);
    assert_eq!(back, records);
    assert_eq!((summary.records, summary.torn_bytes), (30, 0));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A journal cut at any offset (a crash mid-write) reads back every
    /// record that ended before the cut and nothing else; a writer opened
    /// on it cuts the tail away and appends after the last good record.
    #[test]
    fn a_journal_cut_anywhere_loses_at_most_the_records_after_the_cut(
        n in 1usize..40,
        cut in any::<prop::sample::Index>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let records = sample_records(n);
        let ends = write_file(&path, &records);
        let full = *ends.last().unwrap();
        let cut = cut.index(full as usize + 1) as u64;
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(cut).unwrap();
        drop(file);

        let (back, summary) = read_all(&path);
        let whole = ends.iter().filter(|&&end| end <= cut).count();
        prop_assert_eq!(&back[..], &records[..whole]);
        let good = if whole == 0 { HEADER_LEN.min(cut) } else { ends[whole - 1] };
        let good = if cut < HEADER_LEN { 0 } else { good };
        prop_assert_eq!(summary.good_len, good);
        prop_assert_eq!(summary.torn_bytes, cut - good);

        let lock = JournalLock::acquire(&path).unwrap();
        let mut writer = JournalWriter::start(lock, summary.good_len, WriterOptions::default()).unwrap();
        let extra = Record::NextClient(77);
        writer.append(vec![extra.clone()], true);
        writer.close().unwrap();
        let (again, summary) = read_all(&path);
        prop_assert_eq!(summary.torn_bytes, 0);
        prop_assert_eq!(again.last(), Some(&extra));
        prop_assert_eq!(&again[..whole], &records[..whole]);
    }

    /// A flipped byte anywhere in the records ends the reading at the
    /// record it hit (its checksum fails), or is a clear error when the
    /// flip left a record whose checksum still matches (never a panic).
    #[test]
    fn a_corrupt_byte_cuts_the_journal_back_to_the_last_good_record(
        n in 2usize..20,
        at in any::<prop::sample::Index>(),
        value in any::<u8>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let records = sample_records(n);
        let ends = write_file(&path, &records);
        let mut bytes = std::fs::read(&path).unwrap();
        let i = HEADER_LEN as usize + at.index(bytes.len() - HEADER_LEN as usize);
        prop_assume!(bytes[i] != value);
        bytes[i] = value;
        std::fs::write(&path, &bytes).unwrap();
        let mut back = Vec::new();
        if let Ok(summary) = read_records(&path, |r| back.push(r)) {
            let hit = ends.iter().position(|&end| end as usize > i).unwrap();
            prop_assert!(back.len() <= hit + 1);
            prop_assert_eq!(&back[..hit.min(back.len())], &records[..hit.min(back.len())]);
            prop_assert!(summary.good_len <= ends[hit] || back.len() == n);
        }
    }
}

#[test]
fn an_unknown_version_or_a_foreign_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    let mut bytes = header().to_vec();
    bytes[8] = 9;
    std::fs::write(&path, &bytes).unwrap();
    let error = read_records(&path, |_| {}).unwrap_err();
    assert!(matches!(
        error,
        JournalError::UnknownVersion {
            found: 9,
            supported: 1,
            ..
        }
    ));
    assert!(error.to_string().contains("format version 9"), "{error}");

    std::fs::write(&path, b"name,value\nx,1\n").unwrap();
    let error = read_records(&path, |_| {}).unwrap_err();
    assert!(matches!(error, JournalError::NotAJournal { .. }), "{error}");
}

#[test]
fn an_intact_record_that_does_not_decode_is_an_error_not_a_cut() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    let mut bytes = header().to_vec();
    let payload = [0xc1u8, 0xc1];
    bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    bytes.extend_from_slice(&payload);
    std::fs::write(&path, &bytes).unwrap();
    let error = read_records(&path, |_| {}).unwrap_err();
    assert!(
        matches!(error, JournalError::Undecodable { offset: 16, .. }),
        "{error}"
    );
}

#[test]
fn one_process_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/journal");
    let lock = JournalLock::acquire(&path).unwrap();
    let error = JournalLock::acquire(&path).unwrap_err();
    assert!(error.to_string().contains("in use"), "{error}");
    assert!(matches!(compact(&path), Err(JournalError::InUse { .. })));
    drop(lock);
    JournalLock::acquire(&path).unwrap();
}

#[test]
fn the_writer_syncs_at_once_when_asked_and_within_the_interval_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    let lock = JournalLock::acquire(&path).unwrap();
    let mut writer = JournalWriter::start(
        lock,
        0,
        WriterOptions {
            flush_interval: Duration::from_millis(200),
        },
    )
    .unwrap();
    let mut state = writer.state();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let wait_for = |state: &mut tokio::sync::watch::Receiver<_>, seq: u64| {
        runtime.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(10),
                state.wait_for(|s: &quarry_journal::WriterState| s.synced >= seq),
            )
            .await
            .expect("synced in time")
            .expect("writer alive")
            .clone()
        })
    };
    let first = writer.append(sample_records(3), true);
    assert_eq!(wait_for(&mut state, first).synced, first);
    let second = writer.append(sample_records(2), false);
    let synced = wait_for(&mut state, second);
    assert_eq!(synced.synced, second);
    assert!(synced.failed.is_none());
    // What was written is readable by another reader while the writer
    // holds the file.
    assert_eq!(read_all(&path).0.len(), 5);
    writer.close().unwrap();
}

/// Runs `jobs` sequential jobs of `tasks` tasks on one worker, with
/// every durable change appended to a journal as the scheduler would.
fn run_jobs_into(writer: &mut JournalWriter, core: &mut Core, jobs: u64, tasks: u64) {
    let mut out = Vec::new();
    let mut now = 1;
    core.handle(
        now,
        Event::WorkerJoined {
            worker: WorkerId(1),
            name: "w1".into(),
            slots: 1,
            functions: vec!["f".into()],
            inventory: Vec::new(),
            host: String::new(),
        },
        &mut out,
    );
    let client = ClientId(1);
    for j in 0..jobs {
        let job = JobId(JobId::first_for(client).0 + j);
        let spec = JobSpec {
            id: job,
            name: format!("job-{j}"),
            broadcast: Vec::new(),
            output: None,
            context: Vec::new(),
            max_fails: None,
        };
        core.handle(
            now,
            Event::JobOpened {
                client,
                request: RequestId(0),
                spec: Arc::new(spec),
            },
            &mut out,
        );
        let specs: Vec<TaskSpec> = (0..tasks)
            .map(|t| {
                TaskSpec::new(
                    TaskId(TaskId::first_for(client).0 + j * tasks + t),
                    "f",
                    vec![],
                )
            })
            .collect();
        core.handle(
            now,
            Event::TasksSubmitted {
                client,
                request: RequestId(0),
                job,
                tasks: specs
                    .iter()
                    .map(|spec| EncodedTask::encode(spec).expect("encodable"))
                    .collect(),
            },
            &mut out,
        );
        core.handle(
            now,
            Event::JobSealed {
                client,
                request: RequestId(0),
                job,
            },
            &mut out,
        );
        loop {
            let runs: Vec<_> = out
                .iter()
                .filter_map(|c| match c {
                    Command::Run { run, .. } => Some((run.task.id(), run.attempt)),
                    _ => None,
                })
                .collect();
            flush(writer, &mut out);
            if runs.is_empty() {
                break;
            }
            for (task, attempt) in runs {
                now += 1;
                core.handle(
                    now,
                    Event::TaskFinished {
                        worker: WorkerId(1),
                        report: TaskReport {
                            task,
                            attempt,
                            outcome: TaskOutcome::Ok(Value::Inline(vec![0x2a])),
                            outputs: Vec::new(),
                            stats: TaskStats::default(),
                        },
                    },
                    &mut out,
                );
            }
        }
        now += 1;
        core.handle(now, Event::Tick, &mut out);
        flush(writer, &mut out);
    }
}

fn flush(writer: &mut JournalWriter, out: &mut Vec<Command>) {
    let changes: Vec<Change> = out
        .drain(..)
        .filter_map(|c| match c {
            Command::Record(change) => Some(change),
            _ => None,
        })
        .collect();
    if !changes.is_empty() {
        writer.append(vec![Record::Changes(changes)], false);
    }
}

#[test]
fn compaction_keeps_exactly_what_is_kept_and_shrinks_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    let config = CoreConfig {
        record_changes: true,
        retention: Retention {
            max_age_ms: None,
            max_jobs: Some(3),
        },
        ..CoreConfig::default()
    };
    let lock = JournalLock::acquire(&path).unwrap();
    let mut writer = JournalWriter::start(lock, 0, WriterOptions::default()).unwrap();
    writer.append(vec![Record::Session(session(1))], false);
    let mut core = Core::new(config.clone());
    run_jobs_into(&mut writer, &mut core, 20, 50);
    writer.close().unwrap();

    let mut replayed = Core::new(config.clone());
    let before = recover(&path, &mut replayed).unwrap();
    assert_eq!(before.sessions.len(), 1);
    assert_eq!(before.next_client, 2);
    let kept: Vec<_> = core.jobs(0).into_iter().map(|j| j.id).collect();
    assert_eq!(kept.len(), 3);

    let compacted = compact(&path).unwrap();
    assert_eq!((compacted.jobs, compacted.tasks), (3, 150));
    assert!(
        compacted.bytes_after * 3 < compacted.bytes_before,
        "{compacted:?}"
    );
    let mut again = Core::new(config);
    let after = recover(&path, &mut again).unwrap();
    assert_eq!(after.sessions, before.sessions);
    assert_eq!(after.next_client, 2);
    again.finish_replay(0, &mut Vec::new());
    replayed.finish_replay(0, &mut Vec::new());
    assert_eq!(again.jobs(0), replayed.jobs(0));
    assert_eq!(again.dropped_jobs(), 17);
    for job in kept {
        assert_eq!(
            again.results(job, None, 1000),
            replayed.results(job, None, 1000)
        );
    }
}
