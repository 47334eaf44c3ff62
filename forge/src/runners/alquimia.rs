//! `type: alquimia` — Alquimia agents: an infer request, then the answer
//! streamed as server-sent events.
//!
//! ```yaml
//! runner:
//!   type: alquimia
//!   base_url: ${ALQUIMIA_BASE_URL}   # falls back to ALQUIMIA_BASE_URL when missing or empty
//!   api_key: ${ALQUIMIA_API_KEY}     # falls back to ALQUIMIA_API_KEY when missing or empty
//!   agent_id: my-agent
//!   channel_id: web
//!   api_version: v1                  # optional
//!   retry_on: [429, 503]             # optional: statuses retried (default 408, 409, 429, 5xx)
//! ```
//!
//! Per turn:
//!
//! 1. `POST {base}/event/infer/{channel_id}/{agent_id}?chat_history=50&agentspace=_default`
//!    with `Authorization: Bearer {api_key}` and the JSON body
//!    `{"query", "session_id", "extra_data", "attachments": []}`. `extra_data`
//!    holds the batch's `agentic` entries plus `"date": "YYYY-MM-DD"`, today
//!    in the machine's **local** time zone (a `date` the batch's `agentic`
//!    already sets wins, so a suite can pin it). The reply carries a `stream_id`.
//! 2. `GET {base}/event/stream/{stream_id}?response_only=true` with
//!    `Accept: text/event-stream`; the answer is `response.data.content` of
//!    the last event carrying one (answers grow over several events). The
//!    stream ends when the body ends or with a `[DONE]` event. Events are
//!    decoded by the `sse` module: comments, `event:`, `id:` and `retry:` lines
//!    are ignored, and so is an event whose data is not JSON (keep-alives
//!    such as `data: ping`), as the reference client does.
//!
//! `{base}` is `base_url` followed by `/{api_version}` when one is set. The
//! infer request times out after 60 s, the stream after 300 s.
//!
//! A turn the agent may have accepted is never sent twice: when the engine
//! retries a turn whose stream dropped or timed out, the runner re-attaches
//! to the stream it already has instead of sending the query again (within
//! the stream timeout plus a minute of the turn's acceptance; an older entry
//! is left over from a run that gave up, and the turn is sent afresh). An
//! infer request that fails after it may have reached the agent (a timeout,
//! a cut connection, an unreadable reply) is a permanent error; only a
//! failure to connect, or an answer with a status of `retry_on` (by default
//! 408, 409, 429 and 5xx: the agent answered, and not with a stream), is
//! retried. A turn cut off by the suite's timeout *during* the infer request
//! leaves an "in flight" mark, and the retry fails at once ("the agent may
//! already have this turn ...") instead of sending it again. Re-attaching is
//! always safe, so any failure to get or read the stream before its end (a
//! refused, reset or closed connection, a status of `retry_on`) is
//! transient, a timeout too.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Datelike;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION};
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::http_util::{self, redact_url, RetryOn};
use super::json_pick::{self, MaybeStr};
use super::sse;
use crate::error::{ConfigError, ErrorKind, RunError};
use crate::registry::{self, BuildContext, RunnerType};
use crate::runner::{Reply, Runner, Session};
use crate::schema::{Batch, Object};

/// Environment variable `base_url` falls back to.
pub const BASE_URL_ENV: &str = "ALQUIMIA_BASE_URL";
/// Environment variable `api_key` falls back to.
pub const API_KEY_ENV: &str = "ALQUIMIA_API_KEY";
/// Timeout of the infer request.
pub const INFER_TIMEOUT: Duration = Duration::from_secs(60);
/// Timeout of the answer stream.
pub const STREAM_TIMEOUT: Duration = Duration::from_secs(300);

/// How long after [`STREAM_TIMEOUT`] (plus the retry backoff) a stream is
/// still re-attached to.
const REATTACH_GRACE: Duration = Duration::from_secs(60);

/// Entries kept before stale ones are pruned.
const PENDING_PRUNE_AT: usize = 1024;

