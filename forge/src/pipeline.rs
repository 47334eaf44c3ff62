//! One way through forge, for every front end:
//!
//! ```text
//! load (suites + located load failures)      crate::load
//!   -> select (one Selection)                crate::select
//!   -> run (engine; one record per batch)    crate::run, crate::engine
//!   -> report (Reporter: JSON, JUnit, ...)   crate::report
//! ```
//!
//! [`execute`] runs the last two steps: it feeds the run's record stream to
//! a [`Reporter`] while the run goes on, then hands it each suite's report
//! and the run's end. `forge run` and the `cargo test` harness differ only
//! in how they load, select and which reporters they tee; the payload API
//! (`forge run --payload`, `forge serve`, the Lambda function) runs its
//! datasets on the same engine.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::cassette::Cassettes;
use crate::error::ReportError;
use crate::load::LoadFailure;
use crate::report::whole::WholeSuite;
use crate::report::{Reporter, RunEnd, SuiteHead, SuiteReport};
use crate::run::{self, BatchRecord, SuiteRun};
use crate::select::{BatchId, Selection};
use crate::suite::{BatchLocation, Suite};

/// What a run and its reports came to.
#[derive(Debug)]
pub struct Outcome {
    /// Every suite's report, in order (answered datasets freed).
    pub suites: Vec<SuiteReport>,
    /// The report files written, or the first report that could not be.
    pub reports: Result<Vec<PathBuf>, ReportError>,
    /// Whether the run was interrupted.
    pub interrupted: bool,
}

impl Outcome {
    /// The selected batches' records.
    pub fn selected(&self) -> impl Iterator<Item = &BatchRecord> {
        self.suites
            .iter()
            .flat_map(|s| &s.records)
            .filter(|r| r.selected)
    }

    /// How many selected batches passed and failed.
    pub fn tally(&self) -> (usize, usize) {
        let passed = self.selected().filter(|r| r.passed).count();
        (passed, self.selected().count() - passed)
    }

    /// How many batches were skipped (ignored, see [`BatchRecord::skipped`]).
    pub fn skipped(&self) -> usize {
        let records = self.suites.iter().flat_map(|s| &s.records);
        records.filter(|r| r.skipped).count()
    }

    /// Whether every selected batch passed, every suite could run and the
    /// run was not interrupted.
    pub fn passed(&self) -> bool {
        !self.interrupted && self.suites.iter().all(SuiteReport::passed)
    }
}

/// Runs the `selection` of `suites` (taken: the run moves their turns into
/// its results) and reports it to `reporter`: the records as they come
/// (from the engine's workers, one at a time), then each suite, then the
/// end of the run (with the load failures a report shows). `cassettes`
/// says where replies replay from and are recorded to.
pub async fn execute<R: Reporter + 'static>(
    mut suites: Vec<Suite>,
    selection: &Selection,
    reporter: R,
    load_failures: &[LoadFailure],
    cassettes: &Cassettes,
    cancel: CancellationToken,
) -> Outcome {
    let skipped: Vec<Vec<BatchRecord>> = suites
        .iter()
        .enumerate()
        .map(|(index, suite)| skipped_records(index, suite, selection))
        .collect();
    let live = Arc::new(Mutex::new(Live {
        reporter,
        records: vec![Vec::new(); suites.len()],
        locations: suites
            .iter()
            .map(|s| {
                s.datasets
                    .iter()
                    .map(|d| Arc::clone(&d.locations))
                    .collect()
            })
            .collect(),
    }));
    let sink = {
        let live = Arc::clone(&live);
        move |record: BatchRecord| live.lock().unwrap_or_else(|e| e.into_inner()).take(record)
    };
    let runs = run::run(
        &mut suites,
        selection,
        Arc::new(sink),
        cassettes,
        cancel.clone(),
    )
    .await;
    // What is left of the suites (names, checks) is not needed by the
    // reports: free it before they are built.
    drop(suites);
    // Cassettes are outputs too: one that could not be written fails the
    // run's reports.
    let mut runs = runs;
    let cassettes: Vec<_> = runs.iter_mut().filter_map(|r| r.cassette.take()).collect();
    let mut live = live.lock().unwrap_or_else(|e| e.into_inner());
    let records = std::mem::take(&mut live.records);
    let wholes: Vec<WholeSuite> = runs
        .into_iter()
        .zip(records)
        .zip(skipped)
        .enumerate()
        .map(|(index, whole)| suite_report(index, whole))
        .collect();
    let reporter = &mut live.reporter;
    let mut reports = Vec::with_capacity(wholes.len());
    let mut written = Ok(());
    for whole in wholes {
        match whole.feed(reporter) {
            Ok(report) => reports.push(report),
            Err(error) => {
                written = Err(error);
                break;
            }
        }
    }
    let written = written
        .and_then(|()| {
            reporter.finish(&RunEnd {
                suites: &reports,
                load_failures,
                interrupted: cancel.is_cancelled(),
            })
        })
        .and_then(|mut files| {
            for cassette in cassettes {
                files.push(cassette?);
            }
            Ok(files)
        });
    Outcome {
        suites: reports,
        reports: written,
        interrupted: cancel.is_cancelled(),
    }
}

