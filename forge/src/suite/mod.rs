//! Suite files: loading, environment interpolation, dataset files, and the
//! test names of their batches.
//!
//! ```yaml
//! name: geography                      # defaults to the file stem
//! runner:
//!   type: alquimia                     # a built-in or a #[forge_runner] name
//!   base_url: ${ALQUIMIA_BASE_URL}     # ${VAR} and ${VAR:-default}
//!   agent_id: my-agent
//! concurrency: 8                       # sessions in flight at once
//! timeout: 30s                         # per attempt of a turn (default: none)
//! retries: 2                           # transient failures only (default 0)
//! backoff: {initial: 250ms, max: 30s}  # delays between retries (these are the defaults)
//! rate_limit: 20/s                     # attempts per runner, all sessions: 20/s, 600/min, or a number per second
//! datasets:
//!   - session_id: s1
//!     assistant_id: target
//!     conversation:
//!       - qa_id: q1
//!         query: What is the capital of France?
//!   - file: data/more.json             # Fair-Forge JSON (a dataset or a list), JSONL, or YAML
//! ```
//!
//! Resilience keys:
//!
//! - `timeout` bounds each attempt of a turn; a timed-out attempt fails with
//!   `timed out after 30s`.
//! - `retries` re-tries a turn that the system under test did not accept:
//!   an HTTP status of the runner's `retry_on` set (by default 408, 409, 429
//!   and 5xx; 429, 502, 503, 504 for `http`), honouring `Retry-After`
//!   (capped at `backoff.max`), a refused or reset connection, a stream
//!   dropped before its final event. Timeouts are retried by the `alquimia` runner (which re-attaches
//!   to the stream of an accepted turn instead of sending it again) and the
//!   `openai` runner (stateless requests), not by `http` and `command`
//!   (whose turn may have been accepted; their `retry_timeouts: true` opts
//!   in). HTTP 400 / 401, malformed replies and empty answers fail at once.
//! - `backoff` sets the exponential delay between retries: `initial` before
//!   the first retry, doubling up to `max`, with jitter (each delay is
//!   between half and all of its value).
//! - `rate_limit` spaces the attempts (retries included) of all the suite's
//!   sessions evenly: `20/s` starts at most one every 50 ms.

mod env;
mod model;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use crate::check::Checks;
use crate::error::{DatasetError, Location, SuiteError};
use crate::policy::{Backoff, Policy, RateLimit};
use crate::registry::{self, BuildContext};
use crate::runner::Runner;
use crate::schema::{datasets_from_value, Dataset};
use crate::secrets::Secrets;
#[cfg(feature = "serve")]
pub(crate) use model::parse_duration;
pub(crate) use model::DurationValue;
use model::{DatasetEntry, SuiteFile};

/// Sessions run at once when a suite does not say.
pub const DEFAULT_CONCURRENCY: usize = 8;

/// A loaded suite: its runner configuration and its datasets.
#[derive(Clone)]
pub struct Suite {
    /// The suite's name (its `name:`, else the file stem).
    pub name: String,
    /// The suite file.
    pub path: PathBuf,
    /// The `runner:` mapping, `${VAR}`s replaced. Holds secrets: never print it.
    runner: Value,
    runner_line: Option<usize>,
    /// Sessions in flight at once.
    pub concurrency: usize,
    /// Per-turn timeout and retries.
    pub policy: Policy,
    /// The datasets, in file order.
    pub datasets: Vec<SuiteDataset>,
    /// The runner built to learn its secrets, kept for the first run.
    prebuilt: Prebuilt,
    /// The secrets, resolved once.
    secrets: std::sync::OnceLock<Secrets>,
}

/// A runner built ahead of the run (to ask for its [`Runner::secrets`]),
/// handed to the first [`Suite::build_runner`]. A clone of the suite starts
/// without one: two runs never share a runner.
#[derive(Default)]
struct Prebuilt(std::sync::Mutex<Option<Arc<dyn Runner>>>);

impl Clone for Prebuilt {
    fn clone(&self) -> Self {
        Prebuilt::default()
    }
}

impl std::fmt::Debug for Suite {
    /// Shows the runner's type only: its configuration may hold secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Suite")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("runner", &self.runner_type())
            .field("concurrency", &self.concurrency)
            .field("policy", &self.policy)
            .field("datasets", &self.datasets)
            .finish()
    }
}

