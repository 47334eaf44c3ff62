//! Runs loaded suites: the selected batches (and the earlier turns of their
//! sessions), every suite at once, each with its own runner and concurrency.
//! Shared by the `cargo test` harness and `forge run`.

use std::sync::Arc;

use futures_util::future::join_all;
use tokio_util::sync::CancellationToken;

use crate::execute::{Engine, Job};
use crate::runner::BatchOutcome;
use crate::schema::{Response, RunResponse};
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
    /// Whether the test passed.
    pub passed: bool,
    /// Why it failed.
    pub message: Option<String>,
    /// The answer (or `[ERROR] ...`).
    pub answer: String,
    /// The turn's time in ms.
    pub time_ms: f64,
}

impl BatchRecord {
    fn new(id: BatchId, test: &str, selected: bool, outcome: &BatchOutcome) -> Self {
        BatchRecord {
            id,
            test: test.to_owned(),
            selected,
            passed: outcome.success,
            message: outcome.error.clone(),
            answer: outcome.batch.assistant.clone(),
            time_ms: outcome.time_ms,
        }
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
pub async fn run_suites(
    suites: &[Suite],
    selected: &(dyn Fn(BatchId) -> bool + Sync),
    sink: Arc<RecordSink>,
    cancel: CancellationToken,
) -> Vec<SuiteResult> {
    let runs = suites
        .iter()
        .enumerate()
        .map(|(index, suite)| run_suite(index, suite, selected, Arc::clone(&sink), cancel.clone()));
    join_all(runs).await
}

async fn run_suite(
    index: usize,
    suite: &Suite,
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
                        answer: String::new(),
                        time_ms: 0.0,
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
    let jobs: Vec<Job> = plan
        .iter()
        .map(|&(d, limit)| Job {
            dataset: suite.datasets[d].dataset.clone(),
            limit,
        })
        .collect();
    let dataset_of: Vec<usize> = plan.iter().map(|&(d, _)| d).collect();
    let records = Arc::new(std::sync::Mutex::new(Vec::new()));
    let observer = {
        let records = Arc::clone(&records);
        let names: Vec<Vec<String>> = suite
            .datasets
            .iter()
            .map(|d| d.test_names.clone())
            .collect();
        let selection: Vec<Vec<bool>> = plan
            .iter()
            .map(|&(d, limit)| {
                (0..limit)
                    .map(|b| {
                        selected(BatchId {
                            suite: index,
                            dataset: d,
                            batch: b,
                        })
                    })
                    .collect()
            })
            .collect();
        let dataset_of = dataset_of.clone();
        move |job: usize, batch: usize, outcome: &BatchOutcome| {
            let d = dataset_of[job];
            let id = BatchId {
                suite: index,
                dataset: d,
                batch,
            };
            let record = BatchRecord::new(id, &names[d][batch], selection[job][batch], outcome);
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
