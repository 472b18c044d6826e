//! Hostile and careless peers cannot disturb a running scheduler, and every
//! limit answers its sender with an error that says which cap it hit.
//!
//! A real scheduler and worker processes serve a real client over TCP
//! loopback while raw ZeroMQ DEALER sockets (the `zmq` crate, no quarry code
//! on the sending side) throw random bytes, truncated frames, multipart junk,
//! oversize frames, floods of Hellos with wrong versions and forged task
//! reports at it. The job must still complete with every result correct,
//! and the scheduler must keep serving newcomers.
//!
//! The scheduler runs without CURVE here (loopback only), so that junk
//! reaches the decoder instead of stopping at the handshake; with CURVE the
//! same junk would have to come from an authorized key.
//!
//! Build the binary first: `cargo build -p quarry-cli`.

use quarry::{Client, ClientError, ClientOptions, JobOptions};
use quarry_integration::{quarry_bin, worker_args, CapturedProcess};
use quarry_proto::{
    decode, encode, ClientId, EncodedTask, Envelope, ErrorKind, JobId, Limits, Message, RequestId,
    Role, TaskError, TaskId, TaskOutcome, TaskReport, TaskSpec, TaskStats, Value, PROTOCOL_VERSION,
};
use rand::{Rng, RngCore, SeedableRng};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a process or a raw peer may take to do what a test waits for. A
/// bound on setup, not an assertion: it normally takes well under a second.
const LIMIT: Duration = Duration::from_secs(60);

// ----- processes -----

/// A running `quarry` process; its stdout and stderr are captured.
fn start(name: &str, args: &[String]) -> CapturedProcess {
    let mut command = Command::new(quarry_bin());
    command
        .args(args)
        .env_remove("QUARRY_SERVER_KEY")
        .env_remove("QUARRY_KEY_FILE")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    CapturedProcess::spawn(name, command, LIMIT).unwrap()
}

/// A scheduler on a free loopback port with extra flags; returns it and its
/// endpoint.
fn scheduler(extra: &[&str]) -> (CapturedProcess, String) {
    let mut args: Vec<String> = [
        "scheduler",
        "--listen",
        "tcp://127.0.0.1:0",
        "--dashboard",
        "none",
    ]
    .map(String::from)
    .to_vec();
    args.extend(extra.iter().map(|a| a.to_string()));
    let process = start("scheduler", &args);
    let endpoint = process.wait_for_scheduler_endpoint();
    (process, endpoint)
}

fn worker(endpoint: &str, name: &str, cache: &std::path::Path) -> CapturedProcess {
    start(name, &worker_args(endpoint, name, cache))
}

async fn connect(endpoint: &str) -> Client {
    let mut options = ClientOptions::new(endpoint);
    options.handshake_timeout = LIMIT;
    Client::connect_with(options).await.unwrap()
}

