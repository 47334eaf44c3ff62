//! The engine: turns in order within a session, sessions concurrently (bounded),
//! each turn under a timeout and a retry policy, every attempt under an
//! optional request-rate limit.
//!
//! A failed attempt is retried (up to [`Policy::retries`], after a
//! [`Backoff`] delay that honours the server's `Retry-After`) only when the
//! system under test cannot have accepted the turn: [`ErrorKind::Transient`]
//! errors, and [`ErrorKind::Timeout`] for runners that opt in (see [`Retry`]).
//! A [`Permanent`](ErrorKind::Permanent) error fails the turn at once.
//!
//! Once the run's cancellation token fires (the first Ctrl-C or SIGTERM),
//! a turn waiting for its backoff delay or its rate-limit slot stops
//! waiting: it fails as interrupted, with its last error, and no further
//! attempt is sent.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;

use crate::error::{ErrorKind, RunError};
use crate::runner::{millis, BatchOutcome, Runner, Session};
use crate::schema::{Batch, Dataset, Summary};

/// Exponential backoff with full jitter between retries.
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    /// Delay before the first retry (before jitter).
    pub initial: Duration,
    /// Upper bound of any delay, `Retry-After` included.
    pub max: Duration,
}

impl Backoff {
    /// 250 ms doubling up to 30 s.
    pub const DEFAULT: Backoff = Backoff {
        initial: Duration::from_millis(250),
        max: Duration::from_secs(30),
    };

    /// The delay before retry number `retry` (1-based). A server's
    /// `Retry-After` wins over the computed delay, capped at `max`.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(after) = retry_after {
            return after.min(self.max);
        }
        let exp = self
            .initial
            .saturating_mul(1u32 << (retry.saturating_sub(1)).min(16))
            .min(self.max);
        // Full jitter between half and the whole delay keeps retries of many
        // sessions from landing at once without ever retrying immediately.
        let half = exp / 2;
        half + exp.mul_f64(rand::random::<f64>() * 0.5)
    }
}

/// A request-rate limit shared by every session of a suite: attempts
/// (retries included) start at most `count` per `period`, evenly spaced.
///
/// Clones share their state, so one limit put into a [`Policy`] bounds all
/// the sessions an [`Engine`] runs under it.
#[derive(Clone)]
pub struct RateLimit {
    count: u32,
    period: Duration,
    /// When the next attempt may start.
    next: Arc<Mutex<Option<tokio::time::Instant>>>,
}

impl RateLimit {
    /// At most `count` attempts per `period` (`None` when either is zero).
    pub fn new(count: u32, period: Duration) -> Option<Self> {
        (count > 0 && !period.is_zero()).then(|| RateLimit {
            count,
            period,
            next: Arc::new(Mutex::new(None)),
        })
    }

    /// At most `count` attempts per second.
    pub fn per_second(count: u32) -> Option<Self> {
        RateLimit::new(count, Duration::from_secs(1))
    }

    /// The spacing between two attempts.
    pub fn interval(&self) -> Duration {
        self.period / self.count
    }

    /// Waits for this attempt's slot. Slots are handed out in call order,
    /// one every [`interval`](RateLimit::interval).
    pub async fn acquire(&self) {
        let slot = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let now = tokio::time::Instant::now();
            let slot = next.map_or(now, |n| n.max(now));
            *next = Some(slot + self.interval());
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RateLimit({}/{:?})", self.count, self.period)
    }
}

impl PartialEq for RateLimit {
    /// Two limits are equal when they allow the same rate (their state aside).
    fn eq(&self, other: &Self) -> bool {
        self.count == other.count && self.period == other.period
    }
}

/// How each turn runs: its timeout, its retries and the request rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Per-turn timeout (per attempt); `None` waits forever.
    pub timeout: Option<Duration>,
    /// Retries of a transient failure or a timeout (0 = none).
    pub retries: u32,
    /// Delays between retries.
    pub backoff: Backoff,
    /// The request-rate limit shared by every session run under this policy
    /// (`None`: unlimited). Applied before every attempt, retries included.
    pub rate_limit: Option<RateLimit>,
}

static NO_POLICY: Policy = Policy {
    timeout: None,
    retries: 0,
    backoff: Backoff::DEFAULT,
    rate_limit: None,
};

