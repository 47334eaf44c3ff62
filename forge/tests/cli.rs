//! The `forge` binary as a user runs it: `forge run SUITE.yaml` and
//! `forge run --payload`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

fn forge(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_forge"))
        .args(args)
        .env_remove("ALQUIMIA_BASE_URL")
        .env_remove("ALQUIMIA_API_KEY")
        .env_remove("LLM_API_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn forge");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("forge output")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, body).expect("write");
    path.display().to_string()
}

#[test]
fn run_writes_reports_and_exits_by_outcome() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    let suite = write(
        dir.path(),
        "mixed.yaml",
        r#"
runner: {type: replay, answers: {a: "yes"}}
datasets:
  - session_id: s
    assistant_id: bot
    conversation:
      - {qa_id: a, query: first}
      - {qa_id: b, query: second}
"#,
    );
    let output = forge(&["run", &suite, "--out", &out.display().to_string()], None);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("1 passed, 1 failed"),
        "{}",
        text(&output.stdout)
    );
    assert!(
        text(&output.stderr).contains("FAILED mixed::s::b"),
        "{}",
        text(&output.stderr)
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("mixed.json")).expect("json"))
            .expect("valid JSON");
    assert_eq!(report["summaries"][0]["failures"], 1);
    assert!(out.join("junit.xml").is_file());

    let output = forge(
        &[
            "run",
            &suite,
            "--filter",
            "s::a",
            "--out",
            &out.display().to_string(),
        ],
        None,
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("1 passed, 0 failed"));
}

#[test]
fn run_rejects_a_bad_suite_with_its_location() {
    let dir = tempfile::tempdir().expect("temp dir");
    let suite = write(
        dir.path(),
        "bad.yaml",
        "runner: {type: echo}\nconcurrency: 4\ntimeout: soon\ndatasets: []\n",
    );
    let output = forge(&["run", &suite], None);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("bad.yaml:3:10"), "{stderr}");
    assert!(stderr.contains("invalid duration \"soon\""), "{stderr}");

    let missing = write(
        dir.path(),
        "missing.yaml",
        "runner: {type: echo}\ndatasets:\n  - file: nowhere.json\n",
    );
    let stderr = text(&forge(&["run", &missing], None).stderr);
    assert!(stderr.contains("missing.yaml:3:11"), "{stderr}");
    assert!(stderr.contains("nowhere.json not found"), "{stderr}");

    let zero = write(
        dir.path(),
        "zero.yaml",
        "runner: {type: echo}\ntimeout: 0s\ndatasets:\n  - session_id: s\n    assistant_id: a\n    conversation: [{qa_id: q, query: hi}]\n",
    );
    let stderr = text(&forge(&["run", &zero], None).stderr);
    assert!(
        stderr.contains("zero.yaml:2:1") && stderr.contains("`timeout` must be more than 0"),
        "{stderr}"
    );

    let unset = write(
        dir.path(),
        "unset.yaml",
        "runner:\n  type: echo\n  template: ${FORGE_TEST_SURELY_UNSET}\ndatasets: []\n",
    );
    let stderr = text(&forge(&["run", &unset], None).stderr);
    assert!(stderr.contains("unset.yaml:3:13"), "{stderr}");
    assert!(
        stderr.contains("FORGE_TEST_SURELY_UNSET is not set"),
        "{stderr}"
    );
}

fn payload_error(payload: &str) -> String {
    let output = forge(&["run", "--payload", "-"], Some(payload));
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stdout));
    let response: Value = serde_json::from_str(&text(&output.stdout)).expect("JSON response");
    assert_eq!(response["success"], false);
    assert_eq!(response.as_object().map(|o| o.len()), Some(2), "{response}");
    response["error"].as_str().expect("error").to_owned()
}

