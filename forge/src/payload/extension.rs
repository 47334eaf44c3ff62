//! forge's extensions of the seed's payload, which let any runner run
//! remotely (`forge run --lambda` sends them; the Lambda function, `forge
//! serve` and `forge run --payload` accept them):
//!
//! - `runner: {type: ..., ...}`: a suite's `runner:` mapping **as written**,
//!   in place of `config` / `connector`. Its `${VAR}`s are replaced from the
//!   environment of the host that runs it (the function's), never sent
//!   resolved by the caller.
//! - `policy: {timeout_ms, retries, backoff_initial_ms, backoff_max_ms}`: the
//!   suite's per-turn timeout and retries, applied there as a local run
//!   applies them (its `rate_limit` is not: see the README).
//!
//! A response to a payload with `runner:` adds `turns` (see
//! [`TurnFacts`](crate::schema::TurnFacts)): each turn's time, attempts and
//! token usage, which Fair-Forge's datasets do not carry.
//!
//! The trust model: whoever may invoke the host may name its environment
//! variables, so the host's operator decides what a payload may do with
//! them. A `runner:` is accepted only when its type is listed in
//! [`RUNNERS_ENV`] (`FORGE_PAYLOAD_RUNNERS=alquimia,openai`, or `*`); never
//! list `command` on a host untrusted callers reach (it runs programs).
//! A mapping that uses a `${VAR}`, or whose runner takes a key from the
//! environment by itself (an `openai` or `alquimia` mapping without
//! `api_key`), may name URLs only of hosts the operator allows (`FORGE_ALLOWED_HOSTS`, `--allow-host`), unless the URL itself
//! comes from the environment (`base_url: ${ALQUIMIA_BASE_URL}`): the
//! host's values, like its `ALQUIMIA_API_KEY` / `LLM_API_KEY`, go only to
//! where the operator said.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::HostKeys;
use crate::error::ConfigError;
use crate::policy::{Backoff, Policy};
use crate::registry::{self, BuildContext};
use crate::runner::Runner;
use crate::schema::json_kind;

/// Environment variable listing the runner types a payload's `runner:` may
/// name, separated by commas or spaces (cargo-lambda's `--env-var` splits at
/// commas: use spaces there), or `*` for every type this binary has. Unset or
/// empty: payloads may not carry a `runner:`.
pub const RUNNERS_ENV: &str = "FORGE_PAYLOAD_RUNNERS";

/// The longest per-turn timeout a `policy:` may ask for: a Lambda
/// invocation's own limit.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// The most retries a `policy:` may ask for.
pub const MAX_RETRIES: u32 = 100;

/// The `policy:` extension: a suite's per-turn timeout and retries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// The per-turn timeout, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Retries of a failed turn that may be retried.
    #[serde(default)]
    pub retries: u32,
    /// The delay before the first retry, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_initial_ms: Option<u64>,
    /// The longest delay between retries, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_max_ms: Option<u64>,
}

impl PolicySpec {
    /// What a suite's policy sends (its rate limit is not sent).
    pub fn of(policy: &Policy) -> Self {
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        PolicySpec {
            timeout_ms: policy.timeout.map(millis),
            retries: policy.retries,
            backoff_initial_ms: Some(millis(policy.backoff.initial)),
            backoff_max_ms: Some(millis(policy.backoff.max)),
        }
    }

    /// The policy it asks for, bounded ([`MAX_TIMEOUT`], [`MAX_RETRIES`]).
    pub fn policy(&self) -> Result<Policy, String> {
        let bounded = |ms: u64, what: &str| {
            let duration = Duration::from_millis(ms);
            match duration > MAX_TIMEOUT || duration.is_zero() {
                true => Err(format!(
                    "`policy.{what}` must be between 1 and {} ms",
                    MAX_TIMEOUT.as_millis()
                )),
                false => Ok(duration),
            }
        };
        if self.retries > MAX_RETRIES {
            return Err(format!("`policy.retries` must be at most {MAX_RETRIES}"));
        }
        let backoff = Backoff {
            initial: match self.backoff_initial_ms {
                Some(ms) => bounded(ms, "backoff_initial_ms")?,
                None => Backoff::DEFAULT.initial,
            },
            max: match self.backoff_max_ms {
                Some(ms) => bounded(ms, "backoff_max_ms")?,
                None => Backoff::DEFAULT.max,
            },
        };
        Ok(Policy {
            timeout: self
                .timeout_ms
                .map(|ms| bounded(ms, "timeout_ms"))
                .transpose()?,
            retries: self.retries,
            backoff,
            ..Policy::default()
        })
    }
}

/// The payload's `policy:`, when it has one.
pub(super) fn policy(payload: &Map<String, Value>) -> Result<Option<Policy>, String> {
    match payload.get("policy") {
        None | Some(Value::Null) => Ok(None),
        Some(value) => {
            let spec: PolicySpec = serde_json::from_value(value.clone())
                .map_err(|e| format!("invalid `policy`: {e}"))?;
            spec.policy().map(Some)
        }
    }
}

/// Builds the runner of a payload's `runner:` mapping, under the rules of
/// the module documentation.
pub(super) fn build(written: &Value, host_keys: &HostKeys) -> Result<Arc<dyn Runner>, ConfigError> {
    let kind = runner_type(written)?;
    let allowed = allowed_types(&std::env::var(RUNNERS_ENV).unwrap_or_default());
    if !allowed.iter().any(|t| t == "*" || t == kind) {
        return Err(ConfigError::new(
            kind,
            format!(
                "this host does not run `runner: {{type: {kind}}}` payloads: its operator lists \
                 the runner types payloads may use in {RUNNERS_ENV} (`{kind}`, or `*` for all)"
            ),
        ));
    }
    let mut runner = written.clone();
    crate::suite::interpolate_runner(&mut runner).map_err(|e| {
        ConfigError::new(kind, format!("{e} on this host (the payload's `runner:`)"))
    })?;
    let built = registry::build(runner, &BuildContext::default())?;
    if uses_environment(written) || has_unwritten_secret(written, &built.secrets()) {
        check_hosts(kind, written, host_keys)?;
    }
    Ok(built)
}

