//! The wire benchmark: the S x T suite against the test server through each
//! front end (`forge run`, the harness, the ideal client), each in a fresh
//! process, optionally pinned, repeated and reported as medians, with each
//! front end's ratio to the ideal client.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use crate::measure::{measured, process_cpu_s, Usage};
use crate::pin::{self, Pinning};
use crate::suites::{self, Runner};
use crate::Cli;

/// Where a benchmark runs: this program (also under the name `forge`), a
/// temporary directory, and the test server in a child process.
pub struct Setup {
    pub me: PathBuf,
    pub forge_bin: PathBuf,
    pub dir: tempfile::TempDir,
    pub url: String,
    pub out: PathBuf,
    server: Option<Child>,
}

impl Setup {
    /// Makes the directory and the `forge` link; no server.
    pub fn offline() -> Result<Setup, String> {
        let me = std::env::current_exe().map_err(|e| e.to_string())?;
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
            url: String::new(),
            out,
            server: None,
        })
    }

    /// [`Setup::offline`], and the server (this program's `serve`, pinned
    /// to `cpu` if given).
    pub fn start(latency_ms: u64, cpu: Option<usize>) -> Result<Setup, String> {
        let mut setup = Setup::offline()?;
        let mut command = Command::new(&setup.me);
        command.args(["serve", "--latency-ms", &latency_ms.to_string()]);
        if let Some(cpu) = cpu {
            command.args(["--cpu", &cpu.to_string()]);
        }
        let mut server = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let mut port = String::new();
        let stdout = server.stdout.take().ok_or("no server stdout")?;
        let read = BufReader::new(stdout).read_line(&mut port);
        setup.server = Some(server);
        read.map_err(|e| e.to_string())?;
        if port.trim().is_empty() {
            return Err("the server did not start".into());
        }
        setup.url = format!("http://127.0.0.1:{}", port.trim());
        Ok(setup)
    }

    /// `forge run SUITE --quiet --out OUT`.
    pub fn forge_run(&self, suite: &Path) -> Vec<String> {
        vec![
            self.forge_bin.display().to_string(),
            "run".into(),
            suite.display().to_string(),
            "--quiet".into(),
            "--out".into(),
            self.out.display().to_string(),
        ]
    }

    /// `forge-bench harness DIR`: DIR's suites through the cargo-test harness.
    pub fn harness(&self, dir: &Path) -> Vec<String> {
        vec![
            self.me.display().to_string(),
            "harness".into(),
            dir.display().to_string(),
        ]
    }

    /// The server's CPU seconds so far.
    fn server_cpu_s(&self) -> f64 {
        self.server
            .as_ref()
            .and_then(|s| process_cpu_s(s.id()))
            .unwrap_or(0.0)
    }
}

impl Drop for Setup {
    /// Stops the server: it serves until its stdin closes.
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            drop(server.stdin.take());
            let _ = server.wait();
        }
    }
}

/// Whether to pin: `--pin on|off|auto` (auto: on at L = 0).
pub fn pinning(cli: &Cli) -> Result<Option<Pinning>, String> {
    let wanted = match cli.pin.as_str() {
        "on" => true,
        "off" => false,
        "auto" => cli.latency_ms == 0,
        other => return Err(format!("--pin {other:?}: expected on, off or auto")),
    };
    if wanted {
        pin::plan()
    } else {
        Ok(None)
    }
}

/// One measured run of a front end.
struct Row {
    usage: Usage,
    server_s: f64,
}

/// Runs the S x T suite through each front end of `--modes`, `--repeat`
/// times in turn, and prints the median row of each and the ratios to the
/// ideal client.
pub fn run_modes(cli: &Cli, setup: &Setup, pinned: Option<Pinning>) -> Result<(), String> {
    let concurrency = cli.concurrency.unwrap_or(cli.sessions);
    let suites = setup.dir.path().join("suites");
    std::fs::create_dir_all(&suites).map_err(|e| e.to_string())?;
    let suite = suites.join("bench.yaml");
    suites::write_suite(&suite, &setup.url, cli.sessions, cli.turns, concurrency)?;
    print_heading(cli, concurrency, pinned);
    let mut rows: Vec<(String, Vec<Row>)> = cli.modes.iter().map(|m| (m.clone(), vec![])).collect();
    for _ in 0..cli.repeat.max(1) {
        for (mode, runs) in &mut rows {
            let command = mode_command(cli, setup, mode, &suite, &suites)?;
            let server_before = setup.server_cpu_s();
            let env = [("FORGE_OUT_DIR", setup.out.as_path())];
            let usage = measured(
                &setup.me,
                setup.dir.path(),
                &command,
                &env,
                pinned.map(|p| p.client),
            )?;
            let server_s = setup.server_cpu_s() - server_before;
            runs.push(Row { usage, server_s });
        }
    }
    let batches = (cli.sessions * cli.turns) as f64;
    let bound_s = cli.turns as f64 * cli.latency_ms as f64 / 1000.0;
    let mut medians = Vec::new();
    for (mode, mut runs) in rows {
        runs.sort_by(|a, b| a.usage.wall_s.total_cmp(&b.usage.wall_s));
        let row = runs.swap_remove(runs.len() / 2);
        print_row(&mode, &row, batches, bound_s);
        medians.push((mode, batches / row.usage.wall_s));
    }
    print_ratios(&medians);
    Ok(())
}

