//! `parts/`: what `forge merge` needs to fold several runs of the same
//! suites (the shards of a CI matrix, the processes of cargo nextest) into
//! one report.
//!
//! A run writes one *part*: a file of concatenated JSON values.
//!
//! 1. a [`Header`]: the forge version, the shard (`--partition`), the
//!    nextest run and attempt, and every suite the run loaded with its
//!    [`fingerprint`](crate::suite::fingerprint);
//! 2. one [`Entry::Suite`] per reported suite: where each answered dataset
//!    comes from, and every batch's record (redacted); its response (the
//!    answered datasets, redacted) inline, or `null` when it is the run's
//!    `<suite>.json` beside `parts/`;
//! 3. one [`Entry::End`]: whether the run was interrupted, and the suite
//!    files that failed to load.
//!
//! A suite's entry is put together as the suite is fed: its records,
//! origins, sessions (and inline response) are spooled (unnamed temporary
//! files in the part's directory: suites in flight at once each have their
//! own) and copied into the part, in the order above, when the suite ends.
//!
//! `forge run` and `cargo test` write `parts/run.json` beside their
//! `<suite>.json` (replaced by the next run, like them). Under cargo nextest
//! every process writes its own part, with its response inline and a name
//! no other process uses: `parts/nextest-<run id>/<attempt>-<pid>-<ns>.json`,
//! and neither `<suite>.json` nor `junit.xml`.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::summary::{compact, Spool};
use super::{create, finish, prepare, DatasetReport, Reporter, RunEnd, SuiteReport};
use crate::error::ReportError;
use crate::load::LoadFailure;
use crate::run::{BatchRecord, Origin};
use crate::schema::Response;
use crate::secrets::Secrets;
use crate::suite::Suite;

/// The version of the part format.
pub const FORMAT: u32 = 1;

/// The directory of parts inside an output directory.
pub const PARTS_DIR: &str = "parts";

/// The part of a `forge run` or `cargo test` run.
pub const RUN_PART: &str = "run.json";

/// Who wrote a part, and what it loaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// Always [`FORMAT`].
    pub forge_part: u32,
    /// The version of forge that wrote it.
    pub forge_version: String,
    /// When it was written (RFC 3339), to tell parts apart in messages.
    pub written_at: String,
    /// The shard it ran (`hash:2/3`), if any.
    pub partition: Option<String>,
    /// The nextest run it belongs to, if any.
    pub nextest: Option<Nextest>,
    /// Every suite the run loaded, in order (reported or not).
    pub suites: Vec<SuiteId>,
}

/// A loaded suite: its name and version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuiteId {
    /// The suite's name.
    pub name: String,
    /// Its system, for a suite with `runners:` (one entry per system).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Its [`fingerprint`](crate::suite::fingerprint).
    pub fingerprint: String,
}

/// The nextest process that wrote a part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nextest {
    /// `NEXTEST_RUN_ID`: one `cargo nextest run`.
    pub run_id: String,
    /// `NEXTEST_ATTEMPT` (1, then 2... when nextest retries a test).
    pub attempt: u32,
    /// `NEXTEST_TEST_NAME`: the test the process ran.
    pub test: String,
}

impl Nextest {
    /// The directory of `parts/` this nextest run's parts go to:
    /// `nextest-<run id>`.
    pub fn dir_name(&self) -> String {
        format!("nextest-{}", file_safe(&self.run_id))
    }

    /// The nextest process this is, when nextest runs one test per process
    /// (`NEXTEST_EXECUTION_MODE=process-per-test`, as datatest-stable tells).
    pub fn from_env() -> Option<Nextest> {
        let var = |name| std::env::var(name).ok();
        if var("NEXTEST_EXECUTION_MODE").as_deref() != Some("process-per-test") {
            return None;
        }
        Some(Nextest {
            run_id: var("NEXTEST_RUN_ID").unwrap_or_else(|| "unknown".to_owned()),
            attempt: var("NEXTEST_ATTEMPT")
                .and_then(|a| a.parse().ok())
                .unwrap_or(1),
            test: var("NEXTEST_TEST_NAME").unwrap_or_default(),
        })
    }
}

