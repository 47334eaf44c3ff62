//! `report.html`: the run for a person, in one self-contained file opened by
//! double-click (no network at view time: its Content-Security-Policy
//! forbids any request).
//!
//! The file is a static shell (`html/report.css`, `html/report.js`, both
//! inline) and the run's data as JSON: one
//! `<script type="application/json" class="forge-suite">` per suite, written
//! as each suite finishes, then one `<script type="application/json" id="forge-run">` with the
//! run's end. Every `<` inside the JSON is written `\u003c`, so no text (an
//! answer saying `</script>`) can close the element, and the script puts
//! text into the page with `textContent` only, never as HTML.
//!
//! The report holds nothing per batch: as each dataset is fed, its rows
//! are written (redacted) to a spool, its runs' times to another; when
//! the suite ends, its counts and latency head its element, and its rows
//! are copied in after them.
//!
//! A suite's data ([`SuiteData`]): `name`, `system` (the named system of
//! `runners:`, else `null`), `error` (what kept it from running), the
//! `passed` / `failed` / `skipped` counts, `latency` (p50/p95/p99 and a
//! histogram of the runs' times, see [`Latency`]), `usage` (the summary
//! JSON's `usage` key) and `batches`, one row per selected or skipped batch
//! in suite order, with short keys to keep 100,000 batches small:
//!
//! | key | what |
//! | --- | --- |
//! | `t` | test name |
//! | `s` | `"pass"`, `"fail"` or `"skip"` |
//! | `m` | why it failed |
//! | `q`, `g` | the query and the ground truth |
//! | `ga` | the expected agentic data (when not empty) |
//! | `r` | the runs: `a` answer, `ms`, `p` passed, `c` checks, `u` / `ju` runner / judge usage, `ag` agentic data |
//! | `c` | the checks on the runs together (`pass_pow_k`) |
//! | `rep` | the repeats' statistics (with `repeat`) |
//! | `l` | where the batch is written (`file:line`) |
//! | `b` | what changed since the baseline (see [`Baseline`]) |
//!
//! Hooks: suites that share a `name` and differ in `system` are shown side
//! by side (a scoreboard, then one row per `<session>::<qa_id>` with a
//! column per system); a [`Baseline`] given with
//! [`HtmlReport::with_baseline`] adds a "since baseline" column.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::spool::{Spool, Times};
use super::{create, finish, prepare, DatasetReport, Reporter, RunEnd, SuiteReport};
use crate::check::{repeats, CheckResult};
use crate::error::ReportError;
use crate::load::LoadFailure;
use crate::output::write_redacted;
use crate::run::{BatchRecord, RunRecord};
use crate::schema::{Batch, Object};
use crate::usage::Spend;

/// The report's file name in an output directory.
pub const REPORT_HTML: &str = "report.html";

/// The page's style and script.
const CSS: &str = include_str!("html/report.css");
const JS: &str = include_str!("html/report.js");

/// What changed for a batch since a baseline run, as the "since baseline"
/// column shows it (`None`: nothing to say about this batch).
pub type Baseline = Box<BaselineFn>;

/// The function behind a [`Baseline`].
pub type BaselineFn = dyn Fn(&BatchRecord) -> Option<String> + Send;

/// The reporter writing `report.html`.
pub struct HtmlReport {
    path: PathBuf,
    baseline: Option<Baseline>,
    open: Option<(PathBuf, std::io::BufWriter<std::fs::File>)>,
    /// Whether the directory was made ready.
    prepared: bool,
    /// The suites being fed: their rows and times so far.
    suites: HashMap<SuiteKey, SuiteRows>,
}

/// A suite, or one system of it.
type SuiteKey = (usize, Option<String>);

/// A suite's rows (JSON, redacted, comma-separated), spooled, and the
/// times of its selected batches' runs.
struct SuiteRows {
    rows: Spool,
    count: u64,
    times: Times,
}

impl HtmlReport {
    /// Writes `report.html` into `dir` (created if need be).
    pub fn new(dir: impl AsRef<Path>) -> Self {
        HtmlReport::to_file(dir.as_ref().join(REPORT_HTML))
    }