/// The reporter and the records of a run in progress.
struct Live<R> {
    reporter: R,
    /// Each suite's records, in the order they came.
    records: Vec<Vec<BatchRecord>>,
    /// Where each batch is written, per suite and dataset.
    locations: Vec<Vec<Arc<[BatchLocation]>>>,
}

impl<R: Reporter> Live<R> {
    fn take(&mut self, mut record: BatchRecord) {
        record.location = location(&self.locations, record.id);
        self.reporter.on_record(&record);
        if let Some(records) = self.records.get_mut(record.id.suite) {
            records.push(record);
        }
    }
}

/// Where the batch `id` is written.
fn location(locations: &[Vec<Arc<[BatchLocation]>>], id: BatchId) -> Option<BatchLocation> {
    let dataset = locations.get(id.suite)?.get(id.dataset)?;
    dataset.get(id.batch).cloned()
}

/// The records of a suite's skipped batches, as if none ran (one that ran
/// for a later turn of its session keeps its record, marked skipped).
fn skipped_records(index: usize, suite: &Suite, selection: &Selection) -> Vec<BatchRecord> {
    let mut records = Vec::new();
    for (d, data) in suite.datasets.iter().enumerate() {
        for (b, test) in data.test_names.iter().enumerate() {
            let id = BatchId {
                suite: index,
                dataset: d,
                batch: b,
            };
            if selection.is_skipped(id) {
                records.push(BatchRecord {
                    id,
                    test: test.clone(),
                    selected: false,
                    passed: false,
                    message: None,
                    runs: Vec::new(),
                    checks: Vec::new(),
                    skipped: true,
                    location: data.locations.get(b).cloned(),
                });
            }
        }
    }
    records
}

fn suite_report(
    index: usize,
    ((run, mut records), skipped): ((SuiteRun, Vec<BatchRecord>), Vec<BatchRecord>),
) -> WholeSuite {
    let key = |r: &BatchRecord| (r.id.dataset, r.id.batch);
    records.sort_by_key(key);
    let mut unrun = Vec::new();
    for placeholder in skipped {
        match records.binary_search_by_key(&key(&placeholder), key) {
            Ok(at) => records[at].skipped = true,
            Err(_) => unrun.push(placeholder),
        }
    }
    if !unrun.is_empty() {
        records.extend(unrun);
        records.sort_by_key(key);
    }
    WholeSuite {
        head: SuiteHead {
            index,
            name: run.name,
            system: run.system,
            secrets: run.secrets,
        },
        response: run.response,
        origins: run.origins,
        records,
    }
}
