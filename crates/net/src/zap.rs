//! The ZAP (ZeroMQ Authentication Protocol) handler.
//!
//! libzmq asks a handler bound at `inproc://zeromq.zap.01` whether each new
//! connection may proceed. There is one handler per process (per context);
//! each CURVE server registers its authorized keys under its own ZAP domain.
//! The handler answers with a User-Id naming the peer's roles, which the
//! server reads from every message it receives.

use crate::context::context;
use crate::curve::fingerprint;
use crate::NetError;
use quarry_proto::Role;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use tracing::{debug, warn};

const ZAP_ENDPOINT: &str = "inproc://zeromq.zap.01";

/// User-Id given to a key admitted as a client.
pub(crate) const USER_CLIENT: &str = "client";
/// User-Id given to a key admitted as a worker.
pub(crate) const USER_WORKER: &str = "worker";
/// User-Id given to a key admitted as both.
pub(crate) const USER_BOTH: &str = "client+worker";

/// Splits a User-Id (`ROLES/FINGERPRINT`) into the roles it grants and
/// the key's fingerprint.
pub(crate) fn parse_user_id(user_id: &str) -> (Vec<Role>, &str) {
    let (roles, fingerprint) = user_id.split_once('/').unwrap_or((user_id, ""));
    let roles = match roles {
        USER_CLIENT => vec![Role::Client],
        USER_WORKER => vec![Role::Worker],
        USER_BOTH => vec![Role::Client, Role::Worker],
        _ => Vec::new(),
    };
    (roles, fingerprint)
}

#[derive(Default)]
struct Domain {
    clients: Vec<[u8; 32]>,
    workers: Vec<[u8; 32]>,
}

type Registry = Arc<Mutex<HashMap<String, Domain>>>;

/// The keys of every CURVE server in this process, by ZAP domain.
static REGISTRY: OnceLock<Registry> = OnceLock::new();
/// Whether the handler thread started (once per process).
static HANDLER: OnceLock<Result<(), String>> = OnceLock::new();

/// Registers the keys a CURVE server admits under `domain`, starting the
/// handler on first use.
pub(crate) fn register(
    domain: &str,
    clients: Vec<[u8; 32]>,
    workers: Vec<[u8; 32]>,
) -> Result<(), NetError> {
    let registry = REGISTRY.get_or_init(Registry::default);
    HANDLER
        .get_or_init(|| start_handler(registry.clone()).map_err(|e| e.to_string()))
        .clone()
        .map_err(|e| NetError::Key(format!("cannot start the ZAP handler: {e}")))?;
    registry
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(domain.to_string(), Domain { clients, workers });
    Ok(())
}

/// Removes a server's keys when it shuts down.
pub(crate) fn unregister(domain: &str) {
    if let Some(registry) = REGISTRY.get() {
        registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(domain);
    }
}

fn start_handler(registry: Registry) -> Result<(), NetError> {
    let socket = context()
        .socket(zmq::REP)
        .map_err(crate::zmq_err("ZAP socket"))?;
    socket
        .bind(ZAP_ENDPOINT)
        .map_err(crate::zmq_err("ZAP bind"))?;
    std::thread::Builder::new()
        .name("quarry-zap".into())
        .spawn(move || serve(socket, registry))
        .map_err(|source| NetError::Io {
            op: "spawn ZAP thread".into(),
            source,
        })?;
    Ok(())
}

fn serve(socket: zmq::Socket, registry: Registry) {
    loop {
        let frames = match socket.recv_multipart(0) {
            Ok(f) => f,
            Err(zmq::Error::ETERM) => return,
            Err(e) => {
                warn!("ZAP handler receive failed: {e}");
                continue;
            }
        };
        let reply = decide(&frames, &registry);
        if let Err(e) = socket.send_multipart(reply, 0) {
            warn!("ZAP handler reply failed: {e}");
        }
    }
}

/// Answers one ZAP request: frames are version, request id, domain,
/// address, routing id, mechanism, then credentials.
fn decide(frames: &[Vec<u8>], registry: &Registry) -> Vec<Vec<u8>> {
    let text = |i: usize| String::from_utf8_lossy(frames.get(i).map_or(&[][..], |f| f)).to_string();
    let request_id = frames.get(1).cloned().unwrap_or_default();
    let reply = |code: &str, reason: &str, user: &str| {
        vec![
            b"1.0".to_vec(),
            request_id.clone(),
            code.as_bytes().to_vec(),
            reason.as_bytes().to_vec(),
            user.as_bytes().to_vec(),
            Vec::new(),
        ]
    };
    if frames.len() < 6 || frames[0] != b"1.0" {
        return reply("500", "malformed ZAP request", "");
    }
    let (domain, address, mechanism) = (text(2), text(3), text(5));
    let registry = registry.lock().unwrap_or_else(|p| p.into_inner());
    let Some(keys) = registry.get(&domain) else {
        // A server without CURVE (insecure mode, or the embedded cluster)
        // registers no domain: nothing to check.
        return reply("200", "OK", "");
    };
    if mechanism != "CURVE" {
        warn!(peer = %address, mechanism = %mechanism, "rejected a connection without CURVE");
        return reply("400", "CURVE required", "");
    }
    let Some(key) = frames
        .get(6)
        .and_then(|k| <[u8; 32]>::try_from(k.as_slice()).ok())
    else {
        return reply("400", "malformed CURVE credentials", "");
    };
    let is_client = keys.clients.contains(&key);
    let is_worker = keys.workers.contains(&key);
    let user = match (is_client, is_worker) {
        (true, true) => USER_BOTH,
        (true, false) => USER_CLIENT,
        (false, true) => USER_WORKER,
        (false, false) => {
            warn!(peer = %address, key = %fingerprint(&key), "rejected an unknown CURVE key");
            return reply("400", "key not authorized", "");
        }
    };
    let fingerprint = fingerprint(&key);
    debug!(peer = %address, key = %fingerprint, role = user, "admitted");
    reply("200", "OK", &format!("{user}/{fingerprint}"))
}
