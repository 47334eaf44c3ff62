//! `type: http` — a generic JSON-over-HTTP runner for in-house agents.
//!
//! ```yaml
//! runner:
//!   type: http
//!   method: POST                          # default POST; GET sends no body
//!   url: https://agents.example/v1/chat   # ${VAR}s are read from the environment
//!   headers:
//!     Authorization: Bearer ${AGENT_TOKEN}
//!     X-Session: "{session_id}"
//!   body:                                 # any JSON; strings may hold placeholders
//!     input: "{query}"
//!     session: "{session_id}"
//!     history: "{history}"                # exactly "{history}": the earlier turns
//!   answer: /output/text                  # JSON pointer (RFC 6901) to the answer
//!   agentic: /output/tools                # optional: an object merged into the batch's agentic
//!   usage: /usage                         # optional: the turn's token counts (prompt_tokens, completion_tokens, ...)
//!   timeout: 60s                          # per request (default 300s)
//!   retry_timeouts: false                 # default: a timed-out turn is not sent again
//!   retry_on: [429, 502, 503, 504]        # statuses retried (this is the default)
//! ```
//!
//! Placeholders `{query}`, `{session_id}`, `{qa_id}`, `{context}`,
//! `{assistant_id}`, `{language}` and `{turn}` (1-based) are replaced in one
//! pass inside every string of `body` (so the values are JSON-escaped
//! correctly), in header values, and in the URL (percent-encoded). A string
//! that is exactly `"{history}"` becomes the array of the session's earlier
//! turns, `[{"query": ..., "answer": ...}]` (failed turns left out), and one
//! that is exactly `"{agentic}"` becomes the batch's `agentic` object. The
//! default body is `{"query": "{query}", "session_id": "{session_id}"}`.
//!
//! Without `answer`, the reply body is the answer when it is a JSON string
//! or not JSON at all; a JSON object or array then needs `answer`. With
//! `answer`, the `usage` pointer may name an object of token counts
//! (`prompt_tokens`, `completion_tokens`, `total_tokens`, or `input_tokens`
//! / `output_tokens`): the turn's usage, as the `openai` runner reads it
//! (a reply without it reports none).
//!
//! Failures: HTTP 429 (with `Retry-After`), 502, 503, 504 and refused or
//! reset connections are transient; any other error status, a malformed
//! reply, a missing or empty answer are permanent, and so is a connection
//! lost after the reply's status arrived (the agent has the turn). Unlike
//! `alquimia` and `openai`, 500 and the other 5xx are not retried by default:
//! an unknown agent may fail after acting on the turn (a tool call, a stored
//! message); `retry_on` sets the retried statuses for an endpoint known to be
//! safe to call again. A timeout (the runner's own or the suite's) is not
//! retried unless `retry_timeouts: true`: the agent may have accepted the
//! turn. Header values never appear in error messages. Redirects are followed
//! within the URL's origin only, so headers and the body never reach another
//! server.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};

use super::http_util::{self, redact_url, redact_url_str, RetryOn};
use super::template::{fill, placeholder};
use crate::duration::DurationValue;
use crate::error::{ConfigError, ErrorKind, RunError};
use crate::registry::{self, BuildContext, RunnerType};
use crate::runner::{Reply, Retry, Runner, Session};
use crate::schema::{Batch, Object};
use crate::usage::Usage;

/// Default timeout of one request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// The statuses retried unless `retry_on` says otherwise: throttling and a
/// gateway that could not reach the agent.
pub const DEFAULT_RETRY_ON: [u16; 4] = [429, 502, 503, 504];

/// The `http` runner's configuration, as written in a suite.
#[derive(Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct HttpConfig {
    /// The HTTP method (default `POST`).
    #[serde(default)]
    method: Option<String>,
    /// The URL; `{placeholders}` are filled.
    url: String,
    /// Request headers; values are templates.
    #[serde(default)]
    headers: serde_json::Map<String, Value>,
    /// The JSON body template.
    #[serde(default)]
    body: Option<Value>,
    /// JSON Pointer to the answer in the reply (default: the whole body).
    #[serde(default)]
    answer: Option<String>,
    /// JSON Pointer to the agentic data in the reply.
    #[serde(default)]
    agentic: Option<String>,
    /// JSON Pointer to the token usage in the reply.
    #[serde(default)]
    usage: Option<String>,
    /// Time allowed per request (the suite's `timeout` otherwise).
    #[serde(default)]
    timeout: Option<DurationValue>,
    /// Whether a request that timed out is retried.
    #[serde(default)]
    retry_timeouts: bool,
    /// The HTTP statuses retried (default: 408, 409, 429 and 5xx).
    #[serde(default)]
    retry_on: Option<RetryOn>,
}

