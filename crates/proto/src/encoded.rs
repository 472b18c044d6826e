//! Task specs kept in their wire encoding.
//!
//! The scheduler holds every queued task until a worker takes it; a
//! million of them as decoded [`TaskSpec`]s (a 248-byte struct plus a heap
//! string for the key, the function and the arguments each) cost over
//! 350 bytes per task. Kept as MessagePack behind a small fixed header, a
//! small task costs one allocation of a few dozen bytes, and the bytes go to
//! the worker unchanged inside [`RunTask`].

use crate::{JobId, ProtoError, TaskAssignment, TaskId, TaskSpec};
use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::sync::Arc;

/// The fields the scheduler reads all the time, copied ahead of the
/// MessagePack so that reading them needs no decoding: id (8 bytes),
/// priority (4), cpus (4), retries (4), input count (4), little-endian.
const HEADER: usize = 24;

/// A [`TaskSpec`] in its MessagePack encoding, with its id, priority, cpus,
/// retries and number of inputs readable without decoding. Cloning shares
/// the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct EncodedTask(Arc<[u8]>);

impl EncodedTask {
    /// Encodes a task.
    pub fn encode(spec: &TaskSpec) -> Result<EncodedTask, ProtoError> {
        let mut bytes = Vec::with_capacity(HEADER + 32);
        write_header(
            &mut bytes,
            spec.id,
            spec.priority,
            spec.cpus,
            spec.retries,
            spec.inputs.len(),
        );
        rmp_serde::encode::write(&mut bytes, spec)
            .map_err(|e| ProtoError::Encode(e.to_string()))?;
        Ok(EncodedTask(bytes.into()))
    }

    /// Decodes the whole spec.
    pub fn decode(&self) -> Result<TaskSpec, ProtoError> {
        rmp_serde::from_slice(self.message_pack())
            .map_err(|e| ProtoError::Malformed(format!("task spec: {e}")))
    }

    /// [`TaskSpec::function`], read without decoding the rest (the other
    /// fields are skipped, not built).
    pub fn function(&self) -> Result<String, ProtoError> {
        rmp_serde::from_slice::<FunctionField>(self.message_pack())
            .map(|fields| fields.function.to_owned())
            .map_err(|e| ProtoError::Malformed(format!("task spec: {e}")))
    }

    fn field(&self, at: usize) -> [u8; 4] {
        [self.0[at], self.0[at + 1], self.0[at + 2], self.0[at + 3]]
    }

    /// The task's id.
    pub fn id(&self) -> TaskId {
        let mut id = [0; 8];
        id.copy_from_slice(&self.0[..8]);
        TaskId(u64::from_le_bytes(id))
    }

    /// [`TaskSpec::priority`].
    pub fn priority(&self) -> i32 {
        i32::from_le_bytes(self.field(8))
    }

    /// [`TaskSpec::cpus`].
    pub fn cpus(&self) -> u32 {
        u32::from_le_bytes(self.field(12))
    }

    /// [`TaskSpec::retries`].
    pub fn retries(&self) -> u32 {
        u32::from_le_bytes(self.field(16))
    }

    /// How many [`TaskSpec::inputs`] it has.
    pub fn input_count(&self) -> u32 {
        u32::from_le_bytes(self.field(20))
    }

    /// The spec's MessagePack bytes, as they travel.
    fn message_pack(&self) -> &[u8] {
        &self.0[HEADER..]
    }

    /// Bytes it takes, header included.
    pub fn encoded_len(&self) -> usize {
        self.0.len()
    }

    /// The function it names and the size of its inline arguments, read
    /// without decoding the rest (what the scheduler checks on
    /// submission).
    pub fn summary(&self) -> Result<TaskSummary, ProtoError> {
        let fields: SummaryFields<'_> = rmp_serde::from_slice(self.message_pack())
            .map_err(|e| ProtoError::Malformed(format!("task spec: {e}")))?;
        Ok(TaskSummary {
            function: fields.function.to_owned(),
            args_len: fields.args.len(),
        })
    }
}