    /// Writes the report to `path`.
    pub fn to_file(path: impl Into<PathBuf>) -> Self {
        HtmlReport {
            path: path.into(),
            baseline: None,
            open: None,
            prepared: false,
            suites: HashMap::new(),
        }
    }

    // The hook of `forge run --baseline`, which no front end uses yet.
    #[cfg_attr(not(test), allow(dead_code))]
    /// Adds a "since baseline" column with what `baseline` says of each
    /// batch.
    pub fn with_baseline(mut self, baseline: Baseline) -> Self {
        self.baseline = Some(baseline);
        self
    }

    /// The "since baseline" column of `--baseline` / `FORGE_BASELINE`,
    /// when there is one.
    pub(crate) fn with_since(
        self,
        baseline: Option<&std::sync::Arc<dyn super::since::Baseline>>,
    ) -> Self {
        let Some(baseline) = baseline.cloned() else {
            return self;
        };
        self.with_baseline(Box::new(move |record| {
            let mark = baseline.mark(record)?;
            Some(match mark.regressed {
                true => format!("regressed: {}", mark.text),
                false => mark.text,
            })
        }))
    }

    fn error(&self, error: impl std::fmt::Display) -> ReportError {
        ReportError {
            path: self.path.clone(),
            message: error.to_string(),
        }
    }

    /// The rows of the suite `key`, started (in the page's directory) on
    /// first use.
    fn rows(&mut self, key: SuiteKey) -> Result<&mut SuiteRows, ReportError> {
        let dir = match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        };
        if !self.suites.contains_key(&key) {
            if !self.prepared {
                prepare(&dir)?;
                self.prepared = true;
            }
            let spooled = Spool::new(&dir).and_then(|rows| Ok((rows, Times::new(&dir)?)));
            let (rows, times) = spooled.map_err(|e| self.error(format!("cannot spool: {e}")))?;
            let count = 0;
            self.suites
                .insert(key.clone(), SuiteRows { rows, count, times });
        }
        let path = &self.path;
        self.suites.get_mut(&key).ok_or_else(|| ReportError {
            path: path.clone(),
            message: "no rows".into(),
        })
    }
}

impl SuiteRows {
    /// Spools the rows of `dataset`'s selected and skipped batches, and
    /// the times of its selected batches' runs.
    fn add(
        &mut self,
        dataset: &DatasetReport<'_>,
        baseline: Option<&BaselineFn>,
    ) -> std::io::Result<()> {
        let turn = |r: &BatchRecord, run: usize| {
            let answered = dataset.answered.iter().find(|a| a.origin.run == run)?;
            answered.dataset.conversation.get(r.id.batch)
        };
        for record in dataset.records {
            if record.selected {
                record
                    .runs
                    .iter()
                    .try_for_each(|run| self.times.push(run.time_ms))?;
            }
            if !(record.selected || record.skipped) {
                continue;
            }
            if self.count > 0 {
                self.rows.write_all(b",")?;
            }
            let row = Row::new(record, &|run| turn(record, run), baseline);
            let formatter = serde_json::ser::CompactFormatter;
            write_redacted(
                ScriptSafe(&mut self.rows),
                &row,
                &dataset.suite.secrets,
                formatter,
            )?;
            self.count += 1;
        }
        Ok(())
    }
}

/// A report's temporary file beside `path`, opened with the page's head on
/// first use.
fn writer<'w>(
    path: &Path,
    open: &'w mut Option<(PathBuf, std::io::BufWriter<std::fs::File>)>,
) -> Result<&'w mut std::io::BufWriter<std::fs::File>, ReportError> {
    let file = match open.take() {
        Some(file) => file,
        None => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                prepare(dir)?;
            }
            let (tmp, mut writer) = create(path)?;
            if let Err(e) = head(&mut writer) {
                let _ = std::fs::remove_file(&tmp);
                return Err(ReportError {
                    path: path.to_owned(),
                    message: e.to_string(),
                });
            }
            (tmp, writer)
        }
    };
    Ok(&mut open.insert(file).1)
}

