//! Authentication, roles and secrets, on real `quarry` processes over TCP
//! loopback with keys from `quarry keygen`.
//!
//! - A scheduler started with `--keys` admits only the CURVE keys listed in
//!   its `authorized-clients` and `authorized-workers` files, each only in
//!   its role; everyone else is refused at once with an authentication
//!   error (never left waiting).
//! - One key holds at most `max_connections_per_peer` sessions; other keys
//!   are not affected.
//! - A scheduler refuses to listen beyond loopback without keys unless told
//!   `--insecure`.
//! - Secrets (the AWS secret key, CURVE secret keys) never show up in logs,
//!   error messages, status answers or the dashboard.
//!
//! Build the binary first: `cargo build -p quarry-cli`. The secrets test also
//! needs MinIO (`scripts/minio.sh`).

use futures::TryStreamExt;
use quarry::parts::net::curve::decode_key;
use quarry::parts::net::{CurveClientKeys, KeyPair};
use quarry::parts::store::{Secret, StoreConfig, StoreResolver};
use quarry::{Client, ClientError, ClientOptions, DataRef, JobOptions, Pin};
use quarry_integration::{quarry_bin, worker_args, CapturedProcess, MinioServer};
use quarry_proto::{decode, encode, Envelope, Limits, Message, Role, PROTOCOL_VERSION};
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a process may take to print what a test waits for, or to exit
/// when it must. A bound on setup, not an assertion: it normally takes well
/// under a second.
const PROCESS_LIMIT: Duration = Duration::from_secs(60);

/// How long a client waits for the handshake. Refusals must arrive as
/// authentication errors long before this; a timeout fails the test.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(30);

// ----- processes -----

/// A running `quarry` process whose output is captured.
fn quarry_process(name: &str, args: &[String], env: &[(&str, String)]) -> CapturedProcess {
    spawn_captured(name, &quarry_bin(), args, env)
}

/// A running `program` whose output is captured, with no key settings
/// inherited from the test's environment.
fn spawn_captured(
    name: &str,
    program: &Path,
    args: &[String],
    env: &[(&str, String)],
) -> CapturedProcess {
    let mut command = Command::new(program);
    command
        .args(args)
        .env_remove("QUARRY_SERVER_KEY")
        .env_remove("QUARRY_KEY_FILE")
        .env_remove("QUARRY_KEYS")
        .env("NO_COLOR", "1")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    CapturedProcess::spawn(name, command, PROCESS_LIMIT)
        .unwrap_or_else(|e| panic!("cannot start {name} ({}): {e}", program.display()))
}

/// Writes a scheduler, a client and a worker key pair into `dir`, as an
/// operator would; returns what keygen printed.
fn keygen(dir: &Path) -> String {
    let output = Command::new(quarry_bin())
        .args(["keygen", "--out"])
        .arg(dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "quarry keygen failed:\n{text}");
    text
}

/// A scheduler on a free loopback port; `keys` enables CURVE.
fn scheduler(
    keys: Option<&Path>,
    extra: &[&str],
    env: &[(&str, String)],
) -> (CapturedProcess, String) {
    let mut args: Vec<String> = ["scheduler", "--listen", "tcp://127.0.0.1:0"]
        .map(String::from)
        .to_vec();
    if let Some(dir) = keys {
        args.push("--keys".into());
        args.push(dir.display().to_string());
    }
    if !extra.contains(&"--dashboard") {
        args.extend(["--dashboard".to_string(), "none".to_string()]);
    }
    args.extend(extra.iter().map(|a| a.to_string()));
    let process = quarry_process("scheduler", &args, env);
    let endpoint = process.wait_for_scheduler_endpoint();
    (process, endpoint)
}

/// A worker process with two slots; `keys` is (key directory, key file name).
fn worker(
    endpoint: &str,
    name: &str,
    cache: &Path,
    keys: Option<(&Path, &str)>,
    env: &[(&str, String)],
) -> CapturedProcess {
    let mut args = worker_args(endpoint, name, cache);
    if let Some((dir, key_file)) = keys {
        args.push("--server-key".into());
        args.push(dir.join("scheduler.pub").display().to_string());
        args.push("--key-file".into());
        args.push(dir.join(key_file).display().to_string());
    }
    quarry_process(name, &args, env)
}

