//! The quarry transport: ZeroMQ sockets, each owned by one I/O thread and
//! bridged to tokio with channels.
//!
//! It owns socket setup (ROUTER for the scheduler, DEALER for workers and
//! clients), batching of encoded messages into frames, high-water marks and
//! what happens at them, CURVE key handling and the ZAP authenticator that
//! decides which public keys may connect and in which [`Role`].
//!
//! It must not interpret messages beyond decoding them: scheduling, task
//! execution and job logic live in other crates. Callers encode messages
//! with [`quarry_proto::encode_message`] (so that size errors surface where
//! the message was made) and the I/O thread only batches bytes.
//!
//! [`Role`]: quarry_proto::Role

#![warn(missing_docs)]

mod client;
mod context;
pub mod curve;
mod server;
mod waker;
mod zap;

pub use client::{connect, ConnectOptions, Connection, ConnectionEvent};
pub use curve::{CurveClientKeys, CurveServerKeys, KeyPair};
pub use server::{bind, Incoming, PeerId, Server, ServerOptions};

use thiserror::Error;

/// The transport failed.
#[derive(Debug, Error)]
pub enum NetError {
    /// A ZeroMQ call failed.
    #[error("ZeroMQ {op} failed: {source}")]
    Zmq {
        /// What was being done.
        op: String,
        /// The ZeroMQ error.
        source: zmq::Error,
    },
    /// A key file or key text was invalid or unreadable.
    #[error("{0}")]
    Key(String),
    /// An OS-level failure (thread spawn, wake-up pipe).
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: String,
        /// The error.
        source: std::io::Error,
    },
}

pub(crate) fn zmq_err(op: impl Into<String>) -> impl FnOnce(zmq::Error) -> NetError {
    let op = op.into();
    move |source| NetError::Zmq { op, source }
}

/// Default send and receive high-water mark, in messages (frames), per
/// peer. Frames batch many protocol messages, so this is generous.
pub const DEFAULT_HWM: i32 = 10_000;
