//! The third step of the pipeline: runs the selected batches of loaded
//! suites (and the earlier turns of their sessions), every suite at once,
//! each with its own runner, policy and concurrency, and turns each batch's
//! outcome (all its `repeat` runs) into one [`BatchRecord`], sent to the
//! record stream as soon as it is known.
//!
//! A record's messages and answers are redacted here, once, with the
//! suite's [`Secrets`]; the suite's answered datasets go out unredacted
//! ([`Answered`]), with the suite's secrets in its [`SuiteRun`] for the
//! Fair-Forge JSON to redact as it writes them.
//!
//! A suite's datasets are taken out of it one at a time as the run
//! reaches them (from their files: see [`Suite::take_datasets`]), and go
//! out in order once done ([`RunEvents::dataset`]); the run holds at most
//! the suite's sessions in flight plus a small window of finished datasets
//! waiting for an earlier one, whatever the suite's size.
//!
//! A turn whose checks include judged ones (`answer_correctness`,
//! `rubric`) and whose runner call succeeded is judged on a task of its
//! own, so the session's next turn does not wait for the judge; its run's
//! record is made when the judge has ruled, and the suite's run ends once
//! every such task has. A failed runner call is not judged.
//!
//! Each run's record carries what its runner call and its judge calls
//! spent (tokens, and cost at the suite's prices); the suite's [`Meter`]
//! adds the cost up as it comes, and once the suite's `budget` is spent
//! its [`Halt`](crate::Halt) stops the engine from sending new turns.

mod collect;
mod order;
pub(crate) mod suite;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::cassette::Cassettes;
use crate::check::{CheckResult, Checks};
use crate::error::ReportError;
use crate::runner::BatchOutcome;
use crate::schema::{Dataset, Summary};
use crate::secrets::Secrets;
use crate::select::{BatchId, Select};
use crate::suite::Suite;
use crate::usage::Spend;

/// The verdict on one batch, as a test case. Its texts are redacted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchRecord {
    /// Where the batch sits.
    pub id: BatchId,
    /// Its test name, `<suite>::<session_id>::<qa_id>`.
    pub test: String,
    /// Whether the batch was selected (an earlier turn run only to keep the
    /// conversation intact is not).
    pub selected: bool,
    /// Whether the test passed: enough of its runs succeeded and met every
    /// expectation.
    pub passed: bool,
    /// Why it failed.
    pub message: Option<String>,
    /// Each run of the batch (one unless the suite says `repeat`).
    pub runs: Vec<RunRecord>,
    /// The results of the checks on its runs together (`pass_pow_k`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckResult>,
    /// Whether the batch is skipped: ignored (`ignore: true`), and not
    /// asked for (libtest's `--ignored`). It is not selected; it ran only
    /// when a later turn of its session needed it, and its runs are not its
    /// verdict (JUnit's `<skipped/>`, cargo test's "ignored").
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
    /// Where the batch is written, for CI to link to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<crate::suite::BatchLocation>,
}

