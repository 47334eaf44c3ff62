//! The third step of the pipeline: runs the selected batches of loaded
//! suites (and the earlier turns of their sessions), every suite at once,
//! each with its own runner, policy and concurrency, and turns each batch's
//! outcome (all its `repeat` runs) into one [`BatchRecord`], sent to the
//! record stream as soon as it is known.
//!
//! A record's messages and answers are redacted here, once, with the
//! suite's [`Secrets`]; the suite's answered datasets come back in a
//! [`SuiteRun`] with the secrets that the Fair-Forge JSON must redact.
//!
//! A turn whose checks include judged ones (`answer_correctness`,
//! `rubric`) and whose runner call succeeded is judged on a task of its
//! own, so the session's next turn does not wait for the judge; its run's
//! record is made when the judge has ruled, and the suite's run ends once
//! every such task has. A failed runner call is not judged.
//!
//! Each run's record carries what its runner call and its judge calls
//! spent (tokens, and cost at the suite's prices); the suite's [`Meter`]
//! adds the cost up as it comes, and once the suite's `budget` is spent
//! its [`Halt`](crate::Halt) stops the engine from sending new turns.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::budget::Meter;
use crate::cassette::{Cassettes, JobKey, JudgeEntry, JudgeTape, Recorder, Replay, Tape, TurnKey};
use crate::check::{CheckResult, Checks, Turn};
use crate::engine::{Engine, Job};
use crate::error::ReportError;
use crate::judge::{Judge, JudgePool};
use crate::runner::BatchOutcome;
use crate::schema::{Dataset, Response, RunResponse, Summary};
use crate::secrets::Secrets;
use crate::select::{BatchId, Selection};
use crate::suite::Suite;
use crate::usage::{Price, Spend};

/// The record stream: called with one record per batch that ran, from the
/// engine's workers, as soon as the batch's verdict is known.
pub type RecordSink = dyn Fn(BatchRecord) + Send + Sync;

/// The verdict on one batch, as a test case. Its texts are redacted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchRecord {
    /// Where the batch sits.
    pub id: BatchId,
    /// Its test name, `<suite>::<session_id>::<qa_id>`.
    pub test: String,
    /// Whether the batch was selected (an earlier turn run only to keep the
    /// conversation intact is not).
    pub selected: bool,
    /// Whether the test passed: enough of its runs succeeded and met every
    /// expectation.
    pub passed: bool,
    /// Why it failed.
    pub message: Option<String>,
    /// Each run of the batch (one unless the suite says `repeat`).
    pub runs: Vec<RunRecord>,
    /// The results of the checks on its runs together (`pass_pow_k`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckResult>,
    /// Whether the batch is skipped: ignored (`ignore: true`), and not
    /// asked for (libtest's `--ignored`). It is not selected; it ran only
    /// when a later turn of its session needed it, and its runs are not its
    /// verdict (JUnit's `<skipped/>`, cargo test's "ignored").
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
    /// Where the batch is written, for CI to link to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<crate::suite::BatchLocation>,
}