/// What [`EncodedTask::summary`] reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskSummary {
    /// [`TaskSpec::function`].
    pub function: String,
    /// Bytes of [`TaskSpec::args`].
    pub args_len: usize,
}

/// [`TaskSpec`]'s fields in its order, borrowing the function name and the
/// arguments.
#[derive(Deserialize)]
struct SummaryFields<'a> {
    #[serde(rename = "id")]
    _id: IgnoredAny,
    #[serde(rename = "key")]
    _key: IgnoredAny,
    #[serde(borrow)]
    function: &'a str,
    #[serde(borrow)]
    args: &'a serde_bytes::Bytes,
    #[serde(rename = "args_ref")]
    _args_ref: IgnoredAny,
    #[serde(rename = "inputs")]
    _inputs: IgnoredAny,
    #[serde(rename = "params_json")]
    _params_json: IgnoredAny,
    #[serde(rename = "priority")]
    _priority: IgnoredAny,
    #[serde(rename = "retries")]
    _retries: IgnoredAny,
    #[serde(rename = "timeout_ms")]
    _timeout_ms: IgnoredAny,
    #[serde(rename = "cpus")]
    _cpus: IgnoredAny,
    #[serde(default, rename = "replica_hosts")]
    _replica_hosts: IgnoredAny,
}

impl std::fmt::Debug for EncodedTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.decode() {
            Ok(spec) => spec.fmt(f),
            Err(e) => write!(f, "EncodedTask({e})"),
        }
    }
}

/// Travels as a MessagePack binary holding the spec's own encoding.
impl Serialize for EncodedTask {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.message_pack())
    }
}

/// [`TaskSpec`]'s fields in its order, reading only what the header holds:
/// a task arriving at a worker is decoded in full once, by
/// [`RunTask::decode`], not twice.
#[derive(Deserialize)]
struct HeaderFields {
    id: TaskId,
    #[serde(rename = "key")]
    _key: IgnoredAny,
    #[serde(rename = "function")]
    _function: IgnoredAny,
    #[serde(rename = "args")]
    _args: IgnoredAny,
    #[serde(rename = "args_ref")]
    _args_ref: IgnoredAny,
    inputs: Vec<IgnoredAny>,
    #[serde(rename = "params_json")]
    _params_json: IgnoredAny,
    priority: i32,
    retries: u32,
    #[serde(rename = "timeout_ms")]
    _timeout_ms: IgnoredAny,
    cpus: u32,
    #[serde(default, rename = "replica_hosts")]
    _replica_hosts: IgnoredAny,
}

/// [`TaskSpec`]'s fields in its order, keeping only the function name
/// (borrowed): every field must be named, as the spec travels as an
/// array.
#[derive(Deserialize)]
struct FunctionField<'a> {
    #[serde(rename = "id")]
    _id: IgnoredAny,
    #[serde(rename = "key")]
    _key: IgnoredAny,
    #[serde(borrow)]
    function: &'a str,
    #[serde(rename = "args")]
    _args: IgnoredAny,
    #[serde(rename = "args_ref")]
    _args_ref: IgnoredAny,
    #[serde(rename = "inputs")]
    _inputs: IgnoredAny,
    #[serde(rename = "params_json")]
    _params_json: IgnoredAny,
    #[serde(rename = "priority")]
    _priority: IgnoredAny,
    #[serde(rename = "retries")]
    _retries: IgnoredAny,
    #[serde(rename = "timeout_ms")]
    _timeout_ms: IgnoredAny,
    #[serde(rename = "cpus")]
    _cpus: IgnoredAny,
    #[serde(default, rename = "replica_hosts")]
    _replica_hosts: IgnoredAny,
}

