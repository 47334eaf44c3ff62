//! The `cargo test` harness: suites become libtest-mimic trials, one per
//! batch, named `<suite>::<session_id>::<qa_id>`.
//!
//! A test target with `harness = false` holds one line, [`harness!`](crate::harness!):
//!
//! ```no_run
//! forge::harness!("suites");
//! ```
//!
//! It expands to a `fn main` calling [`main`], and to a `#[test]` that only
//! libtest compiles: a target that lacks `harness = false` (libtest's own
//! harness, which never calls `main` and would run zero tests and report
//! ok) fails that test, which says what to add to `Cargo.toml`.
//!
//! The selected batches run on one tokio runtime while libtest-mimic reports
//! them: sessions concurrently (up to each suite's `concurrency`), turns in
//! order, a selected batch's earlier turns first (unreported). Sessions with no
//! selected batch are not contacted, and `--list` sends nothing at all. After
//! the run, `<suite>.json`, `junit.xml`, `report.html` and `parts/run.json` are written
//! under `$FORGE_OUT_DIR`, replacing the previous run's reports; ignored
//! batches are skipped cases. Under cargo nextest (one process per test)
//! each process writes only a part of its own, for `forge merge`.
//!
//! With `FORGE_BASELINE=DIR` (`forge run --baseline`), each batch is
//! compared with the run in `DIR`: a batch that regressed fails its test
//! (`regressed since baseline: ...`, even if it passes), and the JUnit
//! report marks it; a baseline that cannot be read is the failing test
//! `forge::baseline`. Under GitHub Actions each failing batch is also an
//! `::error` annotation (printed after libtest's summary) and the run's
//! summary is appended to `$GITHUB_STEP_SUMMARY` ([`crate::report::github`]).
//!
//! Ctrl-C and SIGTERM work as in `forge run`: the first stops new work (turns
//! not yet sent fail as interrupted, turns in flight finish) and the partial
//! reports of this run are written; a second exits at once with 130.
//!
//! It goes through the same pipeline as `forge run` (see the README's
//! Layout): the same load, a selection from libtest's filters, the same run,
//! and the reporters of `forge run` teed with its own, which posts each
//! selected batch's verdict to the trial waiting for it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Condvar, Mutex};

use libtest_mimic::{Arguments, Conclusion, Failed, Trial};
use tokio_util::sync::CancellationToken;

use crate::cassette::Cassettes;
use crate::diff::Baseline;
use crate::error::ReportError;
use crate::libtest::{self, Case};
use crate::load::{load, LoadFailure, Loaded};
use crate::partition::Partition;
use crate::pipeline;
use crate::report::github::{Deferred, Github};
use crate::report::junit::Junit;
use crate::report::part::{Header, Nextest, Part};
use crate::report::since::Baseline as Marks;
use crate::report::summary::SummaryJson;
use crate::report::sweep::Parts;
use crate::report::{self, Reporter, Tee};
use crate::run::BatchRecord;
use crate::select::{shard_members, Selection};
use crate::suite::{LoadOptions, Suite};

/// The entry point of a `cargo test` target (`harness = false`) that runs
/// the suites in a directory (`"suites"` when none is given): a `fn main`
/// calling [`harness::main`](crate::harness::main), and a `#[test]`,
/// `forge_harness_needs_harness_false`, that fails with the fix.
///
/// Without `harness = false`, Cargo builds the target with libtest's
/// harness, which ignores `main`: no suite would run, and `cargo test`
/// would say ok. Under `harness = false` a `#[test]` function is not
/// compiled at all, so the guard exists only where it is needed.
///
/// ```no_run
/// // tests/suites.rs, the `[[test]]` target `suites` with `harness = false`
/// forge::harness!("suites");
/// ```
#[macro_export]
macro_rules! harness {
    () => {
        $crate::harness!("suites");
    };
    ($dir:expr $(,)?) => {
        #[allow(dead_code)]
        fn main() -> ::std::process::ExitCode {
            $crate::harness::main($dir)
        }

        /// Compiled only by libtest's harness: `harness = false` is missing.
        #[test]
        fn forge_harness_needs_harness_false() {
            $crate::harness::needs_harness_false(
                module_path!(),
                file!(),
                option_env!("CARGO_MANIFEST_DIR"),
            )
        }
    };
}

