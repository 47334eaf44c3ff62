//! The steps of [`Suite::parse`](super::Suite::parse), each a function, in
//! the order the parse runs them (which is the order their errors are
//! reported in): the name, the runner, the suite's `repeat`, the datasets,
//! their test names, the policy. Errors serde cannot place are located by
//! the first occurrence of their key in the suite text.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use super::env;
use super::files::load_dataset_file;
use super::locate::{self, Part};
use super::model::{BackoffValue, BatchMeta, DatasetEntry, FileEntry, InlineEntry};
use super::model::{RepeatSpec, SuiteFile};
use super::stream::{Layout, Sessions, Streamed};
use super::{test_name, SuiteDataset, DEFAULT_CONCURRENCY, MAX_CONCURRENCY, MAX_RETRIES};
use crate::check::Checks;
use crate::error::{ConfigError, Location, SuiteError};
use crate::judge::{self, JudgeSpec};
use crate::policy::{Backoff, Policy, RateLimit};
use crate::registry::{self, BuildContext};
use crate::runner::Runner;
use crate::schema::Dataset;
use crate::usage::{Budget, Price};

/// The suite file being parsed: its path and text, to locate errors in.
#[derive(Clone, Copy)]
pub(super) struct Source<'a> {
    pub path: &'a Path,
    pub text: &'a str,
}

impl Source<'_> {
    /// The first position of `needle` in the suite.
    pub fn at(self, needle: &str) -> Location {
        locate(self.path, self.text, needle)
    }

    /// An error at the first position of `needle`.
    fn invalid_at(self, needle: &str, message: String) -> SuiteError {
        invalid(self.at(needle), message)
    }

    /// An error at the first `needle` after the first `anchor` (else at
    /// the first `needle`).
    fn invalid_after(self, anchor: &str, needle: &str, message: String) -> SuiteError {
        let after = self
            .text
            .find(anchor)
            .and_then(|start| self.text[start..].find(needle).map(|at| start + at));
        let location = match after {
            Some(offset) => locate_offset(self.path, self.text, Some(offset)),
            None => self.at(needle),
        };
        invalid(location, message)
    }

    /// The position of the node at `path` (`["runners", "1", "name"]`), else
    /// of the closest key enclosing it, else the file's start.
    pub fn at_path(self, path: &[String], part: Part) -> Location {
        let (line, column) = locate::nearest(self.text, path, part).unwrap_or((1, 1));
        Location {
            file: self.path.to_owned(),
            line: Some(line),
            column: Some(column),
        }
    }

    /// The line of a batch: its `qa_id:` key, quoted or not (else `datasets:`).
    fn at_batch(self, qa_id: &str) -> Location {
        [
            format!("qa_id: {qa_id}"),
            format!("qa_id: \"{qa_id}\""),
            format!("qa_id: '{qa_id}'"),
        ]
        .iter()
        .map(|needle| self.at(needle))
        .find(|location| location.line.is_some())
        .unwrap_or_else(|| self.at("datasets:"))
    }

    /// The position of `field` (`conversation[2].qa_id`) of the inline
    /// dataset at entry `entry` of `datasets:` (its `part`), else of the
    /// closest key enclosing it.
    fn at_field(self, entry: usize, field: &str, part: Part) -> Option<Location> {
        let mut path = vec!["datasets".to_owned(), entry.to_string()];
        path.extend(field_path(field));
        let (line, column) = locate::nearest(self.text, &path, part)?;
        Some(Location {
            file: self.path.to_owned(),
            line: Some(line),
            column: Some(column),
        })
    }

    /// The line of batch `batch` of `loaded`: its `qa_id` when its dataset
    /// is written in the suite, else the first `qa_id:` with its id.
    fn at_loaded_batch(self, loaded: &Loaded, batch: usize) -> Location {
        loaded
            .entry
            .and_then(|entry| {
                self.at_field(entry, &format!("conversation[{batch}].qa_id"), Part::Key)
            })
            .unwrap_or_else(|| self.at_batch(&loaded.dataset.conversation[batch].qa_id))
    }

    /// An unset variable, located at its first `${NAME`.
    fn env_error(self, error: &env::EnvError) -> SuiteError {
        self.invalid_at(&format!("${{{}", error.variable()), error.to_string())
    }
}

