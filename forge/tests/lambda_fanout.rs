//! `forge run --lambda`: the suites' sessions run on the real `forge-lambda`
//! function under the Lambda runtime emulator (`cargo lambda watch`, see
//! support/watch.rs), invoked through the AWS SDK, against the loopback
//! test server; checks and reports stay local.
//!
//! Skipped like tests/lambda_emulator.rs when cargo-lambda is not on PATH
//! (`FORGE_REQUIRE_CARGO_LAMBDA=1` makes that a failure).
#![cfg(all(feature = "lambda", feature = "lambda-client", unix))]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use forge_testkit::reports::assert_same_reports;
use forge_testkit::{Fault, FaultPlan, TestServer};

mod support;
#[path = "support/watch.rs"]
mod watch;
use watch::{Watch, HOST_ENV};

const KEY: &str = "fanout-key-58";
/// Sessions of the `agent` suite (two turns each) and of the `chat` suite.
const AGENT_SESSIONS: usize = 7;
const CHAT_SESSIONS: usize = 3;
/// The query the failure test's server never answers in time.
const HANG: &str = "Wait for me";
/// The variables the suites read, which only the function has in a
/// `--lambda` run.
const SUITE_ENV: &[&str] = &["AGENT_URL", "AGENT_KEY", "CHAT_URL", "CHAT_KEY"];

/// An Alquimia suite of 2-turn sessions (one turn's expectation fails) and
/// an OpenAI suite with prices (usage and cost must come back too), both
/// reading their URL and key from the environment.
fn write_suites(dir: &Path, hang: bool) {
    let mut agent = String::from(
        "name: agent\nrunner:\n  type: alquimia\n  base_url: ${AGENT_URL}\n  api_key: ${AGENT_KEY}\n  \
         agent_id: a\n  channel_id: c\nretries: 1\ntimeout: 60s\ndatasets:\n",
    );
    for s in 1..=AGENT_SESSIONS {
        let second = if hang && s == 5 {
            HANG
        } else {
            "And of Italy?"
        };
        let expect = if s == 3 { "nowhere" } else { "turn 2" };
        agent.push_str(&format!(
            "  - session_id: s{s}\n    assistant_id: bot\n    conversation:\n      \
             - {{qa_id: q1, query: Capital of France?, expect: {{contains: \"turn 1 of session s{s}\"}}}}\n      \
             - {{qa_id: q2, query: \"{second}\", expect: {{contains: \"{expect}\"}}}}\n"
        ));
    }
    std::fs::write(dir.join("agent.yaml"), agent).expect("write suite");
    let mut chat = String::from(
        "name: chat\nrunner:\n  type: openai\n  base_url: ${CHAT_URL}\n  api_key: ${CHAT_KEY}\n  model: m\n\
         price: {input_per_mtok: 1.5, output_per_mtok: 6}\ndatasets:\n",
    );
    for s in 1..=CHAT_SESSIONS {
        chat.push_str(&format!(
            "  - session_id: c{s}\n    assistant_id: bot\n    conversation:\n      \
             - {{qa_id: q1, query: \"Question {s}\", expect: {{contains: \"Question {s}\"}}}}\n"
        ));
    }
    std::fs::write(dir.join("chat.yaml"), chat).expect("write suite");
    // A runner the function cannot build: it lacks the variable.
    let broken = "name: broken\nrunner: {type: openai, base_url: \"${CHAT_URL}\", \
                  api_key: \"${NOT_ON_THE_FUNCTION}\", model: m}\ndatasets:\n  \
                  - {session_id: b1, assistant_id: bot, conversation: [{qa_id: q1, query: Hello}]}\n";
    std::fs::write(dir.join("broken.yaml"), broken).expect("write suite");
}

/// The suites' variables for `server`.
fn suite_env(server: &TestServer) -> Vec<(&'static str, String)> {
    vec![
        ("AGENT_URL", server.url()),
        ("AGENT_KEY", KEY.to_owned()),
        ("CHAT_URL", format!("{}/v1", server.url())),
        ("CHAT_KEY", KEY.to_owned()),
    ]
}

