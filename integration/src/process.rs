//! Child processes that never outlive the test that started them.
//!
//! Two mechanisms cover the two ways a test ends:
//! - normally or by panic: [`ChildGuard`]'s `Drop` kills the child's whole process
//!   group (the child is its own group leader, so helpers it forks die too);
//! - by the test process itself dying (SIGKILL, abort): the child asked the kernel
//!   for `PR_SET_PDEATHSIG(SIGKILL)` before `exec`.
//!
//! The kernel sends the parent-death signal when the *thread* that forked the child
//! exits, not the process. Test threads end with their test, and a server shared
//! between tests must outlive any one of them, so every child is forked from one
//! spawner thread that lives as long as the process.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::sync::mpsc;
use std::sync::OnceLock;

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::{getppid, Pid};

/// A request to the spawner thread: the command, and where to send the result.
struct SpawnRequest {
    command: Command,
    reply: mpsc::Sender<io::Result<Child>>,
}

/// The channel to the process-long spawner thread, started on first use.
fn spawner() -> &'static mpsc::Sender<SpawnRequest> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (sender, requests) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("quarry-harness-spawner".into())
            .spawn(move || {
                for mut request in requests {
                    // The caller may have given up waiting; the child then drops
                    // here and, like any unguarded child, is reaped by init.
                    let _ = request.reply.send(request.command.spawn());
                }
            })
            .expect("failed to start the harness's spawner thread");
        sender
    })
}

/// Configures `command` to lead its own process group and to die with the test
/// process, then forks it from the spawner thread.
fn spawn_tied(mut command: Command) -> io::Result<Child> {
    let parent = std::process::id();
    command.process_group(0);
    // SAFETY: the closure runs between fork and exec, so it may only make
    // async-signal-safe calls: prctl and getppid are plain system calls, and the
    // error paths build `io::Error`s from raw codes without allocating.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            // The parent may have died between fork and prctl; then no signal
            // will ever come, so refuse to run at all.
            if getppid().as_raw() as u32 != parent {
                return Err(io::Error::from_raw_os_error(Errno::ESRCH as i32));
            }
            Ok(())
        });
    }
    let (reply, result) = mpsc::channel();
    spawner()
        .send(SpawnRequest { command, reply })
        .map_err(|_| io::Error::other("the harness's spawner thread has stopped"))?;
    result
        .recv()
        .map_err(|_| io::Error::other("the harness's spawner thread has stopped"))?
}

/// A spawned process that is killed, with its whole process group, when the guard
/// drops. If the test process dies without dropping it, the kernel kills the child
/// (parent-death signal).
#[derive(Debug)]
pub struct ChildGuard {
    child: Child,
    /// Set once the child has been reaped, so `Drop` does not signal a pid that
    /// may since have been reused.
    exited: Option<ExitStatus>,
}

impl ChildGuard {
    /// Spawns `command` as the leader of a new process group, tied to the life of
    /// the test process. Configure stdio on `command` first; take the pipes with
    /// [`ChildGuard::child_mut`].
    pub fn spawn(command: Command) -> io::Result<ChildGuard> {
        let child = spawn_tied(command)?;
        tracing::debug!(pid = child.id(), "spawned guarded child");
        Ok(ChildGuard {
            child,
            exited: None,
        })
    }

    /// The child's process id, which is also its process group id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The underlying child, e.g. to take its stdout pipe.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Sends `signal` to the child's whole process group. Signalling a group that
    /// has already exited is not an error.
    pub fn signal_group(&self, signal: Signal) -> io::Result<()> {
        if self.exited.is_some() {
            return Ok(());
        }
        match killpg(self.pid(), signal) {
            Ok(()) | Err(Errno::ESRCH) => Ok(()),
            Err(errno) => Err(errno.into()),
        }
    }

    /// `kill -9` of the whole group, then waits for the child: what a crash looks
    /// like to its peers.
    pub fn kill(&mut self) -> io::Result<ExitStatus> {
        self.signal_group(Signal::SIGKILL)?;
        self.wait()
    }

    /// Waits for the child to exit.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.exited {
            return Ok(status);
        }
        let status = self.child.wait()?;
        self.exited = Some(status);
        Ok(status)
    }

    /// The child's exit status if it has exited, without blocking.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait()?;
        }
        Ok(self.exited)
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // An exited but unreaped leader still pins its group id, so the group is
        // killed even then; once reaped by `wait`, the id may belong to someone
        // else, so the guard leaves it alone.
        if self.exited.is_none() {
            if let Err(error) = self.kill() {
                tracing::warn!(pid = self.child.id(), %error, "failed to kill guarded child");
            }
        }
    }
}

/// Whether process `pid` is gone: no `/proc` entry, or a zombie (dead,
/// waiting for whichever ancestor adopted it to reap it).
pub fn process_is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            // The state follows the parenthesised command name.
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            state.starts_with('Z') || state.starts_with('X')
        }
    }
}
