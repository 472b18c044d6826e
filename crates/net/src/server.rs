//! The scheduler's ROUTER socket, owned by one I/O thread.

use crate::context::context;
use crate::curve::CurveServerKeys;
use crate::waker::Waker;
use crate::{zap, zmq_err, NetError, DEFAULT_HWM};
use quarry_proto::{decode, Envelope, FrameBuilder, Limits, ProtoError, Role};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use tokio::sync::mpsc as tokio_mpsc;
use tracing::{debug, warn};

/// A connected peer, as ZeroMQ's ROUTER socket names it (its routing id).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub Arc<[u8]>);

/// What the scheduler's listening socket is set up with.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// ZeroMQ endpoint to bind, such as `tcp://0.0.0.0:8786` or
    /// `tcp://127.0.0.1:0` (any free port).
    pub listen: String,
    /// Frame cap and the other limits.
    pub limits: Limits,
    /// CURVE keys; `None` runs without authentication or encryption.
    pub curve: Option<CurveServerKeys>,
    /// Send and receive high-water marks, in frames per peer.
    pub hwm: i32,
}

impl ServerOptions {
    /// Options for an unauthenticated server on `listen` with default
    /// limits.
    pub fn insecure(listen: impl Into<String>) -> ServerOptions {
        ServerOptions {
            listen: listen.into(),
            limits: Limits::default(),
            curve: None,
            hwm: DEFAULT_HWM,
        }
    }
}

/// One frame received from a peer.
#[derive(Debug)]
pub struct Incoming {
    /// Who sent it.
    pub peer: PeerId,
    /// Roles its CURVE key was admitted for; `None` when the server runs
    /// without CURVE (every role is then allowed).
    pub roles: Option<Vec<Role>>,
    /// Who is behind the connection, for per-peer connection caps: the
    /// CURVE key's fingerprint, or without CURVE the peer's IP address.
    pub origin: String,
    /// The decoded envelope, or why it could not be decoded.
    pub body: Result<Envelope, ProtoError>,
}

/// Decoded frames waiting for the scheduler loop.
const INBOUND_FRAMES: usize = 4;

/// Encoded messages for peers, queued as one batch.
type Outbound = Vec<(PeerId, Vec<u8>)>;

/// The sending half of a bound ROUTER socket. Cloning is cheap; the I/O
/// thread stops when every clone is dropped.
#[derive(Clone)]
pub struct Server {
    tx: mpsc::Sender<Outbound>,
    waker: Arc<Waker>,
    endpoint: Arc<str>,
    dropped: Arc<AtomicU64>,
}

impl Server {
    /// Queues one encoded message (from [`quarry_proto::encode_message`])
    /// for a peer; the I/O thread batches it with others for that peer.
    pub fn send(&self, peer: &PeerId, encoded: Vec<u8>) {
        self.send_batch(vec![(peer.clone(), encoded)]);
    }

    /// Queues many encoded messages at once: one hand-over to the I/O
    /// thread, which frames each peer's messages together.
    pub fn send_batch(&self, batch: Vec<(PeerId, Vec<u8>)>) {
        if !batch.is_empty() && self.tx.send(batch).is_ok() {
            self.waker.wake();
        }
    }

