//! Asking the judge: one `POST {base_url}/chat/completions` per vote, under
//! the suite's machinery: at most the suite's `concurrency` judge requests
//! at once, each attempt bounded by the suite's `timeout` and spaced by its
//! `rate_limit` (the same rate, counted apart from the runner's: the judge
//! is another endpoint), transient failures (408, 409, 429, 5xx, refused or
//! reset connections, timeouts: a chat completion is stateless) retried the
//! suite's `retries` times after its [`Backoff`](crate::Backoff) delay, a
//! `Retry-After` honoured. Replies are read up to the `openai` runner's
//! bound; the key goes only to the judge's origin (redirects elsewhere are
//! refused). Each reply's `usage` is counted: on the suite's [`Meter`] (at
//! the judge's `price`, toward its `budget`) and on the tab of the turn
//! being judged ([`Judge::for_turn`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::join_all;
use reqwest::header::HeaderValue;
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::ruling::{self, Ruling};
use super::{bearer, JudgeSpec, Prompt};
use crate::budget::Meter;
use crate::cassette::JudgeTape;
use crate::error::{ErrorKind, RunError};
use crate::policy::{Policy, RateLimit};
use crate::runners::http_util::{self, RetryOn};
use crate::runners::openai::REQUEST_TIMEOUT;
use crate::secrets::Secrets;
use crate::usage::Usage;

/// What the judges of one suite's run share: the bound on requests in
/// flight, the policy, the run's cancellation and the suite's secrets.
pub struct JudgePool {
    permits: Semaphore,
    policy: Policy,
    cancel: CancellationToken,
    secrets: Secrets,
    tape: Arc<JudgeTape>,
    meter: Arc<Meter>,
}

impl JudgePool {
    /// A pool of `concurrency` requests at once under the suite's `policy`
    /// (its rate limit counted apart), stopped by `cancel`; `secrets` are
    /// kept out of the prompts sent and of the messages written; `tape`
    /// replays and records replies (see [`crate::cassette`]); what the
    /// judges spend is counted on `meter`.
    pub fn new(
        concurrency: usize,
        policy: &Policy,
        cancel: CancellationToken,
        secrets: Secrets,
        tape: Arc<JudgeTape>,
        meter: Arc<Meter>,
    ) -> Arc<JudgePool> {
        let rate_limit = policy
            .rate_limit
            .as_ref()
            .and_then(|limit| RateLimit::new(1, limit.interval()));
        Arc::new(JudgePool {
            permits: Semaphore::new(concurrency.max(1)),
            policy: Policy {
                rate_limit,
                ..policy.clone()
            },
            cancel,
            secrets,
            tape,
            meter,
        })
    }
}

/// A judge ready to be asked: its configuration, its HTTP client and the
/// suite's pool.
pub struct Judge {
    spec: Arc<JudgeSpec>,
    client: reqwest::Client,
    auth: Option<HeaderValue>,
    timeout: Duration,
    pool: Arc<JudgePool>,
    /// The tokens its replies used since [`Judge::for_turn`].
    tab: Arc<Mutex<Option<Usage>>>,
}

impl Judge {
    /// The judge of `spec` in `pool`. Nothing is sent.
    pub fn new(spec: Arc<JudgeSpec>, pool: Arc<JudgePool>) -> Result<Judge, String> {
        let auth = spec.api_key.as_ref().map(bearer).transpose()?;
        let client = http_util::client("judge").map_err(|e| e.message)?;
        Ok(Judge {
            timeout: pool.policy.timeout.unwrap_or(REQUEST_TIMEOUT),
            spec,
            client,
            auth,
            pool,
            tab: Arc::default(),
        })
    }

    /// This judge, with a tab of its own for one turn: [`Judge::spent`]
    /// tells what the questions asked through it used.
    pub fn for_turn(&self) -> Judge {
        Judge {
            spec: Arc::clone(&self.spec),
            client: self.client.clone(),
            auth: self.auth.clone(),
            timeout: self.timeout,
            pool: Arc::clone(&self.pool),
            tab: Arc::default(),
        }
    }

