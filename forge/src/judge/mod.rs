//! The judge: an OpenAI-compatible chat-completions endpoint that judged
//! checks (`answer_correctness`, `rubric`) ask about an answer.
//!
//! ```yaml
//! judge:
//!   base_url: https://api.openai.com/v1   # or FORGE_JUDGE_BASE_URL; before /chat/completions
//!   api_key: ${OPENAI_API_KEY}            # or FORGE_JUDGE_API_KEY; "" sends no key
//!   model: gpt-4o-mini                    # or FORGE_JUDGE_MODEL
//!   params: {temperature: 0}              # passed into the request body (temperature 0 unless set)
//!   votes: 3                              # an odd number: asked N times, majority verdict, mean score
//!   response_format: true                 # sends {"type": "json_object"} (default false)
//!   price: {input_per_mtok: 0.15, output_per_mtok: 0.6}   # USD per million tokens (default: none)
//! ```
//!
//! A suite's `judge:` may be overridden key by key by a dataset's. A suite
//! with no `judge:` anywhere takes its judge from the environment when
//! `FORGE_JUDGE_BASE_URL` is set. The judge's key is a secret of the suite:
//! redacted from every output, sent only to the judge's own origin.
//!
//! [`ruling`] reads a verdict from the judge's reply; [`client`] sends the
//! questions under the suite's policy.

pub mod client;
pub mod ruling;

use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::runners::http_util;
use crate::schema::Object;
use crate::usage::Price;

pub use client::{Judge, JudgePool};
pub use ruling::Ruling;

/// Environment variable `base_url` falls back to; when set, a suite with
/// no `judge:` has a judge.
pub const BASE_URL_ENV: &str = "FORGE_JUDGE_BASE_URL";
/// Environment variable `api_key` falls back to.
pub const API_KEY_ENV: &str = "FORGE_JUDGE_API_KEY";
/// Environment variable `model` falls back to.
pub const MODEL_ENV: &str = "FORGE_JUDGE_MODEL";
/// The most `votes` a judge may take.
pub const MAX_VOTES: usize = 15;

/// Request body keys forge sets itself; `params` may not hold them.
const RESERVED_PARAMS: &[&str] = &["model", "messages", "stream"];

/// The `judge:` mapping as a suite writes it.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct JudgeConfig {
    /// The judge's OpenAI-compatible base URL (`FORGE_JUDGE_BASE_URL`).
    #[serde(default)]
    base_url: Option<String>,
    /// Its API key (`FORGE_JUDGE_API_KEY`).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    api_key: Option<SecretString>,
    /// Its model (`FORGE_JUDGE_MODEL`).
    #[serde(default)]
    model: Option<String>,
    /// Extra request body entries (temperature 0 unless set).
    #[serde(default)]
    params: Option<Object>,
    /// How many times each turn is judged (odd, at most 15): majority verdict, mean score.
    #[serde(default)]
    votes: Option<usize>,
    /// Whether to ask for a JSON reply (`response_format`).
    #[serde(default)]
    response_format: Option<bool>,
    /// What the judge's tokens cost.
    #[serde(default)]
    price: Option<Price>,
}

/// A judge's checked configuration: where and how to ask. Its `Debug`
/// shows neither the key nor the URL's credentials.
#[derive(Clone)]
pub struct JudgeSpec {
    url: Url,
    api_key: Option<SecretString>,
    model: String,
    params: Object,
    votes: usize,
    response_format: bool,
    price: Option<Price>,
}

impl std::fmt::Debug for JudgeSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JudgeSpec")
            .field("judge", &self.name())
            .field("votes", &self.votes)
            .finish_non_exhaustive()
    }
}

impl JudgeSpec {
    /// The judge of a `judge:` mapping (`${VAR}`s already replaced), its
    /// missing keys taken from the environment; the error says what is
    /// missing or wrong.
    pub fn resolve(mapping: Value) -> Result<JudgeSpec, String> {
        let config: JudgeConfig =
            serde_json::from_value(mapping).map_err(|e| format!("invalid `judge`: {e}"))?;
        let base_url = http_util::setting_or_env(config.base_url, BASE_URL_ENV).ok_or(format!(
            "the judge has no `base_url` (set `judge.base_url` or {BASE_URL_ENV})"
        ))?;
        let model = http_util::setting_or_env(config.model, MODEL_ENV).ok_or(format!(
            "the judge has no `model` (set `judge.model` or {MODEL_ENV})"
        ))?;
        let base = http_util::parse_base_url("judge", "judge.base_url", &base_url)
            .map_err(|e| e.message)?;
        let api_key = match config.api_key {
            Some(key) if key.expose_secret().trim().is_empty() => None,
            key => http_util::secret_or_env(key, API_KEY_ENV),
        };
        if let Some(key) = &api_key {
            bearer(key)?;
        }
        let votes = config.votes.unwrap_or(1);
        if votes.is_multiple_of(2) || votes > MAX_VOTES {
            return Err(format!(
                "`judge.votes` {votes} must be an odd number from 1 to {MAX_VOTES}"
            ));
        }
        let mut params = config.params.unwrap_or_default();
        if let Some(key) = RESERVED_PARAMS.iter().find(|k| params.contains_key(**k)) {
            return Err(format!(
                "`judge.params.{key}` is not allowed: forge sets `{key}` itself"
            ));
        }
        params.entry("temperature").or_insert(json!(0));
        let price = config
            .price
            .map(|p| p.check().map_err(|e| format!("judge: {e}")))
            .transpose()?;
        Ok(JudgeSpec {
            url: http_util::join_segments(&base, ["chat", "completions"]),
            api_key,
            model,
            params,
            votes,
            response_format: config.response_format.unwrap_or(false),
            price,
        })
    }

