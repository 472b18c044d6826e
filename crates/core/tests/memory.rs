//! Memory per queued task, measured with a counting allocator: a million
//! queued tasks must fit in a few hundred megabytes of scheduler, specs
//! included.

mod common;

use common::{job_id, task};
use quarry_core::{Command, Core, CoreConfig, Event};
use quarry_proto::{ClientId, EncodedTask, RequestId};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The system allocator, counting bytes currently allocated.
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

#[test]
fn a_queued_task_costs_less_than_250_bytes_spec_included() {
    const TASKS: u64 = 300_000;
    let before = ALLOCATED.load(Ordering::Relaxed);
    let mut core = Core::new(CoreConfig::default());
    let mut out = Vec::new();
    core.handle(
        0,
        Event::JobOpened {
            client: ClientId(1),
            request: RequestId(0),
            spec: Arc::new(common::job_spec(1, 0)),
        },
        &mut out,
    );
    let batches: Vec<Vec<EncodedTask>> = (0..TASKS)
        .step_by(10_000)
        .map(|first| {
            (first..first + 10_000)
                .map(|n| EncodedTask::encode(&task(1, n, "f")).expect("encodable"))
                .collect()
        })
        .collect();

    for tasks in batches {
        core.handle(
            0,
            Event::TasksSubmitted {
                client: ClientId(1),
                request: RequestId(0),
                job: job_id(1, 0),
                tasks,
            },
            &mut out,
        );
    }
    let after = ALLOCATED.load(Ordering::Relaxed);
    assert!(out.iter().all(|c| matches!(c, Command::Accepted { .. })));
    assert_eq!(core.queued_tasks(), TASKS as usize);

    // The submitted batches are gone (the core keeps its own encoded
    // copies), so what remains is everything the core holds.
    let per_task = (after - before) as f64 / TASKS as f64;
    assert!(per_task < 250.0, "{per_task:.0} bytes per queued task");
}
