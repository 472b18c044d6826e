//! Replays the `decode_frame` fuzz corpus (fuzz/corpus/decode_frame) and the
//! inputs the fuzzer once failed on (fuzz/regressions/decode_frame) as plain
//! `cargo test` cases, with the same property the fuzz target checks
//! (fuzz/checks/frame.rs): decoding never panics, and what decodes
//! round-trips.
//!
//! File names say what is expected of a file:
//! - `valid-KIND.msgpack`: a frame holding one message of each kind, made
//!   by [`seeds`] below; it must decode to exactly that message;
//! - `invalid-WHAT.bin`: a hand-made hostile frame that must be refused;
//! - any other name (inputs the fuzzer found): must not panic.
//!
//! When the wire format changes on purpose, rewrite the seeds with
//! `QUARRY_BLESS_CORPUS=1 cargo test -p quarry-proto --test corpus` (and
//! bump `PROTOCOL_VERSION`: old peers cannot read the new frames).

#[path = "../../../fuzz/checks/frame.rs"]
mod frame;

use quarry_proto::*;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};

fn fuzz_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz")
        .join(kind)
        .join("decode_frame")
}

/// Every file of a corpus directory, sorted; a missing directory is empty.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .filter(|path| path.extension().is_none_or(|ext| ext != "md"))
        .collect();
    files.sort();
    files
}

fn data_ref(url: &str) -> DataRef {
    DataRef {
        url: url.into(),
        pin: Pin::ETag("\"9b2cf535f27731c974343645a3985328\"".into()),
        size: 1 << 20,
        range: Some(ByteRange {
            start: 4096,
            end: 8192,
        }),
    }
}

fn task() -> TaskSpec {
    TaskSpec {
        id: TaskId(1 << 40 | 7),
        key: "00007".into(),
        function: "quarry.command".into(),
        args: vec![0x92, 0x01, 0x02],
        args_ref: Some(DataRef {
            pin: Pin::Unpinned,
            range: None,
            ..data_ref("s3://staging/sha256/ab")
        }),
        inputs: vec![data_ref("s3://corpus/books/a.txt")],
        params_json: "{\"lr\":0.1}".into(),
        priority: -3,
        retries: 2,
        timeout_ms: Some(30_000),
        cpus: 2,
        replica_hosts: vec!["dn-1.example.com".into()],
    }
}

fn job_spec() -> Arc<JobSpec> {
    Arc::new(JobSpec {
        id: JobId(1 << 40 | 1),
        name: "wordcount".into(),
        broadcast: vec![(
            "model".into(),
            DataRef {
                pin: Pin::Version("v3".into()),
                ..data_ref("file:///data/model.bin")
            },
        )],
        output: Some("s3://results/wordcount/".into()),
        context: vec![0x81, 0xa4, b'a', b'r', b'g', b'v', 0x90],
        max_fails: Some(5),
    })
}

fn stats() -> TaskStats {
    TaskStats {
        duration_ms: 12,
        bytes_from_cache: 4096,
        bytes_from_store: 0,
        cache_hits: 1,
        cache_misses: 0,
    }
}

fn job_info() -> JobInfo {
    JobInfo {
        id: JobId(1 << 40 | 1),
        name: "wordcount".into(),
        state: JobState::Running,
        counts: JobCounts {
            total: 10,
            queued: 2,
            assigned: 1,
            running: 1,
            done: 5,
            failed: 1,
            cancelled: 0,
        },
        tasks_local: 6,
        tasks_remote: 1,
        stats: stats(),
        elapsed_ms: 1234,
    }
}

fn session() -> ClientSession {
    ClientSession {
        id: ClientId(1),
        secret: 0x5eed_cafe_f00d_d00d,
    }
}