/// The `http` runner. Build it from a suite's `runner: {type: http, ...}` or
/// with [`Http::from_value`]. It keeps one pooled HTTP client.
pub struct Http {
    client: reqwest::Client,
    method: Method,
    url: String,
    /// Header values are templates that may hold a token.
    headers: Vec<(HeaderName, SecretString)>,
    body: Option<Value>,
    answer: Option<String>,
    agentic: Option<String>,
    usage: Option<String>,
    timeout: Duration,
    retry: Retry,
    retry_on: RetryOn,
    /// Header values, scrubbed from every message.
    secrets: Vec<SecretString>,
}

/// Written by hand to show the URL without its credentials (user info,
/// secret query values) and to leave out the body template (it may hold a
/// key) and the HTTP client; header values hide themselves.
impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http")
            .field("method", &self.method)
            .field("url", &redact_url_str(&self.url))
            .field("headers", &self.headers)
            .field("answer", &self.answer)
            .finish_non_exhaustive()
    }
}

fn check_pointer(key: &str, pointer: &Option<String>) -> Result<(), ConfigError> {
    match pointer {
        Some(p) if !p.is_empty() && !p.starts_with('/') => Err(ConfigError::new(
            "http",
            format!(
                "`{key}` must be a JSON pointer such as /choices/0/message/content, found {p:?}"
            ),
        )),
        _ => Ok(()),
    }
}

