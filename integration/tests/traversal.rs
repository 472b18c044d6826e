//! Hostile names can never reach outside the directories quarry writes to.
//!
//! Three places turn names that come from users or from stores into paths:
//! - the worker's shard cache turns object keys (URL plus pin) into files:
//!   its file names are hashes, so no key can choose where the file goes;
//! - the output-key rule (`quarry_command::output_object_key`) turns a task
//!   key and a file a command wrote into an object key under the job's
//!   output prefix;
//! - a command task runs in a per-attempt directory and its outputs and logs
//!   are uploaded under `OUTPUT/<task key>/`.
//!
//! Each test feeds one kind of hostile name (`..` segments, absolute paths,
//! NUL bytes, very long names, percent-encoded `..`, symlinks) to one of
//! them and checks that nothing was written outside the directory it
//! belongs in. The end-to-end tests run command tasks on a
//! [`quarry::LocalCluster`] with a `file://` output prefix.

use futures::TryStreamExt;
use quarry::parts::store::object_store::path::Path as ObjectPath;
use quarry::parts::store::object_store::ObjectStoreExt;
use quarry::parts::store::{memory_store, StoreConfig, StoreResolver};
use quarry::{ClientError, DataRef, JobOptions, LocalCluster, Pin};
use quarry_cache::ShardCache;
use quarry_command::{output_object_key, CommandTemplate, KeyError, COMMAND_EXECUTOR};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

// ----- helpers -----

/// Every file (not directory) under `root`, recursively, without following
/// symlinks.
fn files_under(root: &Path) -> BTreeSet<PathBuf> {
    let mut found = BTreeSet::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                pending.push(entry.path());
            } else {
                found.insert(entry.path());
            }
        }
    }
    found
}

/// Whether `name` is a file name the cache makes itself: a SHA-256 in hex
/// with `.data` or `.meta`, or its directory lock.
fn is_cache_file_name(name: &str) -> bool {
    if name == ".lock" {
        return true;
    }
    let Some((hash, extension)) = name.split_once('.') else {
        return false;
    };
    hash.len() == 64
        && hash.bytes().all(|b| b.is_ascii_hexdigit())
        && match extension.split_once('.') {
            // A block's sidecar: HASH.INDEX.block.
            Some((index, "block")) => index.bytes().all(|b| b.is_ascii_digit()),
            Some(_) => false,
            None => matches!(extension, "data" | "meta"),
        }
}

/// A cache in `root/cache` reading through `resolver`, plus what `root`
/// held before the cache was opened.
struct CacheFixture {
    root: tempfile::TempDir,
    cache: ShardCache,
    before: BTreeSet<PathBuf>,
}

impl CacheFixture {
    async fn open(resolver: StoreResolver, prepare: impl FnOnce(&Path)) -> CacheFixture {
        let root = tempfile::tempdir().unwrap();
        prepare(root.path());
        let before = files_under(root.path());
        let cache = ShardCache::open(root.path().join("cache"), 1 << 30, resolver)
            .await
            .unwrap();
        CacheFixture {
            root,
            cache,
            before,
        }
    }

    /// Asks the cache for `data_ref`; a hit must lie inside the cache
    /// directory and hold the object's bytes. Returns whether it was served.
    async fn get(&self, data_ref: &DataRef, expected: Option<&[u8]>) -> bool {
        match self.cache.get(data_ref).await {
            Ok(shard) => {
                assert!(
                    shard.path.starts_with(self.cache.dir()),
                    "{} was cached at {}, outside {}",
                    data_ref.url.escape_debug(),
                    shard.path.display(),
                    self.cache.dir().display()
                );
                if let Some(expected) = expected {
                    assert_eq!(std::fs::read(&shard.path).unwrap(), expected);
                }
                true
            }
            Err(error) => {
                assert!(
                    !error.to_string().is_empty(),
                    "a refusal must say why ({})",
                    data_ref.url.escape_debug()
                );
                false
            }
        }
    }

    /// Nothing new appeared outside the cache directory, and every file in
    /// it is named by a hash.
    fn assert_contained(&self) {
        for path in files_under(self.root.path()) {
            if self.before.contains(&path) {
                continue;
            }
            assert!(
                path.starts_with(self.cache.dir()),
                "{} was written outside the cache directory",
                path.display()
            );
            let name = path.file_name().unwrap().to_string_lossy();
            assert!(
                is_cache_file_name(&name),
                "the cache made a file named {name:?}, not from a hash"
            );
        }
    }
}

