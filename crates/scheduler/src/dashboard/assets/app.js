// The quarry dashboard: renders the page named by #app's data-page from
// the scheduler's JSON API (/api/...), polling once a second. No library,
// nothing fetched from anywhere but this scheduler.
"use strict";

const app = document.getElementById("app");
const statusLine = document.getElementById("status");
const page = app.dataset.page;

function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
  })[c]);
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = Number(n || 0);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return (unit === 0 ? value : value.toFixed(1)) + " " + units[unit];
}

function millis(ms) {
  if (ms === null || ms === undefined) return "";
  if (ms < 1000) return ms + " ms";
  if (ms < 60000) return (ms / 1000).toFixed(1) + " s";
  return Math.floor(ms / 60000) + " min " + Math.round((ms % 60000) / 1000) + " s";
}

async function get(path) {
  const response = await fetch(path, { cache: "no-store" });
  if (!response.ok) {
    let reason = response.status + " " + response.statusText;
    try {
      reason = (await response.json()).error || reason;
    } catch (_) {
      // not JSON: keep the status
    }
    throw new Error(reason);
  }
  return response.json();
}

function table(id, headers, rows, empty) {
  if (rows.length === 0) {
    return '<p class="empty" id="' + id + '-empty">' + esc(empty) + "</p>";
  }
  return '<table id="' + id + '"><thead><tr>' +
    headers.map((h) => "<th>" + esc(h) + "</th>").join("") +
    "</tr></thead><tbody>" +
    rows.map((cells) => "<tr>" + cells.map((c) => "<td>" + c + "</td>").join("") + "</tr>").join("") +
    "</tbody></table>";
}

function progress(job) {
  const c = job.counts;
  const finished = c.done + c.failed + c.cancelled;
  return '<progress max="' + c.total + '" value="' + finished + '"></progress> ' +
    '<span class="count">' + c.done + "/" + c.total + "</span>" +
    (c.failed ? ' <span class="failed">' + c.failed + " failed</span>" : "");
}

function locality(job) {
  const placed = job.tasks_local + job.tasks_remote;
  return placed ? Math.round((100 * job.tasks_local) / placed) + "%" : "";
}

function stateCell(state) {
  return '<span class="state ' + esc(state) + '">' + esc(state) + "</span>";
}

