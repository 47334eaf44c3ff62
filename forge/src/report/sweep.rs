//! The output directory holds the last run's reports, and only them.
//!
//! A run (`forge run`, `cargo test`, `forge merge --out`) writes its
//! reports over the previous ones, then removes the report files of the
//! previous run that it did not write again: the `<suite>.json` (or
//! `<suite>.<system>.json`, for a system of `runners:`) of a suite
//! that is gone, or that this run did not run (`--filter`, a shard without
//! it). It knows them from [`MANIFEST`], `.forge-reports`, the list of the
//! report files the previous run wrote (one name a line), which it then
//! replaces with its own. Nothing else in the directory is touched: files
//! of other tools, cassettes, a run's reports from before this list
//! existed.
//!
//! `parts/` is forge's own: a run's `parts/run.json` is replaced, and the
//! `parts/nextest-<run id>/` directories of earlier nextest runs are
//! removed. A process of a nextest run writes no `<suite>.json` nor
//! `junit.xml`: it removes the previous run's reports (those of the list,
//! and `parts/run.json`) and the parts of other nextest runs, so `forge
//! merge` of the directory sees this nextest run only.

use std::path::{Path, PathBuf};

use super::part::{PARTS_DIR, RUN_PART};
use super::{create, finish};
use crate::error::ReportError;

/// The list of the report files the last run wrote into its directory.
pub const MANIFEST: &str = ".forge-reports";

/// The most bytes of a manifest read: far more than any run's list.
const MANIFEST_MAX_BYTES: u64 = 16 << 20;

/// What a run does to `parts/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parts {
    /// Nothing (`forge merge --out`, which writes no part).
    Keep,
    /// The run wrote `parts/run.json`: every `parts/nextest-*/` goes.
    Run,
    /// A process of the nextest run whose parts are in this directory of
    /// `parts/`: `parts/run.json` and the other `parts/nextest-*/` go.
    Nextest(String),
}

/// Removes from `dir` what the previous run wrote and this one, which
/// wrote `written`, did not; records this run's reports as the list.
pub(crate) fn sweep(dir: &Path, written: &[PathBuf], parts: &Parts) -> Result<(), ReportError> {
    let mut names: Vec<String> = written
        .iter()
        .filter(|path| path.parent() == Some(dir))
        .filter_map(|path| Some(path.file_name()?.to_str()?.to_owned()))
        .collect();
    names.sort();
    names.dedup();
    let manifest = dir.join(MANIFEST);
    for stale in previous(&manifest).iter().filter(|n| !names.contains(n)) {
        remove(&dir.join(stale))?;
    }
    if names.is_empty() {
        remove(&manifest)?;
    } else {
        let (tmp, mut writer) = create(&manifest)?;
        let text: String = names.iter().map(|n| format!("{n}\n")).collect();
        let result = std::io::Write::write_all(&mut writer, text.as_bytes());
        finish(&manifest, &tmp, writer, result)?;
    }
    sweep_parts(&dir.join(PARTS_DIR), parts)
}

/// The report names of the previous run's list that are safe to remove: a
/// plain file name of a report (`*.json`, `*.xml`, `*.html`), nothing
/// hidden, no path.
fn previous(manifest: &Path) -> Vec<String> {
    use std::io::Read;
    let mut text = String::new();
    let read = std::fs::File::open(manifest)
        .and_then(|file| file.take(MANIFEST_MAX_BYTES).read_to_string(&mut text));
    if read.is_err() {
        return Vec::new();
    }
    text.lines()
        .filter(|name| {
            !name.starts_with('.')
                && !name.contains(['/', '\\'])
                && [".json", ".xml", ".html"]
                    .iter()
                    .any(|ext| name.ends_with(ext))
        })
        .map(str::to_owned)
        .collect()
}

/// Removes what `parts` says of the parts directory.
fn sweep_parts(parts_dir: &Path, parts: &Parts) -> Result<(), ReportError> {
    let keep = match parts {
        Parts::Keep => return Ok(()),
        Parts::Run => None,
        Parts::Nextest(own) => {
            remove(&parts_dir.join(RUN_PART))?;
            Some(own.as_str())
        }
    };
    let Ok(entries) = std::fs::read_dir(parts_dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with("nextest-") || Some(name) == keep || !entry.path().is_dir() {
            continue;
        }
        match std::fs::remove_dir_all(entry.path()) {
            Ok(()) => {}
            // Another process of the same nextest run may be removing it.
            Err(_) if keep.is_some() => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(error(&entry.path(), &e)),
        }
    }
    Ok(())
}

/// Removes a file; one that is already gone is fine.
fn remove(path: &Path) -> Result<(), ReportError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(error(path, &e)),
    }
}

fn error(path: &Path, e: &std::io::Error) -> ReportError {
    ReportError {
        path: path.to_owned(),
        message: format!("cannot remove the previous run's report: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_previous_runs_reports_go() {
        let dir = tempfile::tempdir().expect("temp dir");
        let dir = dir.path();
        let touch = |name: &str| {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
            std::fs::write(&path, "x").expect("write");
            path
        };
        let first = [touch("a.json"), touch("b.json"), touch("junit.xml")];
        touch("notes.json");
        touch("parts/nextest-old/1-2-3.json");
        sweep(dir, &first, &Parts::Run).expect("sweep");
        assert!(!dir.join("parts/nextest-old").exists());
        let second = [touch("a.json"), touch("junit.xml")];
        std::fs::write(
            dir.join(MANIFEST),
            "a.json\nb.json\njunit.xml\n../x.json\n.hidden.json\n",
        )
        .expect("manifest");
        sweep(dir, &second, &Parts::Run).expect("sweep");
        let mut left: Vec<String> = std::fs::read_dir(dir)
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [MANIFEST, "a.json", "junit.xml", "notes.json", "parts"]
        );
        let list = std::fs::read_to_string(dir.join(MANIFEST)).expect("manifest");
        assert_eq!(list, "a.json\njunit.xml\n");
    }
}
