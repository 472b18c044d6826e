//! The DEALER socket of a worker or client, owned by one I/O thread.

use crate::context::context;
use crate::curve::CurveClientKeys;
use crate::waker::Waker;
use crate::{zmq_err, NetError, DEFAULT_HWM};
use quarry_proto::{decode, Envelope, FrameBuilder, Limits, ProtoError};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc as tokio_mpsc;
use tracing::{debug, warn};

/// How to reach the scheduler.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// ZeroMQ endpoint, such as `tcp://10.0.0.5:8786`.
    pub address: String,
    /// Frame cap for what this peer sends and accepts.
    pub limits: Limits,
    /// CURVE keys; `None` connects without CURVE.
    pub curve: Option<CurveClientKeys>,
}

impl ConnectOptions {
    /// Options for an unauthenticated connection with default limits.
    pub fn insecure(address: impl Into<String>) -> ConnectOptions {
        ConnectOptions {
            address: address.into(),
            limits: Limits::default(),
            curve: None,
        }
    }
}

/// What the I/O thread reports.
#[derive(Debug)]
pub enum ConnectionEvent {
    /// A frame from the scheduler.
    Frame(Result<Envelope, ProtoError>),
    /// The security handshake failed: the scheduler refused our key, or
    /// the two sides disagree on CURVE. The text says which.
    HandshakeFailed(String),
    /// The TCP connection dropped; ZeroMQ reconnects by itself.
    Disconnected,
    /// The (re)connection finished its handshake.
    Connected,
}

/// The sending half of a connection. The I/O thread stops when every
/// clone is dropped.
#[derive(Clone)]
pub struct Connection {
    tx: mpsc::Sender<Vec<Vec<u8>>>,
    waker: Arc<Waker>,
    // Declared after `tx`, so it drops after it: the I/O thread it wakes
    // then finds the channel closed.
    _closer: Arc<WakeOnClose>,
}

/// Wakes the I/O thread when the last [`Connection`] clone goes, so that
/// it closes the socket at once instead of at its next poll timeout (a
/// peer that shut down meanwhile would show up as a lost connection).
struct WakeOnClose(Arc<Waker>);

impl Drop for WakeOnClose {
    fn drop(&mut self) {
        self.0.wake();
    }
}

impl Connection {
    /// Queues one encoded message; the I/O thread batches queued messages
    /// into frames.
    pub fn send(&self, encoded: Vec<u8>) {
        self.send_batch(vec![encoded]);
    }

    /// Queues many encoded messages with one hand-over to the I/O thread.
    pub fn send_batch(&self, batch: Vec<Vec<u8>>) {
        if !batch.is_empty() && self.tx.send(batch).is_ok() {
            self.waker.wake();
        }
    }
}

static NEXT_MONITOR: AtomicU64 = AtomicU64::new(1);

/// How long libzmq keeps sending a closed socket's last frames.
const CLOSE_LINGER_MS: i32 = 1000;

/// How long a closing connection waits for libzmq to stop its monitor.
const MONITOR_STOP_LIMIT: Duration = Duration::from_secs(5);

