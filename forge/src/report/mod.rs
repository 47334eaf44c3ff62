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
    remove_stale(dir);
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
    remove_stale(dir);
    let path = dir.join("junit.xml");
    junit::write(&path, suites, load_errors)?;
    Ok(path)
}

/// Replaces every secret in `text` by `[REDACTED]`: the one rule of
/// [`Secrets::redact`], used by the reports, the console and the harness.
pub fn redact(text: &str, secrets: &Secrets) -> String {
    secrets.redact(text).into_owned()
}

/// Opens a temporary file beside `path` for writing; [`finish`] renames it
/// over `path`, so a reader never sees half a report. Its name,
/// `.<file name>.forge-<pid>-<n>.tmp`, is unique to this process and write,
/// so two writers never share one, and [`remove_stale`] can tell whose it is.
pub(crate) fn create(
    path: &Path,
) -> Result<(PathBuf, std::io::BufWriter<std::fs::File>), ReportError> {
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}{TMP_MARK}{}-{n}.tmp", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| ReportError {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    Ok((tmp, std::io::BufWriter::with_capacity(1 << 16, file)))
}

/// What marks a report's temporary file, followed by the writer's pid.
const TMP_MARK: &str = ".forge-";

/// Removes the temporary report files in `dir` left by a forge process that
/// no longer runs (killed while writing, with `kill -9`, say). Files of
/// live processes (another run writing into the same directory) are kept.
pub(crate) fn remove_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(tmp_file_pid) else {
            continue;
        };
        if pid != std::process::id() && !process_alive(pid) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The pid in a temporary report file's name, `None` for other files.
fn tmp_file_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let (_, tail) = rest.rsplit_once(TMP_MARK)?;
    let (pid, n) = tail.split_once('-')?;
    n.parse::<u64>().ok()?;
    pid.parse().ok()
}

/// Whether process `pid` still runs.
#[cfg(unix)]
fn process_alive(pid: u32) -> bool {
    use nix::errno::Errno;
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // Signal 0 checks that the process exists; EPERM means it does, as
    // another user's.
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(Errno::ESRCH)
    )
}

/// Whether process `pid` still runs: without a way to ask (not on unix),
/// every writer counts as alive and nothing is removed.
#[cfg(not(unix))]
fn process_alive(_pid: u32) -> bool {
    true
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
