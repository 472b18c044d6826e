//! The harness itself, against a real MinIO: seeding and reading back through
//! aws-sdk-s3, the fault proxy's injected failures, and process cleanup.
//!
//! These tests need the MinIO binary (`scripts/minio.sh` builds it); without it
//! they fail with a message saying so.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::error::ProvideErrorMetadata;
use quarry_integration::{
    shard_key, text_shard, ChildGuard, Fault, FaultProxy, MinioServer, ProxyStats,
};

fn start_minio() -> MinioServer {
    MinioServer::start().unwrap_or_else(|error| panic!("{error}"))
}

/// A client that reaches MinIO through `proxy` and makes `attempts` tries per call.
fn client_via(minio: &MinioServer, proxy: &FaultProxy, attempts: u32) -> aws_sdk_s3::Client {
    let retries = RetryConfig::standard()
        .with_max_attempts(attempts)
        .with_initial_backoff(Duration::from_millis(1));
    aws_sdk_s3::Client::from_conf(
        minio
            .s3_config(&proxy.endpoint())
            .retry_config(retries)
            .build(),
    )
}

#[tokio::test]
async fn seeded_objects_read_back_through_an_independent_client() {
    let minio = start_minio();
    minio.create_bucket("harness").await.unwrap();

    let shards = minio
        .seed_text_shards("harness", "input/", 12, 3000)
        .await
        .unwrap();
    minio
        .put_object("harness", "other/readme.txt", "not a shard")
        .await
        .unwrap();

    let keys = minio.list_keys("harness", "input/").await.unwrap();
    let expected_keys: Vec<String> = (0..12).map(|i| shard_key("input/", i)).collect();
    assert_eq!(keys, expected_keys);
    for (index, shard) in shards.iter().enumerate() {
        assert_eq!(shard.key, expected_keys[index]);
        let body = minio.get_object_bytes("harness", &shard.key).await.unwrap();
        assert_eq!(body, text_shard(index, 3000));
        assert_eq!(
            minio.object_etag("harness", &shard.key).await.unwrap(),
            shard.etag
        );
        assert!(!shard.etag.is_empty());
    }
    assert_eq!(
        minio.list_keys("harness", "").await.unwrap().len(),
        13,
        "the listing covers every prefix"
    );
    assert!(minio
        .list_keys("harness", "missing/")
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn listing_spans_several_pages() {
    let minio = start_minio();
    minio.create_bucket("pages").await.unwrap();
    // S3 pages hold 1000 keys; 1003 needs two pages.
    let seeded = minio
        .seed_text_shards("pages", "p/", 1003, 16)
        .await
        .unwrap();
    let keys = minio.list_keys("pages", "p/").await.unwrap();
    assert_eq!(keys.len(), 1003);
    assert_eq!(keys.last(), Some(&seeded[1002].key));
}

#[tokio::test]
async fn env_points_a_child_process_at_the_server() {
    let minio = start_minio();
    let output = Command::new("sh")
        .args([
            "-c",
            "echo $AWS_ENDPOINT_URL $AWS_ACCESS_KEY_ID $AWS_REGION $AWS_ALLOW_HTTP",
        ])
        .env_clear()
        .envs(minio.env())
        .output()
        .unwrap();
    let printed = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        printed.trim(),
        format!("{} {} us-east-1 true", minio.endpoint(), minio.access_key())
    );
    assert!(minio
        .env()
        .contains(&("AWS_SECRET_ACCESS_KEY", minio.secret_key().to_owned())));
}

#[tokio::test]
async fn fault_proxy_answers_slow_down_as_configured() {
    let minio = start_minio();
    minio.create_bucket("faults").await.unwrap();
    minio.put_object("faults", "k", "value").await.unwrap();
    let proxy = FaultProxy::start(minio.address()).unwrap();
    let once = client_via(&minio, &proxy, 1);

    // Without faults the proxy is transparent, signatures included.
    let body = once
        .get_object()
        .bucket("faults")
        .key("k")
        .send()
        .await
        .unwrap();
    assert_eq!(body.body.collect().await.unwrap().into_bytes(), "value");

    proxy.set_rates(1.0, 0.0).unwrap();
    let error = once
        .get_object()
        .bucket("faults")
        .key("k")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some("SlowDown"));
    assert_eq!(error.raw_response().unwrap().status().as_u16(), 503);

    // Half the requests fail, exactly: every second one.
    proxy.set_rates(0.5, 0.0).unwrap();
    let mut failures = 0;
    for _ in 0..10 {
        if once
            .head_object()
            .bucket("faults")
            .key("k")
            .send()
            .await
            .is_err()
        {
            failures += 1;
        }
    }
    assert_eq!(failures, 5);

    // The SDK retries throttling errors, so two queued 503s cost two retries.
    proxy.clear();
    proxy.fail_next(Fault::SlowDown, 2);
    let before = proxy.stats();
    let retrying = client_via(&minio, &proxy, 3);
    retrying
        .put_object()
        .bucket("faults")
        .key("k2")
        .body(bytes_of("retried"))
        .send()
        .await
        .unwrap();
    let after = proxy.stats();
    assert_eq!(after.slow_downs - before.slow_downs, 2);
    assert_eq!(after.forwarded - before.forwarded, 1);
    assert_eq!(
        minio.get_object_bytes("faults", "k2").await.unwrap(),
        "retried"
    );
}

