//! `forge run`'s console: a progress bar over the selected batches (on a
//! terminal, unless `--quiet`) and a `FAILED <test>: <message>` line on
//! stderr for each failing one, as it fails. At the end, a line per suite
//! whose runner or judge reported token usage:
//! `forge: <suite>: runner 42 tokens (30 in, 12 out, $0.000042); judge ...; cost $0.000120`
//! (`<suite>::<system>` for each system of `runners:`); then, for a suite
//! with several systems, its [scoreboard](super::scoreboard).
//!
//! With a baseline (`--baseline`), a failing batch's line says how it
//! changed since (`  regressed since baseline: newly failing`, or `  since
//! baseline: ... (not a regression)`), and a batch that regressed but
//! passes gets a `REGRESSED <test>: ...` line.
//!
//! It holds nothing per batch: a system's median time is found from its
//! runs' times spooled to a temporary file ([`Times`]).
//!
//! With a status ([`Console::with_status`]: `forge run --lambda`'s sessions
//! sent, answered and failed), the bar shows it too.

use std::collections::{HashMap, VecDeque};
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use super::since::Baseline;
use super::spool::Times;
use super::{DatasetReport, Reporter, RunEnd, SuiteReport};
use crate::error::ReportError;
use crate::run::BatchRecord;

/// The console reporter.
pub struct Console {
    progress: ProgressBar,
    failed: usize,
    baseline: Option<Arc<dyn Baseline>>,
    status: Option<Box<dyn Fn() -> String + Send>>,
    /// The runs' times of each system (of `runners:`) being fed.
    times: HashMap<SuiteKey, Times>,
    /// Each ended system's median time, for its scoreboard.
    medians: HashMap<SuiteKey, VecDeque<Option<f64>>>,
}

/// A suite, or one system of it.
type SuiteKey = (usize, Option<String>);

impl Console {
    /// A console over `total` selected batches; no bar when `quiet` or when
    /// stderr is not a terminal.
    pub fn new(total: usize, quiet: bool) -> Self {
        let progress = if quiet || !std::io::stderr().is_terminal() {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(total as u64)
        };
        progress.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} batches, {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        progress.enable_steady_tick(Duration::from_millis(200));
        Console {
            progress,
            failed: 0,
            baseline: None,
            status: None,
            times: HashMap::new(),
            medians: HashMap::new(),
        }
    }

    /// Shows `status()` beside the failures, refreshed at each record.
    pub fn with_status(mut self, status: impl Fn() -> String + Send + 'static) -> Self {
        self.status = Some(Box::new(status));
        self
    }

    fn refresh(&self) {
        let failed = format!("{} failed", self.failed);
        match &self.status {
            Some(status) => self.progress.set_message(format!("{failed}; {}", status())),
            None => self.progress.set_message(failed),
        }
    }

    /// Marks how each batch changed since `baseline`.
    pub(crate) fn with_baseline(mut self, baseline: Option<Arc<dyn Baseline>>) -> Self {
        self.baseline = baseline;
        self
    }
}

impl Reporter for Console {
    fn on_record(&mut self, record: &BatchRecord) {
        if !record.selected {
            return;
        }
        self.progress.inc(1);
        let change = self.baseline.as_ref().and_then(|b| b.mark(record));
        if record.passed {
            if let Some(change) = change.filter(|c| c.regressed) {
                let line = format!(
                    "REGRESSED {}: regressed since baseline: {}",
                    record.test,
                    change.describe()
                );
                self.progress.suspend(|| eprintln!("{line}"));
            }
            if self.status.is_some() {
                self.refresh();
            }
            return;
        }
        self.failed += 1;
        self.refresh();
        let message = record.message.as_deref().unwrap_or("failed");
        let mark = match change {
            Some(c) if c.regressed => format!("\n  regressed since baseline: {}", c.describe()),
            Some(c) => format!("\n  since baseline: {} (not a regression)", c.describe()),
            None => String::new(),
        };
        self.progress
            .suspend(|| eprintln!("FAILED {}: {message}{mark}", record.test));
    }

