//! `junit.xml`: one `<testsuite>` per suite, one `<testcase>` per batch,
//! serialised by quick-junit, in the form CI servers read:
//!
//! - a suite with several systems (`runners:`) has a `<testsuite>` per
//!   system, named `<suite>::<system>` (its cases' `classname` too), so
//!   each system's counts, time and cost stand apart as in its own report;
//!   a case's `name` stays `<session_id>::<qa_id>`;
//! - every `<testsuite>` (a suite that could not be loaded too) has a
//!   `timestamp` (when the run started) and a `time`;
//! - every `<testcase>` has `file` and `line` attributes: where its batch
//!   is written (the line of its `qa_id` in the suite, or in its dataset
//!   file), so GitLab and others link to it;
//! - a failing batch's `<failure>` carries its message in the `message`
//!   attribute and, in its body (what GitLab shows, newlines kept), the
//!   message, then the query, the expected answer (`ground_truth_assistant`,
//!   when set) and the answer;
//! - with a baseline (`--baseline`), a batch that regressed is a failure
//!   whose message and body start `regressed since baseline: ...` (a
//!   newly failing batch says so; one that passes but regressed fails
//!   here), and another failing batch's body says how it changed since
//!   (`since baseline: ... (not a regression)`);
//! - a skipped batch (`ignore: true`) is a `<testcase>` with `<skipped/>`;
//! - the answer of a batch that ran is its `<system-out>`.
//!
//! A suite whose runner or judge reported token usage carries it as
//! `<properties>` of its `<testsuite>`: `forge.runner.prompt_tokens`,
//! `forge.runner.completion_tokens`, `forge.runner.total_tokens`,
//! `forge.runner.cost_usd` (with a price), the same under `forge.judge.`,
//! and `forge.cost_usd`, the two costs together.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

use super::since::Baseline;
use super::tally::SuiteUsage;
use super::{create, finish, prepare, Reporter, RunEnd, SuiteReport};
use crate::error::ReportError;
use crate::load::LoadFailure;
use crate::run::BatchRecord;
use crate::schema::Response;
use crate::suite::BatchLocation;
use crate::usage;

/// The reporter writing `junit.xml` into a directory when the run ends.
pub struct Junit {
    dir: PathBuf,
    /// When the run started: every `<testsuite>`'s `timestamp`.
    started: DateTime<FixedOffset>,
    /// What the failure bodies need that the records do not hold: the
    /// query and expected answer of each failed batch, by suite and batch.
    asked: HashMap<String, HashMap<(usize, usize), Asked>>,
    /// The baseline regressions are marked against.
    baseline: Option<Arc<dyn Baseline>>,
}

/// A batch's query and expected answer, redacted.
#[derive(Debug, Clone, Default)]
struct Asked {
    query: String,
    expected: String,
}

impl Junit {
    /// Writes into `dir` (created if need be); the run starts now.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Junit {
            dir: dir.into(),
            started: chrono::Utc::now().fixed_offset(),
            asked: HashMap::new(),
            baseline: None,
        }
    }

    /// Marks the regressions since `baseline`.
    pub(crate) fn with_baseline(mut self, baseline: Option<Arc<dyn Baseline>>) -> Self {
        self.baseline = baseline;
        self
    }
}

impl Reporter for Junit {
    fn on_suite(&mut self, suite: &SuiteReport) -> Result<(), ReportError> {
        let asked = asked(suite, self.baseline.as_deref());
        if !asked.is_empty() {
            self.asked.insert(suite.report_name(), asked);
        }
        Ok(())
    }

    fn finish(&mut self, end: &RunEnd<'_>) -> Result<Vec<PathBuf>, ReportError> {
        prepare(&self.dir)?;
        let path = self.dir.join("junit.xml");
        let report = report(end, self.started, &self.asked, self.baseline.as_deref());
        write(&path, &report)?;
        Ok(vec![path])
    }
}

/// The query and expected answer of each failed (or regressed) selected
/// batch of `suite`, from its answered datasets (a batch's first run's).
fn asked(suite: &SuiteReport, baseline: Option<&dyn Baseline>) -> HashMap<(usize, usize), Asked> {
    let Response::Success(run) = &suite.response else {
        return HashMap::new();
    };
    let mut first_run: HashMap<usize, usize> = HashMap::new();
    for (i, origin) in suite.origins.iter().enumerate() {
        first_run.entry(origin.dataset).or_insert(i);
    }
    let redact = |text: &str| suite.secrets.redact(text).into_owned();
    let regressed =
        |r: &BatchRecord| baseline.is_some_and(|b| b.mark(r).is_some_and(|c| c.regressed));
    let failed = suite
        .records
        .iter()
        .filter(|r| r.selected && (!r.passed || regressed(r)));
    failed
        .filter_map(|record| {
            let dataset = run.datasets.get(*first_run.get(&record.id.dataset)?)?;
            let batch = dataset.conversation.get(record.id.batch)?;
            let asked = Asked {
                query: redact(&batch.query),
                expected: redact(&batch.ground_truth_assistant),
            };
            Some(((record.id.dataset, record.id.batch), asked))
        })
        .collect()
}