/// The suite file as serde reads it.
pub(super) fn suite_file(source: Source) -> Result<SuiteFile, SuiteError> {
    serde_yaml::from_str(source.text).map_err(|e| yaml_error(source.path, source.text, e))
}

/// The suite's name: its `name:`, else the file stem. It becomes test names
/// and the report's file name, so it is one safe word.
pub(super) fn suite_name(source: Source, name: Option<String>) -> Result<String, SuiteError> {
    let name = name.unwrap_or_else(|| {
        source
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "suite".to_owned())
    });
    let valid_char = |c: char| c.is_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.starts_with('.') || !name.chars().all(valid_char) {
        return Err(source.invalid_at(
            "name:",
            format!(
                "invalid suite name {name:?}: use letters, digits, `-`, `_` and `.` (not first)"
            ),
        ));
    }
    Ok(name)
}

/// A runner's mapping as JSON (the `runner:` mapping, or an entry of
/// `runners:`, written at `at`), its `${VAR}`s replaced. When `offline`
/// (the runner is never built), a variable that cannot be replaced is not
/// an error: the mapping is kept as written, with the error for whoever
/// builds it.
pub(super) fn runner(
    source: Source,
    at: &[String],
    mapping: &serde_yaml::Mapping,
    offline: bool,
) -> Result<(Value, Option<SuiteError>), SuiteError> {
    let mut runner = serde_json::to_value(mapping).map_err(|e| {
        invalid(
            source.at_path(at, Part::Key),
            format!("invalid `runner`: {e}"),
        )
    })?;
    let written = runner.clone();
    match env::interpolate_runner(&mut runner) {
        Ok(()) => Ok((runner, None)),
        Err(error) if offline => Ok((written, Some(source.env_error(&error)))),
        Err(error) => Err(source.env_error(&error)),
    }
}

/// Why a suite's runner cannot be built, located in the suite: kept for
/// an offline load, which builds no runner.
pub(super) type Unbuildable = (Location, String);

/// The runner built at load, or why it could not be (offline only).
pub(super) type Built = (Option<Arc<dyn Runner>>, Option<Unbuildable>);

/// Builds the suite's runner at load, so a mistake in the `runner:`
/// mapping (an unknown key, a wrong value, an unknown type) is reported
/// once, at its own line and column, before anything runs. `unset` is the
/// variable an offline load left unset (then nothing is built); an offline
/// load keeps a build error for whoever builds the runner instead.
pub(super) fn build_runner(
    source: Source,
    at: &[String],
    runner: &Value,
    unset: Option<SuiteError>,
    offline: bool,
) -> Result<Built, SuiteError> {
    if let Some(unset) = unset {
        return Ok((None, Some(unbuildable(source, at, unset))));
    }
    let context = BuildContext::new(source.path.parent().unwrap_or(Path::new("")));
    match registry::build(runner.clone(), &context) {
        Ok(built) => Ok((Some(built), None)),
        Err(error) => {
            let location = runner_location(source, at, &error);
            if offline {
                let message = SuiteError::Runner {
                    location: location.clone(),
                    source: Box::new(error),
                };
                return Ok((None, Some(unbuildable(source, at, message))));
            }
            Err(SuiteError::Runner {
                location,
                source: Box::new(error),
            })
        }
    }
}

/// A load error of the runner, as kept for later: where and what.
fn unbuildable(source: Source, at: &[String], error: SuiteError) -> Unbuildable {
    match error {
        SuiteError::Invalid { location, message } => (location, message),
        SuiteError::Runner { location, source } => (location, source.to_string()),
        other => (source.at_path(at, Part::Key), other.to_string()),
    }
}