impl BatchRecord {
    /// The answer, or `[ERROR] ...`; with several runs, one line per run.
    pub fn answer(&self) -> String {
        match self.runs.as_slice() {
            [one] => one.answer.clone(),
            runs => runs
                .iter()
                .enumerate()
                .map(|(k, run)| format!("run {}: {}", k + 1, run.answer))
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    /// The time of all runs, in ms.
    pub fn time_ms(&self) -> f64 {
        self.runs.iter().map(|r| r.time_ms).sum()
    }
}

/// One run of a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The session id the run used (`<session_id>-run<k>` with `repeat`).
    pub session_id: String,
    /// Whether the runner call succeeded.
    pub success: bool,
    /// Whether the call succeeded and every check held.
    pub passed: bool,
    /// Why it did not pass.
    pub message: Option<String>,
    /// The answer, or `[ERROR] ...`.
    pub answer: String,
    /// The turn's time in ms.
    pub time_ms: f64,
    /// The result of each expectation (none when the call failed).
    pub checks: Vec<CheckResult>,
    /// What the runner call spent, when the runner reported its usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Spend>,
    /// What judging the turn spent, when the judge reported its usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge_usage: Option<Spend>,
}

impl RunRecord {
    /// The record of a run whose checks (none when the call failed) gave
    /// `checks`, and whose runner and judge spent `spent`.
    fn new(
        session_id: &str,
        outcome: &BatchOutcome,
        (checks, spent): (Vec<CheckResult>, Spent),
        secrets: &Secrets,
    ) -> Self {
        let message = match &outcome.error {
            None => {
                let failed: Vec<String> = checks
                    .iter()
                    .filter(|c| !c.passed)
                    .map(|c| format!("check `{}` failed: {}", c.check, c.detail))
                    .collect();
                (!failed.is_empty()).then(|| failed.join("\n"))
            }
            Some(error) => Some(error.message.clone()),
        };
        RunRecord {
            session_id: session_id.to_owned(),
            success: outcome.is_success(),
            passed: outcome.is_success() && message.is_none(),
            message: message.map(|m| secrets.redact(&m).into_owned()),
            answer: secrets.redact(&outcome.answer()).into_owned(),
            time_ms: outcome.time_ms,
            checks,
            usage: spent.runner,
            judge_usage: spent.judge,
        }
    }
}

/// What a turn's runner call and its judge calls spent.
#[derive(Debug, Clone, Copy, Default)]
struct Spent {
    runner: Option<Spend>,
    judge: Option<Spend>,
}

/// The record of a batch from its runs: passed when `needed` of them did
/// and the checks on the runs together (`pass_pow_k`) held.
fn verdict(
    id: BatchId,
    test: &str,
    selected: bool,
    runs: Vec<RunRecord>,
    needed: usize,
    expect: &Checks,
) -> BatchRecord {
    let passes = runs.iter().filter(|r| r.passed).count();
    let checks = if runs.len() > 1 {
        expect.evaluate_runs(passes, runs.len())
    } else {
        Vec::new()
    };
    let held = checks.iter().all(|c| c.passed);
    let passed = passes >= needed && held;
    let message = if runs.len() == 1 {
        runs[0].message.clone()
    } else if passed {
        None
    } else {
        let mut lines = vec![format!(
            "{passes} of {} runs passed, {needed} needed",
            runs.len()
        )];
        lines.extend(
            checks
                .iter()
                .filter(|c| !c.passed)
                .map(|c| format!("check `{}` failed: {}", c.check, c.detail)),
        );
        for (k, run) in runs.iter().enumerate() {
            if let Some(message) = &run.message {
                lines.push(format!("run {}: {}", k + 1, message.replace('\n', "\n  ")));
            }
        }
        Some(lines.join("\n"))
    };
    BatchRecord {
        id,
        test: test.to_owned(),
        selected,
        passed,
        message,
        runs,
        checks,
        skipped: false,
        location: None,
    }
}

/// What one suite's run left besides its records and datasets.
#[derive(Debug)]
pub struct SuiteRun {
    /// The error that kept the suite from running (its runner's
    /// configuration, its cassette, a dataset file that could no longer be
    /// read), redacted.
    pub error: Option<String>,
    /// The cassette written (with `--record`), or why it could not be.
    pub cassette: Option<Result<PathBuf, ReportError>>,
    /// The most datasets of the suite its run held at once.
    pub held: usize,
}

/// Where an answered dataset of a response comes from: the suite's dataset
/// and which of its `repeat` runs (0 without `repeat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Origin {
    /// Index of the dataset within the suite.
    pub dataset: usize,
    /// Index of the run.
    pub run: usize,
}

/// One run of a suite's dataset, answered: a dataset of the Fair-Forge
/// response, with its summary.
#[derive(Debug, Clone)]
pub struct Answered {
    /// The dataset with its answers (not yet redacted: the summary JSON
    /// redacts it with the suite's secrets as it writes it).
    pub dataset: Dataset,
    /// Its summary.
    pub summary: Summary,
    /// Which dataset of the suite, and which of its runs.
    pub origin: Origin,
}

/// A dataset of a suite, done: its records (turn order, the skipped
/// batches' in) and its answered datasets (run order).
#[derive(Debug, Clone)]
pub struct DatasetDone {
    /// Index of the suite.
    pub suite: usize,
    /// Index of the dataset within the suite.
    pub index: usize,
    /// The records of its batches that ran or are skipped.
    pub records: Vec<BatchRecord>,
    /// Its runs' answered datasets.
    pub answered: Vec<Answered>,
}

/// What a run tells as it goes, from the engine's workers.
pub trait RunEvents: Send + Sync {
    /// A batch's record, as soon as its verdict is known.
    fn record(&self, record: &BatchRecord);

    /// A dataset of a suite, once it and every dataset of the suite
    /// before it are done (each suite's datasets in order).
    fn dataset(&self, done: DatasetDone);
}

/// Runs the `select`ed batches of `suites` (their datasets taken out of
/// them, read from their files as the run reaches them), telling `events`
/// each record and each dataset as they are done. A suite whose runner
/// cannot be built fails its selected batches with that error; a suite
/// with nothing selected does not build its runner. With `cassettes`,
/// sessions replay from a recording and live ones are recorded (see
/// [`crate::cassette`]).
pub async fn run(
    suites: &mut [Suite],
    select: &dyn Select,
    events: Arc<dyn RunEvents>,
    cassettes: &Cassettes,
    cancel: CancellationToken,
) -> Vec<SuiteRun> {
    let runs = suites.iter_mut().enumerate().map(|(index, suite)| {
        suite::run_suite(
            index,
            suite,
            select,
            Arc::clone(&events),
            cassettes,
            cancel.clone(),
        )
    });
    join_all(runs).await
}

/// Locks `mutex`, poisoned or not.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