impl Reporter for HtmlReport {
    fn on_dataset(&mut self, dataset: &DatasetReport<'_>) -> Result<(), ReportError> {
        let key = (dataset.suite.index, dataset.suite.system.clone());
        let baseline = self.baseline.take();
        let added = self
            .rows(key)
            .map(|rows| rows.add(dataset, baseline.as_deref()));
        self.baseline = baseline;
        added?.map_err(|e| self.error(e))
    }

    fn on_suite(&mut self, suite: &SuiteReport) -> Result<(), ReportError> {
        let key = (suite.head.index, suite.head.system.clone());
        let rows = self.suites.remove(&key);
        if !suite.is_reported() {
            return Ok(());
        }
        let w = writer(&self.path, &mut self.open)?;
        write_suite(w, suite, rows).map_err(|e| self.error(e))
    }

    fn finish(&mut self, end: &RunEnd<'_>) -> Result<Vec<PathBuf>, ReportError> {
        let written = tail(writer(&self.path, &mut self.open)?, end);
        let Some((tmp, writer)) = self.open.take() else {
            return Ok(Vec::new());
        };
        finish(&self.path, &tmp, writer, written)?;
        Ok(vec![self.path.clone()])
    }
}

/// The page up to the data: the head with the style, the shell.
fn head(w: &mut impl Write) -> std::io::Result<()> {
    w.write_all(
        b"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
<title>forge report</title>\n<style>\n",
    )?;
    w.write_all(CSS.as_bytes())?;
    w.write_all(
        b"</style>\n</head>\n<body>\n<header><h1>forge report</h1><div id=\"run\"></div></header>\n\
<main id=\"suites\"><noscript>This report needs JavaScript.</noscript></main>\n",
    )
}

/// The run's end and the script that renders the page.
fn tail(w: &mut impl Write, end: &RunEnd<'_>) -> std::io::Result<()> {
    #[derive(Serialize)]
    struct RunData<'a> {
        interrupted: bool,
        load_failures: &'a [LoadFailure],
        forge_version: &'static str,
    }
    let run = RunData {
        interrupted: end.interrupted,
        load_failures: end.load_failures,
        forge_version: env!("CARGO_PKG_VERSION"),
    };
    w.write_all(b"<script type=\"application/json\" id=\"forge-run\">")?;
    // Load failures are not redacted with any suite's secrets: their
    // messages are made redacted.
    let secrets = crate::secrets::Secrets::default();
    write_redacted(
        ScriptSafe(&mut *w),
        &run,
        &secrets,
        serde_json::ser::CompactFormatter,
    )?;
    w.write_all(b"</script>\n<script>\n")?;
    w.write_all(JS.as_bytes())?;
    w.write_all(b"</script>\n</body>\n</html>\n")
}

/// Writes one suite's data element: its head, then its spooled rows.
fn write_suite(
    w: &mut impl Write,
    suite: &SuiteReport,
    rows: Option<SuiteRows>,
) -> std::io::Result<()> {
    let (latency, rows) = match rows {
        Some(mut rows) => (Latency::of_times(&mut rows.times)?, Some(rows.rows)),
        None => (None, None),
    };
    let tally = &suite.tally;
    let data = SuiteData {
        name: &suite.head.name,
        system: suite.head.system.as_deref(),
        error: suite.error.as_deref(),
        passed: tally.passed,
        failed: tally.failed(),
        skipped: tally.skipped,
        latency,
        usage: (!tally.usage.is_empty()).then(|| tally.usage.to_json()),
    };
    let mut head = Vec::new();
    let formatter = serde_json::ser::CompactFormatter;
    write_redacted(ScriptSafe(&mut head), &data, &suite.head.secrets, formatter)?;
    // The object without its `}`: its rows are its last key.
    head.pop();
    w.write_all(b"<script type=\"application/json\" class=\"forge-suite\">")?;
    w.write_all(&head)?;
    w.write_all(b",\"batches\":[")?;
    if let Some(mut rows) = rows {
        rows.copy_to(w)?;
    }
    w.write_all(b"]}</script>\n")
}