/// Connects a DEALER socket and starts its I/O thread. ZeroMQ connects in
/// the background and reconnects after failures; events arrive on the
/// returned channel.
pub fn connect(
    options: ConnectOptions,
) -> Result<(Connection, tokio_mpsc::Receiver<ConnectionEvent>), NetError> {
    let ctx = context();
    let socket = ctx.socket(zmq::DEALER).map_err(zmq_err("DEALER socket"))?;
    socket.set_sndhwm(DEFAULT_HWM).map_err(zmq_err("SNDHWM"))?;
    socket.set_rcvhwm(DEFAULT_HWM).map_err(zmq_err("RCVHWM"))?;
    socket.set_linger(0).map_err(zmq_err("LINGER"))?;
    socket
        .set_reconnect_ivl(100)
        .map_err(zmq_err("RECONNECT_IVL"))?;
    socket
        .set_reconnect_ivl_max(2000)
        .map_err(zmq_err("RECONNECT_IVL_MAX"))?;
    socket
        .set_maxmsgsize(options.limits.max_frame_bytes as i64)
        .map_err(zmq_err("MAXMSGSIZE"))?;
    if let Some(keys) = &options.curve {
        socket
            .set_curve_serverkey(&keys.server_public)
            .map_err(zmq_err("CURVE_SERVERKEY"))?;
        socket
            .set_curve_publickey(&keys.keypair.public)
            .map_err(zmq_err("CURVE_PUBLICKEY"))?;
        socket
            .set_curve_secretkey(keys.keypair.secret_bytes())
            .map_err(zmq_err("CURVE_SECRETKEY"))?;
    }
    let monitor_endpoint = format!(
        "inproc://quarry-monitor-{}",
        NEXT_MONITOR.fetch_add(1, Ordering::Relaxed)
    );
    socket
        .monitor(
            &monitor_endpoint,
            (zmq::SocketEvent::HANDSHAKE_FAILED_AUTH as i32)
                | (zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL as i32)
                | (zmq::SocketEvent::HANDSHAKE_FAILED_NO_DETAIL as i32)
                | (zmq::SocketEvent::HANDSHAKE_SUCCEEDED as i32)
                | (zmq::SocketEvent::DISCONNECTED as i32)
                | (zmq::SocketEvent::MONITOR_STOPPED as i32),
        )
        .map_err(zmq_err("monitor"))?;
    let monitor = ctx.socket(zmq::PAIR).map_err(zmq_err("monitor socket"))?;
    monitor
        .connect(&monitor_endpoint)
        .map_err(zmq_err("monitor connect"))?;
    socket
        .connect(&options.address)
        .map_err(zmq_err(format!("connect {}", options.address)))?;
    let waker = Arc::new(Waker::new().map_err(|source| NetError::Io {
        op: "wake-up pipe".into(),
        source,
    })?);
    let (tx, rx) = mpsc::channel();
    let (event_tx, event_rx) = tokio_mpsc::channel(1024);
    let io = IoThread {
        socket,
        monitor,
        waker: waker.clone(),
        outbound: rx,
        events: event_tx,
        limits: options.limits,
        backlog: VecDeque::new(),
    };
    std::thread::Builder::new()
        .name("quarry-dealer".into())
        .spawn(move || io.run())
        .map_err(|source| NetError::Io {
            op: "spawn DEALER thread".into(),
            source,
        })?;
    Ok((
        Connection {
            tx,
            _closer: Arc::new(WakeOnClose(waker.clone())),
            waker,
        },
        event_rx,
    ))
}

struct IoThread {
    socket: zmq::Socket,
    monitor: zmq::Socket,
    waker: Arc<Waker>,
    outbound: mpsc::Receiver<Vec<Vec<u8>>>,
    events: tokio_mpsc::Sender<ConnectionEvent>,
    limits: Limits,
    backlog: VecDeque<Vec<u8>>,
}

impl IoThread {
    fn run(mut self) {
        loop {
            let timeout = if self.backlog.is_empty() { 1000 } else { 1 };
            let (socket_ready, monitor_ready, woken) = {
                let mut items = [
                    self.socket.as_poll_item(zmq::POLLIN),
                    self.monitor.as_poll_item(zmq::POLLIN),
                    zmq::PollItem::from_fd(self.waker.fd(), zmq::POLLIN),
                ];
                if let Err(e) = zmq::poll(&mut items, timeout) {
                    warn!("DEALER poll failed: {e}");
                    continue;
                }
                (
                    items[0].is_readable(),
                    items[1].is_readable(),
                    items[2].is_readable(),
                )
            };
            if woken {
                self.waker.drain();
            }
            if monitor_ready && !self.read_monitor() {
                break;
            }
            if socket_ready && !self.receive_all() {
                break;
            }
            if !self.send_all() {
                break;
            }
        }
        self.close();
        debug!("DEALER I/O thread stopped");
    }

