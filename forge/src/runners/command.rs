//! `type: command` — a local program answers: the query goes to its stdin
//! (or into its arguments), its stdout is the answer.
//!
//! ```yaml
//! runner:
//!   type: command
//!   program: sh                       # a name on PATH, or a path (relative to the suite)
//!   args: [-c, "tr a-z A-Z"]          # placeholders are filled in each argument
//!   input: stdin                      # stdin (default) or arg
//!   env: {MODE: test}                 # extra environment variables
//!   cwd: scripts                      # working directory, relative to the suite
//!   timeout: 10s                      # the process is killed past it (default: none)
//!   retry_timeouts: false             # default: a killed turn is not run again
//! ```
//!
//! Placeholders `{query}`, `{session_id}`, `{qa_id}`, `{context}`,
//! `{assistant_id}`, `{language}` and `{turn}` are replaced (in one pass)
//! in every argument and every `env` value. With `input: stdin` the query is
//! written to the program's stdin, which is then closed; with `input: arg`
//! the query is the last argument unless an argument already holds
//! `{query}`. The child also gets `FORGE_SESSION_ID`, `FORGE_QA_ID`,
//! `FORGE_ASSISTANT_ID` and `FORGE_CONTEXT` (left out when the context is
//! over 64 KiB, so a large one cannot make the program fail to start; use
//! `{context}` on stdin-free programs with care for the same reason).
//!
//! The answer is stdout (UTF-8, invalid bytes replaced), without one
//! trailing newline. A non-zero exit (or death by a signal) is a permanent
//! failure carrying the end of stderr; so is an empty answer, and a program
//! that cannot be started names the program. Past `timeout` (or the suite's
//! timeout) the process is killed and the turn fails with a timeout, not
//! retried unless `retry_timeouts: true` (the program may have acted on the
//! turn).
//!
//! Output is bounded: stdout past [`STDOUT_LIMIT`] (32 MiB, the HTTP
//! runners' reply cap) fails the turn and kills the program; of stderr only
//! the last [`STDERR_KEEP`] bytes are kept, for the error message.
//!
//! On Unix the program runs in a process group of its own, and the group is
//! killed once the turn is over: on a timeout, on too much output, and once
//! the program has exited (what it left running dies with it). A child left
//! holding the program's stdout or stderr does not hold up the turn: after
//! the program exits its pipes get [`PIPE_GRACE`] to close, then the group
//! is killed and what was read is the output. When forge itself aborts (a
//! second Ctrl-C or SIGTERM), the groups of the programs still running are
//! killed before it exits.
//!
//! Placeholders are substituted into `args` verbatim: `sh -c "echo {query}"`
//! runs whatever shell syntax the query holds. Give the query on stdin, or
//! as an argument of its own (`args: ["{query}"]` to a program that is not a
//! shell, or `args: [-c, 'echo "$1"', sh, "{query}"]`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::http_util::{bytes_shown, JSON_BODY_LIMIT};
use super::template::{fill, placeholder};
use crate::duration::DurationValue;
use crate::error::{humanize, ConfigError, ErrorKind, RunError};
use crate::registry::{self, BuildContext, RunnerType};
use crate::runner::{Reply, Retry, Runner, Session};
use crate::schema::Batch;

/// The most of stderr quoted in an error message, in characters (its end).
pub const STDERR_CHARS: usize = 500;

/// The largest context passed in `FORGE_CONTEXT`, in bytes; a larger one is
/// left out (the environment's size is limited: spawning would fail).
pub const CONTEXT_ENV_LIMIT: usize = 64 * 1024;

/// The most a program may print on stdout, in bytes: more fails the turn
/// and kills the program. The HTTP runners' reply cap.
pub const STDOUT_LIMIT: usize = JSON_BODY_LIMIT;

/// How much of the end of stderr is kept, in bytes (the rest is read and
/// dropped).
pub const STDERR_KEEP: usize = 64 * 1024;

/// How long a program's pipes may stay open after it exited (held by
/// something it left running) before its process group is killed.
pub const PIPE_GRACE: Duration = Duration::from_millis(250);

/// Where the query goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Input {
    /// On the program's stdin.
    #[default]
    Stdin,
    /// As an argument: where an argument says `{query}`, else the last one.
    Arg,
}

