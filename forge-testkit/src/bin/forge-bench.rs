//! The benchmark: forge against a loopback Alquimia server of known latency.
//!
//! ```sh
//! cargo run --release -p forge-testkit --bin forge-bench -- \
//!     --sessions 50 --turns 20 --latency-ms 20
//! ```
//!
//! It starts the test server in a child process (one thread, hyper), writes a
//! suite of S sessions x T turns, and runs it through `forge run` and through
//! the cargo-test harness, each in a fresh process whose resource usage is
//! read with `getrusage`. Both front ends are compiled into forge-bench, so
//! they come from the same build: run under the name `forge` (a symlink in
//! its temporary directory) it is the `forge` command (`forge::cli::main`),
//! and its `harness` subcommand is a user's one-line harness. It prints wall time, batches per second, the ratio
//! of wall time to the physical bound T x L, CPU time and peak memory of the
//! client, and the server's own CPU time. `--load-batches N` also measures
//! loading (and running) an N-batch suite.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};

#[derive(Parser)]
#[command(
    name = "forge-bench",
    about = "Benchmark forge against a loopback server"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
    /// Sessions (S); the suite's concurrency is S.
    #[arg(long, default_value_t = 50)]
    sessions: usize,
    /// Turns per session (T).
    #[arg(long, default_value_t = 20)]
    turns: usize,
    /// Server latency per turn in ms (L).
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    /// Concurrency (default: sessions).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Also load and run a suite of this many batches (e.g. 100000).
    #[arg(long)]
    load_batches: Option<usize>,
    /// Which front ends to measure.
    #[arg(long, value_delimiter = ',', default_value = "run,harness")]
    modes: Vec<String>,
}

#[derive(Subcommand)]
enum Sub {
    /// Serve the Alquimia protocol on 127.0.0.1 (prints the port) until stdin closes.
    Serve {
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
    },
    /// Run a suites directory through the cargo-test harness (as a user's test target does).
    Harness { dir: PathBuf },
    /// Load a suite file and print how long it took.
    Load { file: PathBuf },
    /// Run a command and write its wall time and resource usage as JSON.
    Measure {
        #[arg(long)]
        result: PathBuf,
        #[arg(trailing_var_arg = true, required = true)]
        command: Vec<String>,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct Usage {
    wall_s: f64,
    user_s: f64,
    sys_s: f64,
    max_rss_mb: f64,
    status: Option<i32>,
}

fn main() -> ExitCode {
    if invoked_as_forge() {
        return forge::cli::main();
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Sub::Serve { latency_ms }) => serve(latency_ms),
        Some(Sub::Harness { dir }) => {
            let args = libtest_mimic::Arguments {
                format: Some(libtest_mimic::FormatSetting::Terse),
                quiet: true,
                ..Default::default()
            };
            return match forge::harness::run(&dir, &args) {
                Ok(outcome) => outcome.conclusion.exit_code(),
                Err(error) => {
                    eprintln!("{error}");
                    ExitCode::FAILURE
                }
            };
        }
        Some(Sub::Load { file }) => {
            let start = Instant::now();
            match forge::Suite::load(&file) {
                Ok(suite) => {
                    println!(
                        "loaded {} batches in {:.3}s",
                        suite.batch_count(),
                        start.elapsed().as_secs_f64()
                    );
                    Ok(())
                }
                Err(error) => Err(error.to_string()),
            }
        }
        Some(Sub::Measure { result, command }) => measure(&result, &command),
        None => bench(&cli),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("forge-bench: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Whether the program runs under the name `forge` (see the module docs).
fn invoked_as_forge() -> bool {
    std::env::args_os()
        .next()
        .is_some_and(|arg0| Path::new(&arg0).file_name() == Some(OsStr::new("forge")))
}

fn serve(latency_ms: u64) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let mut builder = forge_testkit::TestServer::builder().log_requests(false);
        if latency_ms > 0 {
            builder = builder.latency(Duration::from_millis(latency_ms));
        }
        let server = builder.try_start().await.map_err(|e| e.to_string())?;
        println!("{}", server.addr().port());
        std::io::stdout().flush().map_err(|e| e.to_string())?;
        // Serve until the parent closes our stdin.
        tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            while std::io::stdin()
                .read_line(&mut sink)
                .map(|n| n > 0)
                .unwrap_or(false)
            {
                sink.clear();
            }
        })
        .await
        .map_err(|e| e.to_string())?;
        server.shutdown().await;
        Ok(())
    })
}

