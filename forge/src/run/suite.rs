//! One suite's run: its datasets taken one at a time from the suite (read
//! from their files as the run reaches them), each picked by the
//! selection, its sessions replayed or sent to the engine, its records and
//! answered datasets handed on in order; nothing of a dataset is kept once
//! it has gone out.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use super::collect::{Collector, DatasetMeta, JobInfo};
use super::order::{Order, Pending};
use super::{Answered, BatchRecord, Origin, RunEvents, SuiteRun};
use crate::budget::Meter;
use crate::cassette::{Cassettes, JobKey, JudgeTape, Recorder, Replay, Tape, TurnKey};
use crate::engine::{Engine, Job};
use crate::error::ReportError;
use crate::judge::{Judge, JudgePool};
use crate::runner::BatchOutcome;
use crate::schema::Dataset;
use crate::secrets::Secrets;
use crate::select::{BatchId, DatasetAt, DatasetPick, Select};
use crate::suite::{Suite, SuiteDataset};

/// How many datasets a suite holds at once beyond the sessions in flight:
/// those done while an earlier one still runs wait for it, up to this.
pub(crate) const WINDOW_SLACK: usize = 16;

/// What a suite's run shares between its datasets.
struct Context<'a> {
    index: usize,
    name: String,
    select: &'a dyn Select,
    order: Arc<Order>,
    offline: bool,
}

impl Context<'_> {
    /// Where dataset `d` sits.
    fn at(&self, d: usize) -> DatasetAt<'_> {
        DatasetAt {
            suite: self.index,
            dataset: d,
            report_name: &self.name,
        }
    }

    /// Dataset `d`'s pick, and the records of its skipped batches.
    fn pick(&self, d: usize, data: &SuiteDataset) -> (DatasetPick, Vec<BatchRecord>) {
        let pick = self.select.pick(self.at(d), data);
        let placeholders = placeholders(self.index, d, data, &pick);
        (pick, placeholders)
    }
}

/// Runs suite `index` (its datasets taken out of it).
pub(super) async fn run_suite(
    index: usize,
    suite: &mut Suite,
    select: &dyn Select,
    events: Arc<dyn RunEvents>,
    cassettes: &Cassettes,
    cancel: CancellationToken,
) -> SuiteRun {
    let secrets = suite.secrets();
    let context = Context {
        index,
        name: suite.report_name(),
        select,
        order: Arc::new(Order::new(index, events)),
        offline: cassettes.offline(),
    };
    let mut run = SuiteRun {
        held: 0,
        error: None,
        cassette: None,
    };
    if !select.planned(index) {
        // Nothing to contact: only the skipped batches are reported.
        without_runner(&context, suite, &mut run, None);
        return run;
    }
    let setup = match set_up(&context, suite, cassettes, cancel.clone()) {
        Ok(setup) => setup,
        Err(message) => return fail(&context, suite, run, secrets.redact(&message).into_owned()),
    };
    let Setup {
        tape,
        judge_tape,
        meter,
        judges,
        runner,
    } = setup;
    let recorder = cassettes.record.as_deref().map(|dir| {
        let old = old_cassette(cassettes, suite, tape.as_ref());
        let options = (cassettes.record_errors, secrets.clone());
        let runner = suite.runner_key();
        Arc::new(Recorder::new(dir, &context.name, runner, options, old))
    });
    let collector = Arc::new(Collector::new(
        index,
        secrets.clone(),
        Arc::clone(&context.order),
        suite.price,
        Arc::clone(&meter),
    ));
    let engine = runner.map(|runner| engine(suite, runner, cancel, &meter));
    let window = suite.sessions_in_flight() + WINDOW_SLACK;
    let feed = Feed {
        context: &context,
        collector: &collector,
        recorder: recorder.as_ref(),
        tape: tape.as_deref(),
        judges: &judges,
        window: Arc::new(Semaphore::new(window)),
        recording: cassettes.record.is_some().then(Recording::default),
    };
    let (recording, error) = feed.run(suite, engine).await;
    collector.judged().await;
    context.order.finish();
    run.held = context.order.peak();
    run.error = error.map(|e| secrets.redact(&e.to_string()).into_owned());
    run.cassette = recorder.and_then(Arc::into_inner).map(|recorder| {
        let recording = recording.unwrap_or_default();
        finish_cassette(recording, recorder, &judge_tape)
    });
    run
}

/// What a suite's run needs before its first dataset.
struct Setup {
    /// Its cassette, when replaying.
    tape: Option<Arc<Tape>>,
    judge_tape: Arc<JudgeTape>,
    /// Its spending, toward its budget.
    meter: Arc<Meter>,
    judges: Vec<Arc<Judge>>,
    /// Its runner, when a session runs live.
    runner: Option<Arc<dyn crate::runner::Runner>>,
}

