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
//! With a status ([`Console::with_status`]: `forge run --lambda`'s sessions
//! sent, answered and failed), the bar shows it too.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use super::since::Baseline;
use super::tally::SuiteUsage;
use super::{Reporter, RunEnd};
use crate::error::ReportError;
use crate::run::BatchRecord;

/// The console reporter.
pub struct Console {
    progress: ProgressBar,
    failed: usize,
    baseline: Option<Arc<dyn Baseline>>,
    status: Option<Box<dyn Fn() -> String + Send>>,
}

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

    fn finish(&mut self, end: &RunEnd<'_>) -> Result<Vec<std::path::PathBuf>, ReportError> {
        self.progress.finish_and_clear();
        for suite in end.suites {
            let usage = SuiteUsage::of(&suite.records);
            if !usage.is_empty() {
                eprintln!("forge: {}: {}", suite.test_prefix(), usage.line());
            }
        }
        for line in super::scoreboard::lines(end.suites) {
            eprintln!("{line}");
        }
        Ok(Vec::new())
    }
}
