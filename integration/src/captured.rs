//! Processes whose output tests read: stdout and stderr are read line by
//! line on threads of their own, so a test can wait for a line (a bound
//! address, a log message) and read everything the process printed.

use crate::ChildGuard;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A running process with its output captured; killed (with its process
/// group) when dropped, like a [`ChildGuard`].
pub struct CapturedProcess {
    name: String,
    guard: ChildGuard,
    output: Arc<Mutex<String>>,
    lines: mpsc::Receiver<String>,
    readers: Vec<JoinHandle<()>>,
    limit: Duration,
}

impl CapturedProcess {
    /// Starts `command` with stdin closed and its output captured. `limit`
    /// bounds every wait on it (a bound on setup, not an assertion).
    pub fn spawn(name: &str, mut command: Command, limit: Duration) -> io::Result<CapturedProcess> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut guard = ChildGuard::spawn(command)?;
        let output = Arc::new(Mutex::new(String::new()));
        let (tx, lines) = mpsc::channel();
        let child = guard.child_mut();
        let pipes: [Option<Box<dyn Read + Send>>; 2] = [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ];
        let readers = pipes
            .into_iter()
            .flatten()
            .map(|pipe| read_lines(pipe, output.clone(), tx.clone()))
            .collect();
        Ok(CapturedProcess {
            name: name.to_string(),
            guard,
            output,
            lines,
            readers,
            limit,
        })
    }

    /// Its process id (which is also its process group id).
    pub fn id(&self) -> u32 {
        self.guard.id()
    }

    /// Everything it printed so far, stdout and stderr interleaved by line.
    pub fn output(&self) -> String {
        self.output
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits for a line containing `needle` and returns it; panics with the
    /// output when none comes within the limit.
    pub fn wait_for_line(&self, needle: &str) -> String {
        let deadline = Instant::now() + self.limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "{} did not print `{needle}`; its output:\n{}",
                    self.name,
                    self.output()
                ),
            }
        }
    }

    /// For a `quarry scheduler`: waits for the line announcing where it
    /// listens and returns that endpoint.
    pub fn wait_for_scheduler_endpoint(&self) -> String {
        let line = self.wait_for_line("scheduler at ");
        line.trim_start_matches("scheduler at ").trim().to_string()
    }

    /// Its exit status if it has exited.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.guard.try_wait()
    }

    /// Panics, with the output, unless it is still running.
    pub fn assert_running(&mut self) {
        let status = self.try_wait().unwrap();
        assert!(
            status.is_none(),
            "{} exited ({status:?}); its output:\n{}",
            self.name,
            self.output()
        );
    }

    /// Waits for it to exit by itself, then for the rest of its output;
    /// panics, with the output, when it does not exit within the limit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + self.limit;
        let status = loop {
            if let Some(status) = self.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit; its output:\n{}",
                self.name,
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        self.join_readers();
        status
    }

    /// Kills it and returns everything it printed.
    pub fn stop(mut self) -> String {
        let _ = self.guard.kill();
        self.join_readers();
        self.output()
    }

    fn join_readers(&mut self) {
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }
}

/// Arguments of a `quarry worker` of `endpoint` with two slots, named
/// `name`, caching under `cache_root/name`.
pub fn worker_args(endpoint: &str, name: &str, cache_root: &Path) -> Vec<String> {
    vec![
        "worker".into(),
        endpoint.into(),
        "--nthreads".into(),
        "2".into(),
        "--name".into(),
        name.into(),
        "--cache-dir".into(),
        cache_root.join(name).display().to_string(),
    ]
}

fn read_lines(
    pipe: Box<dyn Read + Send>,
    output: Arc<Mutex<String>>,
    lines: mpsc::Sender<String>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
            let text = strip_ansi(&String::from_utf8_lossy(&line));
            output
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push_str(&text);
            let _ = lines.send(text.trim_end().to_string());
            line.clear();
        }
    })
}

/// `text` without ANSI colour sequences (`ESC [ … letter`), so that tests
/// can search log lines as plain text.
fn strip_ansi(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}