/// A dataset of a suite, with what the suite says about each of its batches.
#[derive(Debug, Clone)]
pub struct SuiteDataset {
    /// The dataset as Fair-Forge models it.
    pub dataset: Dataset,
    /// One test name per batch: `<suite>::<session_id>::<qa_id>`.
    pub test_names: Arc<[String]>,
    /// Whether each batch is ignored (`ignore: true` on it or its dataset).
    pub ignored: Vec<bool>,
    /// Each batch's checks: its own `expect`, then its dataset's, then the suite's.
    /// Batches without checks of their own share their dataset's.
    pub expects: Arc<[Arc<Checks>]>,
    /// How many times the dataset runs (`repeat`), each run a session of its own.
    pub runs: usize,
    /// Runs of a batch that must pass for its test to pass.
    pub min_passes: usize,
}

struct Loaded {
    dataset: Dataset,
    ignored: Vec<bool>,
    expects: Vec<Arc<Checks>>,
    runs: (usize, usize),
}

impl Suite {
    /// Loads a suite file.
    pub fn load(path: impl AsRef<Path>) -> Result<Suite, SuiteError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| SuiteError::Io {
            path: path.to_owned(),
            source,
        })?;
        let suite = Suite::parse(path, &text)?;
        // Resolved now, so a short credential is reported at load, once.
        suite.secrets();
        Ok(suite)
    }

    /// Parses suite text; `path` names the file in errors and anchors
    /// relative dataset paths.
    pub fn parse(path: &Path, text: &str) -> Result<Suite, SuiteError> {
        let file: SuiteFile = serde_yaml::from_str(text).map_err(|e| yaml_error(path, e))?;
        let at = |needle: &str| locate(path, text, needle);
        // The line of a batch: its `qa_id:` key, quoted or not.
        let at_batch = |qa_id: &str| {
            [
                format!("qa_id: {qa_id}"),
                format!("qa_id: \"{qa_id}\""),
                format!("qa_id: '{qa_id}'"),
            ]
            .iter()
            .map(|needle| locate(path, text, needle))
            .find(|location| location.line.is_some())
            .unwrap_or_else(|| locate(path, text, "datasets:"))
        };
        let name = match file.name.clone() {
            Some(name) => name,
            None => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "suite".to_owned()),
        };
        // The name becomes test names and the report's file name.
        let valid_char = |c: char| c.is_alphanumeric() || matches!(c, '-' | '_' | '.');
        if name.is_empty() || name.starts_with('.') || !name.chars().all(valid_char) {
            return Err(invalid(
                at("name:"),
                format!(
                    "invalid suite name {name:?}: use letters, digits, `-`, `_` and `.` (not first)"
                ),
            ));
        }
        let mut runner = serde_json::to_value(&file.runner)
            .map_err(|e| invalid(at("runner:"), format!("invalid `runner`: {e}")))?;
        if let Err(error) = env::interpolate_runner(&mut runner) {
            return Err(env_error(path, text, &error));
        }
        let base = path.parent().unwrap_or(Path::new("")).to_owned();
        let suite_expect = file.expect.clone().unwrap_or_default();
        let suite_repeat = file.repeat();
        let repeat_at = |spec: model::RepeatSpec, needle: &str| {
            spec.resolve()
                .map_err(|message| invalid(at(needle), message))
        };
        suite_repeat.resolve().map_err(|message| {
            // The suite-level key the message is about.
            let key = ["min_passes", "pass_rate", "repeat"]
                .into_iter()
                .find(|key| message.contains(&format!("`{key}`")))
                .unwrap_or("repeat");
            invalid(at(&format!("{key}:")), message)
        })?;
        let mut datasets: Vec<Loaded> = Vec::new();
        for entry in file.datasets {
            match entry {
                DatasetEntry::Inline {
                    dataset,
                    ignore,
                    expect,
                    repeat,
                    batches,
                } => {
                    let label = format!("session {:?}", dataset.session_id);
                    let anchor = format!("session_id: {}", dataset.session_id);
                    dataset
                        .validate(&label)
                        .map_err(|source| SuiteError::Dataset {
                            location: at(&anchor),
                            source: Box::new(source),
                        })?;
                    let dataset_expect = Arc::new(expect.unwrap_or_default().or(&suite_expect));
                    let (ignored, expects) = batches
                        .into_iter()
                        .map(|meta| {
                            let expect = match meta.expect {
                                Some(e) => Arc::new(e.or(&dataset_expect)),
                                None => Arc::clone(&dataset_expect),
                            };
                            (meta.ignore || ignore, expect)
                        })
                        .unzip();
                    datasets.push(Loaded {
                        runs: repeat_at(repeat.or(suite_repeat), &anchor)?,
                        dataset,
                        ignored,
                        expects,
                    });
                }
                DatasetEntry::File {
                    file,
                    ignore,
                    expect,
                    repeat,
                } => {
                    let file_path = match env::interpolate(&file) {
                        Ok(f) => base.join(f),
                        Err(error) => return Err(env_error(path, text, &error)),
                    };
                    if !file_path.is_file() {
                        return Err(invalid(
                            at(&file),
                            format!("dataset file {} not found", file_path.display()),
                        ));
                    }
                    let expect = Arc::new(expect.unwrap_or_default().or(&suite_expect));
                    let runs = repeat_at(repeat.or(suite_repeat), &file)?;
                    for dataset in load_dataset_file(&file_path)? {
                        let count = dataset.conversation.len();
                        datasets.push(Loaded {
                            dataset,
                            ignored: vec![ignore; count],
                            expects: vec![expect.clone(); count],
                            runs,
                        });
                    }
                }
            }
        }
        // Fair-Forge's best-of datasets share one session_id between several
        // assistants: their tests are named `<session_id>@<assistant_id>`.
        let mut per_session = std::collections::HashMap::new();
        for Loaded { dataset, .. } in &datasets {
            *per_session
                .entry(dataset.session_id.clone())
                .or_insert(0usize) += 1;
        }
        let mut names = HashSet::new();
        let mut suite_datasets = Vec::with_capacity(datasets.len());
        for loaded in datasets {
            let Loaded {
                dataset,
                ignored,
                expects,
                runs,
            } = loaded;
            let session = if per_session[&dataset.session_id] > 1 {
                format!("{}@{}", dataset.session_id, dataset.assistant_id)
            } else {
                dataset.session_id.clone()
            };
            let mut test_names = Vec::with_capacity(dataset.conversation.len());
            for (batch, expect) in dataset.conversation.iter().zip(&expects) {
                let test = test_name(&name, &session, &batch.qa_id);
                if let Err(message) = expect.validate(batch) {
                    return Err(invalid(
                        at_batch(&batch.qa_id),
                        format!("{test}: {message}"),
                    ));
                }
                if !names.insert(test.clone()) {
                    return Err(invalid(
                        at_batch(&batch.qa_id),
                        format!(
                            "duplicate test name {test}: two datasets share session_id {:?} and assistant_id {:?}, or ids differ only in whitespace",
                            dataset.session_id, dataset.assistant_id
                        ),
                    ));
                }
                test_names.push(test);
            }
            suite_datasets.push(SuiteDataset {
                dataset,
                test_names: test_names.into(),
                ignored,
                expects: expects.into(),
                runs: runs.0,
                min_passes: runs.1,
            });
        }
        if names.is_empty() {
            return Err(invalid(
                at("datasets"),
                "the suite has no batches: add datasets with a conversation".to_owned(),
            ));
        }
        let mut backoff = Backoff::DEFAULT;
        if let Some(value) = file.backoff {
            if let Some(initial) = value.initial {
                backoff.initial = initial.0;
            }
            if let Some(max) = value.max {
                backoff.max = max.0;
            }
            if backoff.initial > backoff.max {
                return Err(invalid(
                    at("backoff:"),
                    format!(
                        "`backoff.initial` ({:?}) is longer than `backoff.max` ({:?})",
                        backoff.initial, backoff.max
                    ),
                ));
            }
        }
        check_count(file.concurrency, "concurrency", 1, MAX_CONCURRENCY, &at)?;
        check_count(
            file.retries.map(|r| r as usize),
            "retries",
            0,
            MAX_RETRIES,
            &at,
        )?;
        if file.timeout.is_some_and(|t| t.0.is_zero()) {
            return Err(invalid(
                at("timeout:"),
                "`timeout` must be more than 0 (leave it out for none)".to_owned(),
            ));
        }
        let policy = Policy {
            timeout: file.timeout.map(|t| t.0),
            retries: file.retries.unwrap_or(0),
            backoff,
            rate_limit: file
                .rate_limit
                .and_then(|rate| RateLimit::new(rate.count, rate.period)),
        };
        Ok(Suite {
            name,
            path: path.to_owned(),
            runner_line: at("runner:").line,
            runner,
            concurrency: file.concurrency.unwrap_or(DEFAULT_CONCURRENCY).max(1),
            policy,
            datasets: suite_datasets,
            prebuilt: Prebuilt::default(),
            secrets: std::sync::OnceLock::new(),
        })
    }

    /// The runner type named by the suite.
    pub fn runner_type(&self) -> &str {
        self.runner
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("?")
    }

    /// Builds the suite's runner (or hands over the one [`secrets`](Self::secrets)
    /// built). No request is sent.
    pub fn build_runner(&self) -> Result<Arc<dyn Runner>, SuiteError> {
        let prebuilt = self
            .prebuilt
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(runner) = prebuilt {
            return Ok(runner);
        }
        let context = BuildContext::new(self.path.parent().unwrap_or(Path::new("")));
        registry::build(self.runner.clone(), &context).map_err(|source| SuiteError::Runner {
            location: Location {
                file: self.path.clone(),
                line: self.runner_line,
                column: None,
            },
            source,
        })
    }

    /// Every secret of the suite, to keep out of every output: what its
    /// runner says it sends ([`Runner::secrets`]: keys from the environment
    /// included) and the secrets of the `runner:` mapping (values under
    /// secret-looking keys, URL user info and secret query values, `redact:
    /// [..]`). Resolved once (the runner is built for it, and kept for the
    /// run); the first call warns on stderr when a credential is shorter
    /// than 8 characters.
    pub fn secrets(&self) -> Secrets {
        self.secrets
            .get_or_init(|| {
                let mut values = collect_secrets(&self.runner);
                if let Ok(runner) = self.build_runner() {
                    values.extend(runner.secrets());
                    *self.prebuilt.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(runner);
                }
                let secrets = Secrets::new(values);
                let short = secrets.short_count();
                if short > 0 {
                    eprintln!(
                        "forge: warning: {}: {short} credential(s) of the runner shorter than {} characters; \
                         they are redacted from every output, which may also rewrite ordinary words containing them",
                        self.path.display(),
                        crate::secrets::SHORT_SECRET_CHARS
                    );
                }
                secrets
            })
            .clone()
    }

    /// Number of batches in the suite.
    pub fn batch_count(&self) -> usize {
        self.datasets
            .iter()
            .map(|d| d.dataset.conversation.len())
            .sum()
    }
}

