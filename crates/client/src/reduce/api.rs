//! The reduce stage for library users: [`Client::map_reduce`] (Lithops'
//! `map_reduce`), [`Job::reduce`] over futures, and
//! [`Client::reduce_windowed`] over a windowed plan, all on top of
//! [`Client::reduce_outcomes`].

use super::{MapOutcome, ReduceOptions};
use crate::client::Client;
use crate::error::ClientError;
use crate::future::TaskFuture;
use crate::job::{Job, JobOptions};
use crate::window::{WindowOptions, WindowedRun};
use futures::stream::{FuturesUnordered, StreamExt};
use quarry_plan::PlannedTask;
use quarry_proto::Value;
use serde::de::DeserializeOwned;
use serde::Serialize;

impl Client {
    /// Maps `function` over `items` in a job of its own and reduces the
    /// results with `reduce.function` in a tree of reduce tasks that start
    /// as soon as the first results are in; returns the final value.
    ///
    /// Maps are submitted through a window, so `items` may be long (memory
    /// stays bounded). With `output`, large results and the job's result
    /// (`OUTPUT/_result.json`) go there, and the manifest too. The job is
    /// sealed after the final reduction, and cancelled if any map or
    /// reduce task fails for good.
    ///
    /// ```no_run
    /// # async fn demo(client: quarry_client::Client) -> Result<(), quarry_client::ClientError> {
    /// use quarry_client::ReduceOptions;
    /// let total: u64 = client
    ///     .map_reduce("echo", 0..10_000u64, &ReduceOptions::new("sum"), None)
    ///     .await?;
    /// assert_eq!(total, 49_995_000);
    /// # Ok(()) }
    /// ```
    pub async fn map_reduce<A, R, I>(
        &self,
        function: &str,
        items: I,
        reduce: &ReduceOptions,
        output: Option<&str>,
    ) -> Result<R, ClientError>
    where
        A: Serialize + Send + 'static,
        R: DeserializeOwned,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
    {
        let job = self.open_job(JobOptions {
            name: format!("map_reduce({function}, {})", reduce.function),
            output: output.map(str::to_string),
            ..JobOptions::default()
        })?;
        let function = function.to_string();
        let plan = futures::stream::iter(items.into_iter().enumerate())
            .map(move |(index, item)| {
                let args = rmp_serde::to_vec_named(&item)
                    .map_err(|e| ClientError::Codec(e.to_string()))?;
                Ok((
                    PlannedTask::new(format!("map-{index:06}"), &function, args),
                    (),
                ))
            })
            .boxed();
        let run = self.submit_windowed(
            job.id(),
            plan,
            WindowOptions {
                seal: false,
                ..WindowOptions::default()
            },
        );
        let value = self.reduce_windowed(run, reduce, output).await?;
        self.value(&value).await
    }

    /// Reduces the outcomes of a windowed plan submitted with
    /// `seal: false` ([`Client::reduce_outcomes`], with the reduce tasks in
    /// the same job), then seals the job. If the plan, a map or a reducer
    /// fails, the job is cancelled (a result over part of the maps would be
    /// wrong) and the error returned.
    pub async fn reduce_windowed<T: Send + 'static>(
        &self,
        run: WindowedRun<T>,
        reduce: &ReduceOptions,
        output: Option<&str>,
    ) -> Result<Value, ClientError> {
        let job = run.job();
        let outcomes = run.map(|finished| match finished {
            Ok(finished) => MapOutcome {
                key: finished.key,
                outcome: finished.outcome,
            },
            // The plan itself failed: that ends the reduce with its error.
            Err(error) => MapOutcome {
                key: String::new(),
                outcome: Err(error),
            },
        });
        match self.reduce_outcomes(job, outcomes, reduce, output).await {
            Ok(value) => {
                self.seal_job(job)?.await?;
                Ok(value)
            }
            Err(error) => {
                // Sealed after the cancel, or the open job would never
                // finish and whoever watches it would wait forever.
                self.cancel_job(job)?.await?;
                self.seal_job(job)?.await?;
                Err(error)
            }
        }
    }
}

impl Job {
    /// Reduces the results of `futures` (tasks of this job) with
    /// `reduce.function`, in reduce tasks of this job, and returns the
    /// final value; with an output prefix it is also written to
    /// `OUTPUT/_result.json`. dask's `client.submit(sum, futures)`, but as
    /// a tree, so no task ever gets more than the fan-in of values. The job
    /// is not sealed: seal it when nothing more comes.
    pub async fn reduce<M, R: DeserializeOwned>(
        &self,
        futures: Vec<TaskFuture<M>>,
        reduce: &ReduceOptions,
    ) -> Result<R, ClientError> {
        let outcomes: FuturesUnordered<_> = futures
            .into_iter()
            .map(|future| async move {
                let key = future.key().to_string();
                MapOutcome {
                    key,
                    outcome: future.outcome().await,
                }
            })
            .collect();
        let client = self.client();
        let value = client
            .reduce_outcomes(self.id(), outcomes, reduce, self.spec().output.as_deref())
            .await?;
        client.value(&value).await
    }
}
