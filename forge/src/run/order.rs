//! A suite's datasets, put back in order as their sessions end: each
//! record goes out at once ([`RunEvents::record`]), and each dataset once
//! it and every dataset before it are done ([`RunEvents::dataset`]).
//!
//! Memory stays bounded: the run takes a permit of the suite's window
//! before it starts a dataset and the permit is given back when the
//! dataset goes out, so no more than the window's datasets are held,
//! however long the suite.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedSemaphorePermit;

use super::{lock, Answered, BatchRecord, DatasetDone, RunEvents};

/// The datasets of one suite in flight, by index.
pub(super) struct Order {
    suite: usize,
    events: Arc<dyn RunEvents>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The next dataset to go out.
    next: usize,
    pending: BTreeMap<usize, Pending>,
    /// The most datasets held at once.
    peak: usize,
}

/// A dataset that has not gone out yet.
pub(super) struct Pending {
    /// Its sessions (one per `repeat` run) still running.
    jobs_left: usize,
    /// Its batch records still to come.
    records_left: usize,
    /// The records of its skipped batches, as if none ran (one that runs
    /// for a later turn keeps its own record, marked skipped).
    placeholders: Vec<BatchRecord>,
    /// Its place in the suite's window, held (not read) until it goes out.
    #[allow(dead_code)]
    permit: Option<OwnedSemaphorePermit>,
    records: Vec<BatchRecord>,
    answered: Vec<Answered>,
}

impl Pending {
    /// A dataset waiting for `jobs` sessions and `records` records,
    /// holding `permit` until it goes out.
    pub fn new(
        jobs: usize,
        records: usize,
        placeholders: Vec<BatchRecord>,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Self {
        Pending {
            jobs_left: jobs,
            records_left: records,
            placeholders,
            permit,
            records: Vec::with_capacity(records),
            answered: Vec::with_capacity(jobs),
        }
    }

    fn is_done(&self) -> bool {
        self.jobs_left == 0 && self.records_left == 0
    }

    /// Its records in turn order, the skipped placeholders in, and its
    /// answered datasets in run order.
    fn into_done(mut self, suite: usize, index: usize) -> DatasetDone {
        let mut records = std::mem::take(&mut self.records);
        records.sort_by_key(|r| r.id.batch);
        for placeholder in std::mem::take(&mut self.placeholders) {
            match records.binary_search_by_key(&placeholder.id.batch, |r| r.id.batch) {
                Ok(at) => records[at].skipped = true,
                Err(at) => records.insert(at, placeholder),
            }
        }
        let mut answered = std::mem::take(&mut self.answered);
        answered.sort_by_key(|a| a.origin.run);
        DatasetDone {
            suite,
            index,
            records,
            answered,
        }
    }
}

impl Order {
    pub fn new(suite: usize, events: Arc<dyn RunEvents>) -> Self {
        Order {
            suite,
            events,
            state: Mutex::new(State::default()),
        }
    }

    /// Dataset `index` starts (datasets start in order).
    pub fn open(&self, index: usize, pending: Pending) {
        let mut state = lock(&self.state);
        state.pending.insert(index, pending);
        state.peak = state.peak.max(state.pending.len());
        self.flush(&mut state);
    }

    /// The most datasets the suite's run held at once (started and not
    /// gone out yet).
    pub fn peak(&self) -> usize {
        lock(&self.state).peak
    }

    /// A batch's record: out at once, and kept for its dataset.
    pub fn record(&self, record: BatchRecord) {
        self.events.record(&record);
        let mut state = lock(&self.state);
        if let Some(pending) = state.pending.get_mut(&record.id.dataset) {
            pending.records_left = pending.records_left.saturating_sub(1);
            pending.records.push(record);
        }
        self.flush(&mut state);
    }

    /// A session of dataset `answered.origin.dataset` ended.
    pub fn answered(&self, answered: Answered) {
        let mut state = lock(&self.state);
        if let Some(pending) = state.pending.get_mut(&answered.origin.dataset) {
            pending.jobs_left = pending.jobs_left.saturating_sub(1);
            pending.answered.push(answered);
        }
        self.flush(&mut state);
    }

    /// The run of the suite ended: whatever is left goes out, in order.
    pub fn finish(&self) {
        let mut state = lock(&self.state);
        while let Some((index, pending)) = state.pending.pop_first() {
            self.events.dataset(pending.into_done(self.suite, index));
        }
    }

    /// Sends out every dataset that is done and whose predecessors are.
    fn flush(&self, state: &mut State) {
        loop {
            let next = state.next;
            match state.pending.first_key_value() {
                Some((&index, pending)) if index == next && pending.is_done() => {}
                _ => return,
            }
            if let Some((index, pending)) = state.pending.pop_first() {
                state.next = index + 1;
                self.events.dataset(pending.into_done(self.suite, index));
            }
        }
    }
}
