//! Planning a prefix: list, pin, chunk and name.

use crate::error::PlanError;
use crate::keys::{chunk_key, KeyNamer};
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};
use quarry_job::Split;
use quarry_proto::{ByteRange, DataRef};
use quarry_store::StoreResolver;

/// Objects whose chunk boundaries are probed at the same time.
const OBJECTS_IN_FLIGHT: usize = 8;

/// What to map over: every object a URL lists, whole or in chunks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrefixPlan {
    /// A prefix (`s3://b/logs/`), a glob (`s3://b/logs/*/part-*.txt`,
    /// `./data/**/*.csv`) or one object.
    pub url: String,
    /// Cut objects larger than the chunk size into chunks, one task each.
    pub chunking: Option<Chunking>,
}

/// How large objects are cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunking {
    /// About how many bytes each chunk holds.
    pub size: u64,
    /// Line-aligned (the default) or raw byte ranges.
    pub split: Split,
}

/// One task's input, as planned: the pinned object (with its byte range
/// for a chunk) and the task's key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedInput {
    /// The task key (see [`KeyNamer`] and [`chunk_key`]).
    pub key: String,
    /// What the task reads.
    pub input: DataRef,
}

impl PrefixPlan {
    /// A plan for `url`, with `glob` (if any) matched below it.
    pub fn new(url: &str, glob: Option<&str>, chunking: Option<Chunking>) -> PrefixPlan {
        let url = match glob {
            Some(glob) if !glob.is_empty() => format!(
                "{}/{}",
                url.trim_end_matches('/'),
                glob.trim_start_matches('/')
            ),
            _ => url.to_string(),
        };
        PrefixPlan { url, chunking }
    }
}

/// The inputs of a prefix plan, in listing order, as the store lists them:
/// one per object, or, for an object larger than the chunk size, one per
/// chunk. An object no larger than one chunk (an empty one included) is one
/// task that reads all of it, keyed like an unchunked object.
///
/// Chunks cover every byte of their object exactly once. Line-aligned
/// chunks start and end on line starts (see
/// [`StoreResolver::chunk_ranges`]), so no line is split and each is read
/// by exactly one task; byte chunks are cut every `size` bytes.
///
/// A listing error (an outer `Err`) ends the stream.
pub fn plan_prefix(
    store: &StoreResolver,
    plan: &PrefixPlan,
) -> BoxStream<'static, Result<PlannedInput, PlanError>> {
    let url = plan.url.clone();
    let namer = match KeyNamer::new(store, &url) {
        Ok(namer) => namer,
        Err(source) => {
            return stream::once(async move {
                Err(PlanError::List {
                    url,
                    source: Box::new(source),
                })
            })
            .boxed()
        }
    };
    let (store, chunking) = (store.clone(), plan.chunking);
    let mut failed = false;
    store
        .list_refs(&url)
        .map(move |listed| {
            let (store, namer, url) = (store.clone(), namer.clone(), url.clone());
            async move {
                let object = listed.map_err(|source| PlanError::List {
                    url,
                    source: Box::new(source),
                })?;
                split(&store, &namer, object, chunking).await
            }
        })
        .buffered(OBJECTS_IN_FLIGHT)
        // A failed listing or probe ends the plan: a partial plan must not
        // pass for the whole prefix.
        .take_while(move |planned| {
            let go = !failed;
            failed |= planned.is_err();
            futures::future::ready(go)
        })
        .map_ok(|inputs| stream::iter(inputs.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
}

/// The inputs one listed object becomes.
async fn split(
    store: &StoreResolver,
    namer: &KeyNamer,
    object: DataRef,
    chunking: Option<Chunking>,
) -> Result<Vec<PlannedInput>, PlanError> {
    let key = namer.key(&object.url);
    let Some(Chunking { size, split }) = chunking.filter(|c| object.size > c.size.max(1)) else {
        return Ok(vec![PlannedInput { key, input: object }]);
    };
    let ranges = match split {
        Split::Lines => {
            store
                .chunk_ranges(&object, size)
                .await
                .map_err(|source| PlanError::Chunk {
                    url: object.url.clone(),
                    source: Box::new(source),
                })?
        }
        Split::Bytes => (0..object.size.div_ceil(size))
            .map(|i| ByteRange {
                start: i * size,
                end: ((i + 1) * size).min(object.size),
            })
            .collect(),
    };
    if ranges.len() <= 1 {
        // One line longer than the object's chunk size: all of it.
        return Ok(vec![PlannedInput { key, input: object }]);
    }
    Ok(ranges
        .into_iter()
        .enumerate()
        .map(|(i, range)| PlannedInput {
            key: chunk_key(&key, i),
            input: DataRef {
                range: Some(range),
                ..object.clone()
            },
        })
        .collect())
}
