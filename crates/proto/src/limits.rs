use serde::{Deserialize, Serialize};

/// Caps every peer enforces. The scheduler announces its limits in
/// [`crate::Message::Welcome`] so that clients fail early, before sending.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest encoded frame accepted, in bytes.
    pub max_frame_bytes: usize,
    /// Largest inline argument (or inline result) of one task, in bytes.
    /// Larger values must travel as a [`crate::DataRef`].
    pub max_inline_bytes: usize,
    /// Most tasks accepted in one submission message.
    pub max_tasks_per_submit: usize,
    /// Most simultaneous client connections (ZeroMQ identities) per peer
    /// key or address; workers do not count.
    pub max_connections_per_peer: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: 1024 * 1024,
            max_inline_bytes: 64 * 1024,
            max_tasks_per_submit: 10_000,
            max_connections_per_peer: 1024,
        }
    }
}