/// The `alquimia` runner's configuration, as written in a suite or payload.
#[derive(Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlquimiaConfig {
    /// The API's base URL; falls back to `ALQUIMIA_BASE_URL`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// The API key; falls back to `ALQUIMIA_API_KEY`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub api_key: Option<SecretString>,
    /// The agent to talk to (required).
    #[serde(default)]
    pub agent_id: Option<String>,
    /// The channel of the agent (required: it is part of the URL).
    #[serde(default)]
    pub channel_id: Option<String>,
    /// The API version path segment(s), such as `v1`; empty for none.
    #[serde(default)]
    pub api_version: Option<String>,
    /// The HTTP statuses retried (default: 408, 409,
    /// 429 and 5xx).
    #[serde(default)]
    pub retry_on: Option<RetryOn>,
}

/// Written by hand only to show `base_url` without the credentials it may
/// carry (user info, secret query values); `api_key` hides itself.
impl std::fmt::Debug for AlquimiaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlquimiaConfig")
            .field(
                "base_url",
                &self.base_url.as_deref().map(http_util::redact_url_str),
            )
            .field("api_key", &self.api_key)
            .field("agent_id", &self.agent_id)
            .field("channel_id", &self.channel_id)
            .field("api_version", &self.api_version)
            .field("retry_on", &self.retry_on)
            .finish()
    }
}

/// The `alquimia` runner. Build it with [`Alquimia::new`] or from a suite's
/// `runner: {type: alquimia, ...}`. It keeps one pooled HTTP client.
pub struct Alquimia {
    client: reqwest::Client,
    infer_url: Url,
    stream_base: Url,
    api_key: SecretString,
    auth: HeaderValue,
    /// Turns sent whose answer has not been read yet, by
    /// `(assistant_id, session_id, qa_id)`: datasets of different assistants
    /// may share a session id and qa ids (Fair-Forge best-of datasets).
    pending: Mutex<HashMap<PendingKey, Pending>>,
    infer_timeout: Duration,
    stream_timeout: Duration,
    retry_on: RetryOn,
}

/// Written by hand to show the infer URL without the credentials `base_url`
/// may carry, and to leave out the HTTP client and the pending turns;
/// `api_key` hides itself.
impl std::fmt::Debug for Alquimia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alquimia")
            .field("infer_url", &redact_url(&self.infer_url))
            .field("api_key", &self.api_key)
            .finish_non_exhaustive()
    }
}

/// The key of a turn in [`Alquimia`]'s pending map: its assistant id,
/// session id and qa id, each but the last after its length (so no two
/// turns share a key), in one allocation.
type PendingKey = String;

fn pending_key(assistant_id: &str, session_id: &str, qa_id: &str) -> PendingKey {
    use std::fmt::Write as _;
    let mut key = String::with_capacity(assistant_id.len() + session_id.len() + qa_id.len() + 8);
    // Writing to a String cannot fail.
    let _ = write!(
        key,
        "{}:{assistant_id}{}:{session_id}",
        assistant_id.len(),
        session_id.len()
    );
    key.push_str(qa_id);
    key
}

/// Where a sent turn stands.
#[derive(Debug, Clone)]
enum Pending {
    /// The infer request is (or was, when the attempt was cut off by the
    /// suite's timeout) on its way: the agent may have the turn, and we do
    /// not know its stream. Since when.
    InFlight(Instant),
    /// The agent accepted the turn: its stream id, and when.
    Accepted(String, Instant),
}

impl Pending {
    fn since(&self) -> Instant {
        match self {
            Pending::InFlight(at) | Pending::Accepted(_, at) => *at,
        }
    }
}

/// Message of a turn whose earlier attempt was cut off during infer.
pub const INFER_CUT_OFF: &str = "the agent may already have this turn (an earlier attempt was cut off during infer); not sending it twice";

fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

