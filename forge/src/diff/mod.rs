//! `forge diff BASE NEW` and `forge run --baseline DIR`: what got worse
//! (and better) since a baseline run.
//!
//! A run is read from its part (`parts/run.json`, see
//! [`crate::report::part`]): every batch's record, by test name. Two runs'
//! batches are compared one by one ([`compare`]):
//!
//! - **newly failing**: it passed in the baseline and fails now (or is new
//!   and fails);
//! - **newly passing**, **answer changed** (listed, not regressions);
//! - **score dropped**: a check with a score (`answer_correctness`,
//!   `rubric`, `similarity`, ...; the mean over the batch's runs) is lower
//!   by more than [`DiffOptions::score_drop`];
//! - **pass count dropped** (a batch with `repeat`): a lower share of its
//!   runs passed; it is significant when Fisher's exact test
//!   ([`p_value`], one-sided) gives a p-value below [`DiffOptions::alpha`].
//!   A drop that is not significant is a flaky batch: even if its verdict
//!   flipped to failing, it is not a regression;
//! - **added**, **removed**.
//!
//! A regression is a newly failing batch (but a flaky one), a score drop, or
//! a significant pass-count drop. [`Baseline`] holds a baseline for a run in
//! progress, so each reporter can mark a record as it sees it.

mod fisher;
mod read;
mod render;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use thiserror::Error;

use crate::run::BatchRecord;

pub use fisher::p_value;

/// `--score-drop`'s default: a score lower by more than this regressed.
pub const DEFAULT_SCORE_DROP: f64 = 0.1;

/// `--alpha`'s default: the significance level of a pass-count drop.
pub const DEFAULT_ALPHA: f64 = 0.05;

/// Environment variable naming the baseline of a `cargo test` run (the
/// harness's `forge run --baseline`).
pub const BASELINE_ENV: &str = "FORGE_BASELINE";

/// How two runs are compared.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DiffOptions {
    /// A check's score lower by more than this is a regression.
    pub score_drop: f64,
    /// A pass-count drop is a regression when its p-value is below this.
    pub alpha: f64,
}

impl Default for DiffOptions {
    fn default() -> Self {
        DiffOptions {
            score_drop: DEFAULT_SCORE_DROP,
            alpha: DEFAULT_ALPHA,
        }
    }
}

/// An input `forge diff` (or `--baseline`) cannot use.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DiffError {
    /// The path is not a forge run, or cannot be read.
    #[error("{path}: {message}")]
    Input {
        /// The directory or file at fault.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
}

/// A batch as a run left it: what a diff compares.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Snapshot {
    passed: bool,
    /// Runs that passed, of `runs`.
    passes: usize,
    runs: usize,
    answer: String,
    message: Option<String>,
    /// The mean score of each check that has one, in first-seen order.
    scores: Vec<(String, f64)>,
    file: Option<String>,
    line: Option<usize>,
}

impl Snapshot {
    /// The snapshot of a batch that had a verdict (selected, not skipped).
    pub(crate) fn of(record: &BatchRecord) -> Option<Snapshot> {
        if !record.selected || record.skipped {
            return None;
        }
        Some(Snapshot {
            passed: record.passed,
            passes: record.runs.iter().filter(|r| r.passed).count(),
            runs: record.runs.len(),
            answer: record.answer(),
            message: record.message.clone(),
            scores: mean_scores(record),
            file: record
                .location
                .as_ref()
                .map(|l| l.file.to_string_lossy().replace('\\', "/")),
            line: record.location.as_ref().and_then(|l| l.line),
        })
    }
}

/// The mean over a batch's runs of each check's score.
fn mean_scores(record: &BatchRecord) -> Vec<(String, f64)> {
    let mut sums: Vec<(String, f64, usize)> = Vec::new();
    let scored = record.runs.iter().flat_map(|r| &r.checks);
    for (check, score) in scored.filter_map(|c| Some((&c.check, c.score?))) {
        match sums.iter_mut().find(|(name, ..)| name == check) {
            Some((_, sum, n)) => {
                *sum += score;
                *n += 1;
            }
            None => sums.push((check.clone(), score, 1)),
        }
    }
    sums.into_iter()
        .map(|(name, sum, n)| (name, sum / n as f64))
        .collect()
}

/// One way a batch changed since the baseline.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ChangeKind {
    /// It passed in the baseline (or is new) and fails now.
    NewlyFailing {
        /// Why it fails now.
        message: Option<String>,
    },
    /// It failed in the baseline and passes now.
    NewlyPassing,
    /// Its answer differs.
    AnswerChanged {
        /// The baseline's answer.
        before: String,
        /// The answer now.
        after: String,
    },
    /// A check's score is lower by more than `--score-drop`.
    ScoreDropped {
        /// The check.
        check: String,
        /// Its mean score in the baseline.
        before: f64,
        /// Its mean score now.
        after: f64,
    },
    /// A lower share of its runs passed (a batch with `repeat`).
    PassCountDropped {
        /// Runs that passed in the baseline.
        before_passed: usize,
        /// Runs in the baseline.
        before_runs: usize,
        /// Runs that passed now.
        after_passed: usize,
        /// Runs now.
        after_runs: usize,
        /// Fisher's exact test, one-sided.
        p_value: f64,
        /// Whether `p_value` is below `--alpha`.
        significant: bool,
    },
    /// Not in the baseline.
    Added {
        /// Whether it passes.
        passed: bool,
    },
    /// In the baseline, not in this run.
    Removed {
        /// Whether it passed in the baseline.
        passed: bool,
    },
}

