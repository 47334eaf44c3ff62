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
//! `forge run` and `cargo test` write `parts/run.json` beside their
//! `<suite>.json` (replaced by the next run, like them). Under cargo nextest
//! every process writes its own part, with its response inline and a name
//! no other process uses: `parts/nextest-<run id>/<attempt>-<pid>-<ns>.json`,
//! and neither `<suite>.json` nor `junit.xml`.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{create, finish, prepare, Reporter, RunEnd, SuiteReport};
use crate::error::ReportError;
use crate::load::LoadFailure;
use crate::run::{BatchRecord, Origin};
use crate::schema::Response;
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
        }
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

    fn open_file(&self) -> Result<(PathBuf, std::io::BufWriter<std::fs::File>), ReportError> {
        if let Some(parent) = self.path.parent() {
            prepare(parent)?;
        }
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
    fn on_suite(&mut self, suite: &SuiteReport) -> Result<(), ReportError> {
        if !suite.is_reported() {
            return Ok(());
        }
        let inline = self.header.nextest.is_some();
        let entry = EntryRef::Suite(SuitePartRef {
            name: &suite.name,
            system: suite.system.as_deref(),
            origins: &suite.origins,
            sessions: sessions(&suite.response),
            response: inline.then_some(&suite.response),
            records: &suite.records,
        });
        let writer = self.writer()?;
        let written = crate::output::write_redacted(
            &mut *writer,
            &entry,
            &suite.secrets,
            serde_json::ser::CompactFormatter,
        )
        .and_then(|()| writer.write_all(b"\n"));
        written.map_err(|e| self.error(e))
    }

    fn finish(&mut self, end: &RunEnd<'_>) -> Result<Vec<PathBuf>, ReportError> {
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

/// [`Entry`] as it is written (borrowing the suite's report).
#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum EntryRef<'a> {
    Suite(SuitePartRef<'a>),
}

/// [`SuitePart`] as it is written.
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

/// The session id of each answered dataset of `response`.
fn sessions(response: &Response) -> Vec<&str> {
    match response {
        Response::Success(run) => run.datasets.iter().map(|d| d.session_id.as_str()).collect(),
        Response::Failure(_) => Vec::new(),
    }
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
