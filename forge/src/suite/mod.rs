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
//! price: {input_per_mtok: 0.15, output_per_mtok: 0.6}   # the runner's USD per million tokens (optional)
//! budget: {max_cost_usd: 5}            # stop sending new turns once spent (needs a price)
//! datasets:
//!   - session_id: s1
//!     assistant_id: target
//!     conversation:
//!       - qa_id: q1
//!         query: What is the capital of France?
//!   - file: data/more.json             # Fair-Forge JSON (a dataset or a list), JSONL, or YAML
//! ```
//!
//! `runners:` (a list of named runner mappings) instead of `runner:` runs
//! every dataset against several systems side by side: see [`systems`].
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
mod files;
pub(crate) mod json_schema;
mod locate;
mod model;
mod parse;
mod places;
mod stream;
pub mod systems;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use crate::check::Checks;
use crate::error::{Location, SuiteError};
use crate::judge::JudgeSpec;
use crate::policy::Policy;
use crate::registry::{self, BuildContext};
use crate::runner::Runner;
use crate::schema::Dataset;
use crate::secrets::Secrets;
use crate::usage::{Budget, Price};
pub(crate) use env::interpolate_runner;
use parse::Source;
pub use places::BatchLocation;
use stream::{Naming, Sessions, Streamed};

/// How suites are loaded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// The run builds no runner (an offline replay, `--replay` without
    /// `--record`): a `${VAR}` of the `runner:` mapping that is unset is not
    /// a load error (the runner would fail to build with it), nor is a
    /// runner that cannot be built (a type only a test binary has), so a
    /// suite replays on a machine without the agent's URL and keys.
    pub offline: bool,
    /// The datasets of JSON and JSONL files (`file:` entries) are checked
    /// at load and read again, one at a time, as the run reaches them,
    /// instead of being held in [`Suite::datasets`] (`forge run`: a suite
    /// of any size runs in constant memory). Inline datasets and YAML
    /// files are read whole either way.
    pub stream: bool,
}

/// Sessions run at once when a suite does not say.
pub const DEFAULT_CONCURRENCY: usize = 8;

/// A loaded suite: its runner configuration and its datasets. A suite
/// file with several systems (`runners:`, see [`systems`]) loads as one
/// `Suite` per system, each with its [`system`](Suite::system) set.
#[derive(Clone)]
pub struct Suite {
    /// The suite's name (its `name:`, else the file stem).
    pub name: String,
    /// The named system this is, for a suite file with `runners:` (`None`
    /// for one with `runner:`).
    pub system: Option<String>,
    /// The suite file.
    pub path: PathBuf,
    /// The `runner:` mapping, `${VAR}`s replaced. Holds secrets: never print it.
    runner: Value,
    /// The fingerprint of the `runner:` mapping as written (`${VAR}`s
    /// unexpanded): what a cassette compares.
    runner_config: String,
    runner_line: Option<usize>,
    /// Why the runner cannot be built, where: a variable an offline load
    /// left unset, or a build error it kept (see [`LoadOptions::offline`]).
    runner_error: Option<parse::Unbuildable>,
    /// Sessions in flight at once.
    pub concurrency: usize,
    /// Per-turn timeout and retries.
    pub policy: Policy,
    /// What the runner's tokens cost (`price:`), when the suite says.
    pub price: Option<Price>,
    /// What a run may spend (`budget:`): no new turn is sent once spent.
    pub budget: Option<Budget>,
    /// The datasets, in file order.
    pub datasets: Vec<SuiteDataset>,
    /// Its `file:` entries read as the run goes ([`LoadOptions::stream`]),
    /// each after the number of `datasets` that come before it.
    streams: Vec<(usize, Arc<Streamed>)>,
    /// How the streamed datasets' tests are named.
    naming: Naming,
    /// The dataset files its `file:` entries name.
    pub(crate) dataset_files: Vec<PathBuf>,
    /// Its version, as `forge merge` compares shards: see [`fingerprint`].
    pub fingerprint: String,
    /// The runner built to learn its secrets, kept for the first run.
    prebuilt: Prebuilt,
    /// The `runner:` mapping as written (`${VAR}`s unexpanded), what
    /// `forge run --lambda` sends; and, once [`Suite::run_remotely`], the
    /// sessions its run keeps in flight instead of `concurrency`.
    remote: (Value, Option<usize>),
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
            .field("system", &self.system)
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
    /// One test name per batch: `<suite>::<session_id>::<qa_id>`
    /// (`<suite>::<system>::<session_id>::<qa_id>` for a system of `runners:`).
    pub test_names: Arc<[String]>,
    /// Whether each batch is ignored (`ignore: true` on it or its dataset).
    pub ignored: Vec<bool>,
    /// Each batch's checks: its own `expect`, then its dataset's, then the suite's.
    /// Batches without checks of their own share their dataset's.
    pub(crate) expects: Arc<[Arc<Checks>]>,
    /// How many times the dataset runs (`repeat`), each run a session of its own.
    pub runs: usize,
    /// Runs of a batch that must pass for its test to pass.
    pub min_passes: usize,
    /// The judge its judged checks ask (see [`crate::judge`]).
    pub(crate) judge: Option<Arc<JudgeSpec>>,
    /// Where each batch is written (its `qa_id`'s line in the suite or its
    /// dataset file), for CI to link a failure to.
    pub locations: Arc<[BatchLocation]>,
}

