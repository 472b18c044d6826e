//! The planner's properties, for both ways in (the library's prefix
//! options and a job file): task keys are unique and safe, chunks cover
//! every byte of their object exactly once, and line-aligned chunks never
//! split a line.

use futures::{StreamExt, TryStreamExt};
use proptest::prelude::*;
use quarry_job::JobSpec;
use quarry_plan::{plan_job, plan_prefix, Chunking, PlanError, PrefixPlan, Split};
use quarry_proto::{ByteRange, DataRef};
use quarry_store::object_store::path::Path;
use quarry_store::object_store::ObjectStoreExt;
use quarry_store::{memory_store, StoreConfig, StoreResolver};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};

static STORES: AtomicUsize = AtomicUsize::new(0);

/// A fresh in-memory store holding `objects` under `in/`; returns its name.
async fn seed(objects: &BTreeMap<String, Vec<u8>>) -> String {
    let name = format!("plan-prop-{}", STORES.fetch_add(1, Ordering::Relaxed));
    let store = memory_store(&name);
    for (key, body) in objects {
        store
            .put(&Path::from(format!("in/{key}")), body.clone().into())
            .await
            .unwrap();
    }
    name
}

fn object_names() -> impl Strategy<Value = Vec<String>> {
    let segment = prop::sample::select(vec![
        "a", "b", "a b", "a_b", "a\\b", "x.txt", "..", "日本", "k=v", "a@00001", "~", "%41",
    ]);
    prop::collection::vec(prop::collection::vec(segment, 1..3), 1..6).prop_map(|names| {
        names
            .into_iter()
            .map(|segments| segments.join("/"))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect()
    })
}

fn content() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop::sample::select(vec![b'a', b'b', b'\n', b' ', b'\r']),
        0..200,
    )
}

/// What both ways in produce: keys and inputs, in order.
async fn both_ways(
    name: &str,
    chunking: Option<Chunking>,
) -> (Vec<(String, DataRef)>, Vec<(String, DataRef)>) {
    let store = StoreResolver::new(StoreConfig::default());
    let url = format!("memory://{name}/in/");
    let library: Vec<(String, DataRef)> =
        plan_prefix(&store, &PrefixPlan::new(&url, None, chunking))
            .map_ok(|planned| (planned.key, planned.input))
            .try_collect()
            .await
            .unwrap();
    let chunk_lines = match chunking {
        Some(Chunking { size, split }) => format!(
            "\n  chunk_size: {size}\n  split: {}",
            match split {
                Split::Lines => "lines",
                Split::Bytes => "bytes",
            }
        ),
        None => String::new(),
    };
    let yaml = format!("name: p\nfunction: f\ninput:\n  prefix: {url}{chunk_lines}\n");
    let spec = JobSpec::from_yaml(&yaml, "job.yaml", std::path::Path::new("/jobs")).unwrap();
    let plan = plan_job(&store, &spec).await.unwrap();
    let from_file: Vec<(String, DataRef)> = plan
        .tasks
        .map_ok(|task| (task.key, task.inputs.into_iter().next().unwrap()))
        .try_collect()
        .await
        .unwrap();
    (library, from_file)
}

