//! A suite's report held whole in memory (`forge merge` puts one together
//! from parts), fed to reporters as a run feeds them: dataset by dataset,
//! then the suite's end.

use super::{Answered, DatasetReport, Reporter, SuiteHead, SuiteReport, Tally};
use crate::error::ReportError;
use crate::run::{BatchRecord, Origin};
use crate::schema::Response;

/// A suite's response (with its answered datasets), where each of them
/// comes from, and every record, in suite order.
#[derive(Debug, Clone)]
pub struct WholeSuite {
    /// The suite.
    pub head: SuiteHead,
    /// Its response: the answered datasets, or the error that kept the
    /// suite from running.
    pub response: Response,
    /// Where each of the response's datasets comes from, in its order.
    pub origins: Vec<Origin>,
    /// Its records, in suite order (dataset, then turn).
    pub records: Vec<BatchRecord>,
}

impl WholeSuite {
    /// Feeds the suite to `reporter`: each dataset in order, then the
    /// suite's end, which it returns.
    pub fn feed(self, reporter: &mut dyn Reporter) -> Result<SuiteReport, ReportError> {
        let WholeSuite {
            head,
            response,
            origins,
            records,
        } = self;
        let (error, mut answered) = match response {
            Response::Failure(failure) => (Some(failure.error), Vec::new()),
            Response::Success(run) => {
                let pairs = run.datasets.into_iter().zip(run.summaries).zip(origins);
                let answered = pairs.map(|((dataset, summary), origin)| Answered {
                    dataset,
                    summary,
                    origin,
                });
                (None, answered.collect::<Vec<_>>())
            }
        };
        answered.sort_by_key(|a| a.origin);
        let mut tally = Tally::default();
        let mut records = records.as_slice();
        let mut answered = answered.as_slice();
        while let Some(index) = next_dataset(records, answered) {
            let (these, rest) = split(records, |r| r.id.dataset == index);
            let (runs, others) = split(answered, |a| a.origin.dataset == index);
            let report = DatasetReport {
                suite: &head,
                index,
                records: these,
                answered: runs,
            };
            tally.add(&report);
            reporter.on_dataset(&report)?;
            (records, answered) = (rest, others);
        }
        let report = SuiteReport { head, error, tally };
        reporter.on_suite(&report)?;
        Ok(report)
    }
}

/// The lowest dataset index either list starts with.
fn next_dataset(records: &[BatchRecord], answered: &[Answered]) -> Option<usize> {
    let a = records.first().map(|r| r.id.dataset);
    let b = answered.first().map(|a| a.origin.dataset);
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The leading items for which `same` holds, and the rest.
fn split<T>(items: &[T], same: impl Fn(&T) -> bool) -> (&[T], &[T]) {
    let end = items.iter().position(|i| !same(i)).unwrap_or(items.len());
    items.split_at(end)
}