impl Suite {
    /// Loads a suite file with one system (`runner:`, or `runners:` listing
    /// one); a file with several is an error here: see [`Suite::load_all`].
    pub fn load(path: impl AsRef<Path>) -> Result<Suite, SuiteError> {
        Suite::load_with(path, &LoadOptions::default())
    }

    /// Loads a suite file with one system, with `options`.
    pub fn load_with(path: impl AsRef<Path>, options: &LoadOptions) -> Result<Suite, SuiteError> {
        let path = path.as_ref();
        let text = files::read_text(path)?;
        one(path, &text, Suite::load_all_parsed(path, &text, options)?)
    }

    /// Loads a suite file: one `Suite` per system, in the order of its
    /// `runners:` (one for a `runner:`).
    pub fn load_all(path: impl AsRef<Path>) -> Result<Vec<Suite>, SuiteError> {
        Suite::load_all_with(path, &LoadOptions::default())
    }

    /// Loads a suite file, one `Suite` per system, with `options`.
    pub fn load_all_with(
        path: impl AsRef<Path>,
        options: &LoadOptions,
    ) -> Result<Vec<Suite>, SuiteError> {
        let path = path.as_ref();
        let text = files::read_text(path)?;
        Suite::load_all_parsed(path, &text, options)
    }

    /// Parses and resolves the secrets (so a short credential is reported
    /// at load, once): every system's are redacted from every system's
    /// reports (each runner still sends only its own).
    fn load_all_parsed(
        path: &Path,
        text: &str,
        options: &LoadOptions,
    ) -> Result<Vec<Suite>, SuiteError> {
        let mut suites = Suite::parse_all_with(path, text, options)?;
        if suites.len() > 1 {
            let all = suites
                .iter()
                .fold(Secrets::default(), |all, suite| all.union(&suite.secrets()));
            for suite in &mut suites {
                suite.secrets = std::sync::OnceLock::from(all.clone());
            }
        }
        for suite in &suites {
            suite.secrets();
        }
        Ok(suites)
    }

    /// Parses suite text with one system and builds its runner (sending
    /// nothing), so a mistake in its `runner:` mapping is an error here;
    /// `path` names the file in errors and anchors relative dataset paths.
    /// The steps run in this order, and the first error stops the parse.
    pub fn parse(path: &Path, text: &str) -> Result<Suite, SuiteError> {
        Suite::parse_with(path, text, &LoadOptions::default())
    }

    /// Parses suite text with one system, with `options`.
    pub fn parse_with(path: &Path, text: &str, options: &LoadOptions) -> Result<Suite, SuiteError> {
        one(path, text, Suite::parse_all_with(path, text, options)?)
    }

