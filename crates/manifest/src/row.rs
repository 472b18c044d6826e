//! One task's row, flattened for tables.

use quarry_proto::msgpack_to_json;
use quarry_proto::{DataRef, Pin, ResultFormat, TaskOutcome, TaskStatus, Value as TaskValue};
use serde::Serialize;
use serde_json::Value;

/// One task as the manifest and `quarry results` show it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ManifestRow {
    /// The task's key (names its output directory).
    pub key: String,
    /// The task's id.
    pub task_id: u64,
    /// Its parameters (an empty object when it has none).
    pub params: Value,
    /// The URL of the object it read (its first input), if any.
    pub input: Option<String>,
    /// What that object was pinned by: its ETag (or `version:ID`).
    pub input_etag: Option<String>,
    /// The part of the object it read, `START-END` (bytes, end
    /// exclusive), when it read a chunk.
    pub input_range: Option<String>,
    /// `queued`, `assigned`, `running`, `done`, `failed` or `cancelled`.
    pub state: String,
    /// Its result as JSON; `None` unless it succeeded. A result stored in
    /// the output prefix is here once resolved ([`crate::resolve_results`]).
    pub result: Option<Value>,
    /// Where a result too large to travel inline is stored (under
    /// `OUTPUT/<task key>/`).
    pub result_ref: Option<String>,
    /// `inline`, `json` (`_result.json`) or `msgpack` (`_result.msgpack`,
    /// for functions that asked for binary results); `None` without a
    /// result.
    pub result_format: Option<String>,
    /// The URLs of the outputs it wrote.
    pub outputs: Vec<String>,
    /// The worker that ran its last attempt.
    pub worker: Option<String>,
    /// Attempts made.
    pub attempts: u32,
    /// Wall time of its last attempt.
    pub duration_ms: u64,
    /// Input bytes its last attempt read from the worker's cache.
    pub bytes_from_cache: u64,
    /// Input bytes its last attempt downloaded from the store.
    pub bytes_from_store: u64,
    /// Why it failed or was cancelled ([`error_text`]).
    pub error: Option<String>,
    /// The stored result's pinned reference (its URL is `result_ref`),
    /// for reading it ([`crate::resolve_results`]); not a column.
    #[serde(skip)]
    pub stored_result: Option<DataRef>,
}

impl ManifestRow {
    /// Flattens a scheduler row. Parameters that are not valid JSON (which
    /// quarry never produces) are kept as a JSON string of their text.
    pub fn from_status(status: &TaskStatus) -> ManifestRow {
        let params = if status.params_json.is_empty() {
            Value::Object(Default::default())
        } else {
            serde_json::from_str(&status.params_json)
                .unwrap_or_else(|_| Value::String(status.params_json.clone()))
        };
        let input = status.inputs.first();
        let stored_result = match &status.outcome {
            Some(TaskOutcome::Ok(TaskValue::Ref(data_ref))) => Some(data_ref.clone()),
            _ => None,
        };
        let result_format = match &status.outcome {
            Some(TaskOutcome::Ok(TaskValue::Inline(_))) => Some("inline".to_string()),
            Some(TaskOutcome::Ok(TaskValue::Ref(data_ref))) => {
                Some(ResultFormat::of_url(&data_ref.url).as_str().to_string())
            }
            _ => None,
        };
        ManifestRow {
            key: status.key.clone(),
            task_id: status.id.0,
            params,
            input: input.map(|r| r.url.clone()),
            input_etag: input.and_then(|r| match &r.pin {
                Pin::ETag(etag) => Some(etag.clone()),
                Pin::Version(version) => Some(format!("version:{version}")),
                Pin::Unpinned => None,
            }),
            input_range: input
                .and_then(|r| r.range)
                .map(|r| format!("{}-{}", r.start, r.end)),
            state: status.state.clone(),
            result: result_json(status.outcome.as_ref()),
            result_ref: stored_result.as_ref().map(|r| r.url.clone()),
            result_format,
            outputs: status.outputs.clone(),
            worker: status.worker.clone(),
            attempts: status.attempts,
            duration_ms: status.stats.duration_ms,
            bytes_from_cache: status.stats.bytes_from_cache,
            bytes_from_store: status.stats.bytes_from_store,
            error: error_text(status.outcome.as_ref()),
            stored_result,
        }
    }

    /// Whether the task succeeded.
    pub fn succeeded(&self) -> bool {
        self.state == "done"
    }
}