/// The failure of [`harness!`](crate::harness!)'s guard test: the test
/// crate `target`, whose source is `file` (as rustc was given it: relative
/// to the workspace's root) in the package at `package`, was built with
/// libtest's harness. Not a public API.
#[doc(hidden)]
pub fn needs_harness_false(target: &str, file: &str, package: Option<&str>) -> ! {
    let file = package
        .map(Path::new)
        .and_then(|package| path_in_package(package, Path::new(file)))
        .unwrap_or_else(|| PathBuf::from(file));
    let file = file.to_string_lossy().replace('\\', "/");
    panic!(
        "this test target runs forge's harness, but Cargo built it with libtest's, \
         which never calls its `main`: no suite ran.\n\
         Add `harness = false` to the target in Cargo.toml:\n\n\
         [[test]]\nname = \"{target}\"\npath = \"{file}\"\nharness = false\n"
    )
}

/// `file` relative to `package`: the shortest tail of `file` that names a
/// file of the package (rustc's paths of a workspace member start with the
/// member's directory).
fn path_in_package(package: &Path, file: &Path) -> Option<PathBuf> {
    if file.is_absolute() {
        return file.strip_prefix(package).ok().map(Path::to_owned);
    }
    let parts: Vec<_> = file.components().collect();
    (0..parts.len())
        .map(|skip| parts[skip..].iter().collect::<PathBuf>())
        .find(|tail| package.join(tail).is_file())
}

/// Environment variable naming a suites directory to run instead of the
/// one the test target gives [`main`].
pub const SUITES_DIR_ENV: &str = "FORGE_SUITES_DIR";

