//! The last step of the pipeline: reporters. A run emits one stream of
//! [`BatchRecord`]s; a [`Reporter`] consumes it (one implementation per
//! output, several at once through a [`Tee`]): each record as soon as it
//! is known, each dataset ([`DatasetReport`]) once it and the datasets
//! before it are done, each suite's end ([`SuiteReport`]: its [`Tally`])
//! and the run's end. Nothing a reporter is handed grows with the suite,
//! so a reporter that writes as it is fed holds a run of any size in
//! constant memory:
//!
//! | reporter | writes |
//! | --- | --- |
//! | [`summary::SummaryJson`] | `<suite>.json` (`<suite>.<system>.json` per system of `runners:`), Fair-Forge's response (+ `checks`) |
//! | [`junit::Junit`] | `junit.xml` |
//! | [`html::HtmlReport`] | `report.html`, the run for a person |
//! | [`console::Console`] | `forge run`'s progress bar and `FAILED` lines |
//! | [`github::Github`] | under GitHub Actions: `::error` annotations, `$GITHUB_STEP_SUMMARY` |
//! | the harness's trials | each libtest trial's verdict |
//!
//! Reports go under `$FORGE_OUT_DIR` (default `target/forge/`), also when
//! tests fail, and replace the previous run's ([`sweep`]). Records arrive redacted; the summary JSON redacts the
//! answered datasets with the suite's [`Secrets`] while it streams them.

pub mod console;
pub mod github;
pub mod html;
pub mod junit;
pub mod part;
pub mod scoreboard;
pub mod since;
pub(crate) mod spool;
pub mod summary;
pub mod sweep;
pub mod tally;
#[cfg(test)]
pub(crate) mod testing;
pub mod whole;

use std::path::{Path, PathBuf};

use crate::error::ReportError;
use crate::load::LoadFailure;
pub(crate) use crate::output::{create, finish, prepare};
pub use crate::run::Answered;
use crate::run::BatchRecord;
use crate::schema::Response;
use crate::secrets::Secrets;
use tally::SuiteUsage;

/// Environment variable naming the output directory.
pub const OUT_DIR_ENV: &str = "FORGE_OUT_DIR";

/// The output directory: `$FORGE_OUT_DIR`, else `target/forge` under `root`.
pub fn out_dir(root: &Path) -> PathBuf {
    match std::env::var_os(OUT_DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => root.join("target").join("forge"),
    }
}

/// A suite as its reports name it.
#[derive(Debug, Clone)]
pub struct SuiteHead {
    /// Its index among the run's suites ([`BatchId::suite`](crate::select::BatchId)).
    pub index: usize,
    /// The suite's name.
    pub name: String,
    /// The named system this report is about, when the suite compares
    /// several (`runners:`): its test names are
    /// `<suite>::<system>::<session>::<qa_id>`.
    pub system: Option<String>,
    /// The secrets to keep out of its reports.
    pub secrets: Secrets,
}

impl SuiteHead {
    /// The name of its report files: `<suite>`, or `<suite>.<system>` for
    /// a system of `runners:` (`<suite>.<system>.json`).
    pub fn report_name(&self) -> String {
        crate::suite::report_name(&self.name, self.system.as_deref())
    }

    /// What its test names start with: `<suite>`, or `<suite>::<system>`
    /// (JUnit's `<testsuite>` name and `classname`).
    pub fn test_prefix(&self) -> String {
        match &self.system {
            Some(system) => format!("{}::{system}", self.name),
            None => self.name.clone(),
        }
    }
}

/// One dataset of a suite, done: reported in the suite's order of
/// datasets, as soon as it and every dataset before it are done.
#[derive(Debug, Clone, Copy)]
pub struct DatasetReport<'a> {
    /// The suite.
    pub suite: &'a SuiteHead,
    /// The dataset's index within the suite.
    pub index: usize,
    /// The records of its batches that ran or are skipped, in turn order.
    pub records: &'a [BatchRecord],
    /// Its runs' answered datasets, in run order (none when the suite
    /// could not run).
    pub answered: &'a [Answered],
}

/// What a suite's records came to, counted as they were reported.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    /// Records reported (selected, skipped and earlier turns).
    pub records: usize,
    /// Selected batches.
    pub selected: usize,
    /// Selected batches that passed.
    pub passed: usize,
    /// Skipped batches.
    pub skipped: usize,
    /// Answered datasets (Fair-Forge's `total_datasets`).
    pub answered: usize,
    /// The tokens and cost of every run.
    pub usage: SuiteUsage,
}

impl Tally {
    /// Counts `report`'s records and answered datasets.
    pub fn add(&mut self, report: &DatasetReport<'_>) {
        report.records.iter().for_each(|r| self.add_record(r));
        self.answered += report.answered.len();
    }

