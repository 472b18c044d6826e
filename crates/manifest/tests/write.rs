//! `write_job_outputs` against real stores (a local directory and the
//! in-memory store), read back with the parquet crate and plain file reads.

use arrow::array::{Array, ListArray, StringArray, UInt32Array, UInt64Array};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use quarry_manifest::{
    manifest_schema, write_job_outputs, ManifestError, FAILED_PATH, MANIFEST_PATH, SUCCESS_MARKER,
};
use quarry_proto::{
    ByteRange, DataRef, ErrorKind, JobCounts, JobId, JobInfo, JobState, Pin, TaskError, TaskId,
    TaskOutcome, TaskStats, TaskStatus, Value,
};
use quarry_store::object_store::path::Path as StorePath;
use quarry_store::object_store::ObjectStoreExt;
use quarry_store::{memory_store, StoreConfig, StoreResolver};
use serde_json::json;
use std::path::Path;

/// Stored results up to this size are read into the manifest.
const RESOLVE_UP_TO: u64 = 1 << 20;

fn ok_row(id: u64, key: &str, accuracy: f64) -> TaskStatus {
    TaskStatus {
        id: TaskId(id),
        key: key.into(),
        params_json: format!(r#"{{"depth":{id}}}"#),
        inputs: vec![DataRef {
            url: format!("s3://in/{key}"),
            pin: Pin::ETag(format!("\"e{id}\"")),
            size: 100,
            range: id
                .is_multiple_of(2)
                .then_some(ByteRange { start: 10, end: 60 }),
        }],
        state: "done".into(),
        outcome: Some(TaskOutcome::Ok(Value::Inline(
            rmp_serde::to_vec_named(&json!({ "accuracy": accuracy })).unwrap(),
        ))),
        outputs: vec![
            format!("file:///out/{key}/model.bin"),
            format!("file:///out/{key}/_logs/stdout.log"),
        ],
        worker: Some("local-1".into()),
        attempts: 1,
        stats: TaskStats {
            duration_ms: 10 + id,
            bytes_from_cache: 1000,
            bytes_from_store: 24,
            cache_hits: 1,
            cache_misses: 1,
        },
    }
}

fn failed_row(id: u64, key: &str) -> TaskStatus {
    TaskStatus {
        id: TaskId(id),
        key: key.into(),
        params_json: String::new(),
        inputs: Vec::new(),
        state: "failed".into(),
        outcome: Some(TaskOutcome::Err(TaskError {
            kind: ErrorKind::TimedOut,
            message: "task ran longer than its 1000 ms timeout".into(),
        })),
        outputs: Vec::new(),
        worker: Some("local-0".into()),
        attempts: 3,
        stats: TaskStats::default(),
    }
}

fn info(state: JobState, rows: &[TaskStatus]) -> JobInfo {
    let done = rows.iter().filter(|r| r.state == "done").count() as u64;
    JobInfo {
        id: JobId(1 << 40 | 1),
        name: "grid".into(),
        state,
        counts: JobCounts {
            total: rows.len() as u64,
            done,
            failed: rows.len() as u64 - done,
            ..JobCounts::default()
        },
        tasks_local: 0,
        tasks_remote: 0,
        stats: TaskStats::default(),
        elapsed_ms: 5,
    }
}

fn read_manifest(bytes: Vec<u8>) -> RecordBatch {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    arrow::compute::concat_batches(&manifest_schema(), &batches).unwrap()
}

fn text(batch: &RecordBatch, column: &str) -> Vec<Option<String>> {
    let array = batch
        .column_by_name(column)
        .unwrap()
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    (0..array.len())
        .map(|i| (!array.is_null(i)).then(|| array.value(i).to_owned()))
        .collect()
}

fn file_url(dir: &Path) -> String {
    format!("file://{}/", dir.display())
}

#[tokio::test]
async fn a_successful_job_gets_one_row_per_task_and_success_marker() {
    let dir = tempfile::tempdir().unwrap();
    let output = file_url(&dir.path().join("out"));
    // Out of task-id order on purpose: the manifest is sorted by task id.
    let rows = vec![
        ok_row(3, "00002", 0.5),
        ok_row(1, "00000", 0.75),
        ok_row(2, "00001", 0.25),
    ];
    let store = StoreResolver::new(StoreConfig::default());
    write_job_outputs(
        &store,
        &output,
        &info(JobState::Succeeded, &rows),
        &rows,
        RESOLVE_UP_TO,
    )
    .await
    .unwrap();

    let out = dir.path().join("out");
    assert_eq!(std::fs::read(out.join(SUCCESS_MARKER)).unwrap(), b"");
    assert!(!out.join(FAILED_PATH).exists());
    let batch = read_manifest(std::fs::read(out.join(MANIFEST_PATH)).unwrap());
    assert_eq!(batch.num_rows(), 3);
    assert_eq!(batch.schema(), manifest_schema());
    assert_eq!(
        text(&batch, "key"),
        vec![
            Some("00000".into()),
            Some("00001".into()),
            Some("00002".into())
        ]
    );
    let ids = batch
        .column_by_name("task_id")
        .unwrap()
        .as_any()
        .downcast_ref::<UInt64Array>()
        .unwrap();
    assert_eq!(ids.values().to_vec(), vec![1, 2, 3]);
    let params: Vec<serde_json::Value> = text(&batch, "params")
        .into_iter()
        .map(|p| serde_json::from_str(&p.unwrap()).unwrap())
        .collect();
    assert_eq!(params[0], json!({"depth": 1}));
    let results: Vec<serde_json::Value> = text(&batch, "result")
        .into_iter()
        .map(|r| serde_json::from_str(&r.unwrap()).unwrap())
        .collect();
    assert_eq!(
        results,
        vec![
            json!({"accuracy": 0.75}),
            json!({"accuracy": 0.25}),
            json!({"accuracy": 0.5})
        ]
    );
    assert_eq!(text(&batch, "state"), vec![Some("done".into()); 3]);
    assert_eq!(
        text(&batch, "input"),
        vec![
            Some("s3://in/00000".into()),
            Some("s3://in/00001".into()),
            Some("s3://in/00002".into())
        ]
    );
    assert_eq!(text(&batch, "input_etag")[0].as_deref(), Some("\"e1\""));
    assert_eq!(
        text(&batch, "input_range"),
        vec![None, Some("10-60".into()), None]
    );
    assert_eq!(
        text(&batch, "result_format"),
        vec![Some("inline".into()); 3]
    );
    assert_eq!(text(&batch, "result_ref"), vec![None, None, None]);
    assert_eq!(text(&batch, "error"), vec![None, None, None]);
    assert_eq!(text(&batch, "worker"), vec![Some("local-1".into()); 3]);
    let outputs = batch
        .column_by_name("outputs")
        .unwrap()
        .as_any()
        .downcast_ref::<ListArray>()
        .unwrap();
    let first = outputs.value(0);
    let first = first.as_any().downcast_ref::<StringArray>().unwrap();
    assert_eq!(first.len(), 2);
    assert_eq!(first.value(0), "file:///out/00000/model.bin");
    let attempts = batch
        .column_by_name("attempts")
        .unwrap()
        .as_any()
        .downcast_ref::<UInt32Array>()
        .unwrap();
    assert_eq!(attempts.values().to_vec(), vec![1, 1, 1]);
    for (column, expected) in [
        ("duration_ms", vec![11, 12, 13]),
        ("bytes_from_cache", vec![1000; 3]),
        ("bytes_from_store", vec![24; 3]),
    ] {
        let values = batch
            .column_by_name(column)
            .unwrap()
            .as_any()
            .downcast_ref::<UInt64Array>()
            .unwrap();
        assert_eq!(values.values().to_vec(), expected, "{column}");
    }
}

#[tokio::test]
async fn a_failed_job_lists_its_failures_and_replaces_an_old_success_marker() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let output = file_url(&out);
    let store = StoreResolver::new(StoreConfig::default());
    let good = vec![ok_row(1, "00000", 0.5), ok_row(2, "00001", 0.5)];
    write_job_outputs(
        &store,
        &output,
        &info(JobState::Succeeded, &good),
        &good,
        RESOLVE_UP_TO,
    )
    .await
    .unwrap();
    assert!(out.join(SUCCESS_MARKER).exists());

    // A second run over the same prefix in which one task failed.
    let mixed = vec![ok_row(1, "00000", 0.5), failed_row(2, "00001")];
    write_job_outputs(
        &store,
        &output,
        &info(JobState::Failed, &mixed),
        &mixed,
        RESOLVE_UP_TO,
    )
    .await
    .unwrap();
    assert!(!out.join(SUCCESS_MARKER).exists(), "stale _SUCCESS removed");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join(FAILED_PATH)).unwrap()).unwrap();
    assert_eq!(
        report,
        json!({
            "job": "j1099511627777",
            "name": "grid",
            "state": "Failed",
            "total": 2,
            "done": 1,
            "failed": [{
                "key": "00001",
                "task_id": 2,
                "state": "failed",
                "attempts": 3,
                "error": "TimedOut: task ran longer than its 1000 ms timeout",
            }],
        })
    );
    let batch = read_manifest(std::fs::read(out.join(MANIFEST_PATH)).unwrap());
    assert_eq!(batch.num_rows(), 2, "exactly one row per task");
    assert_eq!(
        text(&batch, "error"),
        vec![
            None,
            Some("TimedOut: task ran longer than its 1000 ms timeout".into())
        ]
    );
    assert_eq!(text(&batch, "result")[1], None);

    // And a third, successful again: FAILED.json goes away.
    write_job_outputs(
        &store,
        &output,
        &info(JobState::Succeeded, &good),
        &good,
        RESOLVE_UP_TO,
    )
    .await
    .unwrap();
    assert!(out.join(SUCCESS_MARKER).exists());
    assert!(!out.join(FAILED_PATH).exists());
}