fn measure(result: &Path, command: &[String]) -> Result<(), String> {
    let start = Instant::now();
    let status = Command::new(&command[0])
        .args(&command[1..])
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run {}: {e}", command[0]))?;
    let wall_s = start.elapsed().as_secs_f64();
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .map_err(|e| e.to_string())?;
    let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    let usage = Usage {
        wall_s,
        user_s: seconds(usage.user_time()),
        sys_s: seconds(usage.system_time()),
        max_rss_mb: usage.max_rss() as f64 / 1024.0,
        status: status.code(),
    };
    std::fs::write(
        result,
        serde_json::to_vec(&usage).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())
}

/// CPU seconds (user + system) a live process has used, from /proc.
fn process_cpu_s(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// A suite's YAML up to its `datasets:` key: the Alquimia runner at `url`.
fn suite_header(name: &str, url: &str, concurrency: usize) -> String {
    format!(
        "name: {name}\nrunner:\n  type: alquimia\n  base_url: {url}\n  api_key: {}\n  agent_id: bench\n  channel_id: web\nconcurrency: {concurrency}\ntimeout: 60s\ndatasets:\n",
        forge_testkit::TestServer::DEFAULT_API_KEY
    )
}

fn write_suite(
    path: &Path,
    url: &str,
    sessions: usize,
    turns: usize,
    concurrency: usize,
) -> Result<(), String> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).map_err(|e| e.to_string())?);
    let mut text = suite_header("bench", url, concurrency);
    for s in 0..sessions {
        text.push_str(&format!(
            "  - session_id: s{s}\n    assistant_id: bench\n    conversation:\n"
        ));
        for t in 0..turns {
            text.push_str(&format!(
                "      - {{qa_id: q{t}, query: \"question {t} of session {s}\"}}\n"
            ));
        }
        if text.len() > 1 << 20 {
            out.write_all(text.as_bytes()).map_err(|e| e.to_string())?;
            text.clear();
        }
    }
    out.write_all(text.as_bytes()).map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())
}

