//! Golden files: what users and Fair-Forge read, pinned byte for byte.
//!
//! The real `forge` binary runs the fixture suites of `tests/golden/suites/`
//! (`forge run --quiet --out DIR suites`): every check kind passing and
//! failing, `repeat` with `pass_rate` and `min_passes`, a multi-turn session
//! carrying Fair-Forge's every field, ignored batches, runner errors, a
//! best-of dataset, secrets echoed by the system under test, and the
//! `alquimia` runner against the loopback server. (A runner that cannot be
//! built is a load error now: see `tests/bad_input.rs`.)
//! Its summary JSONs, `junit.xml` and console (exit status, stdout, stderr)
//! are compared, after normalising timings and paths, with
//! `tests/golden/expected/`. `FORGE_BLESS=1 cargo test -p forge-eval --test
//! golden` rewrites them; review the diff before committing it.
//!
//! The root's `tests/golden_harness.rs` runs the same fixture through the
//! `cargo test` harness and compares its reports with the same files.

#[path = "golden/support.rs"]
mod support;

use std::path::Path;

use support::{Fixture, Server};

const FORGE_RUN: &str = "forge run --quiet --out <OUT> suites";

const BLESS: &str = "If the change is meant, rewrite them with `FORGE_BLESS=1 cargo test -p forge-eval --test golden` and review the diff.";

#[test]
fn forge_run_writes_the_golden_reports_and_console() {
    let fixture = Fixture::at(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden"));
    let server = Server::start();
    let out = tempfile::tempdir().expect("temp dir");
    let mut mismatches = forge_run(&fixture, Some(&server), out.path());
    mismatches.extend(written_reports_problems(out.path()));
    mismatches.extend(support::compare_reports(
        out.path(),
        &fixture.reports(),
        true,
    ));
    support::assert_no_mismatch(&mismatches, BLESS);
}

/// A suite that cannot be loaded is the failing test `<stem>::load` in
/// `junit.xml` (with a `timestamp` and a `time`, as every suite), and the
/// other suites still run; `forge run` then exits with 2. The harness
/// writes the very same reports (`tests/golden_harness.rs`).
#[test]
fn forge_run_runs_the_good_suite_and_reports_the_unloadable_one() {
    let fixture = Fixture::at(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/unloadable"
    ));
    let out = tempfile::tempdir().expect("temp dir");
    let mut mismatches = forge_run(&fixture, None, out.path());
    mismatches.extend(support::compare_reports(
        out.path(),
        &fixture.reports(),
        true,
    ));
    support::assert_no_mismatch(&mismatches, BLESS);
}

/// Runs `forge run` on the fixture's suites with the reports in `out`, and
/// compares its console with the golden `forge-run.txt`.
fn forge_run(fixture: &Fixture, server: Option<&Server>, out: &Path) -> Vec<String> {
    let output = support::command(env!("CARGO_BIN_EXE_forge"), fixture, server)
        .args(["run", "--quiet", "--out"])
        .arg(out)
        .arg("suites")
        .output()
        .expect("run forge");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let mut mismatches = support::leaks("stdout", &stdout);
    mismatches.extend(support::leaks("stderr", &stderr));
    let console = support::transcript(
        FORGE_RUN,
        &output,
        &support::normalize_console(&stdout, out),
        &support::sort_failed(&support::normalize_console(&stderr, out)),
    );
    if let Err(diff) = support::compare(&fixture.console("forge-run.txt"), &console, true) {
        mismatches.push(diff);
    }
    mismatches
}

/// What is wrong with the reports as written, before normalising: a
/// summary JSON Fair-Forge could not read, a `junit.xml` that is not XML,
/// a `report.html` cut short, a secret that leaked.
fn written_reports_problems(out: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    for name in support::file_names(out) {
        let text = std::fs::read_to_string(out.join(&name)).expect("read a report");
        problems.extend(support::leaks(&name, &text));
        if name.ends_with(".json") {
            match serde_json::from_str(&text) {
                Ok(report) => problems.extend(support::fair_forge_problems(&name, &report)),
                Err(error) => problems.push(format!("{name} is not JSON: {error}")),
            }
        } else if name.ends_with(".html") {
            if !text.ends_with("</html>\n") {
                problems.push(format!("{name} is not a whole page"));
            }
        } else if let Err(error) = roxmltree::Document::parse(&text) {
            problems.push(format!("{name} is not XML: {error}"));
        }
    }
    problems
}