impl BatchRecord {
    /// The answer, or `[ERROR] ...`; with several runs, one line per run.
    pub fn answer(&self) -> String {
        match self.runs.as_slice() {
            [one] => one.answer.clone(),
            runs => runs
                .iter()
                .enumerate()
                .map(|(k, run)| format!("run {}: {}", k + 1, run.answer))
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    /// The time of all runs, in ms.
    pub fn time_ms(&self) -> f64 {
        self.runs.iter().map(|r| r.time_ms).sum()
    }
}

/// One run of a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The session id the run used (`<session_id>-run<k>` with `repeat`).
    pub session_id: String,
    /// Whether the runner call succeeded.
    pub success: bool,
    /// Whether the call succeeded and every check held.
    pub passed: bool,
    /// Why it did not pass.
    pub message: Option<String>,
    /// The answer, or `[ERROR] ...`.
    pub answer: String,
    /// The turn's time in ms.
    pub time_ms: f64,
    /// The result of each expectation (none when the call failed).
    pub checks: Vec<CheckResult>,
    /// What the runner call spent, when the runner reported its usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Spend>,
    /// What judging the turn spent, when the judge reported its usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge_usage: Option<Spend>,
}

impl RunRecord {
    /// The record of a run whose checks (none when the call failed) gave
    /// `checks`, and whose runner and judge spent `spent`.
    fn new(
        session_id: &str,
        outcome: &BatchOutcome,
        (checks, spent): (Vec<CheckResult>, Spent),
        secrets: &Secrets,
    ) -> Self {
        let message = match &outcome.error {
            None => {
                let failed: Vec<String> = checks
                    .iter()
                    .filter(|c| !c.passed)
                    .map(|c| format!("check `{}` failed: {}", c.check, c.detail))
                    .collect();
                (!failed.is_empty()).then(|| failed.join("\n"))
            }
            Some(error) => Some(error.message.clone()),
        };
        RunRecord {
            session_id: session_id.to_owned(),
            success: outcome.is_success(),
            passed: outcome.is_success() && message.is_none(),
            message: message.map(|m| secrets.redact(&m).into_owned()),
            answer: secrets.redact(&outcome.answer()).into_owned(),
            time_ms: outcome.time_ms,
            checks,
            usage: spent.runner,
            judge_usage: spent.judge,
        }
    }
}

/// What a turn's runner call and its judge calls spent.
#[derive(Debug, Clone, Copy, Default)]
struct Spent {
    runner: Option<Spend>,
    judge: Option<Spend>,
}

/// The record of a batch from its runs: passed when `needed` of them did
/// and the checks on the runs together (`pass_pow_k`) held.
fn verdict(
    id: BatchId,
    test: &str,
    selected: bool,
    runs: Vec<RunRecord>,
    needed: usize,
    expect: &Checks,
) -> BatchRecord {
    let passes = runs.iter().filter(|r| r.passed).count();
    let checks = if runs.len() > 1 {
        expect.evaluate_runs(passes, runs.len())
    } else {
        Vec::new()
    };
    let held = checks.iter().all(|c| c.passed);
    let passed = passes >= needed && held;
    let message = if runs.len() == 1 {
        runs[0].message.clone()
    } else if passed {
        None
    } else {
        let mut lines = vec![format!(
            "{passes} of {} runs passed, {needed} needed",
            runs.len()
        )];
        lines.extend(
            checks
                .iter()
                .filter(|c| !c.passed)
                .map(|c| format!("check `{}` failed: {}", c.check, c.detail)),
        );
        for (k, run) in runs.iter().enumerate() {
            if let Some(message) = &run.message {
                lines.push(format!("run {}: {}", k + 1, message.replace('\n', "\n  ")));
            }
        }
        Some(lines.join("\n"))
    };
    BatchRecord {
        id,
        test: test.to_owned(),
        selected,
        passed,
        message,
        runs,
        checks,
        skipped: false,
        location: None,
    }
}

/// What one suite's run left besides its records.
#[derive(Debug)]
pub struct SuiteRun {
    /// The suite's name.
    pub name: String,
    /// Its system, for a suite with `runners:`.
    pub system: Option<String>,
    /// Its response: the datasets that ran with their summaries, or the
    /// error that kept the suite from running (its runner's configuration).
    pub response: Response,
    /// Where each of the response's datasets comes from, in its order.
    pub origins: Vec<Origin>,
    /// The secrets to keep out of its reports.
    pub secrets: Secrets,
    /// The cassette written (with `--record`), or why it could not be.
    pub cassette: Option<Result<PathBuf, ReportError>>,
}

/// Where an answered dataset of a response comes from: the suite's dataset
/// and which of its `repeat` runs (0 without `repeat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Origin {
    /// Index of the dataset within the suite.
    pub dataset: usize,
    /// Index of the run.
    pub run: usize,
}

/// Runs the `selection` of `suites`, sending each batch's record to
/// `records` as soon as it is known. A suite whose runner cannot be built
/// fails all its selected batches with that error; a suite with nothing
/// selected does not build its runner. With `cassettes`, sessions replay
/// from a recording and live ones are recorded (see [`crate::cassette`]).
///
/// The turns of the datasets that run are moved out of the suites into the
/// results (not copied), so a large run holds each batch once.
pub async fn run(
    suites: &mut [Suite],
    selection: &Selection,
    records: Arc<RecordSink>,
    cassettes: &Cassettes,
    cancel: CancellationToken,
) -> Vec<SuiteRun> {
    let runs = suites.iter_mut().enumerate().map(|(index, suite)| {
        run_suite(
            index,
            suite,
            selection,
            Arc::clone(&records),
            cassettes,
            cancel.clone(),
        )
    });
    join_all(runs).await
}

