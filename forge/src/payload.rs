//! The payload API of the seed: a request with datasets and either an
//! Alquimia `config` or an LLM `connector`, answered with the response format.
//!
//! This is what `forge run --payload`, the Lambda function and `forge serve`
//! call. A bad request gets `{"success": false, "error": ...}` and nothing runs.
//!
//! The host's own keys never follow a URL the caller chose: when `config`
//! has no `api_key`, the host's `ALQUIMIA_API_KEY` is sent only to the origin
//! of the host's `ALQUIMIA_BASE_URL`; when a connector has no key,
//! `LLM_API_KEY` is sent only to the connector's default base URL for its
//! `class_path`. Other hosts get it only when the operator allows them
//! ([`HostKeys`]: `--allow-host HOST`, `FORGE_ALLOWED_HOSTS=host1,host2`);
//! otherwise the request is rejected, naming the host and how to allow it
//! (a `ChatOllama` connector, which needs no key, runs without one).
//!
//! Every credential the runner sends is redacted (`[REDACTED]`) from the
//! answers of the response (the one redaction rule of every output).
//!
//! forge's extensions (`runner:`, `policy:`, the response's `turns`) let
//! any runner run remotely: see [`extension`], and its trust model.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use reqwest::Url;
use serde_json::{json, Map, Value};
use tokio_util::sync::CancellationToken;

use crate::engine::{Engine, Job};
use crate::error::{ConfigError, RunError};
use crate::registry::{self, BuildContext};
use crate::runner::{BatchOutcome, Reply, Runner, Session};
use crate::runners::alquimia;
use crate::runners::http_util::{self, setting_or_env};
use crate::schema::{
    datasets_from_value, json_kind, Batch, Dataset, Response, RunResponse, TurnFacts,
};
use crate::secrets::Secrets;

pub mod extension;

/// Sessions run at once by the payload API unless told otherwise.
pub const DEFAULT_CONCURRENCY: usize = 16;

/// Environment variable the LLM connector's `api_key` falls back to.
pub const LLM_API_KEY_ENV: &str = "LLM_API_KEY";

/// Environment variable listing more hosts the host's own keys may be sent
/// to, comma-separated: `gpu.internal,10.0.0.7:8000`.
pub const ALLOWED_HOSTS_ENV: &str = "FORGE_ALLOWED_HOSTS";

/// Where the host's own API keys (`ALQUIMIA_API_KEY`, `LLM_API_KEY`) may be
/// sent besides their own base URL: hosts the operator allows, each a host
/// name or address (any port) or `host:port`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostKeys {
    allowed: Vec<String>,
}

impl HostKeys {
    /// The hosts of [`ALLOWED_HOSTS_ENV`].
    pub fn from_env() -> Self {
        let listed = std::env::var(ALLOWED_HOSTS_ENV).unwrap_or_default();
        HostKeys::default().allow(listed.split(','))
    }

    /// `hosts` allowed too (`host`, `host:port`; a scheme or a trailing `/`
    /// is ignored; empty entries are skipped).
    pub fn allow<S: AsRef<str>>(mut self, hosts: impl IntoIterator<Item = S>) -> Self {
        for host in hosts {
            let host = host.as_ref().trim().to_ascii_lowercase();
            let host = host
                .strip_prefix("https://")
                .or_else(|| host.strip_prefix("http://"))
                .unwrap_or(&host)
                .trim_end_matches('/')
                .to_owned();
            if !host.is_empty() && !self.allowed.contains(&host) {
                self.allowed.push(host);
            }
        }
        self
    }

    /// The allowed hosts.
    pub fn hosts(&self) -> &[String] {
        &self.allowed
    }

    /// Whether the operator allows `url`'s host.
    pub fn allows(&self, url: &Url) -> bool {
        let Some(host) = url.host_str().map(str::to_ascii_lowercase) else {
            return false;
        };
        let with_port = url
            .port_or_known_default()
            .map(|port| format!("{host}:{port}"));
        self.allowed
            .iter()
            .any(|a| *a == host || Some(a) == with_port.as_ref())
    }