impl Http {
    /// Builds the runner from a JSON configuration (a suite's `runner:`
    /// mapping without `type`). Checks the method, the URL, the headers and
    /// the pointers; nothing is sent.
    pub fn from_value(config: Value) -> Result<Self, ConfigError> {
        let config: HttpConfig = registry::config("http", config)?;
        let err = |message: String| ConfigError::new("http", message);
        let method_name = config.method.as_deref().unwrap_or("POST").trim();
        let method = Method::from_bytes(method_name.to_ascii_uppercase().as_bytes())
            .map_err(|_| err(format!("`method` {method_name:?} is not an HTTP method")))?;
        let body = match (&method, config.body) {
            (&Method::GET | &Method::HEAD, Some(_)) => {
                return Err(err(format!(
                    "a {method} request sends no body: remove `body` (placeholders may go in `url`)"
                )))
            }
            (&Method::GET | &Method::HEAD, None) => None,
            (_, Some(body)) => Some(body),
            (_, None) => Some(json!({"query": "{query}", "session_id": "{session_id}"})),
        };
        // The URL must parse once its placeholders are filled.
        let probe = fill(&config.url, |_| Some("x".to_owned()));
        http_util::parse_base_url("http", "url", &probe)?;
        let mut headers = Vec::with_capacity(config.headers.len());
        let mut secrets = Vec::new();
        for (name, value) in config.headers {
            let header = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| err(format!("`headers`: {name:?} is not a valid header name")))?;
            let value = match value {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => {
                    return Err(err(format!(
                        "`headers.{name}` must be a string, a number or a boolean"
                    )))
                }
            };
            if HeaderValue::from_str(&fill(&value, |_| Some(String::new()))).is_err() {
                return Err(err(format!(
                    "`headers.{name}` contains characters not allowed in a header"
                )));
            }
            // Every value may carry a token; the parts around a placeholder
            // or after a scheme such as `Bearer ` too.
            for part in value.split(['{', '}', ' ']) {
                if part.len() >= 8 {
                    secrets.push(part.into());
                }
            }
            let value = SecretString::from(value);
            secrets.push(value.clone());
            headers.push((header, value));
        }
        check_pointer("answer", &config.answer)?;
        check_pointer("agentic", &config.agentic)?;
        check_pointer("usage", &config.usage)?;
        let retry_on = match config.retry_on {
            Some(retry_on) => retry_on,
            None => RetryOn::new(DEFAULT_RETRY_ON).map_err(err)?,
        };
        Ok(Http {
            client: http_util::client("http")?,
            method,
            url: config.url,
            headers,
            body,
            answer: config.answer,
            agentic: config.agentic,
            usage: config.usage,
            timeout: config.timeout.map_or(REQUEST_TIMEOUT, |t| t.0),
            retry: if config.retry_timeouts {
                Retry::TransientAndTimeouts
            } else {
                Retry::TransientOnly
            },
            retry_on,
            secrets,
        })
    }

    /// `text` with every header value replaced by `***`.
    fn scrub(&self, text: &str) -> String {
        http_util::scrub_all(text, &self.secrets)
    }

    /// A reply quoted in a message: secrets scrubbed, then cut.
    fn quote(&self, text: &str) -> String {
        http_util::quote(text, &self.secrets)
    }

    fn scrubbed(&self, mut error: RunError) -> RunError {
        error.message = self.scrub(&error.message);
        error
    }

    /// The request body for `batch` (`None` for GET and HEAD).
    pub fn body(&self, batch: &Batch, session: &Session<'_>) -> Option<Value> {
        self.body
            .as_ref()
            .map(|template| fill_json(template, batch, session))
    }

    /// The URL for `batch`, placeholders percent-encoded.
    fn url(&self, batch: &Batch, session: &Session<'_>) -> Result<Url, RunError> {
        let filled = fill(&self.url, |name| {
            placeholder(name, batch, session).map(|v| percent_encode(&v))
        });
        Url::parse(&filled).map_err(|e| {
            RunError::permanent(format!(
                "invalid URL {} ({e})",
                redact_url_str(&self.scrub(&filled))
            ))
        })
    }

    fn extract(&self, bytes: &[u8], url: &Url) -> Result<Reply, RunError> {
        let text = String::from_utf8_lossy(bytes);
        let parsed: Result<Value, _> = serde_json::from_slice(bytes);
        let malformed = |e: serde_json::Error| {
            RunError::permanent(format!(
                "malformed JSON from {} ({e}): {}",
                redact_url(url),
                self.quote(&text)
            ))
        };
        let answer = match (&self.answer, parsed) {
            (None, Ok(Value::String(answer))) => answer,
            (None, Ok(other)) => {
                return Err(RunError::permanent(format!(
                    "the reply from {} is JSON, not a string: set `answer` to a JSON pointer to the answer: {}",
                    redact_url(url),
                    self.quote(&other.to_string())
                )))
            }
            (None, Err(_)) => text.into_owned(),
            (Some(_), Err(e)) => return Err(malformed(e)),
            (Some(pointer), Ok(reply)) => {
                let missing = |what: &str| {
                    RunError::permanent(format!(
                        "{what} at `answer` pointer {pointer} in the reply from {}: {}",
                        redact_url(url),
                        self.quote(&reply.to_string())
                    ))
                };
                let answer = match reply.pointer(pointer) {
                    None | Some(Value::Null) => return Err(missing("no answer")),
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    Some(Value::Bool(b)) => b.to_string(),
                    Some(_) => return Err(missing("an object or array instead of a text answer")),
                };
                let reply_agentic = self.agentic_of(&reply)?;
                if answer.trim().is_empty() {
                    return Err(missing("an empty answer"));
                }
                let mut result = Reply::text(answer);
                if let Some(agentic) = reply_agentic {
                    result = result.with_agentic(agentic);
                }
                let usage = self.usage.as_ref().and_then(|p| reply.pointer(p));
                if let Some(usage) = usage.and_then(Usage::from_counts) {
                    result = result.with_usage(usage);
                }
                return Ok(result);
            }
        };
        if answer.trim().is_empty() {
            return Err(RunError::permanent(format!(
                "empty answer from {}",
                redact_url(url)
            )));
        }
        Ok(Reply::text(answer))
    }

    fn agentic_of(&self, reply: &Value) -> Result<Option<Object>, RunError> {
        let Some(pointer) = &self.agentic else {
            return Ok(None);
        };
        match reply.pointer(pointer) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(object)) => Ok(Some(object.clone())),
            Some(_) => Err(RunError::permanent(format!(
                "the `agentic` pointer {pointer} does not point at a JSON object in the reply"
            ))),
        }
    }
}

