//! `tool_correctness` and repeats through the compiled `forge` binary.
//!
//! - Fair-Forge's example datasets (`suites/data/fair-forge/`): every
//!   batch's tool scores in the summary JSON equal Fair-Forge 3.0.0's own,
//!   from the golden table `tests/golden/fair_forge/tool_correctness.json`
//!   (made by `generate.py` beside it, with Fair-Forge's code: see its
//!   header). Exactly: the same IEEE operations in the same order.
//! - An agent that uses tools (the `http` runner's `agentic` pointer against
//!   the loopback test server's `/agent`), right on some turns and runs and
//!   wrong on others: passing and failing batches, and a repeated dataset
//!   gated by `pass_pow_k` with its pass@k / pass^k in the summary.
//! - Load errors of both checks, located in the suite file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use forge_testkit::TestServer;
use serde_json::{json, Value};

fn forge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_forge"))
        .args(args)
        .output()
        .expect("run forge")
}

/// Runs `suite.yaml` (written into a new directory) with `forge run`: its
/// output, its summary JSON (null when none) and its JUnit report.
fn run(suite: &str, name: &str) -> (Output, Value, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("suite.yaml");
    std::fs::write(&path, suite).expect("write suite");
    let out = dir.path().join("out");
    let output = forge(&[
        "run",
        "--quiet",
        &path.display().to_string(),
        "--out",
        &out.display().to_string(),
    ]);
    let report = std::fs::read_to_string(out.join(format!("{name}.json")))
        .map(|text| serde_json::from_str(&text).expect("summary JSON"))
        .unwrap_or(Value::Null);
    let junit = std::fs::read_to_string(out.join("junit.xml")).unwrap_or_default();
    (output, report, junit)
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_owned()
}

/// The summary's `checks` rows by test name (dataset rows by session id).
fn rows(report: &Value) -> HashMap<String, Value> {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|row| {
            let key = row["test"].as_str().or(row["session_id"].as_str());
            (key.expect("a test or session").to_owned(), row.clone())
        })
        .collect()
}

/// The result of check `name` in the first run of `row`.
fn check<'a>(row: &'a Value, name: &str) -> &'a Value {
    row["runs"][0]["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["check"] == name))
        .unwrap_or_else(|| panic!("no `{name}` in {row}"))
}

#[test]
fn fair_forge_fixtures_score_as_fair_forge_scores_them() {
    let data = repo().join("suites/data/fair-forge");
    let suite = format!(
        "name: tools\nrunner: {{type: echo}}\nconcurrency: 2\nexpect: {{tool_correctness: 1.0}}\ndatasets:\n{}",
        ["agentic.json", "assistant.json", "bestof.json"]
            .iter()
            .map(|f| format!("  - file: {:?}\n", data.join(f).display().to_string()))
            .collect::<String>()
    );
    let (output, report, junit) = run(&suite, "tools");
    assert_eq!(output.status.code(), Some(1), "{output:?}");

    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(
            repo().join("forge/tests/golden/fair_forge/tool_correctness.json"),
        )
        .expect("golden table"),
    )
    .expect("golden JSON");
    let batches = golden["batches"].as_array().expect("batches");
    assert_eq!(batches.len(), 31, "every batch of the three files");
    let rows = rows(&report);
    assert_eq!(rows.len(), batches.len());
    for batch in batches {
        // bestof.json's datasets share one session id: named session@assistant.
        let session = batch["session_id"].as_str().expect("session");
        let session = if session == "comparison_session" {
            format!(
                "{session}@{}",
                batch["assistant_id"].as_str().expect("assistant")
            )
        } else {
            session.to_owned()
        };
        let test = format!(
            "tools::{session}::{}",
            batch["qa_id"].as_str().expect("qa_id")
        );
        let row = rows
            .get(&test)
            .unwrap_or_else(|| panic!("no row for {test}"));
        let result = check(row, "tool_correctness");
        let fair_forge = &batch["result"];
        for field in [
            "tool_selection_correct",
            "parameter_accuracy",
            "sequence_correct",
            "result_utilization",
            "overall_correctness",
        ] {
            assert_eq!(
                result["scores"][field].as_f64(),
                fair_forge[field].as_f64(),
                "{test}: {field}"
            );
        }
        assert_eq!(result["score"], fair_forge["overall_correctness"], "{test}");
        assert_eq!(result["reason"], fair_forge["reasoning"], "{test}");
        assert_eq!(result["passed"], fair_forge["is_correct"], "{test}");
        assert_eq!(row["passed"], fair_forge["is_correct"], "{test}");
    }
    // A failure shows the score, the threshold and the parts.
    assert!(
        junit.contains(
            "check `tool_correctness` failed: tool correctness 0.875 is below 1 (tool_selection_correct 1.000, \
             parameter_accuracy 0.500, sequence_correct 1.000, result_utilization 1.000): \
             ✓ Tool selection: correct; ✗ Parameters: incorrect (0.50)"
        ),
        "{junit}"
    );
}