#[test]
fn bad_payloads_answer_success_false() {
    assert!(payload_error("{not json").starts_with("Invalid JSON payload"));
    assert!(payload_error("{}").contains("No datasets provided"));
    assert!(payload_error(r#"{"datasets": []}"#).contains("No datasets provided"));
    let dataset = json!({"session_id": "s", "assistant_id": "a",
        "conversation": [{"qa_id": "q", "query": "hi"}]});
    let error = payload_error(
        &json!({"datasets": [dataset], "config": {"base_url": "http://127.0.0.1:9", "api_key": "k"}})
            .to_string(),
    );
    assert!(error.contains("agent_id"), "{error}");
    let error = payload_error(
        &json!({"datasets": [dataset], "connector": {"class_path": "langchain_foo.Chat", "params": {"model": "m"}}})
            .to_string(),
    );
    assert!(error.contains("unknown class_path"), "{error}");
    let error = payload_error(
        &json!({"datasets": [{"session_id": "s", "assistant_id": "a",
            "conversation": [{"qa_id": "q", "query": "hi", "weight": -1}]}],
            "config": {"agent_id": "x"}})
        .to_string(),
    );
    assert!(
        error.contains("datasets[0]") && error.contains("weight"),
        "{error}"
    );
}

#[test]
fn payload_from_a_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write(dir.path(), "payload.json", r#"{"datasets": 5}"#);
    let output = forge(&["run", "--payload", &path], None);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stdout).contains("`datasets` must be a list"));
}

#[tokio::test(flavor = "multi_thread")]
async fn payload_against_the_loopback_alquimia_server_prints_the_response_format() {
    let server = forge_testkit::TestServer::builder()
        .api_key("payload-key-42")
        .start()
        .await;
    let payload = json!({
        "datasets": [{
            "session_id": "test-session-1",
            "assistant_id": "target-assistant",
            "language": "english",
            "context": "",
            "conversation": [{
                "qa_id": "test-1",
                "query": "What is the capital of France?",
                "assistant": "",
                "ground_truth_assistant": "Paris is the capital of France."
            }, {
                "qa_id": "test-2",
                "query": "broken #500",
            }]
        }],
        "config": {"base_url": server.url(), "api_key": "payload-key-42",
                   "agent_id": "agent", "channel_id": "web"}
    })
    .to_string();
    let output =
        tokio::task::spawn_blocking(move || forge(&["run", "--payload", "-"], Some(&payload)))
            .await
            .expect("join");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(!stdout.contains("payload-key-42"));
    let response: Value = serde_json::from_str(&stdout).expect("JSON");
    let keys: Vec<&str> = response
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["success", "datasets", "summaries", "total_datasets"]);
    assert_eq!(response["total_datasets"], 1);
    let turns = &response["datasets"][0]["conversation"];
    assert_eq!(
        turns[0]["assistant"],
        forge_testkit::alquimia_answer("What is the capital of France?", 1, "test-session-1")
    );
    assert!(turns[1]["assistant"]
        .as_str()
        .expect("answer")
        .starts_with("[ERROR] HTTP 500"));
    let summary = &response["summaries"][0];
    assert_eq!(
        (summary["successes"].as_u64(), summary["failures"].as_u64()),
        (Some(1), Some(1))
    );
    server.shutdown().await;
}

#[test]
fn dataset_file_errors_name_the_file_the_position_and_the_field() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(
        dir.path(),
        "data.json",
        "[\n  {\"session_id\": \"a\", \"assistant_id\": \"x\", \"conversation\": [{\"qa_id\": \"1\", \"query\": \"q\"}]},\n  {\"session_id\": \"b\", \"assistant_id\": \"x\",\n   \"conversation\": [{\"query\": \"no id\"}]}\n]\n",
    );
    let suite = write(
        dir.path(),
        "s.yaml",
        "runner: {type: echo}\ndatasets:\n  - file: data.json\n",
    );
    let stderr = text(&forge(&["run", &suite], None).stderr);
    assert!(stderr.contains("data.json:4:"), "{stderr}");
    assert!(stderr.contains("[1].conversation[0].qa_id"), "{stderr}");
    assert!(stderr.contains("missing field `qa_id`"), "{stderr}");

    write(
        dir.path(),
        "data.json",
        r#"{"session_id": "a", "assistant_id": "x", "conversation": [{"qa_id": "1", "query": "q", "weight": -2}]}"#,
    );
    let stderr = text(&forge(&["run", &suite], None).stderr);
    assert!(stderr.contains("weight must be a number >= 0"), "{stderr}");
    assert!(stderr.contains("session_id \"a\""), "{stderr}");

    write(dir.path(), "data.json", "[{\"session_id\": ");
    let stderr = text(&forge(&["run", &suite], None).stderr);
    assert!(
        stderr.contains("data.json:1:") && stderr.contains("invalid JSON"),
        "{stderr}"
    );
}