async fn wait_for_workers(client: &Client, n: usize) {
    let deadline = Instant::now() + LIMIT;
    while client.workers().await.unwrap().len() < n {
        assert!(Instant::now() < deadline, "{n} workers did not register");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ----- raw peers -----

/// A DEALER socket speaking to the scheduler with no quarry code in between.
struct RawPeer {
    socket: zmq::Socket,
}

impl RawPeer {
    fn connect(context: &zmq::Context, endpoint: &str) -> RawPeer {
        let socket = context.socket(zmq::DEALER).unwrap();
        socket.set_linger(0).unwrap();
        socket.set_sndhwm(100_000).unwrap();
        socket.set_rcvtimeo(100).unwrap();
        socket.connect(endpoint).unwrap();
        RawPeer { socket }
    }

    fn send_frame(&self, frame: &[u8]) {
        self.socket.send(frame, 0).unwrap();
    }

    fn send(&self, messages: Vec<Message>) {
        let limits = Limits {
            max_frame_bytes: usize::MAX,
            ..Limits::default()
        };
        self.send_frame(&encode(&Envelope { messages }, &limits).unwrap());
    }

    /// Everything that arrives within `wait`, decoded.
    fn drain(&self, wait: Duration) -> Vec<Message> {
        let deadline = Instant::now() + wait;
        let mut received = Vec::new();
        while Instant::now() < deadline {
            if let Ok(frame) = self.socket.recv_bytes(0) {
                received.extend(decode(&frame, &Limits::default()).unwrap().messages);
            }
        }
        received
    }

    /// Waits for the first message `want` accepts.
    fn wait_for(&self, what: &str, want: impl Fn(&Message) -> bool) -> Message {
        let deadline = Instant::now() + LIMIT;
        while Instant::now() < deadline {
            let Ok(frame) = self.socket.recv_bytes(0) else {
                continue;
            };
            let envelope = decode(&frame, &Limits::default()).unwrap();
            if let Some(found) = envelope.messages.into_iter().find(|m| want(m)) {
                return found;
            }
        }
        panic!("no {what} arrived");
    }

    /// Says Hello as a client (again every second: a Hello sent while the
    /// socket reconnects is lost) and returns the client id from the Welcome.
    fn hello_as_client(&self) -> ClientId {
        let deadline = Instant::now() + LIMIT;
        while Instant::now() < deadline {
            self.send(vec![hello(PROTOCOL_VERSION, Role::Client)]);
            let welcome = self
                .drain(Duration::from_secs(1))
                .into_iter()
                .find_map(|m| match m {
                    Message::Welcome {
                        client: Some(session),
                        ..
                    } => Some(session.id),
                    _ => None,
                });
            if let Some(id) = welcome {
                return id;
            }
        }
        panic!("no Welcome arrived");
    }
}

fn hello(version: u32, role: Role) -> Message {
    Message::Hello {
        version,
        role,
        name: "raw".into(),
        slots: 1,
        functions: Vec::new(),
        inventory: Vec::new(),
        host: String::new(),
        resume: None,
    }
}

/// A task sleeping 1 ms (`1` is a one-byte MessagePack integer).
fn sleep_task(id: TaskId) -> EncodedTask {
    EncodedTask::encode(&TaskSpec::new(id, "sleep_ms", vec![1])).unwrap()
}

// ----- hostile peers during a job -----

/// What the hostile thread saw.
#[derive(Debug, Default)]
struct Barrage {
    frames_sent: usize,
    version_rejections: usize,
    hello_first_rejections: usize,
}

/// Sends junk of every kind at `endpoint` until `stop` is set (or a bounded
/// number of rounds has passed), from several raw peers.
fn barrage(endpoint: &str, client: ClientId, tasks: u64, stop: &AtomicBool) -> Barrage {
    let context = zmq::Context::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let mut seen = Barrage::default();
    let junk = RawPeer::connect(&context, endpoint);
    let flood = RawPeer::connect(&context, endpoint);
    let stranger = RawPeer::connect(&context, endpoint);
    let forger = RawPeer::connect(&context, endpoint);
    // A peer that registers as a worker serving nothing, then reports
    // results for tasks it was never given: the client's own task ids.
    forger.send(vec![hello(PROTOCOL_VERSION, Role::Worker)]);
    forger.wait_for("Welcome", |m| matches!(m, Message::Welcome { .. }));
    let first_task = TaskId::first_for(client).0 + 1;

    let valid: Vec<Vec<u8>> = [
        vec![hello(PROTOCOL_VERSION, Role::Worker)],
        vec![Message::Submit {
            request: RequestId(1),
            job: JobId::first_for(client),
            tasks: (0..20)
                .map(|i| sleep_task(TaskId(first_task + i)))
                .collect(),
        }],
        vec![Message::TaskFinished(forged_report(TaskId(first_task), 1))],
    ]
    .into_iter()
    .map(|messages| encode(&Envelope { messages }, &Limits::default()).unwrap())
    .collect();

    for round in 0..40 {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        // Random bytes.
        for _ in 0..50 {
            let mut frame = vec![0u8; rng.random_range(0..2048)];
            rng.fill_bytes(&mut frame);
            junk.send_frame(&frame);
        }
        // Truncated and bit-flipped valid frames.
        for _ in 0..50 {
            let mut frame = valid[rng.random_range(0..valid.len())].clone();
            frame.truncate(rng.random_range(0..frame.len()));
            if !frame.is_empty() && rng.random_bool(0.5) {
                let at = rng.random_range(0..frame.len());
                frame[at] ^= 1 << rng.random_range(0..8);
            }
            junk.send_frame(&frame);
        }
        // Multipart junk.
        for _ in 0..20 {
            let parts: Vec<Vec<u8>> = (0..rng.random_range(2..6))
                .map(|_| {
                    let mut part = vec![0u8; rng.random_range(0..256)];
                    rng.fill_bytes(&mut part);
                    part
                })
                .collect();
            junk.socket.send_multipart(parts, 0).unwrap();
        }
        // A flood of Hellos with wrong versions.
        for _ in 0..100 {
            let version = loop {
                let v: u32 = rng.random();
                if v != PROTOCOL_VERSION {
                    break v;
                }
            };
            let role = if rng.random_bool(0.5) {
                Role::Worker
            } else {
                Role::Client
            };
            flood.send(vec![hello(version, role)]);
        }
        // Messages from a peer that never said Hello.
        for i in 0..20 {
            stranger.send(vec![Message::TaskFinished(forged_report(
                TaskId(first_task + i),
                1,
            ))]);
        }
        // Forged results for tasks another worker runs.
        for i in 0..tasks {
            forger.send(vec![Message::TaskFinished(forged_report(
                TaskId(first_task + i),
                1 + round % 3,
            ))]);
        }
        // Now and then a frame over the cap (the scheduler drops the
        // connection; ZeroMQ reconnects the socket by itself).
        if round % 10 == 0 {
            let oversize = RawPeer::connect(&context, endpoint);
            oversize.send_frame(&vec![0x90; Limits::default().max_frame_bytes * 2]);
            seen.frames_sent += 1;
        }
        seen.frames_sent += 50 + 50 + 20 + 100 + 20 + tasks as usize;
        for message in flood.drain(Duration::from_millis(10)) {
            if let Message::Rejected { reason, fatal } = message {
                assert!(fatal, "{reason}");
                assert!(reason.contains("protocol version"), "{reason}");
                seen.version_rejections += 1;
            }
        }
        for message in stranger.drain(Duration::from_millis(10)) {
            if let Message::Rejected { reason, fatal } = message {
                assert!(!fatal && reason.contains("Hello"), "{reason}");
                seen.hello_first_rejections += 1;
            }
        }
        junk.drain(Duration::ZERO);
        forger.drain(Duration::ZERO);
    }
    seen
}

/// A report claiming task `task` succeeded with 999.
fn forged_report(task: TaskId, attempt: u32) -> TaskReport {
    TaskReport {
        task,
        attempt,
        outcome: TaskOutcome::Ok(Value::Inline(msgpack_u16(999))),
        outputs: Vec::new(),
        stats: TaskStats::default(),
    }
}

/// `n` as a MessagePack uint16.
fn msgpack_u16(n: u16) -> Vec<u8> {
    let [hi, lo] = n.to_be_bytes();
    vec![0xcd, hi, lo]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_completes_correctly_while_hostile_peers_send_junk() {
    let cache = tempfile::tempdir().unwrap();
    let (mut scheduler, endpoint) = scheduler(&[]);
    let workers = [
        worker(&endpoint, "steady-0", cache.path()),
        worker(&endpoint, "steady-1", cache.path()),
    ];
    let client = connect(&endpoint).await;
    wait_for_workers(&client, 2).await;

    let stop = Arc::new(AtomicBool::new(false));
    let hostile = {
        let (endpoint, stop, id) = (endpoint.clone(), stop.clone(), client.id());
        std::thread::spawn(move || barrage(&endpoint, id, 2_000, &stop))
    };
    let durations: Vec<u64> = (0..2_000u64).map(|i| 1 + i % 5).collect();
    let futures = client
        .map::<u64, u64, _>("sleep_ms", durations.iter().copied())
        .unwrap();
    let results = client.gather(futures).await.unwrap();
    stop.store(true, Ordering::Relaxed);
    let seen = hostile.join().expect("the hostile peers' thread panicked");
    eprintln!("hostile peers: {seen:?}");

    assert_eq!(results, durations, "a result was lost or forged");
    assert!(seen.version_rejections > 0, "{seen:?}");
    assert!(seen.hello_first_rejections > 0, "{seen:?}");
    scheduler.assert_running();

    // The scheduler still serves newcomers, and knows only real workers.
    let newcomer = connect(&endpoint).await;
    let echoed = newcomer
        .gather(newcomer.map::<i64, i64, _>("echo", 0..100).unwrap())
        .await
        .unwrap();
    assert_eq!(echoed, (0..100).collect::<Vec<i64>>());
    let names: Vec<String> = newcomer
        .workers()
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.name)
        .collect();
    assert!(names.contains(&"steady-0".to_string()), "{names:?}");
    assert!(names.contains(&"steady-1".to_string()), "{names:?}");
    scheduler.assert_running();
    for worker in workers {
        worker.stop();
    }
    scheduler.stop();
}

// ----- limits -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inline_argument_over_the_cap_is_refused_naming_the_cap() {
    let cache = tempfile::tempdir().unwrap();
    let (mut scheduler, endpoint) = scheduler(&["--max-inline-bytes", "1KiB"]);
    let steady = worker(&endpoint, "steady", cache.path());
    let client = connect(&endpoint).await;
    assert_eq!(client.limits().max_inline_bytes, 1024);

    // The client refuses before sending, naming the cap and what to do.
    let big = "x".repeat(2_000);
    let error = client.submit::<String, String>("echo", &big).err().unwrap();
    assert!(
        matches!(error, ClientError::TooLarge { cap: 1024, .. }),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(text.contains("limits.max_inline_bytes"), "{text}");
    assert!(text.contains("1024"), "{text}");
    let error = client
        .map::<String, String, _>("echo", ["small".to_string(), big.clone()])
        .err()
        .unwrap();
    assert!(matches!(error, ClientError::TooLarge { .. }), "{error:?}");

    // A peer that skips the client's check is refused by the scheduler.
    let context = zmq::Context::new();
    let raw = RawPeer::connect(&context, &endpoint);
    let id = raw.hello_as_client();
    let mut task = TaskSpec::new(TaskId(TaskId::first_for(id).0 + 1), "echo", vec![0; 2_000]);
    task.key = "too-big".into();
    raw.send(vec![Message::Submit {
        request: RequestId(1),
        job: JobId::first_for(id),
        tasks: vec![EncodedTask::encode(&task).unwrap()],
    }]);
    let refusal = raw.wait_for("Refused", |m| matches!(m, Message::Refused { .. }));
    let Message::Refused {
        request: RequestId(1),
        reason: message,
    } = refusal
    else {
        panic!("not the answer to the submission: {refusal:?}")
    };
    assert!(message.contains("limits.max_inline_bytes"), "{message}");

    // Small arguments still work, for this client and others.
    let echoed: String = client
        .submit("echo", &"small".to_string())
        .unwrap()
        .result()
        .await
        .unwrap();
    assert_eq!(echoed, "small");
    scheduler.assert_running();
    steady.stop();
    scheduler.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submission_over_the_task_cap_is_refused_and_the_scheduler_keeps_serving() {
    let cache = tempfile::tempdir().unwrap();
    let (mut scheduler, endpoint) = scheduler(&["--max-tasks-per-submit", "100"]);
    let steady = worker(&endpoint, "steady", cache.path());

    let context = zmq::Context::new();
    let raw = RawPeer::connect(&context, &endpoint);
    let id = raw.hello_as_client();
    let first = TaskId::first_for(id).0 + 1;
    raw.send(vec![Message::Submit {
        request: RequestId(1),
        job: JobId::first_for(id),
        tasks: (0..101).map(|i| sleep_task(TaskId(first + i))).collect(),
    }]);
    let refusal = raw.wait_for("Refused or TaskDone", |m| {
        matches!(m, Message::Refused { .. } | Message::TaskDone { .. })
    });
    match refusal {
        Message::Refused {
            request: RequestId(1),
            reason: message,
        } => {
            assert!(message.contains("limits.max_tasks_per_submit"), "{message}");
            assert!(
                message.contains("101") && message.contains("100"),
                "{message}"
            );
        }
        Message::TaskDone {
            outcome: TaskOutcome::Err(TaskError { kind, message }),
            ..
        } => {
            assert_eq!(kind, ErrorKind::Rejected, "{message}");
            assert!(message.contains("limits.max_tasks_per_submit"), "{message}");
        }
        other => panic!("the oversize submission was not refused: {other:?}"),
    }

    // The library client learns the cap from the Welcome and splits its
    // submissions to fit.
    let client = connect(&endpoint).await;
    assert_eq!(client.limits().max_tasks_per_submit, 100);
    let echoed = client
        .gather(client.map::<i64, i64, _>("echo", 0..250).unwrap())
        .await
        .unwrap();
    assert_eq!(echoed, (0..250).collect::<Vec<i64>>());
    scheduler.assert_running();
    steady.stop();
    scheduler.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_over_the_cap_is_refused_naming_the_cap_and_the_scheduler_keeps_serving() {
    let cache = tempfile::tempdir().unwrap();
    let (mut scheduler, endpoint) = scheduler(&["--max-frame-bytes", "64KiB"]);
    let steady = worker(&endpoint, "steady", cache.path());
    let client = connect(&endpoint).await;
    assert_eq!(client.limits().max_frame_bytes, 64 * 1024);

    // The client refuses a message that cannot fit in a frame, naming the
    // frame cap.
    let error = client
        .open_job(JobOptions {
            name: "huge context".into(),
            context: vec![0; 100 * 1024],
            ..JobOptions::default()
        })
        .err()
        .unwrap();
    let text = error.to_string();
    assert!(text.contains("limits.max_frame_bytes"), "{text}");
    assert!(text.contains("65536"), "{text}");

    // A raw peer that sends one anyway is cut off by ZeroMQ before the
    // frame is buffered; the scheduler carries on, and the peer can
    // reconnect and say Hello again.
    let context = zmq::Context::new();
    let raw = RawPeer::connect(&context, &endpoint);
    raw.hello_as_client();
    raw.send_frame(&vec![0x90; 100 * 1024]);
    let again = raw.hello_as_client();
    assert!(again.0 > 0);

    let echoed = client
        .gather(client.map::<i64, i64, _>("echo", 0..50).unwrap())
        .await
        .unwrap();
    assert_eq!(echoed, (0..50).collect::<Vec<i64>>());
    scheduler.assert_running();
    steady.stop();
    scheduler.stop();
}

/// The resident memory of process `pid`, in bytes.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .expect("no VmRSS line");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmRSS in kB");
    kib * 1024
}

/// Says Hello as a worker registering `functions` and returns the reason
/// of the Rejected that must answer it.
fn hello_refused(raw: &RawPeer, name: &str, functions: Vec<String>) -> String {
    raw.send(vec![Message::Hello {
        version: PROTOCOL_VERSION,
        role: Role::Worker,
        name: name.into(),
        slots: 1,
        functions,
        inventory: Vec::new(),
        host: String::new(),
        resume: None,
    }]);
    let answer = raw.wait_for("Rejected or Welcome", |m| {
        matches!(m, Message::Rejected { .. } | Message::Welcome { .. })
    });
    match answer {
        Message::Rejected { reason, fatal } => {
            assert!(fatal, "{reason}");
            reason
        }
        other => panic!("an oversized Hello was welcomed: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_hellos_are_refused_naming_the_cap_and_leave_memory_flat() {
    let cache = tempfile::tempdir().unwrap();
    let (mut scheduler, endpoint) = scheduler(&[]);
    let steady = worker(&endpoint, "steady", cache.path());
    let client = connect(&endpoint).await;
    wait_for_workers(&client, 1).await;
    let echoed = client
        .gather(client.map::<i64, i64, _>("echo", 0..100).unwrap())
        .await
        .unwrap();
    assert_eq!(echoed, (0..100).collect::<Vec<i64>>());
    let baseline = rss_bytes(scheduler.id());

    // Ten Hellos, each under the 1 MiB frame cap, listing 60,000 unique
    // function names.
    let context = zmq::Context::new();
    for peer in 0..10 {
        let raw = RawPeer::connect(&context, &endpoint);
        let functions = (0..60_000).map(|n| format!("f{peer}-{n:08}")).collect();
        let reason = hello_refused(&raw, &format!("greedy-{peer}"), functions);
        assert!(
            reason.contains("60000 functions") && reason.contains("(max_worker_functions)"),
            "{reason}"
        );
    }
    // A name far over the length cap.
    let raw = RawPeer::connect(&context, &endpoint);
    let reason = hello_refused(&raw, "long", vec!["x".repeat(500_000)]);
    assert!(reason.contains("(max_name_bytes)"), "{reason}");
    let reason = hello_refused(&raw, &"n".repeat(500_000), Vec::new());
    assert!(reason.contains("peer name"), "{reason}");

    let after = rss_bytes(scheduler.id());
    assert!(
        after < baseline + 20 * 1024 * 1024,
        "the scheduler went from {baseline} to {after} bytes resident"
    );

    // It still serves, and knows only the real worker.
    let echoed = client
        .gather(client.map::<i64, i64, _>("echo", 0..100).unwrap())
        .await
        .unwrap();
    assert_eq!(echoed, (0..100).collect::<Vec<i64>>());
    let names: Vec<String> = client
        .workers()
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.name)
        .collect();
    assert_eq!(names, vec!["steady".to_string()]);
    scheduler.assert_running();
    steady.stop();
    scheduler.stop();
}

/// What a fake worker that never starts its tasks was sent.
#[derive(Debug, Default)]
struct Stuck {
    runs: usize,
    cancels: usize,
}

/// A raw worker serving `echo` that heartbeats every 200 ms but never
/// starts what it is sent, until `stop` is set. `ready` gets its Welcome.
fn stuck_worker(endpoint: &str, ready: std::sync::mpsc::Sender<()>, stop: &AtomicBool) -> Stuck {
    let context = zmq::Context::new();
    let raw = RawPeer::connect(&context, endpoint);
    raw.send(vec![Message::Hello {
        version: PROTOCOL_VERSION,
        role: Role::Worker,
        name: "stuck".into(),
        slots: 4,
        functions: vec!["echo".into()],
        inventory: Vec::new(),
        host: String::new(),
        resume: None,
    }]);
    raw.wait_for("Welcome", |m| matches!(m, Message::Welcome { .. }));
    ready.send(()).unwrap();
    let mut seen = Stuck::default();
    while !stop.load(Ordering::Relaxed) {
        raw.send(vec![Message::Heartbeat]);
        for message in raw.drain(Duration::from_millis(200)) {
            match message {
                Message::Run(_) => seen.runs += 1,
                Message::CancelTask { .. } => seen.cancels += 1,
                _ => {}
            }
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_a_heartbeating_worker_never_starts_go_back_after_the_start_deadline() {
    let cache = tempfile::tempdir().unwrap();
    // Only the start deadline can take the tasks back: the stuck worker
    // heartbeats, and silence would take ten minutes to notice anyway.
    let (mut scheduler, endpoint) =
        scheduler(&["--start-deadline", "2s", "--heartbeat-timeout", "10m"]);
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let stuck = {
        let (endpoint, stop) = (endpoint.clone(), stop.clone());
        std::thread::spawn(move || stuck_worker(&endpoint, ready_tx, &stop))
    };
    ready.recv_timeout(LIMIT).unwrap();
    let client = connect(&endpoint).await;
    wait_for_workers(&client, 1).await;
    // Every task goes to the only worker, the stuck one.
    let futures = client.map::<i64, i64, _>("echo", 0..20).unwrap();
    let steady = worker(&endpoint, "steady", cache.path());
    let results = tokio::time::timeout(LIMIT, client.gather(futures))
        .await
        .expect("the stuck worker held the job")
        .unwrap();
    assert_eq!(results, (0..20).collect::<Vec<i64>>());
    stop.store(true, Ordering::Relaxed);
    let seen = stuck.join().expect("the stuck worker's thread panicked");
    assert!(seen.runs > 0, "the stuck worker was sent nothing: {seen:?}");
    assert_eq!(seen.cancels, seen.runs, "told to drop each: {seen:?}");
    scheduler.assert_running();
    steady.stop();
    scheduler.stop();
}