/// What follows the header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entry {
    /// A reported suite.
    Suite(SuitePart),
    /// The end of the part.
    End(End),
}

/// A reported suite, as a part holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuitePart {
    /// The suite's name.
    pub name: String,
    /// Its system, for a suite with `runners:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Where each answered dataset comes from, in the response's order.
    pub origins: Vec<Origin>,
    /// The session id of each answered dataset, in the same order.
    pub sessions: Vec<String>,
    /// The response, or `None` when it is `<suite>.json` (`<suite>.<system>.json`) beside `parts/`.
    pub response: Option<Response>,
    /// Every batch's record, in suite order.
    pub records: Vec<BatchRecord>,
}

/// The end of a part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct End {
    /// Whether the run was interrupted.
    pub interrupted: bool,
    /// The suite files that could not be loaded.
    pub load_failures: Vec<LoadFailure>,
}

impl Header {
    /// The header of a run of `suites`, by this forge.
    pub fn new(suites: &[Suite], partition: Option<String>, nextest: Option<Nextest>) -> Self {
        Header {
            forge_part: FORMAT,
            forge_version: env!("CARGO_PKG_VERSION").to_owned(),
            written_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            partition,
            nextest,
            suites: suites
                .iter()
                .map(|s| SuiteId {
                    name: s.name.clone(),
                    system: s.system.clone(),
                    fingerprint: s.fingerprint.clone(),
                })
                .collect(),
        }
    }
}

/// The reporter writing a run's part into `<dir>/parts/`.
pub struct Part {
    path: PathBuf,
    header: Header,
    open: Option<(PathBuf, std::io::BufWriter<std::fs::File>)>,
    /// Whether the part's directory is made.
    prepared: bool,
    /// The suites in flight, by index.
    suites: HashMap<usize, OpenSuite>,
}

impl Part {
    /// The part of a run into `dir` (its `<suite>.json` beside it), or
    /// under nextest ([`Header::nextest`]) a fragment of its own that holds
    /// the responses.
    pub fn new(dir: &Path, header: Header) -> Self {
        let parts = dir.join(PARTS_DIR);
        let path = match &header.nextest {
            None => parts.join(RUN_PART),
            Some(nextest) => parts.join(nextest.dir_name()).join(format!(
                "{}-{}-{}.json",
                nextest.attempt,
                std::process::id(),
                chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
            )),
        };
        Part {
            path,
            header,
            open: None,
            prepared: false,
            suites: HashMap::new(),
        }
    }

    /// The part's directory, made (once).
    fn dir(&mut self) -> Result<&Path, ReportError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        if !self.prepared {
            prepare(dir)?;
            self.prepared = true;
        }
        Ok(dir)
    }

    /// The bytes held in memory for the suites in flight (spools'
    /// buffers), not counting what they spooled.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.suites.values().map(OpenSuite::held).sum()
    }

    /// The part's temporary file, opened (with its header written) on
    /// first use.
    fn writer(&mut self) -> Result<&mut std::io::BufWriter<std::fs::File>, ReportError> {
        let open = match self.open.take() {
            Some(open) => open,
            None => self.open_file()?,
        };
        Ok(&mut self.open.insert(open).1)
    }

    fn open_file(&mut self) -> Result<(PathBuf, std::io::BufWriter<std::fs::File>), ReportError> {
        self.dir()?;
        let (tmp, mut writer) = create(&self.path)?;
        let header = serde_json::to_writer(&mut writer, &self.header)
            .map_err(std::io::Error::other)
            .and_then(|()| writer.write_all(b"\n"));
        if let Err(error) = header {
            let _ = std::fs::remove_file(&tmp);
            return Err(self.error(error));
        }
        Ok((tmp, writer))
    }

    fn error(&self, error: impl std::fmt::Display) -> ReportError {
        ReportError {
            path: self.path.clone(),
            message: error.to_string(),
        }
    }
}

