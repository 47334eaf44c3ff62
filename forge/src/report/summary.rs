//! `<suite>.json` (`<suite>.<system>.json` for each system of a suite with
//! `runners:`, each a Fair-Forge file of its own): the suite's results in the payload response format
//! (`success`, `datasets` with their answers, `summaries`, `total_datasets`),
//! which Fair-Forge's metrics read unchanged. When the suite has expectations
//! or repeats, a `checks` key is added with each batch's check results and
//! the repeats' statistics, and the skipped batches (see [`rows`]); when
//! the runner or the judge
//! reported token usage, a `usage` key with the suite's tokens and cost
//! (see [`usage`]).
//!
//! The file is written as the suite is fed: each answered dataset straight
//! into it; the summaries and the `checks` rows into [`spool`]s (unnamed
//! temporary files), copied in once the suite ends. What it holds per suite
//! in flight does not grow with the suite.

mod spool;

#[cfg(test)]
pub(crate) mod fixture;
#[cfg(test)]
mod tests;

pub(crate) use spool::{compact, Spool};

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{create, finish, prepare, DatasetReport, Reporter, RunEnd, SuiteReport};
use crate::check::repeats;
use crate::error::ReportError;
use crate::run::BatchRecord;
use spool::{close_array, Pretty};

/// The reporter writing `<suite>.json` into a directory, as each suite
/// is fed.
pub struct SummaryJson {
    dir: PathBuf,
    prepared: bool,
    /// The suites in flight, by index.
    open: HashMap<usize, Open>,
    pretty: Pretty,
    written: Vec<PathBuf>,
}

impl SummaryJson {
    /// Writes into `dir` (created if need be).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        SummaryJson {
            dir: dir.into(),
            prepared: false,
            open: HashMap::new(),
            pretty: Pretty::default(),
            written: Vec::new(),
        }
    }

    fn prepare(&mut self) -> Result<(), ReportError> {
        if !self.prepared {
            prepare(&self.dir)?;
            self.prepared = true;
        }
        Ok(())
    }

    /// The bytes held in memory for the suites in flight (buffers), not
    /// counting what they spooled.
    #[cfg(test)]
    fn held(&self) -> usize {
        let open = self.open.values();
        self.pretty.held() + open.map(Open::held).sum::<usize>()
    }
}

/// A suite in flight: its file, once it has an answered dataset (written
/// up to its last dataset), and its spooled summaries and `checks` rows.
struct Open {
    file: Option<Pending>,
    summaries: Spool,
    checks: Spool,
    /// Whether a record so far asks for `checks` (see [`interesting`]).
    interesting: bool,
    /// The lowest index the next dataset may have: datasets come in the
    /// suite's order, which the file's order is.
    next: usize,
}

/// The temporary file a report is written to, removed unless it is
/// [`finish`]ed into place.
struct Pending {
    path: PathBuf,
    tmp: PathBuf,
    writer: Option<std::io::BufWriter<std::fs::File>>,
    datasets: usize,
}

impl Pending {
    fn create(path: PathBuf) -> Result<Pending, ReportError> {
        let (tmp, writer) = create(&path)?;
        Ok(Pending {
            path,
            tmp,
            writer: Some(writer),
            datasets: 0,
        })
    }

    fn writer(&mut self) -> std::io::Result<&mut std::io::BufWriter<std::fs::File>> {
        self.writer
            .as_mut()
            .ok_or_else(|| std::io::Error::other("the report was already finished"))
    }