/// `forge run` of the suites in `dir` into `dir/<out>`, with `env` and
/// `args`; no host variable reaches it but those.
fn forge_run(dir: &Path, out: &str, env: &[(&str, String)], args: &[&str]) -> Output {
    forge_run_suites(dir, &["agent", "chat"], out, env, args)
}

/// `forge run` of the named suites of `dir`.
fn forge_run_suites(
    dir: &Path,
    suites: &[&str],
    out: &str,
    env: &[(&str, String)],
    args: &[&str],
) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_forge"));
    command.arg("run");
    for suite in suites {
        command.arg(dir.join(format!("{suite}.yaml")));
    }
    command
        .arg("--out")
        .arg(dir.join(out))
        .args(args)
        .env_remove("FORGE_PARTITION");
    for name in HOST_ENV.iter().chain(SUITE_ENV) {
        command.env_remove(name);
    }
    for name in [
        "AWS_PROFILE",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_LAMBDA",
    ] {
        command.env_remove(name);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("run forge")
}

/// Dummy credentials and a region: the SDK signs even for the emulator.
fn aws_env() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "AKIDFORGETEST".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "forge-test-secret".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
    ]
}

fn lambda_args<'a>(watch_endpoint: &'a str, chunk: &'a str) -> Vec<&'a str> {
    vec![
        "--lambda",
        "forge-lambda",
        "--lambda-endpoint",
        watch_endpoint,
        "--lambda-chunk",
        chunk,
        "--lambda-concurrency",
        "4",
    ]
}

/// Each test case of `dir/junit.xml` with its failure message (or `None`).
fn cases(dir: &Path) -> BTreeMap<String, Option<String>> {
    let text = std::fs::read_to_string(dir.join("junit.xml")).expect("junit.xml");
    let doc = roxmltree::Document::parse(&text).expect("JUnit XML");
    let mut cases = BTreeMap::new();
    for case in doc.descendants().filter(|n| n.has_tag_name("testcase")) {
        let name = format!(
            "{}::{}",
            case.attribute("classname").unwrap_or_default(),
            case.attribute("name").unwrap_or_default()
        );
        let failure = case
            .children()
            .find(|n| n.has_tag_name("failure"))
            .map(|f| f.attribute("message").unwrap_or_default().to_owned());
        assert!(
            cases.insert(name.clone(), failure).is_none(),
            "{name} twice"
        );
    }
    cases
}

