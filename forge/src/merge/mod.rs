//! `forge merge --out DIR INPUT...`: folds the runs of several shards (a CI
//! matrix's `--partition` jobs) or processes (cargo nextest's, one test
//! each) into one `<suite>.json` per suite and one `junit.xml`, equal but
//! for timings to the reports of one run of everything.
//!
//! Each input is the output directory of a run; its `parts/` (see
//! [`crate::report::part`]) say what it ran. The inputs must be runs of the
//! same suites by the same forge (same suite names, order and fingerprints);
//! a batch may be in one input only (under nextest, a retried test's last
//! attempt counts); shards must be of one partition, and with `--expect N`
//! all N of them must be there. Any of these is an error, and nothing is
//! written: nothing is dropped or doubled in silence.

mod assemble;
pub(crate) mod read;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::error::MergeError;
use crate::load::LoadFailure;
use crate::report::junit::Junit;
use crate::report::summary::SummaryJson;
use crate::report::whole::WholeSuite;
use crate::report::{Reporter, RunEnd, SuiteReport, Tee};
use read::Loaded;

/// What a merge did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    /// The parts read.
    pub parts: usize,
    /// The merged batches that passed.
    pub passed: usize,
    /// The merged batches that failed.
    pub failed: usize,
    /// Whether every merged batch passed and every suite could run.
    pub success: bool,
    /// What the user should know: missing shards without `--expect`,
    /// interrupted runs.
    pub warnings: Vec<String>,
}

impl Merged {
    fn new(parts: usize, suites: &[SuiteReport], warnings: Vec<String>) -> Self {
        let passed = suites.iter().map(|s| s.tally.passed).sum();
        let failed = suites.iter().map(|s| s.tally.failed()).sum();
        Merged {
            parts,
            passed,
            failed,
            success: suites.iter().all(SuiteReport::passed),
            warnings,
        }
    }
}

/// Merges the runs in `inputs` into reports in `out`; with `expect`, the
/// inputs must be exactly the shards 1..=N of one partition of N.
pub fn merge(inputs: &[PathBuf], out: &Path, expect: Option<u64>) -> Result<Merged, MergeError> {
    let mut parts = Vec::new();
    for input in inputs {
        parts.extend(read::parts_of(input)?);
    }
    let Some(first) = parts.first() else {
        return Err(MergeError::Shards("no input given".to_owned()));
    };
    for part in &parts[1..] {
        same_suites(first, part)?;
    }
    let mut warnings = shards(&parts, expect)?;
    if let Some(part) = parts.iter().find(|p| p.end.interrupted) {
        warnings.push(format!(
            "{} is the part of an interrupted run: its unfinished batches are failures",
            part.path.display()
        ));
    }
    let names = suite_names(first);
    let load_failures = load_failures(&parts);
    let count = parts.len();
    let suites = assemble::suites(&names, parts)?;
    let suites = write(out, suites, &load_failures)?;
    Ok(Merged::new(count, &suites, warnings))
}

/// What the run(s) whose output directory is `dir` reported (its parts,
/// with the `<suite>.json` they refer to), as one run's reporters saw it:
/// the suites, the load failures, and whether a run was interrupted.
pub(crate) fn read_run(
    dir: &Path,
) -> Result<(Vec<WholeSuite>, Vec<LoadFailure>, bool), MergeError> {
    let parts = read::parts_of(dir)?;
    let Some(first) = parts.first() else {
        return Err(MergeError::NoParts(dir.to_owned()));
    };
    for part in &parts[1..] {
        same_suites(first, part)?;
    }
    let names = suite_names(first);
    let load_failures = load_failures(&parts);
    let interrupted = parts.iter().any(|p| p.end.interrupted);
    Ok((assemble::suites(&names, parts)?, load_failures, interrupted))
}

/// The suites a part's run loaded, in order: each name and system.
fn suite_names(part: &Loaded) -> Vec<(String, Option<String>)> {
    part.header
        .suites
        .iter()
        .map(|s| (s.name.clone(), s.system.clone()))
        .collect()
}

