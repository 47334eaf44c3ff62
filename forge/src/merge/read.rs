//! Finding and reading the parts of an input directory.

use std::io::BufReader;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::MergeError;
use crate::report::part::{End, Entry, Header, SuitePart, FORMAT, PARTS_DIR, RUN_PART};
use crate::schema::Response;

/// A part, read: its header, its suites (responses filled in by
/// [`parts_of`]) and its end.
#[derive(Debug)]
pub(crate) struct Loaded {
    /// The part's file.
    pub path: PathBuf,
    pub header: Header,
    pub suites: Vec<SuitePart>,
    pub end: End,
}

/// The parts of the run(s) whose output directory is `dir`:
/// `parts/run.json` and every `parts/nextest-*/*.json`, in name order.
pub(super) fn parts_of(dir: &Path) -> Result<Vec<Loaded>, MergeError> {
    let files = part_files(dir)?;
    if files.is_empty() {
        return Err(MergeError::NoParts(dir.to_owned()));
    }
    files.iter().map(|file| read(dir, file)).collect()
}

/// The part files of the run(s) whose output directory is `dir` (none when
/// it has no `parts/`): `parts/run.json` and every
/// `parts/nextest-*/*.json`, in name order.
pub(crate) fn part_files(dir: &Path) -> Result<Vec<PathBuf>, MergeError> {
    let parts_dir = dir.join(PARTS_DIR);
    let mut files = Vec::new();
    let run = parts_dir.join(RUN_PART);
    if run.is_file() {
        files.push(run);
    }
    for nextest in sorted_entries(&parts_dir, |name, path| {
        name.starts_with("nextest-") && path.is_dir()
    })? {
        files.extend(sorted_entries(&nextest, |name, path| {
            name.ends_with(".json") && !name.starts_with('.') && path.is_file()
        })?);
    }
    Ok(files)
}

/// The entries of `dir` that `keep` (given the name and path), sorted; none
/// when `dir` does not exist.
pub(crate) fn sorted_entries(
    dir: &Path,
    keep: impl Fn(&str, &Path) -> bool,
) -> Result<Vec<PathBuf>, MergeError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(read_error(dir, e)),
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            keep(name, p)
        })
        .collect();
    paths.sort();
    Ok(paths)
}

/// Reads one part; a suite whose response it does not hold gets the one of
/// `<dir>/<suite>.json`, checked to be of the same run.
fn read(dir: &Path, path: &Path) -> Result<Loaded, MergeError> {
    let mut loaded = read_part(path)?;
    for suite in &mut loaded.suites {
        if suite.response.is_none() {
            suite.response = Some(summary_of(dir, path, suite)?);
        }
    }
    Ok(loaded)
}

/// Reads one part as it is (a suite's response `None` when it is the
/// run's `<suite>.json`).
pub(crate) fn read_part(path: &Path) -> Result<Loaded, MergeError> {
    let file = std::fs::File::open(path).map_err(|e| read_error(path, e))?;
    let mut json = serde_json::Deserializer::from_reader(BufReader::with_capacity(1 << 16, file));
    let header = Header::deserialize(&mut json).map_err(|e| read_error(path, e))?;
    if header.forge_part != FORMAT {
        return Err(read_error(
            path,
            format!(
                "part format {} (forge {}); this forge reads format {FORMAT}",
                header.forge_part, header.forge_version
            ),
        ));
    }
    let mut suites = Vec::new();
    let end = loop {
        match Entry::deserialize(&mut json).map_err(|e| read_error(path, e))? {
            Entry::Suite(suite) => suites.push(suite),
            Entry::End(end) => break end,
        }
    };
    Ok(Loaded {
        path: path.to_owned(),
        header,
        suites,
        end,
    })
}

/// The response of `<dir>/<suite>.json`, which must hold the sessions the
/// part says its run answered.
fn summary_of(dir: &Path, part: &Path, suite: &SuitePart) -> Result<Response, MergeError> {
    let path = dir.join(format!(
        "{}.json",
        crate::suite::report_name(&suite.name, suite.system.as_deref())
    ));
    let file = std::fs::File::open(&path).map_err(|e| read_error(&path, e))?;
    let response: Response = serde_json::from_reader(BufReader::with_capacity(1 << 16, file))
        .map_err(|e| read_error(&path, e))?;
    let sessions: Vec<&str> = match &response {
        Response::Success(run) => run.datasets.iter().map(|d| d.session_id.as_str()).collect(),
        Response::Failure(_) => Vec::new(),
    };
    if sessions != suite.sessions {
        return Err(read_error(
            &path,
            format!(
                "does not hold the sessions {} says its run answered: written by another run?",
                part.display()
            ),
        ));
    }
    Ok(response)
}

fn read_error(path: &Path, error: impl std::fmt::Display) -> MergeError {
    MergeError::Read {
        path: path.to_owned(),
        message: error.to_string(),
    }
}
