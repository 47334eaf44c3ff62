//! Suites to feed the streaming reporters in tests, and a recorder that
//! replays what a run fed it in another order (suites interleaved).

use crate::check::CheckResult;
use crate::error::ReportError;
use crate::report::whole::WholeSuite;
use crate::report::{Answered, DatasetReport, Reporter, SuiteHead, SuiteReport};
use crate::run::{BatchRecord, Origin, RunRecord};
use crate::schema::{Batch, Dataset, Response, RunResponse, Summary};
use crate::secrets::Secrets;
use crate::select::BatchId;
use crate::usage::{Spend, Usage};

/// The secret every fixture suite's queries, answers and messages hold.
pub(crate) const SECRET: &str = "sk-secret-1";

/// How a fixture suite looks.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Shape {
    /// Its datasets.
    pub datasets: usize,
    /// Each dataset's turns.
    pub turns: usize,
    /// Its runs of each dataset (`repeat`; 0 counts as 1).
    pub repeat: usize,
    /// Whether its batches have expectations.
    pub checks: bool,
    /// Whether its runs report usage.
    pub usage: bool,
    /// A turn ignored (skipped) in every dataset.
    pub skipped: Option<usize>,
    /// A turn run only as an earlier turn (not selected) in every dataset.
    pub unselected: Option<usize>,
    /// The error that kept it from running.
    pub error: Option<&'static str>,
}

/// A suite `name` of `shape`, the `index`th of its run.
pub(crate) fn suite(index: usize, name: &str, system: Option<&str>, shape: Shape) -> WholeSuite {
    let runs = shape.repeat.max(1);
    let head = SuiteHead {
        index,
        name: name.to_owned(),
        system: system.map(str::to_owned),
        secrets: Secrets::new([SECRET]),
    };
    let prefix = head.test_prefix();
    let mut records = Vec::new();
    let mut results = Vec::new();
    let mut origins = Vec::new();
    for d in 0..shape.datasets {
        for b in 0..shape.turns {
            records.push(record(&prefix, shape, (index, d, b)));
        }
        if shape.error.is_some() {
            continue;
        }
        for r in 0..runs {
            results.push(answered(shape, d, r));
            origins.push(Origin { dataset: d, run: r });
        }
    }
    let response = match shape.error {
        Some(error) => Response::error(format!("{error} ({SECRET})")),
        None => Response::Success(RunResponse::new(results)),
    };
    WholeSuite {
        head,
        response,
        origins,
        records,
    }
}

/// The session id of run `r` of dataset `d`.
fn session(shape: Shape, d: usize, r: usize) -> String {
    match shape.repeat > 1 {
        true => format!("s{d}-run{}", r + 1),
        false => format!("s{d}"),
    }
}

/// Run `r` of dataset `d`, answered, with its summary.
fn answered(shape: Shape, d: usize, r: usize) -> (Dataset, Summary) {
    let session_id = session(shape, d, r);
    let mut dataset = Dataset::new(session_id.clone(), "agent");
    for b in 0..shape.turns {
        let mut batch = Batch::new(format!("q{b}"), format!("query {b} with {SECRET}"));
        batch.assistant = format!("answer {b}\nline two \"quoted\" {SECRET}");
        dataset.conversation.push(batch);
    }
    let summary = Summary {
        session_id,
        total_batches: shape.turns,
        successes: shape.turns,
        failures: 0,
        total_execution_time_ms: 1.5 * shape.turns as f64,
        avg_batch_time_ms: 1.5,
    };
    (dataset, summary)
}

/// The record of turn `b` of dataset `d` of suite `s`.
fn record(prefix: &str, shape: Shape, (s, d, b): (usize, usize, usize)) -> BatchRecord {
    let skipped = shape.skipped == Some(b);
    let selected = !skipped && shape.unselected != Some(b);
    let failing = selected && ((d + b) % 3 == 1 || shape.error.is_some());
    let runs = match shape.error {
        Some(_) => Vec::new(),
        None => (0..shape.repeat.max(1))
            .map(|r| run(shape, session(shape, d, r), !failing || r % 2 == 0))
            .collect(),
    };
    let passed = selected && shape.error.is_none() && runs.iter().all(|r| r.passed);
    BatchRecord {
        id: BatchId {
            suite: s,
            dataset: d,
            batch: b,
        },
        test: format!("{prefix}::s{d}::q{b}"),
        selected,
        passed,
        message: (!passed).then(|| format!("no `Paris` in {SECRET}")),
        runs,
        checks: Vec::new(),
        skipped,
        location: None,
    }
}