impl Reporter for Part {
    fn on_dataset(&mut self, dataset: &DatasetReport<'_>) -> Result<(), ReportError> {
        if dataset.records.is_empty() && dataset.answered.is_empty() {
            return Ok(());
        }
        let inline = self.header.nextest.is_some();
        let index = dataset.suite.index;
        if !self.suites.contains_key(&index) {
            let suite = OpenSuite::new(self.dir()?);
            self.suites.insert(index, suite);
        }
        let Some(suite) = self.suites.get_mut(&index) else {
            return Ok(());
        };
        let added = suite.add(dataset, inline);
        added.map_err(|e| self.error(e))
    }

    fn on_suite(&mut self, suite: &SuiteReport) -> Result<(), ReportError> {
        let open = self.suites.remove(&suite.head.index);
        if !suite.is_reported() {
            return Ok(());
        }
        let open = match open {
            Some(open) => open,
            None => OpenSuite::new(self.dir()?),
        };
        let inline = self.header.nextest.is_some();
        let writer = self.writer()?;
        let written = open
            .write(&mut *writer, suite, inline)
            .and_then(|()| writer.write_all(b"\n"));
        written.map_err(|e| self.error(e))
    }

    fn finish(&mut self, end: &RunEnd<'_>) -> Result<Vec<PathBuf>, ReportError> {
        self.suites.clear();
        let entry = Entry::End(End {
            interrupted: end.interrupted,
            load_failures: end.load_failures.to_vec(),
        });
        let writer = self.writer()?;
        let written = serde_json::to_writer(&mut *writer, &entry)
            .map_err(std::io::Error::other)
            .and_then(|()| writer.write_all(b"\n"));
        let Some((tmp, writer)) = self.open.take() else {
            return Ok(Vec::new());
        };
        finish(&self.path, &tmp, writer, written)?;
        Ok(vec![self.path.clone()])
    }
}

/// A suite in flight: its entry's lists, spooled compact and redacted.
struct OpenSuite {
    origins: Spool,
    sessions: Spool,
    /// The inline response's datasets and summaries (under nextest).
    datasets: Spool,
    summaries: Spool,
    records: Spool,
}

impl OpenSuite {
    fn new(dir: &Path) -> Self {
        OpenSuite {
            origins: Spool::new(dir),
            sessions: Spool::new(dir),
            datasets: Spool::new(dir),
            summaries: Spool::new(dir),
            records: Spool::new(dir),
        }
    }

    /// Spools a dataset's answered datasets (their origins and sessions;
    /// themselves and their summaries when the response is `inline`) and
    /// its records.
    fn add(&mut self, dataset: &DatasetReport<'_>, inline: bool) -> std::io::Result<()> {
        let secrets = &dataset.suite.secrets;
        for answered in dataset.answered {
            push(&mut self.origins, &answered.origin, secrets)?;
            push(&mut self.sessions, &answered.dataset.session_id, secrets)?;
            if inline {
                push(&mut self.datasets, &answered.dataset, secrets)?;
                push(&mut self.summaries, &answered.summary, secrets)?;
            }
        }
        for record in dataset.records {
            push(&mut self.records, record, secrets)?;
        }
        Ok(())
    }

    /// Writes the suite's entry ([`Entry::Suite`], compact, without its
    /// line's end) to `out`: its head, then each spooled list.
    fn write(self, out: &mut impl Write, suite: &SuiteReport, inline: bool) -> std::io::Result<()> {
        let head = &suite.head;
        let secrets = &head.secrets;
        out.write_all(b"{\"suite\":{\"name\":")?;
        compact(out, true, &head.name, secrets)?;
        if let Some(system) = &head.system {
            out.write_all(b",\"system\":")?;
            compact(out, true, system, secrets)?;
        }
        out.write_all(b",\"origins\":")?;
        array(out, self.origins)?;
        out.write_all(b",\"sessions\":")?;
        array(out, self.sessions)?;
        out.write_all(b",\"response\":")?;
        match (inline, &suite.error) {
            (false, _) => out.write_all(b"null")?,
            (true, Some(_)) => compact(out, true, &suite.failure(), secrets)?,
            (true, None) => {
                let total = self.datasets.items();
                out.write_all(b"{\"success\":true,\"datasets\":")?;
                array(out, self.datasets)?;
                out.write_all(b",\"summaries\":")?;
                array(out, self.summaries)?;
                write!(out, ",\"total_datasets\":{total}}}")?;
            }
        }
        out.write_all(b",\"records\":")?;
        array(out, self.records)?;
        out.write_all(b"}}")
    }