/// A successful task's inline result as JSON, decoded from MessagePack
/// ([`crate::msgpack_to_json`]). Inline bytes that do not decode become a
/// JSON string saying so. `None` when the task has no outcome yet, failed,
/// or stored its result in the output prefix (see
/// [`ManifestRow::result_ref`] and [`crate::resolve_results`]).
pub fn result_json(outcome: Option<&TaskOutcome>) -> Option<Value> {
    match outcome? {
        TaskOutcome::Ok(TaskValue::Inline(bytes)) => Some(
            msgpack_to_json(bytes)
                .unwrap_or_else(|e| Value::String(format!("<{} bytes: {e}>", bytes.len()))),
        ),
        TaskOutcome::Ok(TaskValue::Ref(_)) | TaskOutcome::Err(_) => None,
    }
}

/// A failed (or cancelled) task's error as `Kind: message`, such as
/// `TimedOut: task ran longer than its 1000 ms timeout`; `None` otherwise.
pub fn error_text(outcome: Option<&TaskOutcome>) -> Option<String> {
    match outcome? {
        TaskOutcome::Err(error) => Some(format!("{:?}: {}", error.kind, error.message)),
        TaskOutcome::Ok(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quarry_proto::{ErrorKind, TaskError, TaskId, TaskStats};
    use serde_json::json;

    fn status(outcome: Option<TaskOutcome>, params_json: &str) -> TaskStatus {
        TaskStatus {
            id: TaskId(7),
            key: "00007".into(),
            params_json: params_json.into(),
            inputs: vec![DataRef {
                url: "s3://b/in/a.txt".into(),
                pin: Pin::ETag("\"e1\"".into()),
                size: 100,
                range: Some(quarry_proto::ByteRange { start: 10, end: 60 }),
            }],
            state: "done".into(),
            outcome,
            outputs: vec!["file:///out/00007/a.txt".into()],
            worker: Some("local-0".into()),
            attempts: 2,
            stats: TaskStats {
                duration_ms: 15,
                bytes_from_cache: 100,
                bytes_from_store: 50,
                cache_hits: 1,
                cache_misses: 1,
            },
        }
    }

    #[test]
    fn a_successful_row_carries_its_decoded_result() {
        let value = rmp_serde::to_vec_named(&json!({"accuracy": 0.75})).unwrap();
        let row = ManifestRow::from_status(&status(
            Some(TaskOutcome::Ok(TaskValue::Inline(value))),
            r#"{"depth":4}"#,
        ));
        assert_eq!(row.params, json!({"depth": 4}));
        assert_eq!(row.result, Some(json!({"accuracy": 0.75})));
        assert_eq!(row.result_format.as_deref(), Some("inline"));
        assert_eq!(row.input.as_deref(), Some("s3://b/in/a.txt"));
        assert_eq!(row.input_etag.as_deref(), Some("\"e1\""));
        assert_eq!(row.input_range.as_deref(), Some("10-60"));
        assert_eq!(row.error, None);
        assert_eq!(row.task_id, 7);
        assert_eq!(row.attempts, 2);
        assert_eq!(row.duration_ms, 15);
        assert_eq!(row.bytes_from_cache, 100);
        assert_eq!(row.bytes_from_store, 50);
        assert!(row.succeeded());
    }

    #[test]
    fn references_show_their_url_and_failures_their_error() {
        let data_ref = DataRef {
            url: "s3://b/out/k/_result.json".into(),
            pin: Pin::ETag("e".into()),
            size: 1 << 20,
            range: None,
        };
        let row =
            ManifestRow::from_status(&status(Some(TaskOutcome::Ok(TaskValue::Ref(data_ref))), ""));
        assert_eq!(row.result, None, "resolved separately");
        assert_eq!(row.result_ref.as_deref(), Some("s3://b/out/k/_result.json"));
        assert_eq!(row.result_format.as_deref(), Some("json"));
        assert_eq!(row.params, json!({}));

        let failed = ManifestRow::from_status(&status(
            Some(TaskOutcome::Err(TaskError {
                kind: ErrorKind::TimedOut,
                message: "too slow".into(),
            })),
            "",
        ));
        assert_eq!(failed.result, None);
        assert_eq!(failed.error.as_deref(), Some("TimedOut: too slow"));
        assert_eq!(ManifestRow::from_status(&status(None, "")).result, None);
    }
}