/// A writer of JSON into a `<script>` element: every `<` (only ever inside
/// a JSON string) becomes `\u003c`, so nothing closes the element.
struct ScriptSafe<W>(W);

impl<W: Write> Write for ScriptSafe<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        for (k, part) in buf.split(|&b| b == b'<').enumerate() {
            if k > 0 {
                self.0.write_all(b"\\u003c")?;
            }
            self.0.write_all(part)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// One suite, as the page's data holds it, but its rows (`batches`, the
/// last key, written after it).
#[derive(Serialize)]
struct SuiteData<'a> {
    name: &'a str,
    system: Option<&'a str>,
    error: Option<&'a str>,
    passed: usize,
    failed: usize,
    skipped: usize,
    latency: Option<Latency>,
    usage: Option<serde_json::Value>,
}

/// The runs' latency: percentiles (nearest rank) and a histogram of
/// [`Latency::BINS`] equal bins from `min` to `max`, in ms.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Latency {
    /// The median.
    pub p50: f64,
    /// The 95th percentile.
    pub p95: f64,
    /// The 99th percentile.
    pub p99: f64,
    /// The fastest run.
    pub min: f64,
    /// The slowest run.
    pub max: f64,
    /// How many runs fall in each bin.
    pub bins: Vec<usize>,
}

impl Latency {
    /// The histogram's bins.
    pub const BINS: usize = 20;

    /// The latency of runs taking `times` ms; `None` without any (the
    /// reference [`Latency::of_times`] is tested against).
    #[cfg(test)]
    pub fn of(mut times: Vec<f64>) -> Option<Latency> {
        times.retain(|t| t.is_finite());
        times.sort_by(f64::total_cmp);
        let (&min, &max) = (times.first()?, times.last()?);
        let rank =
            |p: f64| times[((p * times.len() as f64).ceil() as usize).clamp(1, times.len()) - 1];
        let width = (max - min) / Self::BINS as f64;
        let mut bins = vec![0; Self::BINS];
        for t in &times {
            let bin = if width > 0.0 {
                ((t - min) / width) as usize
            } else {
                0
            };
            bins[bin.min(Self::BINS - 1)] += 1;
        }
        Some(Latency {
            p50: us(rank(0.50)),
            p95: us(rank(0.95)),
            p99: us(rank(0.99)),
            min: us(min),
            max: us(max),
            bins,
        })
    }

    /// The latency of the spooled `times` (what [`Latency::of`] gives of
    /// them), read from their spool.
    pub(crate) fn of_times(times: &mut Times) -> std::io::Result<Option<Latency>> {
        let Some((min, max)) = times.range() else {
            return Ok(None);
        };
        let width = (max - min) / Self::BINS as f64;
        let mut bins = vec![0; Self::BINS];
        times.each_time(|t| {
            let bin = if width > 0.0 {
                ((t - min) / width) as usize
            } else {
                0
            };
            bins[bin.min(Self::BINS - 1)] += 1;
        })?;
        let mut rank = |p: f64| times.percentile(p).map(|t| us(t.unwrap_or(min)));
        Ok(Some(Latency {
            p50: rank(0.50)?,
            p95: rank(0.95)?,
            p99: rank(0.99)?,
            min: us(min),
            max: us(max),
            bins,
        }))
    }
}

/// `ms` to the microsecond: what a person reads, and fewer bytes.
fn us(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

/// One batch's row.
#[derive(Serialize)]
struct Row<'a> {
    t: &'a str,
    s: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    m: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    q: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    g: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ga: Option<&'a Object>,
    r: Vec<RunRow<'a>>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    c: &'a [CheckResult],
    #[serde(skip_serializing_if = "Option::is_none")]
    rep: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    l: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    b: Option<String>,
}