/// The command line of front end `mode`.
fn mode_command(
    cli: &Cli,
    setup: &Setup,
    mode: &str,
    suite: &Path,
    suites: &Path,
) -> Result<Vec<String>, String> {
    Ok(match mode {
        "run" => setup.forge_run(suite),
        "harness" => setup.harness(suites),
        "ideal" => vec![
            setup.me.display().to_string(),
            "ideal".into(),
            "--url".into(),
            setup.url.clone(),
            "--sessions".into(),
            cli.sessions.to_string(),
            "--turns".into(),
            cli.turns.to_string(),
        ],
        other => return Err(format!("unknown mode {other:?} (run, harness, ideal)")),
    })
}

fn print_heading(cli: &Cli, concurrency: usize, pinned: Option<Pinning>) {
    let bound_s = cli.turns as f64 * cli.latency_ms as f64 / 1000.0;
    println!(
        "S={} sessions x T={} turns = {} batches, L={} ms, concurrency {concurrency}; bound T x L = {bound_s:.3}s",
        cli.sessions,
        cli.turns,
        cli.sessions * cli.turns,
        cli.latency_ms
    );
    match pinned {
        Some(p) => println!(
            "pinned: server on CPU {}, client on CPU {}",
            p.server, p.client
        ),
        None => println!("not pinned"),
    }
    println!(
        "median of {} run(s) of each mode, run in turn",
        cli.repeat.max(1)
    );
    println!(
        "{:<8} {:>8} {:>10} {:>9} {:>9} {:>9} {:>10} {:>10}",
        "mode", "wall s", "batches/s", "wall/TxL", "user s", "sys s", "peak MB", "server s"
    );
}

fn print_row(mode: &str, row: &Row, batches: f64, bound_s: f64) {
    let usage = &row.usage;
    println!(
        "{:<8} {:>8.3} {:>10.0} {:>9.3} {:>9.3} {:>9.3} {:>10.1} {:>10.3}",
        mode,
        usage.wall_s,
        batches / usage.wall_s,
        if bound_s > 0.0 {
            usage.wall_s / bound_s
        } else {
            f64::NAN
        },
        usage.user_s,
        usage.sys_s,
        usage.max_rss_mb,
        row.server_s
    );
}

/// `forge run / ideal` and `harness / ideal` in batches per second, when
/// the ideal client ran.
fn print_ratios(medians: &[(String, f64)]) {
    let Some((_, ideal)) = medians.iter().find(|(mode, _)| mode == "ideal") else {
        return;
    };
    for (mode, rate) in medians {
        let name = match mode.as_str() {
            "run" => "forge run",
            "harness" => "harness",
            _ => continue,
        };
        println!(
            "ratio {name} / ideal: {:.2} (batches/s; target >= 0.7)",
            rate / ideal
        );
    }
}

/// Loads a suite of about `count` batches in this process, then runs it
/// with `forge run`, and prints both.
pub fn run_load(cli: &Cli, setup: &Setup, count: usize) -> Result<(), String> {
    let big_dir = setup.dir.path().join("big");
    std::fs::create_dir_all(&big_dir).map_err(|e| e.to_string())?;
    let big = big_dir.join("big.yaml");
    let turns = cli.turns.max(1);
    let sessions = count.div_ceil(turns);
    let concurrency = cli.concurrency.unwrap_or(cli.sessions);
    let runner = Runner::Alquimia { url: &setup.url };
    suites::write_jsonl_suite(&big, &runner, sessions, turns, Some(concurrency))?;
    let start = Instant::now();
    let loaded = forge::Suite::load(&big).map_err(|e| e.to_string())?;
    let load_s = start.elapsed().as_secs_f64();
    println!(
        "load: {} batches (YAML suite + JSONL datasets) in {load_s:.3}s",
        loaded.batch_count()
    );
    drop(loaded);
    let usage = measured(
        &setup.me,
        setup.dir.path(),
        &setup.forge_run(&big),
        &[],
        None,
    )?;
    let batches = sessions * turns;
    println!(
        "run {batches} batches: wall {:.3}s, {:.0} batches/s, user {:.3}s, sys {:.3}s, peak {:.1} MB",
        usage.wall_s,
        batches as f64 / usage.wall_s,
        usage.user_s,
        usage.sys_s,
        usage.max_rss_mb
    );
    Ok(())
}