/// How a batch changed since the baseline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// Its test name.
    pub test: String,
    /// The file it is written in (relative as the run was given it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The line of its `qa_id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// Whether it regressed: newly failing (not flaky), a score drop or a
    /// significant pass-count drop.
    pub regressed: bool,
    /// Every way it changed.
    pub kinds: Vec<ChangeKind>,
}

impl Change {
    /// Whether a pass-count drop of this batch is not significant: the
    /// batch is flaky, and its verdict flipping is no regression.
    fn flaky(kinds: &[ChangeKind]) -> bool {
        kinds.iter().any(|k| {
            matches!(
                k,
                ChangeKind::PassCountDropped {
                    significant: false,
                    ..
                }
            )
        })
    }

    /// Whether `kind`, one of this change's, is a regression.
    pub fn is_regression(&self, kind: &ChangeKind) -> bool {
        is_regression(kind, Change::flaky(&self.kinds))
    }

    /// One line saying how it changed: `newly failing; similarity score
    /// 0.950 -> 0.310`.
    pub fn describe(&self) -> String {
        self.kinds
            .iter()
            .map(render::kind_text)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Whether `kind` is a regression, in a batch that is `flaky` or not.
fn is_regression(kind: &ChangeKind, flaky: bool) -> bool {
    match kind {
        ChangeKind::NewlyFailing { .. } => !flaky,
        ChangeKind::ScoreDropped { .. } => true,
        ChangeKind::PassCountDropped { significant, .. } => *significant,
        _ => false,
    }
}

/// How the batch `test` changed from `before` (the baseline's) to `after`
/// (this run's); `None` when it did not (or is in neither).
pub(crate) fn compare(
    test: &str,
    before: Option<&Snapshot>,
    after: Option<&Snapshot>,
    options: DiffOptions,
) -> Option<Change> {
    let kinds = match (before, after) {
        (None, None) => return None,
        (Some(before), None) => vec![ChangeKind::Removed {
            passed: before.passed,
        }],
        (None, Some(after)) => {
            let mut kinds = vec![ChangeKind::Added {
                passed: after.passed,
            }];
            if !after.passed {
                kinds.push(ChangeKind::NewlyFailing {
                    message: after.message.clone(),
                });
            }
            kinds
        }
        (Some(before), Some(after)) => changes(before, after, options),
    };
    if kinds.is_empty() {
        return None;
    }
    let place = after.or(before)?;
    Some(Change {
        test: test.to_owned(),
        file: place.file.clone(),
        line: place.line,
        regressed: kinds
            .iter()
            .any(|k| is_regression(k, Change::flaky(&kinds))),
        kinds,
    })
}

/// The ways a batch in both runs changed.
fn changes(before: &Snapshot, after: &Snapshot, options: DiffOptions) -> Vec<ChangeKind> {
    let mut kinds = Vec::new();
    if let Some(drop) = pass_count_drop(before, after, options.alpha) {
        kinds.push(drop);
    }
    match (before.passed, after.passed) {
        (true, false) => kinds.push(ChangeKind::NewlyFailing {
            message: after.message.clone(),
        }),
        (false, true) => kinds.push(ChangeKind::NewlyPassing),
        _ => {}
    }
    for (check, now) in &after.scores {
        let was = before.scores.iter().find(|(c, _)| c == check);
        if let Some(&(_, was)) = was.filter(|(_, was)| was - now > options.score_drop + 1e-9) {
            kinds.push(ChangeKind::ScoreDropped {
                check: check.clone(),
                before: was,
                after: *now,
            });
        }
    }
    if before.answer != after.answer {
        kinds.push(ChangeKind::AnswerChanged {
            before: before.answer.clone(),
            after: after.answer.clone(),
        });
    }
    kinds
}

/// A lower pass rate of a batch run more than once (in either run), with
/// its p-value.
fn pass_count_drop(before: &Snapshot, after: &Snapshot, alpha: f64) -> Option<ChangeKind> {
    let repeated = before.runs > 1 || after.runs > 1;
    let ran = before.runs > 0 && after.runs > 0;
    // after.passes / after.runs < before.passes / before.runs
    let lower = after.passes * before.runs < before.passes * after.runs;
    if !(repeated && ran && lower) {
        return None;
    }
    let p = p_value(before.passes, before.runs, after.passes, after.runs);
    Some(ChangeKind::PassCountDropped {
        before_passed: before.passes,
        before_runs: before.runs,
        after_passed: after.passes,
        after_runs: after.runs,
        p_value: p,
        significant: p < alpha,
    })
}

/// Two runs compared.
#[derive(Debug, Clone, PartialEq)]
pub struct Diff {
    /// The baseline, as given.
    pub base: PathBuf,
    /// The run compared with it, as given.
    pub new: PathBuf,
    /// How they were compared.
    pub options: DiffOptions,
    /// The batches in both runs.
    pub compared: usize,
    /// The batches that changed: in the new run's order, then the removed
    /// ones in the baseline's.
    pub changes: Vec<Change>,
}

impl Diff {
    /// Whether a batch regressed.
    pub fn regressed(&self) -> bool {
        self.changes.iter().any(|c| c.regressed)
    }

    /// The report for people: the changes grouped, with counts.
    pub fn to_text(&self) -> String {
        render::text(self)
    }

    /// The report as JSON (`--format json`).
    pub fn to_json(&self) -> serde_json::Value {
        render::json(self)
    }
}

/// Compares the run `new` with the baseline `base`: each the output
/// directory of a run (its `parts/`, or its subdirectories' when it holds
/// the directories of shards) or a part file.
pub fn diff(base: &Path, new: &Path, options: DiffOptions) -> Result<Diff, DiffError> {
    let before = read::batches(base)?;
    let after = read::batches(new)?;
    let mut changes = Vec::new();
    let mut compared = 0;
    for test in &after.order {
        let was = before.by_test.get(test);
        compared += usize::from(was.is_some());
        changes.extend(compare(test, was, after.by_test.get(test), options));
    }
    for test in before
        .order
        .iter()
        .filter(|t| !after.by_test.contains_key(*t))
    {
        changes.extend(compare(test, before.by_test.get(test), None, options));
    }
    Ok(Diff {
        base: base.to_owned(),
        new: new.to_owned(),
        options,
        compared,
        changes,
    })
}

/// A baseline a run is compared with as it goes (`forge run --baseline`,
/// `FORGE_BASELINE`).
#[derive(Debug)]
pub(crate) struct Baseline {
    path: PathBuf,
    options: DiffOptions,
    batches: HashMap<String, Snapshot>,
}

impl Baseline {
    /// Reads the baseline run at `path` (as [`diff`] reads its inputs).
    pub(crate) fn load(path: &Path, options: DiffOptions) -> Result<Baseline, DiffError> {
        Ok(Baseline {
            path: path.to_owned(),
            options,
            batches: read::batches(path)?.by_test,
        })
    }

    /// The baseline named by `FORGE_BASELINE`, if set, with the default
    /// options.
    pub(crate) fn from_env() -> Option<Result<Baseline, DiffError>> {
        let path = std::env::var_os(BASELINE_ENV).filter(|p| !p.is_empty())?;
        Some(Baseline::load(Path::new(&path), DiffOptions::default()))
    }

    /// How `record` (a batch of this run) changed since the baseline;
    /// `None` when it did not, or had no verdict.
    pub(crate) fn compare(&self, record: &BatchRecord) -> Option<Change> {
        let after = Snapshot::of(record)?;
        compare(
            &record.test,
            self.batches.get(&record.test),
            Some(&after),
            self.options,
        )
    }

    /// A run's `records` compared with the baseline: the closing line
    /// (`since baseline DIR: 2 regressed, 1 not significant, ...`) and
    /// whether a batch regressed.
    /// Counts how `record` (a selected batch) changed since the baseline.
    pub(crate) fn count(&self, counts: &mut SinceCounts, record: &BatchRecord) {
        let Some(change) = self.compare(record) else {
            return;
        };
        let has = |kind: fn(&ChangeKind) -> bool| change.kinds.iter().any(kind);
        counts.regressed += usize::from(change.regressed);
        counts.flaky += usize::from(Change::flaky(&change.kinds));
        counts.passing += usize::from(has(|k| matches!(k, ChangeKind::NewlyPassing)));
        counts.added += usize::from(has(|k| matches!(k, ChangeKind::Added { .. })));
    }

    /// The run's closing line since the baseline, from its `counts`, and
    /// whether a batch regressed.
    pub(crate) fn conclude(&self, counts: &SinceCounts) -> (String, bool) {
        let SinceCounts {
            regressed,
            flaky,
            passing,
            added,
        } = counts;
        let line = format!(
            "since baseline {}: {regressed} regressed, {flaky} not significant, {passing} newly passing, {added} new",
            self.path.display()
        );
        (line, *regressed > 0)
    }
}

/// How a run's selected batches changed since its baseline, counted as
/// their records come (see [`Baseline::count`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SinceCounts {
    regressed: usize,
    flaky: usize,
    passing: usize,
    added: usize,
}

/// What the reporters mark: each batch's change, in words.
impl crate::report::since::Baseline for Baseline {
    fn mark(&self, record: &BatchRecord) -> Option<crate::report::since::Mark> {
        let change = self.compare(record)?;
        Some(crate::report::since::Mark {
            regressed: change.regressed,
            text: change.describe(),
        })
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests;
