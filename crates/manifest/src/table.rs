//! The manifest as an Arrow table and as Parquet bytes.

use crate::row::ManifestRow;
use arrow::array::{ArrayRef, ListBuilder, StringArray, StringBuilder, UInt32Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use std::sync::Arc;

/// Rows per Arrow batch (and so at most per Parquet row group): keeps the
/// intermediate arrays of a million-task job small.
const ROWS_PER_BATCH: usize = 64 * 1024;

/// The manifest's columns, in order:
///
/// | column | type | meaning |
/// |---|---|---|
/// | `key` | utf8 | task key |
/// | `task_id` | uint64 | task id |
/// | `params` | utf8 | parameters, JSON text |
/// | `input` | utf8, nullable | URL of the object the task read |
/// | `input_etag` | utf8, nullable | the ETag it was pinned by (`version:ID` for a version) |
/// | `input_range` | utf8, nullable | `START-END`: the bytes of a chunk |
/// | `state` | utf8 | `done`, `failed`, `cancelled`, … |
/// | `result` | utf8, nullable | result, JSON text (stored results resolved, up to a size) |
/// | `result_ref` | utf8, nullable | URL of a stored result (`OUTPUT/<key>/_result.json`) |
/// | `result_format` | utf8, nullable | `inline`, `json` or `msgpack` |
/// | `outputs` | list\<utf8\> | output URLs |
/// | `worker` | utf8, nullable | worker of the last attempt |
/// | `attempts` | uint32 | attempts made |
/// | `duration_ms` | uint64 | wall time of the last attempt |
/// | `bytes_from_cache` | uint64 | input bytes read from the worker cache |
/// | `bytes_from_store` | uint64 | input bytes downloaded |
/// | `error` | utf8, nullable | `Kind: message` for failed tasks |
pub fn manifest_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("task_id", DataType::UInt64, false),
        Field::new("params", DataType::Utf8, false),
        Field::new("input", DataType::Utf8, true),
        Field::new("input_etag", DataType::Utf8, true),
        Field::new("input_range", DataType::Utf8, true),
        Field::new("state", DataType::Utf8, false),
        Field::new("result", DataType::Utf8, true),
        Field::new("result_ref", DataType::Utf8, true),
        Field::new("result_format", DataType::Utf8, true),
        Field::new(
            "outputs",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            false,
        ),
        Field::new("worker", DataType::Utf8, true),
        Field::new("attempts", DataType::UInt32, false),
        Field::new("duration_ms", DataType::UInt64, false),
        Field::new("bytes_from_cache", DataType::UInt64, false),
        Field::new("bytes_from_store", DataType::UInt64, false),
        Field::new("error", DataType::Utf8, true),
    ]))
}

fn text_column<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(values.collect::<StringArray>())
}

/// The rows as one Arrow batch with [`manifest_schema`].
pub fn manifest_batch(rows: &[ManifestRow]) -> Result<RecordBatch, ArrowError> {
    let json_text = |value: &serde_json::Value| value.to_string();
    let params: Vec<String> = rows.iter().map(|r| json_text(&r.params)).collect();
    let results: Vec<Option<String>> = rows
        .iter()
        .map(|r| r.result.as_ref().map(json_text))
        .collect();
    let mut outputs = ListBuilder::new(StringBuilder::new());
    for row in rows {
        for url in &row.outputs {
            outputs.values().append_value(url);
        }
        outputs.append(true);
    }
    let columns: Vec<ArrayRef> = vec![
        text_column(rows.iter().map(|r| Some(r.key.as_str()))),
        Arc::new(rows.iter().map(|r| r.task_id).collect::<UInt64Array>()),
        text_column(params.iter().map(|p| Some(p.as_str()))),
        text_column(rows.iter().map(|r| r.input.as_deref())),
        text_column(rows.iter().map(|r| r.input_etag.as_deref())),
        text_column(rows.iter().map(|r| r.input_range.as_deref())),
        text_column(rows.iter().map(|r| Some(r.state.as_str()))),
        text_column(results.iter().map(|r| r.as_deref())),
        text_column(rows.iter().map(|r| r.result_ref.as_deref())),
        text_column(rows.iter().map(|r| r.result_format.as_deref())),
        Arc::new(outputs.finish()),
        text_column(rows.iter().map(|r| r.worker.as_deref())),
        Arc::new(rows.iter().map(|r| r.attempts).collect::<UInt32Array>()),
        Arc::new(rows.iter().map(|r| r.duration_ms).collect::<UInt64Array>()),
        Arc::new(
            rows.iter()
                .map(|r| r.bytes_from_cache)
                .collect::<UInt64Array>(),
        ),
        Arc::new(
            rows.iter()
                .map(|r| r.bytes_from_store)
                .collect::<UInt64Array>(),
        ),
        text_column(rows.iter().map(|r| r.error.as_deref())),
    ];
    RecordBatch::try_new(manifest_schema(), columns)
}

/// The rows as a Snappy-compressed Parquet file with [`manifest_schema`]
/// (an empty job gives a valid file with no rows).
pub fn manifest_parquet(rows: &[ManifestRow]) -> Result<Vec<u8>, ParquetError> {
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut bytes, manifest_schema(), Some(properties))?;
    for chunk in rows.chunks(ROWS_PER_BATCH) {
        writer.write(&manifest_batch(chunk)?)?;
    }
    writer.close()?;
    Ok(bytes)
}
