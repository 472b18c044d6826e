//! Command process groups that die with the process that started them.
//!
//! Each command runs in a process group of its own. Its first process asks
//! the kernel for SIGKILL when the thread that started it ends
//! (`PR_SET_PDEATHSIG`, set in [`crate::run`]), but the processes it starts
//! in turn do not inherit that request: a `sh -c 'sleep 5; echo done'`
//! killed that way leaves its `sleep` behind. So every process that runs
//! commands also has a *reaper*: a small child forked once, on the first
//! command, that leads a process group of its own and is told over a pipe
//! which command groups are alive. However this process ends (exit, panic,
//! `kill -9`), the kernel closes the pipe's write end; the reaper reads
//! end-of-file, kills every group still alive with SIGKILL and exits. A task
//! requeued after its worker died therefore never runs beside a survivor of
//! its earlier attempt.
//!
//! The reaper is forked from a multi-threaded process, so until it exits it
//! makes only async-signal-safe system calls (no allocation, no locks):
//! everything it needs, including its table of live groups, is allocated
//! before the fork.

use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::{fork, pipe2, ForkResult, Pid};
use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// A group started: the record's second word is its id.
const STARTED: i32 = 1;
/// A group ended (it was killed): the record's second word is its id.
const ENDED: i32 = 2;
/// Bytes in one record on the pipe: an operation and a group id. Far below
/// `PIPE_BUF`, so writes from several threads never interleave.
const RECORD: usize = 8;
/// Most groups the reaper tracks at once. A worker runs at most one command
/// per slot; this leaves room for many in-process workers.
const CAPACITY: usize = 4096;
/// The file descriptor the reaper reads its pipe from.
const PIPE_FD: RawFd = 3;

/// The process's reaper and the groups it was told about.
struct State {
    /// The pipe to the running reaper, if one was started.
    reaper: Option<Running>,
    /// Groups started and not yet ended, to tell a replacement reaper.
    live: BTreeSet<i32>,
}

struct Running {
    pipe: File,
    pid: Pid,
}

static STATE: Mutex<State> = Mutex::new(State {
    reaper: None,
    live: BTreeSet::new(),
});

fn state() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Asks the reaper to kill the group `pgid` if this process dies before
/// [`forget`] is called for it. Starts the reaper on first use. A reaper that
/// cannot be started is logged, and the command runs anyway: its first
/// process still dies with this process's thread.
pub(crate) fn watch(pgid: Pid) {
    let mut state = state();
    state.live.insert(pgid.as_raw());
    send(&mut state, STARTED, pgid.as_raw());
}

/// Tells the reaper that the group `pgid` is gone (it was killed).
pub(crate) fn forget(pgid: Pid) {
    let mut state = state();
    if state.live.remove(&pgid.as_raw()) {
        send(&mut state, ENDED, pgid.as_raw());
    }
}

/// Writes one record, starting (or restarting) the reaper when needed.
fn send(state: &mut State, op: i32, pgid: i32) {
    let record = encode(op, pgid);
    if let Some(running) = &mut state.reaper {
        if running.pipe.write_all(&record).is_ok() {
            return;
        }
        // The reaper is gone (someone killed it): collect it, start another
        // and tell it every group still alive, this one included.
        tracing::warn!(pid = %running.pid, "the command reaper died; starting another");
        let _ = waitpid(running.pid, Some(WaitPidFlag::WNOHANG));
        state.reaper = None;
    }
    match start() {
        Ok(mut running) => {
            let replayed = state.live.iter().map(|&g| encode(STARTED, g));
            let all: Vec<u8> = if op == STARTED {
                replayed.flatten().collect()
            } else {
                replayed.chain([record]).flatten().collect()
            };
            match running.pipe.write_all(&all) {
                Ok(()) => state.reaper = Some(running),
                Err(e) => tracing::warn!(
                    "cannot reach the new command reaper ({e}); commands may outlive this process"
                ),
            }
        }
        Err(e) => tracing::warn!(
            "cannot start the command reaper ({e}); the children of a command may outlive \
             this process if it is killed"
        ),
    }
}

fn encode(op: i32, pgid: i32) -> [u8; RECORD] {
    let mut record = [0u8; RECORD];
    record[..4].copy_from_slice(&op.to_ne_bytes());
    record[4..].copy_from_slice(&pgid.to_ne_bytes());
    record
}

