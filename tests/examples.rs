//! The example suites in `suites/` check what they claim: the quickstart's
//! expectations fail when its runner answers something else, and the
//! Fair-Forge suite writes Fair-Forge's datasets back field by field.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Map, Value};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the compiled harness on the suites of `dir`, reports into `out`.
fn harness(dir: &Path, out: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_forge-harness"))
        .env("FORGE_SUITES_DIR", dir)
        .env("FORGE_OUT_DIR", out)
        .args(args)
        .output()
        .expect("run the harness")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A copy of suite `name` of `suites/`, edited by `edit`, alone in a
/// temporary directory (with the data files it names).
fn edited_copy(name: &str, edit: impl Fn(&str) -> String) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = std::fs::read_to_string(root().join("suites").join(name)).expect("read suite");
    let edited = edit(&text);
    assert_ne!(edited, text, "the edit changed nothing");
    std::fs::write(dir.path().join(name), edited).expect("write suite");
    let suites = dir.path().to_owned();
    (dir, suites)
}

#[test]
fn quickstart_passes_and_its_checks_catch_a_wrong_answer() {
    let out = tempfile::tempdir().expect("temp dir");
    let output = harness(&root().join("suites"), out.path(), &["quickstart::"]);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("3 passed; 0 failed"), "{text}");

    // The same suite against a runner that answers something else fails
    // every batch, each with its check's message.
    let (_dir, suites) = edited_copy("quickstart.yaml", |text| {
        text.replace("You asked: {query}", "I did not read: {query}")
    });
    let output = harness(&suites, out.path(), &[]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(101), "{text}");
    assert!(text.contains("0 passed; 3 failed"), "{text}");
    for expected in [
        "check `equals` failed",
        "check `contains` failed",
        "check `regex` failed",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

/// The datasets of a Fair-Forge JSON file (one dataset or a list).
fn datasets(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("read fixture");
    match serde_json::from_str(&text).expect("fixture JSON") {
        Value::Array(items) => items,
        one => vec![one],
    }
}

/// Fair-Forge's `Batch` defaults, which pydantic's `model_dump` writes for
/// fields a dataset leaves out.
fn batch_default(key: &str) -> Option<Value> {
    Some(match key {
        "assistant" | "ground_truth_assistant" => Value::String(String::new()),
        "observation" | "weight" => Value::Null,
        "agentic" | "ground_truth_agentic" | "logprobs" => Value::Object(Map::new()),
        _ => return None,
    })
}

/// Asserts `written` holds every field of `read` unchanged and nothing else
/// but Fair-Forge's defaults (`path` names the place in messages).
fn assert_written_back(read: &Map<String, Value>, written: &Map<String, Value>, path: &str) {
    for (key, value) in read {
        if key == "conversation" {
            continue;
        }
        assert_eq!(written.get(key), Some(value), "{path}.{key}");
    }
    for (key, value) in written {
        if key != "conversation" && !read.contains_key(key) {
            let default = match key.as_str() {
                "language" => Some(Value::String("english".into())),
                "context" => Some(Value::String(String::new())),
                other => batch_default(other),
            };
            assert_eq!(
                Some(value),
                default.as_ref(),
                "{path}.{key} (not in the input)"
            );
        }
    }
}

#[test]
fn fair_forge_suite_writes_every_field_back() {
    let out = tempfile::tempdir().expect("temp dir");
    let output = harness(&root().join("suites"), out.path(), &["fair-forge::"]);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    // Best-of datasets share a session id: their tests name the assistant.
    let passed: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("test ")?.strip_suffix(" ... ok"))
        .map(str::trim_end)
        .collect();
    for name in [
        "fair-forge::comparison_session@assistant_alpha::q1",
        "fair-forge::comparison_session@assistant_delta::q3",
        "fair-forge::agentic_eval_session::q1_math",
        "fair-forge::123::153",
        "fair-forge::regulatory_session_001::qa_003",
    ] {
        assert!(passed.contains(&name), "{name}:\n{text}");
    }
    assert_eq!(passed.len(), 9 + 10 + 12 + 3, "{text}");

    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("fair-forge.json")).expect("report"),
    )
    .expect("report JSON");
    let written = report["datasets"].as_array().expect("datasets");
    let data = root().join("suites/data/fair-forge");
    let read: Vec<Value> = ["agentic", "assistant", "bestof", "regulatory"]
        .iter()
        .flat_map(|name| datasets(&data.join(format!("{name}.json"))))
        .collect();
    assert_eq!(written.len(), read.len());
    assert_eq!(report["total_datasets"], read.len());
    for (d, (read, written)) in read.iter().zip(written).enumerate() {
        let (read, written) = (
            read.as_object().expect("object"),
            written.as_object().expect("object"),
        );
        assert_written_back(read, written, &format!("datasets[{d}]"));
        let turns_read = read["conversation"].as_array().expect("conversation");
        let turns_written = written["conversation"].as_array().expect("conversation");
        assert_eq!(turns_read.len(), turns_written.len(), "datasets[{d}]");
        for (b, (r, w)) in turns_read.iter().zip(turns_written).enumerate() {
            let (r, w) = (r.as_object().expect("batch"), w.as_object().expect("batch"));
            assert_written_back(r, w, &format!("datasets[{d}].conversation[{b}]"));
        }
    }
    for summary in report["summaries"].as_array().expect("summaries") {
        assert_eq!(summary["failures"], 0, "{summary}");
    }
}
