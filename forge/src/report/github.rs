//! GitHub Actions (`GITHUB_ACTIONS=true`): an `::error` annotation per
//! failing batch, and a Markdown summary of the run appended to
//! `$GITHUB_STEP_SUMMARY`. Elsewhere this reporter is not made.
//!
//! Each failing (or, with a baseline, regressed) selected batch prints, at
//! the end of the run and in suite order,
//! `::error file=<file>,line=<line>,title=<test>::<message>`: the file its
//! batch is written in (the suite or its dataset file) relative to the
//! repository (`$GITHUB_WORKSPACE`, else the working directory), the line
//! of its `qa_id`. A suite file that could not be loaded gets one too, at
//! its error. The message and the properties are escaped by GitHub's
//! workflow-command rules. At most [`MAX_ANNOTATIONS`] are printed, then a
//! `::warning` says how many more failed.
//!
//! The step summary (appended, never truncated) has the counts per suite,
//! the failures and, with a baseline, the regressions.
//!
//! As batches are reported it keeps, per suite, only what GitHub is shown:
//! the first [`MAX_ANNOTATIONS`] annotations and the first rows of each
//! table, with the counts of the rest.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::since::Baseline;
use super::{DatasetReport, Reporter, RunEnd, SuiteReport};
use crate::error::ReportError;
use crate::load::LoadFailure;
use crate::run::BatchRecord;

/// Set to `true` by GitHub Actions.
pub const ACTIONS_ENV: &str = "GITHUB_ACTIONS";
/// The file a step's Markdown summary is appended to.
pub const STEP_SUMMARY_ENV: &str = "GITHUB_STEP_SUMMARY";
/// The repository's checkout: annotation paths are relative to it.
pub const WORKSPACE_ENV: &str = "GITHUB_WORKSPACE";

/// The most annotations a run prints (GitHub shows 10 per step and 50 per
/// job; the rest are in `junit.xml` and the step summary).
pub const MAX_ANNOTATIONS: usize = 100;
/// The most characters of a message in an annotation.
const MESSAGE_CHARS: usize = 4000;
/// The most rows of a table in the step summary.
const MAX_ROWS: usize = 100;
/// The most characters of a cell in the step summary.
const CELL_CHARS: usize = 300;

/// The annotations' lines, for a front end that prints them itself (the
/// harness, once libtest has printed its own).
pub type Deferred = Arc<Mutex<Vec<String>>>;

/// The GitHub Actions reporter.
pub struct Github {
    summary: Option<PathBuf>,
    baseline: Option<Arc<dyn Baseline>>,
    places: Places,
    deferred: Option<Deferred>,
    /// The suites being fed: what they flagged so far.
    open: HashMap<SuiteKey, Flags>,
    /// The ended suites' flags, by suite.
    ended: HashMap<SuiteKey, VecDeque<Flags>>,
}

/// A suite, or one system of it.
type SuiteKey = (usize, Option<String>);

/// A suite's failing or regressed batches, as GitHub is shown them: the
/// first few of each kind, and how many there are.
#[derive(Debug, Default)]
struct Flags {
    /// The first [`MAX_ANNOTATIONS`] `::error` lines.
    annotations: Shown<String>,
    /// The first [`MAX_ROWS`] rows of the failures' table.
    failures: Shown<[String; 3]>,
    /// The first [`MAX_ROWS`] rows of the regressions' table.
    regressions: Shown<[String; 3]>,
}

/// The first items of a list and its length.
#[derive(Debug)]
struct Shown<T> {
    first: Vec<T>,
    total: usize,
}

impl<T> Default for Shown<T> {
    fn default() -> Self {
        Shown {
            first: Vec::new(),
            total: 0,
        }
    }
}

impl<T> Shown<T> {
    /// Counts an item, kept when fewer than `max` are.
    fn push(&mut self, max: usize, item: impl FnOnce() -> T) {
        if self.first.len() < max {
            self.first.push(item());
        }
        self.total += 1;
    }

    /// Appends `other`'s items, keeping at most `max`.
    fn extend(&mut self, max: usize, other: Shown<T>) {
        let room = max.saturating_sub(self.first.len());
        self.first.extend(other.first.into_iter().take(room));
        self.total += other.total;
    }
}