fn check_plan(
    objects: &BTreeMap<String, Vec<u8>>,
    name: &str,
    planned: &[(String, DataRef)],
    chunking: Option<Chunking>,
) -> Result<(), TestCaseError> {
    let mut keys = HashSet::new();
    let mut covered: BTreeMap<String, Vec<ByteRange>> = BTreeMap::new();
    for (key, input) in planned {
        prop_assert!(keys.insert(key.clone()), "duplicate key {key}");
        quarry_command::output_object_key(key, "x")
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let object = input
            .url
            .strip_prefix(&format!("memory://{name}/in/"))
            .unwrap()
            .to_string();
        let range = input.range.unwrap_or(ByteRange {
            start: 0,
            end: input.size,
        });
        covered.entry(object).or_default().push(range);
    }
    // object_store spells some characters escaped; compare by count and
    // sizes rather than by raw name.
    prop_assert_eq!(covered.len(), objects.len());
    for ranges in covered.values() {
        let mut end = 0;
        for range in ranges {
            prop_assert_eq!(range.start, end, "a gap or an overlap");
            prop_assert!(range.end > range.start || ranges.len() == 1);
            end = range.end;
        }
    }
    let sizes: Vec<u64> = {
        let mut s: Vec<u64> = covered.values().map(|r| r.last().unwrap().end).collect();
        s.sort();
        s
    };
    let mut expected: Vec<u64> = objects.values().map(|b| b.len() as u64).collect();
    expected.sort();
    prop_assert_eq!(sizes, expected, "every byte of every object");
    if let Some(Chunking {
        split: Split::Lines,
        ..
    }) = chunking
    {
        for (_, input) in planned {
            if let Some(range) = input.range {
                // Listed URLs spell names escaped: the object is one of those
                // of its size, and its bytes must put both ends on line
                // starts.
                let fits = objects
                    .values()
                    .filter(|b| b.len() as u64 == input.size)
                    .any(|b| {
                        (range.start == 0 || b[range.start as usize - 1] == b'\n')
                            && (range.end == input.size || b[range.end as usize - 1] == b'\n')
                    });
                prop_assert!(fits, "{range:?} splits a line");
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn both_ways_in_plan_the_same_safe_tasks(
        names in object_names(),
        bodies in prop::collection::vec(content(), 6),
        chunk in prop::option::of((1u64..60, any::<bool>())),
    ) {
        let objects: BTreeMap<String, Vec<u8>> = names
            .into_iter()
            .zip(bodies)
            .filter(|(name, _)| !name.split('/').any(|s| s == ".."))
            .collect();
        prop_assume!(!objects.is_empty());
        let chunking = chunk.map(|(size, lines)| Chunking {
            size,
            split: if lines { Split::Lines } else { Split::Bytes },
        });
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let name = runtime.block_on(seed(&objects));
        let (library, from_file) = runtime.block_on(both_ways(&name, chunking));
        prop_assert_eq!(&library, &from_file);
        check_plan(&objects, &name, &library, chunking)?;
    }
}

#[tokio::test]
async fn a_chunked_object_becomes_numbered_line_aligned_chunks() {
    let mut objects = BTreeMap::new();
    objects.insert(
        "big.txt".to_string(),
        b"one\ntwo\nthree\nfour\nfive\n".to_vec(),
    );
    objects.insert("small.txt".to_string(), b"x\n".to_vec());
    objects.insert("empty.txt".to_string(), Vec::new());
    let name = seed(&objects).await;
    let store = StoreResolver::new(StoreConfig::default());
    let plan = PrefixPlan::new(
        &format!("memory://{name}/in"),
        Some("*.txt"),
        Some(Chunking {
            size: 6,
            split: Split::Lines,
        }),
    );
    let planned: Vec<_> = plan_prefix(&store, &plan).try_collect().await.unwrap();
    let summary: Vec<(String, Option<(u64, u64)>)> = planned
        .iter()
        .map(|p| (p.key.clone(), p.input.range.map(|r| (r.start, r.end))))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("big.txt@00000".into(), Some((0, 8))),
            ("big.txt@00001".into(), Some((8, 14))),
            ("big.txt@00002".into(), Some((14, 19))),
            ("big.txt@00003".into(), Some((19, 24))),
            ("empty.txt".into(), None),
            ("small.txt".into(), None),
        ]
    );
    let bytes = PrefixPlan::new(
        &format!("memory://{name}/in/big.txt"),
        None,
        Some(Chunking {
            size: 10,
            split: Split::Bytes,
        }),
    );
    let planned: Vec<_> = plan_prefix(&store, &bytes).try_collect().await.unwrap();
    let ranges: Vec<_> = planned
        .iter()
        .map(|p| (p.key.as_str(), p.input.range.unwrap().end))
        .collect();
    assert_eq!(
        ranges,
        [
            ("big.txt@00000", 10),
            ("big.txt@00001", 20),
            ("big.txt@00002", 24)
        ]
    );
}

#[tokio::test]
async fn an_empty_prefix_or_a_missing_broadcast_stops_the_job_before_it_exists() {
    let store = StoreResolver::new(StoreConfig::default());
    let spec = JobSpec::from_yaml(
        "name: p\nfunction: f\ninput: memory://plan-nothing/in/\n",
        "job.yaml",
        std::path::Path::new("/jobs"),
    )
    .unwrap();
    let error = plan_job(&store, &spec).await.unwrap_err();
    assert!(matches!(error, PlanError::NoObjects { .. }), "{error}");
    assert_eq!(
        error.to_string(),
        "no object matches the input prefix memory://plan-nothing/in/"
    );
    let spec = JobSpec::from_yaml(
        "name: r\nrange: 3\nfunction: f\ninputs: {model: memory://plan-nothing/model.bin}\n",
        "job.yaml",
        std::path::Path::new("/jobs"),
    )
    .unwrap();
    let error = plan_job(&store, &spec).await.unwrap_err();
    assert!(
        matches!(error, PlanError::BroadcastMissing { .. }),
        "{error}"
    );
}

#[tokio::test]
async fn range_jobs_plan_lazily_with_index_keys() {
    let store = StoreResolver::new(StoreConfig::default());
    let spec = JobSpec::from_yaml(
        "name: r\nrange: 1000000\nfunction: noop\nretries: 1\n",
        "job.yaml",
        std::path::Path::new("/jobs"),
    )
    .unwrap();
    let plan = plan_job(&store, &spec).await.unwrap();
    assert_eq!(plan.task_count, Some(1_000_000));
    let first: Vec<_> = plan.tasks.take(2).try_collect().await.unwrap();
    assert_eq!(first[1].key, "000001");
    assert_eq!(first[1].retries, 1);
    assert_eq!(first[1].params_json, r#"{"item":1}"#);
}