/// Reads the suite's cassette, makes its judges and (when a session runs
/// live) its runner; sends nothing. The error says why the suite cannot
/// run (not yet redacted).
fn set_up(
    context: &Context<'_>,
    suite: &Suite,
    cassettes: &Cassettes,
    cancel: CancellationToken,
) -> Result<Setup, String> {
    let tape = open_tape(cassettes, suite)?;
    let judge_tape = Arc::new(JudgeTape::new(
        tape.as_ref().map(Tape::judge),
        cassettes.offline(),
        cassettes.record.is_some(),
    ));
    let meter = Arc::new(Meter::new(suite.budget));
    let secrets = suite.secrets();
    let judges = judges(suite, cancel, &secrets, Arc::clone(&judge_tape), &meter)?;
    let live = tape.as_ref().is_none_or(|t| any_live(context, suite, t));
    let runner = match live {
        true => Some(suite.build_runner().map_err(|e| e.to_string())?),
        false => None,
    };
    Ok(Setup {
        tape: tape.map(Arc::new),
        judge_tape,
        meter,
        judges,
        runner,
    })
}

/// The engine of the suite's live sessions, stopped by `cancel` and by its
/// spent budget.
fn engine(
    suite: &Suite,
    runner: Arc<dyn crate::runner::Runner>,
    cancel: CancellationToken,
    meter: &Meter,
) -> Engine {
    let engine = Engine::new(runner)
        .policy(suite.policy.clone())
        .concurrency(suite.sessions_in_flight())
        .cancel_on(cancel);
    match meter.halt() {
        Some(halt) => engine.halt_on(halt),
        None => engine,
    }
}

/// What a recording run keeps of the suite's sessions for its cassette.
#[derive(Default)]
struct Recording {
    /// Every session of the suite (with its runs), ran or not.
    sessions: HashSet<(String, String, usize)>,
    /// Whether a turn of the suite did not run.
    partial: bool,
}

/// Takes the suite's datasets one at a time to the engine (or replays them).
struct Feed<'a> {
    context: &'a Context<'a>,
    collector: &'a Arc<Collector>,
    recorder: Option<&'a Arc<Recorder>>,
    tape: Option<&'a Tape>,
    judges: &'a [Arc<Judge>],
    window: Arc<Semaphore>,
    recording: Option<Recording>,
}

