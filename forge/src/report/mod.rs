//! Reports of a run, one file per format: the Fair-Forge summary JSON
//! ([`summary`]) and JUnit XML ([`junit`]). Both are written under
//! `$FORGE_OUT_DIR` (default `target/forge/`), also when tests fail, and
//! neither ever contains a secret of the suite ([`crate::secrets`]).

pub mod junit;
pub mod summary;

use std::path::{Path, PathBuf};

use crate::error::ReportError;
use crate::run::SuiteResult;
use crate::secrets::Secrets;

/// Environment variable naming the output directory.
pub const OUT_DIR_ENV: &str = "FORGE_OUT_DIR";

/// The output directory: `$FORGE_OUT_DIR`, else `target/forge` under `root`.
pub fn out_dir(root: &Path) -> PathBuf {
    match std::env::var_os(OUT_DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => root.join("target").join("forge"),
    }
}

/// One suite's result with the secrets to keep out of its reports.
pub struct Reported<'a> {
    /// The result.
    pub result: &'a SuiteResult,
    /// Secret values (API keys, tokens) to redact.
    pub secrets: Secrets,
}

/// Writes `<suite>.json` per suite and `junit.xml` into `dir`; returns the
/// files written. `load_errors` (test name, message) are suite files that
/// could not be loaded: JUnit shows them as failing tests.
pub fn write_all(
    dir: &Path,
    suites: &[Reported<'_>],
    load_errors: &[(String, String)],
) -> Result<Vec<PathBuf>, ReportError> {
    let mut written = write_summaries(dir, suites)?;
    written.push(write_junit(dir, suites, load_errors)?);
    Ok(written)
}

/// Writes `<suite>.json` per suite into `dir` (created if need be).
pub fn write_summaries(dir: &Path, suites: &[Reported<'_>]) -> Result<Vec<PathBuf>, ReportError> {
    std::fs::create_dir_all(dir).map_err(|e| ReportError {
        path: dir.to_owned(),
        message: e.to_string(),
    })?;
    let mut written = Vec::with_capacity(suites.len() + 1);
    for suite in suites {
        let path = dir.join(format!("{}.json", suite.result.name));
        summary::write(&path, suite)?;
        written.push(path);
    }
    Ok(written)
}

/// Writes `junit.xml` into `dir` (created if need be). It reads only the
/// suites' records, so a caller may free the answered datasets first.
pub fn write_junit(
    dir: &Path,
    suites: &[Reported<'_>],
    load_errors: &[(String, String)],
) -> Result<PathBuf, ReportError> {
    std::fs::create_dir_all(dir).map_err(|e| ReportError {
        path: dir.to_owned(),
        message: e.to_string(),
    })?;
    let path = dir.join("junit.xml");
    junit::write(&path, suites, load_errors)?;
    Ok(path)
}

/// Replaces every secret in `text` by `[REDACTED]`: the one rule of
/// [`Secrets::redact`], used by the reports, the console and the harness.
pub fn redact(text: &str, secrets: &Secrets) -> String {
    secrets.redact(text).into_owned()
}

/// Opens `<path>.tmp` for writing; [`finish`] renames it over `path`, so a
/// reader never sees half a report.
pub(crate) fn create(
    path: &Path,
) -> Result<(PathBuf, std::io::BufWriter<std::fs::File>), ReportError> {
    let tmp = path.with_extension("tmp");
    let file = std::fs::File::create(&tmp).map_err(|e| ReportError {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    Ok((tmp, std::io::BufWriter::with_capacity(1 << 16, file)))
}

/// Flushes the writer and moves the finished file into place.
pub(crate) fn finish(
    path: &Path,
    tmp: &Path,
    writer: std::io::BufWriter<std::fs::File>,
    written: std::io::Result<()>,
) -> Result<(), ReportError> {
    written
        .and_then(|()| writer.into_inner().map_err(|e| e.into_error()))
        .and_then(|_file| std::fs::rename(tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(tmp);
            ReportError {
                path: path.to_owned(),
                message: e.to_string(),
            }
        })
}
