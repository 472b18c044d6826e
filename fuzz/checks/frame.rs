//! The property the `decode_frame` fuzz target checks, shared with the
//! corpus regression test (crates/proto/tests/corpus.rs) so that both check
//! exactly the same thing.
//!
//! `decode` with the limits every peer runs with never panics (nor
//! overflows, nor allocates without bound), and whatever it accepts
//! re-encodes and decodes back to the same envelope.

use quarry_proto::{decode, encode, Envelope, Limits};

/// Decodes `frame` as a peer would and checks the round trip; returns the
/// envelope when the frame was accepted. Panics when a property breaks.
pub fn check_frame(frame: &[u8]) -> Option<Envelope> {
    let limits = Limits::default();
    let envelope = decode(frame, &limits).ok()?;
    // Re-encoding may legitimately grow a frame (decoding accepts compact
    // forms that encoding does not produce), so the round trip is checked
    // without the frame cap.
    let unbounded = Limits {
        max_frame_bytes: usize::MAX,
        ..limits
    };
    let again = encode(&envelope, &unbounded).expect("a decoded envelope always re-encodes");
    let back = decode(&again, &unbounded).expect("a re-encoded envelope always decodes");
    assert_eq!(back, envelope, "decode(encode(decode(frame))) differs");
    Some(envelope)
}