/// What the loopback agent does for a query in a session: the tools it
/// calls, right or wrong by design.
fn agent_reply(body: &Value) -> Value {
    let query = body["query"].as_str().unwrap_or_default();
    let session = body["session_id"].as_str().unwrap_or_default();
    let run = session
        .rsplit_once("-run")
        .map_or(0, |(_, k)| k.parse().unwrap_or(0));
    let tools = match query {
        "add 15 and 27" => {
            json!([{"tool_name": "calculator", "parameters": {"operation": "add", "a": 15, "b": 27}, "result": 42, "step": 1}])
        }
        // The wrong tool, every time.
        "search the docs" => {
            json!([{"tool_name": "web_search", "parameters": {"q": "docs"}, "step": 1}])
        }
        // Right in runs 1 to 3; run 4 forgets the units.
        "weather in Paris" => {
            let mut parameters = json!({"location": "Paris", "units": "celsius"});
            if run == 4 {
                parameters = json!({"location": "Paris"});
            }
            json!([{"tool_name": "weather_api", "parameters": parameters, "step": 1}])
        }
        // Right in runs 1 and 2 only.
        "convert 10 usd" => {
            let to = if run <= 2 { "eur" } else { "gbp" };
            json!([{"tool_name": "fx", "parameters": {"amount": 10, "from": "usd", "to": to}, "step": 1}])
        }
        _ => json!([]),
    };
    json!({"answer": format!("done: {query}"), "agentic": {"tools_used": tools, "final_answer_uses_tools": true}})
}

const AGENT_SUITE: &str = r#"
name: agent
runner:
  type: http
  url: "URL/agent"
  headers: {Authorization: "Bearer test-key"}
  answer: /answer
  agentic: /agentic