/// One run of a batch's row.
#[derive(Serialize)]
struct RunRow<'a> {
    a: &'a str,
    ms: f64,
    p: bool,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    c: &'a [CheckResult],
    #[serde(skip_serializing_if = "Option::is_none")]
    u: Option<&'a Spend>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ju: Option<&'a Spend>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ag: Option<&'a Object>,
}

impl<'a> Row<'a> {
    /// The row of `r`, whose run k answered `turn(k)`.
    fn new(
        r: &'a BatchRecord,
        turn: &dyn Fn(usize) -> Option<&'a Batch>,
        baseline: Option<&BaselineFn>,
    ) -> Self {
        let first = turn(0);
        let non_empty = |o: &'a Option<Object>| o.as_ref().filter(|o| !o.is_empty());
        let passes = r.runs.iter().filter(|run| run.passed).count();
        Row {
            t: &r.test,
            s: match (r.skipped, r.passed) {
                (true, _) => "skip",
                (false, true) => "pass",
                (false, false) => "fail",
            },
            m: r.message.as_deref(),
            q: first.map(|b| b.query.as_str()),
            g: first
                .map(|b| b.ground_truth_assistant.as_str())
                .filter(|g| !g.is_empty()),
            ga: first.and_then(|b| non_empty(&b.ground_truth_agentic)),
            r: (r.runs.iter().enumerate())
                .map(|(k, run)| RunRow::new(run, turn(k).and_then(|b| non_empty(&b.agentic))))
                .collect(),
            c: &r.checks,
            rep: (r.runs.len() > 1).then(|| repeats::stats(r.runs.len(), passes)),
            l: r.location.as_ref().map(|l| match l.line {
                Some(line) => format!("{}:{line}", l.file.display()),
                None => l.file.display().to_string(),
            }),
            b: baseline.and_then(|b| b(r)),
        }
    }
}