impl Github {
    /// The reporter when running under GitHub Actions; `None` elsewhere.
    pub fn from_env() -> Option<Github> {
        if std::env::var(ACTIONS_ENV).ok()? != "true" {
            return None;
        }
        let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
        let cwd = std::env::current_dir().unwrap_or_default();
        Some(Github {
            summary: var(STEP_SUMMARY_ENV).map(PathBuf::from),
            baseline: None,
            places: Places {
                root: var(WORKSPACE_ENV).map(|w| normalize(&cwd.join(w))),
                cwd,
            },
            deferred: None,
            open: HashMap::new(),
            ended: HashMap::new(),
        })
    }

    /// Marks the regressions since `baseline`.
    pub(crate) fn with_baseline(mut self, baseline: Option<Arc<dyn Baseline>>) -> Self {
        self.baseline = baseline;
        self
    }

    /// Keeps the annotations for the caller to print, instead of printing
    /// them when the run ends.
    pub fn deferred(mut self) -> (Self, Deferred) {
        let lines = Deferred::default();
        self.deferred = Some(Arc::clone(&lines));
        (self, lines)
    }

    /// Writes no step summary (a process that runs one test of many).
    pub fn without_summary(mut self) -> Self {
        self.summary = None;
        self
    }
}

impl Reporter for Github {
    fn on_dataset(&mut self, dataset: &DatasetReport<'_>) -> Result<(), ReportError> {
        let key = (dataset.suite.index, dataset.suite.system.clone());
        let flags = self.open.entry(key).or_default();
        let baseline = self.baseline.as_deref();
        for record in dataset.records.iter().filter(|r| r.selected) {
            if let Some(flagged) = flagged(record, baseline) {
                flags.add(&flagged, &self.places);
            }
        }
        Ok(())
    }

    fn on_suite(&mut self, suite: &SuiteReport) -> Result<(), ReportError> {
        let key = (suite.head.index, suite.head.system.clone());
        let flags = self.open.remove(&key).unwrap_or_default();
        self.ended.entry(key).or_default().push_back(flags);
        Ok(())
    }

    fn finish(&mut self, end: &RunEnd<'_>) -> Result<Vec<PathBuf>, ReportError> {
        let flags = self.run_flags(end);
        let lines = annotations(end, &flags.annotations, &self.places);
        match &self.deferred {
            Some(deferred) => deferred
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(lines),
            None => {
                let mut stdout = std::io::stdout().lock();
                for line in &lines {
                    let _ = writeln!(stdout, "{line}");
                }
                let _ = stdout.flush();
            }
        }
        if let Some(path) = &self.summary {
            append(path, &summary(end, &flags, self.baseline.as_deref()))?;
        }
        Ok(Vec::new())
    }
}

/// Appends `text` to the file at `path` (created if need be).
fn append(path: &Path, text: &str) -> Result<(), ReportError> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(|e| ReportError {
            path: path.to_owned(),
            message: format!("cannot append the step summary: {e}"),
        })
}

/// A batch to report: failing, or regressed since the baseline.
struct Flagged<'a> {
    record: &'a BatchRecord,
    /// "regressed since baseline: ..." when it regressed.
    regression: Option<String>,
}

impl Flagged<'_> {
    /// Its message: the regression, then why it fails.
    fn message(&self) -> String {
        let failure =
            (!self.record.passed).then(|| self.record.message.as_deref().unwrap_or("failed"));
        match (&self.regression, failure) {
            (Some(regression), Some(failure)) => format!("{regression}\n{failure}"),
            (Some(regression), None) => regression.clone(),
            (None, failure) => failure.unwrap_or("failed").to_owned(),
        }
    }
}

/// `record` when it failed or regressed since the baseline.
fn flagged<'a>(record: &'a BatchRecord, baseline: Option<&dyn Baseline>) -> Option<Flagged<'a>> {
    let change = baseline.and_then(|b| b.mark(record));
    let regression = change
        .filter(|c| c.regressed)
        .map(|c| format!("regressed since baseline: {}", c.describe()));
    (!record.passed || regression.is_some()).then_some(Flagged { record, regression })
}

impl Flags {
    /// Counts `batch`, and keeps what GitHub shows of it while few are.
    fn add(&mut self, batch: &Flagged<'_>, places: &Places) {
        let record = batch.record;
        self.annotations.push(MAX_ANNOTATIONS, || {
            let location = record.location.as_ref();
            let file = location.map(|l| places.relative(&l.file));
            let line = location.and_then(|l| l.line);
            command(file.as_deref(), line, &record.test, &batch.message())
        });
        if !record.passed {
            self.failures.push(MAX_ROWS, || {
                let message = record.message.as_deref().unwrap_or("failed");
                [code(&record.test), place(record, places), cell(message)]
            });
        }
        if let Some(why) = batch.regression.as_deref() {
            self.regressions.push(MAX_ROWS, || {
                let why = why
                    .strip_prefix("regressed since baseline: ")
                    .unwrap_or(why);
                [code(&record.test), place(record, places), cell(why)]
            });
        }
    }

