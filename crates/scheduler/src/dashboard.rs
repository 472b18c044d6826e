//! The HTTP dashboard: a human page, a JSON API and Prometheus metrics,
//! all served from a snapshot the scheduler loop refreshes on every tick
//! (so HTTP traffic never touches the core). The refresh applies what
//! changed since the last one ([`quarry_core::Core::job_updates`]), so
//! its cost follows the running jobs, not every job kept; dropped jobs
//! leave the snapshot.

use axum::extract::State;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};
use quarry_core::{Core, Millis};
use quarry_proto::{JobId, JobInfo, JobState};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use tracing::warn;

/// What the dashboard shows.
#[derive(Clone, Debug, Default)]
pub(crate) struct Snapshot {
    pub(crate) jobs: BTreeMap<JobId, JobInfo>,
    pub(crate) workers: usize,
    pub(crate) clients: usize,
    pub(crate) queued: usize,
    /// Finished jobs dropped after their retention.
    pub(crate) dropped_jobs: u64,
    /// The journal's length in bytes, when there is one.
    pub(crate) journal_bytes: Option<u64>,
    /// Journal compactions since the scheduler started.
    pub(crate) journal_compactions: u64,
}

/// The journal figures the dashboard shows.
#[derive(Clone, Copy, Debug)]
pub(crate) struct JournalFigures {
    pub(crate) bytes: u64,
    pub(crate) compactions: u64,
}

impl Snapshot {
    /// Applies what changed in the core since the last refresh (once per
    /// tick of the scheduler loop); returns the jobs dropped since.
    pub(crate) fn refresh(
        shared: &Shared,
        core: &mut Core,
        clients: usize,
        journal: Option<JournalFigures>,
        now: Millis,
    ) -> Vec<JobId> {
        let updates = core.job_updates(now);
        let mut snapshot = shared.write().unwrap_or_else(|p| p.into_inner());
        for info in updates.changed {
            snapshot.jobs.insert(info.id, info);
        }
        for job in &updates.dropped {
            snapshot.jobs.remove(job);
        }
        snapshot.workers = core.worker_count();
        snapshot.queued = core.queued_tasks();
        snapshot.clients = clients;
        snapshot.dropped_jobs = core.dropped_jobs();
        snapshot.journal_bytes = journal.map(|j| j.bytes);
        snapshot.journal_compactions = journal.map_or(0, |j| j.compactions);
        updates.dropped
    }
}

/// The snapshot, shared between the scheduler loop and the HTTP handlers.
pub(crate) type Shared = Arc<RwLock<Snapshot>>;

/// Binds the dashboard and serves it in the background.
pub(crate) async fn serve(addr: SocketAddr, snapshot: Shared) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/", get(page))
        .route("/api/jobs", get(jobs))
        .route("/metrics", get(metrics))
        .with_state(snapshot);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            warn!("dashboard stopped: {e}");
        }
    });
    Ok(bound)
}

fn read(shared: &Shared) -> Snapshot {
    shared.read().unwrap_or_else(|p| p.into_inner()).clone()
}

async fn jobs(State(shared): State<Shared>) -> impl IntoResponse {
    let s = read(&shared);
    Json(serde_json::json!({
        "jobs": s.jobs.values().collect::<Vec<_>>(),
        "workers": s.workers,
        "clients": s.clients,
        "queued": s.queued,
        "dropped_jobs": s.dropped_jobs,
    }))
}

async fn metrics(State(shared): State<Shared>) -> impl IntoResponse {
    let s = read(&shared);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# TYPE quarry_workers gauge\nquarry_workers {}",
        s.workers
    );
    let _ = writeln!(
        out,
        "# TYPE quarry_clients gauge\nquarry_clients {}",
        s.clients
    );
    let _ = writeln!(
        out,
        "# TYPE quarry_tasks_queued gauge\nquarry_tasks_queued {}",
        s.queued
    );
    let _ = writeln!(
        out,
        "# TYPE quarry_jobs_dropped_total counter\nquarry_jobs_dropped_total {}",
        s.dropped_jobs
    );
    if let Some(bytes) = s.journal_bytes {
        let _ = writeln!(
            out,
            "# TYPE quarry_journal_bytes gauge\nquarry_journal_bytes {bytes}\n\
             # TYPE quarry_journal_compactions_total counter\nquarry_journal_compactions_total {}",
            s.journal_compactions
        );
    }
    let _ = writeln!(out, "# TYPE quarry_job_tasks gauge");
    for job in s.jobs.values() {
        let c = &job.counts;
        for (state, n) in [
            ("queued", c.queued),
            ("assigned", c.assigned),
            ("running", c.running),
            ("done", c.done),
            ("failed", c.failed),
            ("cancelled", c.cancelled),
        ] {
            let _ = writeln!(
                out,
                "quarry_job_tasks{{job=\"{}\",state=\"{state}\"}} {n}",
                job.id
            );
        }
    }
    out
}

async fn page(State(shared): State<Shared>) -> Html<String> {
    let s = read(&shared);
    let mut rows = String::new();
    for job in s.jobs.values() {
        let c = &job.counts;
        let state = match job.state {
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        };
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{state}</td><td>{}/{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            job.id,
            html_escape(&job.name),
            c.done,
            c.total,
            c.running,
            c.failed,
            job.stats.cache_hits
        );
    }
    Html(format!(
        "<!doctype html><html><head><meta charset=utf-8><meta http-equiv=refresh content=2>\
         <title>quarry</title></head><body><h1>quarry scheduler</h1>\
         <p>{} workers, {} clients, {} tasks queued, {} finished jobs dropped</p>\
         <table border=1 cellpadding=4><tr><th>job</th><th>name</th><th>state</th><th>done</th>\
         <th>running</th><th>failed</th><th>cache hits</th></tr>{rows}</table></body></html>",
        s.workers, s.clients, s.queued, s.dropped_jobs
    ))
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
