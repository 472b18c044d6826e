//! The quarry wire protocol.
//!
//! This crate owns every type that crosses a process boundary between the
//! scheduler, workers and clients: identifiers, [`DataRef`] references, the
//! [`Message`] enum, the [`Limits`] every peer enforces, and the frame codec
//! ([`encode`] / [`decode`]) with its version handshake, and how values
//! read as JSON ([`msgpack_to_json`], [`ResultFormat`]).
//!
//! It must not touch sockets, files, clocks or object stores: it is pure data
//! plus a codec, so that every other crate (and the fuzz targets) can depend on
//! it cheaply. Decoding arbitrary bytes never panics; it returns
//! [`ProtoError`].

mod codec;
mod dataref;
mod encoded;
mod ids;
mod json;
mod limits;
mod message;
pub mod url;

pub use codec::{decode, encode, encode_message, FrameBuilder, ProtoError};
pub use dataref::{ByteRange, DataRef, Pin};
pub use encoded::{EncodedTask, RunTask, TaskSummary};
pub use ids::{ClientId, JobId, RequestId, TaskId, WorkerId};
pub use json::{msgpack_to_json, MsgpackError, ResultFormat};
pub use limits::Limits;
pub use message::{
    CacheEntry, ClientSession, Envelope, ErrorKind, JobCounts, JobInfo, JobSpec, JobState, Message,
    Role, TaskAssignment, TaskError, TaskOutcome, TaskReport, TaskSpec, TaskStats, TaskStatus,
    Value, WorkerInfo,
};

/// The protocol version spoken by this build. Peers exchange it in
/// [`Message::Hello`]; the scheduler rejects a peer whose version differs.
pub const PROTOCOL_VERSION: u32 = 3;

/// The default TCP port of the scheduler's control plane (as dask's 8786).
pub const DEFAULT_SCHEDULER_PORT: u16 = 8786;

/// The default TCP port of the scheduler's HTTP dashboard (as dask's 8787).
pub const DEFAULT_DASHBOARD_PORT: u16 = 8787;