    /// Counts one record.
    pub fn add_record(&mut self, record: &BatchRecord) {
        self.records += 1;
        self.selected += usize::from(record.selected);
        self.passed += usize::from(record.selected && record.passed);
        self.skipped += usize::from(record.skipped);
        self.usage.add(record);
    }

    /// Selected batches that failed.
    pub fn failed(&self) -> usize {
        self.selected - self.passed
    }
}

/// One suite's end, as reporters see it: every dataset of it was
/// reported before.
#[derive(Debug, Clone)]
pub struct SuiteReport {
    /// The suite.
    pub head: SuiteHead,
    /// The error that kept the suite from running (its runner's
    /// configuration, its cassette), `None` when it ran.
    pub error: Option<String>,
    /// What its records came to.
    pub tally: Tally,
}

impl SuiteReport {
    /// Whether every selected batch passed.
    pub fn passed(&self) -> bool {
        self.error.is_none() && self.tally.failed() == 0
    }

    /// The Fair-Forge response of a suite that could not run, `None` for
    /// one that ran.
    pub fn failure(&self) -> Option<Response> {
        self.error.as_deref().map(Response::error)
    }

    /// The name of its report files (see [`SuiteHead::report_name`]).
    pub fn report_name(&self) -> String {
        self.head.report_name()
    }

    /// What its test names start with (see [`SuiteHead::test_prefix`]).
    pub fn test_prefix(&self) -> String {
        self.head.test_prefix()
    }

    /// Whether the suite has anything to report: a batch that ran, or the
    /// error that kept it from running.
    pub fn is_reported(&self) -> bool {
        self.tally.records > 0 || self.error.is_some()
    }
}

/// The end of a run, as [`Reporter::finish`] sees it.
#[derive(Debug, Clone, Copy)]
pub struct RunEnd<'a> {
    /// Every suite, in order.
    pub suites: &'a [SuiteReport],
    /// Suite files that could not be loaded (failing tests in JUnit).
    pub load_failures: &'a [LoadFailure],
    /// Whether the run was interrupted (its reports are partial).
    pub interrupted: bool,
}

/// A consumer of a run's records: one output. What it keeps between calls
/// is its own; nothing in the stream it is fed grows with the suite.
pub trait Reporter: Send {
    /// A batch's record, as soon as it is known (in completion order).
    fn on_record(&mut self, record: &BatchRecord) {
        let _ = record;
    }

    /// A dataset of a suite is done: its records and answered datasets,
    /// in the suite's order of datasets.
    fn on_dataset(&mut self, dataset: &DatasetReport<'_>) -> Result<(), ReportError> {
        let _ = dataset;
        Ok(())
    }

    /// A suite finished: every dataset of it was reported.
    fn on_suite(&mut self, suite: &SuiteReport) -> Result<(), ReportError> {
        let _ = suite;
        Ok(())
    }

    /// The run ended: returns the files written.
    fn finish(&mut self, end: &RunEnd<'_>) -> Result<Vec<PathBuf>, ReportError> {
        let _ = end;
        Ok(Vec::new())
    }
}

/// Several reporters fed the same stream, in order; optionally the
/// directory they write into, whose previous reports they replace (see
/// [`sweep`]).
#[derive(Default)]
pub struct Tee {
    reporters: Vec<Box<dyn Reporter>>,
    replacing: Option<(PathBuf, sweep::Parts)>,
}

impl Tee {
    /// No reporter yet.
    pub fn new() -> Self {
        Tee::default()
    }

    /// Adds a reporter.
    pub fn with(mut self, reporter: impl Reporter + 'static) -> Self {
        self.reporters.push(Box::new(reporter));
        self
    }

    /// Once the reporters have written into `dir`, removes what the
    /// previous run wrote there and this one did not ([`sweep`]).
    pub fn replacing(mut self, dir: impl Into<PathBuf>, parts: sweep::Parts) -> Self {
        self.replacing = Some((dir.into(), parts));
        self
    }
}

impl Reporter for Tee {
    fn on_record(&mut self, record: &BatchRecord) {
        self.reporters.iter_mut().for_each(|r| r.on_record(record));
    }

    fn on_dataset(&mut self, dataset: &DatasetReport<'_>) -> Result<(), ReportError> {
        self.reporters
            .iter_mut()
            .try_for_each(|r| r.on_dataset(dataset))
    }

    fn on_suite(&mut self, suite: &SuiteReport) -> Result<(), ReportError> {
        self.reporters
            .iter_mut()
            .try_for_each(|r| r.on_suite(suite))
    }

    fn finish(&mut self, end: &RunEnd<'_>) -> Result<Vec<PathBuf>, ReportError> {
        let mut written = Vec::new();
        for reporter in &mut self.reporters {
            written.extend(reporter.finish(end)?);
        }
        if let Some((dir, parts)) = &self.replacing {
            sweep::sweep(dir, &written, parts)?;
        }
        Ok(written)
    }
}
