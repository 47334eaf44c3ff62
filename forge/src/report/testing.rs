//! Suites for the reporters' own tests: fed whole ([`WholeSuite::feed`])
//! or dataset by dataset, as a run feeds them.

use std::path::PathBuf;

use super::whole::WholeSuite;
use super::{Answered, DatasetReport, Reporter, RunEnd, SuiteHead, SuiteReport};
use crate::check::CheckResult;
use crate::load::LoadFailure;
use crate::run::{BatchRecord, Origin, RunRecord};
use crate::schema::{Batch, Dataset, Response, RunResponse, Summary};
use crate::secrets::Secrets;
use crate::select::BatchId;
use crate::suite::BatchLocation;
use crate::usage::{Spend, Usage};

/// The secret every fixture's queries and answers carry.
pub(crate) const SECRET: &str = "sk-secret-1";

/// The head of suite `name` (`index`, about `system`).
pub(crate) fn head(name: &str, index: usize, system: Option<&str>) -> SuiteHead {
    SuiteHead {
        index,
        name: name.into(),
        system: system.map(str::to_owned),
        secrets: Secrets::new([SECRET]),
    }
}

/// Suite `head` of `datasets` datasets of `turns` turns each: turn `k` of
/// dataset `d` fails when `(d + k) % 3 == 1`, the last turn of dataset 1
/// is skipped, the first turn of each dataset is an earlier turn (not
/// selected) when `turns > 2`; answers hold the secret and XML's specials.
pub(crate) fn suite(head: SuiteHead, datasets: usize, turns: usize) -> WholeSuite {
    let prefix = head.test_prefix();
    let mut records = Vec::new();
    let mut answered = Vec::new();
    for d in 0..datasets {
        let mut dataset = Dataset::new(format!("s{d}"), "agent");
        for k in 0..turns {
            let mut batch = Batch::new(format!("q{k}"), format!("query {d}.{k} <{SECRET}>"));
            batch.ground_truth_assistant = if k % 2 == 0 {
                "Paris & co".into()
            } else {
                String::new()
            };
            dataset.conversation.push(batch);
            records.push(record(&head, &prefix, (d, k), turns));
        }
        let summary = Summary {
            session_id: format!("s{d}"),
            total_batches: turns,
            successes: turns,
            failures: 0,
            total_execution_time_ms: 1.0,
            avg_batch_time_ms: 1.0,
        };
        answered.push((dataset, summary));
    }
    WholeSuite {
        head,
        response: Response::Success(RunResponse::new(answered)),
        origins: (0..datasets)
            .map(|dataset| Origin { dataset, run: 0 })
            .collect(),
        records,
    }
}

/// The record of turn `k` of dataset `d`.
fn record(head: &SuiteHead, prefix: &str, (d, k): (usize, usize), turns: usize) -> BatchRecord {
    let passed = (d + k) % 3 != 1;
    let skipped = d == 1 && k + 1 == turns;
    let selected = !skipped && (turns <= 2 || k > 0);
    let answer = format!("answer {d}.{k} \"<b>\" & {SECRET}");
    let message = (!passed).then(|| format!("check `contains` failed: no \"Paris\" in {d}.{k}"));
    let run = RunRecord {
        session_id: format!("s{d}"),
        success: true,
        passed,
        message: message.clone(),
        answer: head.secrets.redact(&answer).into_owned(),
        time_ms: 1.5 + (d * 7 + k * 3) as f64,
        checks: vec![CheckResult {
            check: "contains".into(),
            passed,
            detail: String::new(),
            score: None,
            scores: None,
            reason: None,
        }],
        usage: Some(Spend::new(Usage::new(10, 5), None)),
        judge_usage: None,
    };
    BatchRecord {
        id: BatchId {
            suite: head.index,
            dataset: d,
            batch: k,
        },
        test: format!("{prefix}::s{d}::q{k}"),
        selected,
        passed,
        message,
        runs: vec![run],
        checks: Vec::new(),
        skipped,
        location: Some(BatchLocation {
            file: PathBuf::from(format!("suites/{}.yaml", head.name)),
            line: Some(10 + d * 20 + k * 3),
        }),
    }
}