    /// Whether a host key may go to `url`: its own base URL's origin, or
    /// an allowed host.
    fn may_send(&self, url: &Url, home: Option<&Url>) -> bool {
        home.is_some_and(|home| home.origin() == url.origin()) || self.allows(url)
    }
}

/// How the payload API runs a request.
#[derive(Debug, Clone)]
pub struct Options {
    /// Sessions run at once.
    pub concurrency: usize,
    /// Where the host's own keys may be sent.
    pub host_keys: HostKeys,
    /// The most answer bytes one run may hold (answers, agentic data and
    /// log-probabilities of every turn); the turns past it fail with a
    /// message and are not sent. `None`: no limit.
    pub max_answer_bytes: Option<usize>,
}

impl Options {
    /// `concurrency` sessions at once, hosts allowed by [`ALLOWED_HOSTS_ENV`],
    /// no answer limit.
    pub fn from_env(concurrency: usize) -> Self {
        Options {
            concurrency,
            host_keys: HostKeys::from_env(),
            max_answer_bytes: None,
        }
    }
}

/// The LangChain chat model classes the reference deployment documents, and
/// the OpenAI-compatible base URL each maps to.
pub const CONNECTORS: &[(&str, &str)] = &[
    (
        "langchain_groq.chat_models.ChatGroq",
        "https://api.groq.com/openai/v1",
    ),
    (
        "langchain_openai.chat_models.ChatOpenAI",
        "https://api.openai.com/v1",
    ),
    (
        "langchain_google_genai.chat_models.ChatGoogleGenerativeAI",
        "https://generativelanguage.googleapis.com/v1beta/openai",
    ),
    (
        "langchain_ollama.chat_models.ChatOllama",
        "http://localhost:11434/v1",
    ),
];

/// Chat-completions parameters a connector's `params` pass through.
const PASSED_PARAMS: &[&str] = &[
    "temperature",
    "max_tokens",
    "max_completion_tokens",
    "top_p",
    "frequency_penalty",
    "presence_penalty",
    "stop",
    "seed",
    "response_format",
    "reasoning_effort",
    "logprobs",
    "top_logprobs",
];

/// A validated request, ready to run.
pub struct Request {
    /// The datasets, in order.
    pub datasets: Vec<Dataset>,
    /// The runner the request selects.
    pub runner: Arc<dyn Runner>,
    /// The per-turn policy of its `policy:` (forge's extension; none by
    /// default, as the seed).
    pub policy: Option<crate::policy::Policy>,
    /// Whether the response carries each turn's [`TurnFacts`] (a payload
    /// with a `runner:`).
    pub turn_facts: bool,
}

/// Validates a payload: its datasets and its runner configuration, with
/// the hosts of [`ALLOWED_HOSTS_ENV`] allowed. The error is the message of
/// the `{"success": false}` response.
pub fn parse(payload: &Value) -> Result<Request, String> {
    parse_with(payload, &HostKeys::from_env())
}

/// [`parse`], with the hosts the host's keys may go to.
pub fn parse_with(payload: &Value, host_keys: &HostKeys) -> Result<Request, String> {
    let Some(object) = payload.as_object() else {
        return Err(format!(
            "the payload must be a JSON object, found {}",
            json_kind(payload)
        ));
    };
    let datasets = match object.get("datasets") {
        None | Some(Value::Null) => {
            return Err("No datasets provided: `datasets` is missing".into())
        }
        Some(Value::Array(items)) if items.is_empty() => {
            return Err("No datasets provided: `datasets` is empty".into())
        }
        Some(value @ Value::Array(_)) => {
            datasets_from_value("datasets", value).map_err(|e| e.to_string())?
        }
        Some(other) => {
            return Err(format!(
                "`datasets` must be a list of datasets, found {}",
                json_kind(other)
            ))
        }
    };
    let runner = build_runner(object, host_keys).map_err(|e| e.to_string())?;
    Ok(Request {
        datasets,
        runner,
        policy: extension::policy(object)?,
        turn_facts: object.get("runner").is_some_and(|r| !r.is_null()),
    })
}