impl Alquimia {
    /// Builds the runner: applies the environment fallbacks and checks that
    /// `base_url`, `api_key`, `agent_id` and `channel_id` are set. Nothing
    /// is sent.
    pub fn new(config: AlquimiaConfig) -> Result<Self, ConfigError> {
        let err = |message: String| ConfigError::new("alquimia", message);
        let base_url =
            http_util::setting_or_env(config.base_url, BASE_URL_ENV).ok_or_else(|| {
                err(format!(
                    "missing `base_url`: set it or the {BASE_URL_ENV} environment variable"
                ))
            })?;
        let api_key = http_util::secret_or_env(config.api_key, API_KEY_ENV).ok_or_else(|| {
            err(format!(
                "missing `api_key`: set it or the {API_KEY_ENV} environment variable"
            ))
        })?;
        let agent_id = non_empty(config.agent_id)
            .ok_or_else(|| err("missing `agent_id`: the agent to test".into()))?;
        let channel_id = non_empty(config.channel_id)
            .ok_or_else(|| err("missing `channel_id`: the agent's channel".into()))?;
        let mut base = http_util::parse_base_url("alquimia", "base_url", &base_url)?;
        if let Some(version) = non_empty(config.api_version) {
            base = http_util::join_segments(&base, version.split('/').filter(|s| !s.is_empty()));
        }
        let mut infer_url = http_util::join_segments(
            &base,
            ["event", "infer", channel_id.as_str(), agent_id.as_str()],
        );
        infer_url
            .query_pairs_mut()
            .append_pair("chat_history", "50")
            .append_pair("agentspace", "_default");
        let stream_base = http_util::join_segments(&base, ["event", "stream"]);
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", api_key.expose_secret()))
            .map_err(|_| err("`api_key` contains characters not allowed in a header".into()))?;
        auth.set_sensitive(true);
        Ok(Alquimia {
            client: http_util::client("alquimia")?,
            infer_url,
            stream_base,
            api_key,
            auth,
            pending: Mutex::new(HashMap::new()),
            infer_timeout: INFER_TIMEOUT,
            stream_timeout: STREAM_TIMEOUT,
            retry_on: config.retry_on.unwrap_or_default(),
        })
    }

    /// Builds the runner from a JSON configuration (a suite's `runner:`
    /// mapping without `type`).
    pub fn from_value(config: Value) -> Result<Self, ConfigError> {
        Alquimia::new(registry::config("alquimia", config)?)
    }

    /// Sets the timeouts of the infer request and of the stream
    /// (default [`INFER_TIMEOUT`] and [`STREAM_TIMEOUT`]).
    pub fn with_timeouts(mut self, infer: Duration, stream: Duration) -> Self {
        self.infer_timeout = infer;
        self.stream_timeout = stream;
        self
    }

    /// The infer URL (no secret in it).
    pub fn infer_url(&self) -> &Url {
        &self.infer_url
    }

