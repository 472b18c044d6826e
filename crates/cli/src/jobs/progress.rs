//! Following a job to its end with a progress bar, and summing it up.

use anyhow::{bail, Context, Result};
use indicatif::{HumanBytes, HumanDuration, ProgressBar, ProgressDrawTarget, ProgressStyle};
use quarry_client::{Client, SessionState, SessionStatus};
use quarry_manifest::{resolve_results, ManifestRow};
use quarry_proto::{JobId, JobInfo, JobState};
use quarry_store::StoreResolver;
use std::time::{Duration, Instant};

/// When stderr is not a terminal (CI logs), a plain progress line is
/// printed this often instead of a bar.
const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Failed tasks listed after a run; the rest are counted.
const FAILURES_SHOWN: usize = 20;

/// Tasks that reached a final state.
fn finished(info: &JobInfo) -> u64 {
    info.counts.done + info.counts.failed + info.counts.cancelled
}

/// Finished tasks per second since the job opened.
fn rate(info: &JobInfo) -> f64 {
    if info.elapsed_ms == 0 {
        0.0
    } else {
        finished(info) as f64 * 1000.0 / info.elapsed_ms as f64
    }
}

/// Share of input reads served from worker caches, if there were any.
pub fn cache_hit_percent(info: &JobInfo) -> Option<f64> {
    let hits = u64::from(info.stats.cache_hits);
    let reads = hits + u64::from(info.stats.cache_misses);
    (reads > 0).then(|| hits as f64 * 100.0 / reads as f64)
}

/// One line: counts, rate, ETA and cache hits.
pub fn progress_line(info: &JobInfo) -> String {
    let c = &info.counts;
    let mut line = format!(
        "done {} · failed {} · running {} · queued {}",
        c.done,
        c.failed,
        c.running,
        c.queued + c.assigned
    );
    if c.cancelled > 0 {
        line.push_str(&format!(" · cancelled {}", c.cancelled));
    }
    let rate = rate(info);
    line.push_str(&format!(" · {rate:.1} tasks/s"));
    let remaining = c.total.saturating_sub(finished(info));
    if info.state == JobState::Running && rate > 0.0 && remaining > 0 {
        let eta = Duration::from_secs_f64(remaining as f64 / rate);
        line.push_str(&format!(" · ETA {}", HumanDuration(eta)));
    }
    if let Some(hits) = cache_hit_percent(info) {
        line.push_str(&format!(" · cache hits {hits:.0}%"));
    }
    line
}

/// Watches a job until it ends, drawing a bar on stderr (or, when stderr
/// is not a terminal, a line every few seconds), and returns its final
/// status. A lost scheduler is waited for (up to the client's reconnect
/// timeout): the watch carries on once it is back, and says so.
pub async fn follow(client: &Client, job: JobId, total: u64) -> Result<JobInfo> {
    let mut updates = client.watch(job).await?;
    let mut session = client.session_status();
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .context("progress bar template")?,
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let mut last_plain = Instant::now();
    loop {
        let info = tokio::select! {
            info = updates.recv() => info,
            changed = session.changed() => {
                if changed.is_ok() {
                    let status = session.borrow_and_update().clone();
                    bar.suspend(|| say_session(client, &status));
                }
                continue;
            }
        };
        let Some(info) = info else {
            bar.abandon();
            let status = session.borrow().clone();
            if status.state == SessionState::CutOff {
                bail!(
                    "lost track of job {job}: the scheduler at {} stayed unreachable past the \
                     reconnect timeout (the job may still be running there; see `quarry status \
                     {job}` once it is back)",
                    client.address()
                );
            }
            bail!("lost track of job {job}: the connection to the scheduler closed");
        };
        bar.set_length(info.counts.total.max(total));
        bar.set_position(finished(&info));
        bar.set_message(progress_line(&info));
        if bar.is_hidden() && last_plain.elapsed() >= PLAIN_PROGRESS_EVERY {
            eprintln!(
                "{}/{} {}",
                finished(&info),
                info.counts.total,
                progress_line(&info)
            );
            last_plain = Instant::now();
        }
        if info.state != JobState::Running {
            bar.finish_and_clear();
            return Ok(info);
        }
    }
}

/// Tells the user the connection to the scheduler changed.
fn say_session(client: &Client, status: &SessionStatus) {
    match status.state {
        SessionState::Reconnecting => eprintln!(
            "lost the connection to the scheduler at {}; reconnecting",
            client.address()
        ),
        SessionState::Connected if status.resumed => eprintln!(
            "reconnected to the scheduler at {}; still watching",
            client.address()
        ),
        SessionState::Connected => eprintln!(
            "reconnected to the scheduler at {}, but it restarted without its journal: the job \
             is gone",
            client.address()
        ),
        SessionState::CutOff => eprintln!(
            "the scheduler at {} stayed unreachable past the reconnect timeout",
            client.address()
        ),
    }
}

/// The words for a job's final state.
fn state_word(state: JobState) -> &'static str {
    match state {
        JobState::Running => "is running",
        JobState::Succeeded => "succeeded",
        JobState::Failed => "failed",
        JobState::Cancelled => "was cancelled",
    }
}

/// Where tasks ran and where their inputs came from.
pub fn locality_line(info: &JobInfo) -> String {
    let s = &info.stats;
    let mut line = format!(
        "placement: {} local, {} remote · input: {} from cache, {} from store · cache hits {}, misses {}",
        info.tasks_local,
        info.tasks_remote,
        HumanBytes(s.bytes_from_cache),
        HumanBytes(s.bytes_from_store),
        s.cache_hits,
        s.cache_misses
    );
    if let Some(hits) = cache_hit_percent(info) {
        line.push_str(&format!(" ({hits:.0}%)"));
    }
    line
}

