//! Turns the engine's outcomes into records: checks each turn (judged ones
//! on a task of their own), waits for every run of a repeated batch, and
//! hands each batch's record to the suite's [`Order`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::order::Order;
use super::{lock, verdict, BatchRecord, RunRecord, Spent};
use crate::budget::Meter;
use crate::check::{CheckResult, Checks, Turn};
use crate::judge::Judge;
use crate::runner::BatchOutcome;
use crate::secrets::Secrets;
use crate::select::BatchId;
use crate::suite::BatchLocation;
use crate::usage::{Price, Spend};

/// What the collector needs of a dataset while its sessions run.
pub(super) struct DatasetMeta {
    pub index: usize,
    pub names: Arc<[String]>,
    pub expects: Arc<[Arc<Checks>]>,
    pub selected: Vec<bool>,
    pub runs: usize,
    pub needed: usize,
    pub judge: Option<Arc<Judge>>,
    pub locations: Arc<[BatchLocation]>,
}

/// A job (one run of a dataset) while it runs.
pub(super) struct JobInfo {
    pub meta: Arc<DatasetMeta>,
    pub run: usize,
    pub session_id: String,
}

/// The suite's collector: what it needs of the jobs in flight only.
pub(super) struct Collector {
    suite: usize,
    secrets: Secrets,
    /// The jobs in flight, by job index (each removed when its session ends).
    jobs: Mutex<HashMap<usize, Arc<JobInfo>>>,
    /// The runs of a repeated batch seen so far, by (dataset, batch).
    pending: Mutex<HashMap<(usize, usize), Runs>>,
    order: Arc<Order>,
    /// The turns being judged.
    judging: Mutex<tokio::task::JoinSet<()>>,
    /// What the runner's tokens cost.
    price: Option<Price>,
    /// The suite's spending, toward its budget.
    meter: Arc<Meter>,
}

/// The runs of one repeated batch, by run index, as they come in.
type Runs = Vec<Option<RunRecord>>;

impl Collector {
    pub fn new(
        suite: usize,
        secrets: Secrets,
        order: Arc<Order>,
        price: Option<Price>,
        meter: Arc<Meter>,
    ) -> Self {
        Collector {
            suite,
            secrets,
            jobs: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            order,
            judging: Mutex::new(tokio::task::JoinSet::new()),
            price,
            meter,
        }
    }

    /// Job `job` is about to run.
    pub fn start(&self, job: usize, info: JobInfo) {
        lock(&self.jobs).insert(job, Arc::new(info));
    }

    /// Job `job`'s session ended: its info, forgotten here (a turn still
    /// being judged holds its own).
    pub fn end(&self, job: usize) -> Option<Arc<JobInfo>> {
        lock(&self.jobs).remove(&job)
    }

    /// Checks a turn of job `job` and records its run: at once, or, when a
    /// judge must rule on it, on a task of its own.
    pub fn on_turn(self: &Arc<Self>, job: usize, batch: usize, outcome: &BatchOutcome) {
        let Some(info) = lock(&self.jobs).get(&job).cloned() else {
            return;
        };
        let meta = &info.meta;
        let Some(expect) = meta.expects.get(batch) else {
            return;
        };
        let runner = outcome.usage.map(|usage| {
            let spend = Spend::new(usage, self.price.as_ref());
            // Counted before the engine sends the session's next turn.
            self.meter.add(spend.cost_usd.unwrap_or(0.0));
            spend
        });
        if let (Some(judge), true) = (&meta.judge, outcome.is_success()) {
            if expect.judged().is_some() {
                self.judge(Arc::clone(&info), batch, outcome, runner, judge);
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
        self.record(&info, batch, outcome, (checks, spent));
    }

    /// Judges a turn on a task of its own, then records its run.
    fn judge(
        self: &Arc<Self>,
        info: Arc<JobInfo>,
        batch: usize,
        outcome: &BatchOutcome,
        runner: Option<Spend>,
        judge: &Arc<Judge>,
    ) {
        let (this, judge) = (Arc::clone(self), judge.for_turn());
        let expect = Arc::clone(&info.meta.expects[batch]);
        let outcome = outcome.clone();
        let task = async move {
            let turn = Turn::new(&outcome.batch, outcome.time_ms).with_usage(outcome.usage);
            let checks = expect.evaluate_judged(&turn, &judge).await;
            let judge = judge.spent().map(|u| Spend::new(u, judge.price()));
            this.record(&info, batch, &outcome, (checks, Spent { runner, judge }));
        };
        let mut judging = lock(&self.judging);
        // Finished tasks are reaped as new ones start, so a long run
        // holds only the turns still being judged.
        while let Some(done) = judging.try_join_next() {
            surface_panic(done);
        }
        judging.spawn(task);
    }

    /// Waits for every turn being judged to be recorded.
    pub async fn judged(&self) {
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

    /// Records a run whose checks gave `result`; sends the batch's record
    /// once its last run is in.
    fn record(
        &self,
        info: &JobInfo,
        batch: usize,
        outcome: &BatchOutcome,
        result: (Vec<CheckResult>, Spent),
    ) {
        let meta = &info.meta;
        let record = RunRecord::new(&info.session_id, outcome, result, &self.secrets);
        let Some(runs) = self.complete(meta, batch, info.run, record) else {
            return;
        };
        let id = BatchId {
            suite: self.suite,
            dataset: meta.index,
            batch,
        };
        let mut record: BatchRecord = verdict(
            id,
            &meta.names[batch],
            meta.selected.get(batch).copied().unwrap_or(false),
            runs,
            meta.needed,
            &meta.expects[batch],
        );
        record.location = meta.locations.get(batch).cloned();
        self.order.record(record);
    }

    /// Every run of the batch once the last has come in, else `None`.
    fn complete(
        &self,
        meta: &DatasetMeta,
        batch: usize,
        run: usize,
        record: RunRecord,
    ) -> Option<Vec<RunRecord>> {
        if meta.runs == 1 {
            return Some(vec![record]);
        }
        let key = (meta.index, batch);
        let mut pending = lock(&self.pending);
        let slots = pending.entry(key).or_insert_with(|| vec![None; meta.runs]);
        if let Some(slot) = slots.get_mut(run) {
            *slot = Some(record);
        }
        if slots.iter().any(Option::is_none) {
            return None;
        }
        pending
            .remove(&key)
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