/// Forks the reaper and returns the write end of its pipe.
fn start() -> io::Result<Running> {
    // Close-on-exec: commands started later must not hold the write end, or
    // the reaper would not see end-of-file while they live.
    let (read, write) = pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    // Everything the reaper touches is allocated here, before the fork.
    let mut table = vec![0i32; CAPACITY];
    // SAFETY: the child runs `reaper_main`, which makes only
    // async-signal-safe system calls and never returns, so no lock or
    // allocator state copied from other threads is ever used.
    match unsafe { fork() }? {
        ForkResult::Child => reaper_main(read.as_raw_fd(), &mut table),
        ForkResult::Parent { child } => {
            drop(read);
            tracing::debug!(pid = %child, "command reaper started");
            Ok(Running {
                pipe: File::from(write),
                pid: child,
            })
        }
    }
}

/// The reaper's whole life: detach, read records until end-of-file, kill
/// what is left, exit.
fn reaper_main(read_fd: RawFd, table: &mut [i32]) -> ! {
    // SAFETY: plain system calls on descriptors this process owns; see the
    // module documentation for why nothing else is called.
    unsafe {
        // Out of the parent's process group, so a signal sent to that group
        // (a terminal's Ctrl-C, `kill -- -PGID`) leaves the reaper to act.
        libc::setpgid(0, 0);
        for signal in [
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGHUP,
            libc::SIGQUIT,
            libc::SIGPIPE,
            libc::SIGUSR1,
            libc::SIGUSR2,
        ] {
            libc::signal(signal, libc::SIG_IGN);
        }
        // Keep only the pipe's read end (as descriptor 3): above all not the
        // write end, whose last copy must be the parent's.
        if read_fd != PIPE_FD && libc::dup2(read_fd, PIPE_FD) < 0 {
            libc::_exit(1);
        }
        close_from(PIPE_FD + 1);
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
            if null > PIPE_FD {
                libc::close(null);
            }
        }
        let mut buffer = [0u8; 64 * RECORD];
        let mut held = 0;
        loop {
            let n = libc::read(
                PIPE_FD,
                buffer[held..].as_mut_ptr().cast(),
                buffer.len() - held,
            );
            if n == 0 {
                break;
            }
            if n < 0 {
                if *libc::__errno_location() == libc::EINTR {
                    continue;
                }
                break;
            }
            held += n as usize;
            let whole = held - held % RECORD;
            for record in buffer[..whole].chunks_exact(RECORD) {
                let op = i32::from_ne_bytes([record[0], record[1], record[2], record[3]]);
                let pgid = i32::from_ne_bytes([record[4], record[5], record[6], record[7]]);
                apply(table, op, pgid);
            }
            buffer.copy_within(whole..held, 0);
            held -= whole;
        }
        for &pgid in table.iter() {
            if pgid > 0 {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
        libc::_exit(0)
    }
}

/// Records a group as started or ended in the reaper's fixed table.
fn apply(table: &mut [i32], op: i32, pgid: i32) {
    if pgid <= 0 {
        return;
    }
    let wanted = if op == STARTED {
        0
    } else if op == ENDED {
        pgid
    } else {
        return;
    };
    if let Some(slot) = table.iter_mut().find(|slot| **slot == wanted) {
        *slot = if op == STARTED { pgid } else { 0 };
    }
}

/// Closes every descriptor from `first` up.
///
/// # Safety
/// Only for the reaper, after the fork: nothing else in it uses them.
unsafe fn close_from(first: RawFd) {
    // close_range(2) where the kernel has it (5.9 and later).
    if libc::syscall(libc::SYS_close_range, first as u32, u32::MAX, 0u32) == 0 {
        return;
    }
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    let top = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
        limit.rlim_cur.min(1 << 20) as RawFd
    } else {
        1024
    };
    for fd in first..top {
        libc::close(fd);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_holds_started_groups_until_they_end() {
        let mut table = [0i32; 3];
        apply(&mut table, STARTED, 10);
        apply(&mut table, STARTED, 11);
        apply(&mut table, ENDED, 10);
        apply(&mut table, STARTED, 12);
        apply(&mut table, ENDED, 99);
        apply(&mut table, 7, 13);
        apply(&mut table, STARTED, -4);
        let mut live: Vec<i32> = table.iter().copied().filter(|&g| g > 0).collect();
        live.sort();
        assert_eq!(live, [11, 12]);
    }

    #[test]
    fn records_round_trip() {
        let record = encode(ENDED, 4242);
        assert_eq!(i32::from_ne_bytes(record[..4].try_into().unwrap()), ENDED);
        assert_eq!(i32::from_ne_bytes(record[4..].try_into().unwrap()), 4242);
    }
}