async fn run_suite(
    index: usize,
    suite: &mut Suite,
    selection: &Selection,
    records: Arc<RecordSink>,
    cassettes: &Cassettes,
    cancel: CancellationToken,
) -> SuiteRun {
    let secrets = suite.secrets();
    let plan = plan(index, suite, selection);
    if plan.is_empty() {
        let empty = Response::Success(RunResponse::new(Vec::new()));
        return suite_run(suite, &secrets, empty, Vec::new());
    }
    // A suite that cannot be set up fails all its planned batches with why.
    let failed = |suite: &Suite, message: String| {
        unbuilt(index, suite, &plan, selection, &message, &*records);
        suite_run(suite, &secrets, Response::error(message), Vec::new())
    };
    let tape = match open_tape(cassettes, suite) {
        Ok(tape) => tape,
        Err(message) => return failed(suite, message),
    };
    let judge_tape = Arc::new(JudgeTape::new(
        tape.as_ref().map(Tape::judge),
        cassettes.offline(),
        cassettes.record.is_some(),
    ));
    let meter = Arc::new(Meter::new(suite.budget));
    let judges = judges(
        suite,
        cancel.clone(),
        &secrets,
        Arc::clone(&judge_tape),
        &meter,
    );
    let judges = match judges {
        Ok(judges) => judges,
        Err(message) => return failed(suite, secrets.redact(&message).into_owned()),
    };
    let (jobs, job_of) = jobs(suite, &plan);
    let (replays, live) = replays(suite, tape.as_ref(), &jobs, &job_of, cassettes.offline());
    let recorder = cassettes.record.as_deref().map(|dir| {
        let keys = job_keys(suite, &jobs, &job_of, &live);
        let (runner, errors) = (suite.runner_key(), cassettes.record_errors);
        Arc::new(Recorder::new(
            dir,
            &suite.report_name(),
            runner,
            errors,
            secrets.clone(),
            keys,
        ))
    });
    let runner = match live.iter().any(|l| *l).then(|| suite.build_runner()) {
        None => None,
        Some(Ok(runner)) => Some(runner),
        Some(Err(error)) => return failed(suite, secrets.redact(&error.to_string()).into_owned()),
    };
    let origins = job_of
        .iter()
        .map(|&(dataset, run)| Origin { dataset, run })
        .collect();
    let collector = Collector::new(index, suite, selection, &jobs, job_of, judges, records);
    let collector = Arc::new(collector.metered(suite.price, Arc::clone(&meter)));
    let mut results = replayed(jobs.len(), &jobs, replays, &live, &collector);
    if let Some(runner) = runner {
        let mut engine = Engine::new(runner)
            .policy(suite.policy.clone())
            .concurrency(suite.sessions_in_flight())
            .cancel_on(cancel);
        if let Some(halt) = meter.halt() {
            engine = engine.halt_on(halt);
        }
        let live_run = LiveJobs {
            collector: &collector,
            recorder: recorder.as_ref(),
        };
        live_run.run(engine, jobs, &live, &mut results).await;
    }
    collector.judged().await;
    let cassette = recorder
        .and_then(Arc::into_inner)
        .map(|recorder| finish_cassette(cassettes, suite, &plan, recorder, tape, &judge_tape));
    let results = results.into_iter().flatten().collect();
    SuiteRun {
        cassette,
        ..suite_run(
            suite,
            &secrets,
            Response::Success(RunResponse::new(results)),
            origins,
        )
    }
}

/// A suite's run, before any cassette.
fn suite_run(
    suite: &Suite,
    secrets: &Secrets,
    response: Response,
    origins: Vec<Origin>,
) -> SuiteRun {
    SuiteRun {
        name: suite.name.clone(),
        system: suite.system.clone(),
        response,
        origins,
        secrets: secrets.clone(),
        cassette: None,
    }
}

