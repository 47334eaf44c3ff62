//! Processes under test: a binary run in the background with its output
//! read on threads, signals, and waits on events (a stderr line, a
//! condition, a process's death), each bounded so that a regression fails
//! instead of hanging.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long any awaited event may take before the test fails. It only turns
/// a hang into a failure: no test asserts that something is fast.
pub const BOUND: Duration = Duration::from_secs(20);

/// A process running in the background: stdout collected, stderr read line
/// by line. Killed when dropped, whatever the test's outcome.
pub struct Spawned {
    child: Child,
    stdout: Option<JoinHandle<String>>,
    lines: mpsc::Receiver<String>,
    /// The stderr lines read so far.
    pub seen: Vec<String>,
}

impl Spawned {
    /// Starts `command` with stdin closed and stdout and stderr piped.
    pub fn start(mut command: Command) -> Spawned {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the process under test");
        let mut out = child.stdout.take().expect("stdout");
        let stdout = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = out.read_to_string(&mut text);
            text
        });
        let err = child.stderr.take().expect("stderr");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Spawned {
            child,
            stdout: Some(stdout),
            lines,
            seen: Vec::new(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends signal `name` (`TERM`, `INT`, ...).
    pub fn signal(&self, name: &str) {
        signal(&self.pid().to_string(), name);
    }

    /// Waits for a stderr line containing `text`; returns it.
    pub async fn wait_for_line(&mut self, text: &str) -> String {
        let start = Instant::now();
        while start.elapsed() < BOUND {
            while let Ok(line) = self.lines.try_recv() {
                self.seen.push(line.clone());
                if line.contains(text) {
                    return line;
                }
            }
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                // Exited: whatever it printed is in the channel now.
                self.seen.extend(self.lines.try_iter());
                if let Some(line) = self.seen.iter().find(|l| l.contains(text)) {
                    return line.clone();
                }
                panic!(
                    "exited without a stderr line with {text:?}: {:?}",
                    self.seen
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no stderr line with {text:?}: {:?}", self.seen);
    }

    /// Waits for the process to exit (killing it past the bound); returns its
    /// status, its stdout and its whole stderr.
    pub async fn exit(mut self) -> (ExitStatus, String, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if start.elapsed() > BOUND {
                let _ = self.child.kill();
                let _ = self.child.wait();
                self.seen.extend(self.lines.try_iter());
                panic!("the process did not exit: {:?}", self.seen);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        // The reader threads end at EOF, once the process (and anything
        // holding its pipes) is gone.
        while let Ok(line) = self.lines.recv_timeout(BOUND) {
            self.seen.push(line);
        }
        let stdout = self
            .stdout
            .take()
            .map(|reader| reader.join().expect("stdout reader"))
            .unwrap_or_default();
        (status, stdout, self.seen.join("\n"))
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends signal `name` to process `pid`.
pub fn signal(pid: &str, name: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{name}"), pid])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -{name} {pid} failed");
}

/// Waits until `ready` holds, polling; fails past the bound.
pub async fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < BOUND, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet).
pub fn is_dead(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

/// The pid a program wrote into `file`, once it is whole (ends with a
/// newline).
pub fn read_pid(file: &Path) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    let pid = text.trim();
    (!pid.is_empty() && text.ends_with('\n')).then(|| pid.to_owned())
}

/// Kills a leftover process when the test ends, whatever its outcome.
pub struct Reap(pub Option<String>);

impl Drop for Reap {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take() {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
    }
}
