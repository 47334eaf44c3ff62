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

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

use super::since::Baseline;
use super::spool::Spool;
use super::tally::SuiteUsage;
use super::{create, finish, prepare, DatasetReport, Reporter, RunEnd, SuiteReport};
use crate::error::ReportError;
use crate::load::LoadFailure;
use crate::run::BatchRecord;
use crate::suite::BatchLocation;
use crate::usage;

/// The reporter writing `junit.xml` into a directory. Each suite's
/// `<testcase>`s are spooled as its datasets are fed, its `<testsuite>`
/// (whose attributes count them) is assembled when it ends, and the file
/// (whose `<testsuites>` counts them all) when the run ends: it holds
/// nothing per batch.
pub struct Junit {
    dir: PathBuf,
    /// When the run started: every `<testsuite>`'s `timestamp`.
    started: DateTime<FixedOffset>,
    /// The baseline regressions are marked against.
    baseline: Option<Arc<dyn Baseline>>,
    /// Whether the directory was made ready.
    prepared: bool,
    /// The suites being fed: their `<testcase>`s so far.
    open: HashMap<SuiteKey, Cases>,
    /// The ended suites' `<testsuite>` elements, one after another.
    done: Option<Spool>,
    /// Where each ended suite's element is in `done`.
    elements: HashMap<SuiteKey, VecDeque<Element>>,
}

/// A suite, or one system of it.
type SuiteKey = (usize, Option<String>);

/// A suite's `<testcase>` elements, spooled, with their counts and time.
struct Cases {
    spool: Spool,
    counts: Counts,
    time: Duration,
}

/// What a `<testsuite>` (or `<testsuites>`) counts.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Counts {
    tests: usize,
    skipped: usize,
    failures: usize,
    errors: usize,
}

impl Counts {
    /// Counts a case of `status` (as quick-junit's `add_test_case` does).
    fn add(&mut self, status: &TestCaseStatus) {
        self.tests += 1;
        match status {
            TestCaseStatus::Success { .. } => {}
            TestCaseStatus::NonSuccess { kind, .. } => match kind {
                NonSuccessKind::Failure => self.failures += 1,
                NonSuccessKind::Error => self.errors += 1,
            },
            TestCaseStatus::Skipped { .. } => self.skipped += 1,
        }
    }

    fn plus(self, other: Counts) -> Counts {
        Counts {
            tests: self.tests + other.tests,
            skipped: self.skipped + other.skipped,
            failures: self.failures + other.failures,
            errors: self.errors + other.errors,
        }
    }
}

