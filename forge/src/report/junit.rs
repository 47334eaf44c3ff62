//! `junit.xml`: one `<testsuite>` per suite, one `<testcase>` per batch with
//! its time, its failure message and its answer, serialised by quick-junit.
//! A suite whose runner or judge reported token usage carries it as
//! `<properties>` of its `<testsuite>`: `forge.runner.prompt_tokens`,
//! `forge.runner.completion_tokens`, `forge.runner.total_tokens`,
//! `forge.runner.cost_usd` (with a price), the same under `forge.judge.`,
//! and `forge.cost_usd`, the two costs together.

use std::path::{Path, PathBuf};
use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

use super::{create, finish, prepare, Reporter, RunEnd, SuiteReport};
use crate::error::ReportError;
use crate::load::LoadFailure;
use crate::run::BatchRecord;
use crate::schema::Response;
use crate::usage::{self, SuiteUsage};

/// The reporter writing `junit.xml` into a directory when the run ends.
pub struct Junit {
    dir: PathBuf,
}

impl Junit {
    /// Writes into `dir` (created if need be).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Junit { dir: dir.into() }
    }
}

impl Reporter for Junit {
    fn finish(&mut self, end: &RunEnd<'_>) -> Result<Vec<PathBuf>, ReportError> {
        prepare(&self.dir)?;
        let path = self.dir.join("junit.xml");
        write(&path, end.suites, end.load_failures)?;
        Ok(vec![path])
    }
}

/// Builds the JUnit report of the reported suites (their selected
/// batches); each load failure becomes a failing test of its own suite.
pub fn report(suites: &[SuiteReport], load_failures: &[LoadFailure]) -> Report {
    let mut report = Report::new("forge");
    let mut total = Duration::ZERO;
    for suite in suites.iter().filter(|s| s.is_reported()) {
        let (test_suite, time) = suite_element(suite);
        total += time;
        report.add_test_suite(test_suite);
    }
    for failure in load_failures {
        report.add_test_suite(load_failure_element(failure));
    }
    report.set_time(total);
    report
}

/// A suite's `<testsuite>` and its time.
fn suite_element(suite: &SuiteReport) -> (TestSuite, Duration) {
    let mut test_suite = TestSuite::new(xml_text(suite.name.clone()));
    if let Response::Failure(failure) = &suite.response {
        test_suite.set_system_err(xml_text(failure.error.clone()));
    }
    for (name, value) in usage_properties(&SuiteUsage::of(&suite.records)) {
        test_suite.add_property(Property::new(name, value));
    }
    let mut suite_time = Duration::ZERO;
    for record in suite.records.iter().filter(|r| r.selected) {
        let case = test_case(&suite.name, record);
        suite_time += case.time.unwrap_or_default();
        test_suite.add_test_case(case);
    }
    test_suite.set_time(suite_time);
    (test_suite, suite_time)
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

/// A batch's `<testcase>`: its verdict, time and answer.
fn test_case(suite: &str, record: &BatchRecord) -> TestCase {
    let status = if record.passed {
        TestCaseStatus::success()
    } else {
        let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
        let message = record.message.as_deref().unwrap_or("failed");
        status.set_message(xml_text(message.to_owned()));
        status.set_type("forge");
        status
    };
    let name = record
        .test
        .strip_prefix(&format!("{suite}::"))
        .unwrap_or(&record.test);
    let mut case = TestCase::new(xml_text(name.to_owned()), status);
    case.set_classname(xml_text(suite.to_owned()));
    case.set_time(Duration::from_secs_f64(record.time_ms().max(0.0) / 1000.0));
    case.set_system_out(xml_text(record.answer()));
    case
}

/// A suite file that could not be loaded, as a suite with one failing test.
fn load_failure_element(failure: &LoadFailure) -> TestSuite {
    let stem = failure.test.strip_suffix("::load").unwrap_or(&failure.test);
    let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
    status.set_message(xml_text(failure.message.clone()));
    status.set_type("forge::load");
    let mut case = TestCase::new("load", status);
    case.set_classname(xml_text(stem.to_owned()));
    let mut test_suite = TestSuite::new(xml_text(stem.to_owned()));
    test_suite.add_test_case(case);
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

/// Writes the JUnit report of the given suites to `path`.
pub fn write(
    path: &Path,
    suites: &[SuiteReport],
    load_failures: &[LoadFailure],
) -> Result<(), ReportError> {
    let (tmp, mut writer) = create(path)?;
    let result = report(suites, load_failures)
        .serialize(&mut writer)
        .map_err(std::io::Error::other);
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