/// Puts `content` under `key` in the in-memory store `store` and returns
/// the reference listing pins.
async fn seed_memory(store: &str, key: &str, content: &[u8]) -> DataRef {
    memory_store(store)
        .put(&ObjectPath::parse(key).unwrap(), content.to_vec().into())
        .await
        .unwrap();
    let url = format!("memory://{store}/{key}");
    let refs: Vec<DataRef> = resolver().list_refs(&url).try_collect().await.unwrap();
    assert_eq!(refs.len(), 1, "{url}");
    refs.into_iter().next().unwrap()
}

/// The `file://` reference of a local file, pinned as listing pins it.
async fn pin_file(path: &Path) -> DataRef {
    let url = format!("file://{}", path.display());
    let refs: Vec<DataRef> = resolver().list_refs(&url).try_collect().await.unwrap();
    assert_eq!(refs.len(), 1, "{url}");
    refs.into_iter().next().unwrap()
}

fn resolver() -> StoreResolver {
    StoreResolver::new(StoreConfig::default())
}

/// `data_ref` with its URL replaced.
fn with_url(data_ref: &DataRef, url: String) -> DataRef {
    DataRef {
        url,
        ..data_ref.clone()
    }
}

// ----- the shard cache -----

#[tokio::test]
async fn cache_object_keys_with_dotdot_stay_in_the_cache_directory() {
    let fixture = CacheFixture::open(resolver(), |root| {
        std::fs::create_dir_all(root.join("data")).unwrap();
        std::fs::write(root.join("data/a..b.txt"), b"dots inside a name").unwrap();
    })
    .await;
    let root = fixture.root.path();

    // `..` inside a name is an ordinary name.
    let dotted = seed_memory("traversal-dotdot", "x/..y/a..b", b"memory dots").await;
    assert!(fixture.get(&dotted, Some(b"memory dots")).await);
    let local = pin_file(&root.join("data/a..b.txt")).await;
    assert!(fixture.get(&local, Some(b"dots inside a name")).await);

    // `..` segments: refused for memory keys; a file:// URL is normalised
    // to the file it names, and only that file's bytes reach the cache.
    let escapes = [
        "memory://traversal-dotdot/../../../../etc/passwd".to_string(),
        "memory://traversal-dotdot/x/../../cache/escaped".to_string(),
        format!("file://{}/data/../data/a..b.txt", root.display()),
        format!("file://{}/cache/../../../../etc/hostname", root.display()),
    ];
    for url in escapes {
        fixture.get(&with_url(&dotted, url), None).await;
    }
    // A pin is part of the object key: it must not steer the file name.
    let pinned = DataRef {
        pin: Pin::ETag("../../../../escaped-by-etag".into()),
        ..dotted.clone()
    };
    fixture.get(&pinned, None).await;
    let versioned = DataRef {
        pin: Pin::Version("../../escaped-by-version".into()),
        ..dotted
    };
    fixture.get(&versioned, None).await;
    fixture.assert_contained();
}

#[tokio::test]
async fn cache_object_keys_that_are_absolute_paths_stay_in_the_cache_directory() {
    let fixture = CacheFixture::open(resolver(), |root| {
        std::fs::write(root.join("plain.txt"), b"plain").unwrap();
    })
    .await;
    let root = fixture.root.path();
    let plain = pin_file(&root.join("plain.txt")).await;
    assert!(fixture.get(&plain, Some(b"plain")).await);
    let cache_dir = fixture.cache.dir().display().to_string();
    let hostile = [
        format!("memory://traversal-absolute/{cache_dir}/escaped"),
        format!("memory://traversal-absolute//{cache_dir}/escaped"),
        format!("file://{cache_dir}/escaped"),
        format!("{cache_dir}/escaped"),
        "/etc/passwd".to_string(),
    ];
    for url in hostile {
        fixture.get(&with_url(&plain, url), None).await;
    }
    let absolute_pin = DataRef {
        pin: Pin::ETag(format!("{cache_dir}/escaped-by-etag")),
        ..plain
    };
    fixture.get(&absolute_pin, None).await;
    fixture.assert_contained();
    assert!(!fixture.cache.dir().join("escaped").exists());
}

