//! Small [`ObjectStore`] wrappers that compose around any store (in the
//! spirit of Quickwit's storage layers): counting and fault injection.
//! Retries are object_store's own, configured once in
//! [`crate::StoreConfig`]; there is no second retry layer.

mod counting;
mod fault;

pub use counting::{CounterSnapshot, CountingStore, StoreCounters};
pub use fault::FaultStore;

use futures::stream::BoxStream;
use object_store::{Attributes, GetResult, GetResultPayload};

/// Replaces the body of `result` with `wrap(body)`, keeping its metadata.
/// A local-file body becomes a stream, which is what wrappers that observe
/// the bytes need.
fn map_body(
    result: GetResult,
    wrap: impl FnOnce(
        BoxStream<'static, object_store::Result<bytes::Bytes>>,
    ) -> BoxStream<'static, object_store::Result<bytes::Bytes>>,
) -> GetResult {
    let GetResult {
        payload,
        meta,
        range,
        attributes,
        extensions,
    } = result;
    let body = GetResult {
        payload,
        meta: meta.clone(),
        range: range.clone(),
        attributes: Attributes::new(),
        extensions: Default::default(),
    }
    .into_stream();
    GetResult {
        payload: GetResultPayload::Stream(wrap(body)),
        meta,
        range,
        attributes,
        extensions,
    }
}