/// The (dataset index, turns to run) of each session of the suite to contact.
fn plan(index: usize, suite: &Suite, selection: &Selection) -> Vec<(usize, usize)> {
    suite
        .datasets
        .iter()
        .enumerate()
        .filter_map(|(d, data)| {
            let len = data.dataset.conversation.len();
            selection.turns(index, d, len).map(|turns| (d, turns))
        })
        .collect()
}

/// The suite's cassette to replay, when replaying; an error when it cannot
/// be read (nothing runs live in its place).
fn open_tape(cassettes: &Cassettes, suite: &Suite) -> Result<Option<Tape>, String> {
    match &cassettes.replay {
        None => Ok(None),
        Some(dir) => Tape::load(dir, &suite.report_name(), &suite.runner_key())
            .map(Some)
            .map_err(|message| format!("cannot replay: {message}")),
    }
}

/// Each job's replay (when replaying), and whether it runs live: no
/// replay, or (unless offline) one that did not replay every turn.
fn replays(
    suite: &Suite,
    tape: Option<&Tape>,
    jobs: &[Job],
    job_of: &[(usize, usize)],
    offline: bool,
) -> (Vec<Option<Replay>>, Vec<bool>) {
    let replays: Vec<Option<Replay>> = jobs
        .iter()
        .zip(job_of)
        .map(|(job, &(d, run))| {
            let session_id = &suite.datasets[d].dataset.session_id;
            tape.map(|t| t.replay(&job.dataset, job.limit, session_id, run))
        })
        .collect();
    let live = replays
        .iter()
        .map(|r| r.as_ref().is_none_or(|r| !r.complete && !offline))
        .collect();
    (replays, live)
}

/// What the jobs that run live report to.
struct LiveJobs<'a> {
    collector: &'a Arc<Collector>,
    recorder: Option<&'a Arc<Recorder>>,
}

impl LiveJobs<'_> {
    /// Runs the `live` jobs on `engine`, their turns to the collector (and
    /// the recorder), their results into `results`.
    async fn run(
        self,
        engine: Engine,
        jobs: Vec<Job>,
        live: &[bool],
        results: &mut [Option<(Dataset, Summary)>],
    ) {
        let (live_jobs, at): (Vec<Job>, Vec<usize>) = jobs
            .into_iter()
            .enumerate()
            .filter(|(j, _)| live[*j])
            .map(|(j, job)| (job, j))
            .unzip();
        let at = Arc::new(at);
        let observer = {
            let (collector, recorder) = (Arc::clone(self.collector), self.recorder.cloned());
            let at = Arc::clone(&at);
            move |job: usize, batch: usize, outcome: &BatchOutcome| {
                let job = at[job];
                if let Some(recorder) = &recorder {
                    recorder.on_turn(job, batch, outcome);
                }
                collector.on_turn(job, batch, outcome);
            }
        };
        let done = engine.run(live_jobs, Arc::new(observer)).await;
        for (k, result) in done.into_iter().enumerate() {
            if let Some(recorder) = self.recorder {
                let (dataset, summary) = &result;
                let turns = dataset.conversation.len();
                recorder.on_session(at[k], turns, summary.total_execution_time_ms);
            }
            results[at[k]] = Some(result);
        }
    }
}

/// Writes the suite's cassette: what was recorded now, with what the old
/// cassette (the replayed one, or the one in the recording directory) has
/// of the suite's other sessions and judge requests.
fn finish_cassette(
    cassettes: &Cassettes,
    suite: &Suite,
    plan: &[(usize, usize)],
    recorder: Recorder,
    tape: Option<Tape>,
    judge_tape: &JudgeTape,
) -> Result<PathBuf, ReportError> {
    let old = match (&cassettes.record, &cassettes.replay) {
        (Some(record), Some(replay)) if record == replay => tape,
        (Some(record), _) => Tape::load(record, &suite.report_name(), &suite.runner_key()).ok(),
        _ => None,
    };
    // Whether every turn of every session ran: then the old cassette's
    // judge replies that were not used are stale.
    let whole = plan.len() == suite.datasets.len()
        && plan
            .iter()
            .all(|&(d, turns)| turns >= suite.datasets[d].test_names.len());
    let judge = judge_tape.entries(old.as_ref().map_or(&[], Tape::judge), whole);
    write_cassette(suite, recorder, old.as_ref(), judge)
}