    fn on_dataset(&mut self, dataset: &DatasetReport<'_>) -> Result<(), ReportError> {
        if dataset.suite.system.is_none() {
            return Ok(());
        }
        let key = (dataset.suite.index, dataset.suite.system.clone());
        let times = match self.times.entry(key) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                entry.insert(Times::new(&std::env::temp_dir()).map_err(spool_error)?)
            }
        };
        let runs = dataset.records.iter().filter(|r| r.selected);
        runs.flat_map(|r| &r.runs)
            .try_for_each(|run| times.push(run.time_ms))
            .map_err(spool_error)
    }

    fn on_suite(&mut self, suite: &SuiteReport) -> Result<(), ReportError> {
        let key = (suite.head.index, suite.head.system.clone());
        let Some(mut times) = self.times.remove(&key) else {
            if key.1.is_some() {
                self.medians.entry(key).or_default().push_back(None);
            }
            return Ok(());
        };
        let median = times.percentile(0.5).map_err(spool_error)?;
        self.medians.entry(key).or_default().push_back(median);
        Ok(())
    }

    fn finish(&mut self, end: &RunEnd<'_>) -> Result<Vec<std::path::PathBuf>, ReportError> {
        self.progress.finish_and_clear();
        for suite in end.suites {
            let usage = &suite.tally.usage;
            if !usage.is_empty() {
                eprintln!("forge: {}: {}", suite.test_prefix(), usage.line());
            }
        }
        let medians = &mut self.medians;
        let lines = super::scoreboard::lines(end.suites, |suite| {
            let key = (suite.head.index, suite.head.system.clone());
            medians.get_mut(&key)?.pop_front()?
        });
        for line in lines {
            eprintln!("{line}");
        }
        Ok(Vec::new())
    }
}

/// A spool of times that could not be written or read.
fn spool_error(error: std::io::Error) -> ReportError {
    ReportError {
        path: std::env::temp_dir(),
        message: format!("cannot spool the runs' times: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::Console;
    use crate::report::testing::{self, head, Parts};
    use crate::report::Reporter;

    #[test]
    fn a_system_s_median_is_kept_not_its_times() {
        let mut console = Console::new(0, true);
        let small = Parts::of(testing::suite(head("cmp", 0, Some("small")), 3, 5));
        let large = Parts::of(testing::suite(head("cmp", 0, Some("large")), 2, 2));
        small.feed_dataset(&mut console, 0);
        large.feed_dataset(&mut console, 0);
        small.feed_dataset(&mut console, 1);
        let key = (0, Some("small".to_owned()));
        assert_eq!(
            console.times[&key].count(),
            4 + 3,
            "the selected runs' times"
        );
        small.feed_dataset(&mut console, 2);
        large.feed_dataset(&mut console, 1);
        let large = large.end(&mut console);
        let small = small.end(&mut console);
        assert!(console.times.is_empty(), "an ended system holds no times");
        // Selected turns of "small": k = 1..4 of datasets 0 and 2, k = 1..3
        // of dataset 1, taking 1.5 + 7d + 3k ms; their nearest-rank median.
        let mut times: Vec<f64> = [(0, 4), (1, 3), (2, 4)]
            .into_iter()
            .flat_map(|(d, n)| (1..=n).map(move |k| 1.5 + (d * 7 + k * 3) as f64))
            .collect();
        times.sort_by(f64::total_cmp);
        let median = times[times.len().div_ceil(2) - 1];
        assert_eq!(console.medians[&key], [Some(median)]);
        let suites = [small, large];
        console.finish(&testing::end(&suites, &[])).expect("finish");
        assert!(
            console.medians.values().all(|m| m.is_empty()),
            "each median used once"
        );
    }
}