const render = {
  async jobs() {
    const data = await get("/api/jobs");
    const summary = '<p class="summary">' + data.workers + " workers, " + data.clients +
      " clients, " + data.queued + " tasks queued, " + data.dropped_jobs +
      " finished jobs dropped</p>";
    const rows = data.jobs.slice().reverse().map((job) => [
      '<a href="/jobs/' + job.ref + '">' + job.ref + "</a>",
      esc(job.name),
      stateCell(job.state.toLowerCase()),
      progress(job),
      String(job.counts.running),
      job.throughput.toFixed(1) + " tasks/s",
      locality(job),
      bytes(job.stats.bytes_from_store),
      bytes(job.stats.bytes_from_cache),
      millis(job.elapsed_ms),
    ]);
    return summary + table("jobs",
      ["job", "name", "state", "progress", "running", "throughput", "local", "from store", "from cache", "elapsed"],
      rows, "No jobs yet.");
  },

  async job() {
    const id = app.dataset.job;
    const data = await get("/api/jobs/" + encodeURIComponent(id) + "/tasks");
    const job = data.job;
    const c = job.counts;
    const head = "<h2 id=\"job-title\">" + job.ref + " " + esc(job.name) + " " +
      stateCell(job.state.toLowerCase()) + "</h2>" +
      '<p class="summary">' + progress(job) + " · " + c.running + " running, " + c.assigned +
      " assigned, " + c.queued + " queued · " + job.throughput.toFixed(1) + " tasks/s" +
      (locality(job) ? " · " + locality(job) + " placed local" : "") + "</p>";
    const rows = data.tasks.map((t) => [
      t.id,
      esc(t.key),
      stateCell(t.state),
      esc(t.worker),
      String(t.attempt),
      millis(t.duration_ms),
      bytes(t.bytes_local),
      bytes(t.bytes_remote),
      t.error ? '<pre class="error">' + esc(t.error) + "</pre>" : "",
    ]);
    const note = data.omitted
      ? '<p class="note">' + data.omitted + " older finished tasks not shown.</p>"
      : "";
    return head + table("tasks",
      ["task", "key", "state", "worker", "attempt", "duration", "bytes local", "bytes remote", "error"],
      rows, "No task of this job was placed on a worker yet.") + note;
  },

  async workers() {
    const workers = await get("/api/workers");
    const rows = workers.map((w) => [
      esc(w.name),
      "w" + w.id,
      esc(w.host),
      stateCell(w.state),
      '<meter min="0" max="' + w.slots + '" value="' + w.busy_slots + '"></meter> ' +
        w.busy_slots + "/" + w.slots,
      String(w.assigned),
      w.running.join(" "),
      String(w.cached_objects),
      bytes(w.cached_bytes),
    ]);
    return '<p class="summary">' + workers.length + " workers</p>" + table("workers",
      ["name", "id", "host", "state", "slots busy", "assigned", "running tasks", "cached objects", "cache"],
      rows, "No worker is connected.");
  },

  async failures() {
    const failures = await get("/api/failures");
    const rows = failures.map((f) => [
      f.task,
      '<a href="/jobs/' + f.job + '">' + f.job + "</a>",
      esc(f.key),
      esc(f.function),
      esc(f.worker),
      String(f.attempts),
      esc(f.kind),
      '<pre class="error">' + esc(f.message) + "</pre>",
      '<code class="logs">' + esc(f.logs) + "</code>",
    ]);
    return table("failures",
      ["task", "job", "key", "function", "worker", "attempts", "kind", "error", "logs"],
      rows, "No task has failed.");
  },

  async stream() {
    const data = await get("/api/stream?after=" + streamState.last);
    for (const entry of data.entries) {
      streamState.entries.push(entry);
      streamState.last = Math.max(streamState.last, entry.seq);
    }
    const keep = 2000;
    if (streamState.entries.length > keep) {
      streamState.entries.splice(0, streamState.entries.length - keep);
    }
    return timeline(streamState.entries, data.now_ms) + table("stream-table",
      ["task", "job", "function", "worker", "duration", "outcome"],
      streamState.entries.slice(-50).reverse().map((e) => [
        e.task,
        '<a href="/jobs/' + e.job + '">' + e.job + "</a>",
        esc(e.function),
        esc(e.worker),
        millis(e.end_ms - e.start_ms),
        e.ok ? stateCell("done") : stateCell("failed"),
      ]), "No attempt finished yet.");
  },
};

const streamState = { last: 0, entries: [] };

function color(text) {
  let hash = 0;
  for (const c of text) hash = (hash * 31 + c.charCodeAt(0)) >>> 0;
  return "hsl(" + (hash % 360) + ", 60%, 50%)";
}

// The last minute of attempts: one lane per worker, one bar per attempt,
// coloured by function (failures in red).
function timeline(entries, now) {
  const span = 60000;
  const width = 900;
  const lane = 18;
  const recent = entries.filter((e) => e.end_ms >= now - span);
  const workers = [...new Set(recent.map((e) => e.worker))].sort();
  const height = Math.max(1, workers.length) * lane + 20;
  const x = (t) => Math.max(0, ((t - (now - span)) / span) * width);
  let svg = '<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="' + (width + 120) +
    '" height="' + height + '">';
  workers.forEach((w, i) => {
    svg += '<text x="0" y="' + (i * lane + 13) + '" class="lane">' + esc(w) + "</text>";
  });
  for (const e of recent) {
    const lane_y = workers.indexOf(e.worker) * lane + 2;
    const x0 = x(e.start_ms);
    const w = Math.max(1, x(e.end_ms) - x0);
    svg += '<rect class="attempt" x="' + (120 + x0).toFixed(1) + '" y="' + lane_y + '" width="' +
      w.toFixed(1) + '" height="' + (lane - 4) + '" fill="' +
      (e.ok ? color(e.function) : "#d33") + "\"><title>" + e.task + " " + esc(e.function) +
      " " + millis(e.end_ms - e.start_ms) + "</title></rect>";
  }
  svg += '<text x="120" y="' + (height - 4) + '" class="axis">-60 s</text>' +
    '<text x="' + (width + 80) + '" y="' + (height - 4) + '" class="axis">now</text></svg>';
  return '<p class="summary">' + recent.length + " attempts in the last minute</p>" + svg;
}

async function refresh() {
  try {
    app.innerHTML = await render[page]();
    statusLine.textContent = "updated " + new Date().toLocaleTimeString();
    statusLine.className = "ok";
  } catch (e) {
    statusLine.textContent = "cannot load: " + e.message;
    statusLine.className = "error";
  }
}

refresh();
setInterval(refresh, 1000);