/// Runs a payload and answers with the response format, as the seed's
/// Lambda `run(payload)` does.
pub async fn run(payload: &Value, concurrency: usize) -> Response {
    run_with_cancel(payload, concurrency, CancellationToken::new()).await
}

/// [`run`], stopped by `cancel`: once it fires, turns not yet sent are
/// recorded as failures ([`INTERRUPTED`](crate::engine::INTERRUPTED)) and
/// turns in flight finish. Returns once every session has stopped.
pub async fn run_with_cancel(
    payload: &Value,
    concurrency: usize,
    cancel: CancellationToken,
) -> Response {
    run_with(payload, &Options::from_env(concurrency), cancel).await
}

/// [`run_with_cancel`] under `options`. Every credential the runner sends is
/// redacted from the answers.
pub async fn run_with(payload: &Value, options: &Options, cancel: CancellationToken) -> Response {
    let request = match parse_with(payload, &options.host_keys) {
        Ok(request) => request,
        Err(error) => return Response::error(error),
    };
    let secrets = Secrets::new(request.runner.secrets());
    let runner: Arc<dyn Runner> = match options.max_answer_bytes {
        Some(max) => Arc::new(AnswerBudget::new(request.runner, max)),
        None => request.runner,
    };
    let mut engine = Engine::new(runner)
        .concurrency(options.concurrency)
        .cancel_on(cancel);
    if let Some(policy) = request.policy {
        engine = engine.policy(policy);
    }
    let (mut results, facts) = match request.turn_facts {
        true => run_with_facts(&engine, request.datasets).await,
        false => (engine.run_datasets(request.datasets).await, None),
    };
    for (dataset, _) in &mut results {
        for batch in &mut dataset.conversation {
            redact_batch(&secrets, batch);
        }
    }
    let mut response = RunResponse::new(results);
    response.turns = facts;
    Response::Success(response)
}

/// Runs `datasets` on `engine`, keeping each turn's [`TurnFacts`].
async fn run_with_facts(
    engine: &Engine,
    datasets: Vec<Dataset>,
) -> (Vec<(Dataset, crate::Summary)>, Option<Vec<Vec<TurnFacts>>>) {
    let facts: Vec<Vec<TurnFacts>> = datasets
        .iter()
        .map(|d| vec![TurnFacts::default(); d.conversation.len()])
        .collect();
    let facts = Arc::new(std::sync::Mutex::new(facts));
    let observer = {
        let facts = Arc::clone(&facts);
        move |job: usize, turn: usize, outcome: &BatchOutcome| {
            let mut facts = facts.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(slot) = facts.get_mut(job).and_then(|turns| turns.get_mut(turn)) {
                *slot = TurnFacts {
                    time_ms: outcome.time_ms,
                    attempts: outcome.attempts,
                    usage: outcome.usage,
                };
            }
        }
    };
    let jobs = datasets.into_iter().map(Job::from).collect();
    let results = engine.run(jobs, Arc::new(observer)).await;
    let facts = std::mem::take(&mut *facts.lock().unwrap_or_else(|e| e.into_inner()));
    (results, Some(facts))
}

/// What a runner wrote into a batch, with `secrets` redacted.
fn redact_batch(secrets: &Secrets, batch: &mut Batch) {
    if secrets.is_empty() {
        return;
    }
    secrets.redact_string(&mut batch.assistant);
    if let Some(observation) = &mut batch.observation {
        secrets.redact_string(observation);
    }
    for object in [&mut batch.agentic, &mut batch.logprobs]
        .into_iter()
        .flatten()
    {
        object.values_mut().for_each(|v| secrets.redact_value(v));
    }
}