/// Runs the suites found in `dir` and its subfolders (relative to the package root
/// when it is not found from the working directory), or in
/// `$FORGE_SUITES_DIR` when set, with the process's libtest arguments,
/// writes the reports, and returns the exit code: 0 when every selected
/// batch passed, 101 otherwise.
pub fn main(dir: impl AsRef<Path>) -> ExitCode {
    let args = Arguments::from_args();
    let dir = match std::env::var_os(SUITES_DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => dir.as_ref().to_owned(),
    };
    match run(&dir, &args) {
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
    /// The report files written.
    pub reports: Vec<PathBuf>,
}

/// Runs the suites in `dir` with the given libtest arguments. The error is a
/// report that could not be written; suite errors are failing tests.
pub fn run(dir: &Path, args: &Arguments) -> Result<HarnessOutcome, ReportError> {
    let root = package_root();
    let cassettes = Cassettes::from_env();
    // libtest needs every trial up front: the datasets are read whole.
    let options = LoadOptions {
        offline: cassettes.offline(),
        stream: false,
    };
    let mut loaded = load(&[resolve(dir, &root)], &options);
    let partition = partition(&mut loaded);
    let baseline = baseline(&mut loaded);
    let shard = partition.map(|p| shard_members(&loaded.suites, &p));
    let board = Arc::new(Board {
        show_output: args.show_output,
        ..Board::default()
    });
    let cases = cases(&loaded, shard.as_deref(), &board);
    let mut selection = Selection::new(&loaded.suites, |batch| {
        let probe = Trial::test(batch.name, || Ok(())).with_ignored_flag(batch.ignored);
        !args.list && !args.is_filtered_out(&probe) && !args.is_ignored(&probe)
    });
    // Ignored batches that libtest counts as "ignored" are skipped in the
    // reports; under nextest (one test per process, the others filtered
    // out) every ignored batch is, and `forge merge` keeps each once.
    let under_nextest = Nextest::from_env().is_some();
    selection = selection.skip(&loaded.suites, |batch| {
        let probe = Trial::test(batch.name, || Ok(())).with_ignored_flag(batch.ignored);
        !args.list && (under_nextest || !args.is_filtered_out(&probe)) && args.is_ignored(&probe)
    });
    if let Some(partition) = &partition {
        selection = selection.in_shard(&loaded.suites, partition);
    }
    if args.list {
        return Ok(HarnessOutcome {
            conclusion: run_cases(args, cases),
            reports: Vec::new(),
        });
    }
    let failures: Vec<LoadFailure> = loaded
        .failures
        .iter()
        .filter(|f| !args.is_filtered_out(&Trial::test(&f.test, || Ok(()))))
        .cloned()
        .collect();
    // Reports only when something ran or failed to load, or the shard is
    // to be accounted for in `forge merge`.
    let reported = !selection.is_empty() || selection.skipped_count() > 0;
    let out =
        (reported || !failures.is_empty() || partition.is_some()).then(|| report::out_dir(&root));
    let header = Header::new(
        &loaded.suites,
        partition.map(|p| p.to_string()),
        Nextest::from_env(),
    );
    let nextest = header.nextest.is_some();
    let (github, annotations) = match Github::from_env() {
        Some(github) => {
            let github = github.with_baseline(baseline.clone());
            let github = if nextest {
                github.without_summary()
            } else {
                github
            };
            let (github, lines) = github.deferred();
            (Some(github), Some(lines))
        }
        None => (None, None),
    };
    board.reset(selection.len());
    let engine = {
        let board = Arc::clone(&board);
        let suites = loaded.suites;
        let out = out.clone();
        std::thread::spawn(move || {
            // Trials waiting for a result must never hang, even if the run panics.
            let _finish = FinishOnDrop(Arc::clone(&board));
            let reports = out.map(|out| {
                let reports = reporters(&out, header, baseline.clone());
                match github {
                    Some(github) => reports.with(github),
                    None => reports,
                }
            });
            let trials = Trials {
                board,
                selection: selection.clone(),
                baseline,
            };
            execute(suites, &selection, trials, reports, &failures, &cassettes)
        })
    };
    let conclusion = run_cases(args, cases);
    let outcome = match engine.join() {
        Ok(outcome) => outcome,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    print_annotations(annotations.as_ref());
    let Some(outcome) = outcome else {
        return Ok(HarnessOutcome {
            conclusion,
            reports: Vec::new(),
        });
    };
    let reports = outcome.reports?;
    if let Some(out) = out.filter(|_| !reports.is_empty()) {
        match reports.as_slice() {
            [part] if nextest => eprintln!("forge: part written to {}", part.display()),
            _ => eprintln!("forge: reports written to {}", out.display()),
        }
        if outcome.interrupted {
            eprintln!("forge: interrupted; partial reports written");
        }
    }
    Ok(HarnessOutcome {
        conclusion,
        reports,
    })
}

/// `FORGE_PARTITION`, if set; an invalid one becomes a failing test,
/// `forge::partition`, and nothing is left out.
fn partition(loaded: &mut Loaded) -> Option<Partition> {
    Partition::from_env().unwrap_or_else(|message| {
        loaded.failures.push(LoadFailure {
            test: "forge::partition".to_owned(),
            message,
            location: None,
        });
        None
    })
}

/// `FORGE_BASELINE`, if set; one that cannot be read becomes a failing
/// test, `forge::baseline`.
fn baseline(loaded: &mut Loaded) -> Option<Arc<dyn Marks>> {
    match Baseline::from_env()? {
        Ok(baseline) => Some(Arc::new(baseline)),
        Err(error) => {
            loaded.failures.push(LoadFailure {
                test: "forge::baseline".to_owned(),
                message: format!("{}: {error}", crate::diff::BASELINE_ENV),
                location: None,
            });
            None
        }
    }
}

/// Prints the GitHub annotations kept for after libtest's own output.
fn print_annotations(annotations: Option<&Deferred>) {
    let Some(annotations) = annotations else {
        return;
    };
    let lines = std::mem::take(&mut *annotations.lock().unwrap_or_else(|e| e.into_inner()));
    for line in lines {
        println!("{line}");
    }
}

/// One test per batch of the shard (every batch with no partition), in
/// suite order, waiting on the board for its verdict, and one failing test
/// per suite that could not be loaded; listed and reported in name order.
/// A batch's slot on the board is its [`Selection::index`].
fn cases(loaded: &Loaded, shard: Option<&[Vec<bool>]>, board: &Arc<Board>) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut slot = 0;
    for (s, suite) in loaded.suites.iter().enumerate() {
        for (d, data) in suite.datasets.iter().enumerate() {
            let member = shard.is_none_or(|shard| shard[s][d]);
            for (b, name) in data.test_names.iter().enumerate() {
                if member {
                    let board = Arc::clone(board);
                    let this = slot;
                    cases.push(Case {
                        name: name.clone(),
                        ignored: data.ignored[b],
                        verdict: Box::new(move || board.wait(this)),
                    });
                }
                slot += 1;
            }
        }
    }
    for failure in &loaded.failures {
        let message = failure.message.clone();
        cases.push(Case {
            name: failure.test.clone(),
            ignored: false,
            verdict: Box::new(move || Err(message)),
        });
    }
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    cases
}

/// Runs the cases with libtest-mimic, or with [`libtest`] where
/// libtest-mimic's output would be wrong.
fn run_cases(args: &Arguments, cases: Vec<Case>) -> Conclusion {
    if libtest::needed(args) {
        return libtest::run(args, cases);
    }
    let trials = cases
        .into_iter()
        .map(|case| {
            let verdict = case.verdict;
            Trial::test(case.name, move || verdict().map(drop).map_err(Failed::from))
                .with_ignored_flag(case.ignored)
        })
        .collect();
    libtest_mimic::run(args, trials)
}

/// The reporters writing into `out`: the summary JSON, JUnit, the HTML report and the run's
/// part; under nextest only a part of this process's own (a test's
/// process must not write the reports other processes share).
fn reporters(out: &Path, header: Header, baseline: Option<Arc<dyn Marks>>) -> Tee {
    if let Some(nextest) = &header.nextest {
        let parts = Parts::Nextest(nextest.dir_name());
        return Tee::new()
            .with(Part::new(out, header))
            .replacing(out, parts);
    }
    Tee::new()
        .with(SummaryJson::new(out))
        .with(crate::report::html::HtmlReport::new(out).with_since(baseline.as_ref()))
        .with(Junit::new(out).with_baseline(baseline))
        .with(Part::new(out, header))
        .replacing(out, Parts::Run)
}

/// Runs the selection on a runtime of its own, posting each verdict to the
/// board, and writes the reports with `reports` (none when `None`).
fn execute(
    suites: Vec<Suite>,
    selection: &Selection,
    trials: Trials,
    reports: Option<Tee>,
    failures: &[LoadFailure],
    cassettes: &Cassettes,
) -> Option<pipeline::Outcome> {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            trials
                .board
                .abort(&format!("cannot start the tokio runtime: {error}"));
            return None;
        }
    };
    let mut reporter = Tee::new().with(trials);
    if let Some(reports) = reports {
        reporter = reporter.with(reports);
    }
    let cancel = CancellationToken::new();
    Some(runtime.block_on(async {
        // Watching before the first turn is sent, so no signal is missed.
        crate::interrupt::stop_on_signal(cancel.clone());
        pipeline::execute(suites, selection, reporter, failures, cassettes, cancel).await
    }))
}

