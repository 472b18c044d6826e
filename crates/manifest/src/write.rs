//! Writing a finished job's manifest and marker to its output prefix.

use crate::resolve::resolve_results;
use crate::row::ManifestRow;
use crate::table::{manifest_batch, manifest_schema};
use parquet::arrow::ArrowWriter;
use quarry_proto::{JobInfo, JobState, TaskStatus};
use quarry_store::object_store::{self, ObjectStoreExt, PutPayload, WriteMultipart};
use quarry_store::{StoreError, StoreResolver};
use serde::Serialize;
use std::sync::{Arc, Mutex};
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
    /// Building an Arrow batch failed.
    #[error("cannot build the manifest's columns: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
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

/// Parts of the manifest upload in flight at once (8 MiB each).
const PARTS_IN_FLIGHT: usize = 4;
/// Size of each part of the manifest upload.
const PART_SIZE: usize = 8 * 1024 * 1024;

/// A `Write` whose bytes the [`ManifestWriter`] takes out after each row
/// group, to upload them: Parquet is written front to back, never sought.
#[derive(Clone, Default)]
struct Drained(Arc<Mutex<Vec<u8>>>);

impl Drained {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl std::io::Write for Drained {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes a job's manifest as its rows arrive, page by page, in task-id
/// order: each page becomes Parquet row groups uploaded in parts, so a job
/// of millions of tasks is written in the memory of a page. Then
/// [`ManifestWriter::finish`] writes `_SUCCESS` or `FAILED.json`.
pub struct ManifestWriter {
    store: StoreResolver,
    prefix: String,
    parquet: ArrowWriter<Drained>,
    buffer: Drained,
    upload: WriteMultipart,
    manifest_url: String,
    last_task: Option<u64>,
    rows: u64,
    done: u64,
    failed: Vec<FailedTask>,
}

impl ManifestWriter {
    /// Starts the manifest under `output` (a prefix URL such as
    /// `s3://bucket/results/` or `file:///data/out`).
    pub async fn create(
        store: &StoreResolver,
        output: &str,
    ) -> Result<ManifestWriter, ManifestError> {
        let prefix = output.trim_end_matches('/').to_string();
        let manifest_url = format!("{prefix}/{MANIFEST_PATH}");
        let location = store
            .resolve(&manifest_url)
            .map_err(|source| ManifestError::Output {
                output: output.to_owned(),
                source,
            })?;
        let upload = location
            .store
            .put_multipart(&location.path)
            .await
            .map_err(|source| ManifestError::Store {
                action: "write",
                url: manifest_url.clone(),
                source,
            })?;
        let buffer = Drained::default();
        let parquet = ArrowWriter::try_new(
            buffer.clone(),
            manifest_schema(),
            Some(parquet_properties()),
        )?;
        Ok(ManifestWriter {
            store: store.clone(),
            prefix,
            parquet,
            buffer,
            upload: WriteMultipart::new_with_chunk_size(upload, PART_SIZE),
            manifest_url,
            last_task: None,
            rows: 0,
            done: 0,
            failed: Vec::new(),
        })
    }

    /// Adds rows, which must come in increasing task-id order (one row per
    /// task: a repeated id is an error).
    pub async fn write(&mut self, job: &str, rows: &[ManifestRow]) -> Result<(), ManifestError> {
        for row in rows {
            if self.last_task.is_some_and(|last| row.task_id <= last) {
                return Err(ManifestError::DuplicateTask {
                    job: job.to_owned(),
                    task_id: row.task_id,
                    key: row.key.clone(),
                });
            }
            self.last_task = Some(row.task_id);
            self.rows += 1;
            if row.succeeded() {
                self.done += 1;
            } else {
                self.failed.push(FailedTask {
                    key: row.key.clone(),
                    task_id: row.task_id,
                    state: row.state.clone(),
                    attempts: row.attempts,
                    error: row.error.clone(),
                });
            }
        }
        for chunk in rows.chunks(ROWS_PER_GROUP) {
            self.parquet.write(&manifest_batch(chunk)?)?;
            self.parquet.flush()?;
        }
        self.upload_buffered().await
    }

