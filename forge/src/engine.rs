//! The engine: turns in order within a session, sessions concurrently
//! (bounded), every attempt at a turn under the suite's [`Policy`].
//!
//! For each session the engine calls the runner's
//! [`run_dataset`](Runner::run_dataset), handing it [`Turns`]; the default
//! (and any override that calls [`Turns::run`]) comes back here, where each
//! turn is attempted through the runner's [`run_batch`](Runner::run_batch):
//! under the timeout, after the rate-limit slot, retried after a
//! [`Backoff`](crate::Backoff) delay (the server's `Retry-After` honoured)
//! only when the system under test cannot have accepted the turn
//! ([`ErrorKind::Transient`], and [`ErrorKind::Timeout`] for runners whose
//! [`Runner::retry`] allows it). A panicking runner fails its turn only.
//!
//! Once the run's cancellation token fires (the first Ctrl-C or SIGTERM),
//! a turn waiting for its backoff delay or its rate-limit slot stops
//! waiting: it fails as interrupted, with its last error, and no further
//! attempt is sent; turns not yet started fail as [`INTERRUPTED`]. A
//! [`Halt`] (a suite's spent budget) stops the run the same way, its
//! reason in the messages: `budget of $2 spent before this turn was sent`.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;

use crate::error::{ErrorKind, RunError};
use crate::policy::Policy;
use crate::runner::{millis, BatchOutcome, Retry, Runner, Session, TurnDriver, Turns};
use crate::schema::{Batch, Dataset, Summary};

/// Message of a turn that never ran because the run was interrupted.
pub const INTERRUPTED: &str = "run interrupted before this turn was sent";

/// A reason besides an interruption to stop sending turns (a suite's
/// spent budget): once fired, turns not yet sent fail as `<reason> before
/// this turn was sent`, and waits for a retry or a rate-limit slot end.
#[derive(Debug)]
pub struct Halt {
    token: CancellationToken,
    reason: String,
}

impl Halt {
    /// A halt whose failures say `reason` (`budget of $2 spent`).
    pub fn new(reason: impl Into<String>) -> Self {
        Halt {
            token: CancellationToken::new(),
            reason: reason.into(),
        }
    }

    /// Stops the runs it was given to.
    pub fn fire(&self) {
        self.token.cancel();
    }

    /// Whether it fired.
    pub fn fired(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Its reason.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// What stops a session from sending: the run's cancellation, or a halt.
#[derive(Clone, Copy)]
struct Stop<'a> {
    cancel: &'a CancellationToken,
    halt: Option<&'a Halt>,
}

impl Stop<'_> {
    /// Why nothing more is sent, once something stopped the run.
    fn reason(&self) -> Option<&str> {
        if self.cancel.is_cancelled() {
            return Some("run interrupted");
        }
        self.halt.filter(|h| h.fired()).map(Halt::reason)
    }

