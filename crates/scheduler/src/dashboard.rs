//! The HTTP dashboard: a human page, a JSON API and Prometheus metrics,
//! all served from a snapshot the scheduler loop refreshes on every tick
//! (so HTTP traffic never touches the core).

use axum::extract::State;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};
use quarry_core::{Core, Millis};
use quarry_proto::{JobInfo, JobState};
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use tracing::warn;

/// What the dashboard shows.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub(crate) struct Snapshot {
    pub(crate) jobs: Vec<JobInfo>,
    pub(crate) workers: usize,
    pub(crate) clients: usize,
    pub(crate) queued: usize,
}

impl Snapshot {
    /// Refreshes the snapshot from the core and the peer table (once per
    /// tick of the scheduler loop).
    pub(crate) fn refresh(shared: &Shared, core: &Core, clients: usize, now: Millis) {
        let jobs = core.jobs(now);
        let mut snapshot = shared.write().unwrap_or_else(|p| p.into_inner());
        snapshot.jobs = jobs;
        snapshot.workers = core.worker_count();
        snapshot.queued = core.queued_tasks();
        snapshot.clients = clients;
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
    Json(read(&shared))
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
    let _ = writeln!(out, "# TYPE quarry_job_tasks gauge");
    for job in &s.jobs {
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
    for job in &s.jobs {
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
         <p>{} workers, {} clients, {} tasks queued</p>\
         <table border=1 cellpadding=4><tr><th>job</th><th>name</th><th>state</th><th>done</th>\
         <th>running</th><th>failed</th><th>cache hits</th></tr>{rows}</table></body></html>",
        s.workers, s.clients, s.queued
    ))
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