/// A runner whose turns share a budget of answer bytes: once a run's
/// answers pass it, the turn that passed it and every later one fail
/// (later ones are not sent).
struct AnswerBudget {
    inner: Arc<dyn Runner>,
    used: AtomicUsize,
    max: usize,
}

impl AnswerBudget {
    fn new(inner: Arc<dyn Runner>, max: usize) -> Self {
        AnswerBudget {
            inner,
            used: AtomicUsize::new(0),
            max,
        }
    }

    fn message(&self) -> String {
        format!(
            "the run's answers exceed {} (the server's --max-answer-bytes); answer dropped",
            http_util::bytes_shown(self.max)
        )
    }
}

/// The bytes a turn's answer adds to a response: its text, agentic data
/// and log-probabilities.
fn answer_bytes(batch: &Batch) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(batch.assistant.len());
    for object in [&batch.agentic, &batch.logprobs].into_iter().flatten() {
        let _ = serde_json::to_writer(&mut count, object);
    }
    count.0
}

#[async_trait::async_trait]
impl Runner for AnswerBudget {
    async fn call(&self, batch: &Batch, session: &Session<'_>) -> Result<Reply, RunError> {
        if self.used.load(Ordering::Relaxed) > self.max {
            return Err(RunError::permanent(self.message()));
        }
        self.inner.call(batch, session).await
    }

    async fn run_batch(&self, batch: Batch, session: &Session<'_>) -> BatchOutcome {
        if self.used.load(Ordering::Relaxed) > self.max {
            return BatchOutcome::failure(batch, RunError::permanent(self.message()), 0.0);
        }
        let original = batch.clone();
        let outcome = self.inner.run_batch(batch, session).await;
        let size = answer_bytes(&outcome.batch);
        let before = self.used.fetch_add(size, Ordering::Relaxed);
        if before.saturating_add(size) <= self.max {
            return outcome;
        }
        self.used.store(usize::MAX, Ordering::Relaxed);
        let error = RunError::permanent(self.message());
        let mut failed = BatchOutcome::failure(original, error, outcome.time_ms);
        failed.attempts = outcome.attempts;
        failed
    }

    fn secrets(&self) -> Vec<String> {
        self.inner.secrets()
    }
}

/// [`run`], with a panic caught: `Err` holds the message of the internal
/// failure (what the Lambda function and `forge serve` answer with a 500).
pub async fn run_guarded(payload: &Value, concurrency: usize) -> Result<Response, String> {
    guarded(run(payload, concurrency)).await
}

/// Awaits a run, with a panic caught as in [`run_guarded`].
pub(crate) async fn guarded(
    run: impl std::future::Future<Output = Response>,
) -> Result<Response, String> {
    use futures_util::FutureExt;
    std::panic::AssertUnwindSafe(run)
        .catch_unwind()
        .await
        .map_err(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            format!("internal error: {message}")
        })
}