fn write_jsonl_suite(
    path: &Path,
    url: &str,
    sessions: usize,
    turns: usize,
    concurrency: usize,
) -> Result<(), String> {
    let data = path.with_extension("jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&data).map_err(|e| e.to_string())?);
    for s in 0..sessions {
        let conversation: Vec<serde_json::Value> = (0..turns)
            .map(|t| serde_json::json!({"qa_id": format!("q{t}"), "query": format!("question {t} of session {s}")}))
            .collect();
        let dataset = serde_json::json!({"session_id": format!("s{s}"), "assistant_id": "bench", "conversation": conversation});
        serde_json::to_writer(&mut out, &dataset).map_err(|e| e.to_string())?;
        out.write_all(b"\n").map_err(|e| e.to_string())?;
    }
    out.flush().map_err(|e| e.to_string())?;
    let file_name = data
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let text = suite_header("big", url, concurrency) + &format!("  - file: {file_name}\n");
    std::fs::write(path, text).map_err(|e| e.to_string())
}

/// Where a benchmark runs: this program (also under the name `forge`), a
/// temporary directory, and the test server in a child process.
struct Setup {
    me: PathBuf,
    forge_bin: PathBuf,
    dir: tempfile::TempDir,
    url: String,
    out: PathBuf,
    server: Child,
}

impl Setup {
    /// Starts the server (this program's `serve`) and makes the directory.
    fn start(latency_ms: u64) -> Result<Setup, String> {
        let me = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut server = Command::new(&me)
            .args(["serve", "--latency-ms", &latency_ms.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let mut port = String::new();
        BufReader::new(server.stdout.take().ok_or("no server stdout")?)
            .read_line(&mut port)
            .map_err(|e| e.to_string())?;
        let url = format!("http://127.0.0.1:{}", port.trim());
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        // This program, under the name `forge`.
        let forge_bin = dir.path().join("forge");
        std::os::unix::fs::symlink(&me, &forge_bin)
            .map_err(|e| format!("cannot link {}: {e}", forge_bin.display()))?;
        let out = dir.path().join("out");
        Ok(Setup {
            me,
            forge_bin,
            dir,
            url,
            out,
            server,
        })
    }

    /// `forge run SUITE --quiet --out OUT`.
    fn forge_run(&self, suite: &Path) -> Vec<String> {
        vec![
            self.forge_bin.display().to_string(),
            "run".into(),
            suite.display().to_string(),
            "--quiet".into(),
            "--out".into(),
            self.out.display().to_string(),
        ]
    }

    /// Stops the server: it serves until its stdin closes.
    fn stop(mut self) {
        drop(self.server.stdin.take());
        let _ = self.server.wait();
    }
}

fn bench(cli: &Cli) -> Result<(), String> {
    let setup = Setup::start(cli.latency_ms)?;
    let concurrency = cli.concurrency.unwrap_or(cli.sessions);
    run_modes(cli, &setup, concurrency)?;
    if let Some(count) = cli.load_batches {
        run_load(cli, &setup, count, concurrency)?;
    }
    setup.stop();
    Ok(())
}

/// Runs the S x T suite through each front end of `--modes` and prints a
/// row for each.
fn run_modes(cli: &Cli, setup: &Setup, concurrency: usize) -> Result<(), String> {
    let suites = setup.dir.path().join("suites");
    std::fs::create_dir_all(&suites).map_err(|e| e.to_string())?;
    let suite = suites.join("bench.yaml");
    write_suite(&suite, &setup.url, cli.sessions, cli.turns, concurrency)?;
    let batches = cli.sessions * cli.turns;
    let bound_s = cli.turns as f64 * cli.latency_ms as f64 / 1000.0;
    println!(
        "S={} sessions x T={} turns = {batches} batches, L={} ms, concurrency {concurrency}; bound T x L = {bound_s:.3}s",
        cli.sessions, cli.turns, cli.latency_ms
    );
    println!(
        "{:<8} {:>8} {:>10} {:>9} {:>9} {:>9} {:>10} {:>10}",
        "mode", "wall s", "batches/s", "wall/TxL", "user s", "sys s", "peak MB", "server s"
    );
    for mode in &cli.modes {
        let command: Vec<String> = match mode.as_str() {
            "run" => setup.forge_run(&suite),
            "harness" => vec![
                setup.me.display().to_string(),
                "harness".into(),
                suites.display().to_string(),
            ],
            other => return Err(format!("unknown mode {other:?} (run, harness)")),
        };
        let server_before = process_cpu_s(setup.server.id()).unwrap_or(0.0);
        let env = [("FORGE_OUT_DIR", setup.out.as_path())];
        let usage = measured(&setup.me, setup.dir.path(), &command, &env)?;
        let server_s = process_cpu_s(setup.server.id()).unwrap_or(0.0) - server_before;
        if usage.status != Some(0) {
            return Err(format!("{mode} failed with status {:?}", usage.status));
        }
        println!(
            "{:<8} {:>8.3} {:>10.0} {:>9.3} {:>9.3} {:>9.3} {:>10.1} {:>10.3}",
            mode,
            usage.wall_s,
            batches as f64 / usage.wall_s,
            if bound_s > 0.0 {
                usage.wall_s / bound_s
            } else {
                f64::NAN
            },
            usage.user_s,
            usage.sys_s,
            usage.max_rss_mb,
            server_s
        );
    }
    Ok(())
}

/// Loads a suite of about `count` batches in this process, then runs it
/// with `forge run`, and prints both.
fn run_load(cli: &Cli, setup: &Setup, count: usize, concurrency: usize) -> Result<(), String> {
    let big_dir = setup.dir.path().join("big");
    std::fs::create_dir_all(&big_dir).map_err(|e| e.to_string())?;
    let big = big_dir.join("big.yaml");
    let sessions = count.div_ceil(cli.turns.max(1));
    // A suite this large keeps its datasets in a Fair-Forge JSONL file,
    // as real large suites do.
    write_jsonl_suite(&big, &setup.url, sessions, cli.turns.max(1), concurrency)?;
    let start = Instant::now();
    let loaded = forge::Suite::load(&big).map_err(|e| e.to_string())?;
    let load_s = start.elapsed().as_secs_f64();
    println!(
        "load: {} batches (YAML suite + JSONL datasets) in {load_s:.3}s",
        loaded.batch_count()
    );
    drop(loaded);
    let usage = measured(&setup.me, setup.dir.path(), &setup.forge_run(&big), &[])?;
    println!(
        "run {} batches: wall {:.3}s, {:.0} batches/s, user {:.3}s, sys {:.3}s, peak {:.1} MB",
        sessions * cli.turns.max(1),
        usage.wall_s,
        (sessions * cli.turns.max(1)) as f64 / usage.wall_s,
        usage.user_s,
        usage.sys_s,
        usage.max_rss_mb
    );
    Ok(())
}

fn measured(
    me: &Path,
    dir: &Path,
    command: &[String],
    env: &[(&str, &Path)],
) -> Result<Usage, String> {
    let result = dir.join("usage.json");
    let mut measure = Command::new(me);
    measure
        .arg("measure")
        .arg("--result")
        .arg(&result)
        .arg("--")
        .args(command);
    for (key, value) in env {
        measure.env(key, value);
    }
    let status = measure.status().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("measure failed: {status}"));
    }
    let text = std::fs::read_to_string(&result).map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| e.to_string())
}
