//! The scheduler server: the network shell around [`quarry_core::Core`].
//!
//! It owns the listening ROUTER socket (through `quarry-net`), the mapping
//! between ZeroMQ peers and worker ids and client sessions (`peers`), the
//! handshake, role and limit checks on every message (`admission`), the
//! clock that timestamps events, turning the core's commands into messages
//! (`routing`), writing job manifests (`manifests`), feeding the journal
//! and holding answers until what they promise is on disk (`journaling`,
//! over `quarry-journal`), and the HTTP dashboard (pages at `/`, JSON under
//! `/api/`, Prometheus series at `/metrics`, defined in `metrics`).
//!
//! It must not make scheduling decisions (placement, retries, states): those
//! belong to `quarry-core`, which this crate feeds with events and whose
//! commands it carries out. It never reads or writes task data.

#![warn(missing_docs)]

mod admission;
mod dashboard;
mod journaling;
mod manifests;
mod metrics;
mod peers;
mod routing;
mod server;

pub use admission::HelloLimits;
pub use journaling::JournalConfig;
pub use server::{start, SchedulerConfig, SchedulerError, SchedulerHandle};
