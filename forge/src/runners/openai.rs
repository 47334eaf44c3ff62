//! `type: openai` — any OpenAI-compatible chat-completions endpoint (OpenAI,
//! Groq, Ollama, vLLM, Gemini's compatible endpoint).
//!
//! ```yaml
//! runner:
//!   type: openai
//!   base_url: http://localhost:11434/v1   # default https://api.openai.com/v1, or OPENAI_BASE_URL
//!   api_key: ${OPENAI_API_KEY}            # optional (Ollama needs none); falls back to OPENAI_API_KEY when missing; "" means no key
//!   model: llama3.2                       # required
//!   system_prompt: You are terse.         # optional
//!   history: true                         # default: earlier turns are sent as chat history
//!   params: {temperature: 0, max_tokens: 256}   # passed through into the request body
//!   retry_on: [429, 503]                  # optional: statuses retried (default 408, 409, 429, 5xx)
//! ```
//!
//! Each turn is one non-streaming `POST {base_url}/chat/completions`. With
//! `history: true` (the default) the session's earlier turns are sent as
//! alternating user / assistant messages, so the model sees the conversation
//! (turns that failed are left out); with `history: false` every turn is sent
//! on its own, as the reference deployment does.
//!
//! A non-empty dataset `context` is sent ahead of the question the way the
//! reference deployment does: the user message becomes
//! `Context:\n{context}\n\nQuestion: {query}`. With history on, only the
//! session's first user message carries it, so the history replays
//! identically on every turn.
//!
//! The answer is `choices[0].message.content`; `choices[0].logprobs`, when the
//! reply has it, goes to the batch's `logprobs`; the reply's `usage`
//! (`prompt_tokens`, `completion_tokens`, `total_tokens`, or `input_tokens`
//! / `output_tokens`) is the turn's token count.
//!
//! A reply with a status of `retry_on` (by default 408, 409, 429 and 5xx, as
//! the official OpenAI clients do), a refused or reset connection and a
//! timeout are retried by the suite's `retries`: a chat completion is
//! stateless.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderValue;
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};

use super::http_util::{self, redact_url, RetryOn};
use crate::error::{ConfigError, RunError};
use crate::registry::{self, BuildContext, RunnerType};
use crate::runner::{Reply, Runner, Session};
use crate::schema::{Batch, Object};
use crate::usage::Usage;

/// The default base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// Environment variable `base_url` falls back to.
pub const BASE_URL_ENV: &str = "OPENAI_BASE_URL";
/// Environment variable `api_key` falls back to.
pub const API_KEY_ENV: &str = "OPENAI_API_KEY";
/// Timeout of one chat-completions request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// Request body keys the runner sets itself; `params` may not hold them.
const RESERVED_PARAMS: &[&str] = &["model", "messages", "stream"];

fn default_true() -> bool {
    true
}

/// The `openai` runner's configuration, as written in a suite.
#[derive(Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenAiConfig {
    /// The API's base URL (default [`DEFAULT_BASE_URL`], or `OPENAI_BASE_URL`).
    #[serde(default)]
    pub base_url: Option<String>,
    /// The API key. Missing (`None`): `OPENAI_API_KEY`, when set. An empty
    /// (or blank) key means "no key" with **no** environment fallback, so a
    /// caller that must not send the host's key anywhere (the payload API's
    /// connectors) can say so. No key sends no `Authorization` header.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub api_key: Option<SecretString>,
    /// The model name (required).
    pub model: String,
    /// A system message sent first.
    #[serde(default)]
    pub system_prompt: Option<String>,
    /// Whether earlier turns of the session are sent as chat history (default true).
    #[serde(default = "default_true")]
    pub history: bool,
    /// Extra request body entries: `temperature`, `max_tokens`, ...
    #[serde(default)]
    pub params: Object,
    /// The HTTP statuses retried (default: 408, 409,
    /// 429 and 5xx).
    #[serde(default)]
    pub retry_on: Option<RetryOn>,
}

impl OpenAiConfig {
    /// A configuration for `model` with every other setting at its default.
    pub fn new(model: impl Into<String>) -> Self {
        OpenAiConfig {
            base_url: None,
            api_key: None,
            model: model.into(),
            system_prompt: None,
            history: true,
            params: Object::new(),
            retry_on: None,
        }
    }
}