/// The judge of each dataset of `suite` (one per distinct configuration),
/// all sharing the suite's bound on requests in flight; nothing is sent.
fn judges(
    suite: &Suite,
    cancel: CancellationToken,
    secrets: &Secrets,
    tape: Arc<JudgeTape>,
    meter: &Arc<Meter>,
) -> Result<Vec<Option<Arc<Judge>>>, String> {
    let pool = JudgePool::new(
        suite.concurrency,
        &suite.policy,
        cancel,
        secrets.clone(),
        tape,
        Arc::clone(meter),
    );
    let mut built: Vec<Arc<Judge>> = Vec::new();
    let mut judge_of = |spec: &Arc<crate::judge::JudgeSpec>| {
        if let Some(judge) = built.iter().find(|j| j.is(spec)) {
            return Ok(Arc::clone(judge));
        }
        let judge = Arc::new(Judge::new(Arc::clone(spec), Arc::clone(&pool))?);
        built.push(Arc::clone(&judge));
        Ok(judge)
    };
    suite
        .datasets
        .iter()
        .map(|data| data.judge.as_ref().map(&mut judge_of).transpose())
        .collect()
}

/// The results of the jobs that replayed (their records sent), `None`
/// for the ones that run live.
fn replayed(
    count: usize,
    jobs: &[Job],
    replays: Vec<Option<Replay>>,
    live: &[bool],
    collector: &Arc<Collector>,
) -> Vec<Option<(Dataset, Summary)>> {
    let mut results: Vec<Option<(Dataset, Summary)>> = (0..count).map(|_| None).collect();
    for (j, replay) in replays.into_iter().enumerate() {
        let Some(replay) = replay.filter(|_| !live[j]) else {
            continue;
        };
        for (turn, outcome) in replay.outcomes.iter().enumerate() {
            collector.on_turn(j, turn, outcome);
        }
        let header = &jobs[j].dataset;
        let summary =
            crate::engine::summarise(&header.session_id, &replay.outcomes, replay.total_ms);
        let dataset = Dataset {
            session_id: header.session_id.clone(),
            assistant_id: header.assistant_id.clone(),
            language: header.language.clone(),
            context: header.context.clone(),
            conversation: replay
                .outcomes
                .into_iter()
                .map(BatchOutcome::into_fair_forge)
                .collect(),
            extra: header.extra.clone(),
        };
        results[j] = Some((dataset, summary));
    }
    results
}

/// What the recorder needs of each job, from its turns before they run.
fn job_keys(suite: &Suite, jobs: &[Job], job_of: &[(usize, usize)], live: &[bool]) -> Vec<JobKey> {
    jobs.iter()
        .zip(job_of)
        .zip(live)
        .map(|((job, &(d, run)), &live)| {
            let turns = &job.dataset.conversation[..job.limit.min(job.dataset.conversation.len())];
            JobKey {
                session_id: suite.datasets[d].dataset.session_id.clone(),
                assistant_id: job.dataset.assistant_id.clone(),
                run,
                context: crate::cassette::fingerprint(&job.dataset.context),
                turns: turns.iter().map(TurnKey::of).collect(),
                live,
            }
        })
        .collect()
}

/// Writes the suite's cassette, keeping the recordings of its sessions
/// that did not run live.
fn write_cassette(
    suite: &Suite,
    recorder: Recorder,
    old: Option<&Tape>,
    judge: Vec<JudgeEntry>,
) -> Result<PathBuf, ReportError> {
    let sessions: std::collections::HashSet<(&str, &str, usize)> = suite
        .datasets
        .iter()
        .flat_map(|d| {
            (0..d.runs).map(move |run| {
                (
                    d.dataset.session_id.as_str(),
                    d.dataset.assistant_id.as_str(),
                    run,
                )
            })
        })
        .collect();
    let kept = |tape: &crate::cassette::SessionTape| {
        sessions.contains(&(
            tape.session_id.as_str(),
            tape.assistant_id.as_str(),
            tape.run,
        ))
    };
    recorder.write(old, &kept, judge)
}