/// The secrets of a `runner:` mapping: see [`crate::secrets::config_secrets`].
fn collect_secrets(runner: &Value) -> Vec<String> {
    crate::secrets::config_secrets(runner)
}

/// The test name of a batch: `<suite>::<session_id>::<qa_id>` (the session
/// written `<session_id>@<assistant_id>` when several datasets of the suite
/// share it), whitespace
/// replaced by `_` so names stay one word.
pub fn test_name(suite: &str, session_id: &str, qa_id: &str) -> String {
    let clean = |s: &str| s.replace(char::is_whitespace, "_");
    format!("{suite}::{}::{}", clean(session_id), clean(qa_id))
}

/// Reads datasets from a file: Fair-Forge JSON (one dataset or a list),
/// JSONL (one dataset per line), or YAML (one dataset or a list).
pub fn load_dataset_file(path: &Path) -> Result<Vec<Dataset>, SuiteError> {
    let text = std::fs::read_to_string(path).map_err(|source| SuiteError::Io {
        path: path.to_owned(),
        source,
    })?;
    let label = path.display().to_string();
    let dataset_error = |source| SuiteError::Dataset {
        location: Location {
            file: path.to_owned(),
            line: None,
            column: None,
        },
        source: Box::new(source),
    };
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match extension.as_str() {
        "jsonl" | "ndjson" => {
            let mut datasets = Vec::new();
            for (index, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let value: Value = serde_json::from_str(line).map_err(|e| SuiteError::Invalid {
                    location: Location {
                        file: path.to_owned(),
                        line: Some(index + 1),
                        column: Some(e.column()),
                    },
                    message: format!("invalid JSON: {e}"),
                })?;
                let dataset = Dataset::from_value(&format!("{label}:{}", index + 1), &value)
                    .map_err(|source| SuiteError::Dataset {
                        location: Location {
                            file: path.to_owned(),
                            line: Some(index + 1),
                            column: None,
                        },
                        source: Box::new(source),
                    })?;
                datasets.push(dataset);
            }
            Ok(datasets)
        }
        "yaml" | "yml" => {
            let value: Value = serde_yaml::from_str(&text).map_err(|e| yaml_error(path, e))?;
            datasets_from_value(&label, &value).map_err(dataset_error)
        }
        _ => load_json_datasets(path, &label, &text),
    }
}

