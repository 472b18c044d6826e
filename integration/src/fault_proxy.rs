//! A loopback HTTP proxy that injects S3-style faults.
//!
//! The proxy reads each request's head, then either forwards the request to the
//! upstream server, answers `503 SlowDown` itself, or resets the connection.
//! It serves one request per connection: forwarded requests carry
//! `Connection: close`, so the upstream closes after its response and the client
//! opens a new connection for its next request. That keeps every request visible
//! to the proxy without parsing bodies or responses.
//!
//! Which requests fail is deterministic: queued faults ([`FaultProxy::fail_next`])
//! come first, then rates ([`FaultProxy::set_rates`]) are applied by accumulating
//! credit, so a rate of 0.25 fails exactly every fourth request.

use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::error::{HarnessError, Result};

/// Most connections handled at once; further clients wait in the accept queue.
const MAX_CONNECTIONS: usize = 256;
/// Largest request head accepted (S3 heads are a few KiB).
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// How long a client may take to send a request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one forwarded connection may live, so none lingers forever.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(600);
/// After a `503`, how long and how much of the unread request body to swallow
/// so that closing the socket does not turn into a reset.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
const DRAIN_LIMIT_BYTES: u64 = 64 * 1024 * 1024;
/// Rates are kept in parts per million so that credit adds up exactly.
const PPM: i64 = 1_000_000;

/// A fault the proxy can inject into one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer `503 Service Unavailable` with S3's `SlowDown` error body.
    SlowDown,
    /// Reset the connection (TCP RST) after reading the request head.
    Reset,
}

/// What the proxy has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Request heads read.
    pub requests: u64,
    /// Requests passed to the upstream.
    pub forwarded: u64,
    /// Requests answered with `503 SlowDown`.
    pub slow_downs: u64,
    /// Connections reset.
    pub resets: u64,
}

/// Which requests fail: queued faults, then rate-based ones.
///
/// Each request adds its rate to each kind's credit. A fault is due whenever the
/// credits add up to one whole request, and it goes to the kind owed most; so
/// after `n` requests exactly `floor(n * (slow_down + reset))` have failed, split
/// between the kinds as evenly as whole requests allow.
#[derive(Debug, Default)]
struct FaultPlan {
    queued: VecDeque<Fault>,
    slow_down_ppm: i64,
    reset_ppm: i64,
    slow_down_credit: i64,
    reset_credit: i64,
}

impl FaultPlan {
    /// The fault for the next request, if any.
    fn next_fault(&mut self) -> Option<Fault> {
        if let Some(fault) = self.queued.pop_front() {
            return Some(fault);
        }
        self.slow_down_credit += self.slow_down_ppm;
        self.reset_credit += self.reset_ppm;
        if self.slow_down_credit + self.reset_credit < PPM {
            return None;
        }
        if self.slow_down_credit >= self.reset_credit {
            self.slow_down_credit -= PPM;
            Some(Fault::SlowDown)
        } else {
            self.reset_credit -= PPM;
            Some(Fault::Reset)
        }
    }
}

