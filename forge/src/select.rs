//! The second step of the pipeline: which batches of the loaded suites run.
//!
//! The run asks a [`Select`] which batches of each dataset run, as it
//! reaches the dataset: [`Rules`] (`forge run`: `--filter` and the
//! partition, holding nothing per batch, so a suite streamed from its
//! files is selected as it streams) or a [`Selection`] (the harness: one
//! flag per batch, decided from libtest's filters and `--ignored` before
//! the run, as libtest needs every trial up front). A dataset runs up to
//! its last selected turn (the earlier ones keep the conversation intact,
//! unreported); a dataset with none is not contacted.
//!
//! A batch may also be *skipped*: ignored (`ignore: true`), matching the
//! filters, in the shard, and not asked for (libtest's `--ignored`). It is
//! not selected, and the reports show it as skipped, so their counts match
//! `cargo test`'s "ignored".

use crate::partition::Partition;
use crate::suite::{Suite, SuiteDataset};

/// Where a batch sits: suite, dataset and turn indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct BatchId {
    /// Index of the suite.
    pub suite: usize,
    /// Index of the dataset within the suite.
    pub dataset: usize,
    /// Index of the turn within the dataset.
    pub batch: usize,
}

/// A batch as the selection sees it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// Its test name, `<suite>::<session_id>::<qa_id>`.
    pub name: &'a str,
    /// Whether the suite marks it `ignore: true`.
    pub ignored: bool,
}

/// Which of a dataset's batches are selected and which skipped, one flag
/// per batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DatasetPick {
    /// Whether each batch is selected.
    pub selected: Vec<bool>,
    /// Whether each batch is skipped (see the module's documentation).
    pub skipped: Vec<bool>,
}

impl DatasetPick {
    /// How many of its turns run: up to its last selected one (`None`
    /// when none is selected).
    pub fn turns(&self) -> Option<usize> {
        self.selected.iter().rposition(|s| *s).map(|last| last + 1)
    }

    /// How many of its batches are selected.
    pub fn count(&self) -> usize {
        self.selected.iter().filter(|s| **s).count()
    }
}

/// Where a dataset sits, as a selection sees it.
#[derive(Debug, Clone, Copy)]
pub struct DatasetAt<'a> {
    /// Index of the suite.
    pub suite: usize,
    /// Index of the dataset within the suite.
    pub dataset: usize,
    /// Its suite's report name (`<suite>` or `<suite>.<system>`), what a
    /// partition deals sessions by.
    pub report_name: &'a str,
}

/// Decides, dataset by dataset as a run reaches it, which batches run:
/// the run asks once per dataset and keeps nothing of the answer once the
/// dataset is done.
pub trait Select: Send + Sync {
    /// The pick of dataset `at`, whose content is `data`.
    fn pick(&self, at: DatasetAt<'_>, data: &SuiteDataset) -> DatasetPick;

    /// Whether any batch of suite `suite` is selected (or may be): a suite
    /// with none does not build its runner.
    fn planned(&self, suite: usize) -> bool;
}

/// `forge run`'s selection, as rules: every batch that is not ignored and
/// whose name contains the filter (when given) runs; the ignored ones that
/// match are skipped; with a partition, only its shard's sessions. Holds
/// nothing per batch: a suite of any size is selected as it streams.
#[derive(Debug, Clone)]
pub struct Rules {
    filter: Option<String>,
    partition: Option<Partition>,
    /// Each suite's first session's ordinal among all suites' sessions.
    ordinals: Vec<u64>,
    /// How many batches each suite has selected and skipped, once counted.
    counts: Option<Vec<(usize, usize)>>,
}

impl Rules {
    /// The rules for `suites`: `filter` on test names, and `partition`.
    pub fn new(suites: &[Suite], filter: Option<&str>, partition: Option<Partition>) -> Self {
        let mut next = 0u64;
        let ordinals = suites
            .iter()
            .map(|suite| {
                let first = next;
                next += suite.dataset_count() as u64;
                first
            })
            .collect();
        Rules {
            filter: filter.map(str::to_owned),
            partition,
            ordinals,
            counts: None,
        }
    }

    /// Counts the batches of `suites` the rules select and skip. With no
    /// filter and no partition every batch that is not ignored is selected
    /// and the load's counts tell; otherwise one pass over the suites'
    /// datasets (streamed from their files) does.
    pub fn count(&mut self, suites: &[Suite]) -> Result<(), crate::error::SuiteError> {
        if self.filter.is_none() && self.partition.is_none() {
            let count = |suite: &Suite| {
                let ignored = suite.ignored_count();
                (suite.batch_count() - ignored, ignored)
            };
            self.counts = Some(suites.iter().map(count).collect());
            return Ok(());
        }
        let mut counts = Vec::with_capacity(suites.len());
        for (s, suite) in suites.iter().enumerate() {
            let (mut selected, mut skipped) = (0, 0);
            let name = suite.report_name();
            suite.for_each_dataset(|d, data| {
                let at = DatasetAt {
                    suite: s,
                    dataset: d,
                    report_name: &name,
                };
                let pick = self.pick(at, data);
                selected += pick.count();
                skipped += pick.skipped.iter().filter(|s| **s).count();
            })?;
            counts.push((selected, skipped));
        }
        self.counts = Some(counts);
        Ok(())
    }

