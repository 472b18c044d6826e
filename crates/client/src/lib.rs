//! The quarry client library, in the spirit of dask's `Client`.
//!
//! It owns the client side of the protocol: the handshake and the session
//! (request ids, answers, reconnecting to a restarted scheduler and
//! resuming, the reconnect timeout), task-id allocation, batching
//! submissions under the frame cap, futures that resolve when results
//! arrive (and release them on the scheduler when dropped), `gather` and
//! `as_completed`, jobs, and reading large results and staging large
//! arguments through the object store. No future waits forever: each ends
//! with a result, a refusal, or an error naming the scheduler.
//!
//! It must not schedule or run tasks, and it never holds a connection to a
//! worker: everything goes through the scheduler.
//!
//! ```no_run
//! # async fn demo() -> Result<(), quarry_client::ClientError> {
//! let client = quarry_client::Client::connect("tcp://127.0.0.1:8786").await?;
//! let x = client.submit::<i64, i64>("inc", &10)?;
//! println!("{}", x.result().await?);
//! let futures = client.map::<i64, i64, _>("inc", 0..1000)?;
//! let all = client.gather(futures).await?;
//! # Ok(()) }
//! ```
//!
//! `Client::submit` and `Client::map` go to the client's default job. Tasks
//! that need broadcast inputs, an output prefix or an executor context go
//! to a job of their own: [`Client::open_job`] returns a [`Job`] with the
//! same `map`, `map_unordered` and `gather` (and `submit` for prepared
//! tasks); seal it when no more tasks will come.

#![warn(missing_docs)]

mod client;
mod error;
mod future;
mod job;
mod prefix;
mod reduce;
mod session;
mod window;

pub use client::{Client, ClientOptions, JobList, DEFAULT_RECONNECT_TIMEOUT, GOODBYE_WAIT};
pub use error::ClientError;
pub use future::{as_completed, for_each_completed, TaskFuture};
pub use job::{Job, JobOptions};
pub use prefix::{MapPrefixOptions, PrefixMap, PrefixProgress, PrefixResult};
pub use quarry_plan::{PlannedTask, Split};
pub use reduce::{
    MapOutcome, ReduceGroup, ReduceOptions, ReduceStep, ReduceTree, DEFAULT_FAN_IN, JOB_RESULT_FILE,
};
pub use session::{Answer, SessionState, SessionStatus};
pub use window::{Finished, TaskPlan, WindowOptions, WindowProgress, WindowedRun};