/// Checks that two parts ran the same suites with the same forge.
fn same_suites(first: &Loaded, other: &Loaded) -> Result<(), MergeError> {
    let mismatch = |detail: String| MergeError::Mismatch {
        first: first.path.clone(),
        second: other.path.clone(),
        detail,
    };
    let (a, b) = (&first.header, &other.header);
    if a.forge_version != b.forge_version {
        return Err(mismatch(format!(
            "written by forge {} and {}",
            a.forge_version, b.forge_version
        )));
    }
    let names = |h: &crate::report::part::Header| {
        h.suites
            .iter()
            .map(|s| crate::suite::report_name(&s.name, s.system.as_deref()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if a.suites.len() != b.suites.len()
        || a.suites
            .iter()
            .zip(&b.suites)
            .any(|(x, y)| x.name != y.name || x.system != y.system)
    {
        return Err(mismatch(format!(
            "they loaded suites [{}] and [{}]",
            names(a),
            names(b)
        )));
    }
    match a.suites.iter().zip(&b.suites).find(|(x, y)| x != y) {
        Some((x, y)) => Err(mismatch(format!(
            "suite `{}` differs (fingerprint {} and {}): its file or datasets changed between the runs",
            crate::suite::report_name(&x.name, x.system.as_deref()),
            x.fingerprint,
            y.fingerprint
        ))),
        None => Ok(()),
    }
}

/// Checks that the shards among `parts` make up one partition; returns a
/// warning for shards missing when no `expect` was given.
fn shards(parts: &[Loaded], expect: Option<u64>) -> Result<Vec<String>, MergeError> {
    let specs: Vec<(&Loaded, crate::partition::Partition)> = parts
        .iter()
        .filter_map(|p| Some((p, p.header.partition.as_deref()?.parse().ok()?)))
        .collect();
    let Some(&(_, first)) = specs.first() else {
        return match expect {
            Some(n) => Err(MergeError::Shards(format!(
                "--expect {n}, but no input is a shard of a partition (run with --partition or FORGE_PARTITION)"
            ))),
            None => Ok(Vec::new()),
        };
    };
    let total = first.total();
    if let Some((part, other)) = specs.iter().find(|(_, p)| !p.same_partition(&first)) {
        return Err(MergeError::Shards(format!(
            "{} is shard {other}, but another input is shard {first}: not one partition",
            part.path.display()
        )));
    }
    if let Some(n) = expect.filter(|&n| n != total) {
        return Err(MergeError::Shards(format!(
            "--expect {n}, but the inputs are shards of {total}"
        )));
    }
    let mut seen = BTreeSet::new();
    for (part, spec) in &specs {
        if part.header.nextest.is_none() && !seen.insert(spec.index()) {
            return Err(MergeError::Shards(format!(
                "shard {spec} is given twice ({})",
                part.path.display()
            )));
        }
        seen.insert(spec.index());
    }
    let missing: Vec<String> = (1..=total)
        .filter(|m| !seen.contains(m))
        .map(|m| format!("{m}/{total}"))
        .collect();
    match (missing.is_empty(), expect) {
        (true, _) => Ok(Vec::new()),
        (false, Some(_)) => Err(MergeError::Shards(format!(
            "missing shard(s) {}",
            missing.join(", ")
        ))),
        (false, None) => Ok(vec![format!(
            "missing shard(s) {} (give --expect {total} to make this an error)",
            missing.join(", ")
        )]),
    }
}

/// The load failures of every part, each once, in the order first seen.
fn load_failures(parts: &[Loaded]) -> Vec<LoadFailure> {
    let mut seen = BTreeSet::new();
    parts
        .iter()
        .flat_map(|p| &p.end.load_failures)
        .filter(|f| seen.insert(f.test.clone()))
        .cloned()
        .collect()
}

/// Writes the merged suites' `<suite>.json` and `junit.xml` into `out`.
fn write(
    out: &Path,
    suites: Vec<WholeSuite>,
    load_failures: &[LoadFailure],
) -> Result<Vec<SuiteReport>, MergeError> {
    let mut reporter = Tee::new()
        .with(SummaryJson::new(out))
        .with(Junit::new(out))
        .with(crate::report::html::HtmlReport::new(out))
        .replacing(out, crate::report::sweep::Parts::Keep);
    let suites = feed(&mut reporter, suites)?;
    reporter.finish(&RunEnd {
        suites: &suites,
        load_failures,
        interrupted: false,
    })?;
    Ok(suites)
}

/// Feeds every suite to `reporter`, each dropped once fed.
fn feed(
    reporter: &mut dyn Reporter,
    suites: Vec<WholeSuite>,
) -> Result<Vec<SuiteReport>, MergeError> {
    let mut reports = Vec::with_capacity(suites.len());
    for suite in suites {
        reports.push(suite.feed(reporter)?);
    }
    Ok(reports)
}

/// `forge report DIR -o FILE`: writes to `out` the report of the run(s)
/// whose output directory is `dir` (read as `forge merge` reads it).
pub(crate) fn report_html(dir: &Path, out: &Path) -> Result<(), MergeError> {
    let (suites, load_failures, interrupted) = read_run(dir)?;
    let mut report = crate::report::html::HtmlReport::to_file(out);
    let suites = feed(&mut report, suites)?;
    report.finish(&crate::report::RunEnd {
        suites: &suites,
        load_failures: &load_failures,
        interrupted,
    })?;
    Ok(())
}