    /// Closes the DEALER, then reads its monitor until libzmq says the
    /// monitor stopped. libzmq sends monitor events from the context's I/O
    /// thread with blocking sends; were the monitor's reader closed first, a
    /// late event (the closing socket's own disconnect) would block that
    /// thread, and with it every socket of the process-wide context.
    fn close(self) {
        let IoThread {
            socket, monitor, ..
        } = self;
        // Frames queued last (a client's goodbye) still go out while the
        // process lives on.
        if let Err(e) = socket.set_linger(CLOSE_LINGER_MS) {
            debug!("cannot set LINGER on close: {e}");
        }
        drop(socket);
        if monitor.set_rcvtimeo(100).is_err() {
            return;
        }
        let deadline = Instant::now() + MONITOR_STOP_LIMIT;
        while Instant::now() < deadline {
            let Ok(frames) = monitor.recv_multipart(0) else {
                continue;
            };
            let stopped = frames
                .first()
                .filter(|head| head.len() >= 2)
                .map(|head| u16::from_le_bytes([head[0], head[1]]))
                .is_some_and(|event| {
                    zmq::SocketEvent::from_raw(event) == zmq::SocketEvent::MONITOR_STOPPED
                });
            if stopped {
                return;
            }
        }
        warn!("the DEALER's monitor did not stop in time");
    }

    fn emit(&self, event: ConnectionEvent) -> bool {
        self.events.blocking_send(event).is_ok()
    }

    fn read_monitor(&mut self) -> bool {
        while let Ok(frames) = self.monitor.recv_multipart(zmq::DONTWAIT) {
            let Some(head) = frames.first().filter(|f| f.len() >= 6) else {
                continue;
            };
            let event = u16::from_le_bytes([head[0], head[1]]);
            let value = u32::from_le_bytes([head[2], head[3], head[4], head[5]]);
            let event = zmq::SocketEvent::from_raw(event);
            let report = match event {
                zmq::SocketEvent::HANDSHAKE_SUCCEEDED => ConnectionEvent::Connected,
                zmq::SocketEvent::DISCONNECTED => ConnectionEvent::Disconnected,
                zmq::SocketEvent::HANDSHAKE_FAILED_AUTH => {
                    ConnectionEvent::HandshakeFailed(format!(
                        "the scheduler refused this peer's key (ZAP status {value}); \
                         check that its public key is in the scheduler's authorized list"
                    ))
                }
                zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL
                | zmq::SocketEvent::HANDSHAKE_FAILED_NO_DETAIL => ConnectionEvent::HandshakeFailed(
                    "security handshake with the scheduler failed: it expects CURVE keys \
                         (or does not, and this peer sent them), or the scheduler public key is \
                         wrong; run `quarry keygen` and configure QUARRY_SERVER_KEY and the peer \
                         key pair"
                        .to_string(),
                ),
                _ => continue,
            };
            if !self.emit(report) {
                return false;
            }
        }
        true
    }

    fn receive_all(&mut self) -> bool {
        loop {
            match self.socket.recv_multipart(zmq::DONTWAIT) {
                Ok(parts) => {
                    let body = match parts.as_slice() {
                        [payload] => decode(payload, &self.limits),
                        _ => Err(ProtoError::Malformed(format!(
                            "expected one payload frame, got {}",
                            parts.len()
                        ))),
                    };
                    if !self.emit(ConnectionEvent::Frame(body)) {
                        return false;
                    }
                }
                Err(zmq::Error::EAGAIN) => return true,
                Err(e) => {
                    warn!("DEALER receive failed: {e}");
                    return true;
                }
            }
        }
    }

    fn send_all(&mut self) -> bool {
        let mut builder = FrameBuilder::new(self.limits.max_frame_bytes);
        let mut disconnected = false;
        loop {
            match self.outbound.try_recv() {
                Ok(batch) => {
                    for encoded in batch {
                        match builder.push(encoded) {
                            Ok(Some(frame)) => self.backlog.push_back(frame),
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
        self.backlog.extend(builder.finish());
        while let Some(frame) = self.backlog.front() {
            match self.socket.send(&frame[..], zmq::DONTWAIT) {
                Ok(()) => {
                    self.backlog.pop_front();
                }
                // Not connected yet, or the queue is full: retry shortly.
                Err(zmq::Error::EAGAIN) => break,
                Err(e) => {
                    warn!("DEALER send failed: {e}");
                    self.backlog.pop_front();
                }
            }
        }
        !(disconnected && self.backlog.is_empty())
    }
}
