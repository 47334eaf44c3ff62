//! The compiled harness keeps every credential its runners send out of its
//! output and its reports, keys from the environment included, whatever
//! their length.

use std::process::Command;

use forge_testkit::{Fault, FaultPlan, TestServer};

const SUITE: &str = r#"
name: agent
runner: {type: alquimia, agent_id: bot, channel_id: web}
datasets:
  - session_id: s1
    assistant_id: bot
    conversation:
      - {qa_id: plain, query: What is the capital of France?}
      - {qa_id: checked, query: And of Spain?, expect: {equals: nope}}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn the_harness_never_shows_an_environment_key() {
    for key in ["Zq9", "k7Qx2", "sk-live-0123456789ab"] {
        for nextest in [false, true] {
            run_with_key(key, nextest).await;
        }
    }
}

/// Runs the harness against a server that echoes the key it gets, as a
/// plain `cargo test` or as one of nextest's processes (which writes only
/// a part of its own, its answered datasets inline).
async fn run_with_key(key: &str, nextest: bool) {
    let server = TestServer::builder()
        .api_key(key)
        .fault_plan(FaultPlan::new(3).share(100, Fault::EchoAuthorization))
        .start()
        .await;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("suites")).expect("suites dir");
    std::fs::write(dir.path().join("suites").join("agent.yaml"), SUITE).expect("suite");
    let out = dir.path().join("out");
    let mut command = Command::new(env!("CARGO_BIN_EXE_forge-harness"));
    command
        .env("FORGE_SUITES_DIR", dir.path().join("suites"))
        .env("FORGE_OUT_DIR", &out)
        .env("ALQUIMIA_BASE_URL", server.url())
        .env("ALQUIMIA_API_KEY", key);
    if nextest {
        command
            .env("NEXTEST_EXECUTION_MODE", "process-per-test")
            .env("NEXTEST_RUN_ID", "run-1");
    }
    let output = tokio::task::spawn_blocking(move || command.output().expect("run"))
        .await
        .expect("join");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(101), "{text}");
    assert!(text.contains("(you sent: Bearer [REDACTED])"), "{text}");
    assert!(!text.contains(key), "the harness shows {key:?}: {text}");
    let reports = if nextest {
        assert!(!out.join("agent.json").exists() && !out.join("junit.xml").exists());
        let dir = out.join("parts").join("nextest-run-1");
        std::fs::read_dir(&dir)
            .expect("nextest parts")
            .map(|e| e.expect("entry").path())
            .collect()
    } else {
        vec![
            out.join("agent.json"),
            out.join("junit.xml"),
            out.join("parts").join("run.json"),
        ]
    };
    assert!(!reports.is_empty());
    for report in reports {
        let report = std::fs::read_to_string(report).expect("report");
        assert!(report.contains("[REDACTED]"), "{report}");
        assert!(!report.contains(key), "{key:?} in {report}");
    }
}
