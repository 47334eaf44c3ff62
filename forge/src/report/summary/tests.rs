//! The streamed `<suite>.json` is, byte for byte, what serializing the
//! whole suite at once wrote (the reference below is that code, kept).

use serde::Serialize;
use serde_json::ser::PrettyFormatter;

use super::fixture::{self, fed, feed_all, Fed, Shape, SECRET};
use super::*;
use crate::output::write_redacted;
use crate::report::tally::SuiteUsage;
use crate::report::whole::WholeSuite;
use crate::schema::Response;

/// The file as the whole-suite writer wrote it: the response, with
/// `checks` and `usage` beside it, serialized at once.
fn reference(suite: &WholeSuite) -> String {
    #[derive(Serialize)]
    struct SummaryFile<'a> {
        #[serde(flatten)]
        response: &'a Response,
        #[serde(skip_serializing_if = "Option::is_none")]
        checks: Option<serde_json::Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        usage: Option<serde_json::Value>,
    }
    let usage = SuiteUsage::of(&suite.records);
    let file = SummaryFile {
        response: &suite.response,
        checks: whole_checks(&suite.records),
        usage: (!usage.is_empty()).then(|| usage.to_json()),
    };
    let mut out = Vec::new();
    write_redacted(&mut out, &file, &suite.head.secrets, PrettyFormatter::new()).expect("JSON");
    String::from_utf8(out).expect("utf-8") + "\n"
}

/// `checks` of a whole suite's records, as it was computed.
fn whole_checks(records: &[BatchRecord]) -> Option<serde_json::Value> {
    if !records.iter().any(interesting) {
        return None;
    }
    let shown: Vec<&BatchRecord> = records.iter().filter(|r| r.selected || r.skipped).collect();
    let mut rows = Vec::new();
    for dataset in shown.chunk_by(|a, b| a.id.dataset == b.id.dataset) {
        rows.extend(dataset.iter().map(|r| match r.skipped {
            true => serde_json::json!({"test": r.test, "skipped": true}),
            false => batch_row(r),
        }));
        let selected: Vec<&BatchRecord> = dataset.iter().copied().filter(|r| r.selected).collect();
        rows.extend(dataset_row(&selected));
    }
    Some(serde_json::Value::Array(rows))
}

/// Suites of every shape the file has, three datasets each.
fn shapes() -> Vec<(&'static str, Shape)> {
    let three = Shape {
        datasets: 3,
        turns: 2,
        ..Shape::default()
    };
    vec![
        ("plain", three),
        (
            "checked",
            Shape {
                checks: true,
                ..three
            },
        ),
        (
            "repeated",
            Shape {
                repeat: 3,
                checks: true,
                ..three
            },
        ),
        (
            "costed",
            Shape {
                usage: true,
                ..three
            },
        ),
        (
            "ignoring",
            Shape {
                turns: 3,
                skipped: Some(1),
                ..three
            },
        ),
        (
            "earlier",
            Shape {
                turns: 3,
                unselected: Some(0),
                ..three
            },
        ),
        (
            "all_skipped",
            Shape {
                turns: 1,
                skipped: Some(0),
                ..three
            },
        ),
        (
            "broken",
            Shape {
                error: Some("no runner"),
                skipped: Some(0),
                ..three
            },
        ),
        (
            "broken_quiet",
            Shape {
                error: Some("no runner"),
                ..three
            },
        ),
        (
            "broken_empty",
            Shape {
                error: Some("no runner"),
                ..Shape::default()
            },
        ),
    ]
}

fn write_all(dir: &Path, suites: Vec<WholeSuite>, interleave: bool) -> Vec<PathBuf> {
    let mut reporter = SummaryJson::new(dir);
    let ends = feed_all(&mut reporter, suites, interleave);
    let end = RunEnd {
        suites: &ends,
        load_failures: &[],
        interrupted: false,
    };
    reporter.finish(&end).expect("finish")
}

fn fixtures() -> Vec<WholeSuite> {
    let shapes = shapes().into_iter().enumerate();
    shapes
        .map(|(i, (name, shape))| fixture::suite(i, name, None, shape))
        .collect()
}

