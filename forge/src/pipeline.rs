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
use crate::report::{Reporter, RunEnd, SuiteReport};
use crate::run::{self, BatchRecord, SuiteRun};
use crate::schema::Response;
use crate::select::Selection;
use crate::suite::Suite;

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
    let live = Arc::new(Mutex::new(Live {
        reporter,
        records: vec![Vec::new(); suites.len()],
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
    let mut reports: Vec<SuiteReport> = runs.into_iter().zip(records).map(suite_report).collect();
    let reporter = &mut live.reporter;
    let written = reports
        .iter_mut()
        .try_for_each(|suite| {
            let seen = reporter.on_suite(suite);
            free_datasets(suite);
            seen
        })
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
}

impl<R: Reporter> Live<R> {
    fn take(&mut self, record: BatchRecord) {
        self.reporter.on_record(&record);
        if let Some(records) = self.records.get_mut(record.id.suite) {
            records.push(record);
        }
    }
}

fn suite_report((run, mut records): (SuiteRun, Vec<BatchRecord>)) -> SuiteReport {
    records.sort_by_key(|r| (r.id.dataset, r.id.batch));
    SuiteReport {
        name: run.name,
        response: run.response,
        origins: run.origins,
        records,
        secrets: run.secrets,
    }
}

/// Drops a suite's answered datasets once reported: the end of the run
/// needs only the records, and this halves the peak of a large run.
fn free_datasets(suite: &mut SuiteReport) {
    if let Response::Success(run) = &mut suite.response {
        run.datasets = Vec::new();
    }
}
