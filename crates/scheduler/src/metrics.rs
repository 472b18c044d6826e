//! The scheduler's Prometheus series, through `prometheus-client`.
//!
//! The scheduler loop updates them (from the core's queries and from the
//! reports it already handles); `/metrics` only encodes them. Names follow
//! dask's (`dask_scheduler_tasks{state}` is `quarry_scheduler_tasks{state}`)
//! where dask has one; `docs/operations.md` lists every series.
//!
//! Per-job series (`quarry_job_*{job}`) are removed when the core drops the
//! job after its retention, so a scheduler that runs for weeks keeps as
//! many of them as it keeps jobs.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use quarry_core::WorkerView;
use quarry_journal::{WriterState, SYNC_LATENCY_BOUNDS};
use quarry_proto::{JobId, JobInfo, JobState};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One label.
type Label = [(&'static str, String); 1];
/// A job's label and one more.
type JobLabel = [(&'static str, String); 2];

/// The task states, as the series label them.
const TASK_STATES: [&str; 6] = [
    "queued",
    "assigned",
    "running",
    "done",
    "failed",
    "cancelled",
];

/// The scheduler's series. Cheap to update from the loop; shared with the
/// HTTP handler that encodes them.
#[derive(Debug)]
pub(crate) struct SchedulerMetrics {
    registry: Registry,
    tasks: Family<Label, Gauge>,
    tasks_forgotten: Counter,
    jobs: Family<Label, Gauge>,
    jobs_forgotten: Counter,
    workers: Family<Label, Gauge>,
    slots: Family<Label, Gauge>,
    clients: Gauge,
    placed: Family<Label, Counter>,
    input_bytes: Family<Label, Counter>,
    cache_lookups: Family<Label, Counter>,
    task_duration: Family<Label, Histogram>,
    tick_duration: Histogram,
    job_tasks: Family<JobLabel, Gauge>,
    job_input_bytes: Family<JobLabel, Counter>,
    journal: Arc<JournalCollector>,
}

fn label(key: &'static str, value: impl Into<String>) -> Label {
    [(key, value.into())]
}

fn job_label(job: JobId, key: &'static str, value: impl Into<String>) -> JobLabel {
    [("job", job.to_string()), (key, value.into())]
}

/// Buckets of attempt durations: 1 ms to about 1.5 hours.
fn duration_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 4.0, 12))
}

impl SchedulerMetrics {
    /// Every series registered, at zero.
    pub(crate) fn new() -> SchedulerMetrics {
        let mut registry = Registry::default();
        let tasks = Family::<Label, Gauge>::default();
        registry.register(
            "quarry_scheduler_tasks",
            "Tasks of the jobs the scheduler keeps, by state",
            tasks.clone(),
        );
        let tasks_forgotten = Counter::default();
        registry.register(
            "quarry_scheduler_tasks_forgotten",
            "Tasks dropped with their jobs after the jobs' retention",
            tasks_forgotten.clone(),
        );
        let jobs = Family::<Label, Gauge>::default();
        registry.register(
            "quarry_scheduler_jobs",
            "Jobs the scheduler keeps, by state",
            jobs.clone(),
        );
        let jobs_forgotten = Counter::default();
        registry.register(
            "quarry_scheduler_jobs_forgotten",
            "Finished jobs dropped after their retention",
            jobs_forgotten.clone(),
        );
        let workers = Family::<Label, Gauge>::default();
        registry.register(
            "quarry_scheduler_workers",
            "Connected workers by state: idle, partially_saturated, saturated, draining",
            workers.clone(),
        );
        let slots = Family::<Label, Gauge>::default();
        registry.register(
            "quarry_scheduler_slots",
            "Task slots of the connected workers, busy (running a task) or free",
            slots.clone(),
        );
        let clients = Gauge::default();
        registry.register(
            "quarry_scheduler_clients",
            "Connected client sessions",
            clients.clone(),
        );
        let placed = Family::<Label, Counter>::default();
        registry.register(
            "quarry_scheduler_tasks_placed",
            "Attempts placed on a worker that cached their inputs (local) or elsewhere (remote)",
            placed.clone(),
        );
        let input_bytes = Family::<Label, Counter>::default();
        registry.register_with_unit(
            "quarry_scheduler_input",
            "Task input bytes the workers read, from the object store or from their cache",
            Unit::Bytes,
            input_bytes.clone(),
        );
        let cache_lookups = Family::<Label, Counter>::default();
        registry.register(
            "quarry_scheduler_cache_lookups",
            "Task inputs the workers found in their cache (hit) or downloaded (miss)",
            cache_lookups.clone(),
        );
        let task_duration =
            Family::<Label, Histogram>::new_with_constructor(duration_buckets as fn() -> Histogram);
        registry.register_with_unit(
            "quarry_scheduler_task_duration",
            "Wall time of task attempts as workers report it, by function",
            Unit::Seconds,
            task_duration.clone(),
        );
        let tick_duration = Histogram::new(exponential_buckets(0.0001, 4.0, 10));
        registry.register_with_unit(
            "quarry_scheduler_tick_duration",
            "Time the scheduler loop spent on one turn (a batch of messages or a timer tick, \
             and sending what it decided)",
            Unit::Seconds,
            tick_duration.clone(),
        );
        let job_tasks = Family::<JobLabel, Gauge>::default();
        registry.register(
            "quarry_job_tasks",
            "A kept job's tasks by state (removed when the job is dropped)",
            job_tasks.clone(),
        );
        let job_input_bytes = Family::<JobLabel, Counter>::default();
        registry.register_with_unit(
            "quarry_job_input",
            "A kept job's input bytes, from the store or the cache (removed when the job is \
             dropped)",
            Unit::Bytes,
            job_input_bytes.clone(),
        );
        let journal = Arc::new(JournalCollector::default());
        registry.register_collector(Box::new(journal.clone()));
        // Counters are there from the start, at zero, so that rates work
        // from the first scrape.
        for (family, key, values) in [
            (&placed, "locality", ["local", "remote"]),
            (&input_bytes, "source", ["store", "cache"]),
            (&cache_lookups, "result", ["hit", "miss"]),
        ] {
            for value in values {
                let _ = family.get_or_create(&label(key, value));
            }
        }
        SchedulerMetrics {
            registry,
            tasks,
            tasks_forgotten,
            jobs,
            jobs_forgotten,
            workers,
            slots,
            clients,
            placed,
            input_bytes,
            cache_lookups,
            task_duration,
            tick_duration,
            job_tasks,
            job_input_bytes,
            journal,
        }
    }

    /// The series in the OpenMetrics text format.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// A job changed: its counters advance by what changed since `before`
    /// (`None` for a job not seen yet), and its per-job series follow.
    pub(crate) fn job_changed(&self, before: Option<&JobInfo>, after: &JobInfo) {
        let zero = JobInfo {
            id: after.id,
            name: String::new(),
            state: JobState::Running,
            counts: Default::default(),
            tasks_local: 0,
            tasks_remote: 0,
            stats: Default::default(),
            elapsed_ms: 0,
        };
        let before = before.unwrap_or(&zero);
        let grew = |new: u64, old: u64| new.saturating_sub(old);
        let (b, a) = (&before.stats, &after.stats);
        self.placed
            .get_or_create(&label("locality", "local"))
            .inc_by(grew(after.tasks_local, before.tasks_local));
        self.placed
            .get_or_create(&label("locality", "remote"))
            .inc_by(grew(after.tasks_remote, before.tasks_remote));
        let store = grew(a.bytes_from_store, b.bytes_from_store);
        let cache = grew(a.bytes_from_cache, b.bytes_from_cache);
        self.input_bytes
            .get_or_create(&label("source", "store"))
            .inc_by(store);
        self.input_bytes
            .get_or_create(&label("source", "cache"))
            .inc_by(cache);
        self.cache_lookups
            .get_or_create(&label("result", "hit"))
            .inc_by(grew(a.cache_hits.into(), b.cache_hits.into()));
        self.cache_lookups
            .get_or_create(&label("result", "miss"))
            .inc_by(grew(a.cache_misses.into(), b.cache_misses.into()));
        self.job_input_bytes
            .get_or_create(&job_label(after.id, "source", "store"))
            .inc_by(store);
        self.job_input_bytes
            .get_or_create(&job_label(after.id, "source", "cache"))
            .inc_by(cache);
        for (state, n) in TASK_STATES.iter().zip(task_counts(after)) {
            self.job_tasks
                .get_or_create(&job_label(after.id, "state", *state))
                .set(n as i64);
        }
    }

    /// The core dropped a job: its series go.
    pub(crate) fn job_dropped(&self, job: JobId) {
        for state in TASK_STATES {
            self.job_tasks.remove(&job_label(job, "state", state));
        }
        for source in ["store", "cache"] {
            self.job_input_bytes
                .remove(&job_label(job, "source", source));
        }
    }

    /// Sets the gauges that describe the whole scheduler.
    pub(crate) fn set_totals<'a>(
        &self,
        kept_jobs: impl IntoIterator<Item = &'a JobInfo>,
        totals: &Totals<'_>,
    ) {
        let mut by_state = [0u64; TASK_STATES.len()];
        let mut jobs = [0i64; 4];
        for job in kept_jobs {
            for (sum, n) in by_state.iter_mut().zip(task_counts(job)) {
                *sum += n;
            }
            jobs[match job.state {
                JobState::Running => 0,
                JobState::Succeeded => 1,
                JobState::Failed => 2,
                JobState::Cancelled => 3,
            }] += 1;
        }
        for (state, n) in TASK_STATES.iter().zip(by_state) {
            self.tasks
                .get_or_create(&label("state", *state))
                .set(n as i64);
        }
        for (state, n) in ["running", "succeeded", "failed", "cancelled"]
            .iter()
            .zip(jobs)
        {
            self.jobs.get_or_create(&label("state", *state)).set(n);
        }
        set_to(&self.tasks_forgotten, totals.dropped_tasks);
        set_to(&self.jobs_forgotten, totals.dropped_jobs);
        let mut workers = [0i64; 4];
        let (mut busy, mut free) = (0i64, 0i64);
        for worker in totals.workers {
            workers[worker_state(worker)] += 1;
            busy += i64::from(worker.busy_slots);
            free += i64::from(worker.slots - worker.busy_slots);
        }
        for (state, n) in WORKER_STATES.iter().zip(workers) {
            self.workers.get_or_create(&label("state", *state)).set(n);
        }
        self.slots.get_or_create(&label("state", "busy")).set(busy);
        self.slots.get_or_create(&label("state", "free")).set(free);
        self.clients.set(totals.clients as i64);
        if let Some(journal) = totals.journal {
            *self.journal.state.lock().unwrap_or_else(|p| p.into_inner()) = Some(journal.clone());
        }
    }

    /// The histogram of `function`'s attempt durations, in seconds (the
    /// loop keeps it, to observe without looking it up each time).
    pub(crate) fn function_histogram(&self, function: &str) -> Histogram {
        self.task_duration
            .get_or_create_owned(&label("function", function))
    }

    /// One turn of the scheduler loop took `took`.
    pub(crate) fn loop_turn(&self, took: Duration) {
        self.tick_duration.observe(took.as_secs_f64());
    }
}

