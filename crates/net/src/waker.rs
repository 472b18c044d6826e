use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;

/// Wakes an I/O thread blocked in `zmq::poll` when tokio tasks queue
/// outgoing messages: the thread polls the read end of a socket pair next
/// to its ZeroMQ socket.
#[derive(Debug)]
pub(crate) struct Waker {
    write: UnixStream,
    read: UnixStream,
}

impl Waker {
    pub(crate) fn new() -> std::io::Result<Waker> {
        let (write, read) = UnixStream::pair()?;
        write.set_nonblocking(true)?;
        read.set_nonblocking(true)?;
        Ok(Waker { write, read })
    }

    /// Wakes the poller. A full pipe already means "wake up", so a
    /// `WouldBlock` is fine to ignore.
    pub(crate) fn wake(&self) {
        let _ = (&self.write).write(&[1]);
    }

    /// Empties the pipe after a wake-up.
    pub(crate) fn drain(&self) {
        let mut buf = [0u8; 256];
        while let Ok(n) = (&self.read).read(&mut buf) {
            if n < buf.len() {
                break;
            }
        }
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }
}