/// Each suite fed dataset by dataset writes the file the whole-suite
/// writer wrote, redacted.
#[test]
fn streamed_files_are_the_whole_suite_files() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let written = write_all(tmp.path(), fixtures(), false);
    assert_eq!(written.len(), shapes().len());
    for (suite, path) in fixtures().iter().zip(&written) {
        assert_eq!(path, &tmp.path().join(format!("{}.json", suite.head.name)));
        let text = std::fs::read_to_string(path).expect("summary");
        assert_eq!(text, reference(suite), "{}", suite.head.name);
        assert!(!text.contains(SECRET), "{text}");
    }
    let checked = std::fs::read_to_string(&written[2]).expect("repeated");
    assert!(checked.contains("\"checks\": [") && checked.contains("\"repeats\""));
    let broken = std::fs::read_to_string(&written[7]).expect("broken");
    assert!(broken.starts_with("{\n  \"success\": false,\n  \"error\": \"no runner ([REDACTED])\""));
    let names = fixture::files(tmp.path());
    assert_eq!(
        names.len(),
        shapes().len(),
        "no temporary file left: {names:?}"
    );
}

/// Suites in flight at once (their datasets and ends interleaved) each
/// get their own file, the same as fed one after the other; so do the
/// systems of one suite.
#[test]
fn interleaved_suites_write_the_same_files() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut suites = fixtures();
    let shape = Shape {
        datasets: 4,
        turns: 1,
        checks: true,
        ..Shape::default()
    };
    suites.push(fixture::suite(20, "plain", Some("a"), shape));
    suites.push(fixture::suite(21, "plain", Some("b"), shape));
    let expected: Vec<String> = suites.iter().map(reference).collect();
    let written = write_all(tmp.path(), suites, true);
    let mut texts: Vec<(PathBuf, String)> = written
        .iter()
        .map(|p| (p.clone(), std::fs::read_to_string(p).expect("summary")))
        .collect();
    // Suites end in turn: the shortest streams first.
    texts.sort();
    let mut names: Vec<(PathBuf, String)> = fixtures()
        .iter()
        .map(|s| s.head.name.clone())
        .chain(["plain.a".to_owned(), "plain.b".to_owned()])
        .map(|n| tmp.path().join(format!("{n}.json")))
        .zip(expected)
        .collect();
    names.sort();
    assert_eq!(texts, names);
}

/// A suite with nothing to report (no batch ran, no error) writes no
/// file, and leaves nothing behind.
#[test]
fn an_empty_suite_writes_nothing() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let empty = fixture::suite(0, "empty", None, Shape::default());
    assert!(write_all(tmp.path(), vec![empty], false).is_empty());
    assert!(fixture::files(tmp.path()).is_empty());
}

/// A suite that never ends (its run failed elsewhere) leaves no file,
/// not even a temporary one, once the reporter is gone.
#[test]
fn an_unfinished_suite_leaves_nothing() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let shape = Shape {
        datasets: 3,
        turns: 2,
        checks: true,
        ..Shape::default()
    };
    let mut reporter = SummaryJson::new(tmp.path());
    for item in fed(fixture::suite(0, "cut", None, shape)) {
        if let Fed::Dataset(..) = item {
            fixture::feed(&mut reporter, item).expect("fed");
        }
    }
    assert_eq!(fixture::files(tmp.path()).len(), 1, "its temporary file");
    drop(reporter);
    assert!(fixture::files(tmp.path()).is_empty());
}

/// What the reporter holds does not grow with the suite: its answered
/// datasets go to the file, their summaries and `checks` rows to spools.
#[test]
fn memory_does_not_grow_with_the_suite() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let shape = Shape {
        datasets: 3000,
        turns: 2,
        repeat: 2,
        checks: true,
        usage: true,
        ..Shape::default()
    };
    let suite = fixture::suite(0, "big", None, shape);
    let expected = reference(&suite);
    let mut reporter = SummaryJson::new(tmp.path());
    let mut held = Vec::new();
    let mut ends = Vec::new();
    for item in fed(suite) {
        ends.extend(fixture::feed(&mut reporter, item).expect("fed"));
        held.push(reporter.held());
    }
    // The file's buffer, two spools' and one item's.
    let bound = (64 << 10) + 2 * (8 << 10) + (16 << 10);
    assert!(held.iter().all(|&h| h <= bound), "{:?}", held.iter().max());
    assert!(reporter.open.is_empty(), "nothing once the suite ended");
    let end = RunEnd {
        suites: &ends,
        load_failures: &[],
        interrupted: false,
    };
    let written = reporter.finish(&end).expect("finish");
    assert!(expected.len() > 1 << 20, "a file larger than the bound");
    assert_eq!(
        std::fs::read_to_string(&written[0]).expect("summary"),
        expected
    );
}
