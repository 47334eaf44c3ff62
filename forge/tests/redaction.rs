//! Every credential a runner sends is redacted from everything `forge run`
//! writes, whatever its source and length: keys from the environment
//! (`ALQUIMIA_API_KEY`, `OPENAI_API_KEY`) of 3, 5 and 20 characters, echoed
//! back by the server into its answers, never reach the reports or the
//! console of the real `forge` binary.

use std::path::Path;
use std::process::Stdio;

use forge_testkit::{Fault, FaultPlan, TestServer};

const SUITES: &[(&str, &str)] = &[
    (
        "agent.yaml",
        r#"
name: agent
runner: {type: alquimia, agent_id: bot, channel_id: web}
datasets:
  - session_id: s1
    assistant_id: bot
    conversation:
      - {qa_id: plain, query: What is the capital of France?}
      - {qa_id: checked, query: And of Spain?, expect: {equals: nope}}
"#,
    ),
    (
        "chat.yaml",
        r#"
name: chat
runner: {type: openai, model: m}
datasets:
  - session_id: s2
    assistant_id: bot
    conversation:
      - {qa_id: plain, query: What is the capital of Italy?}
      - {qa_id: checked, query: And of Peru?, expect: {contains: nope}}
"#,
    ),
    (
        "extra.yaml",
        r#"
name: extra
runner: {type: echo, template: "QuokkaQuokka says {query}", redact: [QuokkaQuokka]}
datasets:
  - session_id: s3
    assistant_id: bot
    conversation:
      - {qa_id: q, query: hello, expect: {equals: nope}}
"#,
    ),
];

fn read_all(dir: &Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).expect("out dir") {
        let path = entry.expect("entry").path();
        text.push_str(&std::fs::read_to_string(&path).expect("report"));
    }
    text
}

async fn run_with_key(key: &str) {
    let server = TestServer::builder()
        .api_key(key)
        .fault_plan(FaultPlan::new(7).share(100, Fault::EchoAuthorization))
        .start()
        .await;
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, text) in SUITES {
        std::fs::write(dir.path().join(name), text).expect("write suite");
    }
    let out = dir.path().join("out");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_forge"))
        .arg("run")
        .arg(dir.path())
        .arg("--out")
        .arg(&out)
        .env("ALQUIMIA_BASE_URL", server.url())
        .env("ALQUIMIA_API_KEY", key)
        .env("OPENAI_BASE_URL", format!("{}/v1", server.url()))
        .env("OPENAI_API_KEY", key)
        .env_remove("FORGE_OUT_DIR")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run forge");
    let console = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // The server did echo the key into the answers.
    assert!(server
        .requests()
        .iter()
        .any(|r| r.fault.as_deref() == Some("echo authorization")));
    assert_eq!(output.status.code(), Some(1), "{console}");
    assert!(console.contains("FAILED agent::s1::checked"), "{console}");
    assert!(
        !console.contains(key),
        "the console shows {key:?}: {console}"
    );
    assert!(!console.contains("QuokkaQuokka"), "{console}");
    let reports = read_all(&out);
    assert!(
        reports.contains("(you sent: Bearer [REDACTED])"),
        "{reports}"
    );
    assert!(!reports.contains(key), "a report shows {key:?}: {reports}");
    assert!(!reports.contains("QuokkaQuokka"), "{reports}");
    let warned = console.contains("shorter than 8 characters");
    assert_eq!(warned, key.len() < 8, "{console}");
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_from_the_environment_never_reach_reports_or_console() {
    for key in ["Zq9", "k7Qx2", "sk-live-0123456789ab"] {
        run_with_key(key).await;
    }
}