    /// Waits for `wait` unless the run stops first: `false` when it did.
    async fn unless_stopped(&self, wait: impl std::future::Future<Output = ()>) -> bool {
        let halted = async {
            match self.halt {
                Some(halt) => halt.token.cancelled().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = self.cancel.cancelled() => false,
            () = halted => false,
            () = wait => true,
        }
    }
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

/// Each job's result, by job index, as they come.
type Slots = Vec<Option<(Dataset, Summary)>>;

/// Called when a streamed job's session ends, with the job's index and
/// its answered dataset and summary.
pub type Done = dyn Fn(usize, (Dataset, Summary)) + Send + Sync;

/// Runs sessions concurrently (at most `concurrency` at once), turns in order.
#[derive(Clone)]
pub struct Engine {
    runner: Arc<dyn Runner>,
    policy: Arc<Policy>,
    concurrency: usize,
    cancel: CancellationToken,
    halt: Option<Arc<Halt>>,
}

impl Engine {
    /// An engine for `runner` with no timeout, no retries and 8 sessions at once.
    pub fn new(runner: Arc<dyn Runner>) -> Self {
        Engine {
            runner,
            policy: Arc::new(Policy::default()),
            concurrency: 8,
            cancel: CancellationToken::new(),
            halt: None,
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

    /// Uses `halt` to stop the run too, its reason in the messages of the
    /// turns not sent.
    pub fn halt_on(mut self, halt: Arc<Halt>) -> Self {
        self.halt = Some(halt);
        self
    }

    /// What stops its sessions.
    fn stop(&self) -> Stop<'_> {
        Stop {
            cancel: &self.cancel,
            halt: self.halt.as_deref(),
        }
    }

    /// Runs every job; results come back in the jobs' order.
    pub async fn run(&self, jobs: Vec<Job>, observer: Arc<Observer>) -> Vec<(Dataset, Summary)> {
        let count = jobs.len();
        let (queue, receiver) = tokio::sync::mpsc::channel(count.max(1));
        for job in jobs.into_iter().enumerate() {
            // The channel holds every job: sending cannot wait or fail.
            let _ = queue.try_send(job);
        }
        drop(queue);
        let slots: Arc<Mutex<Slots>> = Arc::new(Mutex::new((0..count).map(|_| None).collect()));
        let done = {
            let slots = Arc::clone(&slots);
            move |index: usize, result| {
                let mut slots = slots.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(slot) = slots.get_mut(index) {
                    *slot = Some(result);
                }
            }
        };
        let workers = self.clone().concurrency(self.concurrency.min(count));
        workers.stream(receiver, observer, Arc::new(done)).await;
        let slots = std::mem::take(&mut *slots.lock().unwrap_or_else(|e| e.into_inner()));
        slots.into_iter().flatten().collect()
    }

    /// Runs the jobs that come through `jobs` as they come, at most
    /// `concurrency` sessions at once, handing each finished session to
    /// `done` with its job index; returns once `jobs` is closed and every
    /// session has ended. Nothing is kept between jobs: the sender decides
    /// how many are in flight.
    pub async fn stream(
        &self,
        jobs: tokio::sync::mpsc::Receiver<(usize, Job)>,
        observer: Arc<Observer>,
        done: Arc<Done>,
    ) {
        let jobs = Arc::new(tokio::sync::Mutex::new(jobs));
        let handles: Vec<_> = (0..self.concurrency)
            .map(|_| {
                let (jobs, observer, done) =
                    (Arc::clone(&jobs), Arc::clone(&observer), Arc::clone(&done));
                tokio::spawn(self.clone().pull(jobs, observer, done))
            })
            .collect();
        for handle in handles {
            if let Err(error) = handle.await {
                // A panic outside any runner call is a bug in forge: surface it.
                if error.is_panic() {
                    std::panic::resume_unwind(error.into_panic());
                }
            }
        }
    }

    /// One streaming worker: takes jobs off the channel until it closes.
    async fn pull(
        self,
        jobs: Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<(usize, Job)>>>,
        observer: Arc<Observer>,
        done: Arc<Done>,
    ) {
        loop {
            let next = jobs.lock().await.recv().await;
            let Some((index, job)) = next else { break };
            let result = self.session(&*observer, index).run(job).await;
            done(index, result);
        }
    }

    /// Runs whole datasets with no observer.
    pub async fn run_datasets(&self, datasets: Vec<Dataset>) -> Vec<(Dataset, Summary)> {
        self.run(
            datasets.into_iter().map(Job::from).collect(),
            Arc::new(|_, _, _| {}),
        )
        .await
    }

    /// Runs one whole session here, with no observer.
    pub async fn run_one(&self, dataset: Dataset) -> (Dataset, Summary) {
        let session = self.session(&|_, _, _| {}, 0);
        session.run(Job::from(dataset)).await
    }

    /// Job `job`'s session, its turns told to `observer`.
    fn session<'a>(&'a self, observer: &'a Observer, job: usize) -> SessionRun<'a> {
        SessionRun {
            runner: &*self.runner,
            policy: &self.policy,
            stop: self.stop(),
            observer,
            job,
        }
    }
}

/// Runs `dataset` with `runner`, no timeout and no retries: Fair-Forge's
/// `runner.run_dataset(dataset)`, through the runner's own
/// [`run_dataset`](Runner::run_dataset) and [`run_batch`](Runner::run_batch).
pub async fn run_dataset<R: Runner + ?Sized>(runner: &R, dataset: Dataset) -> (Dataset, Summary) {
    let cancel = CancellationToken::new();
    let session = SessionRun {
        runner: &runner,
        policy: Policy::none(),
        stop: Stop {
            cancel: &cancel,
            halt: None,
        },
        observer: &|_, _, _| {},
        job: 0,
    };
    session.run(Job::from(dataset)).await
}

/// Fair-Forge's summary of a session's turns.
pub(crate) fn summarise(session_id: &str, turns: &[BatchOutcome], total_ms: f64) -> Summary {
    let failures = turns.iter().filter(|t| !t.is_success()).count();
    let batch_time: f64 = turns.iter().map(|t| t.time_ms).sum();
    Summary {
        session_id: session_id.to_owned(),
        total_batches: turns.len(),
        successes: turns.len() - failures,
        failures,
        total_execution_time_ms: total_ms,
        avg_batch_time_ms: if turns.is_empty() {
            0.0
        } else {
            batch_time / turns.len() as f64
        },
    }
}

/// One session being run: the engine's [`TurnDriver`] for its runner.
struct SessionRun<'a> {
    runner: &'a dyn Runner,
    policy: &'a Policy,
    stop: Stop<'a>,
    observer: &'a Observer,
    job: usize,
}

impl SessionRun<'_> {
    /// Runs the job through the runner's `run_dataset`. Turns that an
    /// override answered without [`Turns::run`] are reported from the
    /// dataset it returns; a panic in an override fails the session's turns
    /// that were not reported yet, not the run.
    async fn run(&self, job: Job) -> (Dataset, Summary) {
        let mut dataset = job.dataset;
        dataset.conversation.truncate(job.limit);
        let qa_ids: Vec<String> = dataset
            .conversation
            .iter()
            .map(|b| b.qa_id.clone())
            .collect();
        // The session without its turns, for a panic to report on.
        let conversation = std::mem::take(&mut dataset.conversation);
        let header = dataset.clone();
        dataset.conversation = conversation;
        let started = Instant::now();
        let seen = std::sync::atomic::AtomicUsize::new(0);
        let driver = Driver {
            run: self,
            seen: &seen,
        };
        let turns = Turns::new(&driver);
        let run = self.runner.run_dataset(dataset, &turns);
        let result = AssertUnwindSafe(run).catch_unwind().await;
        let seen = seen.into_inner();
        let (dataset, summary) = match result {
            Ok(done) => done,
            Err(panic) => {
                let error = panicked(&*panic);
                return self.abandoned(header, &qa_ids, seen, &error, millis(started.elapsed()));
            }
        };
        for (index, batch) in dataset.conversation.iter().enumerate().skip(seen) {
            let outcome = BatchOutcome::from_fair_forge(batch.clone());
            (self.observer)(self.job, index, &outcome);
        }
        (dataset, summary)
    }

    /// The session of a `run_dataset` that panicked: every turn failed with
    /// the panic (what it answered is lost with it), the turns not yet
    /// reported reported so.
    fn abandoned(
        &self,
        mut header: Dataset,
        qa_ids: &[String],
        seen: usize,
        error: &RunError,
        total_ms: f64,
    ) -> (Dataset, Summary) {
        let turns: Vec<BatchOutcome> = qa_ids
            .iter()
            .map(|qa_id| BatchOutcome::failure(Batch::new(qa_id.as_str(), ""), error.clone(), 0.0))
            .collect();
        for (index, outcome) in turns.iter().enumerate().skip(seen) {
            (self.observer)(self.job, index, outcome);
        }
        let summary = summarise(&header.session_id, &turns, total_ms);
        header.conversation = turns
            .into_iter()
            .map(BatchOutcome::into_fair_forge)
            .collect();
        (header, summary)
    }

    /// Runs the turns of `dataset` in order and summarises them.
    async fn run_turns(
        &self,
        mut dataset: Dataset,
        seen: &std::sync::atomic::AtomicUsize,
    ) -> (Dataset, Summary) {
        let start = Instant::now();
        let turns = std::mem::take(&mut dataset.conversation);
        let mut done: Vec<BatchOutcome> = Vec::with_capacity(turns.len());
        for (index, batch) in turns.into_iter().enumerate() {
            let outcome = if let Some(reason) = self.stop.reason() {
                let message = format!("{reason} before this turn was sent");
                BatchOutcome::failure(batch, RunError::permanent(message), 0.0)
            } else {
                let session = Session::of(&dataset, &done);
                self.attempt(batch, &session).await
            };
            (self.observer)(self.job, index, &outcome);
            seen.store(index + 1, std::sync::atomic::Ordering::Relaxed);
            done.push(outcome);
        }
        let summary = summarise(&dataset.session_id, &done, millis(start.elapsed()));
        // A fresh vector: collecting in place would keep the outcomes'
        // larger allocation alive for the whole run.
        let mut conversation = Vec::with_capacity(done.len());
        conversation.extend(done.into_iter().map(BatchOutcome::into_fair_forge));
        dataset.conversation = conversation;
        (dataset, summary)
    }

    /// One turn: attempts under the policy until one succeeds, a failure
    /// may not be retried, the retries run out or the run is interrupted.
    async fn attempt(&self, mut batch: Batch, session: &Session<'_>) -> BatchOutcome {
        let (policy, stop, runner) = (self.policy, self.stop, self.runner);
        let start = Instant::now();
        let mut attempts = 0u32;
        let mut last_error = None;
        loop {
            if let Some(limit) = &policy.rate_limit {
                if !stop.unless_stopped(limit.acquire()).await {
                    return interrupted(batch, last_error, attempts, start, stop);
                }
            }
            if stop.reason().is_some() {
                return interrupted(batch, last_error, attempts, start, stop);
            }
            attempts += 1;
            // The runner answers into the batch itself, so no copy of it
            // outlives a successful turn; the copy is what a failed attempt
            // leaves, for the next attempt or the failure.
            let copy = batch.clone();
            let error = match once(runner, batch, session, policy).await {
                Ok(mut outcome) => match outcome.error.take() {
                    None => {
                        outcome.attempts = attempts;
                        outcome.time_ms = millis(start.elapsed());
                        return outcome;
                    }
                    Some(error) => error,
                },
                Err(error) => error,
            };
            batch = copy;
            if attempts > policy.retries || !retryable(&error, runner.retry()) {
                return finally_failed(batch, error, attempts, start);
            }
            tracing::debug!(
                session = session.session_id,
                qa_id = batch.qa_id,
                attempt = attempts,
                %error,
                "retrying"
            );
            let delay = policy.backoff.delay(attempts, error.retry_after);
            if !stop.unless_stopped(tokio::time::sleep(delay)).await {
                return interrupted(batch, Some(error), attempts, start, stop);
            }
            last_error = Some(error);
        }
    }
}

/// The engine as the driver of one session's [`Turns`].
struct Driver<'a> {
    run: &'a SessionRun<'a>,
    seen: &'a std::sync::atomic::AtomicUsize,
}