/// Records of the planned batches of a suite whose runner cannot be built.
fn unbuilt(
    index: usize,
    suite: &Suite,
    plan: &[(usize, usize)],
    selection: &Selection,
    message: &str,
    records: &RecordSink,
) {
    for &(d, turns) in plan {
        for b in 0..turns {
            let id = BatchId {
                suite: index,
                dataset: d,
                batch: b,
            };
            records(BatchRecord {
                id,
                test: suite.datasets[d].test_names[b].clone(),
                selected: selection.contains(id),
                passed: false,
                message: Some(message.to_owned()),
                runs: Vec::new(),
                checks: Vec::new(),
                skipped: false,
                location: None,
            });
        }
    }
}

/// One job per run of each planned dataset (repeated runs are sessions of
/// their own, `<session_id>-run<k>`), and the (dataset, run) of each job.
fn jobs(suite: &mut Suite, plan: &[(usize, usize)]) -> (Vec<Job>, Vec<(usize, usize)>) {
    let mut jobs = Vec::new();
    let mut job_of = Vec::new();
    for &(d, limit) in plan {
        let data = &mut suite.datasets[d];
        for run in 0..data.runs {
            let mut dataset = if run + 1 == data.runs {
                // The last (usually the only) run takes the suite's turns.
                let conversation = std::mem::take(&mut data.dataset.conversation);
                Dataset {
                    conversation,
                    ..data.dataset.clone()
                }
            } else {
                data.dataset.clone()
            };
            if data.runs > 1 {
                dataset.session_id = format!("{}-run{}", dataset.session_id, run + 1);
            }
            jobs.push(Job { dataset, limit });
            job_of.push((d, run));
        }
    }
    (jobs, job_of)
}

/// Turns the engine's outcomes into records: waits for every run of a
/// repeated batch, then judges it.
struct Collector {
    suite: usize,
    datasets: Vec<DatasetMeta>,
    job_of: Vec<(usize, usize)>,
    session_ids: Vec<String>,
    secrets: Secrets,
    /// The runs of a repeated batch seen so far, by (dataset, batch).
    pending: Mutex<HashMap<(usize, usize), Runs>>,
    records: Arc<RecordSink>,
    /// The turns being judged.
    judging: Mutex<tokio::task::JoinSet<()>>,
    /// What the runner's tokens cost.
    price: Option<Price>,
    /// The suite's spending, toward its budget.
    meter: Arc<Meter>,
}

/// The runs of one repeated batch, by run index, as they come in.
type Runs = Vec<Option<RunRecord>>;

/// What the collector needs of a dataset.
struct DatasetMeta {
    names: Arc<[String]>,
    expects: Arc<[Arc<Checks>]>,
    selected: Vec<bool>,
    runs: usize,
    needed: usize,
    judge: Option<Arc<Judge>>,
}

impl Collector {
    fn new(
        suite: usize,
        source: &Suite,
        selection: &Selection,
        jobs: &[Job],
        job_of: Vec<(usize, usize)>,
        judges: Vec<Option<Arc<Judge>>>,
        records: Arc<RecordSink>,
    ) -> Self {
        let mut judges = judges.into_iter();
        let meta = |(d, data): (usize, &crate::suite::SuiteDataset)| DatasetMeta {
            names: Arc::clone(&data.test_names),
            expects: Arc::clone(&data.expects),
            selected: (0..data.test_names.len())
                .map(|batch| {
                    selection.contains(BatchId {
                        suite,
                        dataset: d,
                        batch,
                    })
                })
                .collect(),
            runs: data.runs,
            needed: data.min_passes,
            judge: judges.next().flatten(),
        };
        Collector {
            suite,
            datasets: source.datasets.iter().enumerate().map(meta).collect(),
            job_of,
            session_ids: jobs.iter().map(|j| j.dataset.session_id.clone()).collect(),
            secrets: source.secrets(),
            pending: Mutex::new(HashMap::new()),
            records,
            judging: Mutex::new(tokio::task::JoinSet::new()),
            price: None,
            meter: Arc::default(),
        }
    }

