//! The dashboard's pages: one HTML shell each, with the script and style
//! compiled in (`assets/`), which renders the page from `/api/` and
//! refreshes it every second.

use super::Dashboard;
use axum::extract::Path;
use axum::response::Html;
use axum::routing::get;
use axum::Router;

const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/style.css");

/// The pages, by path, with their titles in the navigation bar.
const NAVIGATION: [(&str, &str); 4] = [
    ("/", "Jobs"),
    ("/workers", "Workers"),
    ("/failures", "Failed tasks"),
    ("/stream", "Task stream"),
];

/// The page routes.
pub(super) fn routes() -> Router<Dashboard> {
    Router::new()
        .route("/", get(|| async { shell("jobs", "/", "Jobs", None) }))
        .route(
            "/workers",
            get(|| async { shell("workers", "/workers", "Workers", None) }),
        )
        .route(
            "/failures",
            get(|| async { shell("failures", "/failures", "Failed tasks", None) }),
        )
        .route(
            "/stream",
            get(|| async { shell("stream", "/stream", "Task stream", None) }),
        )
        .route(
            "/jobs/{job}",
            get(|Path(job): Path<String>| async move {
                shell("job", "/", &format!("Job {job}"), Some(&job))
            }),
        )
}

/// A page: navigation, an empty `#app` the script fills in, and a status
/// line saying when it last refreshed (or why it could not).
fn shell(page: &str, current: &str, title: &str, job: Option<&str>) -> Html<String> {
    let navigation: String = NAVIGATION
        .iter()
        .map(|(path, name)| {
            let class = if *path == current {
                " class=current"
            } else {
                ""
            };
            format!("<a href=\"{path}\"{class}>{name}</a>")
        })
        .collect();
    let job = job
        .map(|job| format!(" data-job=\"{}\"", html_escape(job)))
        .unwrap_or_default();
    Html(format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
         <title>quarry · {title}</title><style>{STYLE}</style></head><body>\
         <header><h1>quarry</h1><nav>{navigation}</nav></header>\
         <div id=status>loading…</div>\
         <main id=app data-page={page}{job}><noscript>This page needs JavaScript; \
         the same data is at /api/.</noscript></main>\
         <script>{SCRIPT}</script></body></html>",
        title = html_escape(title),
    ))
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
