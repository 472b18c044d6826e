use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident($inner:ty), $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

id_type!(
    /// A task, unique within one scheduler. Clients allocate task ids inside
    /// the range their [`ClientId`] grants (see [`TaskId::first_for`]), so
    /// submitting needs no round trip.
    TaskId(u64),
    "t"
);
id_type!(
    /// A job: a named group of tasks sharing broadcast inputs, an output
    /// prefix and a retry policy.
    JobId(u64),
    "j"
);
id_type!(
    /// A registered worker process, assigned by the scheduler.
    WorkerId(u32),
    "w"
);
id_type!(
    /// A client session, assigned by the scheduler at the handshake. A
    /// client that reconnects (after a lost connection or a scheduler
    /// restart) resumes its session and keeps its id, so the task and job
    /// ids it allocated stay its own; a scheduler never gives a used id to
    /// a new session (its journal remembers the highest one).
    ClientId(u32),
    "c"
);
id_type!(
    /// A client's request, numbered by the client. Every answer to a
    /// request ([`crate::Message::Accepted`], [`crate::Message::Refused`],
    /// [`crate::Message::Jobs`], …) carries its id, so answers never need to
    /// come in order, and a client that resends a request after
    /// reconnecting knows which answer is whose.
    RequestId(u64),
    "r"
);

impl TaskId {
    /// Bits of a task id left for the client's own sequence number.
    pub const CLIENT_SEQUENCE_BITS: u32 = 40;

    /// The first task id a client may use; it may allocate ids upwards from
    /// here, up to 2^40 of them.
    pub fn first_for(client: ClientId) -> TaskId {
        TaskId((u64::from(client.0)) << Self::CLIENT_SEQUENCE_BITS)
    }

    /// The client whose id range contains this task.
    pub fn client(self) -> ClientId {
        ClientId((self.0 >> Self::CLIENT_SEQUENCE_BITS) as u32)
    }
}

impl JobId {
    /// The first job id a client may use, allocated like task ids.
    pub fn first_for(client: ClientId) -> JobId {
        JobId((u64::from(client.0)) << TaskId::CLIENT_SEQUENCE_BITS)
    }

    /// The client whose id range contains this job.
    pub fn client(self) -> ClientId {
        ClientId((self.0 >> TaskId::CLIENT_SEQUENCE_BITS) as u32)
    }
}