/// What [`SchedulerMetrics::set_totals`] reads.
pub(crate) struct Totals<'a> {
    /// The live workers.
    pub(crate) workers: &'a [WorkerView],
    /// Connected client sessions.
    pub(crate) clients: usize,
    /// Jobs dropped so far.
    pub(crate) dropped_jobs: u64,
    /// Their tasks.
    pub(crate) dropped_tasks: u64,
    /// The journal writer's figures, if there is a journal.
    pub(crate) journal: Option<&'a WriterState>,
}

/// Worker states, as [`worker_state`] numbers them.
pub(crate) const WORKER_STATES: [&str; 4] =
    ["idle", "partially_saturated", "saturated", "draining"];

/// A worker's state: dask's names (idle, partially_saturated, saturated)
/// by its busy slots, and draining (dask's paused_or_retiring).
pub(crate) fn worker_state(worker: &WorkerView) -> usize {
    if worker.draining {
        3
    } else if worker.busy_slots == 0 && worker.assigned == 0 {
        0
    } else if worker.busy_slots < worker.slots {
        1
    } else {
        2
    }
}

fn task_counts(job: &JobInfo) -> [u64; TASK_STATES.len()] {
    let c = &job.counts;
    [
        c.queued,
        c.assigned,
        c.running,
        c.done,
        c.failed,
        c.cancelled,
    ]
}