    /// Moves the file into place, if `written`.
    fn finish(mut self, written: std::io::Result<()>) -> Result<PathBuf, ReportError> {
        let writer = self.writer.take();
        let writer = writer.ok_or_else(|| ReportError {
            path: self.path.clone(),
            message: "the report was already finished".to_owned(),
        })?;
        finish(&self.path, &self.tmp, writer, written)?;
        Ok(std::mem::take(&mut self.path))
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.writer.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

impl Open {
    fn new(dir: &Path) -> Self {
        Open {
            file: None,
            summaries: Spool::new(dir),
            checks: Spool::new(dir),
            interesting: false,
            next: 0,
        }
    }

    #[cfg(test)]
    fn held(&self) -> usize {
        let file = self.file.as_ref().and_then(|f| f.writer.as_ref());
        file.map_or(0, |w| w.capacity()) + self.summaries.held() + self.checks.held()
    }
}

/// What a file of a suite that ran starts with, up to its datasets.
const SUCCESS_HEAD: &[u8] = b"{\n  \"success\": true,\n  \"datasets\": [";

/// What a file of a suite that could not run starts with, up to its error.
const FAILURE_HEAD: &[u8] = b"{\n  \"success\": false,\n  \"error\": ";

impl Reporter for SummaryJson {
    fn on_dataset(&mut self, dataset: &DatasetReport<'_>) -> Result<(), ReportError> {
        if dataset.records.is_empty() && dataset.answered.is_empty() {
            return Ok(());
        }
        self.prepare()?;
        let head = dataset.suite;
        let path = self.dir.join(format!("{}.json", head.report_name()));
        let dir = &self.dir;
        let open = self
            .open
            .entry(head.index)
            .or_insert_with(|| Open::new(dir));
        add(open, &mut self.pretty, path.clone(), dataset).map_err(|e| match e {
            Failed::Io(e) => io_error(&path, e),
            Failed::Report(e) => e,
        })
    }

    fn on_suite(&mut self, suite: &SuiteReport) -> Result<(), ReportError> {
        let open = self.open.remove(&suite.head.index);
        if !suite.is_reported() {
            return Ok(());
        }
        self.prepare()?;
        let open = open.unwrap_or_else(|| Open::new(&self.dir));
        let path = self.dir.join(format!("{}.json", suite.report_name()));
        let path = end(open, &mut self.pretty, path, suite)?;
        self.written.push(path);
        Ok(())
    }

    fn finish(&mut self, _end: &RunEnd<'_>) -> Result<Vec<PathBuf>, ReportError> {
        self.open.clear();
        Ok(std::mem::take(&mut self.written))
    }
}

/// Why feeding a dataset failed: writing, or creating the file.
enum Failed {
    Io(std::io::Error),
    Report(ReportError),
}

impl From<std::io::Error> for Failed {
    fn from(error: std::io::Error) -> Self {
        Failed::Io(error)
    }
}

/// Writes a dataset's answered datasets into the suite's file (created on
/// the first, at `path`), and spools their summaries and its `checks` rows.
fn add(
    open: &mut Open,
    pretty: &mut Pretty,
    path: PathBuf,
    dataset: &DatasetReport<'_>,
) -> Result<(), Failed> {
    let secrets = &dataset.suite.secrets;
    debug_assert!(
        dataset.index >= open.next,
        "datasets out of the suite's order"
    );
    open.next = dataset.index + 1;
    if !dataset.answered.is_empty() && open.file.is_none() {
        let mut file = Pending::create(path).map_err(Failed::Report)?;
        file.writer()?.write_all(SUCCESS_HEAD)?;
        open.file = Some(file);
    }
    if let Some(file) = &mut open.file {
        for answered in dataset.answered {
            let first = file.datasets == 0;
            file.datasets += 1;
            pretty.push((file.writer()?, first), 2, &answered.dataset, secrets)?;
        }
    }
    for answered in dataset.answered {
        pretty.push(open.summaries.next()?, 2, &answered.summary, secrets)?;
    }
    open.interesting |= dataset.records.iter().any(interesting);
    for row in rows(dataset.records) {
        pretty.push(open.checks.next()?, 2, &row, secrets)?;
    }
    Ok(())
}

/// Completes the suite's file (the error response when the suite could
/// not run) and moves it into place at `path`.
fn end(
    open: Open,
    pretty: &mut Pretty,
    path: PathBuf,
    suite: &SuiteReport,
) -> Result<PathBuf, ReportError> {
    let Open {
        file,
        summaries,
        checks,
        interesting,
        next: _,
    } = open;
    let (mut file, started) = match (file, &suite.error) {
        (Some(file), None) => (file, true),
        _ => (Pending::create(path)?, false),
    };
    let datasets = file.datasets;
    let secrets = &suite.head.secrets;
    let written = file.writer().and_then(|out| {
        match &suite.error {
            None if started => {}
            None => out.write_all(SUCCESS_HEAD)?,
            Some(error) => {
                out.write_all(FAILURE_HEAD)?;
                pretty.value(out, 1, error, secrets)?;
            }
        }
        if suite.error.is_none() {
            close_array(out, 1, datasets)?;
            out.write_all(b",\n  \"summaries\": [")?;
            let count = summaries.items();
            summaries.copy_to(out)?;
            close_array(out, 1, count)?;
            pretty.member(out, 1, "total_datasets", &datasets, secrets)?;
        }
        if interesting {
            out.write_all(b",\n  \"checks\": [")?;
            let count = checks.items();
            checks.copy_to(out)?;
            close_array(out, 1, count)?;
        }
        if let Some(usage) = usage(suite) {
            pretty.member(out, 1, "usage", &usage, secrets)?;
        }
        out.write_all(b"\n}\n")
    });
    file.finish(written)
}

fn io_error(path: &Path, error: std::io::Error) -> ReportError {
    ReportError {
        path: path.to_owned(),
        message: error.to_string(),
    }
}

/// The rows of one dataset's `records` (in turn order) in forge's own
/// addition to the summary JSON, `checks`: per batch and run, whether it
/// passed and the result of each expectation; for a repeated batch, the
/// results of the checks on its runs together (`checks`) and its `repeats`
/// statistics, and after a repeated dataset's batches a row with the
/// dataset's (a run of the dataset passes when all its batches did). A
/// skipped batch (`ignore: true`, not run as a test) has a row
/// `{"test": ..., "skipped": true}` in its place, and nothing else: it has
/// no verdict, and Fair-Forge's fields leave it out (it was not run, or ran
/// only as an earlier turn of its session).
/// `checks` is written only when the suite has an expectation, a repeat or
/// a skipped batch (a record that is [`interesting`]), so the file is
/// otherwise exactly Fair-Forge's.
pub fn rows(records: &[BatchRecord]) -> impl Iterator<Item = serde_json::Value> + '_ {
    let shown = records.iter().filter(|r| r.selected || r.skipped);
    let batches = shown.clone().map(|r| match r.skipped {
        true => serde_json::json!({"test": r.test, "skipped": true}),
        false => batch_row(r),
    });
    let selected: Vec<&BatchRecord> = shown.filter(|r| r.selected).collect();
    batches.chain(dataset_row(&selected))
}

/// Whether `record` asks for the suite's `checks`: it is skipped, repeated
/// or has checks.
pub fn interesting(record: &BatchRecord) -> bool {
    record.skipped || record.runs.len() > 1 || record.runs.iter().any(|run| !run.checks.is_empty())
}

/// A batch's row of `checks`.
fn batch_row(r: &BatchRecord) -> serde_json::Value {
    let mut row = serde_json::Map::new();
    row.insert("test".into(), r.test.clone().into());
    row.insert("passed".into(), r.passed.into());
    if !r.checks.is_empty() {
        row.insert("checks".into(), serde_json::json!(r.checks));
    }
    if r.runs.len() > 1 {
        let passes = r.runs.iter().filter(|run| run.passed).count();
        row.insert("repeats".into(), repeats::stats(r.runs.len(), passes));
    }
    let runs = r.runs.iter().map(|run| {
        let mut row = serde_json::json!({
            "session_id": run.session_id,
            "passed": run.passed,
            "success": run.success,
            "checks": run.checks,
        });
        if let Some(usage) = &run.usage {
            row["usage"] = serde_json::json!(usage);
        }
        if let Some(usage) = &run.judge_usage {
            row["judge_usage"] = serde_json::json!(usage);
        }
        row
    });
    row.insert("runs".into(), runs.collect());
    row.into()
}

/// The row of a repeated dataset (its selected batches' records), with
/// its `session_id`, the `tests` it covers and its `repeats` statistics.
fn dataset_row(batches: &[&BatchRecord]) -> Option<serde_json::Value> {
    let runs = batches.first()?.runs.len();
    if runs < 2 || batches.iter().any(|r| r.runs.len() != runs) {
        return None;
    }
    let passes = (0..runs)
        .filter(|&k| batches.iter().all(|r| r.runs[k].passed))
        .count();
    // Run k's session is `<session_id>-run<k>`.
    let first = &batches[0].runs[0].session_id;
    let session_id = first.strip_suffix("-run1").unwrap_or(first);
    Some(serde_json::json!({
        "session_id": session_id,
        "tests": batches.iter().map(|r| r.test.as_str()).collect::<Vec<_>>(),
        "repeats": repeats::stats(runs, passes),
    }))
}

/// forge's `usage` key: the suite's tokens and cost, as its
/// [`Tally`](super::Tally) added them up, the runner's and the judge's
/// apart (see [`SuiteUsage::to_json`](super::tally::SuiteUsage::to_json));
/// `None` when neither reported usage.
pub fn usage(suite: &SuiteReport) -> Option<serde_json::Value> {
    let usage = suite.tally.usage;
    (!usage.is_empty()).then(|| usage.to_json())
}
