//! The `cargo test` harness: suites become libtest-mimic trials, one per
//! batch, named `<suite>::<session_id>::<qa_id>`.
//!
//! A test target with `harness = false` calls [`main`]:
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     forge::harness::main("suites")
//! }
//! ```
//!
//! The selected batches run on one tokio runtime while libtest-mimic reports
//! them: sessions concurrently (up to each suite's `concurrency`), turns in
//! order, a selected batch's earlier turns first (unreported). Sessions with no
//! selected batch are not contacted, and `--list` sends nothing at all. After
//! the run, `<suite>.json` and `junit.xml` are written under `$FORGE_OUT_DIR`.
//!
//! Ctrl-C and SIGTERM work as in `forge run`: the first stops new work (turns
//! not yet sent fail as interrupted, turns in flight finish) and the partial
//! reports of this run are written; a second exits at once with 130.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Condvar, Mutex};

use libtest_mimic::{Arguments, Conclusion, Failed, Trial};
use tokio_util::sync::CancellationToken;

use crate::report::{self, Reported};
use crate::run::{run_suites, BatchId, BatchRecord, SuiteResult};
use crate::suite::{self, Suite};

/// Runs the suites found directly in `dir` (relative to the package root
/// when it is not found from the working directory) with the process's
/// libtest arguments, writes the reports, and returns the exit code: 0 when
/// every selected batch passed, 101 otherwise.
pub fn main(dir: impl AsRef<Path>) -> ExitCode {
    let args = Arguments::from_args();
    match run(dir.as_ref(), &args) {
        Ok(outcome) => outcome.conclusion.exit_code(),
        Err(error) => {
            eprintln!("forge: {error}");
            ExitCode::from(101)
        }
    }
}

/// What a harness run did.
pub struct HarnessOutcome {
    /// libtest-mimic's tally.
    pub conclusion: Conclusion,
    /// The suites' results (empty with `--list`).
    pub results: Vec<SuiteResult>,
    /// The report files written.
    pub reports: Vec<PathBuf>,
}

/// Runs the suites in `dir` with the given libtest arguments. The error is a
/// report that could not be written; suite errors are failing tests.
pub fn run(dir: &Path, args: &Arguments) -> Result<HarnessOutcome, crate::error::ReportError> {
    let root = package_root();
    let dir = resolve(dir, &root);
    let (suites, broken) = load(&dir);

    let board = Arc::new(Board::default());
    let mut trials = Vec::new();
    let mut index = Vec::new();
    for (s, suite) in suites.iter().enumerate() {
        for (d, data) in suite.datasets.iter().enumerate() {
            for (b, name) in data.test_names.iter().enumerate() {
                let slot = trials.len();
                let board = Arc::clone(&board);
                trials.push(
                    Trial::test(name.clone(), move || board.wait(slot))
                        .with_ignored_flag(data.ignored[b]),
                );
                index.push(BatchId {
                    suite: s,
                    dataset: d,
                    batch: b,
                });
            }
        }
    }
    for (name, error) in &broken {
        let message = error.clone();
        trials.push(Trial::test(name.clone(), move || Err(message.into())));
    }

    let selected: Vec<bool> = trials[..index.len()]
        .iter()
        .map(|t| !args.list && !args.is_filtered_out(t) && !args.is_ignored(t))
        .collect();
    // Listed and reported in name order, whatever the order of the files.
    trials.sort_by(|a, b| a.name().cmp(b.name()));

    if args.list {
        return Ok(HarnessOutcome {
            conclusion: libtest_mimic::run(args, trials),
            results: Vec::new(),
            reports: Vec::new(),
        });
    }

    board.reset(index.len());
    let mut slots = std::collections::HashMap::with_capacity(index.len());
    for (slot, id) in index.iter().enumerate() {
        slots.insert(*id, slot);
    }
    let cancel = CancellationToken::new();
    let engine = {
        let board = Arc::clone(&board);
        let selected = selected.clone();
        let slots = slots.clone();
        let cancel = cancel.clone();
        let mut suites = suites;
        std::thread::spawn(move || {
            // Trials waiting for a result must never hang, even if the run panics.
            let _finish = FinishOnDrop(Arc::clone(&board));
            let results = execute(&mut suites, &selected, &slots, &board, cancel);
            (suites, results)
        })
    };

    let conclusion = libtest_mimic::run(args, trials);
    let (suites, results) = match engine.join() {
        Ok(done) => done,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    let broken_selected: Vec<(String, String)> = broken
        .into_iter()
        .filter(|(name, _)| !args.is_filtered_out(&Trial::test(name.clone(), || Ok(()))))
        .collect();
    let reports = if selected.iter().any(|s| *s) || !broken_selected.is_empty() {
        let reported: Vec<Reported<'_>> = suites
            .iter()
            .zip(&results)
            .filter(|(_, r)| !r.records.is_empty() || !r.response.is_success())
            .map(|(suite, result)| Reported {
                result,
                secrets: suite.secrets(),
            })
            .collect();
        let out = report::out_dir(&root);
        let written = report::write_all(&out, &reported, &broken_selected)?;
        eprintln!("forge: reports written to {}", out.display());
        if cancel.is_cancelled() {
            eprintln!("forge: interrupted; partial reports written");
        }
        written
    } else {
        Vec::new()
    };
    Ok(HarnessOutcome {
        conclusion,
        results,
        reports,
    })
}

fn execute(
    suites: &mut [Suite],
    selected: &[bool],
    slots: &std::collections::HashMap<BatchId, usize>,
    board: &Arc<Board>,
    cancel: CancellationToken,
) -> Vec<SuiteResult> {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            board.abort(&format!("cannot start the tokio runtime: {error}"));
            return Vec::new();
        }
    };
    let secrets: Vec<crate::secrets::Secrets> = suites.iter().map(Suite::secrets).collect();
    let sink = {
        let board = Arc::clone(board);
        let slots = slots.clone();
        move |record: &BatchRecord| {
            if record.selected {
                if let Some(&slot) = slots.get(&record.id) {
                    let verdict = verdict(record)
                        .map_err(|message| report::redact(&message, &secrets[record.id.suite]));
                    board.post(slot, verdict);
                }
            }
        }
    };
    let is_selected = |id: BatchId| slots.get(&id).is_some_and(|&slot| selected[slot]);
    runtime.block_on(async {
        // Watching before the first turn is sent, so no signal is missed.
        crate::interrupt::stop_on_signal(cancel.clone());
        run_suites(suites, &is_selected, Arc::new(sink), cancel).await
    })
}