impl Policy {
    /// No timeout, no retries.
    pub fn none() -> &'static Policy {
        &NO_POLICY
    }
}

impl Default for Policy {
    fn default() -> Self {
        NO_POLICY.clone()
    }
}

/// Runs one turn under the session's policy. The default of
/// [`Runner::run_batch`]: transient failures and timeouts are retried.
pub(crate) async fn attempt_batch<R: Runner + ?Sized>(
    runner: &R,
    batch: Batch,
    session: &Session<'_>,
) -> BatchOutcome {
    attempt_batch_with(runner, batch, session, Retry::TransientAndTimeouts).await
}

/// Which failures of a turn are retried (up to the policy's `retries`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// [`ErrorKind::Transient`] and [`ErrorKind::Timeout`]: for runners that
    /// know a timed-out turn was not accepted, or can re-attach to it
    /// (`alquimia`), or whose requests are stateless (`openai`).
    TransientAndTimeouts,
    /// [`ErrorKind::Transient`] only: for runners whose timed-out turn may
    /// have been accepted by the system under test (`http`, `command`).
    TransientOnly,
}

/// Runs one turn under the session's policy, retrying what `retry` allows.
/// Runners that must not retry timeouts call it from their own
/// [`Runner::run_batch`] with [`Retry::TransientOnly`].
pub async fn attempt_batch_with<R: Runner + ?Sized>(
    runner: &R,
    mut batch: Batch,
    session: &Session<'_>,
    retry: Retry,
) -> BatchOutcome {
    let policy = session.policy;
    let cancel = session.cancel;
    let start = Instant::now();
    let mut attempts = 0u32;
    let mut last_error = None;
    loop {
        if let Some(limit) = &policy.rate_limit {
            if !unless_cancelled(cancel, limit.acquire()).await {
                return interrupted(batch, last_error, attempts, start);
            }
        }
        if cancel.is_some_and(CancellationToken::is_cancelled) {
            return interrupted(batch, last_error, attempts, start);
        }
        attempts += 1;
        // A panicking runner fails its turn, not the run.
        let call = AssertUnwindSafe(runner.call(&batch, session)).catch_unwind();
        let result = match policy.timeout {
            Some(limit) => match tokio::time::timeout(limit, call).await {
                Ok(result) => result.unwrap_or_else(|panic| Err(panicked(&*panic))),
                Err(_) => Err(RunError::timeout(limit)),
            },
            None => call.await.unwrap_or_else(|panic| Err(panicked(&*panic))),
        };
        match result {
            Ok(reply) => {
                reply.apply(&mut batch);
                let mut outcome = BatchOutcome::success(batch, millis(start.elapsed()));
                outcome.attempts = attempts;
                return outcome;
            }
            Err(error) if attempts <= policy.retries && retryable(&error, retry) => {
                tracing::debug!(
                    session = session.session_id,
                    qa_id = batch.qa_id,
                    attempt = attempts,
                    %error,
                    "retrying"
                );
                let delay = policy.backoff.delay(attempts, error.retry_after);
                if !unless_cancelled(cancel, tokio::time::sleep(delay)).await {
                    return interrupted(batch, Some(error), attempts, start);
                }
                last_error = Some(error);
            }
            Err(error) => {
                let message = if attempts > 1 {
                    format!("{error} (after {attempts} attempts)")
                } else {
                    error.message
                };
                let mut outcome = BatchOutcome::failure(batch, &message, millis(start.elapsed()));
                outcome.attempts = attempts;
                return outcome;
            }
        }
    }
}

/// Waits for `wait` unless `cancel` fires first: `false` when it did.
async fn unless_cancelled(
    cancel: Option<&CancellationToken>,
    wait: impl std::future::Future<Output = ()>,
) -> bool {
    match cancel {
        Some(cancel) => tokio::select! {
            biased;
            () = cancel.cancelled() => false,
            () = wait => true,
        },
        None => {
            wait.await;
            true
        }
    }
}