    /// The endpoint actually bound (with the real port when `:0` was
    /// asked for).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Frames that could not be delivered because their peer had gone.
    pub fn undeliverable_frames(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

static NEXT_DOMAIN: AtomicU64 = AtomicU64::new(1);

/// Binds a ROUTER socket and starts its I/O thread. Incoming frames arrive
/// on the returned channel; when its receiver is dropped the thread stops.
pub fn bind(options: ServerOptions) -> Result<(Server, tokio_mpsc::Receiver<Incoming>), NetError> {
    let socket = context()
        .socket(zmq::ROUTER)
        .map_err(zmq_err("ROUTER socket"))?;
    // Report unroutable peers and full queues instead of dropping silently.
    socket
        .set_router_mandatory(true)
        .map_err(zmq_err("ROUTER_MANDATORY"))?;
    socket
        .set_router_handover(true)
        .map_err(zmq_err("ROUTER_HANDOVER"))?;
    socket.set_sndhwm(options.hwm).map_err(zmq_err("SNDHWM"))?;
    socket.set_rcvhwm(options.hwm).map_err(zmq_err("RCVHWM"))?;
    socket.set_linger(0).map_err(zmq_err("LINGER"))?;
    // libzmq drops a connection whose frame exceeds this, before it is
    // buffered, so an oversize sender cannot exhaust the scheduler's memory.
    socket
        .set_maxmsgsize(options.limits.max_frame_bytes as i64)
        .map_err(zmq_err("MAXMSGSIZE"))?;
    let domain = format!("quarry-{}", NEXT_DOMAIN.fetch_add(1, Ordering::Relaxed));
    if let Some(keys) = &options.curve {
        zap::register(
            &domain,
            keys.authorized_clients.clone(),
            keys.authorized_workers.clone(),
        )?;
        socket
            .set_zap_domain(&domain)
            .map_err(zmq_err("ZAP_DOMAIN"))?;
        socket
            .set_curve_server(true)
            .map_err(zmq_err("CURVE_SERVER"))?;
        socket
            .set_curve_secretkey(keys.keypair.secret_bytes())
            .map_err(zmq_err("CURVE_SECRETKEY"))?;
    }
    socket
        .bind(&options.listen)
        .map_err(zmq_err(format!("bind {}", options.listen)))?;
    let endpoint = socket
        .get_last_endpoint()
        .map_err(zmq_err("LAST_ENDPOINT"))?
        .unwrap_or_else(|_| options.listen.clone());
    let waker = Arc::new(Waker::new().map_err(|source| NetError::Io {
        op: "wake-up pipe".into(),
        source,
    })?);
    let (tx, rx) = mpsc::channel();
    // Few decoded frames wait for the scheduler loop: a decoded frame of
    // task specs is several times its wire size, and while the loop is
    // busy, frames are better kept encoded (in ZeroMQ's queue, which
    // pushes back on the sender) than decoded here.
    let (in_tx, in_rx) = tokio_mpsc::channel(INBOUND_FRAMES);
    let dropped = Arc::new(AtomicU64::new(0));
    let io = IoThread {
        socket,
        waker: waker.clone(),
        outbound: rx,
        inbound: in_tx,
        limits: options.limits.clone(),
        curve: options.curve.is_some(),
        pending: HashMap::new(),
        backlog: HashMap::new(),
        dropped: dropped.clone(),
        domain,
    };
    std::thread::Builder::new()
        .name("quarry-router".into())
        .spawn(move || io.run())
        .map_err(|source| NetError::Io {
            op: "spawn ROUTER thread".into(),
            source,
        })?;
    Ok((
        Server {
            tx,
            waker,
            endpoint: endpoint.into(),
            dropped,
        },
        in_rx,
    ))
}

struct IoThread {
    socket: zmq::Socket,
    waker: Arc<Waker>,
    outbound: mpsc::Receiver<Outbound>,
    inbound: tokio_mpsc::Sender<Incoming>,
    limits: Limits,
    curve: bool,
    /// Messages queued per peer, not yet framed.
    pending: HashMap<PeerId, FrameBuilder>,
    /// Frames a full peer queue refused, retried in order.
    backlog: HashMap<PeerId, VecDeque<Vec<u8>>>,
    dropped: Arc<AtomicU64>,
    domain: String,
}

impl IoThread {
    fn run(mut self) {
        loop {
            let timeout = if self.backlog.is_empty() { 1000 } else { 1 };
            let (socket_ready, woken) = {
                let mut items = [
                    self.socket.as_poll_item(zmq::POLLIN),
                    zmq::PollItem::from_fd(self.waker.fd(), zmq::POLLIN),
                ];
                if let Err(e) = zmq::poll(&mut items, timeout) {
                    warn!("ROUTER poll failed: {e}");
                    continue;
                }
                (items[0].is_readable(), items[1].is_readable())
            };
            if woken {
                self.waker.drain();
            }
            if socket_ready && !self.receive_all() {
                break;
            }
            if !self.send_all() {
                break;
            }
        }
        if self.curve {
            zap::unregister(&self.domain);
        }
        debug!("ROUTER I/O thread stopped");
    }

    /// Reads every frame available now. Returns false when the consumer is
    /// gone.
    fn receive_all(&mut self) -> bool {
        loop {
            let mut identity = zmq::Message::new();
            match self.socket.recv(&mut identity, zmq::DONTWAIT) {
                Ok(()) => {}
                Err(zmq::Error::EAGAIN) => return true,
                Err(e) => {
                    warn!("ROUTER receive failed: {e}");
                    return true;
                }
            }
            let mut parts = Vec::new();
            while self.socket.get_rcvmore().unwrap_or(false) {
                let mut part = zmq::Message::new();
                if self.socket.recv(&mut part, 0).is_err() {
                    break;
                }
                parts.push(part);
            }
            let peer = PeerId(Arc::from(&identity[..]));
            let (roles, origin) = match parts.first_mut() {
                Some(first) if self.curve => {
                    let user = first.gets("User-Id").unwrap_or_default().to_string();
                    let (roles, fingerprint) = zap::parse_user_id(&user);
                    (Some(roles), format!("key:{fingerprint}"))
                }
                Some(first) => (
                    None,
                    format!("address:{}", first.gets("Peer-Address").unwrap_or_default()),
                ),
                None => (None, String::new()),
            };
            let body = match parts.as_slice() {
                [payload] => decode(payload, &self.limits),
                _ => Err(ProtoError::Malformed(format!(
                    "expected one payload frame, got {}",
                    parts.len()
                ))),
            };
            if self
                .inbound
                .blocking_send(Incoming {
                    peer,
                    roles,
                    origin,
                    body,
                })
                .is_err()
            {
                return false;
            }
        }
    }

    /// Frames queued messages and sends what the peers' queues accept.
    /// Returns false when every sender is gone and nothing is left.
    fn send_all(&mut self) -> bool {
        let mut disconnected = false;
        loop {
            match self.outbound.try_recv() {
                Ok(batch) => {
                    for (peer, encoded) in batch {
                        let builder = self
                            .pending
                            .entry(peer.clone())
                            .or_insert_with(|| FrameBuilder::new(self.limits.max_frame_bytes));
                        match builder.push(encoded) {
                            Ok(Some(frame)) => {
                                self.backlog.entry(peer).or_default().push_back(frame)
                            }
                            Ok(None) => {}
                            Err(e) => warn!("dropping a message that cannot be framed: {e}"),
                        }
                    }
                }
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    disconnected = true;
                    break;
                }
            }
        }
        for (peer, mut builder) in self.pending.drain() {
            if let Some(frame) = builder.finish() {
                self.backlog.entry(peer).or_default().push_back(frame);
            }
        }
        let dropped = &self.dropped;
        let socket = &self.socket;
        self.backlog.retain(|peer, frames| {
            while let Some(frame) = frames.front() {
                let sent = socket
                    .send(&peer.0[..], zmq::SNDMORE | zmq::DONTWAIT)
                    .and_then(|()| socket.send(&frame[..], zmq::DONTWAIT));
                match sent {
                    Ok(()) => {
                        frames.pop_front();
                    }
                    // The peer's queue is full: keep its frames, in order,
                    // and retry on the next turn.
                    Err(zmq::Error::EAGAIN) => return true,
                    Err(zmq::Error::EHOSTUNREACH) => {
                        dropped.fetch_add(frames.len() as u64, Ordering::Relaxed);
                        debug!("peer gone; dropping {} frame(s) for it", frames.len());
                        return false;
                    }
                    Err(e) => {
                        warn!("ROUTER send failed: {e}");
                        return false;
                    }
                }
            }
            false
        });
        !(disconnected && self.backlog.is_empty())
    }
}
