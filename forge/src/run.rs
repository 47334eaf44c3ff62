//! Runs loaded suites: the selected batches (and the earlier turns of their
//! sessions), every suite at once, each with its own runner and concurrency.
//! Shared by the `cargo test` harness and `forge run`.

use std::sync::Arc;

use futures_util::future::join_all;
use tokio_util::sync::CancellationToken;

use crate::check::{CheckResult, Checks, Turn};
use crate::execute::{Engine, Job};
use crate::runner::BatchOutcome;
use crate::schema::{Dataset, Response, RunResponse};
use crate::suite::Suite;

/// Where a batch sits: suite, dataset and turn indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BatchId {
    /// Index of the suite.
    pub suite: usize,
    /// Index of the dataset within the suite.
    pub dataset: usize,
    /// Index of the turn within the dataset.
    pub batch: usize,
}

/// The verdict on one batch, as a test case.
#[derive(Debug, Clone, PartialEq)]
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
#[derive(Debug, Clone, PartialEq)]
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
}

impl RunRecord {
    fn new(session_id: &str, outcome: &BatchOutcome, expect: &Checks) -> Self {
        let batch = &outcome.batch;
        let (checks, message) = if outcome.success {
            let checks = expect.evaluate(&Turn::new(batch, outcome.time_ms));
            let failed: Vec<String> = checks
                .iter()
                .filter(|c| !c.passed)
                .map(|c| format!("check `{}` failed: {}", c.check, c.detail))
                .collect();
            let message = (!failed.is_empty()).then(|| failed.join("\n"));
            (checks, message)
        } else {
            (Vec::new(), outcome.error.clone())
        };
        RunRecord {
            session_id: session_id.to_owned(),
            success: outcome.success,
            passed: outcome.success && message.is_none(),
            message,
            answer: batch.assistant.clone(),
            time_ms: outcome.time_ms,
            checks,
        }
    }
}

fn verdict(
    id: BatchId,
    test: &str,
    selected: bool,
    runs: Vec<RunRecord>,
    needed: usize,
) -> BatchRecord {
    let passes = runs.iter().filter(|r| r.passed).count();
    let passed = passes >= needed;
    let message = if runs.len() == 1 {
        runs[0].message.clone()
    } else if passed {
        None
    } else {
        let mut lines = vec![format!(
            "{passes} of {} runs passed, {needed} needed",
            runs.len()
        )];
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
    }
}

/// The result of one suite.
#[derive(Debug, Clone)]
pub struct SuiteResult {
    /// The suite's name.
    pub name: String,
    /// Its response: the datasets that ran with their summaries, or the
    /// error that kept the suite from running (its runner's configuration).
    pub response: Response,
    /// One record per batch that ran, in suite order.
    pub records: Vec<BatchRecord>,
}

impl SuiteResult {
    /// Whether every selected batch passed.
    pub fn passed(&self) -> bool {
        self.response.is_success() && self.records.iter().all(|r| r.passed || !r.selected)
    }
}

/// Called with every record as soon as its batch finishes.
pub type RecordSink = dyn Fn(&BatchRecord) + Send + Sync;

/// Runs `suites`. `selected(id)` says which batches are wanted; a dataset
/// runs up to its last selected turn, and a dataset with none is not
/// contacted. A suite whose runner cannot be built fails all its selected
/// batches with that error.
///
/// The turns of the datasets that run are moved out of the suites into the
/// results (not copied), so a large run holds each batch once.
pub async fn run_suites(
    suites: &mut [Suite],
    selected: &(dyn Fn(BatchId) -> bool + Sync),
    sink: Arc<RecordSink>,
    cancel: CancellationToken,
) -> Vec<SuiteResult> {
    let runs = suites
        .iter_mut()
        .enumerate()
        .map(|(index, suite)| run_suite(index, suite, selected, Arc::clone(&sink), cancel.clone()));
    join_all(runs).await
}