/// A Fair-Forge JSON file (one dataset or a list), deserialised straight
/// into datasets: no intermediate JSON tree, so large files stay cheap.
fn load_json_datasets(path: &Path, label: &str, text: &str) -> Result<Vec<Dataset>, SuiteError> {
    let location = |line: usize, column: usize| Location {
        file: path.to_owned(),
        line: Some(line),
        column: Some(column),
    };
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let parsed = if text.trim_start().starts_with('[') {
        serde_path_to_error::deserialize::<_, Vec<Dataset>>(&mut deserializer)
    } else {
        serde_path_to_error::deserialize::<_, Dataset>(&mut deserializer).map(|d| vec![d])
    };
    let datasets = parsed.map_err(|err| {
        let path_text = err.path().to_string();
        let inner = err.into_inner();
        let at = location(inner.line(), inner.column());
        if inner.is_data() {
            let message = inner.to_string();
            let message = message
                .rsplit_once(" at line ")
                .map_or(message.as_str(), |(m, _)| m)
                .to_owned();
            let field = match crate::schema::missing_field(&message) {
                Some(missing) if path_text == "." => missing.to_owned(),
                Some(missing) => format!("{path_text}.{missing}"),
                None => path_text,
            };
            SuiteError::Dataset {
                location: at,
                source: Box::new(DatasetError {
                    dataset: label.to_owned(),
                    field,
                    message,
                }),
            }
        } else {
            SuiteError::Invalid {
                location: at,
                message: format!("invalid JSON: {inner}"),
            }
        }
    })?;
    deserializer.end().map_err(|e| SuiteError::Invalid {
        location: location(e.line(), e.column()),
        message: format!("invalid JSON: {e}"),
    })?;
    for (index, dataset) in datasets.iter().enumerate() {
        dataset
            .validate(&format!("{label}[{index}]"))
            .map_err(|source| SuiteError::Dataset {
                location: Location {
                    file: path.to_owned(),
                    line: None,
                    column: None,
                },
                source: Box::new(source),
            })?;
    }
    Ok(datasets)
}