#[tokio::test]
async fn cache_object_keys_with_nul_bytes_stay_in_the_cache_directory() {
    let fixture = CacheFixture::open(resolver(), |root| {
        std::fs::write(root.join("plain.txt"), b"plain").unwrap();
    })
    .await;
    let root = fixture.root.path();
    let plain = pin_file(&root.join("plain.txt")).await;
    let hostile = [
        "memory://traversal-nul/a\0/../../escaped".to_string(),
        format!("file://{}/plain.txt\0/../escaped", root.display()),
        format!("file://{}/plain.txt%00.data", root.display()),
    ];
    for url in hostile {
        fixture.get(&with_url(&plain, url), None).await;
    }
    let nul_pin = DataRef {
        pin: Pin::ETag("\0../../escaped".into()),
        ..plain.clone()
    };
    fixture.get(&nul_pin, None).await;
    assert!(fixture.get(&plain, Some(b"plain")).await);
    fixture.assert_contained();
}

#[tokio::test]
async fn cache_object_keys_with_very_long_names_stay_in_the_cache_directory() {
    let fixture = CacheFixture::open(resolver(), |_| {}).await;
    let root = fixture.root.path();
    // Far longer than a file name may be (255 bytes) or a path (4096).
    let long_segment = "n".repeat(10_000);
    let long = seed_memory("traversal-long", &long_segment, b"long name").await;
    assert!(fixture.get(&long, Some(b"long name")).await);
    let deep = vec!["d"; 3_000].join("/");
    let deep_ref = seed_memory("traversal-long", &deep, b"deep name").await;
    assert!(fixture.get(&deep_ref, Some(b"deep name")).await);
    let hostile = [
        format!("file://{}/{long_segment}", root.display()),
        format!("file://{}/{}", root.display(), "../".repeat(5_000)),
    ];
    for url in hostile {
        fixture.get(&with_url(&long, url), None).await;
    }
    fixture.assert_contained();
}

// ----- the output-key rule -----

#[test]
fn output_keys_refuse_dotdot_segments() {
    for (task_key, relative) in [
        ("..", "x"),
        ("../escaped", "x"),
        ("a/../../escaped", "x"),
        ("00001", ".."),
        ("00001", "../../escaped"),
        ("00001", "sub/../../escaped"),
    ] {
        assert!(
            matches!(
                output_object_key(task_key, relative),
                Err(KeyError::BadSegment { ref segment, .. }) if segment == ".."
            ),
            "{task_key:?} + {relative:?}"
        );
    }
}

#[test]
fn output_keys_refuse_absolute_paths() {
    for (task_key, relative) in [("/etc", "passwd"), ("00001", "/etc/passwd"), ("/", "x")] {
        assert!(
            matches!(
                output_object_key(task_key, relative),
                Err(KeyError::Absolute { .. })
            ),
            "{task_key:?} + {relative:?}"
        );
    }
}

#[test]
fn output_keys_refuse_nul_bytes_and_control_characters() {
    for (task_key, relative) in [
        ("a\0b", "x"),
        ("00001", "x\0/../../escaped"),
        ("00001", "..\\..\\escaped"),
        ("a\nb", "x"),
    ] {
        assert!(
            matches!(
                output_object_key(task_key, relative),
                Err(KeyError::ForbiddenCharacter { .. })
            ),
            "{:?} + {:?}",
            task_key,
            relative
        );
    }
}

#[test]
fn output_keys_refuse_very_long_names() {
    for (task_key, relative) in [
        ("k".repeat(256), "x".to_string()),
        ("00001".to_string(), "x".repeat(256)),
        ("00001".to_string(), vec!["s".repeat(200); 5].join("/")),
        (vec!["k"; 1_000].join("/"), "x".to_string()),
    ] {
        assert!(
            matches!(
                output_object_key(&task_key, &relative),
                Err(KeyError::TooLong { .. })
            ),
            "{} + {} bytes",
            task_key.len(),
            relative.len()
        );
    }
}