impl TurnDriver for Driver<'_> {
    fn run_turns(
        &self,
        dataset: Dataset,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = (Dataset, Summary)> + Send + '_>> {
        Box::pin(self.run.run_turns(dataset, self.seen))
    }

    fn answered(
        &self,
        mut dataset: Dataset,
        outcomes: Vec<BatchOutcome>,
        total_ms: f64,
    ) -> (Dataset, Summary) {
        let start = self.seen.load(std::sync::atomic::Ordering::Relaxed);
        for (index, outcome) in outcomes.iter().enumerate().skip(start) {
            (self.run.observer)(self.run.job, index, outcome);
            self.seen
                .store(index + 1, std::sync::atomic::Ordering::Relaxed);
        }
        let summary = summarise(&dataset.session_id, &outcomes, total_ms);
        dataset.conversation = outcomes
            .into_iter()
            .map(BatchOutcome::into_fair_forge)
            .collect();
        (dataset, summary)
    }

    fn is_cancelled(&self) -> bool {
        self.run.stop.reason().is_some()
    }
}

/// One attempt through the runner's `run_batch`, under the policy's
/// timeout; a panic or a timeout is the attempt's error.
async fn once(
    runner: &dyn Runner,
    batch: Batch,
    session: &Session<'_>,
    policy: &Policy,
) -> Result<BatchOutcome, RunError> {
    let call = AssertUnwindSafe(runner.run_batch(batch, session)).catch_unwind();
    match policy.timeout {
        Some(limit) => match tokio::time::timeout(limit, call).await {
            Ok(result) => result.map_err(|panic| panicked(&*panic)),
            Err(_) => Err(RunError::timeout(limit)),
        },
        None => call.await.map_err(|panic| panicked(&*panic)),
    }
}

