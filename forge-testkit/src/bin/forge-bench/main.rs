//! The benchmark: forge against a loopback Alquimia server of known latency,
//! side by side with an ideal hand-written client; forge's memory over large
//! offline suites; and a user crate's compile time.
//!
//! ```sh
//! cargo run --release -p forge-testkit --bin forge-bench -- \
//!     --sessions 100 --turns 200 --latency-ms 0 --repeat 3
//! cargo run --release -p forge-testkit --bin forge-bench -- \
//!     --modes none --memory 100000,1000000
//! cargo run --release -p forge-testkit --bin forge-bench -- compile
//! ```
//!
//! It starts the test server in a child process (one thread, hyper), writes a
//! suite of S sessions x T turns, and runs it through the ideal client
//! (`ideal.rs`), `forge run` and the cargo-test harness, each in a fresh
//! process whose resource usage is read with `getrusage`; with `--pin` the
//! server runs on one CPU and the measured client on another. Both front
//! ends are compiled into forge-bench, so they come from the same build: run
//! under the name `forge` (a symlink in its temporary directory) it is the
//! `forge` command (`forge::cli::main`), and its `harness` subcommand is a
//! user's one-line harness. It prints wall time, batches per second, the
//! ratio of wall time to the physical bound T x L, CPU time and peak memory
//! of the client, the server's own CPU time, and each front end's ratio to
//! the ideal client. `--load-batches N` also measures loading (and running)
//! an N-batch suite, `--memory N,M` the peak memory of offline runs (see
//! `memory.rs`), and `compile` the build times of a user crate
//! (`compile.rs`).

mod compile;
mod ideal;
mod measure;
mod memory;
mod pin;
mod suites;
mod wire;

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "forge-bench",
    about = "Benchmark forge against a loopback server"
)]
pub struct Cli {
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
    /// Which front ends to measure: ideal, run, harness (or none).
    #[arg(long, value_delimiter = ',', default_value = "ideal,run,harness")]
    modes: Vec<String>,
    /// Runs of each mode (in turn); the median is printed.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Pin the server to one CPU and the measured client to another:
    /// on, off, or auto (on at L = 0).
    #[arg(long, default_value = "auto")]
    pin: String,
    /// Peak memory of `forge run` over offline suites of these many batches
    /// (e.g. 100000,1000000), and of the harness over the smallest.
    #[arg(long, value_delimiter = ',')]
    memory: Vec<usize>,
}

#[derive(Subcommand)]
enum Sub {
    /// Serve the Alquimia protocol on 127.0.0.1 (prints the port) until stdin closes.
    Serve {
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        /// Pin the server to this CPU.
        #[arg(long)]
        cpu: Option<usize>,
    },
    /// Run a suites directory through the cargo-test harness (as a user's test target does).
    Harness { dir: PathBuf },
    /// Run S sessions x T turns against the server with the ideal client.
    Ideal {
        #[arg(long)]
        url: String,
        #[arg(long)]
        sessions: usize,
        #[arg(long)]
        turns: usize,
    },
    /// Load a suite file and print how long it took.
    Load { file: PathBuf },
    /// Run a command and write its wall time and resource usage as JSON.
    Measure {
        #[arg(long)]
        result: PathBuf,
        /// Pin the command to this CPU.
        #[arg(long)]
        cpu: Option<usize>,
        #[arg(trailing_var_arg = true, required = true)]
        command: Vec<String>,
    },
    /// Build a minimal user crate's tests cold, then after a one-line change.
    Compile {
        /// forge-eval's directory (default: this workspace's forge/).
        #[arg(long)]
        forge: Option<PathBuf>,
        /// Keep the crate and its target directory.
        #[arg(long)]
        keep: bool,
    },
}

fn main() -> ExitCode {
    if invoked_as_forge() {
        return forge::cli::main();
    }
    let cli = Cli::parse();
    let result = match &cli.command {
        Some(Sub::Serve { latency_ms, cpu }) => serve(*latency_ms, *cpu),
        Some(Sub::Harness { dir }) => return harness(dir),
        Some(Sub::Ideal {
            url,
            sessions,
            turns,
        }) => ideal::run(
            url,
            forge_testkit::TestServer::DEFAULT_API_KEY,
            *sessions,
            *turns,
        ),
        Some(Sub::Load { file }) => load(file),
        Some(Sub::Measure {
            result,
            cpu,
            command,
        }) => measure::measure(result, *cpu, command),
        Some(Sub::Compile { forge, keep }) => compile::run(forge.clone(), *keep),
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

fn harness(dir: &Path) -> ExitCode {
    let args = libtest_mimic::Arguments {
        format: Some(libtest_mimic::FormatSetting::Terse),
        quiet: true,
        ..Default::default()
    };
    match forge::harness::run(dir, &args) {
        Ok(outcome) => outcome.conclusion.exit_code(),
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}

fn load(file: &Path) -> Result<(), String> {
    let start = Instant::now();
    let suite = forge::Suite::load(file).map_err(|e| e.to_string())?;
    println!(
        "loaded {} batches in {:.3}s",
        suite.batch_count(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn serve(latency_ms: u64, cpu: Option<usize>) -> Result<(), String> {
    if let Some(cpu) = cpu {
        // Before the runtime starts any thread.
        pin::pin_to(cpu)?;
    }
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

/// The benchmark proper: the front ends over the S x T suite (unless
/// `--modes none`), the load measurement, the memory rows.
fn bench(cli: &Cli) -> Result<(), String> {
    let modes_wanted = !(cli.modes.is_empty() || cli.modes.iter().all(|m| m == "none"));
    if modes_wanted || cli.load_batches.is_some() {
        let pinned = if modes_wanted {
            wire::pinning(cli)?
        } else {
            None
        };
        let setup = wire::Setup::start(cli.latency_ms, pinned.map(|p| p.server))?;
        if modes_wanted {
            wire::run_modes(cli, &setup, pinned)?;
        }
        if let Some(count) = cli.load_batches {
            wire::run_load(cli, &setup, count)?;
        }
    }
    if !cli.memory.is_empty() {
        memory::run(&cli.memory)?;
    }
    Ok(())
}
