//! The runner contract: how forge talks to a system under test.
//!
//! It mirrors Fair-Forge's `BaseRunner`. A runner answers one turn at a time
//! ([`Runner::call`]); [`Runner::run_batch`] adds the timing, the retries and
//! the `[ERROR]` capture and returns the updated batch, whether it succeeded
//! and its time in ms; [`Runner::run_dataset`] runs a conversation's turns
//! strictly in order and returns the updated dataset and its [`Summary`].
//! Both have default implementations, so a runner normally writes only `call`:
//!
//! ```
//! use forge::{async_trait, Batch, Reply, RunError, Runner, Session};
//!
//! struct Shout;
//!
//! #[async_trait]
//! impl Runner for Shout {
//!     async fn call(&self, batch: &Batch, _session: &Session<'_>) -> Result<Reply, RunError> {
//!         Ok(Reply::text(batch.query.to_uppercase()))
//!     }
//! }
//! # let rt = tokio::runtime::Runtime::new().unwrap();
//! # rt.block_on(async {
//! let mut dataset = forge::Dataset::new("s1", "shout");
//! dataset.conversation.push(Batch::new("q1", "hello"));
//! let (dataset, summary) = Shout.run_dataset(dataset).await;
//! assert_eq!(dataset.conversation[0].assistant, "HELLO");
//! assert_eq!(summary.successes, 1);
//! # });
//! ```

use std::time::Duration;

use async_trait::async_trait;

use crate::error::RunError;
use crate::execute::{self, Policy};
use crate::schema::{Batch, Dataset, Object, Summary};

/// What a runner knows about the session a turn belongs to.
#[derive(Debug, Clone, Copy)]
pub struct Session<'a> {
    /// The dataset's session id.
    pub session_id: &'a str,
    /// The dataset's assistant id.
    pub assistant_id: &'a str,
    /// The dataset's language.
    pub language: Option<&'a str>,
    /// The dataset's context.
    pub context: &'a str,
    /// The session's earlier turns, already answered, in order.
    pub history: &'a [Batch],
    pub(crate) policy: &'a Policy,
    /// The run's interruption: pending retries end when it fires.
    pub(crate) cancel: Option<&'a tokio_util::sync::CancellationToken>,
}

impl<'a> Session<'a> {
    /// The session of `dataset` with the given answered turns, under the
    /// default policy (no timeout, no retries).
    pub fn of(dataset: &'a Dataset, history: &'a [Batch]) -> Self {
        Session::with_policy(dataset, history, Policy::none())
    }

    pub(crate) fn with_policy(
        dataset: &'a Dataset,
        history: &'a [Batch],
        policy: &'a Policy,
    ) -> Self {
        Session {
            session_id: &dataset.session_id,
            assistant_id: &dataset.assistant_id,
            language: dataset.language.as_deref(),
            context: &dataset.context,
            history,
            policy,
            cancel: None,
        }
    }

    /// This session, interrupted by `cancel` (see [`crate::execute`]).
    pub(crate) fn cancelled_by(
        mut self,
        cancel: Option<&'a tokio_util::sync::CancellationToken>,
    ) -> Self {
        self.cancel = cancel;
        self
    }

    /// The policy (timeout, retries) this turn runs under.
    pub fn policy(&self) -> &Policy {
        self.policy
    }
}

/// A runner's answer to one turn.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reply {
    /// The answer text; becomes the batch's `assistant`.
    pub answer: String,
    /// Agentic data (tools used, ...) merged into the batch's `agentic`.
    pub agentic: Option<Object>,
    /// Token log-probabilities; replace the batch's `logprobs`.
    pub logprobs: Option<Object>,
}

impl Reply {
    /// A plain text answer.
    pub fn text(answer: impl Into<String>) -> Self {
        Reply {
            answer: answer.into(),
            ..Reply::default()
        }
    }

    /// Adds agentic data.
    pub fn with_agentic(mut self, agentic: Object) -> Self {
        self.agentic = Some(agentic);
        self
    }

    /// Adds log-probabilities.
    pub fn with_logprobs(mut self, logprobs: Object) -> Self {
        self.logprobs = Some(logprobs);
        self
    }