/// The outcome of a turn whose last attempt failed with `error`.
fn finally_failed(batch: Batch, error: RunError, attempts: u32, start: Instant) -> BatchOutcome {
    let message = if attempts > 1 {
        format!("{error} (after {attempts} attempts)")
    } else {
        error.message.clone()
    };
    let mut outcome = BatchOutcome::failure(
        batch,
        RunError { message, ..error },
        millis(start.elapsed()),
    );
    outcome.attempts = attempts;
    outcome
}

/// The outcome of a turn the run's interruption (or halt) stopped before
/// its next attempt: [`INTERRUPTED`] (or the halt's reason) when nothing
/// was sent, else its last error.
fn interrupted(
    batch: Batch,
    last_error: Option<RunError>,
    attempts: u32,
    start: Instant,
    stop: Stop<'_>,
) -> BatchOutcome {
    let reason = stop.reason().unwrap_or("run interrupted");
    let error = match last_error {
        None => RunError::permanent(format!("{reason} before this turn was sent")),
        Some(error) => RunError {
            message: format!(
                "{} (after {attempts} attempt{}; {reason} before a retry)",
                error.message,
                if attempts == 1 { "" } else { "s" }
            ),
            ..error
        },
    };
    let mut outcome = BatchOutcome::failure(batch, error, millis(start.elapsed()));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::RateLimit;
    use crate::runner::Reply;
    use std::time::Duration;

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

    /// Opens a session on the agent around the conversation, and fails its
    /// first attempt at every turn with a transient error.
    struct Wrapped {
        log: Mutex<Vec<String>>,
    }

    #[async_trait::async_trait]
    impl Runner for Wrapped {
        async fn call(&self, batch: &Batch, _: &Session<'_>) -> Result<Reply, RunError> {
            let mut log = self.log.lock().unwrap();
            log.push(format!("call {}", batch.qa_id));
            if log
                .iter()
                .filter(|l| **l == format!("call {}", batch.qa_id))
                .count()
                == 1
            {
                return Err(RunError::transient("busy"));
            }
            Ok(Reply::text(format!("answer {}", batch.qa_id)))
        }

        async fn run_dataset(&self, dataset: Dataset, turns: &Turns<'_>) -> (Dataset, Summary) {
            self.log.lock().unwrap().push("open".into());
            let done = turns.run(dataset).await;
            self.log.lock().unwrap().push("close".into());
            done
        }
    }

    #[tokio::test]
    async fn an_overridden_run_dataset_wraps_the_engines_turns() {
        let runner = Arc::new(Wrapped {
            log: Mutex::new(Vec::new()),
        });
        let seen = Arc::new(Mutex::new(Vec::new()));
        let observer = {
            let seen = Arc::clone(&seen);
            move |_: usize, turn: usize, outcome: &BatchOutcome| {
                seen.lock()
                    .unwrap()
                    .push((turn, outcome.is_success(), outcome.attempts));
            }
        };
        let engine = Engine::new(runner.clone()).policy(Policy {
            retries: 1,
            backoff: crate::policy::Backoff {
                initial: Duration::from_millis(1),
                max: Duration::from_millis(1),
            },
            ..Policy::default()
        });
        let results = engine
            .run(vec![Job::from(two_turns("s"))], Arc::new(observer))
            .await;
        assert_eq!(
            *runner.log.lock().unwrap(),
            ["open", "call q1", "call q1", "call q2", "call q2", "close"]
        );
        assert_eq!(*seen.lock().unwrap(), [(0, true, 2), (1, true, 2)]);
        assert_eq!(results[0].0.conversation[1].assistant, "answer q2");
    }

    /// Answers a conversation its own way, failing its second turn as
    /// Fair-Forge records a failure.
    struct Whole;

    #[async_trait::async_trait]
    impl Runner for Whole {
        async fn call(&self, _: &Batch, _: &Session<'_>) -> Result<Reply, RunError> {
            Err(RunError::permanent("not used"))
        }

        async fn run_dataset(&self, mut dataset: Dataset, _: &Turns<'_>) -> (Dataset, Summary) {
            dataset.conversation[0].assistant = "all at once".into();
            dataset.conversation[1].record_failure("no second answer");
            let summary = summarise(&dataset.session_id, &[], 0.0);
            (dataset, summary)
        }
    }

    /// Answers the first turn through the engine, then panics.
    struct Crashing;

    #[async_trait::async_trait]
    impl Runner for Crashing {
        async fn call(&self, _: &Batch, _: &Session<'_>) -> Result<Reply, RunError> {
            Ok(Reply::text("fine"))
        }

        async fn run_dataset(&self, mut dataset: Dataset, turns: &Turns<'_>) -> (Dataset, Summary) {
            dataset.conversation.truncate(1);
            let _ = turns.run(dataset).await;
            panic!("lost the session");
        }
    }

    #[tokio::test]
    async fn a_panicking_run_dataset_fails_its_session_not_the_run() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let observer = {
            let seen = Arc::clone(&seen);
            move |job: usize, turn: usize, outcome: &BatchOutcome| {
                let error = outcome.error.as_ref().map(|e| e.message.clone());
                seen.lock().unwrap().push((job, turn, error));
            }
        };
        let results = Engine::new(Arc::new(Crashing))
            .concurrency(1)
            .run(
                vec![Job::from(two_turns("a")), Job::from(two_turns("b"))],
                Arc::new(observer),
            )
            .await;
        let panicked = Some("runner panicked: lost the session".to_owned());
        assert_eq!(
            *seen.lock().unwrap(),
            [
                (0, 0, None),
                (0, 1, panicked.clone()),
                (1, 0, None),
                (1, 1, panicked)
            ]
        );
        let (dataset, summary) = &results[1];
        assert_eq!(dataset.session_id, "b");
        assert_eq!(dataset.conversation[1].qa_id, "q2");
        assert_eq!(
            dataset.conversation[1].assistant,
            "[ERROR] runner panicked: lost the session"
        );
        assert_eq!((summary.total_batches, summary.failures), (2, 2));
    }

    #[tokio::test]
    async fn turns_an_override_answered_itself_are_reported_from_its_dataset() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let observer = {
            let seen = Arc::clone(&seen);
            move |_: usize, turn: usize, outcome: &BatchOutcome| {
                let error = outcome.error.as_ref().map(|e| e.message.clone());
                seen.lock().unwrap().push((turn, error));
            }
        };
        Engine::new(Arc::new(Whole))
            .run(vec![Job::from(two_turns("s"))], Arc::new(observer))
            .await;
        assert_eq!(
            *seen.lock().unwrap(),
            [(0, None), (1, Some("no second answer".to_owned()))]
        );
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

    /// Answers, and fires its halt on the first call (a budget spent).
    struct Spender {
        halt: Arc<Halt>,
        calls: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Runner for Spender {
        async fn call(&self, _: &Batch, _: &Session<'_>) -> Result<Reply, RunError> {
            self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.halt.fire();
            Ok(Reply::text("expensive"))
        }
    }

    // Paused time: a rate-limit wait the halt does not end would be
    // skipped over by the clock and the turn sent.
    #[tokio::test(start_paused = true)]
    async fn a_halt_stops_new_turns_with_its_reason() {
        let halt = Arc::new(Halt::new("budget of $1 spent"));
        let runner = Arc::new(Spender {
            halt: Arc::clone(&halt),
            calls: std::sync::atomic::AtomicUsize::new(0),
        });
        let engine = Engine::new(runner.clone())
            .policy(Policy {
                rate_limit: RateLimit::new(1, Duration::from_secs(3600)),
                ..Policy::default()
            })
            .concurrency(2)
            .halt_on(halt);
        let results = engine
            .run_datasets(vec![two_turns("a"), two_turns("b")])
            .await;
        assert_eq!(runner.calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        let answers: Vec<&str> = results
            .iter()
            .flat_map(|(d, _)| &d.conversation)
            .map(|b| b.assistant.as_str())
            .collect();
        let halted = "[ERROR] budget of $1 spent before this turn was sent";
        assert_eq!(
            answers.iter().filter(|a| **a == halted).count(),
            3,
            "{answers:?}"
        );
        assert!(answers.contains(&"expensive"), "{answers:?}");
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
}