/// Suite `head` that could not run: `error`, no dataset.
pub(crate) fn failed(head: SuiteHead, error: &str) -> WholeSuite {
    WholeSuite {
        head,
        response: Response::error(error),
        origins: Vec::new(),
        records: Vec::new(),
    }
}

/// Feeds each suite whole, in turn.
pub(crate) fn feed(reporter: &mut dyn Reporter, suites: Vec<WholeSuite>) -> Vec<SuiteReport> {
    suites
        .into_iter()
        .map(|suite| suite.feed(reporter).expect("fed"))
        .collect()
}

/// The datasets of `suite`, as a run reports them: its head, and per
/// dataset its records and answered runs.
pub(crate) struct Parts {
    /// The suite.
    pub head: SuiteHead,
    /// Its datasets: records and answered runs.
    pub datasets: Vec<(Vec<BatchRecord>, Vec<Answered>)>,
    /// The suite whole, for its end.
    whole: WholeSuite,
}

impl Parts {
    /// `suite` cut into datasets.
    pub(crate) fn of(suite: WholeSuite) -> Parts {
        let whole = suite.clone();
        let Response::Success(run) = suite.response else {
            return Parts {
                head: suite.head,
                datasets: Vec::new(),
                whole,
            };
        };
        let mut datasets: Vec<(Vec<BatchRecord>, Vec<Answered>)> = Vec::new();
        let pairs = run
            .datasets
            .into_iter()
            .zip(run.summaries)
            .zip(suite.origins);
        for ((dataset, summary), origin) in pairs {
            let records = suite
                .records
                .iter()
                .filter(|r| r.id.dataset == origin.dataset);
            datasets.push((
                records.cloned().collect(),
                vec![Answered {
                    dataset,
                    summary,
                    origin,
                }],
            ));
        }
        Parts {
            head: suite.head,
            datasets,
            whole,
        }
    }

    /// Ends the suite: `reporter`'s `on_suite` (its datasets were fed).
    pub(crate) fn end(self, reporter: &mut dyn Reporter) -> SuiteReport {
        self.whole.feed(&mut EndOnly(reporter)).expect("on_suite")
    }

    /// Feeds dataset `index` to `reporter`.
    pub(crate) fn feed_dataset(&self, reporter: &mut dyn Reporter, index: usize) {
        let (records, answered) = &self.datasets[index];
        let report = DatasetReport {
            suite: &self.head,
            index,
            records,
            answered,
        };
        records.iter().for_each(|r| reporter.on_record(r));
        reporter.on_dataset(&report).expect("on_dataset");
    }
}

/// A run's end over `suites`, with `load_failures`.
pub(crate) fn end<'a>(suites: &'a [SuiteReport], load_failures: &'a [LoadFailure]) -> RunEnd<'a> {
    RunEnd {
        suites,
        load_failures,
        interrupted: false,
    }
}

/// A suite file that could not be loaded.
pub(crate) fn load_failure(stem: &str) -> LoadFailure {
    LoadFailure {
        test: format!("{stem}::load"),
        message: format!("suites/{stem}.yaml:3:1: unknown key `qurey` <&>"),
        location: Some(BatchLocation {
            file: PathBuf::from(format!("suites/{stem}.yaml")),
            line: Some(3),
        }),
    }
}

/// A reporter fed only the suite's end (its datasets were fed apart).
struct EndOnly<'a>(&'a mut dyn Reporter);

impl Reporter for EndOnly<'_> {
    fn on_suite(&mut self, suite: &SuiteReport) -> Result<(), crate::error::ReportError> {
        self.0.on_suite(suite)
    }
}