fn run(shape: Shape, session_id: String, passed: bool) -> RunRecord {
    let checks = match shape.checks {
        true => vec![CheckResult {
            check: "contains".into(),
            passed,
            detail: if passed {
                String::new()
            } else {
                format!("no `Paris` in {SECRET}")
            },
            score: None,
            scores: None,
            reason: None,
        }],
        false => Vec::new(),
    };
    RunRecord {
        session_id,
        success: true,
        passed,
        message: None,
        answer: format!("an answer with {SECRET}"),
        time_ms: 1.5,
        checks,
        usage: shape.usage.then(|| Spend::new(Usage::new(10, 5), None)),
        judge_usage: None,
    }
}

/// What a reporter was fed, owned, to be fed again.
#[derive(Debug, Clone)]
pub(crate) enum Fed {
    /// A dataset: its suite, index, records and answered datasets.
    Dataset(SuiteHead, usize, Vec<BatchRecord>, Vec<Answered>),
    /// A suite's end.
    Suite(Box<SuiteReport>),
}

/// What a run of `suite` feeds a reporter, in order.
pub(crate) fn fed(suite: WholeSuite) -> Vec<Fed> {
    let mut recorder = Recorder::default();
    suite.feed(&mut recorder).expect("recorded");
    recorder.0
}

/// Feeds `reporter` every suite's stream, taking one item of each suite in
/// turn (their datasets interleaved); returns the suites' ends.
pub(crate) fn interleaved(
    reporter: &mut dyn Reporter,
    streams: Vec<Vec<Fed>>,
) -> Result<Vec<SuiteReport>, ReportError> {
    let mut streams: Vec<_> = streams.into_iter().map(Vec::into_iter).collect();
    let mut ends = Vec::new();
    loop {
        let mut any = false;
        for stream in &mut streams {
            if let Some(item) = stream.next() {
                any = true;
                ends.extend(feed(reporter, item)?);
            }
        }
        if !any {
            return Ok(ends);
        }
    }
}

/// Feeds `reporter` every suite, their datasets interleaved or one suite
/// after the other; returns the suites' ends.
pub(crate) fn feed_all(
    reporter: &mut dyn Reporter,
    suites: Vec<WholeSuite>,
    interleave: bool,
) -> Vec<SuiteReport> {
    if interleave {
        let streams = suites.into_iter().map(fed).collect();
        return interleaved(reporter, streams).expect("fed");
    }
    let feed = |s: WholeSuite| s.feed(&mut *reporter).expect("fed");
    suites.into_iter().map(feed).collect()
}

/// Feeds `reporter` one item; the suite's end if it is one.
pub(crate) fn feed(
    reporter: &mut dyn Reporter,
    item: Fed,
) -> Result<Option<SuiteReport>, ReportError> {
    match item {
        Fed::Dataset(head, index, records, answered) => {
            reporter.on_dataset(&DatasetReport {
                suite: &head,
                index,
                records: &records,
                answered: &answered,
            })?;
            Ok(None)
        }
        Fed::Suite(report) => {
            reporter.on_suite(&report)?;
            Ok(Some(*report))
        }
    }
}

#[derive(Default)]
struct Recorder(Vec<Fed>);

impl Reporter for Recorder {
    fn on_dataset(&mut self, dataset: &DatasetReport<'_>) -> Result<(), ReportError> {
        self.0.push(Fed::Dataset(
            dataset.suite.clone(),
            dataset.index,
            dataset.records.to_vec(),
            dataset.answered.to_vec(),
        ));
        Ok(())
    }

    fn on_suite(&mut self, suite: &SuiteReport) -> Result<(), ReportError> {
        self.0.push(Fed::Suite(Box::new(suite.clone())));
        Ok(())
    }
}

/// Every file under `dir` (relative paths, sorted), temporary ones too.
pub(crate) fn files(dir: &std::path::Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(at) = dirs.pop() {
        for entry in std::fs::read_dir(&at).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let relative = path.strip_prefix(dir).expect("under dir");
                files.push(relative.display().to_string());
            }
        }
    }
    files.sort();
    files
}