fn build_runner(
    payload: &Map<String, Value>,
    host_keys: &HostKeys,
) -> Result<Arc<dyn Runner>, ConfigError> {
    let context = BuildContext::default();
    if let Some(runner) = payload.get("runner").filter(|r| !r.is_null()) {
        return extension::build(runner, host_keys);
    }
    if let Some(connector) = payload.get("connector").filter(|c| !c.is_null()) {
        return registry::build_named(
            "openai",
            connector_config_with(connector, host_keys)?,
            &context,
        );
    }
    let config = match payload.get("config") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(config)) => config.clone(),
        Some(other) => {
            return Err(ConfigError::new(
                "alquimia",
                format!("`config` must be an object, found {}", json_kind(other)),
            ))
        }
    };
    // Like the seed, read only the keys the Alquimia runner takes; a null or
    // empty value falls back to the environment.
    let mut picked = Map::new();
    for key in [
        "base_url",
        "api_key",
        "agent_id",
        "channel_id",
        "api_version",
    ] {
        match config.get(key) {
            Some(Value::String(s)) if !s.is_empty() => {
                picked.insert(key.into(), Value::String(s.clone()));
            }
            Some(Value::Null) | None => {}
            Some(Value::String(_)) => {}
            Some(other) => {
                return Err(ConfigError::new(
                    "alquimia",
                    format!(
                        "`config.{key}` must be a string, found {}",
                        json_kind(other)
                    ),
                ))
            }
        }
    }
    if !picked.contains_key("api_key") {
        if let Some(key) = host_alquimia_key(picked.get("base_url"), host_keys)? {
            picked.insert("api_key".into(), Value::String(key));
        }
    }
    registry::build_named("alquimia", Value::Object(picked), &context)
}

/// The host's `ALQUIMIA_API_KEY` for a request without a key of its own,
/// when it may go to the request's base URL: the host's own (missing, or
/// with the origin of `ALQUIMIA_BASE_URL`) or an allowed host. `None` when
/// the host has no key (the runner then says a key is missing).
fn host_alquimia_key(
    base_url: Option<&Value>,
    host_keys: &HostKeys,
) -> Result<Option<String>, ConfigError> {
    let Some(key) = setting_or_env(None, alquimia::API_KEY_ENV) else {
        return Ok(None);
    };
    let Some(url) = base_url.and_then(Value::as_str) else {
        return Ok(Some(key));
    };
    let url = http_util::parse_base_url("alquimia", "config.base_url", url)?;
    let home = setting_or_env(None, alquimia::BASE_URL_ENV).and_then(|home| Url::parse(&home).ok());
    if host_keys.may_send(&url, home.as_ref()) {
        return Ok(Some(key));
    }
    Err(ConfigError::new(
        "alquimia",
        not_sent(
            &url,
            alquimia::API_KEY_ENV,
            &format!("the origin of the host's {}", alquimia::BASE_URL_ENV),
            "`config.api_key`",
        ),
    ))
}

/// Why the host's key `env` is not sent to `url`, and what to do.
fn not_sent(url: &Url, env: &str, home: &str, own: &str) -> String {
    let host = match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => http_util::redact_url(url),
    };
    format!(
        "no API key is sent to {host}: the host's {env} goes only to {home}; \
         pass {own} with the request, or have the operator allow the host \
         (`--allow-host {host}` or {ALLOWED_HOSTS_ENV}={host})"
    )
}

/// The host's `LLM_API_KEY` for a connector without a key of its own, when
/// it may go to `base_url`: the origin of the class path's `default_url`,
/// or an allowed host. Elsewhere a `ChatOllama` connector (which needs no
/// key) runs without one and any other is rejected.
fn host_llm_key(
    class_path: &str,
    base_url: &str,
    default_url: &str,
    is_ollama: bool,
    host_keys: &HostKeys,
) -> Result<Option<String>, ConfigError> {
    let Some(key) = std::env::var(LLM_API_KEY_ENV)
        .ok()
        .filter(|k| !k.trim().is_empty())
    else {
        return Ok(None);
    };
    let url = http_util::parse_base_url("connector", "connector.params.base_url", base_url)?;
    let home = Url::parse(default_url).ok();
    if host_keys.may_send(&url, home.as_ref()) {
        Ok(Some(key))
    } else if is_ollama {
        Ok(None)
    } else {
        Err(ConfigError::new(
            "connector",
            not_sent(
                &url,
                LLM_API_KEY_ENV,
                &format!("{default_url}, the default of {class_path}"),
                "`connector.params.api_key`",
            ),
        ))
    }
}

