//! `junit.xml`: one `<testsuite>` per suite, one `<testcase>` per batch with
//! its time, its failure message and its answer, serialised by quick-junit.

use std::path::Path;
use std::time::Duration;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use super::{create, finish, redact, Reported};
use crate::error::ReportError;
use crate::schema::Response;

/// Builds the JUnit report of the given suites; each of `load_errors`
/// (`<stem>::load`, message) becomes a failing test of its own suite.
pub fn report(suites: &[Reported<'_>], load_errors: &[(String, String)]) -> Report {
    let mut report = Report::new("forge");
    let mut total = Duration::ZERO;
    for suite in suites {
        let result = suite.result;
        let mut test_suite = TestSuite::new(xml_text(result.name.clone()));
        if let Response::Failure(failure) = &result.response {
            test_suite.set_system_err(xml_text(redact(&failure.error, &suite.secrets)));
        }
        let mut suite_time = Duration::ZERO;
        for record in result.records.iter().filter(|r| r.selected) {
            let status = if record.passed {
                TestCaseStatus::success()
            } else {
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                let message = record.message.as_deref().unwrap_or("failed");
                status.set_message(xml_text(redact(message, &suite.secrets)));
                status.set_type("forge");
                status
            };
            let name = record
                .test
                .strip_prefix(&format!("{}::", result.name))
                .unwrap_or(&record.test);
            let mut case = TestCase::new(xml_text(name.to_owned()), status);
            case.set_classname(xml_text(result.name.clone()));
            let time = Duration::from_secs_f64(record.time_ms().max(0.0) / 1000.0);
            case.set_time(time);
            suite_time += time;
            case.set_system_out(xml_text(redact(&record.answer(), &suite.secrets)));
            test_suite.add_test_case(case);
        }
        test_suite.set_time(suite_time);
        total += suite_time;
        report.add_test_suite(test_suite);
    }
    for (test, message) in load_errors {
        let stem = test.strip_suffix("::load").unwrap_or(test);
        let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
        status.set_message(xml_text(message.clone()));
        status.set_type("forge::load");
        let mut case = TestCase::new("load", status);
        case.set_classname(xml_text(stem.to_owned()));
        let mut test_suite = TestSuite::new(xml_text(stem.to_owned()));
        test_suite.add_test_case(case);
        report.add_test_suite(test_suite);
    }
    report.set_time(total);
    report
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
    suites: &[Reported<'_>],
    load_errors: &[(String, String)],
) -> Result<(), ReportError> {
    let (tmp, mut writer) = create(path)?;
    let result = report(suites, load_errors)
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