    /// Parses suite text: one `Suite` per system (see [`systems`]), each
    /// runner built (sending nothing).
    pub fn parse_all_with(
        path: &Path,
        text: &str,
        options: &LoadOptions,
    ) -> Result<Vec<Suite>, SuiteError> {
        let source = Source { path, text };
        let mut file = parse::suite_file(source)?;
        let name = parse::suite_name(source, file.name.take())?;
        let systems = systems::systems(source, file.runner.take(), file.runners.take())?;
        let runners = systems
            .iter()
            .map(|system| SystemRunner::new(source, system, options.offline))
            .collect::<Result<Vec<_>, _>>()?;
        let defaults = parse::Defaults {
            expect: file.expect.take().unwrap_or_default(),
            repeat: parse::suite_repeat(source, file.repeat())?,
        };
        let entries = std::mem::take(&mut file.datasets);
        let (mut loaded, dataset_files, mut streaming) =
            parse::datasets(source, entries, &defaults, options.stream)?;
        let suite_judge = parse::judge_value(source, file.judge.as_ref(), "")?;
        let count = loaded.len();
        loaded.extend(streaming.iter().map(|s| s.proxy.clone()));
        parse::judges(source, suite_judge, &mut loaded)?;
        for (streaming, proxy) in streaming.iter_mut().zip(loaded.split_off(count)) {
            streaming.entry.judge = proxy.judge_spec();
        }
        let (sessions, stream_hashes) = check_streamed(&loaded, &mut streaming)?;
        let places: Vec<Arc<[BatchLocation]>> =
            places::batches(path, text, loaded.iter().map(parse::Loaded::place))
                .into_iter()
                .map(Arc::from)
                .collect();
        let mut file_hashes = file_hashes(&loaded, &stream_hashes);
        // A file's datasets share its hash: once per `file:` entry.
        file_hashes.dedup();
        let fingerprint = fingerprint(text, file_hashes);
        let shared = Arc::new(sessions.shared(loaded.iter().map(|l| l.ids().0)));
        let named = name_systems(source, &name, &systems, loaded, &places, &sessions)?;
        let streams: Vec<(usize, Arc<Streamed>)> = streaming
            .into_iter()
            .map(|s| (s.at, Arc::new(s.entry)))
            .collect();
        let (concurrency, policy) = parse::policy(source, &file)?;
        let mut suites = Vec::with_capacity(systems.len());
        for ((system, runner), datasets) in systems.into_iter().zip(runners).zip(named) {
            let judges = datasets.iter().filter_map(|d| d.judge.as_ref());
            let judges = judges.chain(streams.iter().filter_map(|(_, s)| s.judge.as_ref()));
            let (price, budget) = parse::cost(source, &file, system.price, judges)?;
            let naming = Naming {
                prefix: match &system.name {
                    Some(system) => format!("{name}::{system}"),
                    None => name.clone(),
                },
                shared: Arc::clone(&shared),
            };
            // What `forge run --lambda` sends: the mapping, `${VAR}`s unexpanded.
            let written = serde_json::to_value(&system.mapping).unwrap_or_default();
            suites.push(Suite {
                fingerprint: fingerprint.clone(),
                name: name.clone(),
                system: system.name,
                path: path.to_owned(),
                runner_line: runner.line,
                runner_error: runner.error,
                runner_config: runner.config,
                runner: runner.value,
                concurrency,
                policy: policy.clone(),
                price,
                budget,
                datasets,
                streams: streams.clone(),
                naming,
                dataset_files: dataset_files.clone(),
                prebuilt: Prebuilt(std::sync::Mutex::new(runner.built)),
                remote: (written, None),
                secrets: std::sync::OnceLock::new(),
            });
        }
        Ok(suites)
    }

    /// The name of its reports: `<suite>`, or `<suite>.<system>` for a
    /// system of `runners:` (`<name>.json`, `<name>.cassette.json`).
    pub fn report_name(&self) -> String {
        report_name(&self.name, self.system.as_deref())
    }

    /// The runner, as a cassette knows it: its type and the fingerprint of
    /// its mapping as written.
    pub(crate) fn runner_key(&self) -> crate::cassette::RunnerKey {
        crate::cassette::RunnerKey {
            kind: self.runner_type().to_owned(),
            config: self.runner_config.clone(),
        }
    }

    /// The runner type named by the suite.
    pub fn runner_type(&self) -> &str {
        self.runner
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("?")
    }

    /// The `runner:` mapping as written: `${VAR}`s unexpanded (literal
    /// values, secrets the suite wrote in clear included).
    pub fn runner_as_written(&self) -> &Value {
        &self.remote.0
    }