/// Client-side keys: the scheduler's public key from `server_dir`, and the
/// key pair `key_file` from `key_dir`.
fn client_keys(server_dir: &Path, key_dir: &Path, key_file: &str) -> CurveClientKeys {
    let server = std::fs::read_to_string(server_dir.join("scheduler.pub")).unwrap();
    CurveClientKeys {
        server_public: decode_key(&server, "scheduler.pub").unwrap(),
        keypair: KeyPair::read(&key_dir.join(key_file)).unwrap(),
    }
}

fn client_options(endpoint: &str, keys: Option<CurveClientKeys>) -> ClientOptions {
    let mut options = ClientOptions::new(endpoint);
    options.handshake_timeout = HANDSHAKE_LIMIT;
    options.staging = None;
    match keys {
        Some(keys) => options.with_curve(keys),
        None => options,
    }
}

async fn connect(endpoint: &str, keys: Option<CurveClientKeys>) -> Result<Client, ClientError> {
    Client::connect_with(client_options(endpoint, keys)).await
}

/// A client with the `client.key` that `quarry keygen` wrote into `keys`.
async fn keyed_client(endpoint: &str, keys: &Path) -> Client {
    connect(endpoint, Some(client_keys(keys, keys, "client.key")))
        .await
        .unwrap()
}

/// Expects an authentication error (not a timeout, not success).
fn expect_auth_error(result: Result<Client, ClientError>, what: &str) -> String {
    match result {
        Err(ClientError::Auth(reason)) => reason,
        Err(other) => panic!("{what}: expected an authentication error, got: {other}"),
        Ok(_) => panic!("{what}: the scheduler admitted the client"),
    }
}