    fn secrets(&self) -> &[SecretString] {
        std::slice::from_ref(&self.api_key)
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<PendingKey, Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long an accepted turn's stream may be re-attached to. Past it,
    /// the entry is from a run that gave up, and the turn is sent afresh.
    fn reattach_window(&self) -> Duration {
        self.stream_timeout + REATTACH_GRACE
    }

    /// Sends the turn; returns the stream id the agent answers on.
    ///
    /// Once the request may have been written, a failure is permanent: the
    /// agent may have the turn, and sending it again could answer it twice.
    /// Only a failure to connect and an answer with a status of `retry_on`
    /// (the agent answered without taking the turn) stay transient.
    async fn infer(&self, batch: &Batch, session: &Session<'_>) -> Result<String, RunError> {
        let url = &self.infer_url;
        let body = InferBody {
            query: &batch.query,
            session_id: session.session_id,
            extra_data: ExtraData {
                agentic: batch.agentic.as_ref(),
            },
            attachments: &[],
        };
        let response = self
            .client
            .post(url.clone())
            .header(AUTHORIZATION, self.auth.clone())
            .timeout(self.infer_timeout)
            .json(&body)
            .send()
            .await
            .map_err(|e| {
                let connect = e.is_connect();
                let error = http_util::send_error(e, url, self.infer_timeout);
                if connect {
                    error
                } else {
                    may_have_the_turn(error)
                }
            })?;
        let response =
            http_util::check_status(response, url, self.secrets(), &self.retry_on).await?;
        let reply = http_util::read_body(response, url, self.infer_timeout)
            .await
            .map_err(may_have_the_turn)?;
        // The stream id alone, without a JSON tree of the reply; anything
        // else (no usable id, or not UTF-8) goes the general way below.
        if let Ok(Some(id)) = std::str::from_utf8(&reply)
            .map_err(|_| ())
            .and_then(|text| json_pick::pick::<Value>(text, &["stream_id"]).map_err(|_| ()))
        {
            if let Some(id) = stream_id(&id) {
                return Ok(id);
            }
        }
        let reply =
            http_util::parse_json(&reply, url, self.secrets()).map_err(may_have_the_turn)?;
        reply.get("stream_id").and_then(stream_id).ok_or_else(|| {
            RunError::permanent(format!(
                "No stream_id returned from agent: {}",
                http_util::quote(&reply.to_string(), self.secrets())
            ))
        })
    }

    /// Reads the answer from stream `stream_id`.
    ///
    /// Reading a stream again is always safe, so a failure before its end is
    /// transient (a timeout stays [`ErrorKind::Timeout`]); a refused
    /// redirect, a status outside `retry_on`, a stream over the size caps and
    /// `[DONE]` (or an answer event) with an empty answer are permanent.
    async fn stream(&self, stream_id: &str) -> Result<String, RunError> {
        let mut url = http_util::join_segments(&self.stream_base, [stream_id]);
        url.query_pairs_mut().append_pair("response_only", "true");
        let limit = self.stream_timeout;
        let dropped = |e: reqwest::Error| {
            let redirect = e.is_redirect();
            let error = http_util::send_error(e, &url, limit);
            if redirect || error.kind == ErrorKind::Timeout {
                return error;
            }
            RunError::transient(format!(
                "stream {stream_id} dropped before it ended: {}",
                error.message
            ))
        };
        let response = self
            .client
            .get(url.clone())
            .header(AUTHORIZATION, self.auth.clone())
            .header(ACCEPT, "text/event-stream")
            .timeout(limit)
            .send()
            .await
            .map_err(dropped)?;
        let mut response =
            http_util::check_status(response, &url, self.secrets(), &self.retry_on).await?;
        let mut decoder = sse::Decoder::new(sse::Limits::default());
        let mut answer: Option<String> = None;
        let mut done = false;
        while let Some(chunk) = response.chunk().await.map_err(dropped)? {
            let flow = decoder
                .feed_each(&chunk, |event| answer_event(event.data, &mut answer))
                .map_err(|what| {
                    RunError::permanent(format!(
                        "stream {stream_id} from {} sent {what}; not read",
                        redact_url(&url)
                    ))
                })?;
            if flow.is_break() {
                done = true;
                break;
            }
        }
        match answer {
            Some(answer) if !answer.trim().is_empty() => Ok(answer),
            Some(_) => Err(RunError::permanent("Empty response from agent")),
            None if done => Err(RunError::permanent("Empty response from agent")),
            // The body ended without a single answer event and without
            // `[DONE]`: the stream was most likely cut; re-attaching may work.
            None => Err(RunError::transient(format!(
                "Empty response from agent: stream {stream_id} ended before any answer"
            ))),
        }
    }
}

/// An infer failure after the request may have reached the agent: permanent,
/// saying why it is not retried.
fn may_have_the_turn(mut error: RunError) -> RunError {
    if error.kind != ErrorKind::Permanent {
        error.kind = ErrorKind::Permanent;
        error.retry_after = None;
        error.message = format!(
            "{} (the agent may already have this turn; not sending it twice)",
            error.message
        );
    }
    error
}

/// Reads one stream event into `answer`: its `response.data.content` when
/// it has one (the latest wins; answers grow over several events). Breaks
/// at `[DONE]`. Keep-alives (`data: ping`) and other non-JSON data are
/// skipped, as the reference client does.
fn answer_event(data: &str, answer: &mut Option<String>) -> ControlFlow<()> {
    let data = data.trim();
    if data == "[DONE]" {
        return ControlFlow::Break(());
    }
    if let Ok(Some(MaybeStr(Some(content)))) = json_pick::pick::<MaybeStr>(data, ANSWER_PATH) {
        let kept = answer.get_or_insert_with(String::new);
        kept.clear();
        kept.push_str(&content);
    }
    ControlFlow::Continue(())
}

/// Where an answer event carries the answer.
const ANSWER_PATH: &[&str] = &["response", "data", "content"];

/// The stream id of an infer reply's `stream_id`: a non-empty string or a number.
fn stream_id(id: &Value) -> Option<String> {
    match id {
        Value::String(id) if !id.is_empty() => Some(id.clone()),
        Value::Number(id) => Some(id.to_string()),
        _ => None,
    }
}

/// The infer request's body: `{"query", "session_id", "extra_data",
/// "attachments": []}`, serialized straight from the batch.
#[derive(Serialize)]
struct InferBody<'a> {
    query: &'a str,
    session_id: &'a str,
    extra_data: ExtraData<'a>,
    attachments: &'a [Value],
}