/// The outcome of a turn the run's interruption stopped before its next
/// attempt: [`INTERRUPTED`] when nothing was sent, else its last error.
fn interrupted(
    batch: Batch,
    last_error: Option<RunError>,
    attempts: u32,
    start: Instant,
) -> BatchOutcome {
    let message = match last_error {
        None => INTERRUPTED.to_owned(),
        Some(error) => format!(
            "{} (after {attempts} attempt{}; run interrupted before a retry)",
            error.message,
            if attempts == 1 { "" } else { "s" }
        ),
    };
    let mut outcome = BatchOutcome::failure(batch, &message, millis(start.elapsed()));
    outcome.attempts = attempts;
    outcome
}

/// The error of a runner call that panicked, with the panic's message.
fn panicked(panic: &(dyn std::any::Any + Send)) -> RunError {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned());
    RunError::permanent(format!("runner panicked: {message}"))
}

fn retryable(error: &RunError, retry: Retry) -> bool {
    match error.kind {
        ErrorKind::Transient => true,
        ErrorKind::Timeout => retry == Retry::TransientAndTimeouts,
        _ => false,
    }
}

/// Message of a turn that never ran because the run was interrupted.
pub const INTERRUPTED: &str = "run interrupted before this turn was sent";

/// Runs the first `limit` turns of `dataset` in order (all of them with
/// `usize::MAX`), reporting each outcome to `on_batch`. Turns past `limit` are
/// left out of the returned dataset. Once `cancel` fires, the remaining turns
/// are not sent and are recorded as failures.
pub(crate) async fn run_dataset<R: Runner + ?Sized>(
    runner: &R,
    mut dataset: Dataset,
    policy: &Policy,
    limit: usize,
    on_batch: &(dyn Fn(usize, &BatchOutcome) + Sync),
    cancel: Option<&CancellationToken>,
) -> (Dataset, Summary) {
    let start = Instant::now();
    let mut turns = std::mem::take(&mut dataset.conversation);
    turns.truncate(limit);
    let mut done: Vec<Batch> = Vec::with_capacity(turns.len());
    let (mut successes, mut failures, mut batch_time) = (0usize, 0usize, 0.0f64);
    for (index, batch) in turns.into_iter().enumerate() {
        let outcome = if cancel.is_some_and(CancellationToken::is_cancelled) {
            BatchOutcome::failure(batch, INTERRUPTED, 0.0)
        } else {
            let session = Session::with_policy(&dataset, &done, policy).cancelled_by(cancel);
            // `call` panics are caught per attempt; this catches a panic in
            // a runner's own `run_batch`, keeping a copy to report it on.
            let copy = batch.clone();
            let started = Instant::now();
            AssertUnwindSafe(runner.run_batch(batch, &session))
                .catch_unwind()
                .await
                .unwrap_or_else(|panic| {
                    let error = panicked(&*panic);
                    BatchOutcome::failure(copy, &error.message, millis(started.elapsed()))
                })
        };
        if outcome.success {
            successes += 1;
        } else {
            failures += 1;
        }
        batch_time += outcome.time_ms;
        on_batch(index, &outcome);
        done.push(outcome.batch);
    }
    let total = done.len();
    dataset.conversation = done;
    let summary = Summary {
        session_id: dataset.session_id.clone(),
        total_batches: total,
        successes,
        failures,
        total_execution_time_ms: millis(start.elapsed()),
        avg_batch_time_ms: if total == 0 {
            0.0
        } else {
            batch_time / total as f64
        },
    };
    (dataset, summary)
}

/// One session to run: the dataset and how many of its turns.
#[derive(Debug, Clone)]
pub struct Job {
    /// The dataset.
    pub dataset: Dataset,
    /// Run only the first `limit` turns (`usize::MAX` for all).
    pub limit: usize,
}

impl From<Dataset> for Job {
    fn from(dataset: Dataset) -> Self {
        Job {
            dataset,
            limit: usize::MAX,
        }
    }
}

/// Called after every turn with the job's index, the turn's index and its outcome.
pub type Observer = dyn Fn(usize, usize, &BatchOutcome) + Send + Sync;

/// Runs sessions concurrently (at most `concurrency` at once), turns in order.
#[derive(Clone)]
pub struct Engine {
    runner: Arc<dyn Runner>,
    policy: Arc<Policy>,
    concurrency: usize,
    cancel: CancellationToken,
}

impl Engine {
    /// An engine for `runner` with no timeout, no retries and 8 sessions at once.
    pub fn new(runner: Arc<dyn Runner>) -> Self {
        Engine {
            runner,
            policy: Arc::new(Policy::default()),
            concurrency: 8,
            cancel: CancellationToken::new(),
        }
    }

