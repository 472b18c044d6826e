//! The scheduler server: the network shell around [`quarry_core::Core`].
//!
//! It owns the listening ROUTER socket (through `quarry-net`), the mapping
//! between ZeroMQ peers and worker/client ids (`peers`), the handshake,
//! role and limit checks on every message (`admission`), the clock that
//! timestamps events, turning the core's commands into messages
//! (`routing`), writing job manifests (`manifests`), and the HTTP dashboard
//! (`/`, `/api/jobs`, `/metrics`).
//!
//! It must not make scheduling decisions (placement, retries, states): those
//! belong to `quarry-core`, which this crate feeds with events and whose
//! commands it carries out. It never reads or writes task data.

#![warn(missing_docs)]

mod admission;
mod dashboard;
mod manifests;
mod peers;
mod routing;
mod server;

pub use server::{start, SchedulerConfig, SchedulerError, SchedulerHandle};
