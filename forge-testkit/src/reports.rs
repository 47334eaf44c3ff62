//! Comparing two runs' reports field by field, timings excluded: what a
//! merged report must share with the report of one run of everything.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

/// The keys whose values measure time, in the summary JSON.
const JSON_TIMINGS: &[&str] = &["total_execution_time_ms", "avg_batch_time_ms", "time_ms"];

/// The attributes whose values measure time, in JUnit.
const JUNIT_TIMINGS: &[&str] = &["time", "timestamp"];

/// Asserts that the directories hold the same reports: the same
/// `<suite>.json` files with equal values but for timings, and `junit.xml`
/// files with equal elements, attributes and texts but for timings.
pub fn assert_same_reports(expected: &Path, actual: &Path) {
    let (want, got) = (json_reports(expected), json_reports(actual));
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>(),
        "{} and {} hold different suite reports",
        expected.display(),
        actual.display()
    );
    for (name, value) in &want {
        assert!(
            *value == got[name],
            "{name} differs between {} and {} (timings aside):\n{}",
            expected.display(),
            actual.display(),
            first_difference(value, &got[name], "")
        );
    }
    let (want, got) = (junit(expected), junit(actual));
    assert!(
        want == got,
        "junit.xml differs between {} and {} (timings aside):\nexpected {want}\n     got {got}",
        expected.display(),
        actual.display()
    );
}

/// Every `<suite>.json` of `dir`, timings blanked.
pub fn json_reports(dir: &Path) -> BTreeMap<String, Value> {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut reports = BTreeMap::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".json") || name.starts_with('.') {
            continue;
        }
        reports.insert(name, json_report(&entry.path()));
    }
    reports
}

/// One `<suite>.json` report, timings blanked.
pub fn json_report(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let value: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
    without_timings(value)
}

/// Asserts that two values are equal, saying where they first differ.
pub fn assert_same_json(want: &Value, got: &Value, what: &str) {
    assert!(
        want == got,
        "{what} differs (timings aside):\n{}",
        first_difference(want, got, "")
    );
}

fn without_timings(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let v = if JSON_TIMINGS.contains(&k.as_str()) {
                        Value::Null
                    } else {
                        without_timings(v)
                    };
                    (k, v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_timings).collect()),
        other => other,
    }
}

/// Where two values first differ, as a JSON path and both sides.
fn first_difference(want: &Value, got: &Value, path: &str) -> String {
    match (want, got) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                match b.get(key) {
                    Some(other) if other == value => {}
                    Some(other) => return first_difference(value, other, &format!("{path}.{key}")),
                    None => return format!("{path}.{key}: missing"),
                }
            }
            format!("{path}: extra keys")
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find(|(_, (x, y))| x != y)
            .map(|(i, (x, y))| first_difference(x, y, &format!("{path}[{i}]")))
            .unwrap_or_default(),
        _ => format!("{path}: expected {want}, got {got}"),
    }
}

/// `dir/junit.xml` as a normalised tree: each element's name, attributes
/// (timings left out) and text, in document order.
pub fn junit(dir: &Path) -> String {
    let path = dir.join("junit.xml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc = roxmltree::Document::parse(&text)
        .unwrap_or_else(|e| panic!("{}: not XML: {e}", path.display()));
    let mut out = String::new();
    for node in doc.descendants() {
        if node.is_element() {
            out.push_str(&format!("<{}", node.tag_name().name()));
            for attribute in node.attributes() {
                if !JUNIT_TIMINGS.contains(&attribute.name()) {
                    out.push_str(&format!(" {}={:?}", attribute.name(), attribute.value()));
                }
            }
            out.push('>');
        } else if let Some(text) = node.text().filter(|t| !t.trim().is_empty()) {
            out.push_str(&format!("{text:?}"));
        }
    }
    out
}