/// An ended suite's `<testsuite>` in the spool of ended suites.
#[derive(Debug, Clone, Copy)]
struct Element {
    start: u64,
    len: u64,
    counts: Counts,
    time: Duration,
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
            baseline: None,
            prepared: false,
            open: HashMap::new(),
            done: None,
            elements: HashMap::new(),
        }
    }

    /// Marks the regressions since `baseline`.
    pub(crate) fn with_baseline(mut self, baseline: Option<Arc<dyn Baseline>>) -> Self {
        self.baseline = baseline;
        self
    }

    fn path(&self) -> PathBuf {
        self.dir.join("junit.xml")
    }

    fn error(&self, error: impl std::fmt::Display) -> ReportError {
        ReportError {
            path: self.path(),
            message: error.to_string(),
        }
    }

    /// A new spool in the output directory (made ready first).
    fn spool(&mut self) -> Result<Spool, ReportError> {
        if !self.prepared {
            prepare(&self.dir)?;
            self.prepared = true;
        }
        Spool::new(&self.dir).map_err(|e| self.error(format!("cannot spool: {e}")))
    }

    /// Spools `dataset`'s selected and skipped batches as `<testcase>`s.
    fn spool_cases(&mut self, dataset: &DatasetReport<'_>) -> Result<(), ReportError> {
        let key = (dataset.suite.index, dataset.suite.system.clone());
        if !self.open.contains_key(&key) {
            let spool = self.spool()?;
            let cases = Cases {
                spool,
                counts: Counts::default(),
                time: Duration::ZERO,
            };
            self.open.insert(key.clone(), cases);
        }
        let prefix = dataset.suite.test_prefix();
        let baseline = self.baseline.as_deref();
        let Some(cases) = self.open.get_mut(&key) else {
            return Ok(());
        };
        let shown = dataset.records.iter().filter(|r| r.selected || r.skipped);
        let mut written = Ok(());
        for record in shown {
            let asked = asked(dataset, record);
            let since = baseline.and_then(|b| b.mark(record));
            let case = test_case(&prefix, record, asked.as_ref(), since.as_ref());
            cases.counts.add(&case.status);
            cases.time += case.time.unwrap_or_default();
            written = case_xml(case).and_then(|xml| cases.spool.write_all(&xml));
            if written.is_err() {
                break;
            }
        }
        written.map_err(|e| self.error(e))
    }

    /// Appends `suite`'s `<testsuite>` (its head, its spooled cases, its
    /// end) to the spool of ended suites.
    fn end_suite(&mut self, suite: &SuiteReport, cases: Option<Cases>) -> Result<(), ReportError> {
        let mut done = match self.done.take() {
            Some(done) => done,
            None => self.spool()?,
        };
        let start = done.len();
        let written = write_suite(&mut done, suite, cases, self.started);
        self.done = Some(done);
        let (counts, time) = written.map_err(|e| self.error(e))?;
        let len = self.done.as_ref().map_or(0, |d| d.len()) - start;
        let key = (suite.head.index, suite.head.system.clone());
        let element = Element {
            start,
            len,
            counts,
            time,
        };
        self.elements.entry(key).or_default().push_back(element);
        Ok(())
    }

    /// Writes the file: `<testsuites>` with the totals, every reported
    /// suite's element in run order, each load failure's.
    fn write(&mut self, end: &RunEnd<'_>, out: &mut impl Write) -> std::io::Result<()> {
        let elements: Vec<Element> = end
            .suites
            .iter()
            .filter(|s| s.is_reported())
            .filter_map(|s| {
                let key = (s.head.index, s.head.system.clone());
                self.elements.get_mut(&key)?.pop_front()
            })
            .collect();
        let failures = end
            .load_failures
            .iter()
            .map(|failure| {
                let mut test_suite = load_failure_element(failure);
                test_suite.set_timestamp(self.started);
                suite_xml(test_suite)
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        let load_counts = Counts {
            tests: failures.len(),
            errors: failures.len(),
            ..Counts::default()
        };
        let counts = elements
            .iter()
            .map(|e| e.counts)
            .fold(load_counts, Counts::plus);
        let time = elements.iter().map(|e| e.time).sum();
        let (head, tail) = run_frame(counts, time)?;
        out.write_all(&head)?;
        for element in &elements {
            if let Some(done) = &mut self.done {
                done.copy_range(element.start, element.len, out)?;
            }
        }
        failures.iter().try_for_each(|xml| out.write_all(xml))?;
        out.write_all(&tail)
    }
}

impl Reporter for Junit {
    fn on_dataset(&mut self, dataset: &DatasetReport<'_>) -> Result<(), ReportError> {
        self.spool_cases(dataset)
    }

    fn on_suite(&mut self, suite: &SuiteReport) -> Result<(), ReportError> {
        let key = (suite.head.index, suite.head.system.clone());
        let cases = self.open.remove(&key);
        if !suite.is_reported() {
            return Ok(());
        }
        self.end_suite(suite, cases)
    }

    fn finish(&mut self, end: &RunEnd<'_>) -> Result<Vec<PathBuf>, ReportError> {
        if !self.prepared {
            prepare(&self.dir)?;
            self.prepared = true;
        }
        // A suite the run listed but did not end (interrupted): its cases so far.
        for suite in end.suites.iter().filter(|s| s.is_reported()) {
            let key = (suite.head.index, suite.head.system.clone());
            if self.elements.get(&key).is_none_or(VecDeque::is_empty) {
                let cases = self.open.remove(&key);
                self.end_suite(suite, cases)?;
            }
        }
        let path = self.path();
        let (tmp, mut writer) = create(&path)?;
        let written = self.write(end, &mut writer);
        finish(&path, &tmp, writer, written)?;
        Ok(vec![path])
    }
}

/// The query and expected answer of `record`, redacted, from its dataset's
/// first run.
fn asked(dataset: &DatasetReport<'_>, record: &BatchRecord) -> Option<Asked> {
    let batch = dataset
        .answered
        .first()?
        .dataset
        .conversation
        .get(record.id.batch)?;
    let redact = |text: &str| dataset.suite.secrets.redact(text).into_owned();
    Some(Asked {
        query: redact(&batch.query),
        expected: redact(&batch.ground_truth_assistant),
    })
}

/// Writes `suite`'s `<testsuite>` element: its head, its spooled `cases`,
/// its end; returns what it counts and its time.
fn write_suite(
    out: &mut impl Write,
    suite: &SuiteReport,
    cases: Option<Cases>,
    started: DateTime<FixedOffset>,
) -> std::io::Result<(Counts, Duration)> {
    let mut test_suite = TestSuite::new(xml_text(suite.test_prefix()));
    for (name, value) in usage_properties(&suite.tally.usage) {
        test_suite.add_property(Property::new(name, value));
    }
    if let Some(error) = &suite.error {
        test_suite.set_system_err(xml_text(error.clone()));
    }
    test_suite.set_timestamp(started);
    let Some(mut cases) = cases.filter(|c| c.counts.tests > 0) else {
        test_suite.set_time(Duration::ZERO);
        out.write_all(&suite_xml(test_suite)?)?;
        return Ok((Counts::default(), Duration::ZERO));
    };
    test_suite.set_time(cases.time);
    let (head, tail) = suite_frame(test_suite, cases.counts)?;
    out.write_all(&head)?;
    cases.spool.copy_to(out)?;
    out.write_all(&tail)?;
    Ok((cases.counts, cases.time))
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

/// Where an element starts in quick-junit's output: a new line, indented
/// by its depth (attribute values and text escape every `<`, so these are
/// found only where an element starts).
const SUITE_START: &[u8] = b"\n    <testsuite";
const CASE_START: &[u8] = b"\n        <testcase";
const SUITE_END: &[u8] = b"\n    </testsuite>";
const RUN_END: &[u8] = b"\n</testsuites>";

/// `report` as quick-junit writes it.
fn serialize(report: &Report) -> std::io::Result<Vec<u8>> {
    let mut xml = Vec::new();
    report.serialize(&mut xml).map_err(std::io::Error::other)?;
    Ok(xml)
}

/// Where `needle` first occurs in `xml` (after `from`).
fn find(xml: &[u8], needle: &[u8], from: usize) -> std::io::Result<usize> {
    xml.get(from..)
        .and_then(|rest| rest.windows(needle.len()).position(|w| w == needle))
        .map(|at| from + at)
        .ok_or_else(|| std::io::Error::other("unexpected quick-junit output"))
}

/// The bytes of `xml` before and after the empty element starting at
/// `start` (`<... />`, whose attributes hold no `/>`).
fn around(xml: &[u8], start: usize) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let end = find(xml, b"/>", start)? + 2;
    Ok((xml[..start].to_vec(), xml[end..].to_vec()))
}

/// A `<testsuite>` element, as quick-junit writes it in a report.
fn suite_xml(test_suite: TestSuite) -> std::io::Result<Vec<u8>> {
    let mut report = Report::new("forge");
    report.add_test_suite(test_suite);
    let xml = serialize(&report)?;
    let start = find(&xml, SUITE_START, 0)?;
    let end = find(&xml, RUN_END, start)?;
    Ok(xml[start..end].to_vec())
}

/// A `<testcase>` element, as quick-junit writes it in a report.
fn case_xml(case: TestCase) -> std::io::Result<Vec<u8>> {
    let mut test_suite = TestSuite::new("-");
    test_suite.add_test_case(case);
    let xml = suite_xml(test_suite)?;
    let start = find(&xml, CASE_START, 0)?;
    let end = xml
        .windows(SUITE_END.len())
        .rposition(|w| w == SUITE_END)
        .ok_or_else(|| std::io::Error::other("unexpected quick-junit output"))?;
    Ok(xml[start..end].to_vec())
}

/// What comes before and after the `<testcase>`s of `test_suite` (which
/// has none) counting `counts`: its start tag and properties; its
/// `<system-err>` and end tag.
fn suite_frame(mut test_suite: TestSuite, counts: Counts) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    test_suite.add_test_case(TestCase::new("-", TestCaseStatus::success()));
    let Counts {
        tests,
        skipped,
        failures,
        errors,
    } = counts;
    (test_suite.tests, test_suite.skipped) = (tests, skipped);
    (test_suite.failures, test_suite.errors) = (failures, errors);
    let xml = suite_xml(test_suite)?;
    around(&xml, find(&xml, CASE_START, 0)?)
}

