//! One way through forge, for every front end:
//!
//! ```text
//! load (suites + located load failures)      crate::load
//!   -> select (Rules, or a Selection)        crate::select
//!   -> run (engine; one record per batch)    crate::run, crate::engine
//!   -> report (Reporter: JSON, JUnit, ...)   crate::report
//! ```
//!
//! [`execute`] runs the last two steps: it feeds the run's records and
//! datasets to a [`Reporter`] while the run goes on (each dataset once it
//! and the suite's datasets before it are done, then dropped), then hands
//! it each suite's end and the run's end. `forge run` and the `cargo test`
//! harness differ only in how they load, select and which reporters they
//! tee; the payload API (`forge run --payload`, `forge serve`, the Lambda
//! function) runs its datasets on the same engine.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::cassette::Cassettes;
use crate::error::ReportError;
use crate::load::LoadFailure;
use crate::report::{DatasetReport, Reporter, RunEnd, SuiteHead, SuiteReport, Tally};
use crate::run::{self, BatchRecord, DatasetDone, RunEvents};
use crate::select::Select;
use crate::suite::Suite;

/// What a run and its reports came to.
#[derive(Debug)]
pub struct Outcome {
    /// Every suite's end: what its records came to.
    pub suites: Vec<SuiteReport>,
    /// The report files written, or the first report that could not be.
    pub reports: Result<Vec<PathBuf>, ReportError>,
    /// Whether the run was interrupted.
    pub interrupted: bool,
    /// The most datasets the run held at once, each suite's peak added
    /// up (suites run side by side): bounded by their sessions in flight
    /// plus a small window each, whatever the suites' sizes.
    #[cfg_attr(not(test), allow(dead_code))]
    pub held: usize,
}

impl Outcome {
    /// How many selected batches passed and failed.
    pub fn tally(&self) -> (usize, usize) {
        let passed = self.suites.iter().map(|s| s.tally.passed).sum();
        let failed = self.suites.iter().map(|s| s.tally.failed()).sum();
        (passed, failed)
    }

    /// How many batches were skipped (ignored, see [`BatchRecord::skipped`]).
    pub fn skipped(&self) -> usize {
        self.suites.iter().map(|s| s.tally.skipped).sum()
    }

    /// Whether every selected batch passed, every suite could run and the
    /// run was not interrupted.
    pub fn passed(&self) -> bool {
        !self.interrupted && self.suites.iter().all(SuiteReport::passed)
    }
}