/// The JUnit report of the reported suites (their selected and skipped
/// batches); each load failure becomes a failing test of its own suite.
fn report(
    end: &RunEnd<'_>,
    started: DateTime<FixedOffset>,
    asked: &HashMap<String, HashMap<(usize, usize), Asked>>,
    baseline: Option<&dyn Baseline>,
) -> Report {
    let (suites, load_failures) = (end.suites, end.load_failures);
    let mut report = Report::new("forge");
    let mut total = Duration::ZERO;
    let none = HashMap::new();
    for suite in suites.iter().filter(|s| s.is_reported()) {
        let asked = asked.get(&suite.report_name()).unwrap_or(&none);
        let mut test_suite = suite_element(suite, asked, baseline);
        test_suite.set_timestamp(started);
        total += test_suite.time.unwrap_or_default();
        report.add_test_suite(test_suite);
    }
    for failure in load_failures {
        let mut test_suite = load_failure_element(failure);
        test_suite.set_timestamp(started);
        report.add_test_suite(test_suite);
    }
    report.set_time(total);
    report
}

/// A suite's `<testsuite>`, its time the sum of its cases'.
fn suite_element(
    suite: &SuiteReport,
    asked: &HashMap<(usize, usize), Asked>,
    baseline: Option<&dyn Baseline>,
) -> TestSuite {
    let prefix = suite.test_prefix();
    let mut test_suite = TestSuite::new(xml_text(prefix.clone()));
    if let Response::Failure(failure) = &suite.response {
        test_suite.set_system_err(xml_text(failure.error.clone()));
    }
    for (name, value) in usage_properties(&SuiteUsage::of(&suite.records)) {
        test_suite.add_property(Property::new(name, value));
    }
    let mut suite_time = Duration::ZERO;
    for record in suite.records.iter().filter(|r| r.selected || r.skipped) {
        let asked = asked.get(&(record.id.dataset, record.id.batch));
        let since = baseline.and_then(|b| b.mark(record));
        let case = test_case(&prefix, record, asked, since.as_ref());
        suite_time += case.time.unwrap_or_default();
        test_suite.add_test_case(case);
    }
    test_suite.set_time(suite_time);
    test_suite
}

/// The `forge.*` properties of a suite's tokens and cost.
fn usage_properties(usage: &SuiteUsage) -> Vec<(String, String)> {
    let mut properties = Vec::new();
    for (side, spend) in [("runner", usage.runner), ("judge", usage.judge)] {
        let Some((spend, _)) = spend else { continue };
        let prefix = format!("forge.{side}.");
        properties.extend(
            [
                ("prompt_tokens", spend.prompt_tokens.to_string()),
                ("completion_tokens", spend.completion_tokens.to_string()),
                ("total_tokens", spend.total_tokens.to_string()),
            ]
            .map(|(key, value)| (format!("{prefix}{key}"), value)),
        );
        if let Some(cost) = spend.cost_usd {
            properties.push((
                format!("{prefix}cost_usd"),
                usage::rounded(cost).to_string(),
            ));
        }
    }
    if let Some(cost) = usage.cost_usd() {
        properties.push((
            "forge.cost_usd".to_owned(),
            usage::rounded(cost).to_string(),
        ));
    }
    properties
}

/// A batch's `<testcase>`: its verdict (skipped, passed, or a failure with
/// its body), time, place and answer; `since`, how it changed since the
/// baseline.
fn test_case(
    suite: &str,
    record: &BatchRecord,
    asked: Option<&Asked>,
    since: Option<&super::since::Mark>,
) -> TestCase {
    let regressed = since.is_some_and(|c| c.regressed);
    let status = if record.skipped {
        let mut status = TestCaseStatus::skipped();
        status.set_message("ignored (`ignore: true`)");
        status
    } else if record.passed && !regressed {
        TestCaseStatus::success()
    } else {
        let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
        let message = failure_message(record, since);
        status.set_message(xml_text(message.clone()));
        status.set_type("forge");
        let answer = (!record.runs.is_empty()).then(|| record.answer());
        status.set_description(xml_text(failure_body(&message, asked, answer.as_deref())));
        status
    };
    let name = record
        .test
        .strip_prefix(&format!("{suite}::"))
        .unwrap_or(&record.test);
    let mut case = TestCase::new(xml_text(name.to_owned()), status);
    case.set_classname(xml_text(suite.to_owned()));
    if let Some(location) = &record.location {
        set_location(&mut case, location);
    }
    if record.skipped {
        case.set_time(Duration::ZERO);
        return case;
    }
    case.set_time(Duration::from_secs_f64(record.time_ms().max(0.0) / 1000.0));
    case.set_system_out(xml_text(record.answer()));
    case
}

