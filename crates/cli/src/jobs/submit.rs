//! Turning a validated job file into a submitted, sealed quarry job: the
//! planner (`quarry-plan`) plans it, the client's windowed driver submits
//! it.

use anyhow::{bail, Context, Result};
use futures::{StreamExt, TryStreamExt};
use quarry_client::{
    Client, ClientError, JobOptions, ReduceOptions, WindowOptions, WindowedRun, DEFAULT_FAN_IN,
};
use quarry_job::JobSpec;
use quarry_plan::plan_job;
use quarry_proto::{JobId, JobInfo, Value};
use quarry_store::StoreResolver;

/// A job opened and being submitted: the plan is read and submitted in
/// the background, a window at a time.
pub struct SubmittedJob {
    /// Its id.
    pub id: JobId,
    /// Its name.
    pub name: String,
    /// How many tasks it has, when known without listing.
    pub task_count: Option<u64>,
    /// Its output prefix, if any.
    pub output: Option<String>,
    /// Its reduce stage, if any: this client drives it.
    pub reduce: Option<ReduceOptions>,
    /// The submission. Results are kept on the scheduler (for
    /// `quarry results` and the manifest): they belong to the job, not to
    /// the client that submitted it.
    run: WindowedRun<()>,
}

impl SubmittedJob {
    /// Waits until every task is submitted and the job sealed, checks that
    /// the scheduler holds all of them, and lets go of the job (it runs to
    /// its end whether or not this process stays). Returns the task count.
    pub async fn detach(self, client: &Client) -> Result<u64> {
        let id = self.id;
        if self.reduce.is_some() {
            bail!("job {id} has a reduce stage, which the submitting client drives; it cannot be detached");
        }
        let tasks = self.run.detach().await?.tasks;
        check_accepted(client, id, tasks).await?;
        Ok(tasks)
    }

    /// Follows the job to its end with a progress bar while the rest of it
    /// is submitted, and returns its final status. A plan or submission
    /// error (the job was then cancelled) is returned instead.
    pub async fn follow(self, client: &Client) -> Result<JobInfo> {
        let SubmittedJob {
            id,
            task_count,
            output,
            reduce,
            mut run,
            ..
        } = self;
        let drain = async move {
            match reduce {
                Some(reduce) => reduce_job(client, run, &reduce, output.as_deref())
                    .await
                    .map(|_| ()),
                None => {
                    // Taking the outcomes makes room in the window for the
                    // rest of the plan; the results stay on the scheduler.
                    while let Some(finished) = run.next().await {
                        finished?;
                    }
                    Ok::<_, anyhow::Error>(())
                }
            }
        };
        let following = super::progress::follow(client, id, task_count.unwrap_or(0));
        let (drained, info) = tokio::join!(drain, following);
        drained?;
        info
    }
}

/// Plans the job (broadcast inputs pinned, the output prefix checked
/// writable, a prefix job's first object listed: a job that cannot succeed
/// fails here, before it exists), opens it and starts submitting its tasks.
pub async fn submit_job(
    client: &Client,
    store: &StoreResolver,
    spec: &JobSpec,
) -> Result<SubmittedJob> {
    let plan = plan_job(store, spec).await?;
    let job = client.open_job(JobOptions {
        name: plan.name.clone(),
        broadcast: plan.broadcast,
        output: plan.output.clone(),
        context: plan.context,
        max_fails: plan.max_fails,
    })?;
    let tasks = plan
        .tasks
        .map_err(ClientError::from)
        .map_ok(|task| (task, ()))
        .boxed();
    let reduce = spec.reduce.as_ref().map(|reduce| ReduceOptions {
        function: reduce.function.clone(),
        fan_in: reduce.fan_in.unwrap_or(DEFAULT_FAN_IN),
        retries: spec.retries,
    });
    let run = client.submit_windowed(
        job.id(),
        tasks,
        WindowOptions {
            keep_results: true,
            // A job with a reduce stage is sealed after its final reducer.
            seal: reduce.is_none(),
            ..WindowOptions::default()
        },
    );
    Ok(SubmittedJob {
        id: job.id(),
        name: plan.name,
        task_count: plan.task_count,
        output: plan.output,
        reduce,
        run,
    })
}

/// Reduces the map outcomes of `run` (the reduce tasks go to the same
/// job), writes `OUTPUT/_result.json`, and seals the job; a failed reduce
/// cancels the job.
async fn reduce_job(
    client: &Client,
    run: WindowedRun<()>,
    reduce: &ReduceOptions,
    output: Option<&str>,
) -> Result<Value> {
    let id = run.job();
    client
        .reduce_windowed(run, reduce, output)
        .await
        .with_context(|| {
            format!(
                "the reduce stage of job {id} failed, so the job was cancelled (it needs every \
                 map result)"
            )
        })
}

/// Checks that the scheduler holds every one of the `tasks` submitted to
/// `job` (it answers in order, so this also confirms that every
/// submission before the question was processed).
async fn check_accepted(client: &Client, job: JobId, tasks: u64) -> Result<()> {
    let accepted = client.job_info(job).await?.counts.total;
    if accepted != tasks {
        bail!(
            "the scheduler accepted {accepted} of the {tasks} tasks of job {job} (see its \
             messages above)"
        );
    }
    Ok(())
}