/// Whether the runner sends a credential the mapping does not hold: one it
/// took from the environment by itself (`openai` and `alquimia` fall back
/// to `OPENAI_API_KEY` / `ALQUIMIA_API_KEY` when `api_key` is missing), so
/// the host's value would go to the URLs the payload wrote.
fn has_unwritten_secret(written: &Value, secrets: &[String]) -> bool {
    secrets
        .iter()
        .filter(|secret| !secret.is_empty())
        .any(|secret| !strings(written).any(|text| text.contains(secret.as_str())))
}

/// The `type` of a `runner:` mapping.
fn runner_type(runner: &Value) -> Result<&str, ConfigError> {
    let Some(map) = runner.as_object() else {
        return Err(ConfigError::new(
            "?",
            format!("`runner` must be a mapping, found {}", json_kind(runner)),
        ));
    };
    map.get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| ConfigError::new("?", "`runner` must have a string `type`"))
}

/// The entries of a [`RUNNERS_ENV`] value.
fn allowed_types(listed: &str) -> Vec<String> {
    listed
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Whether a mapping as written reads the environment (`${VAR}`; `$${`
/// is an escaped `${`).
fn uses_environment(value: &Value) -> bool {
    strings(value).any(|s| s.replace("$${", "").contains("${"))
}

/// Every string inside `value`.
fn strings(value: &Value) -> Box<dyn Iterator<Item = &str> + '_> {
    match value {
        Value::String(s) => Box::new(std::iter::once(s.as_str())),
        Value::Array(items) => Box::new(items.iter().flat_map(strings)),
        Value::Object(map) => Box::new(map.values().flat_map(strings)),
        _ => Box::new(std::iter::empty()),
    }
}

/// The URLs the payload wrote itself (not from a `${VAR}`) must be of
/// allowed hosts.
fn check_hosts(kind: &str, written: &Value, host_keys: &HostKeys) -> Result<(), ConfigError> {
    for text in strings(written).filter(|s| !s.trim_start().starts_with("${")) {
        let Ok(url) = Url::parse(text.trim()) else {
            continue;
        };
        if !matches!(url.scheme(), "http" | "https" | "ws" | "wss") || host_keys.allows(&url) {
            continue;
        }
        let host = match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            (None, _) => continue,
        };
        return Err(ConfigError::new(
            kind,
            format!(
                "the payload's `runner:` reads this host's environment (`${{VAR}}`) and names \
                 {host}, which its operator does not allow: values of the host's environment go \
                 only to URLs from its environment or to allowed hosts (`--allow-host {host}` or \
                 FORGE_ALLOWED_HOSTS={host})"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_environment_is_read_only_when_the_mapping_names_it() {
        assert!(uses_environment(&json!({"api_key": "${KEY}"})));
        assert!(uses_environment(&json!({"h": ["x", {"k": "a${B:-c}"}]})));
        assert!(!uses_environment(
            &json!({"api_key": "plain", "t": "$${escaped}"})
        ));
    }

    #[test]
    fn written_urls_need_allowed_hosts() {
        let allowed = HostKeys::default().allow(["127.0.0.1"]);
        let ok = json!({"type": "http", "url": "http://127.0.0.1:9/x", "k": "${K}"});
        assert!(check_hosts("http", &ok, &allowed).is_ok());
        let from_env = json!({"type": "http", "url": "${URL}", "k": "${K}"});
        assert!(check_hosts("http", &from_env, &HostKeys::default()).is_ok());
        let elsewhere = json!({"type": "http", "url": "https://evil.example/x", "k": "${K}"});
        let error = check_hosts("http", &elsewhere, &allowed).expect_err("not allowed");
        assert!(error.message.contains("evil.example"), "{error}");
    }

    #[test]
    fn a_credential_the_runner_took_from_the_environment_is_environment_use() {
        let written =
            json!({"type": "openai", "base_url": "https://x.example", "api_key": "sk-own-1234"});
        assert!(!has_unwritten_secret(&written, &["sk-own-1234".to_owned()]));
        assert!(!has_unwritten_secret(&written, &[]));
        let bare = json!({"type": "openai", "base_url": "https://x.example", "model": "m"});
        assert!(has_unwritten_secret(
            &bare,
            &["sk-host-key-5678".to_owned()]
        ));
    }

    #[test]
    fn policies_are_bounded() {
        let spec = PolicySpec {
            timeout_ms: Some(2_000),
            retries: 3,
            ..PolicySpec::default()
        };
        let policy = spec.policy().expect("valid");
        assert_eq!(policy.timeout, Some(Duration::from_secs(2)));
        assert_eq!(policy.retries, 3);
        assert_eq!(
            PolicySpec::of(&policy).policy().expect("round trip"),
            policy
        );
        let long = PolicySpec {
            timeout_ms: Some(16 * 60 * 1000),
            ..PolicySpec::default()
        };
        assert!(long.policy().is_err());
        let many = PolicySpec {
            retries: MAX_RETRIES + 1,
            ..PolicySpec::default()
        };
        assert!(many.policy().is_err());
    }

    #[test]
    fn listed_types() {
        assert_eq!(
            allowed_types(" alquimia, openai ,,"),
            ["alquimia", "openai"]
        );
        assert!(allowed_types("").is_empty());
    }
}