impl<'a> RunRow<'a> {
    fn new(run: &'a RunRecord, agentic: Option<&'a Object>) -> Self {
        RunRow {
            a: &run.answer,
            ms: (run.time_ms * 1000.0).round() / 1000.0,
            p: run.passed,
            c: &run.checks,
            u: run.usage.as_ref(),
            ju: run.judge_usage.as_ref(),
            ag: agentic,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::testing::{self, head, Parts};
    use crate::report::whole::WholeSuite;
    use crate::run::Origin;
    use crate::schema::{Dataset, Response, RunResponse, Summary};
    use crate::secrets::Secrets;
    use crate::select::BatchId;

    /// A run of a batch answering `answer`.
    fn run(answer: &str, passed: bool, time_ms: f64) -> RunRecord {
        RunRecord {
            session_id: "s1".into(),
            success: true,
            passed,
            message: (!passed).then(|| "check `contains` failed: no `Paris`".to_owned()),
            answer: answer.into(),
            time_ms,
            checks: vec![CheckResult {
                check: "contains".into(),
                passed,
                detail: if passed {
                    String::new()
                } else {
                    "no `Paris`".into()
                },
                score: None,
                scores: None,
                reason: Some("the judge's reason".into()),
            }],
            usage: Some(Spend::new(crate::usage::Usage::new(10, 5), None)),
            judge_usage: None,
        }
    }

    /// A suite `name` (about `system`) of one dataset `s1` with two turns:
    /// `q1` passing, `q2` failing with `answers[1]`.
    fn suite(name: &str, system: Option<&str>, answers: [&str; 2]) -> WholeSuite {
        let mut dataset = Dataset::new("s1", "agent");
        for (k, answer) in answers.iter().enumerate() {
            let mut batch = Batch::new(
                format!("q{}", k + 1),
                format!("query {} with sk-secret-1", k + 1),
            );
            batch.assistant = (*answer).to_owned();
            batch.ground_truth_assistant = "The capital is Paris".into();
            batch.agentic = Some(
                serde_json::json!({"tools_used": [{"tool_name": "search"}]})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            );
            dataset.conversation.push(batch);
        }
        let summary = Summary {
            session_id: "s1".into(),
            total_batches: 2,
            successes: 2,
            failures: 0,
            total_execution_time_ms: 3.0,
            avg_batch_time_ms: 1.5,
        };
        let prefix = match system {
            Some(system) => format!("{name}::{system}"),
            None => name.to_owned(),
        };
        let records = answers
            .iter()
            .enumerate()
            .map(|(k, answer)| BatchRecord {
                id: BatchId {
                    suite: 0,
                    dataset: 0,
                    batch: k,
                },
                test: format!("{prefix}::s1::q{}", k + 1),
                selected: true,
                passed: k == 0,
                message: (k == 1).then(|| "check `contains` failed: no `Paris`".to_owned()),
                runs: vec![run(answer, k == 0, 10.0 * (k + 1) as f64)],
                checks: Vec::new(),
                skipped: false,
                location: None,
            })
            .collect();
        WholeSuite {
            head: crate::report::SuiteHead {
                index: 0,
                name: name.into(),
                system: system.map(str::to_owned),
                secrets: Secrets::new(["sk-secret-1"]),
            },
            response: Response::Success(RunResponse::new(vec![(dataset, summary)])),
            origins: vec![Origin { dataset: 0, run: 0 }],
            records,
        }
    }

    /// Writes `suites` through `report`; the page's text.
    fn page(mut report: HtmlReport, suites: Vec<WholeSuite>, path: &Path) -> String {
        let suites: Vec<SuiteReport> = suites
            .into_iter()
            .map(|suite| suite.feed(&mut report).expect("fed"))
            .collect();
        let end = RunEnd {
            suites: &suites,
            load_failures: &[],
            interrupted: false,
        };
        assert_eq!(report.finish(&end).expect("finish"), [path.to_owned()]);
        std::fs::read_to_string(path).expect("report.html")
    }

    /// The JSON of every `<script type="application/json" ...>` of `page`.
    fn data(page: &str) -> Vec<serde_json::Value> {
        page.split("<script type=\"application/json\"")
            .skip(1)
            .map(|rest| {
                let body = &rest[rest.find('>').expect("tag end") + 1..];
                let json = &body[..body.find("</script>").expect("closed")];
                serde_json::from_str(json).expect("valid JSON")
            })
            .collect()
    }

    #[test]
    fn a_suite_s_data_is_embedded_redacted_and_cannot_close_its_element() {
        let dir = tempfile::tempdir().expect("temp dir");
        let answer = "</script><script>alert(1)</script> Lyon sk-secret-1";
        let suites = vec![suite("geo", None, ["The capital is Paris", answer])];
        let text = page(
            HtmlReport::new(dir.path()),
            suites,
            &dir.path().join(REPORT_HTML),
        );
        assert!(!text.contains("sk-secret-1"), "a secret in the report");
        assert_eq!(
            text.matches("</script>").count(),
            3,
            "only the page's own elements close"
        );
        assert!(!text.contains("<script>alert"), "{text}");
        assert!(
            text.contains("default-src 'none'"),
            "the page may not load anything"
        );
        let data = data(&text);
        assert_eq!(data.len(), 2, "one suite, then the run");
        let geo = &data[0];
        assert_eq!(
            (
                &geo["name"],
                &geo["system"],
                &geo["passed"],
                &geo["failed"],
                &geo["skipped"]
            ),
            (
                &"geo".into(),
                &serde_json::Value::Null,
                &1.into(),
                &1.into(),
                &0.into()
            )
        );
        assert_eq!(geo["latency"]["p50"], 10.0);
        assert_eq!(geo["latency"]["p99"], 20.0);
        assert_eq!(
            geo["latency"]["bins"].as_array().map(Vec::len),
            Some(Latency::BINS)
        );
        assert_eq!(geo["usage"]["runner"]["total_tokens"], 30);
        let failing = &geo["batches"][1];
        assert_eq!(failing["t"], "geo::s1::q2");
        assert_eq!(failing["s"], "fail");
        assert_eq!(failing["q"], "query 2 with [REDACTED]");
        assert_eq!(failing["g"], "The capital is Paris");
        assert_eq!(
            failing["r"][0]["a"],
            "</script><script>alert(1)</script> Lyon [REDACTED]"
        );
        assert_eq!(failing["r"][0]["c"][0]["reason"], "the judge's reason");
        assert_eq!(
            failing["r"][0]["ag"]["tools_used"][0]["tool_name"],
            "search"
        );
        assert!(failing.get("b").is_none(), "no baseline, no column");
        assert_eq!(data[1]["interrupted"], false);
    }

    #[test]
    fn systems_of_one_suite_are_reported_apart_under_one_name() {
        let dir = tempfile::tempdir().expect("temp dir");
        let suites = vec![
            suite("geo", Some("small"), ["The capital is Paris", "Lyon"]),
            suite(
                "geo",
                Some("large"),
                ["The capital is Paris", "Paris, of course"],
            ),
        ];
        let text = page(
            HtmlReport::new(dir.path()),
            suites,
            &dir.path().join(REPORT_HTML),
        );
        let data = data(&text);
        let systems: Vec<(&serde_json::Value, &serde_json::Value)> = data[..2]
            .iter()
            .map(|s| (&s["name"], &s["system"]))
            .collect();
        assert_eq!(
            systems,
            [
                (&"geo".into(), &"small".into()),
                (&"geo".into(), &"large".into())
            ]
        );
        assert_eq!(data[0]["batches"][1]["t"], "geo::small::s1::q2");
        assert_eq!(data[1]["batches"][1]["r"][0]["a"], "Paris, of course");
        // The page groups them by name and strips `<suite>::<system>::` to
        // line the same batch up.
        assert!(
            JS.contains("s.name + \"::\" + (s.system != null"),
            "the page's grouping changed"
        );
    }

    #[test]
    fn a_baseline_adds_its_text_to_the_rows_it_speaks_of() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("out.html");
        let report = HtmlReport::to_file(&path).with_baseline(Box::new(|r: &BatchRecord| {
            (!r.passed).then(|| "newly failing".to_owned())
        }));
        let data = data(&page(report, vec![suite("geo", None, ["a", "b"])], &path));
        assert!(data[0]["batches"][0].get("b").is_none());
        assert_eq!(data[0]["batches"][1]["b"], "newly failing");
    }

    /// The data element of `suite`, built whole from it (the reference
    /// its streamed element must equal).
    fn reference(suite: &WholeSuite) -> String {
        #[derive(Serialize)]
        struct Whole<'a> {
            #[serde(flatten)]
            head: SuiteData<'a>,
            batches: Vec<Row<'a>>,
        }
        let datasets = match &suite.response {
            Response::Success(run) => run.datasets.as_slice(),
            Response::Failure(_) => &[],
        };
        let turn = |r: &BatchRecord, run: usize| {
            let at = suite.origins.iter().position(|o| {
                *o == Origin {
                    dataset: r.id.dataset,
                    run,
                }
            })?;
            datasets.get(at)?.conversation.get(r.id.batch)
        };
        let selected = suite.records.iter().filter(|r| r.selected);
        let shown = suite.records.iter().filter(|r| r.selected || r.skipped);
        let usage = crate::report::tally::SuiteUsage::of(&suite.records);
        let passed = selected.clone().filter(|r| r.passed).count();
        let whole = Whole {
            head: SuiteData {
                name: &suite.head.name,
                system: suite.head.system.as_deref(),
                error: match &suite.response {
                    Response::Failure(failure) => Some(&failure.error),
                    Response::Success(_) => None,
                },
                passed,
                failed: selected.clone().count() - passed,
                skipped: suite.records.iter().filter(|r| r.skipped).count(),
                latency: Latency::of(selected.flat_map(|r| &r.runs).map(|r| r.time_ms).collect()),
                usage: (!usage.is_empty()).then(|| usage.to_json()),
            },
            batches: shown
                .map(|r| Row::new(r, &|run| turn(r, run), None))
                .collect(),
        };
        let mut json = Vec::new();
        let formatter = serde_json::ser::CompactFormatter;
        write_redacted(
            ScriptSafe(&mut json),
            &whole,
            &suite.head.secrets,
            formatter,
        )
        .expect("json");
        let json = String::from_utf8(json).expect("utf-8");
        format!("<script type=\"application/json\" class=\"forge-suite\">{json}</script>\n")
    }

