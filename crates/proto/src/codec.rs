use crate::{Envelope, Limits, Message};
use thiserror::Error;

/// A frame could not be encoded or decoded.
#[derive(Debug, Error)]
pub enum ProtoError {
    /// The frame is larger than the receiver accepts.
    #[error("frame of {size} bytes exceeds the {max}-byte frame cap (limits.max_frame_bytes)")]
    FrameTooLarge {
        /// Its size.
        size: usize,
        /// The cap.
        max: usize,
    },
    /// The bytes are not a valid envelope.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// Encoding failed (a type that MessagePack cannot represent).
    #[error("cannot encode message: {0}")]
    Encode(String),
}

/// Encodes an envelope, refusing to produce a frame over the cap.
pub fn encode(envelope: &Envelope, limits: &Limits) -> Result<Vec<u8>, ProtoError> {
    let bytes = rmp_serde::to_vec(envelope).map_err(|e| ProtoError::Encode(e.to_string()))?;
    if bytes.len() > limits.max_frame_bytes {
        return Err(ProtoError::FrameTooLarge {
            size: bytes.len(),
            max: limits.max_frame_bytes,
        });
    }
    Ok(bytes)
}

/// Decodes a frame. Never panics, whatever the bytes; the size cap is
/// checked before any parsing.
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Envelope, ProtoError> {
    if bytes.len() > limits.max_frame_bytes {
        return Err(ProtoError::FrameTooLarge {
            size: bytes.len(),
            max: limits.max_frame_bytes,
        });
    }
    rmp_serde::from_slice(bytes).map_err(|e| ProtoError::Malformed(e.to_string()))
}

/// Encodes one message on its own, so that senders can check its size
/// early and an I/O thread can batch encoded messages with [`FrameBuilder`].
pub fn encode_message(message: &Message) -> Result<Vec<u8>, ProtoError> {
    rmp_serde::to_vec(message).map_err(|e| ProtoError::Encode(e.to_string()))
}

/// Batches individually encoded messages into envelope frames no larger than
/// the frame cap, without re-encoding them.
///
/// An [`Envelope`] is encoded as a one-element array holding the array of
/// messages, so a frame is that two-level header followed by the messages'
/// bytes in order.
#[derive(Debug)]
pub struct FrameBuilder {
    max_frame_bytes: usize,
    parts: Vec<Vec<u8>>,
    body_len: usize,
}

/// Worst-case size of the envelope header: a fixarray marker plus an
/// array32 length.
const ENVELOPE_HEADER_MAX: usize = 1 + 5;

impl FrameBuilder {
    /// A builder producing frames of at most `max_frame_bytes`.
    pub fn new(max_frame_bytes: usize) -> FrameBuilder {
        FrameBuilder {
            max_frame_bytes,
            parts: Vec::new(),
            body_len: 0,
        }
    }

    /// Whether no message is pending.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Adds one encoded message. Returns a finished frame when the pending
    /// messages had to be flushed to make room. A message that can never fit
    /// in a frame is refused.
    pub fn push(&mut self, encoded: Vec<u8>) -> Result<Option<Vec<u8>>, ProtoError> {
        if encoded.len() + ENVELOPE_HEADER_MAX > self.max_frame_bytes {
            return Err(ProtoError::FrameTooLarge {
                size: encoded.len() + ENVELOPE_HEADER_MAX,
                max: self.max_frame_bytes,
            });
        }
        let flushed = if self.body_len + encoded.len() + ENVELOPE_HEADER_MAX > self.max_frame_bytes
        {
            self.finish()
        } else {
            None
        };
        self.body_len += encoded.len();
        self.parts.push(encoded);
        Ok(flushed)
    }

