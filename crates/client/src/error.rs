use quarry_proto::{ErrorKind, TaskError};
use thiserror::Error;

/// Why a client call or a task failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The transport could not be set up.
    #[error(transparent)]
    Net(#[from] quarry_net::NetError),
    /// The scheduler did not answer the handshake in time.
    #[error("no answer from the scheduler at {address} within {seconds} s: is `quarry scheduler` running there, and is the port reachable?")]
    Timeout {
        /// Where we tried.
        address: String,
        /// How long we waited.
        seconds: u64,
    },
    /// Authentication failed or the scheduler refused us.
    #[error("authentication with the scheduler failed: {0}")]
    Auth(String),
    /// The scheduler refused a request.
    #[error("the scheduler refused the request: {0}")]
    Refused(String),
    /// The connection is gone.
    #[error("the connection to the scheduler was closed")]
    Closed,
    /// The connection stayed lost longer than the reconnect timeout:
    /// everything that waited for the scheduler failed with this.
    #[error("lost the scheduler at {address} and could not get it back within {seconds} s (the reconnect timeout): is `quarry scheduler` running there?")]
    Disconnected {
        /// The scheduler's address.
        address: String,
        /// The reconnect timeout.
        seconds: u64,
    },
    /// The scheduler came back without this client's session (it
    /// restarted without its journal): what waited for it is lost.
    #[error("{0}")]
    Lost(String),
    /// An argument is too large to send inline and no staging store is
    /// configured to put it in.
    #[error("{what} is {size} bytes, over the {cap}-byte inline cap (limits.max_inline_bytes); pass it by reference instead: Client::put_bytes / put_file returns a DataRef, and Client::submit_async puts large arguments automatically once a staging store is configured (QUARRY_STAGING=s3://bucket/prefix or a local path)")]
    TooLarge {
        /// What was too large.
        what: String,
        /// Its size.
        size: usize,
        /// The cap.
        cap: usize,
    },
    /// A message does not fit in one frame.
    #[error("{what} is {size} bytes, over the {cap}-byte frame cap (limits.max_frame_bytes); send less per message, or pass large values by reference")]
    FrameTooLarge {
        /// What was too large.
        what: String,
        /// Its size.
        size: usize,
        /// The cap.
        cap: usize,
    },
    /// Encoding arguments or decoding a result failed.
    #[error("serialization failed: {0}")]
    Codec(String),
    /// The object store failed (large results, staging).
    #[error(transparent)]
    Store(#[from] quarry_store::StoreError),
    /// The planner could not list, chunk or check what a job maps over.
    #[error(transparent)]
    Plan(#[from] quarry_plan::PlanError),
    /// The task failed; the text is the task's final error.
    #[error("task {key} failed ({kind:?}): {message}")]
    Task {
        /// The task's key.
        key: String,
        /// What kind of failure.
        kind: ErrorKind,
        /// The task's error text.
        message: String,
    },
}

impl ClientError {
    pub(crate) fn task(key: &str, error: TaskError) -> ClientError {
        ClientError::Task {
            key: key.to_string(),
            kind: error.kind,
            message: error.message,
        }
    }
}