#[derive(Debug, Default)]
struct ProxyState {
    plan: FaultPlan,
    stats: ProxyStats,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<ProxyState>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, ProxyState> {
        // A panic while holding the lock cannot leave the counters inconsistent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A fault-injecting HTTP proxy on `127.0.0.1`, running on its own small runtime
/// until dropped. Point clients at [`FaultProxy::endpoint`] instead of the
/// upstream's; S3 signatures stay valid because the `Host` header is passed
/// through as the client signed it.
#[derive(Debug)]
pub struct FaultProxy {
    address: SocketAddr,
    shared: Arc<Shared>,
    /// `Option` so that `Drop` can shut it down without blocking.
    runtime: Option<tokio::runtime::Runtime>,
}

impl FaultProxy {
    /// Starts a proxy forwarding to `upstream`, injecting no faults until told to.
    pub fn start(upstream: SocketAddr) -> Result<FaultProxy> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("quarry-fault-proxy")
            .enable_io()
            .enable_time()
            .build()
            .map_err(HarnessError::io("starting the fault proxy's runtime"))?;
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(HarnessError::io("binding the fault proxy"))?;
        listener
            .set_nonblocking(true)
            .map_err(HarnessError::io("configuring the fault proxy's socket"))?;
        let address = listener
            .local_addr()
            .map_err(HarnessError::io("reading the fault proxy's address"))?;
        let listener = {
            let _context = runtime.enter();
            TcpListener::from_std(listener)
                .map_err(HarnessError::io("registering the fault proxy's socket"))?
        };
        let shared = Arc::new(Shared::default());
        runtime.spawn(accept_loop(listener, upstream, Arc::clone(&shared)));
        tracing::info!(%address, %upstream, "started fault proxy");
        Ok(FaultProxy {
            address,
            shared,
            runtime: Some(runtime),
        })
    }

    /// The proxy's endpoint, e.g. `http://127.0.0.1:40124`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The proxy's socket address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Fails the given shares of requests from now on: `slow_down` with `503
    /// SlowDown`, `reset` with a connection reset. Each must be within `0..=1`
    /// and together at most 1. Restarts the rate accounting, so with a rate of
    /// `1/k` exactly every k-th request from now on fails.
    pub fn set_rates(&self, slow_down: f64, reset: f64) -> Result<()> {
        let valid = |rate: f64| (0.0..=1.0).contains(&rate);
        if !valid(slow_down) || !valid(reset) || slow_down + reset > 1.0 + f64::EPSILON {
            return Err(HarnessError::InvalidFaultRates { slow_down, reset });
        }
        let mut state = self.shared.lock();
        state.plan.slow_down_ppm = (slow_down * PPM as f64).round() as i64;
        state.plan.reset_ppm = (reset * PPM as f64).round() as i64;
        state.plan.slow_down_credit = 0;
        state.plan.reset_credit = 0;
        Ok(())
    }

    /// Fails the next `count` requests with `fault`, before any rate applies.
    pub fn fail_next(&self, fault: Fault, count: usize) {
        let mut state = self.shared.lock();
        state.plan.queued.extend(std::iter::repeat_n(fault, count));
    }

    /// Stops injecting faults: drops queued faults and sets both rates to zero.
    pub fn clear(&self) {
        self.shared.lock().plan = FaultPlan::default();
    }

    /// Counters of what the proxy has done since it started.
    pub fn stats(&self) -> ProxyStats {
        self.shared.lock().stats
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // Drops every task, closing the listener and all connections; unlike
        // dropping the runtime, this is allowed inside an async test.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            Err(error) => {
                // E.g. out of file descriptors: back off rather than spin.
                tracing::warn!(%error, "fault proxy failed to accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let handled =
                tokio::time::timeout(CONNECTION_LIFETIME, handle(client, upstream, &shared)).await;
            match handled {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::debug!(%error, "fault proxy connection failed"),
                Err(_) => tracing::debug!("fault proxy connection outlived its limit"),
            }
            drop(slot);
        });
    }
}

async fn handle(mut client: TcpStream, upstream: SocketAddr, shared: &Shared) -> io::Result<()> {
    let head = tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut client))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no request head in time"))??;
    // A client closing an idle connection sends no request at all.
    let Some(RequestHead { head, early_body }) = head else {
        return Ok(());
    };
    let fault = {
        let mut state = shared.lock();
        state.stats.requests += 1;
        let fault = state.plan.next_fault();
        match fault {
            None => state.stats.forwarded += 1,
            Some(Fault::SlowDown) => state.stats.slow_downs += 1,
            Some(Fault::Reset) => state.stats.resets += 1,
        }
        fault
    };
    match fault {
        None => forward(client, upstream, &head, &early_body).await,
        Some(Fault::SlowDown) => {
            tracing::debug!(request = %request_line(&head), "injecting 503 SlowDown");
            client
                .write_all(&slow_down_response(is_head_request(&head)))
                .await?;
            client.shutdown().await?;
            drain(client).await
        }
        Some(Fault::Reset) => {
            tracing::debug!(request = %request_line(&head), "injecting connection reset");
            // Closing with a zero linger time sends RST instead of FIN.
            client.set_zero_linger()?;
            drop(client);
            Ok(())
        }
    }
}

/// A request head (through the blank line) and any body bytes read with it.
struct RequestHead {
    head: Vec<u8>,
    early_body: Vec<u8>,
}

async fn read_head(stream: &mut TcpStream) -> io::Result<Option<RequestHead>> {
    let mut buffer = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            if buffer.is_empty() {
                return Ok(None);
            }
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        // The terminator may straddle two reads.
        let search_from = buffer.len().saturating_sub(3);
        buffer.extend_from_slice(&chunk[..read]);
        if let Some(at) = find(&buffer[search_from..], b"\r\n\r\n") {
            let early_body = buffer.split_off(search_from + at + 4);
            return Ok(Some(RequestHead {
                head: buffer,
                early_body,
            }));
        }
        if buffer.len() > MAX_HEAD_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request head too large",
            ));
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

async fn forward(
    mut client: TcpStream,
    upstream: SocketAddr,
    head: &[u8],
    early_body: &[u8],
) -> io::Result<()> {
    let mut server = TcpStream::connect(upstream).await?;
    server.write_all(&close_after_response(head)).await?;
    server.write_all(early_body).await?;
    tokio::io::copy_bidirectional(&mut client, &mut server).await?;
    Ok(())
}

/// Reads and discards what the client still sends, within limits, so that the
/// kernel closes the connection with FIN rather than RST.
async fn drain(client: TcpStream) -> io::Result<()> {
    let mut limited = client.take(DRAIN_LIMIT_BYTES);
    // Running out of time or bytes just means closing anyway.
    let _ = tokio::time::timeout(
        DRAIN_TIMEOUT,
        tokio::io::copy(&mut limited, &mut tokio::io::sink()),
    )
    .await;
    Ok(())
}

