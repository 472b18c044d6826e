//! What the scheduler lets in: handshakes (protocol version, the role a
//! key is authorized for, the per-origin connection cap, how many names a
//! worker registers and how long they are) and submissions (the limits on
//! tasks and inline arguments).
//!
//! Every check runs before the core sees anything, so a refused message
//! changes nothing. The texts say what to do.

use quarry_proto::{EncodedTask, Limits, Role, PROTOCOL_VERSION};
use tracing::warn;

/// Caps on what one Hello can make the scheduler hold: the names a worker
/// registers stay in memory as long as it is connected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelloLimits {
    /// Most function names one worker may register.
    pub max_worker_functions: usize,
    /// Longest function, worker or host name, in bytes.
    pub max_name_bytes: usize,
    /// New sessions (Hellos that do not resume one) one origin may open
    /// per second, and at once; 0 is no limit. This, not a low cap on
    /// connections, protects against floods.
    pub new_sessions_per_second: u32,
}

impl Default for HelloLimits {
    fn default() -> Self {
        HelloLimits {
            max_worker_functions: 1024,
            max_name_bytes: 256,
            new_sessions_per_second: 200,
        }
    }
}

/// What a Hello says about its sender, for [`check_hello`].
pub(crate) struct HelloFields<'a> {
    pub(crate) version: u32,
    pub(crate) role: Role,
    pub(crate) name: &'a str,
    pub(crate) host: &'a str,
    pub(crate) functions: &'a [String],
}

/// A refused handshake: the reason for the peer, and whether saying Hello
/// again could help.
pub(crate) struct Refusal {
    pub(crate) reason: String,
    pub(crate) fatal: bool,
}

/// Checks a Hello: the sender's protocol version, whether its key may
/// connect as its role (`allowed` is `None` without CURVE), whether its
/// names are within `hello`, and whether a client's origin is under the
/// connection cap with `open` client connections.
pub(crate) fn check_hello(
    limits: &Limits,
    hello_limits: &HelloLimits,
    fields: &HelloFields<'_>,
    allowed: Option<&[Role]>,
    origin: &str,
    open: usize,
) -> Result<(), Refusal> {
    let HelloFields {
        version,
        role,
        name,
        host,
        functions,
    } = *fields;
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
    check_names(hello_limits, name, host, functions).map_err(|reason| {
        warn!(origin = %origin, "refused a {role:?} handshake: {reason}");
        Refusal {
            reason,
            fatal: true,
        }
    })?;
    let cap = limits.max_connections_per_peer;
    if role == Role::Client && open >= cap {
        warn!(origin = %origin, open, "refused a connection over the per-peer cap");
        return Err(Refusal {
            reason: format!(
                "this peer already has {open} client connections, the cap \
                 (limits.max_connections_per_peer = {cap}); close some first"
            ),
            fatal: true,
        });
    }
    Ok(())
}

/// Checks the number and length of the names a Hello carries.
fn check_names(
    limits: &HelloLimits,
    name: &str,
    host: &str,
    functions: &[String],
) -> Result<(), String> {
    let max = limits.max_worker_functions;
    if functions.len() > max {
        return Err(format!(
            "this worker registers {} functions, over the cap of {max} \
             (max_worker_functions); register fewer",
            functions.len()
        ));
    }
    let max = limits.max_name_bytes;
    let named = [("peer name", name), ("host name", host)]
        .into_iter()
        .chain(functions.iter().map(|f| ("function name", f.as_str())));
    for (what, text) in named {
        if text.len() > max {
            let start: String = text.chars().take(32).collect();
            return Err(format!(
                "the {what} `{start}…` is {} bytes long, over the cap of {max} bytes \
                 (max_name_bytes); use a shorter name",
                text.len()
            ));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn check(functions: &[String], name: &str) -> Result<(), String> {
        let fields = HelloFields {
            version: PROTOCOL_VERSION,
            role: Role::Worker,
            name,
            host: "h",
            functions,
        };
        check_hello(
            &Limits::default(),
            &HelloLimits::default(),
            &fields,
            None,
            "o",
            0,
        )
        .map_err(|refusal| {
            assert!(refusal.fatal);
            refusal.reason
        })
    }

    #[test]
    fn hellos_with_too_many_or_too_long_names_are_refused() {
        let names: Vec<String> = (0..1024).map(|i| format!("f{i}")).collect();
        assert_eq!(check(&names, "w"), Ok(()));
        let more: Vec<String> = (0..1025).map(|i| format!("f{i}")).collect();
        assert_eq!(
            check(&more, "w"),
            Err(
                "this worker registers 1025 functions, over the cap of 1024 \
                 (max_worker_functions); register fewer"
                    .into()
            )
        );
        let long = vec!["x".repeat(257)];
        let refused = check(&long, "w").unwrap_err();
        assert!(
            refused
                .starts_with("the function name `xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…` is 257 bytes"),
            "{refused}"
        );
        assert!(refused.contains("(max_name_bytes)"), "{refused}");
        let refused = check(&[], &"n".repeat(300)).unwrap_err();
        assert!(refused.starts_with("the peer name"), "{refused}");
    }
}
