//! Judged checks through the compiled harness (the one-line `main` of a
//! user's test target): a judged suite against the loopback test server
//! acting as the judge passes and fails its tests with the judge's score,
//! threshold and reason in libtest's output and the JUnit report, and a
//! judged check with no judge is a failed test carrying the located load
//! error, not a failure of every batch.

use std::process::Output;

use forge_testkit::judge::Judge;
use forge_testkit::TestServer;

const KEY: &str = "judge-key-4d5e6f70";

const JUDGED: &str = r#"
name: judged
runner: {type: echo}
judge: {base_url: "${JUDGE_URL}/v1", api_key: "${JUDGE_KEY}", model: grader}
expect: {answer_correctness: 0.7}
datasets:
  - session_id: s
    assistant_id: bot
    conversation:
      - {qa_id: right, query: It is Paris., ground_truth_assistant: Paris}
      - {qa_id: wrong, query: It is Rome., ground_truth_assistant: Paris}
"#;

const UNJUDGED: &str = r#"
name: unjudged
runner: {type: echo}
datasets:
  - session_id: s
    assistant_id: bot
    conversation:
      - {qa_id: q, query: hi, expect: {rubric: Says hello}}
"#;

/// Runs the harness on `suites` (written into a temporary `suites/`) with
/// the judge at `judge`; its output and the JUnit report.
async fn harness(suites: &[(&str, &str)], judge: &TestServer) -> (Output, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let suites_dir = dir.path().join("suites");
    std::fs::create_dir_all(&suites_dir).expect("suites dir");
    for (name, text) in suites {
        std::fs::write(suites_dir.join(name), text).expect("write suite");
    }
    let out = dir.path().join("out");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_forge-harness"))
        .env("FORGE_SUITES_DIR", &suites_dir)
        .env("FORGE_OUT_DIR", &out)
        .env("JUDGE_URL", judge.url())
        .env("JUDGE_KEY", KEY)
        .env_remove("FORGE_JUDGE_BASE_URL")
        .env_remove("FORGE_JUDGE_MODEL")
        .env_remove("FORGE_PARTITION")
        .output()
        .await
        .expect("run the harness");
    let junit = std::fs::read_to_string(out.join("junit.xml")).unwrap_or_default();
    (output, junit)
}

use forge_testkit::libtest::outcome;

#[tokio::test(flavor = "multi_thread")]
async fn judged_tests_pass_and_fail_with_the_judges_reason() {
    let judge = TestServer::builder()
        .api_key(KEY)
        .judge(Judge::ground_truth())
        .start()
        .await;
    let (output, junit) = harness(&[("judged.yaml", JUDGED)], &judge).await;
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(101), "{text}");
    assert_eq!(outcome(&text, "judged::s::right"), Some("ok"), "{text}");
    assert_eq!(outcome(&text, "judged::s::wrong"), Some("FAILED"), "{text}");
    let message = format!(
        "check `answer_correctness` failed: score 0.00, below 0.7 (judge grader @ {}): the answer does not state Paris",
        judge.addr()
    );
    assert!(text.contains(&message), "{text}");
    assert!(text.contains("answer: It is Rome."), "{text}");
    assert!(junit.contains(&message), "{junit}");
    assert!(!text.contains(KEY) && !junit.contains(KEY));
    assert_eq!(judge.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_judged_check_with_no_judge_fails_as_a_located_load_error() {
    let judge = TestServer::builder()
        .api_key(KEY)
        .judge(Judge::ground_truth())
        .start()
        .await;
    let suites = [("judged.yaml", JUDGED), ("unjudged.yaml", UNJUDGED)];
    let (output, _) = harness(&suites, &judge).await;
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(101), "{text}");
    assert!(
        text.contains("unjudged.yaml:8:40: `rubric` needs a judge, and the suite has none"),
        "{text}"
    );
    // The other suite ran, and was judged.
    assert_eq!(outcome(&text, "judged::s::right"), Some("ok"), "{text}");
    assert_eq!(judge.requests().len(), 2);
}

#[test]
fn the_readme_judged_suite_loads() {
    let suite = forge_testkit::libtest::readme_yaml("### Judged checks");
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("judged.yaml"), suite).expect("write suite");
    // --list loads the suite and touches no network.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_forge-harness"))
        .env("FORGE_SUITES_DIR", dir.path())
        .env("FORGE_OUT_DIR", dir.path().join("out"))
        .env("OPENAI_API_KEY", "sk-readme-example")
        .arg("--list")
        .output()
        .expect("run the harness");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("judged::facts::capital: test"), "{text}");
    assert!(text.contains("judged::manners::greeting: test"), "{text}");
}
