//! What reporters mark of a baseline run (`forge run --baseline`,
//! `FORGE_BASELINE`): a [`Baseline`] says how each batch of this run
//! changed since. The comparison itself is [`crate::diff`]'s, which reads
//! the baseline's reports; reporters depend only on this, so the report
//! step does not depend on the steps that read reports.

use std::path::Path;

use crate::run::BatchRecord;

/// How a batch changed since the baseline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// Whether the change is a regression (the gate fails on it).
    pub regressed: bool,
    /// What changed: `newly failing`, `score of rubric 0.9 -> 0.4`, ...
    pub text: String,
}

impl Mark {
    /// What changed, in words.
    pub fn describe(&self) -> &str {
        &self.text
    }
}

/// A baseline run this run is compared with as it goes.
pub trait Baseline: Send + Sync {
    /// How `record` changed since the baseline; `None` when it did not.
    fn mark(&self, record: &BatchRecord) -> Option<Mark>;

    /// Where the baseline was read from.
    fn path(&self) -> &Path;
}