/// The harness's reporter: each selected batch's verdict to its trial.
struct Trials {
    board: Arc<Board>,
    selection: Selection,
    /// A batch that regressed since it fails its trial.
    baseline: Option<Arc<dyn Marks>>,
}

impl Reporter for Trials {
    fn on_record(&mut self, record: &BatchRecord) {
        if !record.selected {
            return;
        }
        if let Some(slot) = self.selection.index(record.id) {
            let change = self.baseline.as_ref().and_then(|b| b.mark(record));
            let regression = change
                .filter(|c| c.regressed)
                .map(|c| format!("regressed since baseline: {}", c.describe()));
            self.board
                .post(slot, verdict(record, regression, self.board.show_output));
        }
    }
}

/// A test's verdict: `Ok` with its output (the answer, when shown), or
/// `Err` with its failure text, which says first how the batch regressed
/// since the baseline (a batch that passes but regressed fails).
fn verdict(
    record: &BatchRecord,
    regression: Option<String>,
    show_output: bool,
) -> Result<String, String> {
    if record.passed && regression.is_none() {
        return Ok(match show_output {
            true => format!("answer: {}", record.answer()),
            false => String::new(),
        });
    }
    let mut lines: Vec<String> = regression.into_iter().collect();
    if !record.passed {
        lines.push(record.message.as_deref().unwrap_or("failed").to_owned());
    }
    Err(format!("{}\nanswer: {}", lines.join("\n"), record.answer()))
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
    /// Whether a passing batch's answer is shown (`--show-output`).
    show_output: bool,
}

#[derive(Default)]
struct BoardState {
    results: Vec<Option<Result<String, String>>>,
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

    fn post(&self, slot: usize, result: Result<String, String>) {
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

    fn wait(&self, slot: usize) -> Result<String, String> {
        let mut state = self.lock();
        loop {
            if let Some(result) = state.results.get_mut(slot).and_then(Option::take) {
                return result;
            }
            if let Some(message) = &state.aborted {
                return Err(message.clone());
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
