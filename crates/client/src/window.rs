//! Mapping over an input stream of any length with bounded memory.

use crate::client::Client;
use crate::error::ClientError;
use futures::stream::{self, FuturesUnordered, Stream, StreamExt};
use quarry_proto::JobId;
use serde::de::DeserializeOwned;
use serde::Serialize;

impl Client {
    /// Maps `function` over `items` lazily, keeping at most `window` tasks
    /// in flight, and yields `(index, result)` in completion order.
    ///
    /// Unlike [`Client::map`] + [`crate::as_completed`], which hold one
    /// future per item, memory here is bounded by `window` however many
    /// items there are: new tasks are submitted (in batches) only as
    /// results are consumed. The tasks go to the client's default job;
    /// [`crate::Job::map_unordered`] does the same in a job of your own.
    pub fn map_unordered<A, R, I>(
        &self,
        function: &str,
        items: I,
        window: usize,
    ) -> impl Stream<Item = (u64, Result<R, ClientError>)> + use<A, R, I>
    where
        A: Serialize,
        R: DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_unordered_in(self.default_job(), function, items, window)
    }

    /// [`Client::map_unordered`] into job `job`.
    pub(crate) fn map_unordered_in<A, R, I>(
        &self,
        job: JobId,
        function: &str,
        items: I,
        window: usize,
    ) -> impl Stream<Item = (u64, Result<R, ClientError>)> + use<A, R, I>
    where
        A: Serialize,
        R: DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        let window = window.max(1);
        // Refill in chunks of a quarter window, so submissions batch.
        let refill = (window / 4).max(1);
        let state = (
            self.clone(),
            function.to_string(),
            items.into_iter().enumerate(),
            FuturesUnordered::new(),
        );
        stream::unfold(
            state,
            move |(client, function, mut items, mut running)| async move {
                if running.len() + refill <= window {
                    let mut batch = Vec::new();
                    let mut indices = Vec::new();
                    for (index, item) in items.by_ref().take(window - running.len()) {
                        match client.inline_task(&function, &item) {
                            Ok(spec) => {
                                indices.push(index as u64);
                                batch.push(spec);
                            }
                            Err(e) => {
                                return Some((
                                    (index as u64, Err(e)),
                                    (client, function, items, running),
                                ))
                            }
                        }
                    }
                    match client.submit_specs::<R>(job, batch) {
                        Ok(futures) => {
                            for (index, future) in indices.into_iter().zip(futures) {
                                running.push(async move { (index, future.result().await) });
                            }
                        }
                        Err(e) => {
                            let index = indices.first().copied().unwrap_or_default();
                            return Some(((index, Err(e)), (client, function, items, running)));
                        }
                    }
                }
                let next = running.next().await?;
                Some((next, (client, function, items, running)))
            },
        )
    }
}