impl Feed<'_> {
    /// Runs every dataset of `suite`; returns the recording's sessions and
    /// why the datasets stopped coming, if they did.
    async fn run(
        mut self,
        suite: &mut Suite,
        engine: Option<Engine>,
    ) -> (Option<Recording>, Option<crate::error::SuiteError>) {
        let (jobs, queue) = mpsc::channel::<(usize, Job)>(1);
        let (observer, done) = (self.observer(), self.done());
        let engine_run = async move {
            match engine {
                Some(engine) => engine.stream(queue, observer, done).await,
                None => drop(queue),
            }
        };
        let datasets = suite.take_datasets();
        let produced = async {
            // The queue closes when the last dataset has been taken.
            let jobs = jobs;
            let mut next_job = 0;
            for (d, data) in datasets.enumerate() {
                match data {
                    Ok(data) => self.dataset(d, data, &jobs, &mut next_job).await,
                    Err(error) => return Some(error),
                }
            }
            None
        };
        let (error, ()) = tokio::join!(produced, engine_run);
        (self.recording, error)
    }

    /// What the engine calls after every turn.
    fn observer(&self) -> Arc<crate::engine::Observer> {
        let (collector, recorder) = (Arc::clone(self.collector), self.recorder.cloned());
        Arc::new(move |job: usize, batch: usize, outcome: &BatchOutcome| {
            if let Some(recorder) = &recorder {
                recorder.on_turn(job, batch, outcome);
            }
            collector.on_turn(job, batch, outcome);
        })
    }

    /// What the engine calls when a session ends.
    fn done(&self) -> Arc<crate::engine::Done> {
        let (collector, recorder) = (Arc::clone(self.collector), self.recorder.cloned());
        let order = Arc::clone(&self.context.order);
        Arc::new(move |job: usize, (dataset, summary)| {
            if let Some(recorder) = &recorder {
                let turns = dataset.conversation.len();
                recorder.on_session(job, turns, summary.total_execution_time_ms);
            }
            if let Some(info) = collector.end(job) {
                let origin = Origin {
                    dataset: info.meta.index,
                    run: info.run,
                };
                order.answered(Answered {
                    dataset,
                    summary,
                    origin,
                });
            }
        })
    }

    /// Dataset `d`: picked, its place in the window taken, its sessions
    /// replayed or queued for the engine.
    async fn dataset(
        &mut self,
        d: usize,
        data: SuiteDataset,
        jobs: &mpsc::Sender<(usize, Job)>,
        next_job: &mut usize,
    ) {
        let context = self.context;
        let (pick, placeholders) = context.pick(d, &data);
        let permit = Arc::clone(&self.window).acquire_owned().await.ok();
        if let Some(recording) = &mut self.recording {
            recording.note(&data, &pick);
        }
        let Some(turns) = pick.turns() else {
            context
                .order
                .open(d, Pending::new(0, 0, placeholders, permit));
            return;
        };
        let session_id = data.dataset.session_id.clone();
        let meta = Arc::new(self.meta(d, &data, pick));
        let runs = dataset_jobs(data, turns);
        let pending = Pending::new(runs.len(), turns, placeholders, permit);
        context.order.open(d, pending);
        for (run, job) in runs {
            let index = *next_job;
            *next_job += 1;
            let info = JobInfo {
                meta: Arc::clone(&meta),
                run,
                session_id: job.dataset.session_id.clone(),
            };
            self.collector.start(index, info);
            let replay = self
                .tape
                .map(|t| t.replay(&job.dataset, job.limit, &session_id, run));
            let live = replay
                .as_ref()
                .is_none_or(|r| !r.complete && !context.offline);
            match replay.filter(|_| !live) {
                Some(replay) => self.replayed(index, &job.dataset, replay),
                None => {
                    if let Some(recorder) = self.recorder {
                        recorder.start(index, job_key(&session_id, run, &job));
                    }
                    // The engine is gone only when the run has no runner.
                    let _ = jobs.send((index, job)).await;
                }
            }
        }
    }

    /// What the collector needs of dataset `d`.
    fn meta(&self, d: usize, data: &SuiteDataset, pick: DatasetPick) -> DatasetMeta {
        let judge = data
            .judge
            .as_ref()
            .and_then(|spec| self.judges.iter().find(|j| j.is(spec)).cloned());
        DatasetMeta {
            index: d,
            names: Arc::clone(&data.test_names),
            expects: Arc::clone(&data.expects),
            selected: pick.selected,
            runs: data.runs,
            needed: data.min_passes,
            judge,
            locations: Arc::clone(&data.locations),
        }
    }

    /// A session replayed from the cassette: its turns to the collector,
    /// its answered dataset to the order.
    fn replayed(&self, job: usize, header: &Dataset, replay: Replay) {
        for (turn, outcome) in replay.outcomes.iter().enumerate() {
            self.collector.on_turn(job, turn, outcome);
        }
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
        if let Some(info) = self.collector.end(job) {
            let origin = Origin {
                dataset: info.meta.index,
                run: info.run,
            };
            self.context.order.answered(Answered {
                dataset,
                summary,
                origin,
            });
        }
    }
}

impl Recording {
    /// Notes a dataset's sessions, and whether all its turns run.
    fn note(&mut self, data: &SuiteDataset, pick: &DatasetPick) {
        let dataset = &data.dataset;
        for run in 0..data.runs {
            let key = (
                dataset.session_id.clone(),
                dataset.assistant_id.clone(),
                run,
            );
            self.sessions.insert(key);
        }
        self.partial |= pick.turns().unwrap_or(0) < data.test_names.len();
    }
}

/// One job per run of a dataset (repeated runs are sessions of their own,
/// `<session_id>-run<k>`), each running its first `limit` turns; the last
/// run takes the dataset's turns (not copied).
fn dataset_jobs(data: SuiteDataset, limit: usize) -> Vec<(usize, Job)> {
    let runs = data.runs.max(1);
    let mut dataset = data.dataset;
    let mut jobs = Vec::with_capacity(runs);
    for run in 0..runs {
        let mut job = if run + 1 == runs {
            std::mem::replace(&mut dataset, Dataset::new("", ""))
        } else {
            dataset.clone()
        };
        if runs > 1 {
            job.session_id = format!("{}-run{}", job.session_id, run + 1);
        }
        jobs.push((
            run,
            Job {
                dataset: job,
                limit,
            },
        ));
    }
    jobs
}

/// The records of a dataset's skipped batches, as if none ran.
fn placeholders(
    suite: usize,
    d: usize,
    data: &SuiteDataset,
    pick: &DatasetPick,
) -> Vec<BatchRecord> {
    let skipped = pick.skipped.iter().enumerate().filter(|(_, s)| **s);
    skipped
        .map(|(b, _)| BatchRecord {
            id: BatchId {
                suite,
                dataset: d,
                batch: b,
            },
            test: data.test_names[b].clone(),
            selected: false,
            passed: false,
            message: None,
            runs: Vec::new(),
            checks: Vec::new(),
            skipped: true,
            location: data.locations.get(b).cloned(),
        })
        .collect()
}