/// Stored results (`_result.json`) up to this size are read into the rows
/// shown; larger ones show their `result_ref`.
const RESOLVE_RESULTS_UP_TO: u64 = 8 * 1024 * 1024;

/// A job's rows as the scheduler holds them, one per task, with stored
/// results read from the store into `result` (a result that cannot be read
/// is reported on stderr and left empty).
pub async fn job_rows(
    client: &Client,
    store: &StoreResolver,
    job: JobId,
) -> Result<Vec<ManifestRow>> {
    let mut rows: Vec<ManifestRow> = client
        .results(job)
        .await?
        .iter()
        .map(ManifestRow::from_status)
        .collect();
    for problem in resolve_results(store, &mut rows, RESOLVE_RESULTS_UP_TO).await {
        eprintln!("warning: {problem}");
    }
    Ok(rows)
}

/// Prints a finished job's summary (see [`print_summary`]). Only rows of
/// tasks that did not succeed are read, a page at a time, and at most
/// [`FAILURES_SHOWN`] kept, so that memory stays flat for a job of any size.
pub async fn summarize(client: &Client, info: &JobInfo, output: Option<&str>) -> Result<()> {
    let mut shown = Vec::new();
    let mut unsuccessful = 0usize;
    if info.state != JobState::Succeeded {
        let mut after = None;
        loop {
            let (page, more) = client.results_page(info.id, after, 10_000).await?;
            after = page.last().map(|row| row.id);
            for row in page.iter().filter(|row| row.state != "done") {
                unsuccessful += 1;
                if shown.len() < FAILURES_SHOWN {
                    shown.push(ManifestRow::from_status(row));
                }
            }
            if !more {
                break;
            }
        }
    }
    print_summary(info, output, &shown, unsuccessful);
    Ok(())
}

/// The exit code of a finished job: success only if every task succeeded.
pub fn exit_code(info: &JobInfo) -> std::process::ExitCode {
    if info.state == JobState::Succeeded {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

/// Prints what a finished job did and, from its rows, which tasks failed
/// and why. It all goes to stderr, like the progress bar, so that stdout
/// holds only data (a job id, a result table).
fn print_summary(
    info: &JobInfo,
    output: Option<&str>,
    failed: &[ManifestRow],
    unsuccessful: usize,
) {
    let c = &info.counts;
    let seconds = info.elapsed_ms as f64 / 1000.0;
    eprintln!(
        "job {} ({}) {}: {} tasks in {seconds:.2} s ({:.1} tasks/s)",
        info.id,
        info.name,
        state_word(info.state),
        c.total,
        rate(info)
    );
    eprintln!(
        "  done {} · failed {} · cancelled {}",
        c.done, c.failed, c.cancelled
    );
    eprintln!("  {}", locality_line(info));
    if let Some(output) = output {
        // A job fails with no failed task only when the scheduler could not
        // write its manifest (failed tasks are rows of one): then there is
        // no manifest to point to.
        if info.state == JobState::Failed && c.failed == 0 {
            eprintln!(
                "  output: {output}: the manifest and _SUCCESS could not be written (the cause is in the warning above)"
            );
        } else {
            eprintln!("  output: {output} (manifest: _quarry/manifest.parquet)");
        }
    }
    if unsuccessful == 0 {
        return;
    }
    eprintln!("{unsuccessful} task(s) did not succeed:");
    for row in failed {
        let error = row.error.as_deref().unwrap_or("(no error recorded)");
        eprintln!(
            "  {} [{}, {} attempt(s)]: {}",
            row.key,
            row.state,
            row.attempts,
            first_lines(error, 6)
        );
    }
    if unsuccessful > failed.len() {
        eprintln!(
            "  … and {} more (see `quarry results JOB --state failed` or \
             OUTPUT/_quarry/FAILED.json)",
            unsuccessful - failed.len()
        );
    }
}

/// The first `n` lines of an error text, indented to sit under its task.
fn first_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    let mut shown = lines[..lines.len().min(n)].join("\n      ");
    if lines.len() > n {
        shown.push_str(&format!("\n      … ({} more lines)", lines.len() - n));
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;
    use quarry_proto::{JobCounts, TaskStats};

    fn info(done: u64, failed: u64, total: u64, elapsed_ms: u64) -> JobInfo {
        JobInfo {
            id: JobId(1),
            name: "n".into(),
            state: JobState::Running,
            counts: JobCounts {
                total,
                done,
                failed,
                running: 2,
                queued: total - done - failed - 2,
                ..JobCounts::default()
            },
            tasks_local: 3,
            tasks_remote: 1,
            stats: TaskStats {
                cache_hits: 3,
                cache_misses: 1,
                ..TaskStats::default()
            },
            elapsed_ms,
        }
    }

    #[test]
    fn the_progress_line_has_counts_rate_eta_and_cache_hits() {
        let line = progress_line(&info(40, 10, 100, 10_000));
        assert_eq!(
            line,
            "done 40 · failed 10 · running 2 · queued 48 · 5.0 tasks/s · ETA 10 seconds · \
             cache hits 75%"
        );
    }

    #[test]
    fn long_errors_are_cut_to_a_few_lines() {
        assert_eq!(
            first_lines("a\nb\nc\n", 2),
            "a\n      b\n      … (1 more lines)"
        );
        assert_eq!(first_lines("one line", 6), "one line");
    }
}
