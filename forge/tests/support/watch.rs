//! `cargo lambda watch` (the Lambda runtime emulator of cargo-lambda)
//! running `forge-lambda` on a free loopback port: shared by the tests
//! that need the real function (`#[path = "support/watch.rs"] mod watch;`).
//!
//! [`Watch::start`] gives `None` (the test is skipped, with a note on
//! stderr) when `cargo-lambda` is not on `PATH`, unless
//! `FORGE_REQUIRE_CARGO_LAMBDA=1` (as `.ci/run` sets) makes it a failure.
#![allow(dead_code)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use crate::support::{gateway_answer, lambda_fixture};

/// The environment variable that turns a missing cargo-lambda into a failure.
const REQUIRE: &str = "FORGE_REQUIRE_CARGO_LAMBDA";
/// Variables of the test's own environment that would otherwise reach the
/// function (cargo-lambda passes its environment on).
pub const HOST_ENV: &[&str] = &[
    "ALQUIMIA_BASE_URL",
    "ALQUIMIA_API_KEY",
    "LLM_API_KEY",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "FORGE_ALLOWED_HOSTS",
    "FORGE_CONCURRENCY",
];

/// The first invocation waits for cargo-lambda to compile the function.
pub const FIRST_INVOCATION: Duration = Duration::from_secs(600);
/// A deadline that turns a hung invocation (or a hung stop) into a failure.
pub const DEADLINE: Duration = Duration::from_secs(120);

/// `cargo lambda watch --features lambda` on a free loopback port, its
/// output in a log file, in a process group of its own.
pub struct Watch {
    child: tokio::process::Child,
    group: Pid,
    port: u16,
    log: PathBuf,
    dir: tempfile::TempDir,
    client: reqwest::Client,
    stopped: bool,
}

impl Watch {
    /// Starts the emulator with `env` for the function, and waits for its
    /// Invoke API to listen. `None` (the test is skipped) when cargo-lambda
    /// is not installed and not required.
    pub async fn start(env: &[(&str, String)]) -> Option<Watch> {
        Watch::start_with(env, &[]).await
    }