    /// Whether a suite with no `judge:` has one from the environment.
    pub fn in_environment() -> bool {
        http_util::setting_or_env(None, BASE_URL_ENV).is_some()
    }

    /// `model @ host[:port]`: how messages name the judge (no secret).
    pub fn name(&self) -> String {
        let host = self.url.host_str().unwrap_or("?");
        match self.url.port() {
            Some(port) => format!("{} @ {host}:{port}", self.model),
            None => format!("{} @ {host}", self.model),
        }
    }

    /// What to keep out of every output: the key and the URL's credentials.
    pub fn secrets(&self) -> Vec<String> {
        let mut values = crate::secrets::url_secrets(self.url.as_str());
        values.extend(self.api_key.iter().map(|k| k.expose_secret().to_owned()));
        values
    }

    /// What its tokens cost (`price:`), when it says.
    pub fn price(&self) -> Option<&Price> {
        self.price.as_ref()
    }

    /// How many times each question is asked.
    pub fn votes(&self) -> usize {
        self.votes
    }

    /// The request body asking `prompt`.
    fn body(&self, prompt: &Prompt) -> Value {
        let mut body = Object::new();
        body.insert("model".into(), json!(self.model));
        body.insert(
            "messages".into(),
            json!([
                {"role": "system", "content": prompt.system},
                {"role": "user", "content": prompt.user},
            ]),
        );
        for (key, value) in &self.params {
            body.insert(key.clone(), value.clone());
        }
        if self.response_format {
            body.insert("response_format".into(), json!({"type": "json_object"}));
        }
        Value::Object(body)
    }
}

/// The `Authorization` value of `key`, marked sensitive.
fn bearer(key: &SecretString) -> Result<reqwest::header::HeaderValue, String> {
    let mut value =
        reqwest::header::HeaderValue::from_str(&format!("Bearer {}", key.expose_secret()))
            .map_err(|_| {
                "`judge.api_key` contains characters not allowed in a header".to_owned()
            })?;
    value.set_sensitive(true);
    Ok(value)
}

/// `outer` with the keys of `inner` over it: a dataset's `judge:` over the
/// suite's, key by key.
pub fn merge(outer: Option<&Value>, inner: Option<&Value>) -> Option<Value> {
    match (outer, inner) {
        (Some(Value::Object(outer)), Some(Value::Object(inner))) => {
            let mut merged = outer.clone();
            merged.extend(inner.iter().map(|(k, v)| (k.clone(), v.clone())));
            Some(Value::Object(merged))
        }
        (outer, inner) => inner.or(outer).cloned(),
    }
}

/// What a judged check asks: a system message and a user message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    /// The system message: the rubric and the verdict's format.
    pub system: String,
    /// The user message.
    pub user: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_checks() {
        let spec = JudgeSpec::resolve(json!({
            "base_url": "http://127.0.0.1:9/v1", "api_key": "k-123456789", "model": "m",
            "params": {"max_tokens": 50}, "votes": 3, "response_format": true
        }))
        .expect("valid");
        assert_eq!(spec.url.as_str(), "http://127.0.0.1:9/v1/chat/completions");
        assert_eq!(spec.name(), "m @ 127.0.0.1:9");
        assert!(!format!("{spec:?}").contains("k-123456789"));
        let body = spec.body(&Prompt {
            system: "s".into(),
            user: "u".into(),
        });
        assert_eq!(body["temperature"], json!(0));
        assert_eq!(body["max_tokens"], json!(50));
        assert_eq!(body["response_format"], json!({"type": "json_object"}));
        assert_eq!(body["messages"][1], json!({"role": "user", "content": "u"}));
        for (mapping, error) in [
            (
                json!({"base_url": "http://h/v1", "model": "m", "votes": 2}),
                "odd",
            ),
            (
                json!({"base_url": "http://h/v1", "model": "m", "params": {"stream": true}}),
                "params.stream",
            ),
            (json!({"base_url": "ftp://h", "model": "m"}), "http://"),
            (
                json!({"base_url": "http://h", "modle": "m"}),
                "unknown field",
            ),
        ] {
            let message = JudgeSpec::resolve(mapping).expect_err(error);
            assert!(message.contains(error), "{message}");
        }
    }

    #[test]
    fn a_dataset_overrides_the_suite_key_by_key() {
        let suite = json!({"base_url": "http://a/v1", "model": "small"});
        let dataset = json!({"model": "large"});
        assert_eq!(
            merge(Some(&suite), Some(&dataset)),
            Some(json!({"base_url": "http://a/v1", "model": "large"}))
        );
        assert_eq!(merge(Some(&suite), None), Some(suite.clone()));
        assert_eq!(merge(None, Some(&dataset)), Some(dataset));
    }
}
