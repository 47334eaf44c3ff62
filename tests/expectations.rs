//! The failing expectation examples: each check's failure message, through
//! the compiled harness, the JUnit report and the summary JSON.

use std::process::Command;

use serde_json::Value;

#[test]
fn every_failing_check_says_which_and_why() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile::tempdir().expect("temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_forge-harness"))
        .env("FORGE_SUITES_DIR", root.join("tests/expectations"))
        .env("FORGE_OUT_DIR", out.path())
        .args(["--test-threads", "1"])
        .output()
        .expect("run the harness");
    assert_eq!(output.status.code(), Some(101));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("0 passed; 11 failed"), "{text}");
    for expected in [
        "check `contains` failed: the answer does not contain \"Paris\"",
        "check `icontains` failed: the answer does not contain (ignoring case) \"PARIS\"",
        "check `not_contains` failed: the answer contains \"[ERROR]\"",
        "check `equals` failed: expected \"The answer is 42.\"\n     got \"The answer is 41.\"",
        "differ at byte 15",
        "check `starts_with` failed: expected the answer to start with \"Paris\"",
        "check `regex` failed: /#\\d{5}/ does not match the answer",
        "check `is_json` failed: the answer is not JSON",
        "check `is_json` failed: the answer does not match the schema: 7 is not of type \"string\" at /city",
        // "took N ms": how long the turn took is the machine's business.
        "check `max_latency_ms` failed: took ",
        " ms, more than 0 ms",
        "check `similarity` failed: token_f1 similarity to the ground truth is 0.000, below 0.5",
        "0 of 3 runs passed, 3 needed",
        "run 2: check `equals` failed",
        "answer: Rome is the capital of Italy.",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }

    let junit = std::fs::read_to_string(out.path().join("junit.xml")).expect("junit");
    assert!(junit.contains(r#"failures="11""#), "{junit}");
    assert!(junit.contains("check `regex` failed"), "{junit}");

    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("failing.json")).expect("summary"),
    )
    .expect("JSON");
    // Runner calls all succeeded: Fair-Forge's figures say so; forge's
    // verdicts are in `checks`.
    assert_eq!(report["summaries"][0]["successes"], 10);
    let checks = report["checks"].as_array().expect("checks");
    // One row per batch, and the repeated dataset's row after its batch.
    assert_eq!(checks.len(), 12);
    assert_eq!(checks[0]["test"], "failing::checks::contains");
    assert_eq!(checks[0]["passed"], false);
    assert_eq!(checks[0]["runs"][0]["checks"][0]["check"], "contains");
    assert_eq!(checks[10]["runs"].as_array().map(Vec::len), Some(3));
    assert_eq!(checks[10]["repeats"]["passes"], 0);
    assert_eq!(checks[11]["repeats"]["runs"], 3);
    assert_eq!(checks[11]["tests"][0], checks[10]["test"]);
}
