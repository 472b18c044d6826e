//! Resolving stored results: reading `_result.json` (or `_result.msgpack`)
//! objects so that a row shows the value itself, not where it is.

use crate::row::ManifestRow;
use futures::StreamExt;
use quarry_proto::{msgpack_to_json, ResultFormat};
use quarry_store::StoreResolver;
use serde_json::Value;

/// Results read at the same time.
const READS_IN_FLIGHT: usize = 16;

/// Reads the stored result of every row that has one and is at most
/// `max_bytes` large, and puts its JSON in [`ManifestRow::result`]. Rows
/// whose result cannot be read keep `result` empty; the messages saying why
/// are returned (one per such row), for the caller to show.
pub async fn resolve_results(
    store: &StoreResolver,
    rows: &mut [ManifestRow],
    max_bytes: u64,
) -> Vec<String> {
    let wanted: Vec<(usize, quarry_proto::DataRef)> = rows
        .iter()
        .enumerate()
        .filter_map(|(i, row)| {
            let stored = row.stored_result.as_ref()?;
            (row.result.is_none() && stored.size <= max_bytes).then(|| (i, stored.clone()))
        })
        .collect();
    let read = futures::stream::iter(wanted)
        .map(|(i, data_ref)| async move {
            let value = async {
                let bytes = store
                    .get_pinned(&data_ref)
                    .await
                    .map_err(|e| e.to_string())?
                    .bytes()
                    .await
                    .map_err(|e| e.to_string())?;
                match ResultFormat::of_url(&data_ref.url) {
                    ResultFormat::Json => {
                        serde_json::from_slice::<Value>(&bytes).map_err(|e| e.to_string())
                    }
                    ResultFormat::MessagePack => msgpack_to_json(&bytes).map_err(|e| e.to_string()),
                }
            }
            .await;
            (
                i,
                value.map_err(|e| format!("cannot read the result {}: {e}", data_ref.url)),
            )
        })
        .buffer_unordered(READS_IN_FLIGHT)
        .collect::<Vec<_>>()
        .await;
    let mut problems = Vec::new();
    for (i, value) in read {
        match value {
            Ok(value) => rows[i].result = Some(value),
            Err(problem) => problems.push(problem),
        }
    }
    problems
}
