//! One suite's report from the pieces of it that several parts hold.
//!
//! Each batch has one owner: the part that selected it (a shard runs whole
//! sessions; a nextest process one batch, its earlier turns unselected).
//! A batch no part selected (an earlier turn run only to keep its
//! conversation) comes from any part that ran it. The answered datasets
//! are put together turn by turn from the owners, in the suite's order of
//! datasets and runs; a dataset that came whole from one part keeps its
//! summary, one put together from several gets a summary counted from its
//! turns (its total time is then the sum of theirs).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use super::read::Loaded;
use crate::error::MergeError;
use crate::report::part::{Nextest, SuitePart};
use crate::report::whole::WholeSuite;
use crate::report::SuiteHead;
use crate::run::{BatchRecord, Origin};
use crate::schema::{Batch, Dataset, Response, RunResponse, Summary};
use crate::secrets::Secrets;

/// A part's piece of one suite.
struct Piece {
    path: PathBuf,
    nextest: Option<Nextest>,
    suite: SuitePart,
}

/// The part and record that own a batch.
#[derive(Clone, Copy)]
struct Owner {
    piece: usize,
    record: usize,
    selected: bool,
}

/// The merged report of each suite (and system) named in `names` that
/// some part reported, in that order.
pub(super) fn suites(
    names: &[(String, Option<String>)],
    parts: Vec<Loaded>,
) -> Result<Vec<WholeSuite>, MergeError> {
    let mut pieces: HashMap<(String, Option<String>), Vec<Piece>> = HashMap::new();
    for part in parts {
        for suite in part.suites {
            let key = (suite.name.clone(), suite.system.clone());
            pieces.entry(key).or_default().push(Piece {
                path: part.path.clone(),
                nextest: part.header.nextest.clone(),
                suite,
            });
        }
    }
    let mut reports = Vec::new();
    for (index, name) in names.iter().enumerate() {
        if let Some(pieces) = pieces.remove(name) {
            reports.push(suite(index, name, pieces)?);
        }
    }
    Ok(reports)
}

fn suite(
    index: usize,
    (name, system): &(String, Option<String>),
    mut pieces: Vec<Piece>,
) -> Result<WholeSuite, MergeError> {
    let owners = owners(&pieces)?;
    let mut records = BTreeMap::new();
    for (&key, owner) in &owners {
        let mut record = pieces[owner.piece].suite.records[owner.record].clone();
        record.id.suite = index;
        records.insert(key, record);
    }
    let failure = pieces.iter().find_map(|p| match &p.suite.response {
        Some(failure @ Response::Failure(_)) => Some(failure.clone()),
        _ => None,
    });
    let (response, origins) = match failure {
        Some(failure) => (failure, Vec::new()),
        None => datasets(&mut pieces, &owners, &records),
    };
    Ok(WholeSuite {
        head: SuiteHead {
            index,
            name: name.to_owned(),
            system: system.clone(),
            secrets: Secrets::default(),
        },
        response,
        origins,
        records: records.into_values().collect(),
    })
}

/// The owner of every batch any piece ran, by (dataset, turn).
fn owners(pieces: &[Piece]) -> Result<BTreeMap<(usize, usize), Owner>, MergeError> {
    let mut owners: BTreeMap<(usize, usize), Owner> = BTreeMap::new();
    for (p, piece) in pieces.iter().enumerate() {
        for (i, record) in piece.suite.records.iter().enumerate() {
            let new = Owner {
                piece: p,
                record: i,
                selected: record.selected,
            };
            let key = (record.id.dataset, record.id.batch);
            match owners.get(&key) {
                None => {
                    owners.insert(key, new);
                }
                Some(old) if replaces(pieces, old, &new, &record.test)? => {
                    owners.insert(key, new);
                }
                Some(_) => {}
            }
        }
    }
    Ok(owners)
}

/// Whether `new` takes a batch from `old`: a selected run of it over an
/// unselected one, an unselected one that ran over the record of a skipped
/// batch that did not run, nextest's later attempt over an earlier one of
/// the same run; two selected runs otherwise overlap.
fn replaces(pieces: &[Piece], old: &Owner, new: &Owner, test: &str) -> Result<bool, MergeError> {
    let ran = |owner: &Owner| {
        !pieces[owner.piece].suite.records[owner.record]
            .runs
            .is_empty()
    };
    match (old.selected, new.selected) {
        (false, false) => Ok(!ran(old) && ran(new)),
        (true, false) => Ok(false),
        (false, true) => Ok(true),
        (true, true) => {
            let (a, b) = (&pieces[old.piece], &pieces[new.piece]);
            match (&a.nextest, &b.nextest) {
                (Some(x), Some(y)) if x.run_id == y.run_id && x.attempt != y.attempt => {
                    Ok(y.attempt > x.attempt)
                }
                _ => Err(MergeError::Overlap {
                    test: test.to_owned(),
                    first: a.path.clone(),
                    second: b.path.clone(),
                }),
            }
        }
    }
}