async fn run_suite(
    index: usize,
    suite: &mut Suite,
    selected: &(dyn Fn(BatchId) -> bool + Sync),
    sink: Arc<RecordSink>,
    cancel: CancellationToken,
) -> SuiteResult {
    // (dataset index, limit) of each session to contact.
    let mut plan = Vec::new();
    for (d, data) in suite.datasets.iter().enumerate() {
        let last = (0..data.dataset.conversation.len()).rev().find(|&b| {
            selected(BatchId {
                suite: index,
                dataset: d,
                batch: b,
            })
        });
        if let Some(last) = last {
            plan.push((d, last + 1));
        }
    }
    if plan.is_empty() {
        // Nothing selected: the runner is not even built.
        return SuiteResult {
            name: suite.name.clone(),
            response: Response::Success(RunResponse::new(Vec::new())),
            records: Vec::new(),
        };
    }
    let runner = match suite.build_runner() {
        Ok(runner) => runner,
        Err(error) => {
            let message = error.to_string();
            let mut records = Vec::new();
            for &(d, limit) in &plan {
                for b in 0..limit {
                    let id = BatchId {
                        suite: index,
                        dataset: d,
                        batch: b,
                    };
                    let record = BatchRecord {
                        id,
                        test: suite.datasets[d].test_names[b].clone(),
                        selected: selected(id),
                        passed: false,
                        message: Some(message.clone()),
                        runs: Vec::new(),
                    };
                    sink(&record);
                    records.push(record);
                }
            }
            return SuiteResult {
                name: suite.name.clone(),
                response: Response::error(message),
                records,
            };
        }
    };
    // One job per run of each planned dataset; repeated runs are sessions
    // of their own.
    let mut jobs = Vec::new();
    let mut job_of = Vec::new();
    for &(d, limit) in &plan {
        let data = &mut suite.datasets[d];
        for run in 0..data.runs {
            let mut dataset = if run + 1 == data.runs {
                // The last (usually the only) run takes the suite's turns.
                let conversation = std::mem::take(&mut data.dataset.conversation);
                Dataset {
                    conversation,
                    ..data.dataset.clone()
                }
            } else {
                data.dataset.clone()
            };
            if data.runs > 1 {
                dataset.session_id = format!("{}-run{}", dataset.session_id, run + 1);
            }
            jobs.push(Job { dataset, limit });
            job_of.push((d, run));
        }
    }
    let records = Arc::new(std::sync::Mutex::new(Vec::new()));
    let observer = {
        let records = Arc::clone(&records);
        let meta: Vec<DatasetMeta> = suite
            .datasets
            .iter()
            .enumerate()
            .map(|(d, data)| DatasetMeta {
                names: Arc::clone(&data.test_names),
                expects: Arc::clone(&data.expects),
                selected: (0..data.test_names.len())
                    .map(|b| {
                        selected(BatchId {
                            suite: index,
                            dataset: d,
                            batch: b,
                        })
                    })
                    .collect(),
                runs: data.runs,
                needed: data.min_passes,
            })
            .collect();
        let session_ids: Vec<String> = jobs.iter().map(|j| j.dataset.session_id.clone()).collect();
        // The runs of a repeated batch seen so far: how many, and each by run.
        let pending = std::sync::Mutex::new(std::collections::HashMap::<
            (usize, usize),
            (usize, Vec<Option<RunRecord>>),
        >::new());
        move |job: usize, batch: usize, outcome: &BatchOutcome| {
            let (d, run) = job_of[job];
            let meta = &meta[d];
            let record = RunRecord::new(&session_ids[job], outcome, &meta.expects[batch]);
            let runs = if meta.runs == 1 {
                vec![record]
            } else {
                let mut pending = pending.lock().unwrap_or_else(|e| e.into_inner());
                let (seen, slots) = pending
                    .entry((d, batch))
                    .or_insert_with(|| (0, vec![None; meta.runs]));
                if slots[run].replace(record).is_none() {
                    *seen += 1;
                }
                if *seen < meta.runs {
                    return;
                }
                let (_, done) = pending.remove(&(d, batch)).unwrap_or_default();
                done.into_iter().flatten().collect()
            };
            let id = BatchId {
                suite: index,
                dataset: d,
                batch,
            };
            let record = verdict(
                id,
                &meta.names[batch],
                meta.selected[batch],
                runs,
                meta.needed,
            );
            sink(&record);
            if let Ok(mut records) = records.lock() {
                records.push(record);
            }
        }
    };
    let engine = Engine::new(runner)
        .policy(suite.policy.clone())
        .concurrency(suite.concurrency)
        .cancel_on(cancel);
    let results = engine.run(jobs, Arc::new(observer)).await;
    let mut records = std::mem::take(&mut *records.lock().unwrap_or_else(|e| e.into_inner()));
    records.sort_by_key(|r| (r.id.dataset, r.id.batch));
    SuiteResult {
        name: suite.name.clone(),
        response: Response::Success(RunResponse::new(results)),
        records,
    }
}

struct DatasetMeta {
    names: Arc<[String]>,
    expects: Arc<[Arc<Checks>]>,
    selected: Vec<bool>,
    runs: usize,
    needed: usize,
}

impl SuiteResult {
    /// forge's own addition to the summary JSON: per batch and run, whether it
    /// passed and the result of each expectation. `None` when the suite has no
    /// expectation and no repeat, so the file is then exactly Fair-Forge's.
    pub fn checks(&self) -> Option<serde_json::Value> {
        let interesting = self
            .records
            .iter()
            .any(|r| r.runs.len() > 1 || r.runs.iter().any(|run| !run.checks.is_empty()));
        if !interesting {
            return None;
        }
        let rows = self
            .records
            .iter()
            .filter(|r| r.selected)
            .map(|r| {
                serde_json::json!({
                    "test": r.test,
                    "passed": r.passed,
                    "runs": r.runs.iter().map(|run| serde_json::json!({
                        "session_id": run.session_id,
                        "passed": run.passed,
                        "success": run.success,
                        "checks": run.checks,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        Some(serde_json::Value::Array(rows))
    }
}