/// One message of every kind, named by [`Message::kind`].
fn seeds() -> Vec<Message> {
    let entry = CacheEntry {
        object_key: data_ref("s3://corpus/books/a.txt").object_key(),
        ranges: vec![
            ByteRange {
                start: 0,
                end: 8 << 20,
            },
            ByteRange {
                start: 16 << 20,
                end: 20 << 20,
            },
        ],
    };
    let failed = TaskOutcome::Err(TaskError {
        kind: ErrorKind::TimedOut,
        message: "task ran longer than its 30000 ms timeout".into(),
    });
    vec![
        Message::Hello {
            version: PROTOCOL_VERSION,
            role: Role::Worker,
            name: "host-0".into(),
            slots: 4,
            functions: vec!["inc".into(), "quarry.command".into()],
            inventory: vec![entry.clone()],
            host: "host-0.example.com".into(),
            resume: None,
        },
        Message::Welcome {
            version: PROTOCOL_VERSION,
            client: Some(session()),
            resumed: true,
            worker: None,
            limits: Limits::default(),
            heartbeat_ms: 1000,
        },
        Message::Rejected {
            reason: "protocol version 9 is not supported".into(),
            fatal: true,
        },
        Message::Heartbeat,
        Message::TaskStarted {
            task: TaskId(7),
            attempt: 1,
        },
        Message::TaskFinished(TaskReport {
            task: TaskId(7),
            attempt: 2,
            outcome: TaskOutcome::Ok(Value::Inline(vec![0x2a])),
            outputs: vec!["s3://results/wordcount/00007/counts.json".into()],
            stats: stats(),
        }),
        Message::CacheDelta {
            added: vec![entry],
            evicted: vec![CacheEntry::whole("s3://corpus/books/b.txt#etag=\"1\"", 10)],
        },
        Message::Draining,
        Message::Drained,
        Message::Job(job_spec()),
        Message::Run(RunTask {
            job: JobId(1 << 40 | 1),
            task: EncodedTask::encode(&task()).expect("encodable"),
            attempt: 1,
        }),
        Message::CancelTask { task: TaskId(7) },
        Message::Drain,
        Message::DrainWorker {
            request: RequestId(9),
            worker: "host-3".into(),
        },
        Message::Goodbye {
            request: RequestId(10),
        },
        Message::OpenJob {
            request: RequestId(1),
            spec: job_spec(),
        },
        Message::Submit {
            request: RequestId(2),
            job: JobId(1 << 40 | 1),
            tasks: vec![
                EncodedTask::encode(&task()).expect("encodable"),
                EncodedTask::encode(&TaskSpec::new(TaskId(1 << 40 | 8), "inc", vec![0x05]))
                    .expect("encodable"),
            ],
        },
        Message::SealJob {
            request: RequestId(3),
            job: JobId(1 << 40 | 1),
        },
        Message::Cancel {
            request: RequestId(4),
            tasks: vec![TaskId(7), TaskId(8)],
        },
        Message::CancelJob {
            request: RequestId(5),
            job: JobId(1 << 40 | 1),
        },
        Message::Release {
            tasks: vec![TaskId(7)],
        },
        Message::Watch {
            request: RequestId(6),
            job: JobId(1 << 40 | 1),
        },
        Message::Resume {
            request: RequestId(7),
            tasks: vec![TaskId(1 << 40 | 7), TaskId(1 << 40 | 8)],
        },
        Message::ListJobs {
            request: RequestId(8),
        },
        Message::ListWorkers {
            request: RequestId(9),
        },
        Message::GetResults {
            request: RequestId(10),
            job: JobId(1 << 40 | 1),
            after: Some(TaskId(7)),
            limit: 5000,
        },
        Message::Accepted {
            request: RequestId(2),
        },
        Message::Refused {
            request: RequestId(3),
            reason: "job j1099511627777 is sealed: no tasks can be added; open a new job".into(),
        },
        Message::TaskDone {
            task: TaskId(7),
            outcome: TaskOutcome::Ok(Value::Ref(data_ref(
                "s3://results/wordcount/00007/_result.msgpack",
            ))),
        },
        Message::JobProgress(job_info()),
        Message::Jobs {
            request: RequestId(8),
            jobs: vec![job_info()],
            dropped: 12,
        },
        Message::Workers {
            request: RequestId(9),
            workers: vec![WorkerInfo {
                id: WorkerId(1),
                name: "host-0".into(),
            }],
        },
        Message::Results {
            request: RequestId(10),
            job: JobId(1 << 40 | 1),
            rows: vec![TaskStatus {
                id: TaskId(7),
                key: "00007".into(),
                params_json: "{}".into(),
                inputs: vec![data_ref("s3://corpus/in/a.txt")],
                state: "failed".into(),
                outcome: Some(failed),
                outputs: Vec::new(),
                worker: Some("host-0".into()),
                attempts: 3,
                stats: stats(),
            }],
            more: false,
        },
        Message::Error {
            message: "a submission of 10001 tasks exceeds the cap".into(),
        },
    ]
}

fn valid_frame(message: &Message) -> Vec<u8> {
    encode(
        &Envelope {
            messages: vec![message.clone()],
        },
        &Limits::default(),
    )
    .unwrap()
}