/// The golden files are checked, not rubber-stamped: a run whose report
/// differs from a golden file by one character fails with a diff.
#[test]
fn a_changed_golden_file_is_a_mismatch_with_a_diff() {
    let dir = tempfile::tempdir().expect("temp dir");
    let golden = dir.path().join("golden.json");
    std::fs::write(&golden, "{\n  \"success\": true\n}\n").expect("write");
    assert!(support::compare(&golden, "{\n  \"success\": true\n}\n", false).is_ok());
    let diff =
        support::compare(&golden, "{\n  \"success\": false\n}\n", false).expect_err("a mismatch");
    assert!(diff.contains("-  \"success\": true"), "{diff}");
    assert!(diff.contains("+  \"success\": false"), "{diff}");
    let missing = support::compare(&dir.path().join("none.json"), "{}", false)
        .expect_err("a missing golden file fails");
    assert!(missing.contains("FORGE_BLESS=1"), "{missing}");
}

#[test]
fn normalising_replaces_timings_and_paths_only() {
    let json = "\"total_execution_time_ms\": 12.5,\n\"avg_batch_time_ms\": 0.0,\n\"time_ms\": 3e-2,\n\"total_batches\": 2";
    assert_eq!(
        support::normalize_json(json),
        "\"total_execution_time_ms\": \"<ms>\",\n\"avg_batch_time_ms\": \"<ms>\",\n\"time_ms\": \"<ms>\",\n\"total_batches\": 2"
    );
    assert_eq!(
        support::normalize_junit(
            r#"<testcase name="t" time="0.001" timestamp="2024-01-01T00:00:00Z">"#
        ),
        r#"<testcase name="t" time="<s>" timestamp="<s>">"#
    );
    let out = Path::new("/tmp/x/out");
    assert_eq!(
        support::normalize_console(
            "3 passed, 1 failed in 0.05s\nreports written to /tmp/x/out\nhttp://127.0.0.1:4242/a\nwithin 5s",
            out
        ),
        "3 passed, 1 failed in <s>\nreports written to <OUT>\nhttp://127.0.0.1:<port>/a\nwithin 5s"
    );
    assert_eq!(
        support::sort_failed("FAILED b: x\n  more\nFAILED a: y\nforge: reports written\n"),
        "FAILED a: y\nFAILED b: x\n  more\nforge: reports written\n"
    );
}

/// The Fair-Forge shape check is not a formality: a dropped field, an
/// extra key or a summary that is not its dataset's are caught.
#[test]
fn the_fair_forge_shape_check_catches_departures() {
    let batch = serde_json::json!({"qa_id": "q", "query": "?", "assistant": "a",
        "ground_truth_assistant": "", "observation": null, "agentic": {},
        "ground_truth_agentic": {}, "logprobs": {}, "weight": null});
    let summary = serde_json::json!({"session_id": "s", "total_batches": 1, "successes": 1,
        "failures": 0, "total_execution_time_ms": 1.0, "avg_batch_time_ms": 1.0});
    let report = |batch: &serde_json::Value, summary: &serde_json::Value| {
        serde_json::json!({"success": true,
            "datasets": [{"session_id": "s", "assistant_id": "a", "language": "english",
                          "context": "", "conversation": [batch]}],
            "summaries": [summary], "total_datasets": 1})
    };
    assert_eq!(
        support::fair_forge_problems("r", &report(&batch, &summary)),
        Vec::<String>::new()
    );
    let mut no_weight = batch.clone();
    no_weight.as_object_mut().map(|b| b.remove("weight"));
    assert_eq!(
        support::fair_forge_problems("r", &report(&no_weight, &summary)),
        ["r: batch \"q\" has no `weight`"]
    );
    let mut integer_time = summary.clone();
    integer_time["avg_batch_time_ms"] = serde_json::json!(1);
    assert_eq!(
        support::fair_forge_problems("r", &report(&batch, &integer_time)).len(),
        1
    );
    let mut extra = report(&batch, &summary);
    extra["extra"] = serde_json::json!(1);
    assert_eq!(support::fair_forge_problems("r", &extra).len(), 1);
}
