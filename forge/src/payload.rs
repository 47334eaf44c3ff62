//! The payload API of the seed: a request with datasets and either an
//! Alquimia `config` or an LLM `connector`, answered with the response format.
//!
//! This is what `forge run --payload`, the Lambda function and `forge serve`
//! call. A bad request gets `{"success": false, "error": ...}` and nothing runs.

use std::sync::Arc;

use serde_json::{json, Map, Value};
use tokio_util::sync::CancellationToken;

use crate::error::ConfigError;
use crate::execute::Engine;
use crate::registry::{self, BuildContext};
use crate::runner::Runner;
use crate::schema::{datasets_from_value, json_kind, Dataset, Response, RunResponse};

/// Sessions run at once by the payload API unless told otherwise.
pub const DEFAULT_CONCURRENCY: usize = 16;

/// Environment variable the LLM connector's `api_key` falls back to.
pub const LLM_API_KEY_ENV: &str = "LLM_API_KEY";

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
}

/// Validates a payload: its datasets and its runner configuration.
/// The error is the message of the `{"success": false}` response.
pub fn parse(payload: &Value) -> Result<Request, String> {
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
    let runner = build_runner(object).map_err(|e| e.to_string())?;
    Ok(Request { datasets, runner })
}

/// Runs a payload and answers with the response format, as the seed's
/// Lambda `run(payload)` does.
pub async fn run(payload: &Value, concurrency: usize) -> Response {
    run_with_cancel(payload, concurrency, CancellationToken::new()).await
}

/// [`run`], stopped by `cancel`: once it fires, turns not yet sent are
/// recorded as failures ([`INTERRUPTED`](crate::execute::INTERRUPTED)) and
/// turns in flight finish. Returns once every session has stopped.
pub async fn run_with_cancel(
    payload: &Value,
    concurrency: usize,
    cancel: CancellationToken,
) -> Response {
    match parse(payload) {
        Ok(request) => {
            let engine = Engine::new(request.runner)
                .concurrency(concurrency)
                .cancel_on(cancel);
            Response::Success(RunResponse::new(
                engine.run_datasets(request.datasets).await,
            ))
        }
        Err(error) => Response::error(error),
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

fn build_runner(payload: &Map<String, Value>) -> Result<Arc<dyn Runner>, ConfigError> {
    let context = BuildContext::default();
    if let Some(connector) = payload.get("connector").filter(|c| !c.is_null()) {
        return registry::build_named("openai", connector_config(connector)?, &context);
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
    registry::build_named("alquimia", Value::Object(picked), &context)
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
pub fn connector_config(connector: &Value) -> Result<Value, ConfigError> {
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
    let api_key = string(&[
        "api_key",
        "groq_api_key",
        "openai_api_key",
        "google_api_key",
    ])
    .or_else(|| {
        std::env::var(LLM_API_KEY_ENV)
            .ok()
            .filter(|k| !k.is_empty())
    });
    let is_ollama = class_path.ends_with("ChatOllama");
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
