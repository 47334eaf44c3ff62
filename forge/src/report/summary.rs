//! `<suite>.json` (`<suite>.<system>.json` for each system of a suite with
//! `runners:`, each a Fair-Forge file of its own): the suite's results in the payload response format
//! (`success`, `datasets` with their answers, `summaries`, `total_datasets`),
//! which Fair-Forge's metrics read unchanged. When the suite has expectations
//! or repeats, a `checks` key is added with each batch's check results and
//! the repeats' statistics, and the skipped batches (see [`checks`]); when
//! the runner or the judge
//! reported token usage, a `usage` key with the suite's tokens and cost
//! (see [`usage`]).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::ser::PrettyFormatter;

use super::tally::SuiteUsage;
use super::{create, finish, prepare, Reporter, RunEnd, SuiteReport};
use crate::check::repeats;
use crate::error::ReportError;
use crate::output::write_redacted;
use crate::run::BatchRecord;
use crate::schema::Response;

/// The reporter writing `<suite>.json` into a directory, as each suite
/// finishes.
pub struct SummaryJson {
    dir: PathBuf,
    prepared: bool,
    written: Vec<PathBuf>,
}

impl SummaryJson {
    /// Writes into `dir` (created if need be).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        SummaryJson {
            dir: dir.into(),
            prepared: false,
            written: Vec::new(),
        }
    }
}

impl Reporter for SummaryJson {
    fn on_suite(&mut self, suite: &SuiteReport) -> Result<(), ReportError> {
        if !suite.is_reported() {
            return Ok(());
        }
        if !self.prepared {
            prepare(&self.dir)?;
            self.prepared = true;
        }
        let path = self.dir.join(format!("{}.json", suite.report_name()));
        write(&path, suite)?;
        self.written.push(path);
        Ok(())
    }

    fn finish(&mut self, _end: &RunEnd<'_>) -> Result<Vec<PathBuf>, ReportError> {
        Ok(std::mem::take(&mut self.written))
    }
}

/// forge's own addition to the summary JSON: per batch and run, whether it
/// passed and the result of each expectation; for a repeated batch, the
/// results of the checks on its runs together (`checks`) and its `repeats`
/// statistics, and after a repeated dataset's batches a row with the
/// dataset's (a run of the dataset passes when all its batches did). A
/// skipped batch (`ignore: true`, not run as a test) has a row
/// `{"test": ..., "skipped": true}` in its place, and nothing else: it has
/// no verdict, and Fair-Forge's fields leave it out (it was not run, or ran
/// only as an earlier turn of its session).
/// `None` when the suite has no expectation, no repeat and no skipped
/// batch, so the file is then exactly Fair-Forge's.
pub fn checks(suite: &SuiteReport) -> Option<serde_json::Value> {
    let interesting = suite
        .records
        .iter()
        .any(|r| r.skipped || r.runs.len() > 1 || r.runs.iter().any(|run| !run.checks.is_empty()));
    if !interesting {
        return None;
    }
    let shown: Vec<&BatchRecord> = suite
        .records
        .iter()
        .filter(|r| r.selected || r.skipped)
        .collect();
    let mut rows = Vec::with_capacity(shown.len());
    for dataset in shown.chunk_by(|a, b| a.id.dataset == b.id.dataset) {
        rows.extend(dataset.iter().map(|r| match r.skipped {
            true => serde_json::json!({"test": r.test, "skipped": true}),
            false => batch_row(r),
        }));
        let selected: Vec<&BatchRecord> = dataset.iter().copied().filter(|r| r.selected).collect();
        rows.extend(dataset_row(&selected));
    }
    Some(serde_json::Value::Array(rows))
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

/// forge's `usage` key: the suite's tokens and cost, the runner's and the
/// judge's apart (see [`SuiteUsage::to_json`]); `None` when neither
/// reported usage.
pub fn usage(suite: &SuiteReport) -> Option<serde_json::Value> {
    let usage = SuiteUsage::of(&suite.records);
    (!usage.is_empty()).then(|| usage.to_json())
}

/// The file's shape: the response, and forge's `checks` and `usage` beside it.
#[derive(Serialize)]
struct SummaryFile<'a> {
    #[serde(flatten)]
    response: &'a Response,
    #[serde(skip_serializing_if = "Option::is_none")]
    checks: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<serde_json::Value>,
}

/// Writes one suite's response JSON to `path`, streamed to the file (no
/// copy of the whole run in memory), with every secret redacted from the
/// strings as they are written.
pub fn write(path: &Path, suite: &SuiteReport) -> Result<(), ReportError> {
    let file = SummaryFile {
        response: &suite.response,
        checks: checks(suite),
        usage: usage(suite),
    };
    let (tmp, mut writer) = create(path)?;
    let result = write_redacted(&mut writer, &file, &suite.secrets, PrettyFormatter::new())
        .and_then(|()| writer.write_all(b"\n"));
    finish(path, &tmp, writer, result)
}
