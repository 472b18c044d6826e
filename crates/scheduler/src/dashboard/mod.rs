//! The HTTP dashboard: pages for people (`pages`), the same data as JSON
//! under `/api/` (`api`), and Prometheus metrics at `/metrics`
//! ([`crate::metrics`]). Everything is served from the snapshot the
//! scheduler loop refreshes on every tick (`snapshot`), so HTTP traffic
//! never touches the core. No page loads anything from elsewhere: the
//! script and style are compiled in.

mod api;
mod pages;
mod snapshot;

pub(crate) use snapshot::{Observer, Shared};

use crate::metrics::SchedulerMetrics;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use tracing::warn;

/// What the handlers read.
#[derive(Clone)]
pub(crate) struct Dashboard {
    /// The snapshot the loop publishes.
    pub(crate) snapshot: Shared,
    /// The scheduler's series.
    pub(crate) metrics: Arc<SchedulerMetrics>,
}

/// Binds the dashboard and serves it in the background.
pub(crate) async fn serve(addr: SocketAddr, dashboard: Dashboard) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .merge(pages::routes())
        .merge(api::routes())
        .route("/metrics", get(metrics))
        .with_state(dashboard);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            warn!("dashboard stopped: {e}");
        }
    });
    Ok(bound)
}

/// The OpenMetrics text that Prometheus scrapes.
async fn metrics(State(dashboard): State<Dashboard>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        dashboard.metrics.encode(),
    )
}