concurrency: 2
expect: {tool_correctness: 1.0}
datasets:
  - session_id: once
    assistant_id: agent
    conversation:
      - qa_id: add
        query: add 15 and 27
        ground_truth_agentic:
          expected_tools: [{tool_name: calculator, parameters: {operation: add, a: 15, b: 27.0}, step: 1}]
          tool_sequence_matters: false
      - qa_id: search
        query: search the docs
        ground_truth_agentic:
          expected_tools: [{tool_name: kb_search, parameters: {q: docs}, step: 1}]
  - session_id: flaky
    assistant_id: agent
    repeat: 4
    pass_rate: 0.5
    expect: {pass_pow_k: {k: 2, min: 0.5}}
    conversation:
      - qa_id: weather
        query: weather in Paris
        ground_truth_agentic:
          expected_tools: [{tool_name: weather_api, parameters: {location: Paris, units: celsius}, step: 1}]
      - qa_id: convert
        query: convert 10 usd
        ground_truth_agentic:
          expected_tools: [{tool_name: fx, parameters: {amount: 10, from: usd, to: eur}, step: 1}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agents_tool_use_gates_batches_and_repeats() {
    let server = TestServer::builder().agent(agent_reply).start().await;
    let suite = AGENT_SUITE.replace("URL", &server.url());
    let (output, report, junit) = tokio::task::spawn_blocking(move || run(&suite, "agent"))
        .await
        .expect("join");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let agent_calls = server
        .requests()
        .iter()
        .filter(|r| r.path == "/agent")
        .count();
    assert_eq!(agent_calls, 2 + 2 * 4);

    let rows = rows(&report);
    // Right tools: passes, with Fair-Forge's scores (27 == 27.0, as in Python).
    let add = &rows["agent::once::add"];
    assert_eq!(add["passed"], true);
    assert_eq!(check(add, "tool_correctness")["score"], 1.0);
    // The wrong tool: fails, saying which.
    let search = &rows["agent::once::search"];
    assert_eq!(search["passed"], false);
    assert_eq!(check(search, "tool_correctness")["score"], 0.25);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "FAILED agent::once::search: check `tool_correctness` failed: tool correctness 0.250 is below 1 \
             (tool_selection_correct 0.000, parameter_accuracy 0.000, sequence_correct 0.000, result_utilization 1.000): \
             ✗ Tool selection: used {'web_search'}, expected {'kb_search'}"
        ),
        "{stderr}"
    );
    assert!(rows["agent::once::add"].get("repeats").is_none());

    // 3 of 4 runs: pass^2 = 0.5625 holds.
    let weather = &rows["agent::flaky::weather"];
    assert_eq!(weather["passed"], true, "{weather}");
    assert_eq!(weather["checks"][0]["check"], "pass_pow_k");
    assert_eq!(weather["checks"][0]["score"], 0.5625);
    assert_eq!(weather["repeats"]["passes"], 3);
    assert_eq!(weather["repeats"]["pass_at_k"]["2"], 0.9375);
    // 2 of 4 runs meet `pass_rate: 0.5`, but pass^2 = 0.25 does not.
    let convert = &rows["agent::flaky::convert"];
    assert_eq!(convert["passed"], false, "{convert}");
    assert_eq!(convert["checks"][0]["passed"], false);
    assert_eq!(convert["repeats"]["pass_pow_k"]["2"], 0.25);
    assert!(
        junit.contains(
            "<failure message=\"2 of 4 runs passed, 2 needed\n\
             check `pass_pow_k` failed: pass^2 is 0.250 (2 of 4 runs passed), below 0.5\n\
             run 3: check `tool_correctness` failed: tool correctness 0.917 is below 1 (tool_selection_correct 1.000, \
             parameter_accuracy 0.667, sequence_correct 1.000, result_utilization 1.000)"
        ),
        "{junit}"
    );
    // The dataset passes in the runs where both its batches did: 1 and 2.
    let flaky = &rows["flaky"];
    assert_eq!(
        flaky["tests"],
        json!(["agent::flaky::weather", "agent::flaky::convert"])
    );
    assert_eq!(flaky["repeats"]["runs"], 4);
    assert_eq!(flaky["repeats"]["passes"], 2);
    assert_eq!(
        flaky["repeats"]["pass_at_k"],
        json!({"1": 0.5, "2": 0.75, "3": 0.875, "4": 0.9375})
    );
    assert_eq!(
        flaky["repeats"]["pass_pow_k"],
        json!({"1": 0.5, "2": 0.25, "3": 0.125, "4": 0.0625})
    );
    let (low, high) = (
        flaky["repeats"]["pass_rate_ci_low"].as_f64().expect("low"),
        flaky["repeats"]["pass_rate_ci_high"]
            .as_f64()
            .expect("high"),
    );
    assert!(
        low < 0.5 && 0.5 < high && low > 0.0 && high < 1.0,
        "{flaky}"
    );

    // Fair-Forge's own fields are untouched: the final agentic data of each
    // turn (the runner's tool use merged in) is in the datasets.
    let datasets = report["datasets"].as_array().expect("datasets");
    let first = &datasets[0]["conversation"][0];
    assert_eq!(first["agentic"]["tools_used"][0]["tool_name"], "calculator");
    assert_eq!(datasets.len(), 1 + 4);
}

#[test]
fn misplaced_checks_are_located_load_errors() {
    for (expect, message) in [
        (
            "{pass_pow_k: {k: 2, min: 0.5}}",
            "suite.yaml:8:9: t::s::q: `pass_pow_k` needs a repeated batch",
        ),
        (
            "{tool_correctness: 1.0}",
            "suite.yaml:8:9: t::s::q: `tool_correctness` needs a `ground_truth_agentic` with `expected_tools`",
        ),
        (
            "{tool_correctness: {min: 0.9, weights: {selection: 1, parameters: 1, sequence: 0, utilization: 0}}}",
            "weights add up to 2, more than 1",
        ),
    ] {
        let suite = format!(
            "name: t\nrunner: {{type: echo}}\nexpect: {expect}\ndatasets:\n  - session_id: s\n    assistant_id: a\n    conversation:\n      - qa_id: q\n        query: hi\n"
        );
        let (output, report, _) = run(&suite, "t");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(message), "{message} not in {stderr}");
        assert!(report.is_null());
    }
    // k past the repeat count.
    let suite = "name: t\nrunner: {type: echo}\nrepeat: 3\nexpect: {pass_pow_k: {k: 4, min: 0.5}}\ndatasets:\n  - session_id: s\n    assistant_id: a\n    conversation:\n      - qa_id: q\n        query: hi\n";
    let (output, _, _) = run(suite, "t");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("`pass_pow_k` k 4 is more than `repeat` 3"),
        "{stderr}"
    );
}
