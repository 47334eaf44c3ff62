//! The last step of the pipeline: reporters. A run emits one stream of
//! [`BatchRecord`]s; a [`Reporter`] consumes it (one implementation per
//! output, several at once through a [`Tee`]) and then sees each suite's
//! [`SuiteReport`] and the run's end:
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
pub mod summary;
pub mod sweep;
pub mod tally;

use std::path::{Path, PathBuf};

use crate::error::ReportError;
use crate::load::LoadFailure;
pub(crate) use crate::output::{create, finish, prepare};
use crate::run::{BatchRecord, Origin};
use crate::schema::Response;
use crate::secrets::Secrets;

/// Environment variable naming the output directory.
pub const OUT_DIR_ENV: &str = "FORGE_OUT_DIR";

/// The output directory: `$FORGE_OUT_DIR`, else `target/forge` under `root`.
pub fn out_dir(root: &Path) -> PathBuf {
    match std::env::var_os(OUT_DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => root.join("target").join("forge"),
    }
}

/// One suite's result, as reporters see it.
#[derive(Debug, Clone)]
pub struct SuiteReport {
    /// The suite's name.
    pub name: String,
    /// The named system this report is about, when the suite compares
    /// several (`runners:`): its test names are
    /// `<suite>::<system>::<session>::<qa_id>`.
    pub system: Option<String>,
    /// Its response: the answered datasets and their summaries (emptied
    /// once every reporter's [`Reporter::on_suite`] has seen them), or the
    /// error that kept the suite from running.
    pub response: Response,
    /// Where each of the response's datasets comes from, in its order.
    pub origins: Vec<Origin>,
    /// One record per batch that ran, in suite order.
    pub records: Vec<BatchRecord>,
    /// The secrets to keep out of its reports.
    pub secrets: Secrets,
}

impl SuiteReport {
    /// Whether every selected batch passed.
    pub fn passed(&self) -> bool {
        self.response.is_success() && self.records.iter().all(|r| r.passed || !r.selected)
    }

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

    /// Whether the suite has anything to report: a batch that ran, or the
    /// error that kept it from running.
    pub fn is_reported(&self) -> bool {
        !self.records.is_empty() || !self.response.is_success()
    }
}

/// The end of a run, as [`Reporter::finish`] sees it.
#[derive(Debug, Clone, Copy)]
pub struct RunEnd<'a> {
    /// Every suite, in order (answered datasets already freed).
    pub suites: &'a [SuiteReport],
    /// Suite files that could not be loaded (failing tests in JUnit).
    pub load_failures: &'a [LoadFailure],
    /// Whether the run was interrupted (its reports are partial).
    pub interrupted: bool,
}

/// A consumer of a run's records: one output.
pub trait Reporter: Send {
    /// A batch's record, as soon as it is known (records of a suite arrive
    /// in completion order).
    fn on_record(&mut self, record: &BatchRecord) {
        let _ = record;
    }

    /// A suite finished, with its answered datasets and all its records
    /// in suite order.
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
