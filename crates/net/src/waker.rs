use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};

/// Wakes an I/O thread blocked in `zmq::poll` when tokio tasks queue
/// outgoing messages: the thread polls the read end of a socket pair next
/// to its ZeroMQ socket.
///
/// Only the first wake-up after a drain writes to the pipe: a burst of
/// messages costs one system call, not one per message.
#[derive(Debug)]
pub(crate) struct Waker {
    write: UnixStream,
    read: UnixStream,
    signalled: AtomicBool,
}

impl Waker {
    pub(crate) fn new() -> std::io::Result<Waker> {
        let (write, read) = UnixStream::pair()?;
        write.set_nonblocking(true)?;
        read.set_nonblocking(true)?;
        Ok(Waker {
            write,
            read,
            signalled: AtomicBool::new(false),
        })
    }

    /// Wakes the poller. A full pipe already means "wake up", so a
    /// `WouldBlock` is fine to ignore.
    pub(crate) fn wake(&self) {
        if !self.signalled.swap(true, Ordering::AcqRel) {
            let _ = (&self.write).write(&[1]);
        }
    }

    /// Empties the pipe after a wake-up, then re-arms. The I/O thread must
    /// call this before it drains its message channel: a message queued
    /// before the re-arm is seen by that drain, and one queued after it
    /// writes a fresh wake-up. (Re-arming before emptying the pipe could
    /// swallow that fresh byte and leave the flag set with an empty pipe.)
    pub(crate) fn drain(&self) {
        let mut buf = [0u8; 256];
        while let Ok(n) = (&self.read).read(&mut buf) {
            if n < buf.len() {
                break;
            }
        }
        self.signalled.store(false, Ordering::Release);
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }
}
