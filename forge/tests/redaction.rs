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

/// Every report under `dir`, `parts/` included.
fn read_all(dir: &Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).expect("out dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            text.push_str(&read_all(&path));
        } else {
            text.push_str(&std::fs::read_to_string(&path).expect("report"));
        }
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

/// Asserts that `shown` (a `Debug` output) holds none of `secrets`.
fn assert_hides(what: &str, shown: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!shown.contains(secret), "{what} shows {secret:?}: {shown}");
    }
}

#[test]
fn debug_output_of_runners_and_configs_never_shows_a_credential() {
    use forge::registry::BuildContext;
    use forge::runners::alquimia::{Alquimia, AlquimiaConfig};
    use forge::runners::command::Command;
    use forge::runners::http::Http;
    use forge::runners::openai::{OpenAi, OpenAiConfig};
    use serde_json::json;

    let key = "sk-debug-key-0123456789";
    // Credentials in a URL: user info and a secret query value.
    let base_url = "https://user:url-pass-4711@api.example/v1?api_key=url-key-4712";
    let in_url = ["url-pass-4711", "url-key-4712"];

    let alquimia_config = AlquimiaConfig {
        base_url: Some(base_url.into()),
        api_key: Some(key.into()),
        agent_id: Some("agent".into()),
        channel_id: Some("web".into()),
        ..Default::default()
    };
    let shown = format!("{alquimia_config:?}");
    assert!(shown.contains("agent"), "{shown}");
    assert_hides("AlquimiaConfig", &shown, &[&[key][..], &in_url].concat());
    let alquimia = Alquimia::new(alquimia_config).expect("alquimia");
    assert_hides(
        "Alquimia",
        &format!("{alquimia:?}"),
        &[&[key][..], &in_url].concat(),
    );

    let mut openai_config = OpenAiConfig::new("m");
    openai_config.base_url = Some(base_url.into());
    openai_config.api_key = Some(key.into());
    let shown = format!("{openai_config:?}");
    assert!(shown.contains("api_key"), "{shown}");
    assert_hides("OpenAiConfig", &shown, &[&[key][..], &in_url].concat());
    let openai = OpenAi::new(openai_config).expect("openai");
    assert_hides(
        "OpenAi",
        &format!("{openai:?}"),
        &[&[key][..], &in_url].concat(),
    );

    let http = Http::from_value(json!({
        "url": base_url,
        "headers": {"Authorization": format!("Bearer {key}"), "X-Custom": "custom-secret-0815"},
        "body": {"query": "{query}", "api_key": "body-key-4713"},
    }))
    .expect("http");
    let shown = format!("{http:?}");
    assert!(shown.contains("x-custom"), "{shown}");
    let mut hidden = vec![key, "custom-secret-0815", "body-key-4713"];
    hidden.extend(in_url);
    assert_hides("Http", &shown, &hidden);

    let command = Command::from_value(
        json!({"program": "true", "env": {"API_KEY": key, "MODE": "plain-env-4714"}}),
        &BuildContext::default(),
    )
    .expect("command");
    let shown = format!("{command:?}");
    assert!(
        shown.contains("API_KEY") && shown.contains("MODE"),
        "{shown}"
    );
    assert_hides("Command", &shown, &[key, "plain-env-4714"]);
}