#[test]
fn sanitized_prefix_keys_always_pass_the_output_rule() {
    // Prefix jobs name tasks after object keys that anyone with write access
    // to the bucket chose.
    let long = "n".repeat(5_000);
    for raw in [
        "../../etc/passwd",
        "/abs/olute",
        "a\0b/c",
        "%2e%2e/%2e%2e/escaped",
        "..\\..\\x",
        "./././",
        "",
        long.as_str(),
    ] {
        for force_hash in [false, true] {
            let key = quarry_command::sanitize_key(raw, force_hash);
            assert!(
                output_object_key(&key, "out.txt").is_ok(),
                "{raw:?} became {key:?}"
            );
            assert!(!key.contains('%'), "{raw:?} became {key:?}");
        }
    }
}

// ----- command tasks end to end -----

/// A LocalCluster whose workers keep their caches and scratch space in
/// `root/workers`, and a `file://` output prefix at `root/a/b/out`: an
/// escape of one or two levels still lands inside `root`, where the test
/// can see it.
struct CommandFixture {
    root: tempfile::TempDir,
    cluster: LocalCluster,
}

impl CommandFixture {
    async fn start() -> CommandFixture {
        let root = tempfile::tempdir().unwrap();
        let cluster = LocalCluster::builder()
            .workers(1)
            .work_dir(root.path().join("workers"))
            .start()
            .await
            .unwrap();
        CommandFixture { root, cluster }
    }

    fn output_dir(&self) -> PathBuf {
        self.root.path().join("a/b/out")
    }

    /// Runs one command task with `key`; returns its result or error.
    async fn run(&self, key: &str, argv: &[&str]) -> Result<serde_json::Value, ClientError> {
        let client = self.cluster.client().await.unwrap();
        let template = CommandTemplate {
            argv: argv.iter().map(|a| a.to_string()).collect(),
            ..CommandTemplate::default()
        };
        let job = client
            .open_job(JobOptions {
                name: "traversal".into(),
                output: Some(format!("file://{}", self.output_dir().display())),
                context: template.to_context(),
                ..JobOptions::default()
            })
            .unwrap();
        let mut task = job.new_task(COMMAND_EXECUTOR, Vec::new());
        task.key = key.to_string();
        let mut futures = job.submit::<serde_json::Value>(vec![task]).unwrap();
        job.seal().unwrap();
        futures.remove(0).result().await
    }

    /// Every file under the root is a worker's, the job's own (its manifest
    /// and markers: `OUTPUT/_quarry/…`, `OUTPUT/_SUCCESS`, which the
    /// scheduler writes as the job ends), or lies under
    /// `OUTPUT/<allowed key>/`.
    fn assert_contained(&self, allowed_key: Option<&str>) {
        let workers = self.root.path().join("workers");
        let job_files = self.output_dir().join("_quarry");
        let success_marker = self.output_dir().join("_SUCCESS");
        for path in files_under(self.root.path()) {
            if path.starts_with(&workers) || path.starts_with(&job_files) || path == success_marker
            {
                continue;
            }
            let inside =
                allowed_key.is_some_and(|key| path.starts_with(self.output_dir().join(key)));
            assert!(
                inside,
                "{} was written outside the task's output directory",
                path.display()
            );
        }
    }

    async fn shutdown(self) {
        self.cluster.shutdown().await;
    }
}

/// A command that writes a result file and a log line, then prints JSON.
const WRITES_OUTPUTS: &[&str] = &[
    "sh",
    "-c",
    "echo written > \"$QUARRY_OUTPUT_DIR/result.txt\"; echo log line >&2; echo '{{\"ok\": true}}'",
];