/// Runs the `select`ed batches of `suites` (taken: the run moves their
/// datasets out, one at a time) and reports it to `reporter`: the records
/// as they come (from the engine's workers, one at a time), each dataset
/// in its suite's order, then each suite's end, then the end of the run
/// (with the load failures a report shows). `cassettes` says where replies
/// replay from and are recorded to.
pub async fn execute<R: Reporter + 'static>(
    mut suites: Vec<Suite>,
    select: &dyn Select,
    reporter: R,
    load_failures: &[LoadFailure],
    cassettes: &Cassettes,
    cancel: CancellationToken,
) -> Outcome {
    let heads: Vec<SuiteHead> = suites
        .iter()
        .enumerate()
        .map(|(index, suite)| SuiteHead {
            index,
            name: suite.name.clone(),
            system: suite.system.clone(),
            secrets: suite.secrets(),
        })
        .collect();
    let live = Arc::new(Live {
        state: Mutex::new(LiveState {
            reporter,
            tallies: vec![Tally::default(); heads.len()],
            error: None,
        }),
        heads,
    });
    let events = Arc::clone(&live) as Arc<dyn RunEvents>;
    let mut runs = run::run(&mut suites, select, events, cassettes, cancel.clone()).await;
    drop(suites);
    // Cassettes are outputs too: one that could not be written fails the
    // run's reports.
    let cassettes: Vec<_> = runs.iter_mut().filter_map(|r| r.cassette.take()).collect();
    let held = runs.iter().map(|r| r.held).sum();
    // The run is over: nothing else locks the reporter now.
    let mut guard = live.state.lock().unwrap_or_else(|e| e.into_inner());
    let state = &mut *guard;
    let heads = live.heads.clone();
    let tallies = std::mem::take(&mut state.tallies);
    let reports: Vec<SuiteReport> = runs
        .into_iter()
        .zip(heads)
        .zip(tallies)
        .map(|((run, head), tally)| SuiteReport {
            head,
            error: run.error,
            tally,
        })
        .collect();
    let reporter = &mut state.reporter;
    let written = state
        .error
        .take()
        .map_or(Ok(()), Err)
        .and_then(|()| {
            reports
                .iter()
                .try_for_each(|suite| reporter.on_suite(suite))
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
        held,
    }
}

/// The reporter, fed by the run's workers.
struct Live<R> {
    heads: Vec<SuiteHead>,
    state: Mutex<LiveState<R>>,
}

struct LiveState<R> {
    reporter: R,
    /// What each suite's records came to so far.
    tallies: Vec<Tally>,
    /// The first report that could not be written.
    error: Option<ReportError>,
}

impl<R: Reporter> RunEvents for Live<R> {
    fn record(&self, record: &BatchRecord) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.reporter.on_record(record);
    }

    fn dataset(&self, done: DatasetDone) {
        let Some(head) = self.heads.get(done.suite) else {
            return;
        };
        let report = DatasetReport {
            suite: head,
            index: done.index,
            records: &done.records,
            answered: &done.answered,
        };
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tally) = state.tallies.get_mut(done.suite) {
            tally.add(&report);
        }
        if state.error.is_none() {
            if let Err(error) = state.reporter.on_dataset(&report) {
                state.error = Some(error);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::DatasetReport;
    use crate::select::Rules;
    use crate::suite::LoadOptions;

    /// Sees the datasets in the order they are reported.
    struct Seen(Arc<Mutex<Vec<(usize, usize)>>>);

    impl Reporter for Seen {
        fn on_dataset(&mut self, dataset: &DatasetReport<'_>) -> Result<(), ReportError> {
            let records = dataset.records.len();
            self.0.lock().expect("seen").push((dataset.index, records));
            Ok(())
        }
    }

    /// A suite streamed from a JSONL file whose first session is long and
    /// the others short: the others finish first, wait for it in order,
    /// and the run never holds more than its window of datasets.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_streamed_suite_is_held_a_window_at_a_time_and_reported_in_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let sessions = 300;
        let mut lines = String::new();
        for s in 0..sessions {
            let turns = if s == 0 { 30 } else { 1 + s % 3 };
            let conversation: Vec<serde_json::Value> = (0..turns)
                .map(|t| serde_json::json!({"qa_id": format!("q{t}"), "query": format!("{s}-{t}")}))
                .collect();
            let dataset = serde_json::json!({"session_id": format!("s{s}"), "assistant_id": "a", "conversation": conversation});
            lines.push_str(&format!("{dataset}\n"));
        }
        std::fs::write(dir.path().join("data.jsonl"), lines).expect("data");
        let suite = dir.path().join("big.yaml");
        let yaml =
            "runner: {type: echo, delay_ms: 1}\nconcurrency: 4\ndatasets:\n  - file: data.jsonl\n";
        std::fs::write(&suite, yaml).expect("suite");
        let options = LoadOptions {
            stream: true,
            ..LoadOptions::default()
        };
        let suites = Suite::load_all_with(&suite, &options).expect("loads");
        assert!(suites[0].datasets.is_empty(), "the file is not held");
        assert_eq!(suites[0].dataset_count(), sessions);
        let mut rules = Rules::new(&suites, None, None);
        rules.count(&suites).expect("counted");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let outcome = execute(
            suites,
            &rules,
            Seen(Arc::clone(&seen)),
            &[],
            &Cassettes::default(),
            CancellationToken::new(),
        )
        .await;
        let window = 4 + crate::run::suite::WINDOW_SLACK;
        assert!(outcome.held <= window, "held {} > {window}", outcome.held);
        assert!(outcome.held >= 1);
        let seen = seen.lock().expect("seen");
        let order: Vec<usize> = seen.iter().map(|(d, _)| *d).collect();
        assert_eq!(order, (0..sessions).collect::<Vec<_>>(), "in order");
        assert_eq!(seen[0].1, 30, "the long session's records");
        let batches = 30 + (1..sessions).map(|s| 1 + s % 3).sum::<usize>();
        assert_eq!(outcome.tally(), (batches, 0));
    }
}