/// `extra_data` of the infer request: the batch's `agentic` entries plus
/// today's local date, unless `agentic` sets `date` itself.
struct ExtraData<'a> {
    agentic: Option<&'a Object>,
}

impl Serialize for ExtraData<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (key, value) in self.agentic.into_iter().flatten() {
            map.serialize_entry(key, value)?;
        }
        if !self.agentic.is_some_and(|a| a.contains_key("date")) {
            map.serialize_entry("date", &today())?;
        }
        map.end()
    }
}

/// Today in the machine's local time zone, as `YYYY-MM-DD`.
fn today() -> String {
    let today = chrono::Local::now().date_naive();
    if (0..=9999).contains(&today.year()) {
        format!(
            "{:04}-{:02}-{:02}",
            today.year(),
            today.month(),
            today.day()
        )
    } else {
        today.format("%Y-%m-%d").to_string()
    }
}

#[async_trait::async_trait]
impl Runner for Alquimia {
    async fn call(&self, batch: &Batch, session: &Session<'_>) -> Result<Reply, RunError> {
        let key = pending_key(session.assistant_id, session.session_id, &batch.qa_id);
        let window = self.reattach_window();
        let remembered = {
            let mut pending = self.pending();
            match pending.get(&key) {
                Some(Pending::InFlight(since)) if since.elapsed() < window => {
                    // An earlier attempt was dropped (the suite's timeout)
                    // while its infer request was on its way.
                    return Err(RunError::permanent(INFER_CUT_OFF));
                }
                Some(Pending::Accepted(stream_id, since)) if since.elapsed() < window => {
                    Some(stream_id.clone())
                }
                _ => {
                    if pending.len() >= PENDING_PRUNE_AT {
                        // Turns whose retries gave up leave entries behind.
                        pending.retain(|_, entry| entry.since().elapsed() < window);
                    }
                    // Stays behind if this attempt is dropped during infer.
                    pending.insert(key.clone(), Pending::InFlight(Instant::now()));
                    None
                }
            }
        };
        let stream_id = match remembered {
            Some(stream_id) => {
                tracing::debug!(
                    session = session.session_id,
                    qa_id = batch.qa_id,
                    stream_id,
                    "re-attaching to the stream of an accepted turn"
                );
                stream_id
            }
            None => match self.infer(batch, session).await {
                Ok(stream_id) => {
                    let accepted = Pending::Accepted(stream_id.clone(), Instant::now());
                    let mut pending = self.pending();
                    match pending.get_mut(&key) {
                        Some(entry) => *entry = accepted,
                        None => {
                            pending.insert(key.clone(), accepted);
                        }
                    }
                    stream_id
                }
                Err(error) => {
                    self.pending().remove(&key);
                    return Err(error);
                }
            },
        };
        let result = self.stream(&stream_id).await;
        match &result {
            Err(error) if matches!(error.kind, ErrorKind::Transient | ErrorKind::Timeout) => {}
            _ => {
                self.pending().remove(&key);
            }
        }
        result.map(Reply::text)
    }