/// Asserts that a hostile-key task failed with an error naming the key rule
/// (or, for NUL bytes, the environment variable that cannot hold one).
fn assert_refused(result: Result<serde_json::Value, ClientError>, what: &str) {
    match result {
        Err(ClientError::Task { message, .. }) => {
            assert!(
                ["task key", "output key", "nul byte"]
                    .iter()
                    .any(|rule| message.contains(rule)),
                "{what}: the error does not say what was wrong: {message}"
            );
        }
        other => panic!("{what}: the task should fail, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_with_a_dotdot_task_key_fails_and_writes_nothing_outside() {
    let fixture = CommandFixture::start().await;
    // The legitimate task first: outputs land under OUTPUT/<key>/.
    let ok = fixture.run("00001", WRITES_OUTPUTS).await.unwrap();
    assert_eq!(ok, serde_json::json!({"ok": true}));
    assert!(fixture.output_dir().join("00001/result.txt").is_file());
    for key in ["..", "../escaped", "../../escaped", "x/../../../escaped"] {
        assert_refused(fixture.run(key, WRITES_OUTPUTS).await, key);
    }
    fixture.assert_contained(Some("00001"));
    fixture.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_with_an_absolute_task_key_fails_and_writes_nothing_outside() {
    let fixture = CommandFixture::start().await;
    let target = fixture.root.path().join("escaped");
    let key = target.display().to_string();
    assert_refused(fixture.run(&key, WRITES_OUTPUTS).await, &key);
    assert_refused(fixture.run("/", WRITES_OUTPUTS).await, "/");
    assert!(!target.exists());
    fixture.assert_contained(None);
    fixture.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_with_a_nul_byte_in_its_task_key_fails_and_writes_nothing_outside() {
    let fixture = CommandFixture::start().await;
    for key in ["a\0b", "\0", "..\0/escaped"] {
        assert_refused(
            fixture.run(key, WRITES_OUTPUTS).await,
            &key.escape_debug().to_string(),
        );
    }
    fixture.assert_contained(None);
    fixture.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_with_a_very_long_task_key_fails_and_writes_nothing_outside() {
    let fixture = CommandFixture::start().await;
    let long_segment = "k".repeat(5_000);
    let deep = vec!["d"; 1_000].join("/");
    for key in [&long_segment, &deep] {
        assert_refused(fixture.run(key, WRITES_OUTPUTS).await, "a long key");
    }
    fixture.assert_contained(None);
    fixture.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_with_a_percent_encoded_dotdot_task_key_writes_nothing_outside() {
    // `file://` URLs are percent-decoded, so `%2e%2e` must not become `..`
    // on the way from the output key to the file system.
    let fixture = CommandFixture::start().await;
    let key = "%2e%2e/%2e%2e/escaped";
    let result = fixture.run(key, WRITES_OUTPUTS).await;
    assert!(
        !fixture.root.path().join("a/escaped").exists(),
        "the task escaped its output directory (result: {result:?})"
    );
    fixture.assert_contained(Some(key));
    fixture.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_outputs_with_percent_encoded_dotdot_names_stay_inside() {
    // The command chooses its output file names: a directory literally named
    // `%2e%2e` must not be uploaded to `..`.
    let fixture = CommandFixture::start().await;
    let result = fixture
        .run(
            "00001",
            &[
                "sh",
                "-c",
                "mkdir -p \"$QUARRY_OUTPUT_DIR/%2e%2e/%2e%2e/%2e%2e\" && \
                 echo escaped > \"$QUARRY_OUTPUT_DIR/%2e%2e/%2e%2e/%2e%2e/escaped.txt\"",
            ],
        )
        .await;
    assert!(
        !fixture.root.path().join("a/escaped.txt").exists(),
        "an output file escaped the task's output directory (result: {result:?})"
    );
    fixture.assert_contained(Some("00001"));
    fixture.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_outputs_that_are_symlinks_are_not_followed() {
    let fixture = CommandFixture::start().await;
    let secret = fixture.root.path().join("secret.txt");
    std::fs::write(&secret, b"not for upload").unwrap();
    let script = format!(
        "ln -s '{}' \"$QUARRY_OUTPUT_DIR/link.txt\" && ln -s / \"$QUARRY_OUTPUT_DIR/root\" && \
         echo fine > \"$QUARRY_OUTPUT_DIR/real.txt\"",
        secret.display()
    );
    fixture.run("00001", &["sh", "-c", &script]).await.unwrap();
    let task_dir = fixture.output_dir().join("00001");
    assert!(task_dir.join("real.txt").is_file());
    assert!(!task_dir.join("link.txt").exists());
    assert!(!task_dir.join("root").exists());
    let uploaded: Vec<PathBuf> = files_under(&task_dir).into_iter().collect();
    for path in &uploaded {
        assert_ne!(
            std::fs::read(path).unwrap(),
            b"not for upload",
            "{}",
            path.display()
        );
    }
    std::fs::remove_file(&secret).unwrap();
    fixture.assert_contained(Some("00001"));
    fixture.shutdown().await;
}