/// A failure's message: how the batch regressed since the baseline, then
/// why it fails (and, when it did not regress, how it changed).
fn failure_message(record: &BatchRecord, since: Option<&super::since::Mark>) -> String {
    let failure = (!record.passed).then(|| record.message.as_deref().unwrap_or("failed"));
    let mut lines = Vec::new();
    match since {
        Some(change) if change.regressed => {
            lines.push(format!("regressed since baseline: {}", change.describe()));
            lines.extend(failure.map(str::to_owned));
        }
        Some(change) => {
            lines.extend(failure.map(str::to_owned));
            lines.push(format!(
                "since baseline: {} (not a regression)",
                change.describe()
            ));
        }
        None => lines.extend(failure.map(str::to_owned)),
    }
    lines.join("\n")
}

/// The body of a failure: the message, then the query, the expected
/// answer (when the batch has one) and the answer (when it ran), each
/// under a heading.
fn failure_body(message: &str, asked: Option<&Asked>, answer: Option<&str>) -> String {
    let mut body = format!("{message}\n");
    if let Some(asked) = asked {
        body.push_str(&format!("\n--- query\n{}\n", asked.query));
        if !asked.expected.is_empty() {
            body.push_str(&format!(
                "--- expected (ground_truth_assistant)\n{}\n",
                asked.expected
            ));
        }
    }
    if let Some(answer) = answer {
        body.push_str(&format!("--- answer\n{answer}\n"));
    }
    body
}

/// The case's `file` and `line` attributes: where it is written.
fn set_location(case: &mut TestCase, location: &BatchLocation) {
    let file = location.file.to_string_lossy().into_owned();
    case.extra.insert("file".into(), xml_text(file).into());
    if let Some(line) = location.line {
        case.extra.insert("line".into(), line.to_string().into());
    }
}

/// A suite file that could not be loaded, as a suite with one failing
/// test (`time` 0: nothing ran).
fn load_failure_element(failure: &LoadFailure) -> TestSuite {
    let stem = failure.test.strip_suffix("::load").unwrap_or(&failure.test);
    let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
    status.set_message(xml_text(failure.message.clone()));
    status.set_type("forge::load");
    status.set_description(xml_text(format!("{}\n", failure.message)));
    let mut case = TestCase::new("load", status);
    case.set_classname(xml_text(stem.to_owned()));
    if let Some(location) = &failure.location {
        set_location(&mut case, location);
    }
    case.set_time(Duration::ZERO);
    let mut test_suite = TestSuite::new(xml_text(stem.to_owned()));
    test_suite.add_test_case(case);
    test_suite.set_time(Duration::ZERO);
    test_suite
}

/// Whether XML 1.0 allows `c` in a document (its `Char` production). The
/// others (C0 controls but tab, newline and carriage return; U+FFFE and
/// U+FFFF) make the whole file ill-formed, and CI rejects it.
fn xml_allows(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// `text` with every character XML 1.0 forbids replaced by U+FFFD.
pub(crate) fn xml_text(text: String) -> String {
    if text.chars().all(xml_allows) {
        return text;
    }
    text.chars()
        .map(|c| {
            if xml_allows(c) {
                c
            } else {
                char::REPLACEMENT_CHARACTER
            }
        })
        .collect()
}

/// Writes `report` to `path`.
fn write(path: &Path, report: &Report) -> Result<(), ReportError> {
    let (tmp, mut writer) = create(path)?;
    let result = report.serialize(&mut writer).map_err(std::io::Error::other);
    finish(path, &tmp, writer, result)
}

#[cfg(test)]
mod tests {
    use super::xml_text;

    #[test]
    fn characters_xml_forbids_are_replaced() {
        let text = "ok \u{FFFE}\u{FFFF}\u{0}\u{1B}[0m\t\n\r é \u{1F600}".to_owned();
        assert_eq!(
            xml_text(text),
            "ok \u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}[0m\t\n\r é \u{1F600}"
        );
        assert_eq!(xml_text("plain".to_owned()), "plain");
    }
}