/// Raises a counter to `value` (a total the core keeps).
fn set_to(counter: &Counter, value: u64) {
    let now = counter.get();
    if value > now {
        counter.inc_by(value - now);
    }
}

/// The journal's series, encoded from the writer's last published state:
/// its size, compactions, and a histogram of its `fdatasync`s. Absent
/// without a journal.
#[derive(Debug, Default)]
struct JournalCollector {
    state: Mutex<Option<WriterState>>,
}

impl Collector for JournalCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(state) = self.state.lock().unwrap_or_else(|p| p.into_inner()).clone() else {
            return Ok(());
        };
        let bytes = ConstGauge::new(state.bytes as i64);
        bytes.encode(encoder.encode_descriptor(
            "quarry_scheduler_journal_bytes",
            "The journal file's length",
            None,
            bytes.metric_type(),
        )?)?;
        let compactions = ConstCounter::new(state.compactions);
        compactions.encode(encoder.encode_descriptor(
            "quarry_scheduler_journal_compactions",
            "Journal compactions since the scheduler started",
            None,
            compactions.metric_type(),
        )?)?;
        // Per-bucket counts: the encoder accumulates them.
        let latency = &state.sync_latency;
        let mut buckets: Vec<(f64, u64)> = SYNC_LATENCY_BOUNDS
            .iter()
            .copied()
            .zip(latency.buckets)
            .collect();
        let bounded: u64 = latency.buckets.iter().sum();
        buckets.push((f64::INFINITY, latency.count - bounded));
        let mut metric = encoder.encode_descriptor(
            "quarry_scheduler_journal_flush_duration",
            "Time each fdatasync of the journal took",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        metric.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            latency.sum_seconds,
            latency.count,
            &buckets,
            None,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quarry_proto::{JobCounts, TaskStats};

    fn job(id: JobId, done: u64, store: u64) -> JobInfo {
        JobInfo {
            id,
            name: "j".into(),
            state: JobState::Running,
            counts: JobCounts {
                total: 10,
                done,
                queued: 10 - done,
                ..JobCounts::default()
            },
            tasks_local: done,
            tasks_remote: 1,
            stats: TaskStats {
                bytes_from_store: store,
                cache_hits: done as u32,
                ..TaskStats::default()
            },
            elapsed_ms: 5,
        }
    }

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map(|v| v.parse().unwrap())
    }

    #[test]
    fn per_job_series_are_registered_and_removed_with_the_job() {
        let metrics = SchedulerMetrics::new();
        let a = JobId(1);
        let b = JobId(2);
        metrics.job_changed(None, &job(a, 3, 100));
        metrics.job_changed(None, &job(b, 1, 10));
        let text = metrics.encode();
        let done_a = format!("quarry_job_tasks{{job=\"{a}\",state=\"done\"}}");
        let done_b = format!("quarry_job_tasks{{job=\"{b}\",state=\"done\"}}");
        assert_eq!(value(&text, &done_a), Some(3.0), "{text}");
        assert_eq!(value(&text, &done_b), Some(1.0));

        metrics.job_dropped(a);
        let text = metrics.encode();
        assert!(!text.contains(&format!("job=\"{a}\"")), "{text}");
        assert_eq!(value(&text, &done_b), Some(1.0));
        // The scheduler-wide counters keep what the dropped job added.
        assert_eq!(
            value(
                &text,
                "quarry_scheduler_input_bytes_total{source=\"store\"}"
            ),
            Some(110.0),
            "{text}"
        );
    }

    #[test]
    fn counters_advance_by_what_changed() {
        let metrics = SchedulerMetrics::new();
        let a = JobId(1);
        let first = job(a, 2, 50);
        metrics.job_changed(None, &first);
        metrics.job_changed(Some(&first), &job(a, 5, 80));
        let text = metrics.encode();
        assert_eq!(
            value(
                &text,
                "quarry_scheduler_tasks_placed_total{locality=\"local\"}"
            ),
            Some(5.0)
        );
        assert_eq!(
            value(
                &text,
                "quarry_scheduler_tasks_placed_total{locality=\"remote\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &text,
                "quarry_scheduler_input_bytes_total{source=\"store\"}"
            ),
            Some(80.0)
        );
        assert_eq!(
            value(
                &text,
                "quarry_scheduler_cache_lookups_total{result=\"hit\"}"
            ),
            Some(5.0)
        );
        assert_eq!(
            value(
                &text,
                &format!("quarry_job_input_bytes_total{{job=\"{a}\",source=\"store\"}}")
            ),
            Some(80.0)
        );
    }

    #[test]
    fn totals_and_histograms_are_encoded() {
        let metrics = SchedulerMetrics::new();
        let a = JobId(1);
        let jobs = [job(a, 4, 0)];
        let workers = [
            WorkerView {
                id: quarry_proto::WorkerId(1),
                name: "w1".into(),
                host: String::new(),
                slots: 2,
                busy_slots: 2,
                running: Vec::new(),
                assigned: 0,
                cached_objects: 0,
                cached_bytes: 0,
                draining: false,
            },
            WorkerView {
                id: quarry_proto::WorkerId(2),
                name: "w2".into(),
                host: String::new(),
                slots: 2,
                busy_slots: 0,
                running: Vec::new(),
                assigned: 0,
                cached_objects: 0,
                cached_bytes: 0,
                draining: true,
            },
        ];
        let mut journal = WriterState {
            bytes: 4096,
            ..WriterState::default()
        };
        for took in [1500, 1800, 400, 5_000_000] {
            journal.sync_latency.observe(Duration::from_micros(took));
        }
        metrics.set_totals(
            &jobs,
            &Totals {
                workers: &workers,
                clients: 3,
                dropped_jobs: 2,
                dropped_tasks: 20,
                journal: Some(&journal),
            },
        );
        metrics.function_histogram("inc").observe(0.003);
        metrics.loop_turn(Duration::from_micros(50));
        let text = metrics.encode();
        let v = |series: &str| value(&text, series);
        assert_eq!(
            v("quarry_scheduler_tasks{state=\"done\"}"),
            Some(4.0),
            "{text}"
        );
        assert_eq!(v("quarry_scheduler_tasks{state=\"queued\"}"), Some(6.0));
        assert_eq!(v("quarry_scheduler_jobs{state=\"running\"}"), Some(1.0));
        assert_eq!(
            v("quarry_scheduler_workers{state=\"saturated\"}"),
            Some(1.0)
        );
        assert_eq!(v("quarry_scheduler_workers{state=\"draining\"}"), Some(1.0));
        assert_eq!(v("quarry_scheduler_slots{state=\"free\"}"), Some(2.0));
        assert_eq!(v("quarry_scheduler_clients"), Some(3.0));
        assert_eq!(v("quarry_scheduler_jobs_forgotten_total"), Some(2.0));
        assert_eq!(v("quarry_scheduler_tasks_forgotten_total"), Some(20.0));
        assert_eq!(v("quarry_scheduler_journal_bytes"), Some(4096.0));
        // Cumulative buckets; the 5 s sync is past the last bound.
        for (le, n) in [
            ("0.0005", 1.0),
            ("0.001", 1.0),
            ("0.002", 3.0),
            ("2.0", 3.0),
            ("+Inf", 4.0),
        ] {
            let series =
                format!("quarry_scheduler_journal_flush_duration_seconds_bucket{{le=\"{le}\"}}");
            assert_eq!(v(&series), Some(n), "{text}");
        }
        assert_eq!(
            v("quarry_scheduler_journal_flush_duration_seconds_count"),
            Some(4.0)
        );
        assert_eq!(
            v("quarry_scheduler_task_duration_seconds_count{function=\"inc\"}"),
            Some(1.0)
        );
        assert_eq!(v("quarry_scheduler_tick_duration_seconds_count"), Some(1.0));
        assert!(text.ends_with("# EOF\n"), "OpenMetrics text ends with EOF");
    }
}