fn verdict(record: &BatchRecord) -> Result<(), String> {
    if record.passed {
        Ok(())
    } else {
        let message = record.message.as_deref().unwrap_or("failed");
        Err(format!("{message}\nanswer: {}", record.answer()))
    }
}

/// Marks the board finished when dropped, on return or on panic.
struct FinishOnDrop(Arc<Board>);

impl Drop for FinishOnDrop {
    fn drop(&mut self) {
        self.0.finish();
    }
}

/// Results handed from the engine to the trials waiting on them.
#[derive(Default)]
struct Board {
    state: Mutex<BoardState>,
    ready: Condvar,
}

#[derive(Default)]
struct BoardState {
    results: Vec<Option<Result<(), String>>>,
    /// The slots trials are blocked on: a post wakes them only for these.
    waiting: Vec<usize>,
    finished: bool,
    aborted: Option<String>,
}

impl Board {
    fn lock(&self) -> std::sync::MutexGuard<'_, BoardState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reset(&self, count: usize) {
        self.lock().results = vec![None; count];
    }

    fn post(&self, slot: usize, result: Result<(), String>) {
        let mut state = self.lock();
        if let Some(entry) = state.results.get_mut(slot) {
            *entry = Some(result);
        }
        if state.waiting.contains(&slot) {
            drop(state);
            self.ready.notify_all();
        }
    }

    fn finish(&self) {
        self.lock().finished = true;
        self.ready.notify_all();
    }

    fn abort(&self, message: &str) {
        self.lock().aborted = Some(message.to_owned());
        self.ready.notify_all();
    }

    fn wait(&self, slot: usize) -> Result<(), Failed> {
        let mut state = self.lock();
        loop {
            if let Some(result) = state.results.get_mut(slot).and_then(Option::take) {
                return result.map_err(Failed::from);
            }
            if let Some(message) = &state.aborted {
                return Err(message.clone().into());
            }
            if state.finished {
                return Err("the run ended without a result for this batch".into());
            }
            state.waiting.push(slot);
            state = self.ready.wait(state).unwrap_or_else(|e| e.into_inner());
            if let Some(at) = state.waiting.iter().position(|&s| s == slot) {
                state.waiting.swap_remove(at);
            }
        }
    }
}

/// Loads every suite of `dir`; a suite that cannot be loaded becomes a
/// failing test named after its file, so the others still run.
fn load(dir: &Path) -> (Vec<Suite>, Vec<(String, String)>) {
    let files = match suite::discover(dir) {
        Ok(files) => files,
        Err(error) => {
            return (
                Vec::new(),
                vec![("forge::suites".to_owned(), error.to_string())],
            )
        }
    };
    let mut suites = Vec::new();
    let mut broken = Vec::new();
    for file in files {
        match Suite::load(&file) {
            Ok(suite) => suites.push(suite),
            Err(error) => broken.push((load_test_name(&file), error.to_string())),
        }
    }
    // Every suite whose name an earlier one took fails, so no two write one report.
    let mut seen: std::collections::HashMap<String, PathBuf> = std::collections::HashMap::new();
    suites.retain(|suite| match seen.get(&suite.name) {
        Some(first) => {
            broken.push((
                load_test_name(&suite.path),
                format!(
                    "{}: duplicate suite name {:?} (also in {})",
                    suite.path.display(),
                    suite.name,
                    first.display()
                ),
            ));
            false
        }
        None => {
            seen.insert(suite.name.clone(), suite.path.clone());
            true
        }
    });
    (suites, broken)
}

fn load_test_name(file: &Path) -> String {
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().replace(char::is_whitespace, "_"))
        .unwrap_or_default();
    format!("{stem}::load")
}

/// The package being tested: `CARGO_MANIFEST_DIR` under `cargo test`, else
/// the working directory.
fn package_root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn resolve(dir: &Path, root: &Path) -> PathBuf {
    if dir.is_absolute() || dir.exists() {
        dir.to_owned()
    } else {
        root.join(dir)
    }
}