    /// This collector, counting the runner's tokens at `price` on `meter`.
    fn metered(self, price: Option<Price>, meter: Arc<Meter>) -> Self {
        Collector {
            price,
            meter,
            ..self
        }
    }

    /// Checks a turn and records its run: at once, or, when a judge must
    /// rule on it, on a task of its own.
    fn on_turn(self: &Arc<Self>, job: usize, batch: usize, outcome: &BatchOutcome) {
        let d = self.job_of[job].0;
        let meta = &self.datasets[d];
        let expect = &meta.expects[batch];
        let runner = outcome.usage.map(|usage| {
            let spend = Spend::new(usage, self.price.as_ref());
            // Counted before the engine sends the session's next turn.
            self.meter.add(spend.cost_usd.unwrap_or(0.0));
            spend
        });
        if let (Some(judge), true) = (&meta.judge, outcome.is_success()) {
            if expect.judged().is_some() {
                let (this, judge) = (Arc::clone(self), judge.for_turn());
                let (expect, outcome) = (Arc::clone(expect), outcome.clone());
                let task = async move {
                    let turn = Turn::new(&outcome.batch, outcome.time_ms).with_usage(outcome.usage);
                    let checks = expect.evaluate_judged(&turn, &judge).await;
                    let judge = judge.spent().map(|u| Spend::new(u, judge.price()));
                    this.record(job, batch, &outcome, (checks, Spent { runner, judge }));
                };
                let mut judging = lock(&self.judging);
                // Finished tasks are reaped as new ones start, so a long run
                // holds only the turns still being judged.
                while let Some(done) = judging.try_join_next() {
                    surface_panic(done);
                }
                judging.spawn(task);
                return;
            }
        }
        let checks = match outcome.error {
            None => expect
                .evaluate(&Turn::new(&outcome.batch, outcome.time_ms).with_usage(outcome.usage)),
            Some(_) => Vec::new(),
        };
        let spent = Spent {
            runner,
            judge: None,
        };
        self.record(job, batch, outcome, (checks, spent));
    }

    /// Waits for every turn being judged to be recorded.
    async fn judged(&self) {
        loop {
            let mut judging = std::mem::take(&mut *lock(&self.judging));
            if judging.is_empty() {
                return;
            }
            while let Some(done) = judging.join_next().await {
                surface_panic(done);
            }
        }
    }

    /// Records a run whose checks gave `checks`; sends the batch's record
    /// once its last run is in.
    fn record(
        &self,
        job: usize,
        batch: usize,
        outcome: &BatchOutcome,
        result: (Vec<CheckResult>, Spent),
    ) {
        let (d, run) = self.job_of[job];
        let meta = &self.datasets[d];
        let record = RunRecord::new(&self.session_ids[job], outcome, result, &self.secrets);
        let Some(runs) = self.complete(d, batch, run, record) else {
            return;
        };
        let id = BatchId {
            suite: self.suite,
            dataset: d,
            batch,
        };
        (self.records)(verdict(
            id,
            &meta.names[batch],
            meta.selected[batch],
            runs,
            meta.needed,
            &meta.expects[batch],
        ));
    }

    /// Every run of the batch once the last has come in, else `None`.
    fn complete(
        &self,
        d: usize,
        batch: usize,
        run: usize,
        record: RunRecord,
    ) -> Option<Vec<RunRecord>> {
        let runs = self.datasets[d].runs;
        if runs == 1 {
            return Some(vec![record]);
        }
        let mut pending = lock(&self.pending);
        let slots = pending
            .entry((d, batch))
            .or_insert_with(|| vec![None; runs]);
        slots[run] = Some(record);
        if slots.iter().any(Option::is_none) {
            return None;
        }
        pending
            .remove(&(d, batch))
            .map(|done| done.into_iter().flatten().collect())
    }
}

/// A judging task's end: a panic there is a bug in forge, surfaced.
fn surface_panic(done: Result<(), tokio::task::JoinError>) {
    if let Err(error) = done {
        if error.is_panic() {
            std::panic::resume_unwind(error.into_panic());
        }
    }
}

/// Locks `mutex`, poisoned or not.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