impl<'de> Deserialize<'de> for EncodedTask {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let packed = serde_bytes::ByteBuf::deserialize(deserializer)?;
        let fields: HeaderFields = rmp_serde::from_slice(&packed)
            .map_err(|e| serde::de::Error::custom(format!("task spec: {e}")))?;
        let mut bytes = Vec::with_capacity(HEADER + packed.len());
        write_header(
            &mut bytes,
            fields.id,
            fields.priority,
            fields.cpus,
            fields.retries,
            fields.inputs.len(),
        );
        bytes.extend_from_slice(&packed);
        Ok(EncodedTask(bytes.into()))
    }
}

fn write_header(
    bytes: &mut Vec<u8>,
    id: TaskId,
    priority: i32,
    cpus: u32,
    retries: u32,
    inputs: usize,
) {
    bytes.extend_from_slice(&id.0.to_le_bytes());
    bytes.extend_from_slice(&priority.to_le_bytes());
    bytes.extend_from_slice(&cpus.to_le_bytes());
    bytes.extend_from_slice(&retries.to_le_bytes());
    let inputs = u32::try_from(inputs).unwrap_or(u32::MAX);
    bytes.extend_from_slice(&inputs.to_le_bytes());
}

/// Scheduler → worker: one attempt of one task, with the task still
/// encoded as the client submitted it (see [`EncodedTask`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunTask {
    /// The job (its [`crate::JobSpec`] was sent before).
    pub job: JobId,
    /// The task.
    pub task: EncodedTask,
    /// 1-based attempt number.
    pub attempt: u32,
}

impl RunTask {
    /// The assignment with its task decoded.
    pub fn decode(&self) -> Result<TaskAssignment, ProtoError> {
        Ok(TaskAssignment {
            job: self.job,
            task: Arc::new(self.task.decode()?),
            attempt: self.attempt,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ByteRange, DataRef, Pin};

    #[test]
    fn the_header_and_the_spec_survive_the_wire() {
        let mut spec = TaskSpec::new(TaskId(u64::MAX - 3), "quarry.command", vec![0xc0]);
        spec.priority = -7;
        spec.cpus = 3;
        spec.retries = 9;
        spec.inputs = vec![DataRef {
            url: "s3://b/k".into(),
            pin: Pin::ETag("e".into()),
            size: 10,
            range: Some(ByteRange { start: 2, end: 5 }),
        }];
        // Every field set: the summaries name every field of the spec.
        spec.replica_hosts = vec!["dn1.example.com".into()];
        spec.timeout_ms = Some(1_000);
        let encoded = EncodedTask::encode(&spec).unwrap();
        assert_eq!(encoded.function().unwrap(), "quarry.command");
        assert_eq!(
            (
                encoded.id(),
                encoded.priority(),
                encoded.cpus(),
                encoded.retries(),
                encoded.input_count()
            ),
            (spec.id, -7, 3, 9, 1)
        );
        let run = RunTask {
            job: JobId(5),
            task: encoded.clone(),
            attempt: 2,
        };
        let bytes = rmp_serde::to_vec(&run).unwrap();
        let back: RunTask = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, run);
        assert_eq!(*back.decode().unwrap().task, spec);
        assert_eq!(
            back.task.summary().unwrap(),
            TaskSummary {
                function: "quarry.command".into(),
                args_len: 1
            }
        );
    }

    #[test]
    fn a_small_task_takes_a_few_dozen_bytes() {
        let spec = TaskSpec::new(TaskId(123_456), "noop", vec![0xc0]);
        assert!(EncodedTask::encode(&spec).unwrap().encoded_len() < 64);
    }

    #[test]
    fn garbage_inside_a_run_is_an_error_not_a_panic() {
        let mut bytes = Vec::new();
        rmp_serde::encode::write(
            &mut bytes,
            &(JobId(1), serde_bytes::Bytes::new(b"\x93\xff"), 1u32),
        )
        .unwrap();
        assert!(rmp_serde::from_slice::<RunTask>(&bytes).is_err());
    }
}