    /// Sets the per-turn policy.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = Arc::new(policy);
        self
    }

    /// Sets how many sessions run at once (at least 1).
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Uses `cancel` to stop the run: turns not yet sent are recorded as
    /// interrupted failures, turns in flight finish.
    pub fn cancel_on(mut self, cancel: CancellationToken) -> Self {
        self.cancel = cancel;
        self
    }

    /// Runs every job; results come back in the jobs' order.
    pub async fn run(&self, jobs: Vec<Job>, observer: Arc<Observer>) -> Vec<(Dataset, Summary)> {
        let count = jobs.len();
        let queue = Arc::new(Mutex::new(
            jobs.into_iter().enumerate().collect::<VecDeque<_>>(),
        ));
        let workers = self.concurrency.min(count);
        let mut handles = Vec::with_capacity(workers);
        for _ in 0..workers {
            let queue = Arc::clone(&queue);
            let engine = self.clone();
            let observer = Arc::clone(&observer);
            handles.push(tokio::spawn(async move {
                let mut results = Vec::new();
                loop {
                    let next = queue.lock().map(|mut q| q.pop_front()).unwrap_or(None);
                    let Some((index, job)) = next else { break };
                    let on_batch = |batch: usize, outcome: &BatchOutcome| {
                        observer(index, batch, outcome);
                    };
                    let result = run_dataset(
                        engine.runner.as_ref(),
                        job.dataset,
                        &engine.policy,
                        job.limit,
                        &on_batch,
                        Some(&engine.cancel),
                    )
                    .await;
                    results.push((index, result));
                }
                results
            }));
        }
        let mut slots: Vec<Option<(Dataset, Summary)>> = (0..count).map(|_| None).collect();
        for handle in handles {
            match handle.await {
                Ok(results) => {
                    for (index, result) in results {
                        slots[index] = Some(result);
                    }
                }
                // A panicking runner is a bug in that runner: surface it.
                Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
                Err(_) => {}
            }
        }
        slots.into_iter().flatten().collect()
    }

    /// Runs whole datasets with no observer.
    pub async fn run_datasets(&self, datasets: Vec<Dataset>) -> Vec<(Dataset, Summary)> {
        self.run(
            datasets.into_iter().map(Job::from).collect(),
            Arc::new(|_, _, _| {}),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::Reply;

    struct Moody;

    #[async_trait::async_trait]
    impl Runner for Moody {
        async fn call(&self, batch: &Batch, _: &Session<'_>) -> Result<Reply, RunError> {
            if batch.query == "panic" {
                panic!("boom on {}", batch.qa_id);
            }
            Ok(Reply::text("fine"))
        }
    }

    struct Careless;

    #[async_trait::async_trait]
    impl Runner for Careless {
        async fn call(&self, _: &Batch, _: &Session<'_>) -> Result<Reply, RunError> {
            Ok(Reply::text("fine"))
        }
        async fn run_batch(&self, batch: Batch, _: &Session<'_>) -> BatchOutcome {
            assert!(batch.qa_id != "q2", "no q2 here");
            BatchOutcome::success(batch, 1.0)
        }
    }

    #[tokio::test]
    async fn a_panicking_run_batch_fails_its_turn_and_keeps_the_batch() {
        let mut dataset = Dataset::new("s", "a");
        for id in ["q1", "q2", "q3"] {
            let mut batch = Batch::new(id, "hi");
            batch.ground_truth_assistant = format!("truth {id}");
            dataset.conversation.push(batch);
        }
        let results = Engine::new(Arc::new(Careless))
            .run_datasets(vec![dataset])
            .await;
        let (dataset, summary) = &results[0];
        assert_eq!((summary.successes, summary.failures), (2, 1));
        let failed = &dataset.conversation[1];
        assert_eq!(failed.assistant, "[ERROR] runner panicked: no q2 here");
        assert_eq!(failed.ground_truth_assistant, "truth q2");
    }

    #[tokio::test]
    async fn a_panicking_call_fails_its_turn_only() {
        let mut dataset = Dataset::new("s", "a");
        for (id, query) in [("q1", "hi"), ("q2", "panic"), ("q3", "hi")] {
            dataset.conversation.push(Batch::new(id, query));
        }
        let results = Engine::new(Arc::new(Moody))
            .run_datasets(vec![dataset])
            .await;
        let (dataset, summary) = &results[0];
        assert_eq!((summary.successes, summary.failures), (2, 1));
        assert_eq!(
            dataset.conversation[1].assistant,
            "[ERROR] runner panicked: boom on q2"
        );
        assert_eq!(dataset.conversation[2].assistant, "fine");
    }

    /// Throttled on every call, asked to come back in 30 s; counts calls
    /// and tells the test about each one.
    struct Throttled {
        calls: std::sync::atomic::AtomicUsize,
        called: tokio::sync::Notify,
    }

    impl Throttled {
        fn new() -> Arc<Self> {
            Arc::new(Throttled {
                calls: std::sync::atomic::AtomicUsize::new(0),
                called: tokio::sync::Notify::new(),
            })
        }
        fn calls(&self) -> usize {
            self.calls.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    #[async_trait::async_trait]
    impl Runner for Throttled {
        async fn call(&self, _: &Batch, _: &Session<'_>) -> Result<Reply, RunError> {
            self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.called.notify_one();
            Err(RunError::transient("HTTP 429 Too Many Requests")
                .with_retry_after(Some(Duration::from_secs(30))))
        }
    }

    fn two_turns(session: &str) -> Dataset {
        let mut dataset = Dataset::new(session, "a");
        dataset.conversation.push(Batch::new("q1", "hi"));
        dataset.conversation.push(Batch::new("q2", "again"));
        dataset
    }

    // Paused time: a wait the cancellation does not end would be skipped
    // over by the clock and the retries would be sent.
    #[tokio::test(start_paused = true)]
    async fn cancelling_ends_a_pending_backoff_wait() {
        let runner = Throttled::new();
        let cancel = CancellationToken::new();
        let engine = Engine::new(runner.clone())
            .policy(Policy {
                retries: 10,
                ..Policy::default()
            })
            .cancel_on(cancel.clone());
        let run = tokio::spawn(async move { engine.run_datasets(vec![two_turns("s")]).await });
        runner.called.notified().await;
        cancel.cancel();
        let results = run.await.unwrap();
        assert_eq!(runner.calls(), 1, "a retry was sent after the cancellation");
        let turns = &results[0].0.conversation;
        assert_eq!(
            turns[0].assistant,
            "[ERROR] HTTP 429 Too Many Requests (after 1 attempt; run interrupted before a retry)"
        );
        assert_eq!(turns[1].assistant, format!("[ERROR] {INTERRUPTED}"));
        assert_eq!(results[0].1.failures, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn cancelling_ends_a_pending_rate_limit_wait() {
        let runner = Throttled::new();
        let cancel = CancellationToken::new();
        let engine = Engine::new(runner.clone())
            .policy(Policy {
                rate_limit: RateLimit::new(1, Duration::from_secs(3600)),
                ..Policy::default()
            })
            .concurrency(2)
            .cancel_on(cancel.clone());
        let run = tokio::spawn(async move {
            engine
                .run_datasets(vec![two_turns("a"), two_turns("b")])
                .await
        });
        // One session got the hour's only slot; the other waits for the next.
        runner.called.notified().await;
        cancel.cancel();
        let results = run.await.unwrap();
        assert_eq!(runner.calls(), 1, "a turn was sent after the cancellation");
        let interrupted = results
            .iter()
            .flat_map(|(d, _)| &d.conversation)
            .filter(|b| b.assistant == format!("[ERROR] {INTERRUPTED}"))
            .count();
        assert_eq!(interrupted, 3);
    }

    #[test]
    fn backoff_grows_and_honours_retry_after() {
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        for retry in 1..6 {
            let full = Duration::from_millis(100 * (1 << (retry - 1))).min(backoff.max);
            let delay = backoff.delay(retry, None);
            assert!(delay >= full / 2 && delay <= full, "{retry}: {delay:?}");
        }
        assert_eq!(
            backoff.delay(1, Some(Duration::from_millis(300))),
            Duration::from_millis(300)
        );
        assert_eq!(backoff.delay(1, Some(Duration::from_secs(60))), backoff.max);
    }
}
