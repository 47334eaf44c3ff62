//! The runner contract: how forge talks to a system under test.
//!
//! It mirrors Fair-Forge's `BaseRunner`. A runner answers one turn at a time
//! ([`Runner::call`]). It may override [`Runner::run_batch`] (one attempt at
//! a turn, timed, its failure captured) and [`Runner::run_dataset`] (a whole
//! conversation: set up a session on the agent, run the turns, tear it
//! down); the [engine](crate::Engine) calls both, so an override is always
//! honoured. The engine owns execution: the order of turns, the suite's
//! timeout, retries with backoff and the rate limit wrap every attempt, so
//! a runner never deals with them. A turn's outcome is typed
//! ([`BatchOutcome`]: the answered batch, or a [`RunError`] with its
//! [`ErrorKind`](crate::ErrorKind)); Fair-Forge's `[ERROR] <message>` is
//! written only when a conversation becomes Fair-Forge data.
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
//! let (dataset, summary) = forge::run_dataset(&Shout, dataset).await;
//! assert_eq!(dataset.conversation[0].assistant, "HELLO");
//! assert_eq!(summary.successes, 1);
//! # });
//! ```

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::RunError;
use crate::schema::{Batch, Dataset, Object, Summary};
use crate::usage::Usage;

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
    /// The session's earlier turns, in order, each answered or failed.
    pub history: &'a [BatchOutcome],
}

impl<'a> Session<'a> {
    /// The session of `dataset` with the given earlier turns.
    pub fn of(dataset: &'a Dataset, history: &'a [BatchOutcome]) -> Self {
        Session {
            session_id: &dataset.session_id,
            assistant_id: &dataset.assistant_id,
            language: dataset.language.as_deref(),
            context: &dataset.context,
            history,
        }
    }

    /// The earlier turns that got an answer (failed and empty ones left out),
    /// in order: what a chat history replays.
    pub fn answered(&self) -> impl Iterator<Item = &'a Batch> {
        self.history
            .iter()
            .filter(|turn| turn.is_success() && !turn.batch.assistant.is_empty())
            .map(|turn| &turn.batch)
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
    /// The tokens the call used, when the system under test says: what
    /// `expect: {max_tokens}`, the reports' tokens and cost and a suite's
    /// `budget` count.
    pub usage: Option<Usage>,
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

    /// Adds the tokens the call used.
    pub fn with_usage(mut self, usage: Usage) -> Self {
        self.usage = Some(usage);
        self
    }

    /// Writes this reply into `batch` (its `usage` is not part of the
    /// batch: see [`BatchOutcome::usage`]).
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

/// The result of one turn: Fair-Forge's `(batch, success, time_ms)`, typed.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchOutcome {
    /// The batch, with the runner's answer written in on success (on
    /// failure, as the runner received it).
    pub batch: Batch,
    /// Why the turn failed; `None` when it succeeded.
    pub error: Option<RunError>,
    /// Time spent on the turn, retries included, in milliseconds.
    pub time_ms: f64,
    /// How many times the turn was attempted.
    pub attempts: u32,
    /// The tokens the answering call used, when its runner said
    /// ([`Reply::usage`]).
    pub usage: Option<Usage>,
}

impl BatchOutcome {
    /// A successful outcome.
    pub fn success(batch: Batch, time_ms: f64) -> Self {
        BatchOutcome {
            batch,
            error: None,
            time_ms,
            attempts: 1,
            usage: None,
        }
    }

    /// A failed outcome.
    pub fn failure(batch: Batch, error: RunError, time_ms: f64) -> Self {
        BatchOutcome {
            batch,
            error: Some(error),
            time_ms,
            attempts: 1,
            usage: None,
        }
    }

    /// Whether the turn succeeded.
    pub fn is_success(&self) -> bool {
        self.error.is_none()
    }

    /// The answer, or `[ERROR] <message>` for a failed turn: what
    /// Fair-Forge's `assistant` shows.
    pub fn answer(&self) -> std::borrow::Cow<'_, str> {
        match &self.error {
            None => std::borrow::Cow::Borrowed(&self.batch.assistant),
            Some(error) => std::borrow::Cow::Owned(crate::schema::failed_answer(&error.message)),
        }
    }

    /// The outcome of a batch in Fair-Forge's form (a runner's own
    /// [`Runner::run_dataset`] answers so): failed when its `assistant` is
    /// `[ERROR] <message>`.
    pub fn from_fair_forge(batch: Batch) -> Self {
        match batch.assistant.strip_prefix("[ERROR] ") {
            Some(message) => {
                let error = RunError::permanent(message);
                BatchOutcome::failure(batch, error, 0.0)
            }
            None => BatchOutcome::success(batch, 0.0),
        }
    }

    /// The batch as Fair-Forge records it: a failed turn's `assistant` is
    /// `[ERROR] <message>` and the message is appended to `observation`.
    pub fn into_fair_forge(self) -> Batch {
        let mut batch = self.batch;
        if let Some(error) = self.error {
            batch.record_failure(&error.message);
        }
        batch
    }
}

/// A boxed future, as [`Turns`] returns.
type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The engine's side of [`Runner::run_dataset`]: it runs a conversation's
/// turns in order through the runner's [`run_batch`](Runner::run_batch),
/// under the suite's timeout, retries and rate limit, reporting each turn.
pub struct Turns<'a> {
    driver: &'a dyn TurnDriver,
}

impl<'a> Turns<'a> {
    pub(crate) fn new(driver: &'a dyn TurnDriver) -> Self {
        Turns { driver }
    }

