//! `forge run --lambda FUNCTION`: the suites' sessions run on AWS Lambda, on the function `forge-lambda` (or a user's
//! own build of it), while this machine only packs, sends and checks.
//!
//! After load, selection and `--partition`, each suite's runner is replaced
//! by a [`RemoteRunner`] (see [`Fanout::remote`]). Its
//! [`run_dataset`](Runner::run_dataset) hands the whole session to the
//! shared [chunker](chunk): sessions of one suite are packed into payloads
//! of up to `--lambda-chunk` sessions, each carrying the suite's `runner:`
//! mapping as written (`${VAR}`s for the function to expand: see
//! [`crate::payload::extension`]) and its timeout and retries; at most
//! `--lambda-concurrency` invocations are in flight, transient failures are
//! retried with backoff ([`invoke`]), and each session's answered turns
//! come back to its engine through a oneshot. From there the run is a local
//! run's: checks, judges, budget, reports.
//!
//! A suite's engine keeps `chunk x concurrency` sessions in flight, so the
//! chunks can fill. A turn's time is the function's own measure of it (the
//! response's `turns`), as in a local run; a session's total is the
//! function's wall time for it.
//!
//! Only [`Fanout::connect`]'s AWS SDK client needs the `lambda-client`
//! feature; without it, `--lambda` says which feature to enable.

mod answer;
mod chunk;
pub mod invoke;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::error::RunError;
use crate::payload::extension::PolicySpec;
use crate::policy::Backoff;
use crate::runner::{Reply, Runner, Session, Turns};
use crate::schema::{Batch, Dataset, Summary};
use crate::suite::Suite;
use chunk::{Group, Limits, Pending};
pub use chunk::{LINGER, MAX_CHUNK_BYTES, MAX_PAYLOAD_BYTES};
pub use invoke::{Failure, Invoke, Invoked};

/// Sessions per invocation unless `--lambda-chunk` says.
pub const DEFAULT_CHUNK: usize = 10;

/// Invocations in flight unless `--lambda-concurrency` says (Lambda's
/// default account concurrency is 1000).
pub const DEFAULT_CONCURRENCY: usize = 100;

/// Why the fan-out cannot start.
#[derive(Debug, Error)]
pub enum FanoutError {
    /// A build without the `lambda-client` feature.
    #[error(
        "forge run --lambda is not in this build: it needs the `lambda-client` feature \
         (`cargo install forge-eval --features lambda-client`, or `features = [\"lambda-client\"]` \
         on the dependency)"
    )]
    NotBuilt,
    /// The AWS SDK found no region.
    #[error(
        "no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION, or `region` in the AWS profile)"
    )]
    NoRegion,
}

/// How `forge run --lambda` invokes.
#[derive(Debug, Clone)]
pub struct LambdaOptions {
    /// The function: a name, an ARN or `name:alias`.
    pub function: String,
    /// The Invoke API's URL (a local emulator); default the SDK's, or
    /// `AWS_ENDPOINT_URL_LAMBDA`.
    pub endpoint: Option<String>,
    /// Sessions per invocation (at most).
    pub chunk: usize,
    /// Invocations in flight (at most).
    pub concurrency: usize,
}

/// The sessions sent, answered and failed so far: the console's progress
/// and the run's closing line.
#[derive(Debug, Default)]
pub struct Progress {
    sent: AtomicUsize,
    answered: AtomicUsize,
    failed: AtomicUsize,
    unsent: AtomicUsize,
    invocations: AtomicUsize,
    retries: AtomicUsize,
}

impl Progress {
    fn add(counter: &AtomicUsize, n: usize) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn add_sent(&self, n: usize) {
        Self::add(&self.sent, n)
    }
    pub(crate) fn add_answered(&self, n: usize) {
        Self::add(&self.answered, n)
    }
    pub(crate) fn add_failed(&self, n: usize) {
        Self::add(&self.failed, n)
    }
    pub(crate) fn add_unsent(&self, n: usize) {
        Self::add(&self.unsent, n)
    }
    pub(crate) fn add_invocation(&self, attempts: u32) {
        Self::add(&self.invocations, 1);
        Self::add(&self.retries, attempts.saturating_sub(1) as usize);
    }

    /// Sessions (sent, answered, failed, not sent because of an interruption).
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let get = |c: &AtomicUsize| c.load(Ordering::Relaxed);
        (
            get(&self.sent),
            get(&self.answered),
            get(&self.failed),
            get(&self.unsent),
        )
    }

    /// `lambda: 12 sessions sent, 11 answered, 1 failed`.
    pub fn status(&self) -> String {
        let (sent, answered, failed, unsent) = self.counts();
        let mut line =
            format!("lambda: {sent} sessions sent, {answered} answered, {failed} failed");
        if unsent > 0 {
            line.push_str(&format!(", {unsent} not sent"));
        }
        line
    }

    /// [`status`](Self::status) with the invocations and their retries.
    pub fn closing_line(&self) -> String {
        let get = |c: &AtomicUsize| c.load(Ordering::Relaxed);
        format!(
            "{} ({} invocations, {} retried)",
            self.status(),
            get(&self.invocations),
            get(&self.retries)
        )
    }
}