    /// The Invoke API's URL: what `--lambda-endpoint` takes.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// [`Watch::start`] with more arguments for `cargo lambda watch`
    /// (`--concurrency N`, `--timeout SECONDS`).
    pub async fn start_with(env: &[(&str, String)], args: &[&str]) -> Option<Watch> {
        if !cargo_lambda_installed() {
            return None;
        }
        // A port taken between our probe and cargo-lambda's bind: try again.
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("temp dir");
            let log = dir.path().join("watch.log");
            let port = free_port();
            let output = std::fs::File::create(&log).expect("log file");
            let child = watch_command(port, env, args, output)
                .spawn()
                .expect("spawn cargo");
            let group = Pid::from_raw(child.id().expect("pid") as i32);
            let mut watch = Watch {
                child,
                group,
                port,
                log,
                dir,
                client: reqwest::Client::new(),
                stopped: false,
            };
            if watch.listening().await {
                return Some(watch);
            }
            watch.stopped = true;
            assert!(
                watch.output().contains("in use"),
                "cargo lambda watch exited:\n{}",
                watch.output()
            );
        }
        panic!("cargo lambda watch found no free port");
    }

    /// Whether the Invoke API accepts connections; false when the emulator
    /// exited first.
    async fn listening(&mut self) -> bool {
        let deadline = Instant::now() + FIRST_INVOCATION;
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return true;
            }
            if self.child.try_wait().expect("try_wait").is_some() {
                return false;
            }
            assert!(
                Instant::now() < deadline,
                "cargo lambda watch did not listen:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The first invocation, which waits for the function to be built.
    pub async fn warm_up(&self) {
        let (status, _, body) = self
            .invoke(&lambda_fixture("invalid-json.json", ""), FIRST_INVOCATION)
            .await;
        assert_eq!(status, 400, "{body}");
    }

    /// Invokes the function over the Invoke API; its `statusCode`,
    /// `headers` and `body` (parsed).
    pub async fn invoke(&self, event: &Value, deadline: Duration) -> (i64, Value, Value) {
        let url = format!(
            "http://127.0.0.1:{}/2015-03-31/functions/forge-lambda/invocations",
            self.port
        );
        let response = self
            .client
            .post(&url)
            .json(event)
            .timeout(deadline)
            .send()
            .await
            .unwrap_or_else(|e| panic!("invoke: {e}\n{}", self.output()));
        let status = response.status();
        let text = response.text().await.expect("invoke response");
        assert!(status.is_success(), "{status}: {text}\n{}", self.output());
        parse_response(&text)
    }

    /// Invokes the function as the README does: `cargo lambda invoke
    /// forge-lambda --data-file <file>`.
    pub async fn invoke_cli(&self, event: &Value) -> (i64, Value, Value) {
        let file = self.dir.path().join("event.json");
        std::fs::write(&file, event.to_string()).expect("event file");
        let mut command = tokio::process::Command::new(cargo());
        command
            .args(["lambda", "invoke", "forge-lambda"])
            .args(["--invoke-address", "127.0.0.1"])
            .args(["--invoke-port", &self.port.to_string()])
            .arg("--data-file")
            .arg(&file)
            .args(["--output-format", "json"])
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let output = tokio::time::timeout(DEADLINE, command.output())
            .await
            .expect("cargo lambda invoke did not finish")
            .expect("cargo lambda invoke");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "cargo lambda invoke: {}\n{stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        parse_response(&stdout)
    }

    /// Stops the emulator as Ctrl-C would (SIGTERM to its group), and
    /// checks that it and the function it started exit.
    pub async fn stop(mut self) {
        let function = descendants(self.group);
        let _ = signal::killpg(self.group, Signal::SIGTERM);
        let exited = tokio::time::timeout(DEADLINE, self.child.wait()).await;
        self.stopped = true;
        if exited.is_err() {
            let _ = signal::killpg(self.group, Signal::SIGKILL);
            panic!("cargo lambda watch ignored SIGTERM:\n{}", self.output());
        }
        let deadline = Instant::now() + DEADLINE;
        while let Some(&pid) = function.iter().find(|&&pid| alive(pid)) {
            if Instant::now() > deadline {
                let _ = signal::kill(pid, Signal::SIGKILL);
                panic!("process {pid} outlived cargo lambda watch");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Watch {
    /// A test that failed leaves no process behind.
    fn drop(&mut self) {
        if !self.stopped {
            for pid in descendants(self.group) {
                let _ = signal::kill(pid, Signal::SIGKILL);
            }
            let _ = signal::killpg(self.group, Signal::SIGKILL);
            // Reaped here rather than left to exit after the test binary.
            for _ in 0..500 {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// The README's `cargo lambda watch --features lambda`, run from the
/// workspace root and building into the target dir of this test.
fn watch_command(
    port: u16,
    env: &[(&str, String)],
    args: &[&str],
    log: std::fs::File,
) -> tokio::process::Command {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let mut command = tokio::process::Command::new(cargo());
    command
        .current_dir(workspace)
        .args([
            "lambda",
            "watch",
            "--features",
            "lambda",
            "--ignore-changes",
        ])
        .args(["--invoke-address", "127.0.0.1"])
        .args(["--invoke-port", &port.to_string()])
        .args(args)
        // Not `--target-dir`: cargo-lambda 1.9 passes it on to `cargo
        // metadata`, which rejects it.
        .env("CARGO_TARGET_DIR", target_dir());
    for (name, value) in env {
        command.arg("--env-var").arg(format!("{name}={value}"));
    }
    for name in HOST_ENV {
        command.env_remove(name);
    }
    // What cargo set for this test (`CARGO_PKG_NAME`, ...) would reach the
    // build scripts that cargo-lambda's build reruns on them (ring's), and
    // the two builds would rebuild each other's dependencies.
    for (name, _) in std::env::vars_os() {
        if is_per_crate_cargo_env(&name.to_string_lossy()) {
            command.env_remove(name);
        }
    }
    command
        .env("FORGE_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log file"))
        .stderr(log)
        .process_group(0);
    command
}

/// Whether cargo set `name` for this crate: `CARGO_PKG_*`,
/// `CARGO_MANIFEST_*`, `CARGO_CRATE_NAME`, ...
fn is_per_crate_cargo_env(name: &str) -> bool {
    name.starts_with("CARGO_PKG_")
        || name.starts_with("CARGO_MANIFEST_")
        || [
            "CARGO_CRATE_NAME",
            "CARGO_BIN_NAME",
            "CARGO_PRIMARY_PACKAGE",
            "CARGO_TARGET_TMPDIR",
            "CARGO_RUSTC_CURRENT_DIR",
            "OUT_DIR",
        ]
        .contains(&name)
}

/// Whether `cargo-lambda` is on `PATH`. When it is not: a note on stderr
/// and `false`, or a failure with `FORGE_REQUIRE_CARGO_LAMBDA=1`.
fn cargo_lambda_installed() -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join("cargo-lambda"))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    });
    if found {
        return true;
    }
    assert!(
        std::env::var(REQUIRE).as_deref() != Ok("1"),
        "cargo-lambda is not on PATH and {REQUIRE}=1: `pip install cargo-lambda`"
    );
    // Straight to stderr: the test harness captures `eprintln!`.
    let _ = writeln!(
        std::io::stderr(),
        "note: lambda_emulator skipped: cargo-lambda is not on PATH \
         (`pip install cargo-lambda`; {REQUIRE}=1 makes this a failure)"
    );
    false
}

/// The cargo that runs this test.
fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// The target dir this test was built in (`<target>/debug/forge`).
pub fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_forge"))
        .ancestors()
        .nth(2)
        .expect("target dir")
        .to_owned()
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
    listener.local_addr().expect("address").port()
}

/// The processes started by `group`'s leader and by its children, from
/// `/proc` (cargo-lambda runs the function in a session of its own).
fn descendants(group: Pid) -> Vec<Pid> {
    let mut parents = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|ppid| ppid.parse::<i32>().ok());
        if let Some(ppid) = ppid {
            parents.push((pid, ppid));
        }
    }
    let mut found = vec![group.as_raw()];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|&&(_, ppid)| ppid == parent)
                .map(|&(pid, _)| pid),
        );
        i += 1;
    }
    found.into_iter().skip(1).map(Pid::from_raw).collect()
}

/// Whether `pid` still runs (a zombie has exited).
fn alive(pid: Pid) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let (_, rest) = stat.rsplit_once(')')?;
            rest.split_whitespace().next().map(|state| state != "Z")
        })
        .unwrap_or(false)
}

/// `statusCode`, `headers` and the parsed `body` of a function's answer.
fn parse_response(text: &str) -> (i64, Value, Value) {
    let response: Value =
        serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"));
    gateway_answer(&response)
}
