//! Reading a run to compare: its batches by test name, from its parts (read
//! as `forge merge` reads them, [`crate::merge::read`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{DiffError, Snapshot};
use crate::error::MergeError;
use crate::merge::read::{part_files, read_part, sorted_entries};

/// A run's batches that had a verdict.
#[derive(Debug, Default)]
pub(super) struct Batches {
    /// Their test names, in the run's order.
    pub order: Vec<String>,
    /// Each one's snapshot.
    pub by_test: HashMap<String, Snapshot>,
}

impl Batches {
    /// Adds a batch; a test seen before (a retried nextest test's later
    /// attempt) replaces the earlier one in its place.
    fn add(&mut self, test: &str, snapshot: Snapshot) {
        if self.by_test.insert(test.to_owned(), snapshot).is_none() {
            self.order.push(test.to_owned());
        }
    }
}

/// The batches of the run at `path`: a part file, the output directory of
/// a run (its `parts/`), or a directory of such directories (the shards of
/// a CI matrix, downloaded side by side).
pub(super) fn batches(path: &Path) -> Result<Batches, DiffError> {
    let files = if path.is_dir() {
        files_in(path)?
    } else if path.exists() {
        vec![path.to_owned()]
    } else {
        return Err(input(path, "no such file or directory"));
    };
    let mut batches = Batches::default();
    for file in files {
        let part = read_part(&file).map_err(|e| from_merge(&file, e))?;
        let records = part.suites.iter().flat_map(|s| &s.records);
        for record in records {
            if let Some(snapshot) = Snapshot::of(record) {
                batches.add(&record.test, snapshot);
            }
        }
    }
    Ok(batches)
}

/// The part files of the run(s) in `dir`, or in its subdirectories when it
/// has none of its own.
fn files_in(dir: &Path) -> Result<Vec<PathBuf>, DiffError> {
    let files = part_files(dir).map_err(|e| from_merge(dir, e))?;
    if !files.is_empty() {
        return Ok(files);
    }
    let runs = sorted_entries(dir, |name, path| !name.starts_with('.') && path.is_dir())
        .map_err(|e| from_merge(dir, e))?;
    let mut files = Vec::new();
    for run in runs {
        files.extend(part_files(&run).map_err(|e| from_merge(&run, e))?);
    }
    if files.is_empty() {
        return Err(input(
            dir,
            "no forge run here (no parts/run.json or parts/nextest-*/, nor in its subdirectories): give the output directory of a `forge run` or `cargo test` (not of `forge merge`), or a part file",
        ));
    }
    Ok(files)
}

/// A part that cannot be read, as the diff's error.
fn from_merge(path: &Path, error: MergeError) -> DiffError {
    match error {
        MergeError::Read { path, message } => DiffError::Input {
            path,
            message: format!("{message} (not a forge part: give the output directory of a run, or its parts/run.json)"),
        },
        other => input(path, other),
    }
}

fn input(path: &Path, message: impl std::fmt::Display) -> DiffError {
    DiffError::Input {
        path: path.to_owned(),
        message: message.to_string(),
    }
}