#[tokio::test]
async fn object_store_prefixes_work_and_duplicates_are_refused() {
    let name = "manifest-write-test";
    let store = StoreResolver::new(StoreConfig::default());
    let rows = vec![ok_row(1, "a.txt", 0.1)];
    write_job_outputs(
        &store,
        &format!("memory://{name}/results/run1"),
        &info(JobState::Succeeded, &rows),
        &rows,
        RESOLVE_UP_TO,
    )
    .await
    .unwrap();
    let memory = memory_store(name);
    let manifest = memory
        .get(&StorePath::from("results/run1/_quarry/manifest.parquet"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(read_manifest(manifest.to_vec()).num_rows(), 1);
    memory
        .head(&StorePath::from("results/run1/_SUCCESS"))
        .await
        .unwrap();

    let twice = vec![ok_row(1, "a.txt", 0.1), ok_row(1, "a.txt", 0.1)];
    let error = write_job_outputs(
        &store,
        &format!("memory://{name}/results/run2"),
        &info(JobState::Succeeded, &twice),
        &twice,
        RESOLVE_UP_TO,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, ManifestError::DuplicateTask { task_id: 1, .. }),
        "{error}"
    );
}

#[tokio::test]
async fn an_empty_job_has_a_readable_empty_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let store = StoreResolver::new(StoreConfig::default());
    write_job_outputs(
        &store,
        &file_url(dir.path()),
        &info(JobState::Succeeded, &[]),
        &[],
        RESOLVE_UP_TO,
    )
    .await
    .unwrap();
    let batch = read_manifest(std::fs::read(dir.path().join(MANIFEST_PATH)).unwrap());
    assert_eq!(batch.num_rows(), 0);
    assert!(dir.path().join(SUCCESS_MARKER).exists());
}