    /// Runs the suite's sessions with `runner` instead of its own (which is
    /// not built), `sessions` of them in flight at once (its judges keep
    /// `concurrency`): how `forge run --lambda` hands them to the function.
    pub fn run_remotely(&mut self, runner: Arc<dyn Runner>, sessions: usize) {
        // Resolved first, with the suite's own runner when it could be built.
        let _ = self.secrets();
        self.runner_error = None;
        self.remote.1 = Some(sessions.max(1));
        *self.prebuilt.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(runner);
    }

    /// Sessions its run keeps in flight: `concurrency`, unless it runs
    /// remotely.
    pub(crate) fn sessions_in_flight(&self) -> usize {
        self.remote.1.unwrap_or(self.concurrency)
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
        if let Some((location, message)) = &self.runner_error {
            return Err(SuiteError::Invalid {
                location: location.clone(),
                message: message.clone(),
            });
        }
        let context = BuildContext::new(self.path.parent().unwrap_or(Path::new("")));
        registry::build(self.runner.clone(), &context).map_err(|source| SuiteError::Runner {
            location: Location {
                file: self.path.clone(),
                line: self.runner_line,
                column: None,
            },
            source: Box::new(source),
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
                values.extend(self.datasets.iter().flat_map(|d| d.judge.iter()).flat_map(|j| j.secrets()));
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
        let eager: usize = self
            .datasets
            .iter()
            .map(|d| d.dataset.conversation.len())
            .sum();
        eager + self.streams.iter().map(|(_, s)| s.batches).sum::<usize>()
    }

    /// Number of its batches that are ignored (`ignore: true`), from the
    /// load's counts.
    pub fn ignored_count(&self) -> usize {
        let eager = self
            .datasets
            .iter()
            .flat_map(|d| &d.ignored)
            .filter(|i| **i)
            .count();
        let streamed = self.streams.iter().filter(|(_, s)| s.ignore);
        eager + streamed.map(|(_, s)| s.batches).sum::<usize>()
    }

    /// The judges its datasets ask, each once.
    pub(crate) fn judge_specs(&self) -> Vec<Arc<JudgeSpec>> {
        let eager = self.datasets.iter().filter_map(|d| d.judge.as_ref());
        let streamed = self.streams.iter().filter_map(|(_, s)| s.judge.as_ref());
        let mut specs: Vec<Arc<JudgeSpec>> = Vec::new();
        for spec in eager.chain(streamed) {
            if !specs.iter().any(|s| Arc::ptr_eq(s, spec)) {
                specs.push(Arc::clone(spec));
            }
        }
        specs
    }

    /// Number of datasets in the suite.
    pub fn dataset_count(&self) -> usize {
        self.datasets.len() + self.streams.iter().map(|(_, s)| s.datasets).sum::<usize>()
    }

    /// Calls `f` with each dataset's index and content, in order (the
    /// streamed ones read from their files, one at a time); an error when
    /// a file can no longer be read as it was at load.
    pub fn for_each_dataset(
        &self,
        mut f: impl FnMut(usize, &SuiteDataset),
    ) -> Result<(), SuiteError> {
        let mut d = 0;
        let mut streams = self.streams.iter().peekable();
        for at in 0..=self.datasets.len() {
            while let Some((_, stream)) = streams.next_if(|(pos, _)| *pos == at) {
                for data in stream.read(self.naming.clone()) {
                    f(d, &data?);
                    d += 1;
                }
            }
            if let Some(data) = self.datasets.get(at) {
                f(d, data);
                d += 1;
            }
        }
        Ok(())
    }

    /// The suite's datasets, moved out in order, for a run: the suite
    /// keeps none of them (the streamed ones are read as they are taken).
    pub(crate) fn take_datasets(
        &mut self,
    ) -> Box<dyn Iterator<Item = Result<SuiteDataset, SuiteError>> + Send> {
        type Part = Box<dyn Iterator<Item = Result<SuiteDataset, SuiteError>> + Send>;
        let mut eager = std::mem::take(&mut self.datasets).into_iter();
        let mut parts: Vec<Part> = Vec::new();
        let mut taken = 0;
        for (at, stream) in std::mem::take(&mut self.streams) {
            let before: Vec<SuiteDataset> = eager.by_ref().take(at - taken).collect();
            taken = at;
            parts.push(Box::new(before.into_iter().map(Ok)));
            parts.push(stream.read(self.naming.clone()));
        }
        parts.push(Box::new(eager.map(Ok)));
        Box::new(parts.into_iter().flatten())
    }
}

/// Checks the suite's streamed files (their sessions counted after the
/// other datasets'): the sessions, and each file's position and hash.
fn check_streamed(
    loaded: &[parse::Loaded],
    streaming: &mut [parse::Streaming],
) -> Result<(Sessions, Vec<(usize, u64)>), SuiteError> {
    let mut sessions = Sessions::default();
    for dataset in loaded {
        let (session, assistant) = dataset.ids();
        sessions
            .pairs
            .insert((session.to_owned(), assistant.to_owned()));
    }
    let mut hashes = Vec::with_capacity(streaming.len());
    for streaming in streaming {
        let hash = streaming.entry.check(&mut sessions)?;
        if streaming.entry.datasets > 0 {
            hashes.push((streaming.at, hash));
        }
    }
    Ok((sessions, hashes))
}

/// The hashes of the dataset files the suite reads, in the order of its
/// datasets (a file's once per entry that has datasets).
fn file_hashes(loaded: &[parse::Loaded], streamed: &[(usize, u64)]) -> Vec<u64> {
    let mut hashes = Vec::new();
    let mut streamed = streamed.iter().peekable();
    for (at, dataset) in loaded.iter().enumerate() {
        while let Some((_, hash)) = streamed.next_if(|(pos, _)| *pos == at) {
            hashes.push(*hash);
        }
        hashes.extend(dataset.file_hash());
    }
    hashes.extend(streamed.map(|(_, hash)| *hash));
    hashes
}

/// The one suite of a file with one system; an error at `runners:` for a
/// file with several.
fn one(path: &Path, text: &str, mut suites: Vec<Suite>) -> Result<Suite, SuiteError> {
    match suites.len() {
        1 => Ok(suites.remove(0)),
        count => Err(parse::invalid(
            Source { path, text }.at_path(&["runners".to_owned()], locate::Part::Key),
            format!(
                "the suite compares {count} systems (`runners:`): load it with `Suite::load_all` or `forge::load::load`"
            ),
        )),
    }
}

/// A system's runner, read and built at load.
struct SystemRunner {
    value: Value,
    config: String,
    line: Option<usize>,
    error: Option<parse::Unbuildable>,
    built: Option<Arc<dyn Runner>>,
}

impl SystemRunner {
    fn new(source: Source, system: &systems::System, offline: bool) -> Result<Self, SuiteError> {
        let config = crate::cassette::fingerprint(&system.mapping);
        let (value, unset) = parse::runner(source, &system.at, &system.mapping, offline)?;
        let (built, error) = parse::build_runner(source, &system.at, &value, unset, offline)?;
        Ok(SystemRunner {
            value,
            config,
            line: source.at_path(&system.at, locate::Part::Key).line,
            error,
            built,
        })
    }
}

/// Each system's datasets, their tests named `<suite>::<system>::...`
/// (`<suite>::...` for a `runner:`), with their places.
fn name_systems(
    source: Source,
    name: &str,
    systems: &[systems::System],
    mut loaded: Vec<parse::Loaded>,
    places: &[Arc<[BatchLocation]>],
    streamed: &Sessions,
) -> Result<Vec<Vec<SuiteDataset>>, SuiteError> {
    let mut named = Vec::with_capacity(systems.len());
    for (index, system) in systems.iter().enumerate() {
        let prefix = match &system.name {
            Some(system) => format!("{name}::{system}"),
            None => name.to_owned(),
        };
        // The last system takes the datasets; the others a copy each.
        let datasets = match index + 1 == systems.len() {
            true => std::mem::take(&mut loaded),
            false => loaded.clone(),
        };
        let mut datasets = parse::name_tests(source, &prefix, datasets, streamed)?;
        for (dataset, places) in datasets.iter_mut().zip(places) {
            dataset.locations = Arc::clone(places);
        }
        named.push(datasets);
    }
    Ok(named)
}

/// The name of a suite's reports: `<suite>`, or `<suite>.<system>`.
pub fn report_name(suite: &str, system: Option<&str>) -> String {
    match system {
        Some(system) => format!("{suite}.{system}"),
        None => suite.to_owned(),
    }
}

/// The secrets of a `runner:` mapping: see [`crate::secrets::config_secrets`].
fn collect_secrets(runner: &Value) -> Vec<String> {
    crate::secrets::config_secrets(runner)
}

/// A suite's version: 16 hex digits of the 64-bit FNV-1a hash of its file
/// without the `runner:` mapping or `runners:` list (as written, `${VAR}`s unexpanded: the
/// system under test and its credentials are not part of it), followed by
/// the hashes of the dataset files it reads, in order (so a changed dataset
/// file changes it too; their texts are hashed as they are read, once).
/// Two shards of a run agree on it when they ran the same suite.
pub fn fingerprint(text: &str, dataset_files: impl IntoIterator<Item = u64>) -> String {
    let mut hash = crate::partition::Fnv1a::default();
    if let Ok(serde_yaml::Value::Mapping(mut file)) = serde_yaml::from_str(text) {
        file.remove("runner");
        file.remove("runners");
        let _ = serde_json::to_writer(&mut hash, &file);
    }
    for file in dataset_files {
        hash.update(&file.to_le_bytes());
    }
    format!("{:016x}", hash.0)
}

/// The test name of a batch: `<suite>::<session_id>::<qa_id>` (the session
/// written `<session_id>@<assistant_id>` when several datasets of the suite
/// share it), whitespace
/// replaced by `_` so names stay one word.
pub fn test_name(suite: &str, session_id: &str, qa_id: &str) -> String {
    let clean = |s: &str| s.replace(char::is_whitespace, "_");
    format!("{suite}::{}::{}", clean(session_id), clean(qa_id))
}

/// The suite files in `dir` and its subfolders, at any depth up to
/// [`MAX_FOLDER_DEPTH`] and at most [`MAX_SUITE_FILES`] (`*.yaml`, `*.yml`; names starting with `.` and symbolic
/// links to folders left out), sorted by path. A directory with none is an
/// error, so a wrong path never passes silently. A dataset file among them
/// (`suites/data/more.yaml`) is not run as a suite by
/// [`load`](crate::load::load) when a suite names it.
pub fn discover(dir: &Path) -> Result<Vec<PathBuf>, SuiteError> {
    let mut files = Vec::new();
    walk(dir, 0, &mut files)?;
    files.sort();
    if files.is_empty() {
        return Err(SuiteError::NotFound(dir.to_owned()));
    }
    Ok(files)
}

/// How deep [`discover`] looks into subfolders.
pub const MAX_FOLDER_DEPTH: usize = 16;
/// The most suite files [`discover`] takes from one directory.
pub const MAX_SUITE_FILES: usize = 10_000;

/// Adds the suite files of `dir` (at `depth`) and of its subfolders.
fn walk(dir: &Path, depth: usize, files: &mut Vec<PathBuf>) -> Result<(), SuiteError> {
    let entries = std::fs::read_dir(dir).map_err(|source| SuiteError::Io {
        path: dir.to_owned(),
        source,
    })?;
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_dir && depth < MAX_FOLDER_DEPTH {
            walk(&path, depth + 1, files)?;
        } else if path.is_file()
            && matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            )
        {
            if files.len() == MAX_SUITE_FILES {
                return Err(SuiteError::Io {
                    path: dir.to_owned(),
                    source: std::io::Error::other(format!(
                        "more than {MAX_SUITE_FILES} suite files"
                    )),
                });
            }
            files.push(path);
        }
    }
    Ok(())
}

/// The most sessions a suite may run at once (`concurrency`).
pub const MAX_CONCURRENCY: usize = 10_000;
/// The most retries of one turn (`retries`).
pub const MAX_RETRIES: usize = 100;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_follows_the_datasets_and_files_not_the_runner() {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data.jsonl");
        let line = |query: &str| {
            format!(
                r#"{{"session_id": "s", "assistant_id": "a", "conversation": [{{"qa_id": "q", "query": "{query}"}}]}}"#
            )
        };
        let suite = |runner: &str| {
            format!("name: f\nrunner: {{type: echo, template: \"{runner} {{query}}\"}}\ndatasets:\n  - file: data.jsonl\n")
        };
        let path = dir.path().join("f.yaml");
        let print = |runner: &str| {
            Suite::parse(&path, &suite(runner))
                .expect("suite")
                .fingerprint
        };
        std::fs::write(&data, line("one")).expect("write");
        let first = print("a");
        assert_eq!(print("b"), first, "the runner is not part of it");
        std::fs::write(&data, line("two")).expect("write");
        assert_ne!(print("a"), first, "a changed dataset file changes it");
    }
}
