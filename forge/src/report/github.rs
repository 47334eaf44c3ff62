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

use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::since::Baseline;
use super::{Reporter, RunEnd};
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
    fn finish(&mut self, end: &RunEnd<'_>) -> Result<Vec<PathBuf>, ReportError> {
        let lines = annotations(end, self.baseline.as_deref(), &self.places);
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
            append(path, &summary(end, self.baseline.as_deref(), &self.places))?;
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

/// The batches of the run that failed or regressed, in suite order.
fn flagged<'a>(end: &RunEnd<'a>, baseline: Option<&dyn Baseline>) -> Vec<Flagged<'a>> {
    let records = end.suites.iter().flat_map(|s| &s.records);
    records
        .filter(|r| r.selected)
        .filter_map(|record| {
            let change = baseline.and_then(|b| b.mark(record));
            let regression = change
                .filter(|c| c.regressed)
                .map(|c| format!("regressed since baseline: {}", c.describe()));
            (!record.passed || regression.is_some()).then_some(Flagged { record, regression })
        })
        .collect()
}

/// The `::error` lines of the run (at most [`MAX_ANNOTATIONS`], then a
/// `::warning` with the number left out).
fn annotations(end: &RunEnd<'_>, baseline: Option<&dyn Baseline>, places: &Places) -> Vec<String> {
    let mut lines: Vec<String> = end
        .load_failures
        .iter()
        .map(|failure| load_annotation(failure, places))
        .collect();
    for batch in flagged(end, baseline) {
        let location = batch.record.location.as_ref();
        let file = location.map(|l| places.relative(&l.file));
        let line = location.and_then(|l| l.line);
        lines.push(command(
            file.as_deref(),
            line,
            &batch.record.test,
            &batch.message(),
        ));
    }
    if lines.len() > MAX_ANNOTATIONS {
        let more = lines.len() - MAX_ANNOTATIONS;
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
fn summary(end: &RunEnd<'_>, baseline: Option<&dyn Baseline>, places: &Places) -> String {
    let flagged = flagged(end, baseline);
    let mut out = String::new();
    out.push_str(&suite_table(end));
    let failures: Vec<[String; 3]> = flagged
        .iter()
        .filter(|f| !f.record.passed)
        .map(|f| {
            let message = f.record.message.as_deref().unwrap_or("failed");
            [code(&f.record.test), place(f.record, places), cell(message)]
        })
        .collect();
    if !failures.is_empty() {
        out.push_str(&table(
            &format!("Failures ({})", failures.len()),
            ["test", "where", "message"],
            &failures,
        ));
    }
    if let Some(baseline) = baseline {
        out.push_str(&regressions(&flagged, baseline, places));
    }
    let load: Vec<[String; 2]> = end
        .load_failures
        .iter()
        .map(|f| [code(&f.test), cell(&f.message)])
        .collect();
    if !load.is_empty() {
        let heading = format!("Suites that could not be loaded ({})", load.len());
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
            let count = |keep: &dyn Fn(&BatchRecord) -> bool| {
                suite.records.iter().filter(|r| keep(r)).count()
            };
            let counts = [
                count(&|r| r.selected && r.passed),
                count(&|r| r.selected && !r.passed),
                count(&|r| r.skipped),
            ];
            total.iter_mut().zip(counts).for_each(|(t, n)| *t += n);
            let [passed, failed, ignored] = counts.map(|n| n.to_string());
            [code(&suite.name), passed, failed, ignored]
        })
        .collect();
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
fn regressions(flagged: &[Flagged<'_>], baseline: &dyn Baseline, places: &Places) -> String {
    let rows: Vec<[String; 3]> = flagged
        .iter()
        .filter_map(|f| {
            let why = f.regression.as_deref()?;
            let why = why
                .strip_prefix("regressed since baseline: ")
                .unwrap_or(why);
            Some([code(&f.record.test), place(f.record, places), cell(why)])
        })
        .collect();
    let base = code(&baseline.path().display().to_string());
    if rows.is_empty() {
        return format!("No regression since the baseline {base}.\n\n");
    }
    let heading = format!("Regressions since the baseline {base} ({})", rows.len());
    table(&heading, ["test", "where", "since baseline"], &rows)
}

/// A Markdown table under a bold heading (none when empty), at most
/// [`MAX_ROWS`] rows, then how many were left out.
fn table<const N: usize>(heading: &str, header: [&str; N], rows: &[[String; N]]) -> String {
    let mut out = String::new();
    if !heading.is_empty() {
        out.push_str(&format!("**{heading}**\n\n"));
    }
    out.push_str(&format!("| {} |\n", header.join(" | ")));
    out.push_str(&format!("|{}\n", " --- |".repeat(N)));
    for row in rows.iter().take(MAX_ROWS) {
        out.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    if rows.len() > MAX_ROWS {
        out.push_str(&format!(
            "\n... and {} more (see junit.xml)\n",
            rows.len() - MAX_ROWS
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
    use super::{command, normalize, Places};
    use std::path::{Path, PathBuf};

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
