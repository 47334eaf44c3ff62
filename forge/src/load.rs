//! The first step of the pipeline: the suites to run, from files and
//! directories, and a located error for each one that cannot be loaded.
//!
//! Every front end loads through [`load`]: `forge run` and the `cargo test`
//! harness run the suites that loaded and report each failure as a failing
//! test (`forge run` then exits with 2).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::suite::{self, BatchLocation, LoadOptions, Suite};

/// A suite file (or directory) that could not be loaded.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LoadFailure {
    /// The test that reports it: `<file stem>::load`, or `forge::suites`
    /// for a directory with no suite.
    pub test: String,
    /// The located error.
    pub message: String,
    /// The file (and line) at fault, for CI to link to; `None` when no
    /// file is (a missing directory, an invalid `FORGE_PARTITION`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<BatchLocation>,
}

/// What [`load`] found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The suites that loaded, in order, with unique names.
    pub suites: Vec<Suite>,
    /// The files that did not.
    pub failures: Vec<LoadFailure>,
}

/// Loads suite files and directories (each directory's `*.yaml` / `*.yml`
/// files, its subfolders' too, sorted by path: see [`suite::discover`]).
/// A file found in a directory that a suite names as its dataset file
/// (`file: data/more.yaml`) is that suite's data, not a suite. A suite
/// file with several systems (`runners:`) gives one suite per system, in
/// order. A suite whose report name (`<suite>`, `<suite>.<system>`) an
/// earlier file took fails, with all its systems, so no two suites write
/// one report.
pub fn load(paths: &[PathBuf], options: &LoadOptions) -> Loaded {
    let mut loaded = Loaded::default();
    // The files found in directories that did not load: not failures when
    // a suite names them as its dataset file.
    let mut found_failures = Vec::new();
    // How many suites each file that loaded gave, in order.
    let mut files_of = Vec::new();
    for path in paths {
        let walked = !is_suite_file(path);
        let files = if walked {
            match suite::discover(path) {
                Ok(files) => files,
                Err(error) => {
                    loaded.failures.push(LoadFailure {
                        test: "forge::suites".to_owned(),
                        message: error.to_string(),
                        location: None,
                    });
                    continue;
                }
            }
        } else {
            vec![path.clone()]
        };
        for file in files {
            match Suite::load_all_with(&file, options) {
                Ok(suites) => {
                    files_of.push(suites.len());
                    loaded.suites.extend(suites);
                }
                Err(error) => {
                    let failure = LoadFailure {
                        test: load_test_name(&file),
                        message: error.to_string(),
                        location: Some(location(&error)),
                    };
                    match walked {
                        true => found_failures.push((file, failure)),
                        false => loaded.failures.push(failure),
                    }
                }
            }
        }
    }
    let datasets: HashSet<PathBuf> = loaded
        .suites
        .iter()
        .flat_map(|suite| &suite.dataset_files)
        .filter_map(|file| file.canonicalize().ok())
        .collect();
    loaded.failures.extend(
        found_failures
            .into_iter()
            .filter(|(file, _)| !file.canonicalize().is_ok_and(|f| datasets.contains(&f)))
            .map(|(_, failure)| failure),
    );
    reject_duplicate_names(&mut loaded, &files_of);
    loaded
}

/// Where the error that kept a file from loading is.
fn location(error: &crate::error::SuiteError) -> BatchLocation {
    let (file, line) = error.file_line();
    BatchLocation {
        file: file.to_owned(),
        line,
    }
}

/// Whether `path` names a suite file (`*.yaml`, `*.yml`, not a directory);
/// any other path is a directory of suites, so a missing one is reported as
/// such (`forge::suites`), not as a suite file named after it.
fn is_suite_file(path: &Path) -> bool {
    !path.is_dir()
        && matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        )
}

/// Moves every suite file (its `files_of` suites, one per system) whose
/// suite name or report names (`<suite>.<system>`) an earlier file took
/// into the failures, all its systems: a file loads whole or not at all.
fn reject_duplicate_names(loaded: &mut Loaded, files_of: &[usize]) {
    let mut seen: HashMap<String, PathBuf> = HashMap::new();
    let mut keep = Vec::with_capacity(loaded.suites.len());
    let mut suites = std::mem::take(&mut loaded.suites).into_iter();
    for &count in files_of {
        let file: Vec<Suite> = suites.by_ref().take(count).collect();
        let taken = file.iter().find_map(|suite| {
            [suite.name.clone(), suite.report_name()]
                .into_iter()
                .find_map(|name| Some((suite, seen.get(&name)?, name)))
        });
        if let Some((suite, first, name)) = taken {
            loaded.failures.push(LoadFailure {
                test: load_test_name(&suite.path),
                message: format!(
                    "{}: duplicate suite name {name:?} (also in {})",
                    suite.path.display(),
                    first.display()
                ),
                location: Some(BatchLocation {
                    file: suite.path.clone(),
                    line: None,
                }),
            });
            continue;
        }
        for suite in &file {
            seen.insert(suite.name.clone(), suite.path.clone());
            seen.insert(suite.report_name(), suite.path.clone());
        }
        keep.extend(file);
    }
    loaded.suites = keep;
}

/// `<file stem>::load`, whitespace replaced so the name stays one word.
fn load_test_name(file: &Path) -> String {
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().replace(char::is_whitespace, "_"))
        .unwrap_or_default();
    format!("{stem}::load")
}
