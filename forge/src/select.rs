//! The second step of the pipeline: which batches of the loaded suites run.
//!
//! A [`Selection`] is decided once, before the run, from each batch's test
//! name and `ignore` flag (`forge run --filter`, libtest's filters and
//! `--ignored`), because the run then moves the turns out of the suites. A
//! dataset runs up to its last selected turn (the earlier ones keep the
//! conversation intact, unreported); a dataset with none is not contacted.
//!
//! A batch may also be *skipped*: ignored (`ignore: true`), matching the
//! filters, in the shard, and not asked for (libtest's `--ignored`). It is
//! not selected, and the reports show it as skipped, so their counts match
//! `cargo test`'s "ignored".

use crate::partition::Partition;
use crate::suite::Suite;

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

    /// Every batch that is not ignored, whose name contains `filter` (when
    /// given); the ignored ones that match are skipped.
    pub fn filtered(suites: &[Suite], filter: Option<&str>) -> Self {
        let matches = |batch: &Candidate<'_>| filter.is_none_or(|f| batch.name.contains(f));
        Selection::new(suites, |batch| !batch.ignored && matches(&batch))
            .skip(suites, |batch| batch.ignored && matches(&batch))
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

    /// Whether the batch is selected.
    pub fn contains(&self, id: BatchId) -> bool {
        self.index(id).is_some_and(|i| self.flags[i])
    }

    /// How many batches are selected.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Whether the batch is skipped (see the module's documentation).
    pub fn is_skipped(&self, id: BatchId) -> bool {
        self.index(id).is_some_and(|i| self.skipped[i])
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

    /// How many turns of a dataset run: up to its last selected one
    /// (`None` when none is selected).
    pub fn turns(&self, suite: usize, dataset: usize, len: usize) -> Option<usize> {
        (0..len)
            .rev()
            .find(|&batch| {
                self.contains(BatchId {
                    suite,
                    dataset,
                    batch,
                })
            })
            .map(|last| last + 1)
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
