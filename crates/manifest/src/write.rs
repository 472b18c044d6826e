//! Writing a finished job's manifest and marker to its output prefix.

use crate::row::ManifestRow;
use crate::table::manifest_parquet;
use quarry_proto::{JobInfo, JobState, TaskStatus};
use quarry_store::object_store::{self, ObjectStoreExt, PutPayload};
use quarry_store::{StoreError, StoreResolver};
use serde::Serialize;
use std::collections::HashSet;
use thiserror::Error;

/// Where the manifest goes, relative to the output prefix.
pub const MANIFEST_PATH: &str = "_quarry/manifest.parquet";
/// The empty marker written when every task succeeded.
pub const SUCCESS_MARKER: &str = "_SUCCESS";
/// The failure report written when some task did not succeed.
pub const FAILED_PATH: &str = "_quarry/FAILED.json";

/// The manifest could not be written.
#[derive(Debug, Error)]
pub enum ManifestError {
    /// The output prefix is not a usable URL.
    #[error("cannot use the output prefix {output}: {source}")]
    Output {
        /// The prefix.
        output: String,
        /// Why.
        source: StoreError,
    },
    /// The rows name one task twice; a manifest has exactly one row per task.
    #[error("task {task_id} (key `{key}`) appears twice in the rows of job {job}")]
    DuplicateTask {
        /// The job.
        job: String,
        /// The repeated task.
        task_id: u64,
        /// Its key.
        key: String,
    },
    /// Encoding the Parquet file failed.
    #[error("cannot encode the manifest as Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Encoding FAILED.json failed.
    #[error("cannot encode {FAILED_PATH}: {0}")]
    Json(#[from] serde_json::Error),
    /// The store refused a write or a delete.
    #[error("cannot {action} {url}: {source}")]
    Store {
        /// `write` or `remove`.
        action: &'static str,
        /// The object.
        url: String,
        /// The store's error.
        source: object_store::Error,
    },
}

/// What `OUTPUT/_quarry/FAILED.json` holds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FailedReport {
    /// The job id, such as `j1099511627777`.
    pub job: String,
    /// The job name.
    pub name: String,
    /// `Failed` or `Cancelled` (or `Succeeded` if the job was marked so
    /// while some task was not done, which the scheduler does not do).
    pub state: String,
    /// All tasks of the job.
    pub total: u64,
    /// Tasks that succeeded.
    pub done: u64,
    /// The tasks that did not succeed, in task-id order.
    pub failed: Vec<FailedTask>,
}

/// One task in [`FailedReport`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FailedTask {
    /// Its key.
    pub key: String,
    /// Its id.
    pub task_id: u64,
    /// `failed`, `cancelled`, or a non-final state if the job stopped first.
    pub state: String,
    /// Attempts made.
    pub attempts: u32,
    /// `Kind: message` ([`crate::error_text`]), if it has one.
    pub error: Option<String>,
}

/// Writes the manifest of a finished job under `output` (a prefix URL such
/// as `s3://bucket/results/` or `file:///data/out`): `_quarry/manifest.parquet`
/// with one row per entry of `rows`, then `_SUCCESS` if every task
/// succeeded (and the job says so), else `_quarry/FAILED.json`. The marker
/// of the other kind, left by an earlier run over the same prefix, is
/// removed.
///
/// `rows` must hold each task of the job once (the scheduler's result pages
/// for the job, in any order).
pub async fn write_job_outputs(
    store: &StoreResolver,
    output: &str,
    info: &JobInfo,
    rows: &[TaskStatus],
) -> Result<(), ManifestError> {
    let mut seen = HashSet::with_capacity(rows.len());
    for row in rows {
        if !seen.insert(row.id) {
            return Err(ManifestError::DuplicateTask {
                job: info.id.to_string(),
                task_id: row.id.0,
                key: row.key.clone(),
            });
        }
    }
    let mut rows: Vec<ManifestRow> = rows.iter().map(ManifestRow::from_status).collect();
    rows.sort_by_key(|r| r.task_id);
    let prefix = output.trim_end_matches('/');
    let url = |relative: &str| format!("{prefix}/{relative}");

    put(store, &url(MANIFEST_PATH), manifest_parquet(&rows)?).await?;
    let succeeded = info.state == JobState::Succeeded && rows.iter().all(ManifestRow::succeeded);
    if succeeded {
        remove(store, &url(FAILED_PATH)).await?;
        put(store, &url(SUCCESS_MARKER), Vec::new()).await?;
    } else {
        remove(store, &url(SUCCESS_MARKER)).await?;
        let report = FailedReport {
            job: info.id.to_string(),
            name: info.name.clone(),
            state: format!("{:?}", info.state),
            total: rows.len() as u64,
            done: rows.iter().filter(|r| r.succeeded()).count() as u64,
            failed: rows
                .iter()
                .filter(|r| !r.succeeded())
                .map(|r| FailedTask {
                    key: r.key.clone(),
                    task_id: r.task_id,
                    state: r.state.clone(),
                    attempts: r.attempts,
                    error: r.error.clone(),
                })
                .collect(),
        };
        put(
            store,
            &url(FAILED_PATH),
            serde_json::to_vec_pretty(&report)?,
        )
        .await?;
    }
    tracing::debug!(job = %info.id, output = %prefix, succeeded, "wrote the job manifest");
    Ok(())
}

async fn put(store: &StoreResolver, url: &str, bytes: Vec<u8>) -> Result<(), ManifestError> {
    let location = store.resolve(url).map_err(|source| ManifestError::Output {
        output: url.to_owned(),
        source,
    })?;
    location
        .store
        .put(&location.path, PutPayload::from(bytes))
        .await
        .map_err(|source| ManifestError::Store {
            action: "write",
            url: url.to_owned(),
            source,
        })?;
    Ok(())
}

/// Deletes an object; one that does not exist is already gone.
async fn remove(store: &StoreResolver, url: &str) -> Result<(), ManifestError> {
    let location = store.resolve(url).map_err(|source| ManifestError::Output {
        output: url.to_owned(),
        source,
    })?;
    match location.store.delete(&location.path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(source) => Err(ManifestError::Store {
            action: "remove",
            url: url.to_owned(),
            source,
        }),
    }
}
