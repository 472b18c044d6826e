//! What the scheduler lets in: handshakes (protocol version, the role a
//! key is authorized for, the per-origin connection cap) and submissions
//! (the limits on tasks and inline arguments).
//!
//! Every check runs before the core sees anything, so a refused message
//! changes nothing. The texts say what to do.

use quarry_proto::{EncodedTask, Limits, Role, PROTOCOL_VERSION};
use tracing::warn;

/// A refused handshake: the reason for the peer, and whether saying Hello
/// again could help.
pub(crate) struct Refusal {
    pub(crate) reason: String,
    pub(crate) fatal: bool,
}

/// Checks a Hello: the sender's protocol version, whether its key may
/// connect as `role` (`allowed` is `None` without CURVE), and whether its
/// origin is under the connection cap with `open` connections.
pub(crate) fn check_hello(
    limits: &Limits,
    version: u32,
    role: Role,
    name: &str,
    allowed: Option<&[Role]>,
    origin: &str,
    open: usize,
) -> Result<(), Refusal> {
    if version != PROTOCOL_VERSION {
        return Err(Refusal {
            reason: format!(
                "protocol version {version} is not supported; this scheduler speaks \
                 version {PROTOCOL_VERSION}: run the same quarry release everywhere"
            ),
            fatal: true,
        });
    }
    if let Some(allowed) = allowed {
        if !allowed.contains(&role) {
            warn!(name = %name, "refused a {role:?} handshake from a key not authorized for it");
            return Err(Refusal {
                reason: format!("this key is not authorized to connect as a {role:?}"),
                fatal: true,
            });
        }
    }
    let cap = limits.max_connections_per_peer;
    if open >= cap {
        warn!(origin = %origin, open, "refused a connection over the per-peer cap");
        return Err(Refusal {
            reason: format!(
                "this peer already has {open} connections, the cap \
                 (limits.max_connections_per_peer = {cap}); close some first"
            ),
            fatal: true,
        });
    }
    Ok(())
}

/// Checks a submission against the limits; the error text is sent back to
/// the client as is. (Which ids a client may use is the core's rule.)
pub(crate) fn check_submission(limits: &Limits, tasks: &[EncodedTask]) -> Result<(), String> {
    if tasks.len() > limits.max_tasks_per_submit {
        return Err(format!(
            "a submission of {} tasks exceeds the cap of {} tasks per submission \
             (limits.max_tasks_per_submit); send them in several batches",
            tasks.len(),
            limits.max_tasks_per_submit
        ));
    }
    for task in tasks {
        let id = task.id();
        let args_len = task
            .summary()
            .map_err(|e| format!("task {id} cannot be read: {e}"))?
            .args_len;
        if args_len > limits.max_inline_bytes {
            return Err(format!(
                "task {id} has {args_len} bytes of inline arguments, over the {}-byte cap \
                 (limits.max_inline_bytes); pass large values by reference (Client::put)",
                limits.max_inline_bytes
            ));
        }
    }
    Ok(())
}