/// The function's environment: the suites' variables for `server`, and the
/// runner types payloads may use.
fn function_env(server: &TestServer) -> Vec<(&'static str, String)> {
    let mut env = suite_env(server);
    env.push(("FORGE_PAYLOAD_RUNNERS", "alquimia openai".to_owned()));
    env
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lambda_run_reports_what_a_local_run_does() {
    let local = TestServer::builder().api_key(KEY).start().await;
    let remote = TestServer::builder().api_key(KEY).start().await;
    let Some(watch) = Watch::start_with(&function_env(&remote), &["--concurrency", "4"]).await
    else {
        return;
    };
    watch.warm_up().await;
    let dir = tempfile::tempdir().expect("temp dir");
    write_suites(dir.path(), false);

    let here = forge_run(dir.path(), "local", &suite_env(&local), &[]);
    assert_eq!(here.status.code(), Some(1), "{}", stderr(&here));
    let endpoint = watch.endpoint();
    let there = forge_run(
        dir.path(),
        "lambda",
        &aws_env(),
        &lambda_args(&endpoint, "3"),
    );
    assert_eq!(
        there.status.code(),
        Some(1),
        "{}\n{}",
        stderr(&there),
        watch.output()
    );

    // The same reports, timings aside: answers, verdicts, checks, tokens, cost.
    assert_same_reports(&dir.path().join("local"), &dir.path().join("lambda"));
    let cases = cases(&dir.path().join("lambda"));
    assert_eq!(cases.len(), AGENT_SESSIONS * 2 + CHAT_SESSIONS, "{cases:?}");
    let failed: Vec<_> = cases.iter().filter(|(_, f)| f.is_some()).collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].0.contains("s3"), "{failed:?}");
    // The function's server saw every turn once, in order; the local
    // forge had neither the URLs nor the keys.
    for s in 1..=AGENT_SESSIONS {
        let session = format!("s{s}");
        assert_eq!(
            remote.turns(&session),
            ["Capital of France?", "And of Italy?"],
            "{session}"
        );
    }
    let chats = remote
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/chat/completions"))
        .count();
    assert_eq!(chats, CHAT_SESSIONS);
    let log = stderr(&there);
    assert!(
        log.contains("lambda: 10 sessions sent, 10 answered, 0 failed"),
        "{log}"
    );
    watch.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_invocations_fail_their_sessions_only() {
    // Session s5's second turn is answered long after the emulator's
    // invocation timeout: that invocation fails (the emulator answers 408,
    // with no request id), as a function that runs out of time does. And
    // the function cannot build the `broken` suite's runner: it rejects
    // that payload, and its batches name the invocation's request id.
    let plan = FaultPlan::new(1).on_query(
        HANG,
        Fault::Delay {
            delay: Duration::from_secs(600),
            times: 1,
        },
    );
    let remote = TestServer::builder()
        .api_key(KEY)
        .fault_plan(plan)
        .start()
        .await;
    let Some(watch) = Watch::start_with(
        &function_env(&remote),
        &["--concurrency", "4", "--timeout", "20"],
    )
    .await
    else {
        return;
    };
    watch.warm_up().await;
    let dir = tempfile::tempdir().expect("temp dir");
    write_suites(dir.path(), true);
    let endpoint = watch.endpoint();
    let suites = ["agent", "chat", "broken"];
    let args = lambda_args(&endpoint, "1");
    let run = forge_run_suites(dir.path(), &suites, "lambda", &aws_env(), &args);
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));

    let cases = cases(&dir.path().join("lambda"));
    assert_eq!(
        cases.len(),
        AGENT_SESSIONS * 2 + CHAT_SESSIONS + 1,
        "{cases:?}"
    );
    let named = regex::Regex::new(
        r"^Lambda invocation \S+ failed: the function rejected the payload: .*NOT_ON_THE_FUNCTION",
    )
    .expect("regex");
    for (name, failure) in &cases {
        let message = failure.as_deref().unwrap_or_default();
        if name.contains("::s5::") {
            let timed_out = "Lambda invocation failed (no request id): Lambda answered HTTP 408";
            assert!(message.starts_with(timed_out), "{name}: {message}");
        } else if name.starts_with("broken::") {
            assert!(named.is_match(message), "{name}: {message}");
        } else if name.contains("::s3::q2") {
            assert!(
                message.contains("check `contains` failed"),
                "{name}: {message}"
            );
        } else {
            assert!(failure.is_none(), "{name}: {failure:?}");
        }
    }
    let report = std::fs::read_to_string(dir.path().join("lambda/broken.json")).expect("report");
    assert!(report.contains("[ERROR] Lambda invocation "), "{report}");
    // The rest is intact: every other turn reached the server once.
    for s in [1, 2, 3, 4, 6, 7] {
        assert_eq!(remote.turns(&format!("s{s}")).len(), 2, "s{s}");
    }
    let log = stderr(&run);
    assert!(
        log.contains("lambda: 11 sessions sent, 9 answered, 2 failed"),
        "{log}"
    );
    watch.stop().await;
}

#[test]
fn without_a_region_lambda_says_how_to_set_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_suites(dir.path(), false);
    let mut env = aws_env();
    env.retain(|(name, _)| *name != "AWS_REGION");
    env.push(("AWS_CONFIG_FILE", "/nonexistent/forge-test".to_owned()));
    let mut args = lambda_args("http://127.0.0.1:9", "1");
    args.truncate(2);
    let output = forge_run(dir.path(), "out", &env, &args);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("no AWS region: set AWS_REGION"),
        "{}",
        stderr(&output)
    );
    assert!(!dir.path().join("out").exists(), "nothing ran");
}
