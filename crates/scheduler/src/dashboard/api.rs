//! The dashboard's JSON under `/api/`: what the pages poll, and what
//! scripts may read. Every handler reads the snapshot only.

use super::snapshot::{Snapshot, TaskRow, ROWS_PER_RUNNING_JOB};
use super::Dashboard;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use quarry_core::WorkerView;
use quarry_proto::{JobId, JobInfo};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::RwLockReadGuard;

/// The `/api/` routes.
pub(super) fn routes() -> Router<Dashboard> {
    Router::new()
        .route("/api/jobs", get(jobs))
        .route("/api/jobs/{job}/tasks", get(job_tasks))
        .route("/api/workers", get(workers))
        .route("/api/failures", get(failures))
        .route("/api/stream", get(stream))
}

fn read(dashboard: &Dashboard) -> RwLockReadGuard<'_, Snapshot> {
    dashboard.snapshot.read().unwrap_or_else(|p| p.into_inner())
}

/// One job (its id as a number, as before, and as text in `ref`) with
/// its progress (finished tasks over all) and throughput
/// (finished tasks per second since it was opened).
pub(super) fn job_json(job: &JobInfo) -> Value {
    let c = &job.counts;
    let finished = c.done + c.failed + c.cancelled;
    let progress = if c.total == 0 {
        0.0
    } else {
        finished as f64 / c.total as f64
    };
    let seconds = job.elapsed_ms as f64 / 1000.0;
    let throughput = if seconds > 0.0 {
        finished as f64 / seconds
    } else {
        0.0
    };
    let mut value = serde_json::to_value(job).unwrap_or(Value::Null);
    if let Value::Object(fields) = &mut value {
        // Ids as text too: numbers past 2^53 do not survive JavaScript.
        fields.insert("ref".into(), json!(job.id.to_string()));
        fields.insert("progress".into(), json!(progress));
        fields.insert("throughput".into(), json!(throughput));
    }
    value
}

async fn jobs(State(dashboard): State<Dashboard>) -> Json<Value> {
    let s = read(&dashboard);
    Json(json!({
        "jobs": s.jobs.values().map(job_json).collect::<Vec<_>>(),
        "workers": s.workers.len(),
        "clients": s.clients,
        "queued": s.queued,
        "dropped_jobs": s.dropped_jobs,
        "journal_bytes": s.journal_bytes,
        "journal_compactions": s.journal_compactions,
    }))
}

/// A worker as `/api/workers` lists it.
fn worker_json(worker: &WorkerView) -> Value {
    json!({
        "id": worker.id,
        "name": worker.name,
        "host": worker.host,
        "state": crate::metrics::WORKER_STATES[crate::metrics::worker_state(worker)],
        "slots": worker.slots,
        "busy_slots": worker.busy_slots,
        "assigned": worker.assigned,
        "running": worker.running.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "cached_objects": worker.cached_objects,
        "cached_bytes": worker.cached_bytes,
    })
}

async fn workers(State(dashboard): State<Dashboard>) -> Json<Value> {
    let s = read(&dashboard);
    Json(Value::Array(s.workers.iter().map(worker_json).collect()))
}

/// A job id as a path gives it: `j5` (as shown) or `5`.
fn parse_job(text: &str) -> Option<JobId> {
    text.strip_prefix('j')
        .unwrap_or(text)
        .parse()
        .ok()
        .map(JobId)
}

#[derive(Deserialize)]
struct TasksQuery {
    /// Most rows to return (default 1,000).
    limit: Option<usize>,
}

/// How rows are ordered: what runs first, then what waits, then what
/// ended.
fn state_rank(state: &str) -> u8 {
    match state {
        "running" => 0,
        "assigned" => 1,
        "queued" => 2,
        "failed" => 3,
        _ => 4,
    }
}

fn row_json(row: &TaskRow, now_ms: u64) -> Value {
    let key = match row.spec.decode() {
        Ok(spec) => spec.key,
        Err(e) => format!("(undecodable: {e})"),
    };
    let duration_ms = match (&row.stats, row.started_ms) {
        (Some(stats), _) if !matches!(row.state, "running" | "assigned") => Some(stats.duration_ms),
        (_, Some(started)) if row.state == "running" => Some(now_ms.saturating_sub(started)),
        _ => None,
    };
    let stats = row.stats.clone().unwrap_or_default();
    json!({
        "id": row.spec.id().to_string(),
        "key": key,
        "state": row.state,
        "worker": &*row.worker,
        "attempt": row.attempt,
        "duration_ms": duration_ms,
        "bytes_local": stats.bytes_from_cache,
        "bytes_remote": stats.bytes_from_store,
        "error": row.error,
    })
}

async fn job_tasks(
    State(dashboard): State<Dashboard>,
    Path(job): Path<String>,
    Query(query): Query<TasksQuery>,
) -> Response {
    let s = read(&dashboard);
    let Some(info) = parse_job(&job).and_then(|id| s.jobs.get(&id)) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({
                "error": format!(
                    "no job {job} on this scheduler (finished jobs are dropped after their \
                     retention, --job-retention)"
                )
            })),
        )
            .into_response();
    };
    let limit = query.limit.unwrap_or(1_000).min(ROWS_PER_RUNNING_JOB);
    let empty = Default::default();
    let table = s.tasks.get(&info.id).unwrap_or(&empty);
    let mut rows: Vec<&TaskRow> = table.rows.values().collect();
    rows.sort_by_key(|row| (state_rank(row.state), row.spec.id()));
    let shown: Vec<Value> = rows
        .iter()
        .take(limit)
        .map(|row| row_json(row, s.now_ms))
        .collect();
    Json(json!({
        "job": job_json(info),
        "tasks": shown,
        // Placed tasks the table let go (oldest finished first) or that
        // this page left out.
        "omitted": table.omitted + rows.len().saturating_sub(limit) as u64,
    }))
    .into_response()
}

async fn failures(State(dashboard): State<Dashboard>) -> Json<Value> {
    let s = read(&dashboard);
    Json(Value::Array(
        s.failures
            .iter()
            .rev()
            .map(|f| {
                json!({
                    "task": f.task.to_string(),
                    "job": f.job.to_string(),
                    "key": f.key,
                    "function": f.function,
                    "worker": f.worker,
                    "attempts": f.attempts,
                    "kind": f.kind,
                    "message": f.message,
                    "logs": f.logs,
                    "at_ms": f.at_ms,
                })
            })
            .collect(),
    ))
}

#[derive(Deserialize)]
struct StreamQuery {
    /// Only entries after this sequence number.
    after: Option<u64>,
}

async fn stream(
    State(dashboard): State<Dashboard>,
    Query(query): Query<StreamQuery>,
) -> Json<Value> {
    let s = read(&dashboard);
    let after = query.after.unwrap_or(0);
    let entries: Vec<Value> = s
        .stream
        .iter()
        .filter(|e| e.seq > after)
        .map(|e| {
            json!({
                "seq": e.seq,
                "task": e.task.to_string(),
                "job": e.job.to_string(),
                "function": &*e.function,
                "worker": &*e.worker,
                "start_ms": e.start_ms,
                "end_ms": e.end_ms,
                "ok": e.ok,
            })
        })
        .collect();
    Json(json!({ "now_ms": s.now_ms, "entries": entries }))
}