/// Hand-made hostile frames that every peer must refuse without panicking.
fn hostile() -> Vec<(&'static str, Vec<u8>)> {
    let hello = valid_frame(&seeds()[0]);
    let submit = valid_frame(&seeds()[11]);
    vec![
        ("empty", Vec::new()),
        ("nil", vec![0xc0]),
        ("reserved-byte", vec![0xc1]),
        ("truncated-hello", hello[..hello.len() / 2].to_vec()),
        ("truncated-submit", submit[..submit.len() - 1].to_vec()),
        // An envelope claiming 2^32-1 messages in a 6-byte frame.
        ("huge-array-claim", vec![0x91, 0xdd, 0xff, 0xff, 0xff, 0xff]),
        // A string claiming 4 GiB inside an Error message.
        (
            "huge-string-claim",
            [
                &[0x91, 0x91, 0x81, 0xa5][..],
                b"Error",
                &[0x91, 0xdb, 0xff, 0xff, 0xff, 0xff],
            ]
            .concat(),
        ),
        // Nested arrays deeper than any message type.
        ("deep-nesting", vec![0x91; 4096]),
        // A variant name no peer knows.
        (
            "unknown-variant",
            [&[0x91, 0x91, 0xa7][..], b"Unknown"].concat(),
        ),
        // Invalid UTF-8 where Rejected.reason is a string.
        (
            "invalid-utf8",
            [
                &[0x91, 0x91, 0x81, 0xa8][..],
                b"Rejected",
                &[0x92, 0xa2, 0xff, 0xfe, 0xc3],
            ]
            .concat(),
        ),
        // A Hello whose version is a negative number.
        (
            "negative-version",
            [
                &[0x91, 0x91, 0x81, 0xa5][..],
                b"Hello",
                &[0x96, 0xff, 0xa6],
                b"Worker",
                &[0xa1, b'w', 0x01, 0x90, 0x90],
            ]
            .concat(),
        ),
        // Just over the default frame cap.
        (
            "oversize",
            vec![0x90; Limits::default().max_frame_bytes + 1],
        ),
    ]
}

/// Writes the seeds when `QUARRY_BLESS_CORPUS=1`, once per test run (the
/// tests run in parallel and must not read a half-written file).
fn bless_if_asked() {
    static BLESSED: Once = Once::new();
    BLESSED.call_once(|| {
        if std::env::var_os("QUARRY_BLESS_CORPUS").is_some_and(|v| v == "1") {
            bless();
        }
    });
}

fn bless() {
    let dir = fuzz_dir("corpus");
    std::fs::create_dir_all(&dir).unwrap();
    for message in seeds() {
        let path = dir.join(format!("valid-{}.msgpack", message.kind()));
        std::fs::write(path, valid_frame(&message)).unwrap();
    }
    for (name, bytes) in hostile() {
        // The oversize frame is built in the test, not checked in.
        if name != "oversize" {
            std::fs::write(dir.join(format!("invalid-{name}.bin")), bytes).unwrap();
        }
    }
}

#[test]
fn every_seed_decodes_to_the_message_it_was_made_from() {
    bless_if_asked();
    let dir = fuzz_dir("corpus");
    for message in seeds() {
        let path = dir.join(format!("valid-{}.msgpack", message.kind()));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; write the seeds with QUARRY_BLESS_CORPUS=1",
                path.display()
            )
        });
        let envelope = frame::check_frame(&bytes).unwrap_or_else(|| {
            panic!(
                "{} no longer decodes: the wire format changed (bump PROTOCOL_VERSION and \
                 rewrite the seeds with QUARRY_BLESS_CORPUS=1)",
                path.display()
            )
        });
        assert_eq!(envelope.messages, vec![message], "{}", path.display());
    }
}

#[test]
fn hostile_frames_are_refused() {
    bless_if_asked();
    for (name, bytes) in hostile() {
        assert!(
            frame::check_frame(&bytes).is_none(),
            "the hostile frame `{name}` was accepted"
        );
    }
    let checked_in = files(&fuzz_dir("corpus"))
        .into_iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("invalid-")
        })
        .count();
    assert_eq!(
        checked_in,
        hostile().len() - 1,
        "one file per hostile frame"
    );
}

#[test]
fn every_corpus_and_regression_input_decodes_without_panicking() {
    bless_if_asked();
    let corpus = files(&fuzz_dir("corpus"));
    assert!(
        corpus.len() >= seeds().len(),
        "the corpus at {} is missing its seeds",
        fuzz_dir("corpus").display()
    );
    let mut failures = Vec::new();
    for path in corpus.iter().chain(&files(&fuzz_dir("regressions"))) {
        let bytes = std::fs::read(path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        match catch_unwind(AssertUnwindSafe(|| frame::check_frame(&bytes))) {
            Err(_) => failures.push(format!("{name}: panicked")),
            Ok(None) if name.starts_with("valid-") => {
                failures.push(format!("{name}: refused, but it is a valid seed"))
            }
            Ok(Some(_)) if name.starts_with("invalid-") => {
                failures.push(format!("{name}: accepted, but it is a hostile frame"))
            }
            Ok(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