/// The `command` runner's configuration, as written in a suite.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CommandConfig {
    /// The program to run (a path, or a name looked up in `PATH`).
    program: String,
    /// Its arguments; `{query}` and the other placeholders are filled.
    #[serde(default)]
    args: Vec<String>,
    /// Where the query goes: `stdin` (default) or `arg`.
    #[serde(default)]
    input: Input,
    /// Environment variables set for the program (values may hold keys).
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    env: BTreeMap<String, SecretString>,
    /// Its working directory, relative to the suite file.
    #[serde(default)]
    cwd: Option<PathBuf>,
    /// Time allowed per turn (the suite's `timeout` otherwise).
    #[serde(default)]
    timeout: Option<DurationValue>,
    /// Whether a turn that timed out is retried.
    #[serde(default)]
    retry_timeouts: bool,
}

/// The `command` runner. Build it from a suite's `runner: {type: command, ...}`
/// or with [`Command::from_value`]. Its `Debug` output hides `env` values.
#[derive(Debug)]
pub struct Command {
    program: PathBuf,
    args: Vec<String>,
    input: Input,
    /// Values may hold a key: they hide themselves from `Debug`.
    env: BTreeMap<String, SecretString>,
    cwd: Option<PathBuf>,
    timeout: Option<Duration>,
    retry: Retry,
}

/// The process groups of the programs running now, killed by
/// [`kill_running`]; `None` once forge is aborting.
#[cfg(unix)]
static RUNNING: std::sync::Mutex<Option<std::collections::BTreeSet<i32>>> =
    std::sync::Mutex::new(Some(std::collections::BTreeSet::new()));

#[cfg(unix)]
fn running() -> std::sync::MutexGuard<'static, Option<std::collections::BTreeSet<i32>>> {
    RUNNING.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(unix)]
fn kill_group(group: i32) {
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(group),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// Kills the process group of every program the `command` runner is running,
/// and of any started from now on: forge is about to exit.
pub(crate) fn kill_running() {
    #[cfg(unix)]
    for group in running().take().unwrap_or_default() {
        kill_group(group);
    }
}

/// A program's process group, killed when dropped: the turn's future
/// dropped on a timeout takes the program and everything it started with
/// it, and so does a turn that is over. Registered for [`kill_running`]
/// meanwhile.
#[cfg(unix)]
struct KillGroup(Option<i32>);

#[cfg(unix)]
impl KillGroup {
    fn new(child: &tokio::process::Child) -> Self {
        let Some(group) = child.id().and_then(|id| i32::try_from(id).ok()) else {
            return KillGroup(None);
        };
        match running().as_mut() {
            Some(groups) => {
                groups.insert(group);
            }
            // forge is aborting: this one goes too.
            None => kill_group(group),
        }
        KillGroup(Some(group))
    }
}

#[cfg(unix)]
impl Drop for KillGroup {
    fn drop(&mut self) {
        if let Some(group) = self.0.take() {
            kill_group(group);
            if let Some(groups) = running().as_mut() {
                groups.remove(&group);
            }
        }
    }
}

/// Why a program's output could not be taken.
enum OutputError {
    /// More than [`STDOUT_LIMIT`] bytes on stdout.
    TooLarge,
    /// Reading a pipe failed.
    Read(std::io::Error),
}

/// Reads `pipe` to its end into `into`, failing past `limit` bytes.
async fn read_capped(
    pipe: Option<impl AsyncRead + Unpin>,
    into: &mut Vec<u8>,
    limit: usize,
) -> Result<(), OutputError> {
    let Some(mut pipe) = pipe else { return Ok(()) };
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = pipe.read(&mut chunk).await.map_err(OutputError::Read)?;
        if n == 0 {
            return Ok(());
        }
        if n > limit - into.len() {
            return Err(OutputError::TooLarge);
        }
        into.extend_from_slice(&chunk[..n]);
    }
}

/// Reads `pipe` to its end, keeping its last `keep` bytes in `into`. A read
/// error ends it: stderr only explains a failure.
async fn read_tail(pipe: Option<impl AsyncRead + Unpin>, into: &mut Vec<u8>, keep: usize) {
    let Some(mut pipe) = pipe else { return };
    let mut chunk = vec![0u8; 64 * 1024];
    while let Ok(n) = pipe.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        into.extend_from_slice(&chunk[..n]);
        // Dropping the front only when twice over keeps this linear.
        if into.len() > 2 * keep {
            into.drain(..into.len() - keep);
        }
    }
    if into.len() > keep {
        into.drain(..into.len() - keep);
    }
}