/// What the recorder needs of a live job, from its turns before they run.
fn job_key(session_id: &str, run: usize, job: &Job) -> JobKey {
    let turns = &job.dataset.conversation[..job.limit.min(job.dataset.conversation.len())];
    JobKey {
        session_id: session_id.to_owned(),
        assistant_id: job.dataset.assistant_id.clone(),
        run,
        context: crate::cassette::fingerprint(&job.dataset.context),
        turns: turns.iter().map(TurnKey::of).collect(),
    }
}

/// Whether a session of the suite would run live against `tape`: one the
/// cassette does not replay whole (only a session it lacks, offline).
/// One pass over the suite's datasets, before the run.
fn any_live(context: &Context<'_>, suite: &Suite, tape: &Tape) -> bool {
    let mut live = false;
    let pass = suite.for_each_dataset(|d, data| {
        if live {
            return;
        }
        let Some(turns) = context.select.pick(context.at(d), data).turns() else {
            return;
        };
        let session_id = &data.dataset.session_id;
        live = (0..data.runs.max(1)).any(|run| {
            let replay = tape.replay(&data.dataset, turns, session_id, run);
            !replay.complete && !context.offline
        });
    });
    live || pass.is_err()
}

/// A suite that cannot be set up: every planned batch fails with
/// `message` (and the suite's report says it).
fn fail(context: &Context<'_>, suite: &mut Suite, mut run: SuiteRun, message: String) -> SuiteRun {
    without_runner(context, suite, &mut run, Some(message));
    run
}

/// A suite run without its runner: its skipped batches reported, and,
/// with `message` (why it cannot run), its planned ones failed with it.
fn without_runner(
    context: &Context<'_>,
    suite: &mut Suite,
    run: &mut SuiteRun,
    message: Option<String>,
) {
    let datasets = suite.take_datasets();
    for (d, data) in datasets.enumerate() {
        let Ok(data) = data else { break };
        let (pick, placeholders) = context.pick(d, &data);
        let turns = match &message {
            Some(_) => pick.turns().unwrap_or(0),
            None => 0,
        };
        context
            .order
            .open(d, Pending::new(0, turns, placeholders, None));
        for b in 0..turns {
            context.order.record(BatchRecord {
                id: BatchId {
                    suite: context.index,
                    dataset: d,
                    batch: b,
                },
                test: data.test_names[b].clone(),
                selected: pick.selected[b],
                passed: false,
                message: message.clone(),
                runs: Vec::new(),
                checks: Vec::new(),
                skipped: false,
                location: data.locations.get(b).cloned(),
            });
        }
    }
    context.order.finish();
    run.held = context.order.peak();
    run.error = message;
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

/// The suite's judges (one per distinct configuration), all sharing the
/// suite's bound on requests in flight; nothing is sent.
fn judges(
    suite: &Suite,
    cancel: CancellationToken,
    secrets: &Secrets,
    tape: Arc<JudgeTape>,
    meter: &Arc<Meter>,
) -> Result<Vec<Arc<Judge>>, String> {
    let pool = JudgePool::new(
        suite.concurrency,
        &suite.policy,
        cancel,
        secrets.clone(),
        tape,
        Arc::clone(meter),
    );
    let pool = Arc::new(pool);
    suite
        .judge_specs()
        .into_iter()
        .map(|spec| Judge::new(spec, Arc::clone(&pool)).map(Arc::new))
        .collect()
}

/// What the suite's cassette held before a recording: the replayed one
/// when it is recorded into the same directory, else the one in the
/// recording directory.
fn old_cassette(
    cassettes: &Cassettes,
    suite: &Suite,
    tape: Option<&Arc<Tape>>,
) -> Option<Arc<Tape>> {
    match (&cassettes.record, &cassettes.replay) {
        (Some(record), Some(replay)) if record == replay => tape.cloned(),
        (Some(record), _) => Tape::load(record, &suite.report_name(), &suite.runner_key())
            .ok()
            .map(Arc::new),
        _ => None,
    }
}

/// Writes the suite's cassette: what was recorded now, with what the old
/// cassette has of the suite's other sessions and judge requests.
fn finish_cassette(
    recording: Recording,
    recorder: Recorder,
    judge_tape: &JudgeTape,
) -> Result<PathBuf, ReportError> {
    // Whether every turn of every session ran: then the old cassette's
    // judge replies that were not used are stale.
    let whole = !recording.partial;
    let judge = judge_tape.entries(recorder.old_judge(), whole);
    let kept = |tape: &crate::cassette::SessionTape| {
        let key = (tape.session_id.clone(), tape.assistant_id.clone(), tape.run);
        recording.sessions.contains(&key)
    };
    recorder.write(&kept, judge)
}