    async fn upload_buffered(&mut self) -> Result<(), ManifestError> {
        let bytes = self.buffer.take();
        if !bytes.is_empty() {
            self.upload
                .wait_for_capacity(PARTS_IN_FLIGHT)
                .await
                .map_err(|source| ManifestError::Store {
                    action: "write",
                    url: self.manifest_url.clone(),
                    source,
                })?;
            self.upload.write(&bytes);
        }
        Ok(())
    }

    /// Completes the manifest, then writes `_SUCCESS` if every task
    /// succeeded (and the job says so), else `_quarry/FAILED.json`; the
    /// marker of the other kind, left by an earlier run over the same
    /// prefix, is removed.
    pub async fn finish(mut self, info: &JobInfo) -> Result<(), ManifestError> {
        let parquet = std::mem::replace(
            &mut self.parquet,
            ArrowWriter::try_new(Drained::default(), manifest_schema(), None)?,
        );
        parquet.close()?;
        self.upload_buffered().await?;
        let manifest_url = self.manifest_url.clone();
        self.upload
            .finish()
            .await
            .map_err(|source| ManifestError::Store {
                action: "write",
                url: manifest_url,
                source,
            })?;
        let store = &self.store;
        let url = |relative: &str| format!("{}/{relative}", self.prefix);
        let succeeded = info.state == JobState::Succeeded && self.failed.is_empty();
        if succeeded {
            remove(store, &url(FAILED_PATH)).await?;
            put(store, &url(SUCCESS_MARKER), Vec::new()).await?;
        } else {
            remove(store, &url(SUCCESS_MARKER)).await?;
            let report = FailedReport {
                job: info.id.to_string(),
                name: info.name.clone(),
                state: format!("{:?}", info.state),
                total: self.rows,
                done: self.done,
                failed: std::mem::take(&mut self.failed),
            };
            put(
                store,
                &url(FAILED_PATH),
                serde_json::to_vec_pretty(&report)?,
            )
            .await?;
        }
        tracing::debug!(job = %info.id, output = %self.prefix, succeeded, "wrote the job manifest");
        Ok(())
    }
}

/// Rows per Parquet row group: a group is uploaded as soon as it is
/// written.
const ROWS_PER_GROUP: usize = 64 * 1024;

fn parquet_properties() -> parquet::file::properties::WriterProperties {
    parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROWS_PER_GROUP))
        .build()
}

/// Most bytes of stored results read into the rows of one page of
/// [`write_job_outputs`], so that resolving results does not hold them all
/// in memory at once.
const RESOLVED_BYTES_PER_PAGE: u64 = 64 * 1024 * 1024;

/// Writes the manifest of a finished job under `output` from all its rows
/// at once: `_quarry/manifest.parquet` with one row per entry of `rows`,
/// stored results of at most `resolve_up_to` bytes read into the `result`
/// column (page by page, each page's results dropped once written), then
/// `_SUCCESS` if every task succeeded (and the job says so), else
/// `_quarry/FAILED.json`. A stored result that cannot be read leaves its
/// row's `result` empty, with a warning in the log.
///
/// `rows` must hold each task of the job once, in any order.
pub async fn write_job_outputs(
    store: &StoreResolver,
    output: &str,
    info: &JobInfo,
    rows: &[TaskStatus],
    resolve_up_to: u64,
) -> Result<(), ManifestError> {
    let mut rows: Vec<ManifestRow> = rows.iter().map(ManifestRow::from_status).collect();
    rows.sort_by_key(|r| r.task_id);
    let job = info.id.to_string();
    let mut writer = ManifestWriter::create(store, output).await?;
    let mut start = 0;
    while start < rows.len() {
        let (mut end, mut resolved) = (start, 0u64);
        while end < rows.len() && end - start < ROWS_PER_GROUP {
            let size = rows[end]
                .stored_result
                .as_ref()
                .filter(|r| r.size <= resolve_up_to)
                .map_or(0, |r| r.size);
            if end > start && resolved + size > RESOLVED_BYTES_PER_PAGE {
                break;
            }
            resolved += size;
            end += 1;
        }
        let page = &mut rows[start..end];
        for problem in resolve_results(store, page, resolve_up_to).await {
            tracing::warn!(job = %info.id, "{problem}");
        }
        writer.write(&job, page).await?;
        for row in page.iter_mut().filter(|r| r.stored_result.is_some()) {
            row.result = None;
        }
        start = end;
    }
    writer.finish(info).await
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