    /// Appends `other`'s (a later suite's).
    fn extend(&mut self, other: Flags) {
        self.annotations.extend(MAX_ANNOTATIONS, other.annotations);
        self.failures.extend(MAX_ROWS, other.failures);
        self.regressions.extend(MAX_ROWS, other.regressions);
    }
}

impl Github {
    /// The run's flags: its ended suites', in run order.
    fn run_flags(&mut self, end: &RunEnd<'_>) -> Flags {
        let mut flags = Flags::default();
        for suite in end.suites {
            let key = (suite.head.index, suite.head.system.clone());
            if let Some(suite) = self.ended.get_mut(&key).and_then(VecDeque::pop_front) {
                flags.extend(suite);
            }
        }
        flags
    }
}

/// The `::error` lines of the run: the load failures', then the first
/// `flagged` batches' (at most [`MAX_ANNOTATIONS`] in all), then a
/// `::warning` with the number left out.
fn annotations(end: &RunEnd<'_>, flagged: &Shown<String>, places: &Places) -> Vec<String> {
    let mut lines: Vec<String> = end
        .load_failures
        .iter()
        .map(|failure| load_annotation(failure, places))
        .collect();
    let total = lines.len() + flagged.total;
    let room = MAX_ANNOTATIONS.saturating_sub(lines.len());
    lines.extend(flagged.first.iter().take(room).cloned());
    if total > MAX_ANNOTATIONS {
        let more = total - MAX_ANNOTATIONS;
        lines.truncate(MAX_ANNOTATIONS);
        lines.push(format!(
            "::warning title=forge::{more} more failing batches are not annotated: see junit.xml and the step summary"
        ));
    }
    lines
}

/// The annotation of a suite file that could not be loaded.
fn load_annotation(failure: &LoadFailure, places: &Places) -> String {
    let location = failure.location.as_ref();
    let file = location.map(|l| places.relative(&l.file));
    let line = location.and_then(|l| l.line);
    command(file.as_deref(), line, &failure.test, &failure.message)
}

/// `::error file=...,line=...,title=...::message`, escaped.
fn command(file: Option<&str>, line: Option<usize>, title: &str, message: &str) -> String {
    let mut properties = Vec::new();
    if let Some(file) = file {
        properties.push(format!("file={}", escape_property(file)));
        if let Some(line) = line {
            properties.push(format!("line={line}"));
        }
    }
    properties.push(format!("title={}", escape_property(title)));
    let message: String = message.chars().take(MESSAGE_CHARS).collect();
    format!(
        "::error {}::{}",
        properties.join(","),
        escape_data(&message)
    )
}

/// A workflow command's message: `%`, `\r` and `\n` escaped.
fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// A workflow command's property: also `:` and `,`.
fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

/// Where paths are made relative to: the repository (when the working
/// directory is in it), else the working directory.
#[derive(Debug, Clone)]
struct Places {
    cwd: PathBuf,
    root: Option<PathBuf>,
}

impl Places {
    /// `file` relative to the repository, else to the working directory,
    /// with `/`; as given when it is in neither.
    fn relative(&self, file: &Path) -> String {
        let absolute = normalize(&self.cwd.join(file));
        let base = match &self.root {
            Some(root) if absolute.starts_with(root) => root.as_path(),
            _ => self.cwd.as_path(),
        };
        let shown = match absolute.strip_prefix(base) {
            Ok(relative) => relative.to_owned(),
            Err(_) => file.to_owned(),
        };
        shown.to_string_lossy().replace('\\', "/")
    }
}

/// `path` with its `.` and `..` resolved, lexically.
fn normalize(path: &Path) -> PathBuf {
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                normal.pop();
            }
            other => normal.push(other),
        }
    }
    normal
}