/// The suite files directly inside `dir` (`*.yaml`, `*.yml`), sorted. A
/// directory with none is an error, so a wrong path never passes silently.
pub fn discover(dir: &Path) -> Result<Vec<PathBuf>, SuiteError> {
    let entries = std::fs::read_dir(dir).map_err(|source| SuiteError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(SuiteError::NotFound(dir.to_owned()));
    }
    Ok(files)
}

/// The most sessions a suite may run at once (`concurrency`).
pub const MAX_CONCURRENCY: usize = 10_000;
/// The most retries of one turn (`retries`).
pub const MAX_RETRIES: usize = 100;

/// A located error when the count `key` is set outside `min..=max`.
fn check_count(
    value: Option<usize>,
    key: &str,
    min: usize,
    max: usize,
    at: &dyn Fn(&str) -> Location,
) -> Result<(), SuiteError> {
    match value {
        Some(value) if value < min || value > max => Err(invalid(
            at(&format!("{key}:")),
            format!("`{key}` {value} is outside {min}..={max}"),
        )),
        _ => Ok(()),
    }
}

fn invalid(location: Location, message: String) -> SuiteError {
    SuiteError::Invalid { location, message }
}

fn env_error(path: &Path, text: &str, error: &env::EnvError) -> SuiteError {
    invalid(
        locate(path, text, &format!("${{{}", error.variable())),
        error.to_string(),
    )
}

/// The first position of `needle` in `text` (1-based), for errors about
/// values serde does not locate.
fn locate(path: &Path, text: &str, needle: &str) -> Location {
    let position = text.find(needle).map(|offset| {
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = offset - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        (line, column)
    });
    Location {
        file: path.to_owned(),
        line: position.map(|p| p.0),
        column: position.map(|p| p.1),
    }
}

fn yaml_error(path: &Path, error: serde_yaml::Error) -> SuiteError {
    let location = error.location();
    let mut message = error.to_string();
    if let Some(cut) = message.rfind(" at line ") {
        message.truncate(cut);
    }
    // "datasets[0].conversation[1]: unknown field `x`, expected ..." ->
    // keep the path, add the closest valid key.
    let message = match message.split_once(": unknown field") {
        Some((at, rest)) => format!(
            "{at}: {}",
            registry::with_suggestion(&format!("unknown field{rest}"))
        ),
        None if message.starts_with("unknown field") => registry::with_suggestion(&message),
        None => message,
    };
    invalid(
        Location {
            file: path.to_owned(),
            line: location.as_ref().map(|l| l.line()),
            column: location.as_ref().map(|l| l.column()),
        },
        message,
    )
}