    /// How many batches the rules select, once counted.
    pub fn selected(&self) -> usize {
        self.counts.iter().flatten().map(|c| c.0).sum()
    }
}

impl Select for Rules {
    fn pick(&self, at: DatasetAt<'_>, data: &SuiteDataset) -> DatasetPick {
        let ordinal = self.ordinals.get(at.suite).copied().unwrap_or(0) + at.dataset as u64;
        let dataset = &data.dataset;
        let in_shard = self.partition.as_ref().is_none_or(|p| {
            p.keeps(
                ordinal,
                at.report_name,
                &dataset.session_id,
                &dataset.assistant_id,
            )
        });
        let matches = |name: &str| self.filter.as_deref().is_none_or(|f| name.contains(f));
        let (selected, skipped) = data
            .test_names
            .iter()
            .zip(&data.ignored)
            .map(|(name, &ignored)| {
                let kept = in_shard && matches(name);
                (kept && !ignored, kept && ignored)
            })
            .unzip();
        DatasetPick { selected, skipped }
    }

    fn planned(&self, suite: usize) -> bool {
        match &self.counts {
            Some(counts) => counts.get(suite).is_some_and(|c| c.0 > 0),
            None => true,
        }
    }
}

impl Select for Selection {
    fn pick(&self, at: DatasetAt<'_>, data: &SuiteDataset) -> DatasetPick {
        let flags = |of: &[bool]| match self.spans.get(at.suite).and_then(|s| s.get(at.dataset)) {
            Some(&(start, len)) => of[start..start + len].to_vec(),
            None => vec![false; data.test_names.len()],
        };
        DatasetPick {
            selected: flags(&self.flags),
            skipped: flags(&self.skipped),
        }
    }

    fn planned(&self, suite: usize) -> bool {
        self.spans.get(suite).is_some_and(|spans| {
            spans
                .iter()
                .any(|&(start, len)| self.flags[start..start + len].contains(&true))
        })
    }
}

/// The selected batches of a list of suites: one flag per batch, in suite,
/// dataset and turn order (the order of [`Selection::index`]).
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Offset of each dataset's first batch in `flags` and its batch
    /// count, per suite.
    spans: Vec<Vec<(usize, usize)>>,
    flags: Vec<bool>,
    count: usize,
    /// Whether each batch is skipped, in the order of `flags`.
    skipped: Vec<bool>,
}

impl Selection {
    /// Selects the batches of `suites` for which `wanted` is true.
    pub fn new(suites: &[Suite], mut wanted: impl FnMut(Candidate<'_>) -> bool) -> Self {
        let mut selection = Selection::default();
        for suite in suites {
            let mut spans = Vec::with_capacity(suite.datasets.len());
            for data in &suite.datasets {
                spans.push((selection.flags.len(), data.test_names.len()));
                for (b, name) in data.test_names.iter().enumerate() {
                    let ignored = data.ignored[b];
                    selection.flags.push(wanted(Candidate { name, ignored }));
                }
            }
            selection.spans.push(spans);
        }
        selection.count = selection.flags.iter().filter(|f| **f).count();
        selection.skipped = vec![false; selection.flags.len()];
        selection
    }

    /// This selection, with the batches of `suites` for which `skipped` is
    /// true and that are not selected marked skipped.
    pub fn skip(
        mut self,
        suites: &[Suite],
        mut skipped: impl FnMut(Candidate<'_>) -> bool,
    ) -> Self {
        let mut i = 0;
        for data in suites.iter().flat_map(|s| &s.datasets) {
            for (b, name) in data.test_names.iter().enumerate() {
                let ignored = data.ignored[b];
                self.skipped[i] = !self.flags[i] && skipped(Candidate { name, ignored });
                i += 1;
            }
        }
        self
    }

    /// This selection, keeping only the sessions of `partition`'s shard.
    pub fn in_shard(mut self, suites: &[Suite], partition: &Partition) -> Self {
        for (s, members) in shard_members(suites, partition).iter().enumerate() {
            for (d, member) in members.iter().enumerate() {
                let (start, len) = self.spans[s][d];
                if !member {
                    self.flags[start..start + len].fill(false);
                    self.skipped[start..start + len].fill(false);
                }
            }
        }
        self.count = self.flags.iter().filter(|f| **f).count();
        self
    }

    /// The position of a batch among all the suites' batches.
    pub fn index(&self, id: BatchId) -> Option<usize> {
        let (start, len) = *self.spans.get(id.suite)?.get(id.dataset)?;
        (id.batch < len).then_some(start + id.batch)
    }

    /// How many batches are skipped.
    pub fn skipped_count(&self) -> usize {
        self.skipped.iter().filter(|s| **s).count()
    }

    /// How many batches the suites have, selected or not.
    pub fn len(&self) -> usize {
        self.flags.len()
    }

    /// Whether no batch is selected.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// Whether each dataset (a session, with its repeats) of `suites` belongs
/// to `partition`'s shard, per suite. A system of `runners:` is a suite of
/// its own here, named `<suite>.<system>`: its sessions are dealt apart
/// from the other systems'.
pub fn shard_members(suites: &[Suite], partition: &Partition) -> Vec<Vec<bool>> {
    let mut ordinal = 0u64;
    suites
        .iter()
        .map(|suite| {
            let name = suite.report_name();
            suite
                .datasets
                .iter()
                .map(|data| {
                    let dataset = &data.dataset;
                    let kept =
                        partition.keeps(ordinal, &name, &dataset.session_id, &dataset.assistant_id);
                    ordinal += 1;
                    kept
                })
                .collect()
        })
        .collect()
}
