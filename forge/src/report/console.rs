//! `forge run`'s console: a progress bar over the selected batches (on a
//! terminal, unless `--quiet`) and a `FAILED <test>: <message>` line on
//! stderr for each failing one, as it fails. At the end, a line per suite
//! whose runner or judge reported token usage:
//! `forge: <suite>: runner 42 tokens (30 in, 12 out, $0.000042); judge ...; cost $0.000120`.
//! With a status ([`Console::with_status`]: `forge run --lambda`'s sessions
//! sent, answered and failed), the bar shows it too.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use super::{Reporter, RunEnd};
use crate::error::ReportError;
use crate::run::BatchRecord;
use crate::usage::SuiteUsage;

/// The console reporter.
pub struct Console {
    progress: ProgressBar,
    failed: usize,
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
}

impl Reporter for Console {
    fn on_record(&mut self, record: &BatchRecord) {
        if !record.selected {
            return;
        }
        self.progress.inc(1);
        if record.passed {
            if self.status.is_some() {
                self.refresh();
            }
            return;
        }
        self.failed += 1;
        self.refresh();
        let message = record.message.as_deref().unwrap_or("failed");
        self.progress
            .suspend(|| eprintln!("FAILED {}: {message}", record.test));
    }

    fn finish(&mut self, end: &RunEnd<'_>) -> Result<Vec<std::path::PathBuf>, ReportError> {
        self.progress.finish_and_clear();
        for suite in end.suites {
            let usage = SuiteUsage::of(&suite.records);
            if !usage.is_empty() {
                eprintln!("forge: {}: {}", suite.name, usage.line());
            }
        }
        Ok(Vec::new())
    }
}