    /// Returns the pending messages as one frame, if any.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        if self.parts.is_empty() {
            return None;
        }
        let mut frame = Vec::with_capacity(self.body_len + ENVELOPE_HEADER_MAX);
        // Writing into a Vec cannot fail.
        let _ = rmp::encode::write_array_len(&mut frame, 1);
        let _ = rmp::encode::write_array_len(&mut frame, self.parts.len() as u32);
        for part in self.parts.drain(..) {
            frame.extend_from_slice(&part);
        }
        self.body_len = 0;
        Some(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::*;
    use proptest::prelude::*;

    fn sample() -> Envelope {
        let task = TaskSpec {
            id: TaskId(7),
            key: "00007".into(),
            function: "inc".into(),
            args: vec![1, 2, 3],
            args_ref: None,
            inputs: vec![DataRef {
                url: "s3://b/k".into(),
                pin: Pin::ETag("\"abc\"".into()),
                size: 10,
                range: Some(ByteRange { start: 0, end: 5 }),
            }],
            params_json: "{\"depth\":3}".into(),
            priority: 0,
            retries: 2,
            timeout_ms: Some(1000),
            cpus: 1,
            replica_hosts: vec!["dn-1".into()],
        };
        Envelope {
            messages: vec![
                Message::Hello {
                    version: PROTOCOL_VERSION,
                    role: Role::Worker,
                    name: "w".into(),
                    slots: 2,
                    functions: vec!["inc".into()],
                    inventory: vec![],
                    host: String::new(),
                    resume: None,
                },
                Message::Run(RunTask {
                    job: JobId(1),
                    task: EncodedTask::encode(&task).unwrap(),
                    attempt: 1,
                }),
                Message::Submit {
                    request: RequestId(1),
                    job: JobId(1),
                    tasks: vec![EncodedTask::encode(&task).unwrap()],
                },
                Message::TaskFinished(TaskReport {
                    task: TaskId(7),
                    attempt: 1,
                    outcome: TaskOutcome::Err(TaskError {
                        kind: ErrorKind::Panicked,
                        message: "boom".into(),
                    }),
                    outputs: vec![],
                    stats: TaskStats::default(),
                }),
            ],
        }
    }

    #[test]
    fn round_trip() {
        let limits = Limits::default();
        let env = sample();
        let bytes = encode(&env, &limits).unwrap();
        assert_eq!(decode(&bytes, &limits).unwrap(), env);
    }

    #[test]
    fn oversize_frames_are_refused_both_ways() {
        let limits = Limits {
            max_frame_bytes: 16,
            ..Limits::default()
        };
        assert!(matches!(
            encode(&sample(), &limits),
            Err(ProtoError::FrameTooLarge { .. })
        ));
        assert!(matches!(
            decode(&[0u8; 17], &limits),
            Err(ProtoError::FrameTooLarge { size: 17, max: 16 })
        ));
    }

    #[test]
    fn frame_builder_batches_and_splits_at_the_cap() {
        let limits = Limits::default();
        let messages = sample().messages;
        let mut builder = FrameBuilder::new(limits.max_frame_bytes);
        for m in &messages {
            assert!(builder.push(encode_message(m).unwrap()).unwrap().is_none());
        }
        let frame = builder.finish().unwrap();
        assert_eq!(decode(&frame, &limits).unwrap().messages, messages);

        // A small cap forces one frame per message, each still decodable.
        let one = encode_message(&messages[3]).unwrap().len();
        let mut small = FrameBuilder::new(one + ENVELOPE_HEADER_MAX);
        let mut frames = Vec::new();
        for _ in 0..3 {
            frames.extend(small.push(encode_message(&messages[3]).unwrap()).unwrap());
        }
        frames.extend(small.finish());
        assert_eq!(frames.len(), 3);
        for f in frames {
            assert_eq!(
                decode(&f, &limits).unwrap().messages,
                vec![messages[3].clone()]
            );
        }
        assert!(matches!(
            FrameBuilder::new(8).push(vec![0; 8]),
            Err(ProtoError::FrameTooLarge { .. })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]
        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = decode(&bytes, &Limits::default());
        }

        #[test]
        fn decoding_mutated_frames_never_panics(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = encode(&sample(), &Limits::default()).unwrap();
            for (at, value) in flips {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            let keep = cut.index(bytes.len() + 1);
            bytes.truncate(keep);
            let _ = decode(&bytes, &Limits::default());
        }
    }
}
