//! Process groups that die with the thread (and the process) that started
//! them: what command attempts run in, and what other long-lived children
//! of a worker (its Python interpreters) reuse through
//! [`spawn_in_group_without_fork`].

use crate::reaper;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::io;
use tokio::process::{Child, Command};

/// Kills a process group when told to, and when dropped (so that dropping
/// whatever owns it leaves no process behind); until then the process's
/// reaper kills it if this process dies.
#[derive(Debug)]
pub struct ProcessGroup {
    pgid: Option<Pid>,
}

impl ProcessGroup {
    /// Watches the group `pgid` (the id of its first process); `None` (a
    /// child that already exited) watches nothing.
    pub(crate) fn new(pgid: Option<Pid>) -> ProcessGroup {
        if let Some(pgid) = pgid {
            reaper::watch(pgid);
        }
        ProcessGroup { pgid }
    }

    /// The group's id, while it was not killed.
    pub fn id(&self) -> Option<i32> {
        self.pgid.map(Pid::as_raw)
    }

    /// Kills the group once; later calls (and the drop) do nothing, so a
    /// process group id that the system reuses later is never signalled.
    pub fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            // ESRCH (the group is already gone) is the expected case after a
            // clean exit.
            let _ = killpg(pgid, Signal::SIGKILL);
            reaper::forget(pgid);
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Spawns `command` as the first process of a new process group that dies
/// with this process (the reaper) and when the returned [`ProcessGroup`] is
/// dropped or killed. No code runs in the child before `exec` (unlike a
/// command attempt's `PR_SET_PDEATHSIG` hook), so that it is started with
/// `posix_spawn` rather than `fork`. Forking a process that hosts other libraries' threads runs
/// their fork handlers, and OpenBLAS's (loaded by numpy in a Python process
/// that embeds a cluster) can hang there for good. The child must then
/// arrange to die with its parent thread itself: it is told the parent's
/// pid in `QUARRY_PARENT_PID`, sets `PR_SET_PDEATHSIG` and exits if its
/// parent is already another process (as the worker's Python bootstrap
/// does). The group still dies with the reaper and the returned
/// [`ProcessGroup`].
pub fn spawn_in_group_without_fork(command: &mut Command) -> io::Result<(Child, ProcessGroup)> {
    command
        .process_group(0)
        .kill_on_drop(true)
        .env(PARENT_PID_ENV, std::process::id().to_string());
    let child = command.spawn()?;
    let group = ProcessGroup::new(child.id().map(|pid| Pid::from_raw(pid as i32)));
    Ok((child, group))
}

/// Where [`spawn_in_group_without_fork`] tells the child its parent's pid.
pub const PARENT_PID_ENV: &str = "QUARRY_PARENT_PID";

/// Makes the command's first process die (SIGKILL) when the thread that
/// starts it ends, which happens at the latest when this process dies. The
/// thread is the one awaiting the attempt, and it waits for the command's
/// end (or kills it) before it can finish.
pub(crate) fn die_with_this_thread(command: &mut Command) {
    let parent = std::process::id();
    // SAFETY: the closure runs between fork and exec, where only
    // async-signal-safe calls are allowed: prctl and getppid are plain
    // system calls, and the error is built from a raw code without
    // allocating.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            // The parent may have died between the fork and the prctl; no
            // signal would then ever come, so do not run at all.
            if nix::unistd::getppid().as_raw() as u32 != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}