/// The step summary: counts per suite, the failures, the regressions
/// since the baseline, the suites that could not be loaded.
fn summary(end: &RunEnd<'_>, flags: &Flags, baseline: Option<&dyn Baseline>) -> String {
    let mut out = String::new();
    out.push_str(&suite_table(end));
    if flags.failures.total > 0 {
        out.push_str(&table(
            &format!("Failures ({})", flags.failures.total),
            ["test", "where", "message"],
            &flags.failures,
        ));
    }
    if let Some(baseline) = baseline {
        out.push_str(&regressions(&flags.regressions, baseline));
    }
    let load: Vec<[String; 2]> = end
        .load_failures
        .iter()
        .map(|f| [code(&f.test), cell(&f.message)])
        .collect();
    if !load.is_empty() {
        let heading = format!("Suites that could not be loaded ({})", load.len());
        let load = Shown {
            total: load.len(),
            first: load,
        };
        out.push_str(&table(&heading, ["test", "error"], &load));
    }
    out
}

/// The heading and the table of passed, failed and ignored batches per
/// suite.
fn suite_table(end: &RunEnd<'_>) -> String {
    let mut total = [0usize; 3];
    let rows: Vec<[String; 4]> = end
        .suites
        .iter()
        .filter(|s| s.is_reported())
        .map(|suite| {
            let tally = &suite.tally;
            let counts = [tally.passed, tally.failed(), tally.skipped];
            total.iter_mut().zip(counts).for_each(|(t, n)| *t += n);
            let [passed, failed, ignored] = counts.map(|n| n.to_string());
            [code(&suite.head.name), passed, failed, ignored]
        })
        .collect();
    let rows = Shown {
        total: rows.len(),
        first: rows,
    };
    let mut heading = format!(
        "### forge: {} passed, {} failed, {} ignored\n\n",
        total[0], total[1], total[2]
    );
    if end.interrupted {
        heading.push_str("The run was interrupted: these results are partial.\n\n");
    }
    heading + &table("", ["suite", "passed", "failed", "ignored"], &rows)
}

/// The regressions since the baseline, or a line saying there is none.
fn regressions(rows: &Shown<[String; 3]>, baseline: &dyn Baseline) -> String {
    let base = code(&baseline.path().display().to_string());
    if rows.total == 0 {
        return format!("No regression since the baseline {base}.\n\n");
    }
    let heading = format!("Regressions since the baseline {base} ({})", rows.total);
    table(&heading, ["test", "where", "since baseline"], rows)
}