/// Where a runner configuration error is: at the key or value its path
/// names in the runner's mapping at `at` (a key for an unknown or unwanted
/// key), else at the closest enclosing key that exists, else at `at`.
fn runner_location(source: Source, at: &[String], error: &ConfigError) -> Location {
    let key = error.message.contains("unknown key `")
        || error.message.starts_with("takes no configuration");
    let mut path = at.to_vec();
    if error.path.is_empty() {
        // "`headers.X-Key` must be a string": a runner's own check names
        // the key first.
        let named = error
            .message
            .strip_prefix('`')
            .and_then(|m| m.split_once('`'));
        path.extend(named.into_iter().flat_map(|(key, _)| field_path(key)));
    } else {
        path.extend(error.path.iter().cloned());
    }
    let part = if key || path.len() == at.len() {
        Part::Key
    } else {
        Part::Value
    };
    source.at_path(&path, part)
}

/// A field path as errors write it (`conversation[2].qa_id`,
/// `headers.X-Key`) as keys and indices.
fn field_path(field: &str) -> Vec<String> {
    field
        .split(['.', '[', ']'])
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// What the suite gives the datasets that do not say: its `expect` and its
/// `repeat` (with `pass_rate` or `min_passes`).
pub(super) struct Defaults {
    pub expect: Checks,
    pub repeat: RepeatSpec,
}

/// The suite's `repeat` settings, checked on their own; an error is located
/// at the suite-level key it is about.
pub(super) fn suite_repeat(source: Source, repeat: RepeatSpec) -> Result<RepeatSpec, SuiteError> {
    repeat.resolve().map_err(|message| {
        let key = ["min_passes", "pass_rate", "repeat"]
            .into_iter()
            .find(|key| message.contains(&format!("`{key}`")))
            .unwrap_or("repeat");
        source.invalid_at(&format!("{key}:"), message)
    })?;
    Ok(repeat)
}

/// (runs, passes needed) of a dataset, an error located at `needle`.
fn resolve_repeat(
    source: Source,
    repeat: RepeatSpec,
    needle: &str,
) -> Result<(usize, usize), SuiteError> {
    repeat
        .resolve()
        .map_err(|message| source.invalid_at(needle, message))
}

/// A dataset of the suite before its tests are named.
#[derive(Clone)]
pub(super) struct Loaded {
    dataset: Dataset,
    ignored: Vec<bool>,
    expects: Vec<Arc<Checks>>,
    runs: (usize, usize),
    /// Where the dataset is written: its `session_id: ...` or its file.
    anchor: String,
    /// Its entry in `datasets:`, when written there (not in a file).
    entry: Option<usize>,
    /// Its own `judge:` mapping, `${VAR}`s replaced.
    judge: Option<Value>,
    /// Its judge, once resolved.
    judge_spec: Option<Arc<JudgeSpec>>,
    /// The dataset file it was read from (`None`: inline).
    file: Option<PathBuf>,
    /// The hash of that file's text.
    file_hash: Option<u64>,
}

impl Loaded {
    /// The hash of the dataset file's text, for a dataset read from one.
    pub(super) fn file_hash(&self) -> Option<u64> {
        self.file_hash
    }

    /// The dataset file it was read from (`None`: inline), and the dataset.
    pub(super) fn place(&self) -> (Option<&Path>, &Dataset) {
        (self.file.as_deref(), &self.dataset)
    }
}

/// The datasets of `datasets:`, in file order (a file's in its order), and
/// the dataset files named by `file:`. With `stream`, a JSON or JSONL
/// file's datasets are not read here: its entry comes back apart, with the
/// number of datasets before it (see [`super::stream`]), and a proxy among
/// the datasets that stands for it while judges are resolved.
pub(super) fn datasets(
    source: Source,
    entries: Vec<DatasetEntry>,
    defaults: &Defaults,
    stream: bool,
) -> Result<Datasets, SuiteError> {
    let mut datasets = Vec::new();
    let mut files = Vec::new();
    let mut streamed = Vec::new();
    for (index, entry) in entries.into_iter().enumerate() {
        match entry {
            DatasetEntry::Inline(entry) => datasets.push(inline(source, index, entry, defaults)?),
            DatasetEntry::File(entry) => {
                let path = dataset_path(source, &entry.file)?;
                match stream.then(|| Layout::of(&path)).flatten() {
                    Some(layout) => {
                        let at = datasets.len();
                        streamed.push(streaming(source, &path, layout, entry, defaults, at)?);
                    }
                    None => datasets.extend(from_file(source, &path, entry, defaults)?),
                }
                files.push(path);
            }
        }
    }
    Ok((datasets, files, streamed))
}

/// The datasets read at load, the dataset files named, and the `file:`
/// entries read as the run goes.
pub(super) type Datasets = (Vec<Loaded>, Vec<PathBuf>, Vec<Streaming>);

/// A `file:` entry read as the run goes, before its file is checked.
pub(super) struct Streaming {
    /// How many of the suite's other datasets come before it.
    pub at: usize,
    pub entry: Streamed,
    /// What resolves its judge as a dataset's would be (see [`judges`]).
    pub proxy: Loaded,
}

/// What a `file:` entry says of its datasets' batches.
struct FileSettings {
    file: String,
    ignore: bool,
    expect: Arc<Checks>,
    runs: (usize, usize),
    judge: Option<Value>,
}

/// A `file:` entry's settings, over the suite's defaults.
fn file_settings(
    source: Source,
    entry: FileEntry,
    defaults: &Defaults,
) -> Result<FileSettings, SuiteError> {
    let FileEntry {
        file,
        ignore,
        expect,
        repeat,
        judge,
    } = entry;
    Ok(FileSettings {
        judge: judge_value(source, judge.as_ref(), &file)?,
        expect: Arc::new(expect.unwrap_or_default().or(&defaults.expect)),
        runs: resolve_repeat(source, repeat.or(defaults.repeat), &file)?,
        ignore,
        file,
    })
}

/// A `file:` entry of a JSON or JSONL file, to be read as the run goes.
fn streaming(
    source: Source,
    path: &Path,
    layout: Layout,
    entry: FileEntry,
    defaults: &Defaults,
    at: usize,
) -> Result<Streaming, SuiteError> {
    let FileSettings {
        file,
        ignore,
        expect,
        runs,
        judge,
    } = file_settings(source, entry, defaults)?;
    let proxy = Loaded {
        dataset: Dataset::new("", ""),
        ignored: Vec::new(),
        expects: vec![Arc::clone(&expect)],
        runs,
        anchor: file,
        entry: None,
        judge,
        judge_spec: None,
        file: Some(path.to_path_buf()),
        file_hash: None,
    };
    let entry = Streamed {
        path: path.to_path_buf(),
        layout,
        ignore,
        expect,
        runs,
        judge: None,
        datasets: 0,
        batches: 0,
    };
    Ok(Streaming { at, entry, proxy })
}

impl Loaded {
    /// The judge resolved for it.
    pub(super) fn judge_spec(&self) -> Option<Arc<JudgeSpec>> {
        self.judge_spec.clone()
    }

    /// Its session and assistant ids.
    pub(super) fn ids(&self) -> (&str, &str) {
        (&self.dataset.session_id, &self.dataset.assistant_id)
    }
}

/// An inline dataset (entry `index` of `datasets:`), checked, each batch
/// with its `ignore` and checks.
fn inline(
    source: Source,
    index: usize,
    entry: InlineEntry,
    defaults: &Defaults,
) -> Result<Loaded, SuiteError> {
    let InlineEntry {
        dataset,
        ignore,
        expect,
        repeat,
        batches,
        judge,
    } = entry;
    let anchor = format!("session_id: {}", dataset.session_id);
    let judge = judge_value(source, judge.as_ref(), &anchor)?;
    dataset
        .validate(&format!("session {:?}", dataset.session_id))
        .map_err(|source_error| SuiteError::Dataset {
            location: source
                .at_field(index, &source_error.field, Part::Value)
                .unwrap_or_else(|| source.at(&anchor)),
            source: Box::new(source_error),
        })?;
    let dataset_expect = Arc::new(expect.unwrap_or_default().or(&defaults.expect));
    let (ignored, expects) = batches
        .into_iter()
        .map(|meta| batch_settings(meta, ignore, &dataset_expect))
        .unzip();
    Ok(Loaded {
        runs: resolve_repeat(source, repeat.or(defaults.repeat), &anchor)?,
        dataset,
        ignored,
        expects,
        anchor,
        entry: Some(index),
        judge,
        judge_spec: None,
        file: None,
        file_hash: None,
    })
}

/// Whether an inline batch is ignored, and its checks: its own `expect`
/// over its dataset's, or (without one) its dataset's, shared.
fn batch_settings(meta: BatchMeta, ignore: bool, dataset: &Arc<Checks>) -> (bool, Arc<Checks>) {
    let expect = match meta.expect {
        Some(expect) => Arc::new(expect.or(dataset)),
        None => Arc::clone(dataset),
    };
    (meta.ignore || ignore, expect)
}

/// The datasets of a `file:` entry, each batch with the entry's settings.
fn from_file(
    source: Source,
    path: &Path,
    entry: FileEntry,
    defaults: &Defaults,
) -> Result<Vec<Loaded>, SuiteError> {
    let FileSettings {
        file,
        ignore,
        expect,
        runs,
        judge,
    } = file_settings(source, entry, defaults)?;
    let (datasets, hash) = load_dataset_file(path)?;
    Ok(datasets
        .into_iter()
        .map(|dataset| {
            let count = dataset.conversation.len();
            Loaded {
                dataset,
                ignored: vec![ignore; count],
                expects: vec![expect.clone(); count],
                runs,
                anchor: file.clone(),
                entry: None,
                judge: judge.clone(),
                judge_spec: None,
                file: Some(path.to_path_buf()),
                file_hash: Some(hash),
            }
        })
        .collect())
}

/// The path of a `file:` entry, `${VAR}`s replaced, relative to the suite's
/// directory; an error when it is not a file.
fn dataset_path(source: Source, file: &str) -> Result<PathBuf, SuiteError> {
    let base = source.path.parent().unwrap_or(Path::new(""));
    let path = base.join(env::interpolate(file).map_err(|error| source.env_error(&error))?);
    if !path.is_file() {
        return Err(source.invalid_at(file, format!("dataset file {} not found", path.display())));
    }
    Ok(path)
}

/// A `judge:` mapping as JSON, its `${VAR}`s replaced; an error located at
/// the first `judge:` after `anchor`.
pub(super) fn judge_value(
    source: Source,
    mapping: Option<&serde_yaml::Mapping>,
    anchor: &str,
) -> Result<Option<Value>, SuiteError> {
    let Some(mapping) = mapping else {
        return Ok(None);
    };
    let mut value = serde_json::to_value(mapping)
        .map_err(|e| source.invalid_after(anchor, "judge:", format!("invalid `judge`: {e}")))?;
    env::interpolate_runner(&mut value).map_err(|error| source.env_error(&error))?;
    Ok(Some(value))
}

/// Gives each dataset its judge: its own `judge:` over the suite's, key by
/// key; the suite's; or, when the suite names none, the environment's
/// (`FORGE_JUDGE_BASE_URL`) for the datasets whose checks need one. A
/// dataset whose checks need a judge and that has none is an error located
/// at the check.
pub(super) fn judges(
    source: Source,
    suite: Option<Value>,
    datasets: &mut [Loaded],
) -> Result<(), SuiteError> {
    let resolve = |value: Value, anchor: &str| {
        JudgeSpec::resolve(value)
            .map(Arc::new)
            .map_err(|message| source.invalid_after(anchor, "judge:", message))
    };
    let suite_spec = suite.clone().map(|v| resolve(v, "")).transpose()?;
    let mut from_env = None;
    for loaded in datasets.iter_mut() {
        let needs = loaded.expects.iter().find_map(|checks| checks.judged());
        loaded.judge_spec = match (&loaded.judge, &suite_spec, needs) {
            (Some(own), _, _) => {
                let merged = judge::merge(suite.as_ref(), Some(own)).unwrap_or_default();
                Some(resolve(merged, &loaded.anchor)?)
            }
            (None, Some(spec), _) => Some(Arc::clone(spec)),
            (None, None, None) => None,
            (None, None, Some(check)) if JudgeSpec::in_environment() => {
                if from_env.is_none() {
                    let spec = JudgeSpec::resolve(Value::Object(Default::default()))
                        .map_err(|message| {
                            source.invalid_after(&loaded.anchor, &format!("{check}:"), message)
                        })?;
                    from_env = Some(Arc::new(spec));
                }
                from_env.clone()
            }
            (None, None, Some(check)) => {
                return Err(source.invalid_after(
                    &loaded.anchor,
                    &format!("{check}:"),
                    format!(
                        "`{check}` needs a judge, and the suite has none: add `judge: {{base_url: ..., model: ...}}` \
                         to the suite or the dataset, or set {} and {}",
                        judge::BASE_URL_ENV,
                        judge::MODEL_ENV
                    ),
                ))
            }
        };
    }
    Ok(())
}

/// The suite's datasets with their test names, each batch's checks
/// validated against it. Test names are unique, and there is at least one.
pub(super) fn name_tests(
    source: Source,
    suite: &str,
    datasets: Vec<Loaded>,
    streamed: &Sessions,
) -> Result<Vec<SuiteDataset>, SuiteError> {
    let mut sessions = session_counts(&datasets);
    for (id, count) in &streamed.counts {
        *sessions.entry(id.clone()).or_insert(0) += count;
    }
    let mut names = HashSet::new();
    let mut named = Vec::with_capacity(datasets.len());
    for loaded in datasets {
        let dataset = &loaded.dataset;
        // Fair-Forge's best-of datasets share one session_id between
        // several assistants: their tests are named `<session_id>@<assistant_id>`.
        let session = if sessions[&dataset.session_id] > 1 {
            format!("{}@{}", dataset.session_id, dataset.assistant_id)
        } else {
            dataset.session_id.clone()
        };
        let test_names = batch_names(source, suite, &session, &loaded, &mut names)?;
        named.push(loaded.into_suite_dataset(test_names));
    }
    if names.is_empty() && streamed.batches == 0 {
        return Err(source.invalid_at(
            "datasets",
            "the suite has no batches: add datasets with a conversation".to_owned(),
        ));
    }
    Ok(named)
}

/// How many datasets of the suite have each session id.
fn session_counts(datasets: &[Loaded]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for Loaded { dataset, .. } in datasets {
        *counts.entry(dataset.session_id.clone()).or_insert(0) += 1;
    }
    counts
}

/// The test names of a dataset's batches, added to `names` (the suite's so
/// far); an error for a batch whose checks do not fit it or whose name is taken.
fn batch_names(
    source: Source,
    suite: &str,
    session: &str,
    loaded: &Loaded,
    names: &mut HashSet<String>,
) -> Result<Vec<String>, SuiteError> {
    let dataset = &loaded.dataset;
    let mut test_names = Vec::with_capacity(dataset.conversation.len());
    for (index, (batch, expect)) in dataset.conversation.iter().zip(&loaded.expects).enumerate() {
        let test = test_name(suite, session, &batch.qa_id);
        if let Err(message) = expect.validate(batch, loaded.runs.0) {
            return Err(invalid(
                source.at_loaded_batch(loaded, index),
                format!("{test}: {message}"),
            ));
        }
        if !names.insert(test.clone()) {
            return Err(invalid(
                source.at_loaded_batch(loaded, index),
                format!(
                    "duplicate test name {test}: two datasets share session_id {:?} and assistant_id {:?}, or ids differ only in whitespace",
                    dataset.session_id, dataset.assistant_id
                ),
            ));
        }
        test_names.push(test);
    }
    Ok(test_names)
}

impl Loaded {
    fn into_suite_dataset(self, test_names: Vec<String>) -> SuiteDataset {
        SuiteDataset {
            dataset: self.dataset,
            test_names: test_names.into(),
            ignored: self.ignored,
            expects: self.expects.into(),
            runs: self.runs.0,
            min_passes: self.runs.1,
            judge: self.judge_spec,
            locations: Arc::from([]),
        }
    }
}

/// The suite's `concurrency` and its per-turn policy (`timeout`, `retries`,
/// `backoff`, `rate_limit`), checked.
pub(super) fn policy(source: Source, file: &SuiteFile) -> Result<(usize, Policy), SuiteError> {
    let backoff = backoff(source, file.backoff)?;
    check_count(source, file.concurrency, "concurrency", 1, MAX_CONCURRENCY)?;
    let retries = file.retries.map(|r| r as usize);
    check_count(source, retries, "retries", 0, MAX_RETRIES)?;
    if file.timeout.is_some_and(|t| t.0.is_zero()) {
        return Err(source.invalid_at(
            "timeout:",
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
    let concurrency = file.concurrency.unwrap_or(DEFAULT_CONCURRENCY).max(1);
    Ok((concurrency, policy))
}

/// The runner's `price` and the suite's `budget`, checked; a budget needs
/// a price (the runner's or a judge's) to count against. Errors are
/// located at the key.
pub(super) fn cost<'a>(
    source: Source,
    file: &SuiteFile,
    system_price: Option<Price>,
    mut judges: impl Iterator<Item = &'a Arc<JudgeSpec>>,
) -> Result<(Option<Price>, Option<Budget>), SuiteError> {
    let price = file
        .price
        .map(|p| p.check().map_err(|e| at_key(source, "price", e)))
        .transpose()?;
    // A system of `runners:` may have its own (checked when read).
    let price = system_price.or(price);
    let budget = file
        .budget
        .map(|b| b.check().map_err(|e| at_key(source, "budget", e)))
        .transpose()?;
    let judge_priced = judges.any(|j| j.price().is_some());
    if budget.is_some() && price.is_none() && !judge_priced {
        return Err(at_key(
            source,
            "budget",
            "`budget` needs a price to count against: add `price: {input_per_mtok: ..., output_per_mtok: ...}` \
             (USD per million tokens) to the suite for its runner (or to a system of `runners:`), or to its `judge:`"
                .to_owned(),
        ));
    }
    Ok((price, budget))
}

/// An error at the suite's top-level `key:` (not a `judge:`'s).
fn at_key(source: Source, key: &str, message: String) -> SuiteError {
    source.invalid_after(&format!("\n{key}:"), &format!("{key}:"), message)
}

/// `backoff:` over the defaults; `initial` may not be longer than `max`.
fn backoff(source: Source, value: Option<BackoffValue>) -> Result<Backoff, SuiteError> {
    let mut backoff = Backoff::DEFAULT;
    let Some(value) = value else {
        return Ok(backoff);
    };
    if let Some(initial) = value.initial {
        backoff.initial = initial.0;
    }
    if let Some(max) = value.max {
        backoff.max = max.0;
    }
    if backoff.initial > backoff.max {
        return Err(source.invalid_at(
            "backoff:",
            format!(
                "`backoff.initial` ({:?}) is longer than `backoff.max` ({:?})",
                backoff.initial, backoff.max
            ),
        ));
    }
    Ok(backoff)
}

/// A located error when the count `key` is set outside `min..=max`.
fn check_count(
    source: Source,
    value: Option<usize>,
    key: &str,
    min: usize,
    max: usize,
) -> Result<(), SuiteError> {
    match value {
        Some(value) if value < min || value > max => Err(source.invalid_at(
            &format!("{key}:"),
            format!("`{key}` {value} is outside {min}..={max}"),
        )),
        _ => Ok(()),
    }
}

pub(super) fn invalid(location: Location, message: String) -> SuiteError {
    SuiteError::Invalid { location, message }
}

/// The first position of `needle` in `text` (1-based), for errors about
/// values serde does not locate.
fn locate(path: &Path, text: &str, needle: &str) -> Location {
    locate_offset(path, text, text.find(needle))
}

/// The position of byte `offset` of `text` (1-based line and column).
fn locate_offset(path: &Path, text: &str, offset: Option<usize>) -> Location {
    let position = offset.map(|offset| {
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

/// A YAML error at serde's position, the closest valid key suggested for
/// an unknown one, and the plain cause of a syntax error made by hand (a
/// tab, a line indented wrong) first.
pub(super) fn yaml_error(path: &Path, text: &str, error: serde_yaml::Error) -> SuiteError {
    let location = error.location();
    let full = error.to_string();
    let hint = location
        .as_ref()
        .and_then(|l| locate::syntax_hint(text, &full, l.line()));
    let mut message = full;
    if let Some(cut) = message.rfind(" at line ") {
        message.truncate(cut);
    }
    if let Some(hint) = hint {
        let cause = message.split(" at line ").next().unwrap_or_default();
        message = format!("{hint} (YAML: {cause})");
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
