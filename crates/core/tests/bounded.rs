//! Memory stays flat over many jobs: with finished jobs dropped after
//! their retention, the slots of their tasks, and of workers that left,
//! are reused. Measured with a counting allocator (one test per binary,
//! so nothing else allocates meanwhile).

mod common;

use common::*;
use quarry_core::{CoreConfig, Event, Retention};
use quarry_proto::WorkerId;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const TASKS_PER_JOB: u64 = 500;

#[test]
fn a_thousand_jobs_with_worker_churn_keep_memory_flat() {
    let mut h = Harness::new(CoreConfig {
        retention: Retention {
            max_age_ms: None,
            max_jobs: Some(10),
        },
        ..CoreConfig::default()
    });
    let mut worker = 1;
    h.join(worker, 4, &["f"]);
    let mut after_100 = 0;
    for n in 0..1_000u64 {
        h.now += 10;
        h.open(1, n);
        let first = n * TASKS_PER_JOB;
        let out = h.submit(
            1,
            n,
            (first..first + TASKS_PER_JOB)
                .map(|i| task(1, i, "f"))
                .collect(),
        );
        h.seal(1, n);
        // Run everything: answer each Run until none is left.
        let mut pending = runs(&out);
        while let Some((w, id, attempt)) = pending.pop() {
            let out = h.succeed(w, id, attempt);
            pending.extend(runs(&out));
        }
        assert_eq!(
            h.core.job_info(job_id(1, n), h.now).unwrap().counts.done,
            TASKS_PER_JOB
        );
        if n % 50 == 49 {
            // A worker leaves and another joins (records are reused).
            h.send(Event::WorkerLeft {
                worker: WorkerId(worker),
            });
            worker += 1;
            h.join(worker, 4, &["f"]);
        }
        h.tick_at(h.now + 1);
        h.core.job_updates(h.now);
        if n == 99 {
            after_100 = ALLOCATED.load(Ordering::Relaxed);
        }
    }
    let after_1000 = ALLOCATED.load(Ordering::Relaxed);
    assert!(h.core.task_count() <= 11 * TASKS_PER_JOB as usize);
    assert_eq!(h.core.dropped_jobs(), 990);
    assert!(
        after_1000 as f64 <= after_100 as f64 * 1.05,
        "{after_100} bytes after 100 jobs, {after_1000} after 1,000"
    );
}