/// A piece's answered datasets, by origin, with their summaries; turns are
/// taken out one by one as the merged datasets are put together.
type Answered = BTreeMap<Origin, (Dataset, Summary)>;

/// The merged response's datasets, in suite order, and their origins.
fn datasets(
    pieces: &mut [Piece],
    owners: &BTreeMap<(usize, usize), Owner>,
    records: &BTreeMap<(usize, usize), BatchRecord>,
) -> (Response, Vec<Origin>) {
    let mut answered: Vec<Answered> = pieces.iter_mut().map(answered).collect();
    let origins: BTreeSet<Origin> = answered.iter().flat_map(|a| a.keys().copied()).collect();
    let mut results = Vec::with_capacity(origins.len());
    for &origin in &origins {
        results.push(dataset(&mut answered, origin, owners, records));
    }
    (
        Response::Success(RunResponse::new(results)),
        origins.into_iter().collect(),
    )
}

fn answered(piece: &mut Piece) -> Answered {
    let Some(Response::Success(run)) = piece.suite.response.take() else {
        return Answered::new();
    };
    let origins = piece.suite.origins.iter().copied();
    origins
        .zip(run.datasets.into_iter().zip(run.summaries))
        .collect()
}

/// One merged dataset: each turn from its owner (else from any piece that
/// has it), and its summary.
fn dataset(
    answered: &mut [Answered],
    origin: Origin,
    owners: &BTreeMap<(usize, usize), Owner>,
    records: &BTreeMap<(usize, usize), BatchRecord>,
) -> (Dataset, Summary) {
    let len_in = |a: &Answered| a.get(&origin).map_or(0, |(d, _)| d.conversation.len());
    let len = answered.iter().map(len_in).max().unwrap_or(0);
    let mut sources = Vec::with_capacity(len);
    for turn in 0..len {
        let owner = owners
            .get(&(origin.dataset, turn))
            .map(|o| o.piece)
            .filter(|&p| len_in(&answered[p]) > turn);
        let source = owner.or_else(|| answered.iter().position(|a| len_in(a) > turn));
        sources.push(source.unwrap_or(0));
    }
    let first = sources.first().copied().unwrap_or_else(|| {
        answered
            .iter()
            .position(|a| a.contains_key(&origin))
            .unwrap_or(0)
    });
    let whole = sources.iter().all(|&p| p == first) && len_in(&answered[first]) == len;
    if whole {
        if let Some(dataset) = answered[first].remove(&origin) {
            return dataset;
        }
    }
    let mut conversation = Vec::with_capacity(len);
    for (turn, &p) in sources.iter().enumerate() {
        conversation.push(take_turn(&mut answered[p], origin, turn));
    }
    let mut dataset = match answered[first].get(&origin) {
        Some((d, _)) => Dataset {
            conversation: Vec::new(),
            ..without_turns(d)
        },
        None => Dataset::new("", ""),
    };
    dataset.conversation = conversation;
    let summary = counted(&dataset, origin, records);
    (dataset, summary)
}

/// Moves turn `turn` of `origin` out of a piece's datasets.
fn take_turn(answered: &mut Answered, origin: Origin, turn: usize) -> Batch {
    answered
        .get_mut(&origin)
        .and_then(|(d, _)| d.conversation.get_mut(turn))
        .map(|b| std::mem::replace(b, Batch::new(String::new(), String::new())))
        .unwrap_or_else(|| Batch::new(String::new(), String::new()))
}

/// A copy of `dataset` without its turns.
fn without_turns(dataset: &Dataset) -> Dataset {
    Dataset {
        session_id: dataset.session_id.clone(),
        assistant_id: dataset.assistant_id.clone(),
        language: dataset.language.clone(),
        context: dataset.context.clone(),
        conversation: Vec::new(),
        extra: dataset.extra.clone(),
    }
}

/// The summary of a dataset put together from several parts, counted from
/// its turns' records: successes, failures, and the sum of their times.
fn counted(
    dataset: &Dataset,
    origin: Origin,
    records: &BTreeMap<(usize, usize), BatchRecord>,
) -> Summary {
    let len = dataset.conversation.len();
    let runs: Vec<_> = (0..len)
        .filter_map(|turn| records.get(&(origin.dataset, turn)))
        .filter_map(|record| record.runs.get(origin.run))
        .collect();
    let successes = runs.iter().filter(|r| r.success).count();
    let total: f64 = runs.iter().map(|r| r.time_ms).sum();
    Summary {
        session_id: dataset.session_id.clone(),
        total_batches: len,
        successes,
        failures: len - successes,
        total_execution_time_ms: total,
        avg_batch_time_ms: if len == 0 { 0.0 } else { total / len as f64 },
    }
}