/// What a program wrote and how it ended.
struct Finished {
    status: std::process::ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Feeds `input` to the program, reads its output and waits for it. Once it
/// exited, its pipes get [`PIPE_GRACE`] to close; then what was read is
/// taken (the caller kills the group that still holds them).
async fn collect(child: &mut tokio::process::Child, input: &[u8]) -> Result<Finished, OutputError> {
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let write = async {
        if let Some(mut stdin) = stdin {
            // A program that does not read its stdin closes the pipe: fine.
            let _ = stdin.write_all(input).await;
            let _ = stdin.shutdown().await;
        }
        Ok(())
    };
    let errors = async {
        read_tail(stderr, &mut err, STDERR_KEEP).await;
        Ok(())
    };
    let io = async {
        tokio::try_join!(write, read_capped(stdout, &mut out, STDOUT_LIMIT), errors).map(|_| ())
    };
    let status = wait_reading(child, io).await?;
    Ok(Finished {
        status,
        stdout: out,
        stderr: err,
    })
}

/// Waits for the program to exit while `io` reads its pipes; once it exited,
/// gives `io` [`PIPE_GRACE`] to finish.
async fn wait_reading(
    child: &mut tokio::process::Child,
    io: impl std::future::Future<Output = Result<(), OutputError>>,
) -> Result<std::process::ExitStatus, OutputError> {
    tokio::pin!(io);
    tokio::select! {
        read = &mut io => {
            read?;
            child.wait().await.map_err(OutputError::Read)
        }
        status = child.wait() => {
            let status = status.map_err(OutputError::Read)?;
            if let Ok(read) = tokio::time::timeout(PIPE_GRACE, &mut io).await {
                read?;
            }
            Ok(status)
        }
    }
}

impl Command {
    /// Builds the runner from a JSON configuration; relative paths (`cwd`, a
    /// `program` with a `/`) resolve against `context`'s suite directory.
    pub fn from_value(config: Value, context: &BuildContext) -> Result<Self, ConfigError> {
        let config: CommandConfig = registry::config("command", config)?;
        let program = config.program.trim();
        if program.is_empty() {
            return Err(ConfigError::new("command", "`program` must not be empty"));
        }
        let program = if program.contains(std::path::MAIN_SEPARATOR) || program.contains('/') {
            context.resolve(program)
        } else {
            PathBuf::from(program)
        };
        let cwd = config.cwd.map(|cwd| context.resolve(cwd));
        if let Some(cwd) = &cwd {
            if !cwd.is_dir() {
                return Err(ConfigError::new(
                    "command",
                    format!("`cwd` {} is not a directory", cwd.display()),
                ));
            }
        }
        let mut args = config.args;
        if config.input == Input::Arg && !args.iter().any(|a| a.contains("{query}")) {
            args.push("{query}".to_owned());
        }
        Ok(Command {
            program,
            args,
            input: config.input,
            env: config.env,
            cwd,
            timeout: config.timeout.map(|t| t.0),
            retry: if config.retry_timeouts {
                Retry::TransientAndTimeouts
            } else {
                Retry::TransientOnly
            },
        })
    }

    fn name(&self) -> String {
        self.program.display().to_string()
    }

    async fn execute(&self, batch: &Batch, session: &Session<'_>) -> Result<Reply, RunError> {
        let mut command = self.command(batch, session);
        let mut child = command
            .spawn()
            .map_err(|e| RunError::permanent(format!("cannot start `{}`: {e}", self.name())))?;
        #[cfg(unix)]
        let group = KillGroup::new(&child);
        let output = collect(&mut child, batch.query.as_bytes()).await;
        // The turn is over: what the program left running goes too.
        #[cfg(unix)]
        drop(group);
        let output = output.map_err(|error| match error {
            OutputError::TooLarge => RunError::permanent(format!(
                "`{}` printed more than {} on stdout and was killed",
                self.name(),
                bytes_shown(STDOUT_LIMIT)
            )),
            OutputError::Read(e) => {
                RunError::permanent(format!("cannot read the output of `{}`: {e}", self.name()))
            }
        })?;
        self.answer(&output)
    }