    fn secrets(&self) -> Vec<String> {
        vec![self.api_key.expose_secret().to_owned()]
    }
}

fn build(config: Value, _: &BuildContext) -> Result<Arc<dyn Runner>, ConfigError> {
    Ok(Arc::new(Alquimia::from_value(config)?))
}

inventory::submit! { RunnerType { name: "alquimia", build } }

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn extra_data(agentic: Option<&Object>) -> Value {
        serde_json::to_value(ExtraData { agentic }).unwrap()
    }

    #[test]
    fn extra_data_adds_today_unless_pinned() {
        let mut agentic = Object::new();
        agentic.insert("user".into(), json!({"tier": "gold"}));
        let extra = extra_data(Some(&agentic));
        assert_eq!(extra["user"], json!({"tier": "gold"}));
        let date = extra["date"].as_str().unwrap();
        assert!(chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok());
        assert_eq!(date, chrono::Local::now().format("%Y-%m-%d").to_string());
        agentic.insert("date".into(), json!("2020-01-02"));
        assert_eq!(extra_data(Some(&agentic))["date"], "2020-01-02");
        assert_eq!(extra_data(None).as_object().unwrap().len(), 1);
    }

    #[test]
    fn the_infer_body_is_what_json_macro_wrote() {
        let mut agentic = Object::new();
        agentic.insert("z".into(), json!(1.5));
        agentic.insert("date".into(), json!("2020-01-02"));
        agentic.insert("a".into(), json!(["x", {"b": null}]));
        let body = InferBody {
            query: "q \"1\" é",
            session_id: "s1",
            extra_data: ExtraData {
                agentic: Some(&agentic),
            },
            attachments: &[],
        };
        let before = json!({
            "query": "q \"1\" é",
            "session_id": "s1",
            "extra_data": agentic,
            "attachments": [],
        });
        assert_eq!(
            serde_json::to_vec(&body).unwrap(),
            serde_json::to_vec(&before).unwrap()
        );
    }

    #[test]
    fn pending_keys_tell_every_turn_apart() {
        assert_ne!(pending_key("a", "bc", "d"), pending_key("ab", "c", "d"));
        assert_ne!(pending_key("a", "b", "cd"), pending_key("a", "bc", "d"));
        assert_ne!(pending_key("1:", "", ""), pending_key("", "1:", ""));
        assert_eq!(pending_key("a", "b", "c"), pending_key("a", "b", "c"));
    }

    #[test]
    fn stream_ids_are_strings_or_numbers() {
        assert_eq!(stream_id(&json!("s-1")), Some("s-1".into()));
        assert_eq!(stream_id(&json!(12)), Some("12".into()));
        assert_eq!(stream_id(&json!(1.5)), Some("1.5".into()));
        assert_eq!(stream_id(&json!("")), None);
        assert_eq!(stream_id(&json!(null)), None);
    }

    #[test]
    fn builds_urls_with_api_version() {
        let runner = Alquimia::new(AlquimiaConfig {
            base_url: Some("https://api.example/".into()),
            api_key: Some("k".into()),
            agent_id: Some("ag".into()),
            channel_id: Some("web".into()),
            api_version: Some("/v2/".into()),
            retry_on: None,
        })
        .unwrap();
        assert_eq!(
            runner.infer_url().as_str(),
            "https://api.example/v2/event/infer/web/ag?chat_history=50&agentspace=_default"
        );
        assert!(!format!("{runner:?}").contains("Bearer"));
    }
}
