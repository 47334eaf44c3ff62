//! Typed errors of the library, each carrying the context a user needs to act
//! on it: the dataset and field, the file and position, the runner and URL.
//! Secrets never appear in them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

/// A dataset that does not follow Fair-Forge's data model.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("invalid dataset {dataset}: field `{field}`: {message}")]
pub struct DatasetError {
    /// Which dataset: its position or file, and its session id when known.
    pub dataset: String,
    /// The offending field, as a path such as `conversation[2].qa_id`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// A runner that cannot be built from its configuration. Raised before any
/// request is sent.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("runner `{runner}`: {message}")]
pub struct ConfigError {
    /// The runner type, such as `alquimia`.
    pub runner: String,
    /// What is missing or wrong.
    pub message: String,
    /// Where in the `runner:` mapping, when known: keys and (decimal)
    /// sequence indices, such as `["headers", "X-Key"]`; empty for the
    /// mapping as a whole. A suite reports the error at that line and column.
    pub path: Vec<String>,
}

impl ConfigError {
    /// A configuration error of runner `runner`.
    pub fn new(runner: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            runner: runner.into(),
            message: message.into(),
            path: Vec::new(),
        }
    }

    /// The error, at `path` in the `runner:` mapping.
    pub fn at<S: Into<String>>(mut self, path: impl IntoIterator<Item = S>) -> Self {
        self.path = path.into_iter().map(Into::into).collect();
        self
    }
}

/// How a failed runner call may be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The system under test did not accept the turn (an HTTP status of the
    /// runner's `retry_on`, by default 408/409/429/5xx; a refused or reset
    /// connection), or the turn's stream can be read again: retrying is safe.
    Transient,
    /// Retrying will not help (HTTP 400/401, a malformed reply, an empty answer).
    Permanent,
    /// The turn took longer than the suite's per-turn timeout.
    Timeout,
}

/// Why one runner call failed. Its message becomes the batch's
/// `[ERROR] <message>`.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("{message}")]
pub struct RunError {
    /// Whether the call may be retried.
    pub kind: ErrorKind,
    /// A message a person can act on (status, server message, URL without secrets).
    pub message: String,
    /// How long the server asked us to wait (HTTP `Retry-After`).
    pub retry_after: Option<Duration>,
}

impl RunError {
    /// A failure that retrying will not fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        RunError {
            kind: ErrorKind::Permanent,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A failure before the system under test accepted the turn; safe to retry.
    pub fn transient(message: impl Into<String>) -> Self {
        RunError {
            kind: ErrorKind::Transient,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A per-turn timeout.
    pub fn timeout(after: Duration) -> Self {
        RunError {
            kind: ErrorKind::Timeout,
            message: format!("timed out after {}", humanize(after)),
            retry_after: None,
        }
    }

    /// Sets the delay the server asked for.
    pub fn with_retry_after(mut self, delay: Option<Duration>) -> Self {
        self.retry_after = delay;
        self
    }

    /// Whether a retry may send the turn again.
    pub fn is_transient(&self) -> bool {
        self.kind == ErrorKind::Transient
    }
}

/// Formats a duration the way suites write it (`30s`, `250ms`).
pub(crate) fn humanize(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// A position in a source file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        Ok(())
    }
}

/// A suite file that cannot be loaded.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SuiteError {
    /// The file (or a dataset file it names) could not be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid suite: bad YAML, an unknown key, a wrong type,
    /// an unset variable, a duplicate test name...
    #[error("{location}: {message}")]
    Invalid {
        /// Where.
        location: Location,
        /// What was expected.
        message: String,
    },
    /// A dataset in the suite breaks Fair-Forge's data model.
    #[error("{location}: {source}")]
    Dataset {
        /// The suite or dataset file.
        location: Location,
        /// The dataset error.
        #[source]
        source: Box<DatasetError>,
    },
    /// The suite's runner cannot be built.
    #[error("{location}: {source}")]
    Runner {
        /// The suite file, at the key or value at fault (else its `runner:` key).
        location: Location,
        /// The configuration error.
        #[source]
        source: Box<ConfigError>,
    },
    /// A path or pattern matched no suite file.
    #[error("{0}: no suite file found")]
    NotFound(PathBuf),
}

impl SuiteError {
    /// The file at fault and, when known, the line: for CI to link to.
    pub fn file_line(&self) -> (&Path, Option<usize>) {
        match self {
            SuiteError::Io { path, .. } | SuiteError::NotFound(path) => (path, None),
            SuiteError::Invalid { location, .. }
            | SuiteError::Dataset { location, .. }
            | SuiteError::Runner { location, .. } => (&location.file, location.line),
        }
    }
}

/// Failure to write a report.
#[derive(Debug, Error)]
#[error("{path}: cannot write report: {message}")]
pub struct ReportError {
    /// The report file.
    pub path: PathBuf,
    /// What went wrong.
    pub message: String,
}

/// Why `forge merge` could not fold its inputs into one report. Nothing is
/// written when it fails.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum MergeError {
    /// An input directory holds no part.
    #[error("{0}: no forge run here (no parts/run.json or parts/nextest-*/): give the output directory of a `forge run`, `cargo test` or `cargo nextest run`")]
    NoParts(PathBuf),
    /// A part or report cannot be read.
    #[error("{path}: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong (with the line and column of bad JSON).
        message: String,
    },
    /// Two inputs do not come from runs of the same suites.
    #[error("{first} and {second} are not runs of the same suites: {detail}")]
    Mismatch {
        /// One part.
        first: PathBuf,
        /// Another part.
        second: PathBuf,
        /// How they differ.
        detail: String,
    },
    /// A batch is in two inputs.
    #[error("{test} ran in both {first} and {second}: overlapping shards, or the parts of an earlier run left in the same directory (remove them, or give each run its own --out / FORGE_OUT_DIR)")]
    Overlap {
        /// The batch's test name.
        test: String,
        /// One part.
        first: PathBuf,
        /// Another part.
        second: PathBuf,
    },
    /// The shards do not make up one partition.
    #[error("{0}")]
    Shards(String),
    /// Writing the merged reports failed.
    #[error(transparent)]
    Report(#[from] ReportError),
}