/// The shared fan-out of one run: the chunker's queue and its progress.
pub struct Fanout {
    queue: mpsc::UnboundedSender<Pending>,
    limits: Limits,
    progress: Arc<Progress>,
    task: tokio::task::JoinHandle<()>,
}

impl Fanout {
    /// A fan-out over `options.function` with the AWS SDK (feature
    /// `lambda-client`; without it, [`FanoutError::NotBuilt`]).
    pub async fn connect(
        options: &LambdaOptions,
        cancel: CancellationToken,
    ) -> Result<Fanout, FanoutError> {
        #[cfg(feature = "lambda-client")]
        {
            let invoker =
                invoke::AwsInvoker::connect(&options.function, options.endpoint.as_deref()).await?;
            Ok(Fanout::start(
                Arc::new(invoker),
                options.chunk,
                options.concurrency,
                cancel,
            ))
        }
        #[cfg(not(feature = "lambda-client"))]
        {
            let _ = (options, cancel);
            Err(FanoutError::NotBuilt)
        }
    }

    /// A fan-out over `invoker` (the AWS SDK's, or a test's), `chunk`
    /// sessions per invocation, `concurrency` invocations in flight; once
    /// `cancel` fires no new invocation starts.
    pub fn start(
        invoker: Arc<dyn Invoke>,
        chunk: usize,
        concurrency: usize,
        cancel: CancellationToken,
    ) -> Fanout {
        let limits = Limits {
            chunk: chunk.max(1),
            concurrency: concurrency.max(1),
            backoff: Backoff::DEFAULT,
        };
        let (queue, incoming) = mpsc::unbounded_channel();
        let progress = Arc::new(Progress::default());
        let task = tokio::spawn(chunk::run(
            incoming,
            invoker,
            limits.clone(),
            cancel,
            Arc::clone(&progress),
        ));
        Fanout {
            queue,
            limits,
            progress,
            task,
        }
    }

    /// The sessions sent, answered and failed so far.
    pub fn progress(&self) -> Arc<Progress> {
        Arc::clone(&self.progress)
    }

    /// Has every suite run remotely: its runner replaced by a
    /// [`RemoteRunner`] of this fan-out, `chunk x concurrency` sessions in
    /// flight. A suite's `rate_limit` is not applied (warned on stderr).
    pub fn remote(&self, suites: &mut [Suite]) {
        let sessions = self.limits.chunk.saturating_mul(self.limits.concurrency);
        for (id, suite) in suites.iter_mut().enumerate() {
            if suite.policy.rate_limit.is_some() {
                eprintln!(
                    "forge: warning: {}: `rate_limit` is not applied across Lambda invocations; \
                     bound the rate with --lambda-concurrency and --lambda-chunk",
                    suite.name
                );
            }
            let group = Arc::new(Group {
                id,
                runner: suite.runner_as_written().clone(),
                policy: PolicySpec::of(&suite.policy),
            });
            let runner = RemoteRunner {
                group,
                queue: self.queue.clone(),
            };
            suite.run_remotely(Arc::new(runner), sessions);
        }
    }

    /// Waits for the last invocations (once every suite's run is over and
    /// its runners dropped); the progress.
    pub async fn finish(self) -> Arc<Progress> {
        drop(self.queue);
        let _ = self.task.await;
        self.progress
    }
}

/// A suite's runner under `forge run --lambda`: its sessions are answered
/// by the function, whole.
pub struct RemoteRunner {
    group: Arc<Group>,
    queue: mpsc::UnboundedSender<Pending>,
}

#[async_trait]
impl Runner for RemoteRunner {
    async fn call(&self, _batch: &Batch, _session: &Session<'_>) -> Result<Reply, RunError> {
        Err(RunError::permanent(
            "this suite's sessions run on AWS Lambda, whole (forge run --lambda)",
        ))
    }

    async fn run_dataset(&self, dataset: Dataset, turns: &Turns<'_>) -> (Dataset, Summary) {
        let header = Dataset {
            conversation: Vec::new(),
            ..dataset.clone()
        };
        if turns.is_cancelled() {
            let answered = answer::failed(dataset, crate::engine::INTERRUPTED);
            return turns.answered(header, answered.outcomes, 0.0);
        }
        let started = Instant::now();
        let bytes = serde_json::to_vec(&dataset).map_or(0, |b| b.len());
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            group: Arc::clone(&self.group),
            dataset: dataset.clone(),
            bytes,
            reply,
        };
        let answered = match self.queue.send(pending) {
            Ok(()) => answer.await.ok(),
            Err(_) => None,
        };
        let answered =
            answered.unwrap_or_else(|| answer::failed(dataset, "the Lambda fan-out stopped early"));
        let total_ms = match answered.total_ms {
            0.0 => crate::runner::millis(started.elapsed()),
            measured => measured,
        };
        turns.answered(header, answered.outcomes, total_ms)
    }
}