    /// The suites' data elements of `page`.
    fn elements(page: &str) -> Vec<String> {
        page.split_inclusive("</script>\n")
            .filter_map(|part| {
                let at = part.find("<script type=\"application/json\" class=\"forge-suite\">")?;
                Some(part[at..].to_owned())
            })
            .collect()
    }

    #[test]
    fn suites_fed_dataset_by_dataset_give_the_whole_suite_s_data() {
        let dir = tempfile::tempdir().expect("temp dir");
        let suites = vec![
            testing::suite(head("geo", 0, None), 3, 4),
            testing::failed(head("down", 1, None), "cannot reach </script>"),
            testing::suite(head("empty", 2, None), 0, 0),
            testing::suite(head("cmp", 3, Some("small")), 2, 2),
        ];
        let expected: Vec<String> = [0, 1, 3].map(|k| reference(&suites[k])).into();
        let text = page(
            HtmlReport::new(dir.path()),
            suites,
            &dir.path().join(REPORT_HTML),
        );
        assert_eq!(elements(&text), expected);
        assert!(!text.contains(testing::SECRET), "a secret in the page");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, [REPORT_HTML], "spools leave nothing behind");
    }

    #[test]
    fn interleaved_suites_are_written_as_they_end_with_their_rows_in_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let a = testing::suite(head("a", 0, None), 3, 3);
        let b = testing::suite(head("b", 1, None), 2, 5);
        let expected = vec![reference(&b), reference(&a)];
        let mut report = HtmlReport::new(dir.path());
        let (a, b) = (Parts::of(a), Parts::of(b));
        a.feed_dataset(&mut report, 0);
        b.feed_dataset(&mut report, 0);
        a.feed_dataset(&mut report, 1);
        let spooled = report.suites[&(0, None)].rows.len();
        assert!(spooled > 0, "rows are spooled as datasets are fed");
        assert_eq!(
            report.suites[&(0, None)].count,
            2 + 2,
            "rows of datasets 0 and 1"
        );
        b.feed_dataset(&mut report, 1);
        let b = b.end(&mut report);
        a.feed_dataset(&mut report, 2);
        let a = a.end(&mut report);
        assert!(report.suites.is_empty(), "an ended suite holds no spool");
        let path = dir.path().join(REPORT_HTML);
        report.finish(&testing::end(&[a, b], &[])).expect("finish");
        let text = std::fs::read_to_string(path).expect("page");
        assert_eq!(elements(&text), expected);
    }

    #[test]
    fn spooled_latency_is_the_sorted_latency() {
        let dir = tempfile::tempdir().expect("temp dir");
        for sample in [
            vec![],
            vec![7.0; 3],
            (1..=100).rev().map(f64::from).collect(),
            vec![0.3, f64::NAN, 2.9, 1e-7, 44.125],
        ] {
            let mut times = Times::new(dir.path()).expect("times");
            sample.iter().for_each(|&t| times.push(t).expect("push"));
            assert_eq!(
                Latency::of_times(&mut times).expect("read"),
                Latency::of(sample)
            );
        }
    }

    #[test]
    fn latency_percentiles_are_nearest_rank_and_bins_hold_every_run() {
        let latency = Latency::of((1..=100).map(f64::from).collect()).expect("runs");
        assert_eq!((latency.p50, latency.p95, latency.p99), (50.0, 95.0, 99.0));
        assert_eq!((latency.min, latency.max), (1.0, 100.0));
        assert_eq!(latency.bins.iter().sum::<usize>(), 100);
        assert_eq!(
            latency.bins[Latency::BINS - 1],
            5,
            "the slowest run is in the last bin"
        );
        let same = Latency::of(vec![7.0; 3]).expect("runs");
        assert_eq!(same.bins[0], 3);
        assert_eq!(Latency::of(Vec::new()), None);
    }
}