/// The OpenAI-compatible base URL of a LangChain `base_url` override. For
/// ChatOllama and ChatGroq, LangChain's `base_url` is the provider's root
/// (`http://host:11434`, `https://api.groq.com`) and the client adds `/v1`
/// or `/openai/v1`; so do we, unless the path already ends with it.
/// ChatOpenAI's `base_url` / `openai_api_base` already includes `/v1`, and
/// Gemini's is taken as given too.
fn openai_compatible_base(class_path: &str, url: String) -> String {
    let suffix = if class_path.ends_with("ChatOllama") {
        "/v1"
    } else if class_path.ends_with("ChatGroq") {
        "/openai/v1"
    } else {
        return url;
    };
    // An unparsable URL is left for the runner to report.
    let Ok(mut parsed) = reqwest::Url::parse(url.trim()) else {
        return url;
    };
    if parsed.cannot_be_a_base() {
        return url;
    }
    let path = parsed.path().trim_end_matches('/').to_owned();
    if path.ends_with(suffix) {
        return url;
    }
    parsed.set_path(&format!("{path}{suffix}"));
    parsed.to_string()
}

/// Maps `connector: {class_path, params}` onto the `openai` runner's
/// configuration: the provider's OpenAI-compatible base URL (overridden by
/// `params.base_url` or `params.openai_api_base`), `params.model`, the API key
/// (`params.api_key`, else `LLM_API_KEY`; with neither, an explicitly empty
/// `api_key`, so the `openai` runner sends no key rather than falling back to
/// `OPENAI_API_KEY`: the host's key never goes to a URL a payload names), and
/// the chat parameters. Each turn
/// is sent on its own, prefixed with the dataset's context, as the reference
/// deployment does.
///
/// `LLM_API_KEY` is used only when the base URL has the origin of the
/// class path's default, or when [`ALLOWED_HOSTS_ENV`] allows its host
/// (see [`connector_config_with`]).
pub fn connector_config(connector: &Value) -> Result<Value, ConfigError> {
    connector_config_with(connector, &HostKeys::from_env())
}