/// What comes before and after the `<testsuite>`s of a report counting
/// `counts`, its time `time`: the declaration and `<testsuites>`; its end.
fn run_frame(counts: Counts, time: Duration) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let mut report = Report::new("forge");
    report.add_test_suite(TestSuite::new("-"));
    let Counts {
        tests,
        skipped,
        failures,
        errors,
    } = counts;
    (report.tests, report.skipped) = (tests, skipped);
    (report.failures, report.errors) = (failures, errors);
    report.set_time(time);
    let xml = serialize(&report)?;
    around(&xml, find(&xml, SUITE_START, 0)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::testing::{self, head, Parts};
    use crate::report::whole::WholeSuite;
    use crate::schema::Response;

    /// The report of `suites` built whole, as quick-junit serializes one
    /// `Report` (the reference the streamed file must equal).
    fn reference(
        suites: &[WholeSuite],
        load_failures: &[LoadFailure],
        started: DateTime<FixedOffset>,
    ) -> String {
        let mut report = Report::new("forge");
        let mut total = Duration::ZERO;
        for suite in suites {
            let error = match &suite.response {
                Response::Failure(failure) => Some(failure.error.clone()),
                Response::Success(_) => None,
            };
            if suite.records.is_empty() && error.is_none() {
                continue;
            }
            let prefix = suite.head.test_prefix();
            let mut test_suite = TestSuite::new(prefix.clone());
            if let Some(error) = error {
                test_suite.set_system_err(error);
            }
            for (name, value) in usage_properties(&SuiteUsage::of(&suite.records)) {
                test_suite.add_property(Property::new(name, value));
            }
            let mut time = Duration::ZERO;
            let first = |d: usize| match &suite.response {
                Response::Success(run) => run.datasets.get(d).cloned(),
                Response::Failure(_) => None,
            };
            for record in suite.records.iter().filter(|r| r.selected || r.skipped) {
                let asked = first(record.id.dataset).and_then(|dataset| {
                    let batch = dataset.conversation.get(record.id.batch)?;
                    Some(Asked {
                        query: suite.head.secrets.redact(&batch.query).into_owned(),
                        expected: batch.ground_truth_assistant.clone(),
                    })
                });
                let case = test_case(&prefix, record, asked.as_ref(), None);
                time += case.time.unwrap_or_default();
                test_suite.add_test_case(case);
            }
            test_suite.set_time(time).set_timestamp(started);
            total += time;
            report.add_test_suite(test_suite);
        }
        for failure in load_failures {
            let mut test_suite = load_failure_element(failure);
            test_suite.set_timestamp(started);
            report.add_test_suite(test_suite);
        }
        report.set_time(total);
        report.to_string().expect("serialized")
    }

    /// A reporter into `dir`, its run started at a fixed time.
    fn junit(dir: &std::path::Path) -> Junit {
        let mut junit = Junit::new(dir);
        junit.started = DateTime::parse_from_rfc3339("2025-01-02T03:04:05+00:00").expect("time");
        junit
    }

    fn written(mut junit: Junit, suites: &[SuiteReport], load: &[LoadFailure]) -> String {
        let path = junit.finish(&testing::end(suites, load)).expect("finish");
        assert_eq!(path.len(), 1);
        std::fs::read_to_string(&path[0]).expect("junit.xml")
    }

    #[test]
    fn suites_fed_dataset_by_dataset_give_the_whole_report() {
        let dir = tempfile::tempdir().expect("temp dir");
        let suites = vec![
            testing::suite(head("geo", 0, None), 3, 4),
            testing::failed(head("down", 1, None), "runner `x`: no such <host>"),
            testing::suite(head("empty", 2, None), 0, 0),
            testing::suite(head("cmp", 3, Some("small")), 2, 2),
            testing::suite(head("cmp", 3, Some("large")), 1, 3),
        ];
        let load = [testing::load_failure("bad")];
        let mut reporter = junit(dir.path());
        let expected = reference(&suites, &load, reporter.started);
        let reports = testing::feed(&mut reporter, suites);
        let text = written(reporter, &reports, &load);
        assert_eq!(text, expected);
        assert!(text.contains("<system-err>runner `x`: no such &lt;host&gt;</system-err>"));
        assert!(!text.contains(testing::SECRET), "a secret in junit.xml");
        assert!(
            !text.contains("name=\"empty\""),
            "an empty suite is not reported"
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["junit.xml"], "spools leave nothing behind");
    }

    #[test]
    fn interleaved_suites_are_written_in_run_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let a = testing::suite(head("a", 0, None), 3, 3);
        let b = testing::suite(head("b", 1, None), 2, 5);
        let c = testing::failed(head("c", 2, None), "cannot run");
        let mut reporter = junit(dir.path());
        let expected = reference(&[a.clone(), b.clone(), c.clone()], &[], reporter.started);
        let (a, b) = (Parts::of(a), Parts::of(b));
        a.feed_dataset(&mut reporter, 0);
        b.feed_dataset(&mut reporter, 0);
        b.feed_dataset(&mut reporter, 1);
        a.feed_dataset(&mut reporter, 1);
        let c = Parts::of(c).end(&mut reporter);
        let b = b.end(&mut reporter);
        a.feed_dataset(&mut reporter, 2);
        let a = a.end(&mut reporter);
        assert_eq!(written(reporter, &[a, b, c], &[]), expected);
    }

    #[test]
    fn a_run_with_nothing_reported_is_an_empty_report() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut reporter = junit(dir.path());
        let empty = testing::suite(head("empty", 0, None), 0, 0);
        let expected = reference(std::slice::from_ref(&empty), &[], reporter.started);
        let reports = testing::feed(&mut reporter, vec![empty]);
        assert_eq!(written(reporter, &reports, &[]), expected);
    }

    #[test]
    fn testcases_are_spooled_not_held() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut reporter = junit(dir.path());
        let parts = Parts::of(testing::suite(head("big", 0, None), 3, 200));
        let mut spooled = 0;
        for index in 0..3 {
            parts.feed_dataset(&mut reporter, index);
            let cases = &reporter.open[&(0, None)];
            assert!(
                cases.spool.len() > spooled,
                "dataset {index} was not spooled"
            );
            spooled = cases.spool.len();
        }
        let cases = &reporter.open[&(0, None)];
        assert_eq!(cases.counts.tests, 3 * 199, "selected and skipped batches");
        let report = parts.end(&mut reporter);
        assert!(reporter.open.is_empty(), "an ended suite holds no spool");
        let element = reporter.elements[&(0, None)][0];
        assert!(
            element.len > spooled,
            "the element is its head and its cases"
        );
        assert_eq!(report.tally.records, 600);
    }

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