    /// Writes this reply into `batch`.
    pub fn apply(self, batch: &mut Batch) {
        batch.assistant = self.answer;
        if let Some(agentic) = self.agentic {
            match &mut batch.agentic {
                Some(existing) => existing.extend(agentic),
                None => batch.agentic = Some(agentic),
            }
        }
        if let Some(logprobs) = self.logprobs {
            batch.logprobs = Some(logprobs);
        }
    }
}

impl From<String> for Reply {
    fn from(answer: String) -> Self {
        Reply::text(answer)
    }
}

impl From<&str> for Reply {
    fn from(answer: &str) -> Self {
        Reply::text(answer)
    }
}

/// The result of one turn: Fair-Forge's `(batch, success, time_ms)`.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchOutcome {
    /// The batch, with `assistant` filled in (or `[ERROR] <message>`).
    pub batch: Batch,
    /// Whether the runner call succeeded.
    pub success: bool,
    /// Time spent on the turn, retries included, in milliseconds.
    pub time_ms: f64,
    /// The error message when the call failed.
    pub error: Option<String>,
    /// How many times the turn was attempted.
    pub attempts: u32,
}

impl BatchOutcome {
    /// A successful outcome.
    pub fn success(batch: Batch, time_ms: f64) -> Self {
        BatchOutcome {
            batch,
            success: true,
            time_ms,
            error: None,
            attempts: 1,
        }
    }

    /// A failed outcome: `assistant` becomes `[ERROR] <message>` and the
    /// message is appended to `observation`.
    pub fn failure(mut batch: Batch, message: &str, time_ms: f64) -> Self {
        batch.assistant = format!("[ERROR] {message}");
        batch.append_observation(message);
        BatchOutcome {
            batch,
            success: false,
            time_ms,
            error: Some(message.to_owned()),
            attempts: 1,
        }
    }
}

/// A system under test. Async, `Send + Sync`, and usable as `dyn Runner`.
///
/// Implement [`call`](Runner::call); the other methods have defaults that add
/// timing, the suite's timeout and retries, and the `[ERROR]` capture.
#[async_trait]
pub trait Runner: Send + Sync {
    /// Sends one turn to the system under test and returns its answer.
    ///
    /// Return [`RunError::transient`] only when the system did not accept the
    /// turn, so a retry cannot answer it twice.
    async fn call(&self, batch: &Batch, session: &Session<'_>) -> Result<Reply, RunError>;

    /// Runs one turn: the call under the session's timeout and retry policy,
    /// timed, with failures captured as `[ERROR] <message>`.
    async fn run_batch(&self, batch: Batch, session: &Session<'_>) -> BatchOutcome {
        execute::attempt_batch(self, batch, session).await
    }

    /// Runs a conversation's turns in order and summarises them.
    async fn run_dataset(&self, dataset: Dataset) -> (Dataset, Summary) {
        execute::run_dataset(self, dataset, Policy::none(), usize::MAX, &|_, _| {}, None).await
    }

    /// The credentials this runner sends (API keys, `Authorization` values,
    /// secret headers), whatever their source: forge redacts them from every
    /// report, console line and error message (see [`crate::secrets`]).
    /// Default: none (the suite's own secret-looking values are redacted
    /// anyway).
    fn secrets(&self) -> Vec<String> {
        Vec::new()
    }
}

#[async_trait]
impl<R: Runner + ?Sized> Runner for std::sync::Arc<R> {
    async fn call(&self, batch: &Batch, session: &Session<'_>) -> Result<Reply, RunError> {
        (**self).call(batch, session).await
    }
    async fn run_batch(&self, batch: Batch, session: &Session<'_>) -> BatchOutcome {
        (**self).run_batch(batch, session).await
    }
    fn secrets(&self) -> Vec<String> {
        (**self).secrets()
    }
}

#[async_trait]
impl<R: Runner + ?Sized> Runner for Box<R> {
    async fn call(&self, batch: &Batch, session: &Session<'_>) -> Result<Reply, RunError> {
        (**self).call(batch, session).await
    }
    async fn run_batch(&self, batch: Batch, session: &Session<'_>) -> BatchOutcome {
        (**self).run_batch(batch, session).await
    }
    fn secrets(&self) -> Vec<String> {
        (**self).secrets()
    }
}

/// Milliseconds in a duration, as a float.
pub(crate) fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