/// A Markdown table under a bold heading (none when empty), at most
/// [`MAX_ROWS`] rows, then how many were left out.
fn table<const N: usize>(heading: &str, header: [&str; N], rows: &Shown<[String; N]>) -> String {
    let mut out = String::new();
    if !heading.is_empty() {
        out.push_str(&format!("**{heading}**\n\n"));
    }
    out.push_str(&format!("| {} |\n", header.join(" | ")));
    out.push_str(&format!("|{}\n", " --- |".repeat(N)));
    for row in rows.first.iter().take(MAX_ROWS) {
        out.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    if rows.total > MAX_ROWS {
        out.push_str(&format!(
            "\n... and {} more (see junit.xml)\n",
            rows.total - MAX_ROWS
        ));
    }
    out.push('\n');
    out
}

/// Where a batch is written: `file:line` in code.
fn place(record: &BatchRecord, places: &Places) -> String {
    match &record.location {
        Some(location) => {
            let file = places.relative(&location.file);
            match location.line {
                Some(line) => code(&format!("{file}:{line}")),
                None => code(&file),
            }
        }
        None => String::new(),
    }
}

/// `text` as inline code in a table cell.
fn code(text: &str) -> String {
    format!("`{}`", text.replace('`', "'").replace('|', "\\|"))
}

/// `text` as a table cell: HTML escaped, `|` escaped, newlines as `<br>`,
/// at most [`CELL_CHARS`] characters.
fn cell(text: &str) -> String {
    let mut shown: String = text.chars().take(CELL_CHARS).collect();
    if shown.len() < text.len() {
        shown.push_str(" ...");
    }
    shown
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('|', "\\|")
        .replace("\r\n", "<br>")
        .replace(['\n', '\r'], "<br>")
}

#[cfg(test)]
mod tests {
    use super::{command, normalize, Deferred, Github, Places, MAX_ANNOTATIONS, MAX_ROWS};
    use crate::report::testing::{self, head, Parts};
    use crate::report::Reporter;
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};

    /// A reporter writing its step summary to `summary`, its annotations
    /// kept.
    fn github(summary: &Path) -> (Github, Deferred) {
        let github = Github {
            summary: Some(summary.to_owned()),
            baseline: None,
            places: Places {
                cwd: PathBuf::from("/repo"),
                root: None,
            },
            deferred: None,
            open: HashMap::new(),
            ended: HashMap::new(),
        };
        github.deferred()
    }

    #[test]
    fn only_what_github_shows_is_kept_in_run_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("summary.md");
        let (mut reporter, lines) = github(&path);
        // 3 datasets of 90 turns: 89 selected each but dataset 1's (88),
        // a third of them failing.
        let a = Parts::of(testing::suite(head("a", 0, None), 3, 90));
        let b = Parts::of(testing::suite(head("b", 1, None), 3, 90));
        let down = testing::failed(head("down", 2, None), "cannot run");
        b.feed_dataset(&mut reporter, 0);
        a.feed_dataset(&mut reporter, 0);
        b.feed_dataset(&mut reporter, 1);
        b.feed_dataset(&mut reporter, 2);
        let b = b.end(&mut reporter);
        let kept = |r: &Github| {
            r.open
                .values()
                .map(|f| f.annotations.first.len())
                .sum::<usize>()
        };
        a.feed_dataset(&mut reporter, 1);
        a.feed_dataset(&mut reporter, 2);
        assert!(
            kept(&reporter) <= MAX_ANNOTATIONS,
            "a suite keeps at most what is shown"
        );
        let a = a.end(&mut reporter);
        let mut suites = vec![a, b];
        suites.extend(testing::feed(&mut reporter, vec![down]));
        let load = [testing::load_failure("bad")];
        reporter
            .finish(&testing::end(&suites, &load))
            .expect("finish");
        let failed: usize = suites.iter().map(|s| s.tally.failed()).sum();
        assert!(failed > MAX_ANNOTATIONS, "{failed} failures");
        let lines = lines.lock().expect("lines").clone();
        assert_eq!(lines.len(), MAX_ANNOTATIONS + 1);
        assert!(lines[0].starts_with("::error file=suites/bad.yaml,line=3,title=bad%3A%3Aload::"));
        assert!(
            lines[1].contains("title=a%3A%3As0%3A%3Aq1::"),
            "suite a first: {}",
            lines[1]
        );
        assert!(
            lines[MAX_ANNOTATIONS - 1].contains("title=b%3A%3A"),
            "then suite b"
        );
        let more = failed + 1 - MAX_ANNOTATIONS;
        assert_eq!(
            lines[MAX_ANNOTATIONS],
            format!("::warning title=forge::{more} more failing batches are not annotated: see junit.xml and the step summary")
        );
        let summary = std::fs::read_to_string(&path).expect("summary");
        let passed: usize = suites.iter().map(|s| s.tally.passed).sum();
        assert!(summary.starts_with(&format!(
            "### forge: {passed} passed, {failed} failed, 2 ignored\n"
        )));
        assert!(summary.contains("| `down` | 0 | 0 | 0 |"), "{summary}");
        assert!(summary.contains(&format!("**Failures ({failed})**")));
        let rows = summary
            .lines()
            .filter(|l| l.starts_with("| `a::") || l.starts_with("| `b::"));
        assert_eq!(rows.count(), MAX_ROWS);
        assert!(summary.contains(&format!(
            "... and {} more (see junit.xml)",
            failed - MAX_ROWS
        )));
        assert!(!summary.contains(testing::SECRET));
    }

    #[test]
    fn messages_and_properties_are_escaped() {
        assert_eq!(
            command(
                Some("a,b:c.yaml"),
                Some(3),
                "s::x,y",
                "50% off\r\nnext: a, b"
            ),
            "::error file=a%2Cb%3Ac.yaml,line=3,title=s%3A%3Ax%2Cy::50%25 off%0D%0Anext: a, b"
        );
        assert_eq!(command(None, Some(3), "t", "m"), "::error title=t::m");
    }

    #[test]
    fn paths_are_relative_to_the_repository() {
        let places = Places {
            cwd: PathBuf::from("/repo/crate"),
            root: Some(PathBuf::from("/repo")),
        };
        assert_eq!(
            places.relative(Path::new("suites/a.yaml")),
            "crate/suites/a.yaml"
        );
        assert_eq!(
            places.relative(Path::new("/repo/crate/./x/../b.yaml")),
            "crate/b.yaml"
        );
        assert_eq!(
            places.relative(Path::new("/elsewhere/c.yaml")),
            "/elsewhere/c.yaml"
        );
        let outside = Places {
            cwd: PathBuf::from("/work"),
            root: Some(PathBuf::from("/repo")),
        };
        assert_eq!(
            outside.relative(Path::new("suites/a.yaml")),
            "suites/a.yaml"
        );
        assert_eq!(normalize(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
    }
}