/// `head` with its connection-management headers replaced by `Connection: close`.
fn close_after_response(head: &[u8]) -> Vec<u8> {
    let mut rewritten = Vec::with_capacity(head.len() + 32);
    let lines = head
        .split(|byte| *byte == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| !line.is_empty());
    for (index, line) in lines.enumerate() {
        let is_connection_header = index > 0 && {
            let name = line.split(|byte| *byte == b':').next().unwrap_or_default();
            let name = name.trim_ascii();
            name.eq_ignore_ascii_case(b"connection")
                || name.eq_ignore_ascii_case(b"keep-alive")
                || name.eq_ignore_ascii_case(b"proxy-connection")
        };
        if !is_connection_header {
            rewritten.extend_from_slice(line);
            rewritten.extend_from_slice(b"\r\n");
        }
    }
    rewritten.extend_from_slice(b"Connection: close\r\n\r\n");
    rewritten
}

fn request_line(head: &[u8]) -> String {
    let line = head.split(|byte| *byte == b'\r').next().unwrap_or_default();
    String::from_utf8_lossy(line).into_owned()
}

fn is_head_request(head: &[u8]) -> bool {
    head.starts_with(b"HEAD ")
}

/// The response S3 gives when throttling. HEAD responses carry no body.
fn slow_down_response(for_head: bool) -> Vec<u8> {
    const BODY: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
        <Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message>\
        <RequestId>quarry-fault-proxy</RequestId></Error>";
    let body = if for_head { "" } else { BODY };
    format!(
        "HTTP/1.1 503 Service Unavailable\r\n\
         Content-Type: application/xml\r\n\
         Content-Length: {}\r\n\
         x-amz-request-id: quarry-fault-proxy\r\n\
         Connection: close\r\n\
         \r\n\
         {body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_headers_are_replaced_by_close() {
        let head =
            b"GET /bucket/key HTTP/1.1\r\nHost: 127.0.0.1:9000\r\nConnection: keep-alive\r\n\
                     keep-alive: timeout=5\r\nx-amz-date: 20260101T000000Z\r\n\r\n";
        let rewritten = String::from_utf8(close_after_response(head)).unwrap();
        assert_eq!(
            rewritten,
            "GET /bucket/key HTTP/1.1\r\nHost: 127.0.0.1:9000\r\n\
             x-amz-date: 20260101T000000Z\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn rates_fail_an_exact_share_of_requests() {
        let mut plan = FaultPlan {
            slow_down_ppm: PPM / 4,
            reset_ppm: PPM / 4,
            ..FaultPlan::default()
        };
        let faults: Vec<Option<Fault>> = (0..8).map(|_| plan.next_fault()).collect();
        let count = |wanted: Fault| faults.iter().filter(|f| **f == Some(wanted)).count();
        assert_eq!(count(Fault::SlowDown), 2);
        assert_eq!(count(Fault::Reset), 2);
        assert_eq!(faults.iter().filter(|f| f.is_none()).count(), 4);

        let mut always = FaultPlan {
            slow_down_ppm: PPM / 2,
            reset_ppm: PPM / 2,
            ..FaultPlan::default()
        };
        let faults: Vec<Option<Fault>> = (0..4).map(|_| always.next_fault()).collect();
        assert_eq!(
            faults,
            [Fault::SlowDown, Fault::Reset, Fault::SlowDown, Fault::Reset].map(Some)
        );
    }

    #[test]
    fn queued_faults_come_before_rates() {
        let mut plan = FaultPlan {
            slow_down_ppm: PPM,
            ..FaultPlan::default()
        };
        plan.queued.extend([Fault::Reset, Fault::Reset]);
        assert_eq!(plan.next_fault(), Some(Fault::Reset));
        assert_eq!(plan.next_fault(), Some(Fault::Reset));
        assert_eq!(plan.next_fault(), Some(Fault::SlowDown));
    }

    #[test]
    fn slow_down_looks_like_s3_throttling() {
        let response = String::from_utf8(slow_down_response(false)).unwrap();
        assert!(response.starts_with("HTTP/1.1 503 "));
        assert!(response.contains("<Code>SlowDown</Code>"));
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        let head_response = String::from_utf8(slow_down_response(true)).unwrap();
        assert!(head_response.ends_with("Content-Length: 0\r\nx-amz-request-id: quarry-fault-proxy\r\nConnection: close\r\n\r\n"));
    }

    #[test]
    fn out_of_range_rates_are_refused() {
        let proxy = FaultProxy::start("127.0.0.1:9".parse().unwrap()).unwrap();
        assert!(proxy.set_rates(0.6, 0.6).is_err());
        assert!(proxy.set_rates(-0.1, 0.0).is_err());
        assert!(proxy.set_rates(0.0, 1.5).is_err());
        assert!(proxy.set_rates(0.5, 0.5).is_ok());
    }
}