    /// The tokens its replies used (on its tab), `None` when none said.
    pub fn spent(&self) -> Option<Usage> {
        *self.tab.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether it has a price (its cost is then counted).
    pub fn price(&self) -> Option<&crate::usage::Price> {
        self.spec.price()
    }

    /// Counts the tokens of one reply: on the tab, and at the judge's price
    /// on the suite's meter.
    fn count(&self, usage: Usage) {
        let mut tab = self.tab.lock().unwrap_or_else(|e| e.into_inner());
        *tab = Some(tab.map_or(usage, |t| t.plus(usage)));
        drop(tab);
        if let Some(price) = self.spec.price() {
            self.pool.meter.add(price.cost(&usage));
        }
    }

    /// Whether this is the judge of `spec`.
    pub fn is(&self, spec: &Arc<JudgeSpec>) -> bool {
        Arc::ptr_eq(&self.spec, spec)
    }

    /// `model @ host[:port]`.
    pub fn name(&self) -> String {
        self.spec.name()
    }

    /// Asks `prompt` once per vote (the suite's secrets scrubbed from it
    /// first): every vote's ruling, or why the judge gave none (a message
    /// naming the judge and quoting, scrubbed and cut short, what came back).
    pub async fn ask(&self, prompt: &Prompt) -> Result<Vec<Ruling>, String> {
        let secrets = &self.pool.secrets;
        let prompt = Prompt {
            system: secrets.redact(&prompt.system).into_owned(),
            user: secrets.redact(&prompt.user).into_owned(),
        };
        let body = self.spec.body(&prompt);
        let votes = (0..self.spec.votes()).map(|vote| self.vote(&body, vote));
        join_all(votes).await.into_iter().collect()
    }

    /// One vote: the judge's reply (replayed from the cassette when it has
    /// it) read as a ruling.
    async fn vote(&self, body: &Value, vote: usize) -> Result<Ruling, String> {
        let tape = &self.pool.tape;
        let content = match tape.replayed(body, vote) {
            Some((content, usage)) => {
                if let Some(usage) = usage {
                    self.count(usage);
                }
                Ok(content)
            }
            None if tape.offline() => Err(RunError::permanent(
                "not replayed: no recording of this judge request (the answer, the query, \
                 the ground truth or the judge changed since the recording)",
            )),
            None => self.call(body).await.map(|(content, usage)| {
                tape.record(body, vote, &content, usage);
                content
            }),
        };
        let content = content.map_err(|error| {
            self.scrub(&format!("judge {} failed: {}", self.name(), error.message))
        })?;
        ruling::read(&content).map_err(|why| {
            let quoted = http_util::quote(&content, self.spec.api_key.as_slice());
            self.scrub(&format!(
                "judge {} gave no readable verdict ({why}): {quoted}",
                self.name()
            ))
        })
    }

    fn scrub(&self, text: &str) -> String {
        self.pool.secrets.redact(text).into_owned()
    }

    /// The judge's message content and the tokens it reported, after the
    /// retries the policy allows.
    async fn call(&self, body: &Value) -> Result<(String, Option<Usage>), RunError> {
        let policy = &self.pool.policy;
        let mut attempts = 0u32;
        loop {
            let permit = self.pool.permits.acquire().await;
            if let Some(limit) = &policy.rate_limit {
                if !self.unless_cancelled(limit.acquire()).await {
                    return Err(interrupted(attempts));
                }
            }
            if self.pool.cancel.is_cancelled() {
                return Err(interrupted(attempts));
            }
            attempts += 1;
            let error = match self.once(body).await {
                Ok(content) => return Ok(content),
                Err(error) => error,
            };
            drop(permit);
            let retryable = matches!(error.kind, ErrorKind::Transient | ErrorKind::Timeout);
            if attempts > policy.retries || !retryable {
                return Err(after(error, attempts));
            }
            let delay = policy.backoff.delay(attempts, error.retry_after);
            if !self.unless_cancelled(tokio::time::sleep(delay)).await {
                return Err(after(error, attempts));
            }
        }
    }

    /// One request: the reply's `choices[0].message.content`, and its
    /// `usage` (counted on the meter).
    async fn once(&self, body: &Value) -> Result<(String, Option<Usage>), RunError> {
        let url = &self.spec.url;
        let secrets = self.spec.api_key.as_slice();
        let auth = self.auth.as_ref();
        let retry_on = RetryOn::default();
        let reply = http_util::post_json(
            &self.client,
            url,
            body,
            auth,
            self.timeout,
            secrets,
            &retry_on,
        )
        .await?;
        let usage = Usage::from_reply(&reply);
        if let Some(usage) = usage {
            self.count(usage);
        }
        match reply.pointer("/choices/0/message/content") {
            Some(Value::String(content)) => Ok((content.clone(), usage)),
            _ => Err(RunError::permanent(format!(
                "no message content (choices[0].message.content) in the reply: {}",
                http_util::quote(&reply.to_string(), secrets)
            ))),
        }
    }

    /// Waits for `wait` unless the run is cancelled first: `false` when it was.
    async fn unless_cancelled(&self, wait: impl std::future::Future<Output = ()>) -> bool {
        tokio::select! {
            biased;
            () = self.pool.cancel.cancelled() => false,
            () = wait => true,
        }
    }
}

/// The error of a judge call that ended after `attempts` attempts.
fn after(error: RunError, attempts: u32) -> RunError {
    if attempts > 1 {
        RunError {
            message: format!("{} (after {attempts} attempts)", error.message),
            ..error
        }
    } else {
        error
    }
}

/// The error of a judge call the run's interruption stopped.
fn interrupted(attempts: u32) -> RunError {
    RunError::permanent(format!(
        "run interrupted before the judge answered (after {attempts} attempts)"
    ))
}