#[tokio::test]
async fn fault_proxy_resets_connections_as_configured() {
    let minio = start_minio();
    minio.create_bucket("resets").await.unwrap();
    let proxy = FaultProxy::start(minio.address()).unwrap();
    let once = client_via(&minio, &proxy, 1);

    proxy.fail_next(Fault::Reset, 1);
    let error = once
        .put_object()
        .bucket("resets")
        .key("k")
        .body(bytes_of("lost"))
        .send()
        .await
        .unwrap_err();
    // A reset is a transport failure, not an answer from the service.
    assert!(error.raw_response().is_none(), "{error:?}");
    assert_eq!(
        proxy.stats(),
        ProxyStats {
            requests: 1,
            forwarded: 0,
            slow_downs: 0,
            resets: 1
        }
    );
    assert!(minio.list_keys("resets", "").await.unwrap().is_empty());

    once.put_object()
        .bucket("resets")
        .key("k")
        .body(bytes_of("kept"))
        .send()
        .await
        .unwrap();
    assert_eq!(minio.get_object_bytes("resets", "k").await.unwrap(), "kept");
}

#[test]
fn child_guard_kills_the_whole_process_group() {
    let mut command = Command::new("sh");
    // The shell forks a grandchild and reports its pid.
    command
        .args(["-c", "sleep 1000 & echo $!; wait"])
        .stdout(Stdio::piped());
    let mut guard = ChildGuard::spawn(command).unwrap();
    let stdout = guard.child_mut().stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let grandchild: i32 = line.trim().parse().unwrap();
    assert!(is_running(grandchild));

    drop(guard);
    // The kill is synchronous but the orphan is reaped by init in its own time;
    // a zombie is already dead, so only its state is checked, not how long it took.
    let mut attempts = 0;
    while is_running(grandchild) {
        attempts += 1;
        assert!(attempts < 600, "grandchild {grandchild} survived its group");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_shared_server_survives_the_thread_that_started_it() {
    // Servers shared between tests are started by whichever test thread comes
    // first; the parent-death signal must not fire when that thread ends.
    let mut minio = std::thread::spawn(start_minio).join().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime
        .block_on(minio.create_bucket("after-thread"))
        .unwrap();
    runtime
        .block_on(minio.put_object("after-thread", "k", "still here"))
        .unwrap();
    assert_eq!(minio.process_mut().try_wait().unwrap(), None);
}

/// Whether `pid` exists and is not a zombie.
fn is_running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => !stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
        Err(_) => false,
    }
}

fn bytes_of(text: &'static str) -> aws_sdk_s3::primitives::ByteStream {
    aws_sdk_s3::primitives::ByteStream::from_static(text.as_bytes())
}
