use quarry_store::StoreError;

/// Why a job or prefix could not be planned. Each message names what it was
/// about and, where there is one, what to do. (Store errors are boxed: a
/// plan's items are results, and most are not errors.)
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// Listing the prefix failed (a missing bucket, no access, a bad URL).
    #[error("cannot list {url}: {source}")]
    List {
        /// The prefix or glob.
        url: String,
        /// What the store said.
        #[source]
        source: Box<StoreError>,
    },
    /// Reading an object to find its line boundaries failed.
    #[error("cannot find the line boundaries of {url}: {source}")]
    Chunk {
        /// The object.
        url: String,
        /// What the store said.
        #[source]
        source: Box<StoreError>,
    },
    /// The prefix holds no object (that matches the glob).
    #[error("no object matches the input prefix {prefix}")]
    NoObjects {
        /// The prefix or glob.
        prefix: String,
    },
    /// A broadcast input could not be read.
    #[error("cannot read broadcast input `{name}` ({url}): {source}")]
    Broadcast {
        /// Its name.
        name: String,
        /// Its URL.
        url: String,
        /// What the store said.
        #[source]
        source: Box<StoreError>,
    },
    /// A broadcast input names no object.
    #[error("broadcast input `{name}` ({url}) does not exist")]
    BroadcastMissing {
        /// Its name.
        name: String,
        /// Its URL.
        url: String,
    },
    /// A broadcast input names a prefix, not one object.
    #[error(
        "broadcast input `{name}` ({url}) is a prefix holding other objects; a broadcast \
         input names exactly one object"
    )]
    BroadcastIsPrefix {
        /// Its name.
        name: String,
        /// Its URL.
        url: String,
    },
    /// The output prefix cannot be written (a missing bucket, no access).
    #[error("cannot write to the output prefix {output}: {source}")]
    Output {
        /// The output prefix.
        output: String,
        /// What the store said.
        #[source]
        source: Box<StoreError>,
    },
    /// The job names an op this build does not have.
    #[error("no built-in op named `{name}`")]
    UnknownOp {
        /// The op.
        name: String,
    },
    /// A task's arguments could not be encoded.
    #[error("cannot encode the arguments of task {key}: {reason}")]
    Encode {
        /// The task key.
        key: String,
        /// Why.
        reason: String,
    },
}