    #[cfg(test)]
    fn held(&self) -> usize {
        let spools = [
            &self.origins,
            &self.sessions,
            &self.datasets,
            &self.summaries,
            &self.records,
        ];
        spools.iter().map(|s| s.held()).sum()
    }
}

/// Appends `value` to `spool`, compact and redacted.
fn push<T: Serialize>(spool: &mut Spool, value: &T, secrets: &Secrets) -> std::io::Result<()> {
    let (file, first) = spool.next()?;
    compact(file, first, value, secrets)
}

/// Writes `spool`'s items as a compact JSON array.
fn array(out: &mut impl Write, spool: Spool) -> std::io::Result<()> {
    out.write_all(b"[")?;
    spool.copy_to(out)?;
    out.write_all(b"]")
}

/// `text` with every character but ASCII letters, digits, `-` and `_`
/// replaced by `_`, at most 64 of them: a safe file name.
fn file_safe(text: &str) -> String {
    text.chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge::read::read_part;
    use crate::report::summary::fixture::{self, fed, Fed, Shape, SECRET};
    use crate::report::whole::WholeSuite;
    use serde_json::ser::CompactFormatter;

    /// A suite's line as the whole-suite writer wrote it: the entry,
    /// serialized at once.
    fn reference(suite: &WholeSuite, inline: bool) -> String {
        #[derive(Serialize)]
        #[serde(rename_all = "snake_case")]
        enum EntryRef<'a> {
            Suite(SuitePartRef<'a>),
        }
        #[derive(Serialize)]
        struct SuitePartRef<'a> {
            name: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            system: Option<&'a str>,
            origins: &'a [Origin],
            sessions: Vec<&'a str>,
            response: Option<&'a Response>,
            records: &'a [BatchRecord],
        }
        let sessions = match &suite.response {
            Response::Success(run) => run.datasets.iter().map(|d| d.session_id.as_str()).collect(),
            Response::Failure(_) => Vec::new(),
        };
        let entry = EntryRef::Suite(SuitePartRef {
            name: &suite.head.name,
            system: suite.head.system.as_deref(),
            origins: &suite.origins,
            sessions,
            response: inline.then_some(&suite.response),
            records: &suite.records,
        });
        let mut out = Vec::new();
        let secrets = &suite.head.secrets;
        crate::output::write_redacted(&mut out, &entry, secrets, CompactFormatter).expect("JSON");
        String::from_utf8(out).expect("utf-8") + "\n"
    }

    fn header(nextest: bool) -> Header {
        Header {
            forge_part: FORMAT,
            forge_version: "0.0.0".into(),
            written_at: "2025-01-01T00:00:00.000Z".into(),
            partition: None,
            nextest: nextest.then(|| Nextest {
                run_id: "run-1".into(),
                attempt: 1,
                test: "suites::x".into(),
            }),
            suites: Vec::new(),
        }
    }

    /// Suites of several shapes, systems of one suite among them, and one
    /// with nothing to report.
    fn fixtures() -> Vec<WholeSuite> {
        let three = Shape {
            datasets: 3,
            turns: 2,
            ..Shape::default()
        };
        let shapes = [
            ("plain", None, three),
            (
                "repeated",
                None,
                Shape {
                    repeat: 2,
                    checks: true,
                    usage: true,
                    ..three
                },
            ),
            (
                "ignoring",
                None,
                Shape {
                    turns: 3,
                    skipped: Some(2),
                    unselected: Some(0),
                    ..three
                },
            ),
            (
                "broken",
                None,
                Shape {
                    error: Some("no runner"),
                    ..three
                },
            ),
            (
                "broken_empty",
                None,
                Shape {
                    error: Some("no runner"),
                    ..Shape::default()
                },
            ),
            ("empty", None, Shape::default()),
            (
                "systems",
                Some("a"),
                Shape {
                    datasets: 5,
                    ..three
                },
            ),
            (
                "systems",
                Some("b"),
                Shape {
                    datasets: 1,
                    ..three
                },
            ),
        ];
        let suites = shapes.into_iter().enumerate();
        suites
            .map(|(i, (name, system, shape))| fixture::suite(i, name, system, shape))
            .collect()
    }

    /// Writes `suites` (interleaved or one after the other) into a part;
    /// its path.
    fn write(dir: &Path, nextest: bool, suites: Vec<WholeSuite>, interleave: bool) -> PathBuf {
        let mut part = Part::new(dir, header(nextest));
        let ends = fixture::feed_all(&mut part, suites, interleave);
        let end = RunEnd {
            suites: &ends,
            load_failures: &[],
            interrupted: true,
        };
        let written = part.finish(&end).expect("finish");
        assert_eq!(written.len(), 1);
        written[0].clone()
    }

    /// The part holds, after its header, each reported suite's line as the
    /// whole-suite writer wrote it, in the order the suites ended (also
    /// when their datasets came interleaved), then its end; merge reads it
    /// back.
    #[test]
    fn streamed_entries_are_the_whole_suite_entries() {
        for (nextest, interleave) in [(false, false), (true, false), (false, true), (true, true)] {
            let tmp = tempfile::tempdir().expect("temp dir");
            let path = write(tmp.path(), nextest, fixtures(), interleave);
            let text = std::fs::read_to_string(&path).expect("part");
            let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
            let head = serde_json::to_string(&header(nextest)).expect("JSON") + "\n";
            assert_eq!(lines.remove(0), head);
            let end = "{\"end\":{\"interrupted\":true,\"load_failures\":[]}}\n";
            assert_eq!(lines.pop(), Some(end));
            let mut expected: Vec<String> = fixtures()
                .iter()
                .filter(|s| !s.records.is_empty() || !s.response.is_success())
                .map(|s| reference(s, nextest))
                .collect();
            let mut lines: Vec<String> = lines.into_iter().map(str::to_owned).collect();
            if interleave {
                // Suites end in another order then.
                expected.sort();
                lines.sort();
            }
            assert_eq!(
                lines, expected,
                "nextest: {nextest}, interleaved: {interleave}"
            );
            assert!(!text.contains(SECRET));
            let read = read_part(&path).expect("merge reads it");
            assert_eq!(read.suites.len(), 7);
            assert!(read.suites.iter().all(|s| s.response.is_some() == nextest));
            assert_eq!(fixture::files(tmp.path()).len(), 1, "only the part");
        }
    }

    /// What the part holds in memory for a suite in flight does not grow
    /// with it: its lists are spooled.
    #[test]
    fn memory_does_not_grow_with_the_suite() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let shape = Shape {
            datasets: 3000,
            turns: 2,
            repeat: 2,
            checks: true,
            ..Shape::default()
        };
        let suite = fixture::suite(0, "big", None, shape);
        let expected = reference(&suite, true);
        let mut part = Part::new(tmp.path(), header(true));
        let mut held = Vec::new();
        let mut ends = Vec::new();
        for item in fed(suite) {
            let is_dataset = matches!(item, Fed::Dataset(..));
            ends.extend(fixture::feed(&mut part, item).expect("fed"));
            if is_dataset {
                held.push(part.held());
            }
        }
        assert!(held.iter().all(|&h| h <= 5 * (8 << 10)), "{held:?}");
        assert_eq!(part.held(), 0);
        let end = RunEnd {
            suites: &ends,
            load_failures: &[],
            interrupted: false,
        };
        let path = part.finish(&end).expect("finish").remove(0);
        let text = std::fs::read_to_string(path).expect("part");
        assert!(expected.len() > 1 << 20);
        assert_eq!(text.lines().nth(1), Some(expected.trim_end()));
    }
}