/// Written by hand only to show `base_url` without the credentials it may
/// carry (user info, secret query values); `api_key` hides itself.
impl std::fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field(
                "base_url",
                &self.base_url.as_deref().map(http_util::redact_url_str),
            )
            .field("api_key", &self.api_key)
            .field("model", &self.model)
            .field("system_prompt", &self.system_prompt)
            .field("history", &self.history)
            .field("params", &self.params)
            .field("retry_on", &self.retry_on)
            .finish()
    }
}

/// The `openai` runner. It keeps one pooled HTTP client.
pub struct OpenAi {
    client: reqwest::Client,
    url: Url,
    api_key: Option<SecretString>,
    auth: Option<HeaderValue>,
    model: String,
    system_prompt: Option<String>,
    history: bool,
    params: Object,
    timeout: Duration,
    retry_on: RetryOn,
}

/// Written by hand to show the URL without the credentials `base_url` may
/// carry, and to leave out the HTTP client; `api_key` hides itself.
impl std::fmt::Debug for OpenAi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAi")
            .field("url", &redact_url(&self.url))
            .field("api_key", &self.api_key)
            .field("model", &self.model)
            .field("history", &self.history)
            .finish_non_exhaustive()
    }
}

impl OpenAi {
    /// Builds the runner: applies the defaults and environment fallbacks and
    /// checks the configuration. Nothing is sent.
    pub fn new(config: OpenAiConfig) -> Result<Self, ConfigError> {
        let err = |message: String| ConfigError::new("openai", message);
        let model = config.model.trim().to_owned();
        if model.is_empty() {
            return Err(err("`model` must not be empty".into()));
        }
        if let Some(key) = RESERVED_PARAMS
            .iter()
            .find(|k| config.params.contains_key(**k))
        {
            return Err(err(format!(
                "`params.{key}` is not allowed: the runner sets `{key}` itself"
            )));
        }
        let base_url = http_util::setting_or_env(config.base_url, BASE_URL_ENV)
            .unwrap_or_else(|| DEFAULT_BASE_URL.to_owned());
        let base = http_util::parse_base_url("openai", "base_url", &base_url)?;
        let url = http_util::join_segments(&base, ["chat", "completions"]);
        let api_key = match config.api_key {
            // Explicitly no key: never the environment's.
            Some(key) if key.expose_secret().trim().is_empty() => None,
            key => http_util::secret_or_env(key, API_KEY_ENV),
        };
        let auth = match &api_key {
            Some(key) => {
                let bearer = format!("Bearer {}", key.expose_secret());
                let mut value = HeaderValue::from_str(&bearer).map_err(|_| {
                    err("`api_key` contains characters not allowed in a header".into())
                })?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        Ok(OpenAi {
            client: http_util::client("openai")?,
            url,
            api_key,
            auth,
            model,
            system_prompt: config.system_prompt.filter(|p| !p.is_empty()),
            history: config.history,
            params: config.params,
            timeout: REQUEST_TIMEOUT,
            retry_on: config.retry_on.unwrap_or_default(),
        })
    }

    /// Builds the runner from a JSON configuration (a suite's `runner:`
    /// mapping without `type`).
    pub fn from_value(config: Value) -> Result<Self, ConfigError> {
        OpenAi::new(registry::config("openai", config)?)
    }

    /// Sets the request timeout (default [`REQUEST_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The chat-completions URL.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The chat messages sent for `batch` in `session`.
    pub fn messages(&self, batch: &Batch, session: &Session<'_>) -> Vec<Value> {
        let mut messages = Vec::with_capacity(2 + 2 * session.history.len());
        if let Some(prompt) = &self.system_prompt {
            messages.push(json!({"role": "system", "content": prompt}));
        }
        let mut first = true;
        if self.history {
            for turn in session.answered() {
                messages.push(json!({"role": "user", "content": user_content(session.context, &turn.query, first)}));
                messages.push(json!({"role": "assistant", "content": turn.assistant}));
                first = false;
            }
        }
        messages.push(
            json!({"role": "user", "content": user_content(session.context, &batch.query, first)}),
        );
        messages
    }
}

/// The user message: the query, prefixed with the context on the first one.
fn user_content(context: &str, query: &str, first: bool) -> String {
    if first && !context.trim().is_empty() {
        format!("Context:\n{context}\n\nQuestion: {query}")
    } else {
        query.to_owned()
    }
}

#[async_trait::async_trait]
impl Runner for OpenAi {
    async fn call(&self, batch: &Batch, session: &Session<'_>) -> Result<Reply, RunError> {
        let mut body = Object::new();
        body.insert("model".into(), Value::String(self.model.clone()));
        body.insert(
            "messages".into(),
            Value::Array(self.messages(batch, session)),
        );
        for (key, value) in &self.params {
            body.insert(key.clone(), value.clone());
        }
        let url = &self.url;
        let secrets = self.api_key.as_slice();
        let body = Value::Object(body);
        let auth = self.auth.as_ref();
        let reply = http_util::post_json(
            &self.client,
            url,
            &body,
            auth,
            self.timeout,
            secrets,
            &self.retry_on,
        )
        .await?;
        let choice = reply.pointer("/choices/0");
        let answer = choice
            .and_then(|c| c.pointer("/message/content"))
            .and_then(Value::as_str)
            .filter(|a| !a.trim().is_empty());
        let Some(answer) = answer else {
            return Err(RunError::permanent(format!(
                "no answer (choices[0].message.content) in the reply from {}: {}",
                redact_url(url),
                http_util::quote(&reply.to_string(), secrets)
            )));
        };
        let mut result = Reply::text(answer);
        if let Some(Value::Object(logprobs)) = choice.and_then(|c| c.get("logprobs")) {
            result = result.with_logprobs(logprobs.clone());
        }
        if let Some(usage) = Usage::from_reply(&reply) {
            result = result.with_usage(usage);
        }
        Ok(result)
    }

    fn secrets(&self) -> Vec<String> {
        self.api_key
            .iter()
            .map(|key| key.expose_secret().to_owned())
            .collect()
    }
}

fn build(config: Value, _: &BuildContext) -> Result<Arc<dyn Runner>, ConfigError> {
    Ok(Arc::new(OpenAi::from_value(config)?))
}

inventory::submit! { RunnerType { name: "openai", build } }

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::BatchOutcome;
    use crate::schema::Dataset;

    #[test]
    fn history_and_context_prefix() {
        let mut config = OpenAiConfig::new("m");
        config.base_url = Some("http://127.0.0.1:9/v1".into());
        config.api_key = Some("k".into());
        config.system_prompt = Some("be brief".into());
        let runner = OpenAi::new(config.clone()).unwrap();
        assert_eq!(
            runner.url().as_str(),
            "http://127.0.0.1:9/v1/chat/completions"
        );
        let mut dataset = Dataset::new("s", "a");
        dataset.context = "CTX".into();
        let mut first = Batch::new("q1", "one");
        first.assistant = "A1".into();
        let failed = Batch::new("q2", "two");
        let history = vec![
            BatchOutcome::success(first, 1.0),
            BatchOutcome::failure(failed, RunError::permanent("boom"), 1.0),
        ];
        let session = Session::of(&dataset, &history);
        let messages = runner.messages(&Batch::new("q3", "three"), &session);
        assert_eq!(
            messages,
            vec![
                json!({"role": "system", "content": "be brief"}),
                json!({"role": "user", "content": "Context:\nCTX\n\nQuestion: one"}),
                json!({"role": "assistant", "content": "A1"}),
                json!({"role": "user", "content": "three"}),
            ]
        );
        config.history = false;
        config.system_prompt = None;
        let runner = OpenAi::new(config).unwrap();
        let messages = runner.messages(&Batch::new("q3", "three"), &session);
        assert_eq!(
            messages,
            vec![json!({"role": "user", "content": "Context:\nCTX\n\nQuestion: three"})]
        );
    }

    #[test]
    fn rejects_reserved_params() {
        let mut config = OpenAiConfig::new("m");
        config.base_url = Some("http://127.0.0.1:9/v1".into());
        config.params.insert("stream".into(), json!(true));
        let error = OpenAi::new(config).unwrap_err();
        assert!(error.message.contains("params.stream"), "{error}");
    }
}
