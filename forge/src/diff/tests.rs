//! The comparison rules, on snapshots; `forge/tests/diff.rs` runs the
//! real binary on real runs.

use super::{compare, ChangeKind, DiffOptions, Snapshot};

fn snapshot(passes: usize, runs: usize, passed: bool, answer: &str) -> Snapshot {
    Snapshot {
        passed,
        passes,
        runs,
        answer: answer.to_owned(),
        message: (!passed).then(|| "check failed".to_owned()),
        scores: Vec::new(),
        file: Some("suites/s.yaml".to_owned()),
        line: Some(7),
    }
}

fn kinds(before: Option<&Snapshot>, after: Option<&Snapshot>) -> (bool, Vec<&'static str>) {
    match compare("s::a::q", before, after, DiffOptions::default()) {
        None => (false, Vec::new()),
        Some(change) => (
            change.regressed,
            change
                .kinds
                .iter()
                .map(|k| match k {
                    ChangeKind::NewlyFailing { .. } => "newly_failing",
                    ChangeKind::NewlyPassing => "newly_passing",
                    ChangeKind::AnswerChanged { .. } => "answer_changed",
                    ChangeKind::ScoreDropped { .. } => "score_dropped",
                    ChangeKind::PassCountDropped {
                        significant: true, ..
                    } => "significant",
                    ChangeKind::PassCountDropped { .. } => "not_significant",
                    ChangeKind::Added { .. } => "added",
                    ChangeKind::Removed { .. } => "removed",
                })
                .collect(),
        ),
    }
}

#[test]
fn a_single_run_that_flips_to_failing_regressed() {
    let before = snapshot(1, 1, true, "Paris");
    let after = snapshot(0, 1, false, "Rome");
    assert_eq!(
        kinds(Some(&before), Some(&after)),
        (true, vec!["newly_failing", "answer_changed"])
    );
    assert_eq!(
        kinds(Some(&after), Some(&before)),
        (false, vec!["newly_passing", "answer_changed"])
    );
    assert_eq!(kinds(Some(&before), Some(&before)), (false, vec![]));
}

#[test]
fn a_repeated_batch_regressed_only_when_its_drop_is_significant() {
    // 6 of 6 -> 4 of 6: p = 0.227, flaky even though the verdict flipped.
    let (before, after) = (snapshot(6, 6, true, "a"), snapshot(4, 6, false, "a"));
    assert_eq!(
        kinds(Some(&before), Some(&after)),
        (false, vec!["not_significant", "newly_failing"])
    );
    // 10 of 10 -> 3 of 10: p = 0.0015, a regression even while it passes.
    let (before, after) = (snapshot(10, 10, true, "a"), snapshot(3, 10, true, "a"));
    assert_eq!(
        kinds(Some(&before), Some(&after)),
        (true, vec!["significant"])
    );
    // A higher pass count is no drop.
    assert_eq!(kinds(Some(&after), Some(&before)), (false, vec![]));
}

#[test]
fn a_score_drop_beyond_the_threshold_regressed() {
    let mut before = snapshot(1, 1, true, "a");
    before.scores = vec![("rubric".to_owned(), 0.9), ("similarity".to_owned(), 0.8)];
    let mut after = before.clone();
    after.scores = vec![("rubric".to_owned(), 0.8), ("similarity".to_owned(), 0.5)];
    let change =
        compare("t", Some(&before), Some(&after), DiffOptions::default()).expect("a change");
    assert!(change.regressed);
    assert_eq!(
        change.kinds,
        [ChangeKind::ScoreDropped {
            check: "similarity".to_owned(),
            before: 0.8,
            after: 0.5
        }]
    );
    let lenient = DiffOptions {
        score_drop: 0.5,
        ..DiffOptions::default()
    };
    assert_eq!(compare("t", Some(&before), Some(&after), lenient), None);
}

#[test]
fn added_and_removed_batches() {
    let failing = snapshot(0, 1, false, "x");
    assert_eq!(
        kinds(None, Some(&failing)),
        (true, vec!["added", "newly_failing"])
    );
    let passing = snapshot(1, 1, true, "x");
    assert_eq!(kinds(None, Some(&passing)), (false, vec!["added"]));
    assert_eq!(kinds(Some(&passing), None), (false, vec!["removed"]));
}