/// [`connector_config`], with the hosts `LLM_API_KEY` may go to besides the
/// class path's default base URL.
pub fn connector_config_with(
    connector: &Value,
    host_keys: &HostKeys,
) -> Result<Value, ConfigError> {
    let err = |message: String| ConfigError::new("connector", message);
    let class_path = connector
        .get("class_path")
        .and_then(Value::as_str)
        .ok_or_else(|| err("`connector.class_path` is required".into()))?;
    let default_url = CONNECTORS
        .iter()
        .find(|(path, _)| *path == class_path)
        .map(|(_, url)| *url)
        .ok_or_else(|| {
            err(format!(
                "unknown class_path {class_path:?}; supported: {}",
                CONNECTORS
                    .iter()
                    .map(|(p, _)| *p)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
    let empty = Map::new();
    let params = match connector.get("params") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(params)) => params,
        Some(other) => {
            return Err(err(format!(
                "`connector.params` must be an object, found {}",
                json_kind(other)
            )))
        }
    };
    let string = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| params.get(*k).and_then(Value::as_str))
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let model = string(&["model", "model_name"])
        .ok_or_else(|| err("`connector.params.model` is required".into()))?;
    let base_url = match string(&["base_url", "openai_api_base"]) {
        Some(url) => openai_compatible_base(class_path, url),
        None => default_url.into(),
    };
    let is_ollama = class_path.ends_with("ChatOllama");
    let api_key = match string(&[
        "api_key",
        "groq_api_key",
        "openai_api_key",
        "google_api_key",
    ]) {
        Some(key) => Some(key),
        None => host_llm_key(class_path, &base_url, default_url, is_ollama, host_keys)?,
    };
    if api_key.is_none() && !is_ollama {
        return Err(err(format!(
            "missing api key: set `connector.params.api_key` or the {LLM_API_KEY_ENV} environment variable"
        )));
    }
    let mut passed = Map::new();
    for (key, value) in params {
        if PASSED_PARAMS.contains(&key.as_str()) {
            passed.insert(key.clone(), value.clone());
        } else if key == "num_predict" {
            passed.insert("max_tokens".into(), value.clone());
        }
    }
    let mut config = json!({
        "base_url": base_url,
        "model": model,
        "history": false,
        "params": passed,
    });
    // An empty key tells the `openai` runner "no key, no OPENAI_API_KEY fallback".
    config["api_key"] = Value::String(api_key.unwrap_or_default());
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_every_documented_class_path() {
        for (path, url) in CONNECTORS {
            let config = connector_config(&json!({
                "class_path": path,
                "params": {"model": "m", "api_key": "k", "temperature": 0.2, "max_tokens": 64, "streaming": true}
            }))
            .expect("known class path");
            assert_eq!(config["base_url"], *url);
            assert_eq!(config["model"], "m");
            assert_eq!(config["api_key"], "k");
            assert_eq!(config["history"], false);
            assert_eq!(
                config["params"],
                json!({"temperature": 0.2, "max_tokens": 64})
            );
        }
    }

    #[test]
    fn base_url_overrides_and_unknown_class_path() {
        let config = connector_config(&json!({
            "class_path": "langchain_openai.chat_models.ChatOpenAI",
            "params": {"model": "m", "api_key": "k", "openai_api_base": "http://127.0.0.1:9/v1"}
        }))
        .expect("valid");
        assert_eq!(config["base_url"], "http://127.0.0.1:9/v1");
        let error =
            connector_config(&json!({"class_path": "langchain_x.Chat", "params": {"model": "m"}}))
                .expect_err("unknown");
        assert!(
            error
                .to_string()
                .contains("unknown class_path \"langchain_x.Chat\""),
            "{error}"
        );
    }

    #[test]
    fn ollama_and_groq_base_urls_are_provider_roots() {
        let base = |class: &str, url: &str| {
            connector_config(&json!({
                "class_path": class,
                "params": {"model": "m", "api_key": "k", "base_url": url}
            }))
            .expect("valid")["base_url"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let ollama = "langchain_ollama.chat_models.ChatOllama";
        let groq = "langchain_groq.chat_models.ChatGroq";
        assert_eq!(base(ollama, "http://gpu:11434"), "http://gpu:11434/v1");
        assert_eq!(base(ollama, "http://gpu:11434/"), "http://gpu:11434/v1");
        assert_eq!(base(ollama, "http://gpu:11434/v1"), "http://gpu:11434/v1");
        assert_eq!(base(ollama, "http://gpu:11434/v1/"), "http://gpu:11434/v1/");
        assert_eq!(base(ollama, "http://h/ollama"), "http://h/ollama/v1");
        assert_eq!(
            base(groq, "https://api.groq.com"),
            "https://api.groq.com/openai/v1"
        );
        assert_eq!(
            base(groq, "https://api.groq.com/openai/v1"),
            "https://api.groq.com/openai/v1"
        );
        assert_eq!(
            base(groq, "https://proxy/groq"),
            "https://proxy/groq/openai/v1"
        );
        // OpenAI's base already includes /v1; Gemini's is taken as given.
        assert_eq!(
            base("langchain_openai.chat_models.ChatOpenAI", "http://h:8000"),
            "http://h:8000"
        );
        assert_eq!(
            base(
                "langchain_google_genai.chat_models.ChatGoogleGenerativeAI",
                "http://h/x"
            ),
            "http://h/x"
        );
        assert_eq!(base(ollama, "not a url"), "not a url");
    }

    #[test]
    fn rejects_payloads_without_datasets() {
        for payload in [
            json!({}),
            json!({"datasets": []}),
            json!({"datasets": 3}),
            json!([1]),
        ] {
            let error = parse(&payload).err().expect("bad request");
            assert!(!error.is_empty());
        }
    }
}