/// Waits until the scheduler lists `n` workers.
async fn wait_for_workers(client: &Client, n: usize) {
    let deadline = Instant::now() + PROCESS_LIMIT;
    while client.workers().await.unwrap().len() < n {
        assert!(Instant::now() < deadline, "{n} workers did not register");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ----- authentication and roles -----

#[tokio::test]
async fn a_client_without_keys_is_refused_with_an_authentication_error() {
    let keys = tempfile::tempdir().unwrap();
    keygen(keys.path());
    let (scheduler, endpoint) = scheduler(Some(keys.path()), &[], &[]);
    let reason = expect_auth_error(connect(&endpoint, None).await, "no keys");
    assert!(
        reason.contains("quarry keygen") && reason.contains("CURVE"),
        "the error should say how to get keys: {reason}"
    );
    // The refusal is not fatal to the scheduler: a keyed client still gets in.
    let client = keyed_client(&endpoint, keys.path()).await;
    assert!(client.workers().await.unwrap().is_empty());
    scheduler.stop();
}

#[tokio::test]
async fn a_client_with_an_unknown_key_is_refused_with_an_authentication_error() {
    let keys = tempfile::tempdir().unwrap();
    let rogue = tempfile::tempdir().unwrap();
    keygen(keys.path());
    keygen(rogue.path());
    let (scheduler, endpoint) = scheduler(Some(keys.path()), &[], &[]);
    let rogue_keys = client_keys(keys.path(), rogue.path(), "client.key");
    let reason = expect_auth_error(connect(&endpoint, Some(rogue_keys)).await, "unknown key");
    assert!(reason.contains("authorized"), "{reason}");
    // A client that trusts the wrong scheduler key cannot finish the
    // handshake either (it would be talking to an impostor).
    let wrong_server = client_keys(rogue.path(), keys.path(), "client.key");
    expect_auth_error(
        connect(&endpoint, Some(wrong_server)).await,
        "wrong server key",
    );
    let log = scheduler.stop();
    assert!(log.contains("rejected an unknown CURVE key"), "{log}");
}

#[tokio::test]
async fn a_worker_key_cannot_connect_as_a_client() {
    let keys = tempfile::tempdir().unwrap();
    keygen(keys.path());
    let (scheduler, endpoint) = scheduler(Some(keys.path()), &[], &[]);
    let as_worker = client_keys(keys.path(), keys.path(), "worker.key");
    let reason = expect_auth_error(connect(&endpoint, Some(as_worker)).await, "worker key");
    assert!(
        reason.contains("not authorized to connect as a Client"),
        "{reason}"
    );
    scheduler.stop();
}

#[tokio::test]
async fn a_client_key_cannot_register_as_a_worker() {
    let keys = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    keygen(keys.path());
    let (scheduler, endpoint) = scheduler(Some(keys.path()), &[], &[]);
    let mut impostor = worker(
        &endpoint,
        "impostor",
        cache.path(),
        Some((keys.path(), "client.key")),
        &[],
    );
    let status = impostor.wait_exit();
    let log = impostor.output();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("not authorized to connect as a Worker"),
        "{log}"
    );
    let client = keyed_client(&endpoint, keys.path()).await;
    assert!(client.workers().await.unwrap().is_empty());
    scheduler.stop();
}

#[tokio::test]
async fn a_worker_with_an_unknown_key_never_receives_a_task() {
    let keys = tempfile::tempdir().unwrap();
    let rogue = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    keygen(keys.path());
    keygen(rogue.path());
    let (scheduler, endpoint) = scheduler(Some(keys.path()), &[], &[]);
    let client = keyed_client(&endpoint, keys.path()).await;
    let futures = client.map::<i64, i64, _>("echo", 0..40).unwrap();

    // A worker with a key pair the scheduler never authorized (but the
    // right scheduler public key) is refused and gives up.
    std::fs::copy(
        keys.path().join("scheduler.pub"),
        rogue.path().join("scheduler.pub"),
    )
    .unwrap();
    let mut rogue_worker = worker(
        &endpoint,
        "rogue",
        cache.path(),
        Some((rogue.path(), "worker.key")),
        &[],
    );
    let status = rogue_worker.wait_exit();
    let rogue_log = rogue_worker.output();
    assert!(!status.success(), "{rogue_log}");
    assert!(rogue_log.contains("refused"), "{rogue_log}");
    assert!(client.workers().await.unwrap().is_empty());
    let jobs = client.jobs().await.unwrap();
    let job = jobs
        .iter()
        .find(|job| job.counts.total == 40)
        .expect("the client's job");
    assert_eq!(job.counts.queued, 40, "{job:?}");
    assert_eq!(
        job.counts.done + job.counts.running + job.counts.assigned,
        0,
        "{job:?}"
    );

    // The right worker runs them all.
    let good = worker(
        &endpoint,
        "good",
        cache.path(),
        Some((keys.path(), "worker.key")),
        &[],
    );
    let results = client.gather(futures).await.unwrap();
    assert_eq!(results, (0..40).collect::<Vec<i64>>());
    good.stop();
    scheduler.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_workers_sharing_one_key_all_join_under_a_low_connection_cap() {
    let keys = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    keygen(keys.path());
    // The documented deployment: every worker holds the same worker.key.
    // The per-key cap counts client connections only.
    let (scheduler, endpoint) =
        scheduler(Some(keys.path()), &["--max-connections-per-peer", "4"], &[]);
    let mut args = worker_args(&endpoint, "pool", cache.path());
    args.extend([
        "--nprocs".to_string(),
        "100".to_string(),
        "--server-key".to_string(),
        keys.path().join("scheduler.pub").display().to_string(),
        "--key-file".to_string(),
        keys.path().join("worker.key").display().to_string(),
    ]);
    let pool = quarry_process("pool", &args, &[]);
    let client = keyed_client(&endpoint, keys.path()).await;
    wait_for_workers(&client, 100).await;
    let results = client
        .gather(client.map::<i64, i64, _>("echo", 0..1_000).unwrap())
        .await
        .unwrap();
    assert_eq!(results, (0..1_000).collect::<Vec<i64>>());
    pool.stop();
    scheduler.stop();
}

#[tokio::test]
async fn with_the_right_keys_map_and_gather_work_through_curve() {
    let keys = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    keygen(keys.path());
    let (scheduler, endpoint) = scheduler(Some(keys.path()), &[], &[]);
    let workers: Vec<CapturedProcess> = (0..2)
        .map(|i| {
            worker(
                &endpoint,
                &format!("curve-{i}"),
                cache.path(),
                Some((keys.path(), "worker.key")),
                &[],
            )
        })
        .collect();
    let client = keyed_client(&endpoint, keys.path()).await;
    wait_for_workers(&client, 2).await;
    let futures = client.map::<i64, i64, _>("echo", 0..500).unwrap();
    let results = client.gather(futures).await.unwrap();
    assert_eq!(results, (0..500).collect::<Vec<i64>>());
    let mut names: Vec<String> = client
        .workers()
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.name)
        .collect();
    names.sort();
    assert_eq!(names, ["curve-0", "curve-1"]);
    for worker in workers {
        worker.stop();
    }
    let log = scheduler.stop();
    assert!(log.contains("curve=true"), "{log}");
}

// ----- connections per peer -----

/// A raw ZeroMQ DEALER (no quarry code) with the CURVE key pair `key_file`.
fn raw_curve_peer(
    context: &zmq::Context,
    endpoint: &str,
    keys: &Path,
    key_file: &str,
) -> zmq::Socket {
    let z85 = |text: &str| zmq::z85_decode(text.trim()).unwrap();
    let socket = context.socket(zmq::DEALER).unwrap();
    socket.set_linger(0).unwrap();
    socket.set_rcvtimeo(100).unwrap();
    let server = std::fs::read_to_string(keys.join("scheduler.pub")).unwrap();
    socket.set_curve_serverkey(&z85(&server)).unwrap();
    let pair = keys.join(key_file);
    socket
        .set_curve_publickey(&z85(&key_field(&pair, "public-key")))
        .unwrap();
    socket.set_curve_secretkey(&z85(&secret_of(&pair))).unwrap();
    socket.connect(endpoint).unwrap();
    socket
}

/// Says Hello as a client on `socket` (again every second, in case the
/// first went out before the connection was up) and returns the answer:
/// the Welcome or the Rejected.
fn raw_hello(socket: &zmq::Socket) -> Message {
    let hello = encode(
        &Envelope {
            messages: vec![Message::Hello {
                version: PROTOCOL_VERSION,
                role: Role::Client,
                name: "raw".into(),
                slots: 0,
                functions: Vec::new(),
                inventory: Vec::new(),
                host: String::new(),
                resume: None,
            }],
        },
        &Limits::default(),
    )
    .unwrap();
    let deadline = Instant::now() + PROCESS_LIMIT;
    while Instant::now() < deadline {
        socket.send(&hello[..], 0).unwrap();
        let second = Instant::now() + Duration::from_secs(1);
        while Instant::now() < second {
            let Ok(frame) = socket.recv_bytes(0) else {
                continue;
            };
            let answer = decode(&frame, &Limits::default())
                .unwrap()
                .messages
                .into_iter()
                .find(|m| matches!(m, Message::Welcome { .. } | Message::Rejected { .. }));
            if let Some(answer) = answer {
                return answer;
            }
        }
    }
    panic!("no answer to Hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_per_key_cap_are_refused_and_other_keys_keep_working() {
    let keys = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    keygen(keys.path());
    let second = Command::new(quarry_bin())
        .args(["keygen", "--role", "client", "--name", "second", "--out"])
        .arg(keys.path())
        .output()
        .unwrap();
    assert!(second.status.success(), "{second:?}");
    let config = keys.path().join("scheduler.toml");
    std::fs::write(&config, "max_connections_per_peer = 3\n").unwrap();
    let config = config.display().to_string();
    let (scheduler, endpoint) = scheduler(
        Some(keys.path()),
        &["--config", &config, "--heartbeat-timeout", "2s"],
        &[],
    );
    let steady = worker(
        &endpoint,
        "steady",
        cache.path(),
        Some((keys.path(), "worker.key")),
        &[],
    );

    // Three connections with one key are admitted; the fourth is refused,
    // naming the cap.
    let context = zmq::Context::new();
    let mut admitted = Vec::new();
    for _ in 0..3 {
        let socket = raw_curve_peer(&context, &endpoint, keys.path(), "client.key");
        let answer = raw_hello(&socket);
        assert!(matches!(answer, Message::Welcome { .. }), "{answer:?}");
        admitted.push(socket);
    }
    let fourth = raw_curve_peer(&context, &endpoint, keys.path(), "client.key");
    match raw_hello(&fourth) {
        Message::Rejected { reason, fatal } => {
            assert!(fatal, "{reason}");
            assert!(
                reason.contains("limits.max_connections_per_peer"),
                "{reason}"
            );
        }
        other => panic!("the fourth connection was admitted: {other:?}"),
    }

    // Another key is not affected.
    let client = connect(
        &endpoint,
        Some(client_keys(keys.path(), keys.path(), "second.key")),
    )
    .await
    .unwrap();
    let echoed = client
        .gather(client.map::<i64, i64, _>("echo", 0..20).unwrap())
        .await
        .unwrap();
    assert_eq!(echoed, (0..20).collect::<Vec<i64>>());

    // The raw peers send no heartbeats: once the scheduler has given up on
    // them, the key may connect again.
    drop(admitted);
    drop(fourth);
    let again = raw_curve_peer(&context, &endpoint, keys.path(), "client.key");
    let deadline = Instant::now() + PROCESS_LIMIT;
    loop {
        match raw_hello(&again) {
            Message::Welcome { .. } => break,
            answer => assert!(Instant::now() < deadline, "still refused: {answer:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    steady.stop();
    scheduler.stop();
}

// ----- listening beyond loopback -----

#[test]
fn the_scheduler_refuses_a_public_address_without_keys() {
    // Refused before anything is bound.
    let mut refused = quarry_process(
        "scheduler",
        &[
            "scheduler",
            "--listen",
            "tcp://0.0.0.0:0",
            "--dashboard",
            "none",
        ]
        .map(String::from),
        &[],
    );
    let status = refused.wait_exit();
    let log = refused.output();
    assert!(!status.success(), "{log}");
    assert!(log.contains("quarry keygen"), "{log}");
    assert!(log.contains("--insecure"), "{log}");
}

/// Runs a scheduler on 0.0.0.0 inside a fresh network namespace (only a
/// downed loopback device there), so the test never listens on a real
/// interface; returns what it printed once it was listening.
fn scheduler_on_all_interfaces(extra: &[String]) -> String {
    let mut args: Vec<String> = vec!["--net".into(), quarry_bin().display().to_string()];
    args.extend(
        [
            "scheduler",
            "--listen",
            "tcp://0.0.0.0:0",
            "--dashboard",
            "none",
        ]
        .map(String::from),
    );
    args.extend(extra.iter().cloned());
    let unshare = Path::new("/usr/bin/unshare");
    assert!(unshare.is_file(), "this test needs unshare (util-linux)");
    let process = spawn_captured("scheduler in a network namespace", unshare, &args, &[]);
    process.wait_for_line("scheduler at tcp://0.0.0.0:");
    process.stop()
}

#[test]
fn with_insecure_the_scheduler_starts_on_a_public_address() {
    let log = scheduler_on_all_interfaces(&["--insecure".into()]);
    assert!(log.contains("curve=false"), "{log}");
}

#[test]
fn with_keys_the_scheduler_starts_on_a_public_address() {
    let keys = tempfile::tempdir().unwrap();
    keygen(keys.path());
    let log = scheduler_on_all_interfaces(&["--keys".into(), keys.path().display().to_string()]);
    assert!(log.contains("curve=true"), "{log}");
}

// ----- secrets -----

/// Text logged by this test process, shared with the subscriber writing it.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<String>>);

impl Log {
    fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }
}

/// Log lines of this test process (the client), captured at debug level.
fn client_log() -> &'static Log {
    static LOG: OnceLock<Log> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Log::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
            .with_ansi(false)
            .with_writer(move || LogWriter(writer.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("only the secrets test installs a subscriber");
        log
    })
}

struct LogWriter(Log);

impl Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
             .0
            .lock()
            .unwrap()
            .push_str(&String::from_utf8_lossy(bytes));
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A Z85 field (`public-key` or `secret-key`) of a `quarry keygen` key file.
fn key_field(key_file: &Path, field: &str) -> String {
    let text = std::fs::read_to_string(key_file).unwrap();
    let line = text
        .lines()
        .find_map(|line| line.trim().strip_prefix(field))
        .unwrap_or_else(|| panic!("{} has no {field} line", key_file.display()));
    line.trim()
        .trim_start_matches('=')
        .trim()
        .trim_matches('"')
        .to_string()
}

/// The Z85 secret of a `quarry keygen` key file.
fn secret_of(key_file: &Path) -> String {
    key_field(key_file, "secret-key")
}

/// One HTTP GET against the dashboard; returns the whole response.
fn http_get(address: &str, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(PROCESS_LIMIT)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "GET {path}: {response}"
    );
    response
}

fn store_with(minio: &MinioServer, secret: &str) -> StoreResolver {
    StoreResolver::new(store_config(minio, secret))
}

/// Puts one byte under `prefix` with credentials the store refuses: the
/// error.
async fn refused_put(store: StoreResolver, prefix: &str) -> quarry::parts::store::StoreError {
    store
        .put_content_addressed(
            prefix,
            quarry::parts::store::PutSource::Bytes(vec![1].into()),
        )
        .await
        .expect_err("the store refuses these credentials")
}

fn store_config(minio: &MinioServer, secret: &str) -> StoreConfig {
    StoreConfig {
        endpoint: Some(minio.endpoint()),
        region: Some("us-east-1".into()),
        access_key_id: Some(minio.access_key().into()),
        secret_access_key: Some(Secret::new(secret)),
        allow_http: Some(true),
        ..StoreConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_appear_in_logs_errors_status_or_the_dashboard() {
    let client_log = client_log();
    let minio = MinioServer::start().unwrap_or_else(|e| panic!("{e}"));
    minio.create_bucket("secrets").await.unwrap();
    minio
        .seed_text_shards("secrets", "input/", 4, 2_000)
        .await
        .unwrap();
    let wrong_secret = format!("quarry-wrong-secret-{}", std::process::id());
    let keys = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let mut captured = vec![("keygen".to_string(), keygen(keys.path()))];

    // Every process gets the AWS secret and debug logging.
    let mut env = minio.env();
    env.push(("RUST_LOG", "debug".into()));
    let (scheduler, endpoint) = scheduler(Some(keys.path()), &["--dashboard", "127.0.0.1:0"], &env);
    let dashboard_line = scheduler.wait_for_line("dashboard at http://");
    let dashboard = dashboard_line
        .trim_start_matches("dashboard at http://")
        .trim_end_matches('/')
        .to_string();
    let worker = worker(
        &endpoint,
        "secretive",
        cache.path(),
        Some((keys.path(), "worker.key")),
        &env,
    );

    let keys_for_client = client_keys(keys.path(), keys.path(), "client.key");
    let mut options = client_options(&endpoint, Some(keys_for_client));
    options.store = store_with(&minio, minio.secret_key());
    options.staging = Some("s3://secrets/staging".into());
    captured.push(("client options".into(), format!("{options:?}")));
    let client = Client::connect_with(options).await.unwrap();
    wait_for_workers(&client, 1).await;

    // Work that reads and writes the store with the credentials: word
    // counts of pinned S3 objects, a missing object, a command job whose
    // logs are uploaded, and a staged argument.
    let store = store_with(&minio, minio.secret_key());
    let shards: Vec<DataRef> = store
        .list_refs("s3://secrets/input/")
        .try_collect()
        .await
        .unwrap();
    assert_eq!(shards.len(), 4);
    let job = client
        .open_job(JobOptions {
            name: "secrets".into(),
            output: Some("s3://secrets/out".into()),
            ..JobOptions::default()
        })
        .unwrap();
    let mut tasks = Vec::new();
    for shard in shards.iter().cloned().chain([DataRef {
        url: "s3://secrets/input/missing.txt".into(),
        pin: Pin::ETag("\"0\"".into()),
        size: 1,
        range: None,
    }]) {
        let mut task = job.new_task("wordcount", vec![0xc0]);
        task.inputs = vec![shard];
        tasks.push(task);
    }
    let counted = job.submit::<serde_json::Value>(tasks).unwrap();
    job.seal().unwrap();
    let mut outcomes = Vec::new();
    for future in counted {
        outcomes.push(future.result().await);
    }
    assert!(outcomes[..4].iter().all(Result::is_ok), "{outcomes:?}");
    let missing = outcomes[4].as_ref().expect_err("the missing object fails");
    captured.push(("task error".into(), missing.to_string()));

    let template = quarry_command::CommandTemplate {
        argv: ["sh", "-c", "echo to stderr >&2; echo '{{\"done\": true}}'"]
            .map(String::from)
            .to_vec(),
        ..Default::default()
    };
    let command_job = client
        .open_job(JobOptions {
            name: "env-dump".into(),
            output: Some("s3://secrets/commands".into()),
            context: template.to_context(),
            ..JobOptions::default()
        })
        .unwrap();
    let task = command_job.new_task(quarry_command::COMMAND_EXECUTOR, Vec::new());
    let ran = command_job.submit::<serde_json::Value>(vec![task]).unwrap();
    command_job.seal().unwrap();
    for future in ran {
        let result = future.result().await;
        assert_eq!(
            result.as_ref().ok(),
            Some(&serde_json::json!({"done": true})),
            "{result:?}"
        );
        captured.push(("command result".into(), format!("{result:?}")));
    }
    let staged = client.put_bytes(vec![7; 1024]).await.unwrap();
    captured.push(("staged".into(), format!("{staged:?}")));

    // Errors that involve credentials: a store client with the wrong secret,
    // and refused handshakes.
    let wrong_put = refused_put(store_with(&minio, &wrong_secret), "s3://secrets/staging").await;
    captured.push((
        "wrong secret".into(),
        format!("{wrong_put} / {wrong_put:?}"),
    ));
    captured.push((
        "refused worker key".into(),
        connect(
            &endpoint,
            Some(client_keys(keys.path(), keys.path(), "worker.key")),
        )
        .await
        .err()
        .map(|e| format!("{e} / {e:?}"))
        .unwrap_or_default(),
    ));

    // What `quarry status` shows (jobs, workers, result rows), and the
    // dashboard.
    captured.push(("jobs".into(), format!("{:?}", client.jobs().await.unwrap())));
    captured.push((
        "workers".into(),
        format!("{:?}", client.workers().await.unwrap()),
    ));
    captured.push((
        "results".into(),
        format!("{:?}", client.results(job.id()).await.unwrap()),
    ));
    let tasks = format!("/api/jobs/{}/tasks", job.id());
    for path in [
        "/",
        "/api/jobs",
        "/metrics",
        "/api/workers",
        "/api/failures",
        "/api/stream",
        tasks.as_str(),
    ] {
        captured.push((format!("dashboard {path}"), http_get(&dashboard, path)));
    }

    // The command-line clients, with the same environment: a job file
    // submitted and watched to its end, then `status`, `jobs` and
    // `results`, and a refused connection (a worker key used as a client).
    let job_file = keys.path().join("echo.yaml");
    std::fs::write(
        &job_file,
        "name: cli-echo\n\
         items: [a, b, c]\n\
         command: [echo, \"{params.item}\"]\n\
         output: s3://secrets/cli/\n",
    )
    .unwrap();
    let client_flags = |key_file: &str| -> Vec<String> {
        vec![
            "--scheduler".into(),
            endpoint.clone(),
            "--server-key".into(),
            keys.path().join("scheduler.pub").display().to_string(),
            "--key-file".into(),
            keys.path().join(key_file).display().to_string(),
        ]
    };
    let job_id = job.id().0.to_string();
    let cli_runs: Vec<(Vec<String>, bool)> = vec![
        (
            vec![
                "submit".into(),
                job_file.display().to_string(),
                "--watch".into(),
            ],
            true,
        ),
        (vec!["status".into()], true),
        (vec!["status".into(), job_id.clone(), "--json".into()], true),
        (vec!["jobs".into()], true),
        (vec!["results".into(), job_id], true),
        (vec!["status".into(), "j999999".into()], false),
    ];
    for (args, must_succeed) in cli_runs {
        let mut args = args;
        args.extend(client_flags("client.key"));
        let name = format!("quarry {}", args[0]);
        let mut process = quarry_process(&name, &args, &env);
        let status = process.wait_exit();
        let log = process.output();
        assert_eq!(status.success(), must_succeed, "{name}: {log}");
        captured.push((name, log));
    }
    // They did talk to the scheduler: they show its worker and jobs.
    for (command, expected) in [
        ("quarry status", "secretive"),
        ("quarry jobs", "cli-echo"),
        ("quarry results", "secretive"),
    ] {
        let (_, log) = captured.iter().find(|(n, _)| n == command).unwrap();
        assert!(
            log.contains(expected),
            "{command} does not show {expected}: {log}"
        );
    }
    let mut refused = quarry_process(
        "quarry status with a worker key",
        &[vec!["status".to_string()], client_flags("worker.key")].concat(),
        &env,
    );
    assert!(!refused.wait_exit().success());
    captured.push(("refused quarry status".into(), refused.output()));

    // A client process: `quarry bench` runs its own scheduler, workers and
    // client with the same environment.
    let mut bench = quarry_process(
        "quarry bench",
        &[
            "bench",
            "noop",
            "--tasks",
            "200",
            "--workers",
            "1",
            "--roundtrips",
            "5",
        ]
        .map(String::from),
        &env,
    );
    let bench_status = bench.wait_exit();
    assert!(bench_status.success(), "{}", bench.output());
    captured.push(("quarry bench".into(), bench.output()));

    drop(client);
    captured.push(("worker".into(), worker.stop()));
    captured.push(("scheduler".into(), scheduler.stop()));
    captured.push(("client log".into(), client_log.text()));

    let worker_log = &captured.iter().find(|(n, _)| n == "worker").unwrap().1;
    assert!(
        worker_log.contains("DEBUG"),
        "the worker ran without debug logs"
    );
    let secrets = [
        ("the AWS secret key", minio.secret_key().to_string()),
        ("a wrong AWS secret key", wrong_secret),
        (
            "the scheduler's CURVE secret",
            secret_of(&keys.path().join("scheduler.key")),
        ),
        (
            "the client's CURVE secret",
            secret_of(&keys.path().join("client.key")),
        ),
        (
            "the worker's CURVE secret",
            secret_of(&keys.path().join("worker.key")),
        ),
    ];
    let mut leaks = Vec::new();
    for (what, secret) in &secrets {
        assert!(secret.len() >= 16, "{what} is too short to search for");
        for (source, text) in &captured {
            if text.contains(secret.as_str()) {
                leaks.push(format!("{what} appears in {source}"));
            }
        }
    }
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
}

/// Refused credentials give one line naming the store's code and the
/// setting to check, with the response body not repeated (it was 2.6 KB of
/// XML, five times).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_are_one_line_naming_what_to_check() {
    let minio = MinioServer::start().unwrap_or_else(|e| panic!("{e}"));
    minio.create_bucket("creds").await.unwrap();
    // As the CLI prints an error: the whole chain, `{:#}`.
    let refused = |store: StoreResolver| async move {
        let error = refused_put(store, "s3://creds/staging").await;
        format!("{:#}", anyhow::Error::from(error))
    };
    let wrong_secret = refused(store_with(&minio, "not-the-secret")).await;
    let unknown_key = refused(StoreResolver::new(StoreConfig {
        access_key_id: Some("nobody-has-this-key".into()),
        ..store_config(&minio, minio.secret_key())
    }))
    .await;
    for chain in [&wrong_secret, &unknown_key] {
        assert!(
            chain.contains("the store refused access to s3://creds/staging"),
            "{chain}"
        );
        assert!(chain.contains("AWS_SECRET_ACCESS_KEY"), "{chain}");
        assert!(!chain.contains('\n'), "more than one line: {chain}");
        assert!(chain.len() < 400, "{} bytes: {chain}", chain.len());
        assert!(!chain.contains("<?xml"), "the body is repeated: {chain}");
    }
}
