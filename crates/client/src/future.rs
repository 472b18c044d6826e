use crate::client::Inner;
use crate::error::ClientError;
use crate::session::Resolution;
use futures::stream::{FuturesUnordered, Stream, StreamExt};
use quarry_proto::{ResultFormat, TaskId, TaskOutcome, Value};
use quarry_store::StoreResolver;
use serde::de::DeserializeOwned;
use std::marker::PhantomData;
use std::sync::Arc;
use tokio::sync::oneshot;

/// A submitted task's eventual result. Dropping it (after or without
/// reading the result) releases the result on the scheduler, unless the
/// task's job has an output prefix: that job's manifest lists every task's
/// result, so the scheduler keeps them.
///
/// It always ends: with the task's outcome, with the scheduler's refusal
/// of its submission, with [`quarry_proto::ErrorKind::Lost`] when the
/// scheduler restarted without it, or with [`ClientError::Disconnected`]
/// when the connection stayed lost past the reconnect timeout.
pub struct TaskFuture<R> {
    id: TaskId,
    key: String,
    rx: Option<oneshot::Receiver<Resolution>>,
    inner: Arc<Inner>,
    /// Leave the result on the scheduler when dropped.
    kept: bool,
    _result: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for TaskFuture<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskFuture")
            .field("id", &self.id)
            .field("key", &self.key)
            .finish()
    }
}

impl<R> TaskFuture<R> {
    pub(crate) fn new(
        id: TaskId,
        key: String,
        rx: oneshot::Receiver<Resolution>,
        inner: Arc<Inner>,
    ) -> TaskFuture<R> {
        TaskFuture {
            id,
            key,
            rx: Some(rx),
            inner,
            kept: false,
            _result: PhantomData,
        }
    }

    /// The task's id.
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// The task's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Dropping this future will not release the result on the scheduler:
    /// it stays for `quarry results` (for a job without an output prefix,
    /// until the scheduler forgets the job).
    pub fn keep_result(mut self) -> Self {
        self.kept = true;
        self
    }

    /// Waits for the task's final outcome without decoding it.
    pub async fn outcome(mut self) -> Result<TaskOutcome, ClientError> {
        let rx = self.rx.take().ok_or(ClientError::Closed)?;
        rx.await.map_err(|_| ClientError::Closed)?
    }
}

impl<R: DeserializeOwned> TaskFuture<R> {
    /// Waits for the task and decodes its result; a failed task gives its
    /// final error.
    pub async fn result(self) -> Result<R, ClientError> {
        let key = self.key.clone();
        let inner = self.inner.clone();
        match self.outcome().await? {
            TaskOutcome::Ok(value) => decode_value(&inner.store, &value).await,
            TaskOutcome::Err(error) => Err(ClientError::task(&key, error)),
        }
    }
}

impl<R> Drop for TaskFuture<R> {
    fn drop(&mut self) {
        if self.kept {
            self.inner.forget(self.id);
        } else {
            self.inner.release(self.id);
        }
    }
}

/// Decodes a value: inline MessagePack, or a reference read from the store
/// (JSON or MessagePack, as its name says: see [`ResultFormat`]).
pub(crate) async fn decode_value<R: DeserializeOwned>(
    store: &StoreResolver,
    value: &Value,
) -> Result<R, ClientError> {
    match value {
        Value::Inline(bytes) => {
            rmp_serde::from_slice(bytes).map_err(|e| ClientError::Codec(e.to_string()))
        }
        Value::Ref(data_ref) => {
            let bytes = store.get_pinned(data_ref).await?.bytes().await?;
            match ResultFormat::of_url(&data_ref.url) {
                ResultFormat::Json => serde_json::from_slice(&bytes)
                    .map_err(|e| ClientError::Codec(format!("{}: {e}", data_ref.url))),
                ResultFormat::MessagePack => rmp_serde::from_slice(&bytes)
                    .map_err(|e| ClientError::Codec(format!("{}: {e}", data_ref.url))),
            }
        }
    }
}

/// Yields `(index, result)` pairs in completion order, where `index` is
/// the future's position in `futures`. Each result is handed over as soon
/// as it is yielded, so memory holds only results that arrived and were
/// not consumed yet.
pub fn as_completed<R: DeserializeOwned>(
    futures: Vec<TaskFuture<R>>,
) -> impl Stream<Item = (usize, Result<R, ClientError>)> {
    futures
        .into_iter()
        .enumerate()
        .map(|(index, future)| async move { (index, future.result().await) })
        .collect::<FuturesUnordered<_>>()
}

/// Drives `as_completed` to the end, calling `each` per result; a
/// convenience for simple loops.
pub async fn for_each_completed<R: DeserializeOwned>(
    futures: Vec<TaskFuture<R>>,
    mut each: impl FnMut(usize, Result<R, ClientError>),
) {
    let mut stream = std::pin::pin!(as_completed(futures));
    while let Some((index, result)) = stream.next().await {
        each(index, result);
    }
}