/// `template` with its placeholders filled inside every string.
fn fill_json(template: &Value, batch: &Batch, session: &Session<'_>) -> Value {
    match template {
        Value::String(s) if s == "{history}" => Value::Array(
            session
                .answered()
                .map(|t| json!({"query": t.query, "answer": t.assistant}))
                .collect(),
        ),
        Value::String(s) if s == "{agentic}" => {
            Value::Object(batch.agentic.clone().unwrap_or_default())
        }
        Value::String(s) => Value::String(fill(s, |name| placeholder(name, batch, session))),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| fill_json(v, batch, session)).collect())
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), fill_json(v, batch, session)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[async_trait::async_trait]
impl Runner for Http {
    async fn call(&self, batch: &Batch, session: &Session<'_>) -> Result<Reply, RunError> {
        let url = self.url(batch, session)?;
        let mut headers = HeaderMap::with_capacity(self.headers.len());
        for (name, template) in &self.headers {
            let value = fill(template.expose_secret(), |n| placeholder(n, batch, session));
            let mut value = HeaderValue::from_str(&value).map_err(|_| {
                RunError::permanent(format!(
                    "header {name}: a placeholder's value is not allowed in a header"
                ))
            })?;
            value.set_sensitive(true);
            headers.append(name.clone(), value);
        }
        let mut request = self
            .client
            .request(self.method.clone(), url.clone())
            .headers(headers)
            .timeout(self.timeout);
        if let Some(body) = self.body(batch, session) {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| self.scrubbed(http_util::send_error(e, &url, self.timeout)))?;
        let response = http_util::check_status(response, &url, &self.secrets, &self.retry_on)
            .await
            .map_err(|e| self.scrubbed(e))?;
        // The agent answered: it has the turn, so a failure from here on must
        // not send it again.
        let (bytes, cut) = http_util::read_capped(response, http_util::JSON_BODY_LIMIT)
            .await
            .map_err(|e| {
                let mut error = self.scrubbed(http_util::send_error(e, &url, self.timeout));
                if error.kind == ErrorKind::Transient {
                    error.kind = ErrorKind::Permanent;
                }
                error
            })?;
        if cut {
            return Err(self.scrubbed(http_util::too_large(&url, http_util::JSON_BODY_LIMIT)));
        }
        self.extract(&bytes, &url)
    }

    fn retry(&self) -> Retry {
        self.retry
    }

    /// The values of secret-looking headers (`Authorization`, `X-Api-Key`,
    /// ...; with placeholders, their literal parts of 8+ characters) and the
    /// URL's user info and secret query values.
    fn secrets(&self) -> Vec<String> {
        let mut secrets = crate::secrets::url_secrets(&self.url);
        for (name, value) in &self.headers {
            if !crate::secrets::is_secret_name(name.as_str()) {
                continue;
            }
            let value = value.expose_secret();
            if value.contains('{') {
                let parts = value.split(['{', '}']).map(str::trim);
                secrets.extend(parts.filter(|p| p.len() >= 8).map(str::to_owned));
            } else {
                secrets.push(value.to_owned());
            }
        }
        secrets
    }
}

fn build(config: Value, _: &BuildContext) -> Result<Arc<dyn Runner>, ConfigError> {
    Ok(Arc::new(Http::from_value(config)?))
}

inventory::submit! { RunnerType { name: "http", build } }

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::BatchOutcome;
    use crate::schema::Dataset;

    #[test]
    fn fills_json_templates_and_history() {
        let mut dataset = Dataset::new("s1", "bot");
        dataset.context = "ctx \"quoted\"".into();
        let mut first = Batch::new("q1", "one");
        first.assistant = "A1".into();
        let failed = Batch::new("q2", "two");
        let history = vec![
            BatchOutcome::success(first, 1.0),
            BatchOutcome::failure(failed, RunError::permanent("boom"), 1.0),
        ];
        let session = Session::of(&dataset, &history);
        let batch = Batch::new("q3", "say \"hi\"\n{session_id}");
        let template = json!({
            "q": "{query}",
            "meta": ["{session_id}/{qa_id}", "{context}", 3, "{unknown}", "{turn}"],
            "history": "{history}",
        });
        assert_eq!(
            fill_json(&template, &batch, &session),
            json!({
                "q": "say \"hi\"\n{session_id}",
                "meta": ["s1/q3", "ctx \"quoted\"", 3, "{unknown}", "3"],
                "history": [{"query": "one", "answer": "A1"}],
            })
        );
        assert_eq!(percent_encode("a b/é?"), "a%20b%2F%C3%A9%3F");
    }

    #[test]
    fn config_errors() {
        let build = |config: Value| Http::from_value(config).expect_err("an error");
        let error = build(json!({"url": "http://h/x", "method": "GET", "body": {}}));
        assert!(error.message.contains("sends no body"), "{error}");
        let error = build(json!({"url": "http://h/x", "answer": "choices/0"}));
        assert!(error.message.contains("JSON pointer"), "{error}");
        let error = build(json!({"url": "ftp://h/x"}));
        assert!(error.message.contains("http://"), "{error}");
        let error = build(json!({"url": "http://h/x", "header": {}}));
        assert!(error.message.contains("did you mean `headers`"), "{error}");
        let error = build(json!({"url": "http://h/x", "method": "NO PE"}));
        assert!(error.message.contains("not an HTTP method"), "{error}");
        let runner = Http::from_value(
            json!({"url": "http://h/x", "headers": {"Authorization": "Bearer sekrit-token"}}),
        )
        .unwrap();
        assert!(!format!("{runner:?}").contains("sekrit"));
        assert_eq!(
            runner.scrub("rejected Bearer sekrit-token"),
            "rejected [REDACTED]"
        );
    }
}