    /// The program's command for a turn: arguments and `env` filled, the
    /// `FORGE_*` variables set, pipes ready, in a process group of its own.
    fn command(&self, batch: &Batch, session: &Session<'_>) -> tokio::process::Command {
        let value = |name: &str| placeholder(name, batch, session);
        let mut command = tokio::process::Command::new(&self.program);
        command
            .args(self.args.iter().map(|a| fill(a, value)))
            .envs(
                self.env
                    .iter()
                    .map(|(k, v)| (k, fill(v.expose_secret(), value))),
            )
            .env("FORGE_SESSION_ID", session.session_id)
            .env("FORGE_QA_ID", &batch.qa_id)
            .env("FORGE_ASSISTANT_ID", session.assistant_id)
            .stdin(if self.input == Input::Stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if session.context.len() <= CONTEXT_ENV_LIMIT {
            command.env("FORGE_CONTEXT", session.context);
        } else {
            tracing::debug!(
                session = session.session_id,
                bytes = session.context.len(),
                "context over 64 KiB: FORGE_CONTEXT not set"
            );
        }
        if let Some(cwd) = &self.cwd {
            command.current_dir(cwd);
        }
        #[cfg(unix)]
        command.process_group(0);
        command
    }

    /// The answer on stdout (one trailing line end dropped), or why there
    /// is none: a failed exit or an empty answer, with stderr's tail.
    fn answer(&self, output: &Finished) -> Result<Reply, RunError> {
        let stderr = tail(&String::from_utf8_lossy(&output.stderr));
        if !output.status.success() {
            let how = match output.status.code() {
                Some(code) => format!("exited with status {code}"),
                None => "was killed by a signal".to_owned(),
            };
            return Err(RunError::permanent(format!(
                "`{}` {how}: {stderr}",
                self.name()
            )));
        }
        let mut answer = String::from_utf8_lossy(&output.stdout).into_owned();
        if answer.ends_with('\n') {
            answer.pop();
            if answer.ends_with('\r') {
                answer.pop();
            }
        }
        if answer.trim().is_empty() {
            return Err(RunError::permanent(format!(
                "`{}` printed no answer: {stderr}",
                self.name()
            )));
        }
        Ok(Reply::text(answer))
    }
}

/// The last [`STDERR_CHARS`] characters of `stderr`, trimmed.
fn tail(stderr: &str) -> String {
    let stderr = stderr.trim();
    if stderr.is_empty() {
        return "(no stderr)".to_owned();
    }
    let count = stderr.chars().count();
    if count <= STDERR_CHARS {
        return stderr.to_owned();
    }
    let cut: String = stderr.chars().skip(count - STDERR_CHARS).collect();
    format!("...{cut}")
}

#[async_trait::async_trait]
impl Runner for Command {
    async fn call(&self, batch: &Batch, session: &Session<'_>) -> Result<Reply, RunError> {
        match self.timeout {
            // Dropping the future drops the child, which kills it.
            Some(limit) => tokio::time::timeout(limit, self.execute(batch, session))
                .await
                .unwrap_or_else(|_| {
                    Err(RunError {
                        kind: ErrorKind::Timeout,
                        message: format!(
                            "`{}` timed out after {} and was killed",
                            self.name(),
                            humanize(limit)
                        ),
                        retry_after: None,
                    })
                }),
            None => self.execute(batch, session).await,
        }
    }

    fn retry(&self) -> Retry {
        self.retry
    }

    /// The values of secret-looking `env` entries (`API_KEY`, `TOKEN`, ...)
    /// without placeholders.
    fn secrets(&self) -> Vec<String> {
        self.env
            .iter()
            .map(|(name, value)| (name, value.expose_secret()))
            .filter(|(name, value)| crate::secrets::is_secret_name(name) && !value.contains('{'))
            .map(|(_, value)| value.to_owned())
            .collect()
    }
}

fn build(config: Value, context: &BuildContext) -> Result<Arc<dyn Runner>, ConfigError> {
    Ok(Arc::new(Command::from_value(config, context)?))
}

inventory::submit! { RunnerType { name: "command", build } }

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_env_values() {
        let runner = Command::from_value(
            serde_json::json!({"program": "true", "env": {"API_KEY": "sk-very-secret"}}),
            &BuildContext::default(),
        )
        .unwrap();
        let shown = format!("{runner:?}");
        assert!(!shown.contains("sk-very-secret"), "{shown}");
        assert!(shown.contains("API_KEY"), "{shown}");
    }

    #[test]
    fn stderr_tail_and_config() {
        assert_eq!(tail("  \n"), "(no stderr)");
        let long = format!("start{}end", "x".repeat(1000));
        let cut = tail(&long);
        assert!(cut.starts_with("...") && cut.ends_with("end"), "{cut}");
        assert_eq!(cut.chars().count(), STDERR_CHARS + 3);
        let context = BuildContext::new("/suites");
        let runner = Command::from_value(
            serde_json::json!({"program": "./bot.sh", "input": "arg", "args": ["-v"]}),
            &context,
        )
        .unwrap();
        assert_eq!(runner.program, PathBuf::from("/suites/./bot.sh"));
        assert_eq!(runner.args, vec!["-v", "{query}"]);
        let error = Command::from_value(
            serde_json::json!({"program": "sh", "imput": "arg"}),
            &context,
        )
        .unwrap_err();
        assert!(error.message.contains("did you mean `input`"), "{error}");
    }
}