    /// Runs every turn of `dataset` in order and returns the answered
    /// dataset (in Fair-Forge's form) and its summary: what the default
    /// [`Runner::run_dataset`] does, for an override to call between its
    /// own set-up and tear-down.
    pub async fn run(&self, dataset: Dataset) -> (Dataset, Summary) {
        self.driver.run_turns(dataset).await
    }

    /// Reports a conversation that an override answered some other way
    /// (on another machine: `forge run --lambda`), turn by turn with each
    /// turn's own outcome (its time, attempts, usage and typed error, where
    /// a returned Fair-Forge dataset has only the answers), and returns it
    /// in Fair-Forge's form with its summary (`total_ms`: the session's wall
    /// time). `outcomes` are the turns of `dataset`, in order; a failed
    /// turn's batch is as the runner received it.
    pub fn answered(
        &self,
        dataset: Dataset,
        outcomes: Vec<BatchOutcome>,
        total_ms: f64,
    ) -> (Dataset, Summary) {
        self.driver.answered(dataset, outcomes, total_ms)
    }

    /// Whether the run was interrupted (Ctrl-C, SIGTERM) or its suite's
    /// `budget` is spent: an override that loops on its own should stop
    /// sending.
    pub fn is_cancelled(&self) -> bool {
        self.driver.is_cancelled()
    }
}

/// What drives a conversation's turns: the engine, for [`Turns`].
pub(crate) trait TurnDriver: Send + Sync {
    /// Runs the turns of `dataset` in order.
    fn run_turns(&self, dataset: Dataset) -> BoxFuture<'_, (Dataset, Summary)>;
    /// Reports turns answered elsewhere (see [`Turns::answered`]).
    fn answered(
        &self,
        dataset: Dataset,
        outcomes: Vec<BatchOutcome>,
        total_ms: f64,
    ) -> (Dataset, Summary);
    /// Whether the run was interrupted.
    fn is_cancelled(&self) -> bool;
}

/// Which failures of a turn the engine retries (up to the suite's `retries`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Retry {
    /// [`ErrorKind::Transient`](crate::ErrorKind::Transient) and
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout): for runners that
    /// know a timed-out turn was not accepted, or can re-attach to it
    /// (`alquimia`), or whose requests are stateless (`openai`).
    #[default]
    TransientAndTimeouts,
    /// Transient errors only: for runners whose timed-out turn may have
    /// been accepted by the system under test (`http`, `command`).
    TransientOnly,
}

/// A system under test. Async, `Send + Sync`, and usable as `dyn Runner`.
///
/// Implement [`call`](Runner::call); the other methods have defaults.
#[async_trait]
pub trait Runner: Send + Sync {
    /// Sends one turn to the system under test and returns its answer.
    ///
    /// Return [`RunError::transient`] only when the system did not accept the
    /// turn, so a retry cannot answer it twice.
    async fn call(&self, batch: &Batch, session: &Session<'_>) -> Result<Reply, RunError>;

    /// One attempt at a turn: the call, timed, its answer written into the
    /// batch or its failure captured. The engine retries a failed attempt
    /// the runner's [`retry`](Runner::retry) class allows.
    async fn run_batch(&self, mut batch: Batch, session: &Session<'_>) -> BatchOutcome {
        let start = std::time::Instant::now();
        match self.call(&batch, session).await {
            Ok(reply) => {
                let usage = reply.usage;
                reply.apply(&mut batch);
                let mut outcome = BatchOutcome::success(batch, millis(start.elapsed()));
                outcome.usage = usage;
                outcome
            }
            Err(error) => BatchOutcome::failure(batch, error, millis(start.elapsed())),
        }
    }

    /// Runs a conversation: by default every turn in order through
    /// [`Turns::run`]. Override it to wrap the conversation (open a session
    /// on the agent, close it after), or to answer it some other way; the
    /// returned dataset is Fair-Forge's (a failed turn's `assistant` is
    /// `[ERROR] <message>`).
    async fn run_dataset(&self, dataset: Dataset, turns: &Turns<'_>) -> (Dataset, Summary) {
        turns.run(dataset).await
    }

    /// Which failed attempts the engine retries. Default: transient errors
    /// and timeouts.
    fn retry(&self) -> Retry {
        Retry::TransientAndTimeouts
    }

    /// The credentials this runner sends (API keys, `Authorization` values,
    /// secret headers), whatever their source: forge redacts them from every
    /// report, console line and error message. Default: none (the suite's
    /// own secret-looking values are redacted anyway).
    fn secrets(&self) -> Vec<String> {
        Vec::new()
    }
}

/// A pointer to a runner is the runner: every method forwarded.
macro_rules! forward_runner {
    ($($pointer:ty),*) => {$(
        #[async_trait]
        impl<R: Runner + ?Sized> Runner for $pointer {
            async fn call(&self, batch: &Batch, session: &Session<'_>) -> Result<Reply, RunError> {
                (**self).call(batch, session).await
            }
            async fn run_batch(&self, batch: Batch, session: &Session<'_>) -> BatchOutcome {
                (**self).run_batch(batch, session).await
            }
            async fn run_dataset(&self, dataset: Dataset, turns: &Turns<'_>) -> (Dataset, Summary) {
                (**self).run_dataset(dataset, turns).await
            }
            fn retry(&self) -> Retry {
                (**self).retry()
            }
            fn secrets(&self) -> Vec<String> {
                (**self).secrets()
            }
        }
    )*};
}

forward_runner!(std::sync::Arc<R>, Box<R>, &R);

/// Milliseconds in a duration, as a float.
pub(crate) fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