#[tokio::test]
async fn stored_results_are_read_into_the_result_column_up_to_a_size() {
    let name = "manifest-resolve-test";
    let memory = memory_store(name);
    let small = br#"{"the": 3, "a": 2}"#.to_vec();
    let put = memory
        .put(
            &StorePath::from("out/k1/_result.json"),
            small.clone().into(),
        )
        .await
        .unwrap();
    let big = serde_json::to_vec(&json!({"words": "x".repeat(2 << 20)})).unwrap();
    let put_big = memory
        .put(&StorePath::from("out/k2/_result.json"), big.clone().into())
        .await
        .unwrap();
    let stored = |id: u64, key: &str, size: usize, etag: Option<String>| {
        let mut row = ok_row(id, key, 0.0);
        row.outcome = Some(TaskOutcome::Ok(Value::Ref(DataRef {
            url: format!("memory://{name}/out/{key}/_result.json"),
            pin: Pin::ETag(etag.unwrap()),
            size: size as u64,
            range: None,
        })));
        row
    };
    let rows = vec![
        stored(1, "k1", small.len(), put.e_tag),
        stored(2, "k2", big.len(), put_big.e_tag),
        ok_row(3, "k3", 0.5),
    ];
    let store = StoreResolver::new(StoreConfig::default());
    write_job_outputs(
        &store,
        &format!("memory://{name}/out"),
        &info(JobState::Succeeded, &rows),
        &rows,
        RESOLVE_UP_TO,
    )
    .await
    .unwrap();
    let manifest = memory
        .get(&StorePath::from("out/_quarry/manifest.parquet"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let batch = read_manifest(manifest.to_vec());
    let results = text(&batch, "result");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(results[0].as_deref().unwrap()).unwrap(),
        json!({"the": 3, "a": 2})
    );
    assert_eq!(results[1], None, "larger than the limit: left in the store");
    assert_eq!(
        text(&batch, "result_ref"),
        vec![
            Some(format!("memory://{name}/out/k1/_result.json")),
            Some(format!("memory://{name}/out/k2/_result.json")),
            None
        ]
    );
    assert_eq!(
        text(&batch, "result_format"),
        vec![
            Some("json".into()),
            Some("json".into()),
            Some("inline".into())
        ]
    );
}
