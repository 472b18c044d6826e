//! What the core tells the dashboard: its workers (slots, running tasks,
//! cache use, draining) and where a task comes from.

mod common;

use common::*;
use quarry_core::Event;
use quarry_proto::{ByteRange, CacheEntry, WorkerId};

#[test]
fn workers_show_their_running_tasks_slots_and_cache() {
    let mut h = Harness::new(no_prefetch());
    let cached = shard("a", 100);
    h.join_cached(1, 2, &["f"], &[&cached]);
    h.join(2, 1, &["f"]);
    h.open(1, 0);
    let specs: Vec<_> = (0..3).map(|n| task(1, n, "f")).collect();
    let placed = runs(&h.submit(1, 0, specs));
    assert_eq!(placed.len(), 3, "one task per slot");
    let (w, started, attempt) = placed.iter().find(|(w, ..)| *w == 1).copied().unwrap();
    h.start(w, started, attempt);

    let views = h.core.workers();
    assert_eq!(views.len(), 2);
    let first = &views[0];
    assert_eq!(first.id, WorkerId(1));
    assert_eq!(first.name, "w1");
    assert_eq!(first.slots, 2);
    assert_eq!(first.running, vec![started]);
    assert_eq!(first.busy_slots, 1, "only started tasks take a slot");
    assert_eq!(first.assigned, 1);
    assert_eq!((first.cached_objects, first.cached_bytes), (1, 100));
    assert!(!first.draining);

    // Cache deltas move the figures; eviction of an unknown key changes
    // nothing, and evicting some blocks of an object leaves the rest.
    let b = shard("b", 50).object_key();
    h.send(Event::CacheDelta {
        worker: WorkerId(1),
        added: vec![CacheEntry::whole(b.clone(), 50)],
        evicted: vec![
            CacheEntry::whole(cached.object_key(), 100),
            CacheEntry::whole("never-cached", 10),
        ],
    });
    assert_eq!(
        (
            h.core.workers()[0].cached_objects,
            h.core.workers()[0].cached_bytes
        ),
        (1, 50)
    );
    h.send(Event::CacheDelta {
        worker: WorkerId(1),
        added: Vec::new(),
        evicted: vec![CacheEntry {
            object_key: b,
            ranges: vec![ByteRange { start: 0, end: 20 }],
        }],
    });
    h.send(Event::WorkerDraining {
        worker: WorkerId(1),
    });
    let first = &h.core.workers()[0];
    assert_eq!((first.cached_objects, first.cached_bytes), (1, 30));
    assert!(first.draining);

    h.send(Event::WorkerLeft {
        worker: WorkerId(2),
    });
    let names: Vec<String> = h.core.workers().into_iter().map(|v| v.name).collect();
    assert_eq!(names, ["w1"], "departed workers are not listed");
}

#[test]
fn a_task_names_its_job_and_function() {
    let mut h = Harness::new(no_prefetch());
    h.open(1, 0);
    h.submit(1, 0, vec![task(1, 0, "inc"), task(1, 1, "wordcount")]);
    assert_eq!(
        h.core.task_origin(task_id(1, 1)),
        Some((job_id(1, 0), "wordcount"))
    );
    assert_eq!(
        h.core.task_origin(task_id(1, 0)),
        Some((job_id(1, 0), "inc"))
    );
    assert_eq!(h.core.task_origin(task_id(1, 7)), None);
}
