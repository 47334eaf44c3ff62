//! The `http` runner against the loopback server's OpenAI route, and the
//! `command` runner with `sh -c` scripts.

mod support;
use forge_testkit::data::dataset;
use forge_testkit::process::{is_dead, wait_until};
use support::retrying;

use std::sync::Arc;
use std::time::Duration;

use forge::registry::{self, BuildContext};
use forge::{Dataset, Engine, Policy, Runner};
use forge_testkit::{openai_answer, TestServer};
use serde_json::{json, Value};

fn runner(config: Value) -> Arc<dyn Runner> {
    match registry::build(config, &BuildContext::default()) {
        Ok(runner) => runner,
        Err(error) => panic!("cannot build the runner: {error}"),
    }
}

async fn run(runner: Arc<dyn Runner>, policy: Policy, data: Dataset) -> (Dataset, forge::Summary) {
    let mut results = Engine::new(runner)
        .policy(policy)
        .run_datasets(vec![data])
        .await;
    results.remove(0)
}

fn chat_runner(server: &TestServer, key: &str, answer: &str) -> Value {
    json!({
        "type": "http",
        "url": format!("{}/v1/chat/completions", server.url()),
        "headers": {"Authorization": format!("Bearer {key}"), "X-Session": "{session_id}"},
        "body": {"model": "m", "messages": [{"role": "user", "content": "{query}"}]},
        "answer": answer,
    })
}

#[tokio::test]
async fn http_runner_answers_from_a_json_pointer_and_escapes_the_query() {
    let server = TestServer::start().await;
    let tricky = "say \"hi\"\nthen \\ back {session_id} {nothing} é";
    let runner = runner(chat_runner(
        &server,
        TestServer::DEFAULT_API_KEY,
        "/choices/0/message/content",
    ));
    let (data, summary) = run(runner, retrying(0), dataset("s1", &["hello", tricky])).await;
    assert_eq!(summary.successes, 2, "{:?}", data.conversation);
    assert_eq!(data.conversation[0].assistant, openai_answer("hello", 1));
    assert_eq!(data.conversation[1].assistant, openai_answer(tricky, 1));
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    // The placeholder inside the query was not expanded again, the body is
    // valid JSON with the query intact, and the headers arrived.
    assert_eq!(requests[1].query.as_deref(), Some(tricky));
    assert_eq!(
        requests[1].body.as_ref().unwrap()["messages"][0]["content"],
        tricky
    );
    assert_eq!(requests[1].body.as_ref().unwrap()["model"], "m");
    assert_eq!(requests[0].authorization(), Some("Bearer test-key"));
    assert_eq!(requests[0].header("x-session"), Some("s1"));
    assert_eq!(requests[0].method, "POST");
}

#[tokio::test]
async fn http_runner_errors_are_clear_and_keep_header_secrets_out() {
    let server = TestServer::start().await;
    // A pointer that finds nothing.
    let runner_missing = runner(chat_runner(
        &server,
        TestServer::DEFAULT_API_KEY,
        "/choices/0/message/missing",
    ));
    let (data, _) = run(runner_missing, retrying(2), dataset("s", &["hello"])).await;
    let answer = &data.conversation[0].assistant;
    assert!(
        answer.starts_with("[ERROR] no answer at `answer` pointer /choices/0/message/missing"),
        "{answer}"
    );
    assert!(answer.contains("/v1/chat/completions"), "{answer}");

    // A rejected key: permanent, at once, without the key.
    let secret = "wrong-secret-key-123";
    let rejected = runner(chat_runner(&server, secret, "/choices/0/message/content"));
    let (data, summary) = run(rejected, retrying(2), dataset("s", &["hello"])).await;
    let answer = &data.conversation[0].assistant;
    assert_eq!(summary.failures, 1);
    assert!(answer.starts_with("[ERROR] HTTP 401 from"), "{answer}");
    assert!(!answer.contains(secret), "{answer}");
    assert!(!answer.contains("(after"), "not retried: {answer}");

    // Transient statuses are retried; malformed JSON is not.
    let before = server.requests().len();
    let flaky = runner(chat_runner(
        &server,
        TestServer::DEFAULT_API_KEY,
        "/choices/0/message/content",
    ));
    let (data, _) = run(
        flaky,
        retrying(2),
        dataset("s", &["busy #503", "bad #badjson"]),
    )
    .await;
    assert!(
        data.conversation[0]
            .assistant
            .ends_with("(after 3 attempts)"),
        "{}",
        data.conversation[0].assistant
    );
    assert!(
        data.conversation[1]
            .assistant
            .starts_with("[ERROR] malformed JSON from"),
        "{}",
        data.conversation[1].assistant
    );
    assert_eq!(server.requests().len() - before, 4);

    // Without `answer`, a JSON object reply asks for a pointer.
    let no_pointer = runner(json!({
        "type": "http",
        "url": format!("{}/v1/chat/completions", server.url()),
        "headers": {"Authorization": "Bearer test-key"},
        "body": {"messages": [{"role": "user", "content": "{query}"}]},
    }));
    let (data, _) = run(no_pointer, retrying(0), dataset("s", &["hello"])).await;
    assert!(
        data.conversation[0]
            .assistant
            .contains("set `answer` to a JSON pointer"),
        "{}",
        data.conversation[0].assistant
    );
}

#[tokio::test]
async fn http_runner_does_not_resend_a_timed_out_turn() {
    let server = TestServer::builder()
        .latency(Duration::from_millis(600))
        .start()
        .await;
    let mut config = chat_runner(
        &server,
        TestServer::DEFAULT_API_KEY,
        "/choices/0/message/content",
    );
    config["timeout"] = json!("100ms");
    let (data, _) = run(runner(config), retrying(3), dataset("s", &["slow"])).await;
    let answer = &data.conversation[0].assistant;
    assert!(
        answer.starts_with("[ERROR] timed out after 100ms"),
        "{answer}"
    );
    assert_eq!(
        server.requests().len(),
        1,
        "the turn may have been accepted"
    );

    // The suite's timeout is not retried either...
    let mut policy = retrying(3);
    policy.timeout = Some(Duration::from_millis(100));
    let config = chat_runner(
        &server,
        TestServer::DEFAULT_API_KEY,
        "/choices/0/message/content",
    );
    let (data, _) = run(
        runner(config.clone()),
        policy.clone(),
        dataset("s", &["slow"]),
    )
    .await;
    assert!(
        data.conversation[0]
            .assistant
            .starts_with("[ERROR] timed out after 100ms"),
        "{}",
        data.conversation[0].assistant
    );
    assert_eq!(server.requests().len(), 2);

    // ... unless the runner opts in.
    let mut config = config;
    config["retry_timeouts"] = json!(true);
    let (data, _) = run(runner(config), policy, dataset("s", &["slow"])).await;
    assert!(
        data.conversation[0]
            .assistant
            .ends_with("(after 4 attempts)"),
        "{}",
        data.conversation[0].assistant
    );
    assert_eq!(server.requests().len(), 6);
}

#[tokio::test]
async fn http_get_sends_no_body_and_fills_the_url() {
    let server = TestServer::start().await;
    let get = runner(json!({
        "type": "http",
        "method": "get",
        "url": format!("{}/lookup?q={{query}}&s={{session_id}}", server.url()),
    }));
    let (data, _) = run(get, retrying(0), dataset("s 1", &["a b&c"])).await;
    // The test server has no GET route but this one 404s, which tells us
    // what arrived.
    assert!(
        data.conversation[0]
            .assistant
            .starts_with("[ERROR] HTTP 404"),
        "{}",
        data.conversation[0].assistant
    );
    let requests = server.requests();
    assert_eq!(requests[0].method, "GET");
    assert_eq!(requests[0].body, None);
    assert_eq!(
        requests[0].query_string.as_deref(),
        Some("q=a%20b%26c&s=s%201")
    );
}

fn sh(script: &str) -> Value {
    json!({"type": "command", "program": "sh", "args": ["-c", script]})
}

#[tokio::test]
async fn command_runner_reads_stdin_and_answers_on_stdout() {
    let tricky = "hello \"world\"\nsecond line";
    let (data, summary) = run(
        runner(sh("tr a-z A-Z")),
        retrying(0),
        dataset("s1", &["hello", tricky]),
    )
    .await;
    assert_eq!(summary.successes, 2);
    assert_eq!(data.conversation[0].assistant, "HELLO");
    assert_eq!(data.conversation[1].assistant, tricky.to_uppercase());

    // Only one trailing newline is removed.
    let (data, _) = run(
        runner(sh("cat; printf '\\n\\n'")),
        retrying(0),
        dataset("s1", &["x"]),
    )
    .await;
    assert_eq!(data.conversation[0].assistant, "x\n");
}

#[tokio::test]
async fn command_runner_arg_mode_env_and_placeholders() {
    let mut config =
        sh("printf '%s|%s|%s|%s' \"$1\" \"$FORGE_SESSION_ID\" \"$FORGE_QA_ID\" \"$MODE\"");
    config["args"].as_array_mut().unwrap().push(json!("sh"));
    config["input"] = json!("arg");
    config["env"] = json!({"MODE": "turn {turn}"});
    let (data, summary) = run(runner(config), retrying(0), dataset("s1", &["a 'b'", "c"])).await;
    assert_eq!(summary.successes, 2, "{:?}", data.conversation);
    assert_eq!(data.conversation[0].assistant, "a 'b'|s1|q1|turn 1");
    assert_eq!(data.conversation[1].assistant, "c|s1|q2|turn 2");

    let explicit = json!({
        "type": "command", "program": "echo", "input": "arg",
        "args": ["[{query}]", "{session_id}"],
    });
    let (data, _) = run(runner(explicit), retrying(0), dataset("s9", &["hi"])).await;
    assert_eq!(data.conversation[0].assistant, "[hi] s9");
}

#[tokio::test]
async fn command_runner_failures() {
    let (data, summary) = run(
        runner(sh("echo partial; echo 'it broke' >&2; exit 3")),
        retrying(2),
        dataset("s", &["x"]),
    )
    .await;
    assert_eq!(summary.failures, 1);
    assert_eq!(
        data.conversation[0].assistant,
        "[ERROR] `sh` exited with status 3: it broke"
    );

    let (data, _) = run(runner(sh("true")), retrying(0), dataset("s", &["x"])).await;
    assert!(
        data.conversation[0]
            .assistant
            .starts_with("[ERROR] `sh` printed no answer"),
        "{}",
        data.conversation[0].assistant
    );

    let missing = json!({"type": "command", "program": "forge-no-such-program"});
    let (data, _) = run(runner(missing), retrying(2), dataset("s", &["x"])).await;
    assert!(
        data.conversation[0]
            .assistant
            .starts_with("[ERROR] cannot start `forge-no-such-program`"),
        "{}",
        data.conversation[0].assistant
    );
}

#[tokio::test]
async fn command_runner_large_context_is_not_put_in_the_environment() {
    let config = sh("printf '%s:%s' \"${FORGE_CONTEXT:-unset}\" \"$FORGE_QA_ID\"");
    let mut data = dataset("s", &["x"]);
    data.context = "c".repeat(256 * 1024);
    let (data, summary) = run(runner(config.clone()), retrying(0), data).await;
    assert_eq!(summary.successes, 1, "{:?}", data.conversation[0].assistant);
    assert_eq!(data.conversation[0].assistant, "unset:q1");
    let mut data = dataset("s", &["x"]);
    data.context = "small".into();
    let (data, _) = run(runner(config), retrying(0), data).await;
    assert_eq!(data.conversation[0].assistant, "small:q1");
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn command_runner_timeout_kills_what_the_program_started() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let script = format!("sleep 30 & echo $! > '{}'; wait", pidfile.display());
    for suite_timeout in [false, true] {
        let mut config = sh(&script);
        let mut policy = retrying(0);
        if suite_timeout {
            policy.timeout = Some(Duration::from_millis(300));
        } else {
            config["timeout"] = json!("300ms");
        }
        let (data, _) = run(runner(config), policy, dataset("s", &["x"])).await;
        assert!(
            data.conversation[0].assistant.contains("timed out"),
            "{}",
            data.conversation[0].assistant
        );
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        let pid = pid.trim();
        wait_until("the program's child to die after the timeout", || {
            is_dead(pid)
        })
        .await;
        std::fs::remove_file(&pidfile).unwrap();
    }
}

#[tokio::test]
async fn command_runner_timeout_kills_the_process() {
    // Well past the test's patience: only the kill ends the turn.
    let mut config = sh("sleep 600; echo late");
    config["timeout"] = json!("200ms");
    let (data, summary) = run(runner(config), retrying(2), dataset("s", &["x"])).await;
    assert_eq!(summary.failures, 1);
    assert_eq!(
        data.conversation[0].assistant,
        "[ERROR] `sh` timed out after 200ms and was killed"
    );

    // The suite's timeout kills it too.
    let mut policy = retrying(2);
    policy.timeout = Some(Duration::from_millis(200));
    let (data, _) = run(
        runner(sh("sleep 600; echo late")),
        policy,
        dataset("s", &["x"]),
    )
    .await;
    assert_eq!(
        data.conversation[0].assistant,
        "[ERROR] timed out after 200ms"
    );
}

#[tokio::test]
async fn command_runner_output_past_the_cap_fails_the_turn() {
    // A finite 40 MB: without the cap it would be the answer.
    let (data, summary) = run(
        runner(sh("head -c 40000000 /dev/zero")),
        retrying(2),
        dataset("s", &["x"]),
    )
    .await;
    assert_eq!(summary.failures, 1);
    assert_eq!(
        data.conversation[0].assistant,
        "[ERROR] `sh` printed more than 32 MiB on stdout and was killed"
    );
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn command_runner_kills_a_program_that_prints_forever() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let script = format!("echo $$ > '{}'; exec yes", pidfile.display());
    let (data, summary) = run(runner(sh(&script)), retrying(0), dataset("s", &["x"])).await;
    assert_eq!(summary.failures, 1);
    assert!(
        data.conversation[0]
            .assistant
            .contains("printed more than 32 MiB on stdout and was killed"),
        "{}",
        data.conversation[0].assistant
    );
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    wait_until("`yes` to die", || is_dead(pid.trim())).await;
}

#[tokio::test]
async fn command_runner_keeps_the_end_of_a_long_stderr() {
    // 1 MiB of stderr, then the line that explains the failure.
    let script =
        "head -c 1048576 /dev/zero | tr '\\0' x >&2; echo >&2; echo 'the real reason' >&2; exit 4";
    let (data, _) = run(runner(sh(script)), retrying(0), dataset("s", &["x"])).await;
    let answer = &data.conversation[0].assistant;
    assert!(
        answer.starts_with("[ERROR] `sh` exited with status 4: ...")
            && answer.ends_with("xxx\nthe real reason"),
        "{}",
        &answer[answer.len().saturating_sub(200)..]
    );
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn command_runner_does_not_wait_for_what_holds_its_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    // The background sleep keeps stdout open long after `sh` answered and
    // exited; the turn's timeout is far shorter than the sleep.
    let script = format!("sleep 600 & echo $! > '{}'; echo hi", pidfile.display());
    let mut config = sh(&script);
    config["timeout"] = json!("30s");
    let (data, summary) = run(runner(config), retrying(0), dataset("s", &["x"])).await;
    assert_eq!(summary.successes, 1, "{}", data.conversation[0].assistant);
    assert_eq!(data.conversation[0].assistant, "hi");
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    wait_until("the program's child to die", || is_dead(pid.trim())).await;
}

#[tokio::test]
async fn command_runner_safe_forms_pass_the_query_as_data() {
    let hostile = "a; echo injected $(echo pwned)";
    // As a positional parameter the script quotes (the README's safe form).
    let positional = json!({
        "type": "command", "program": "sh",
        "args": ["-c", "printf '%s' \"$1\"", "sh", "{query}"],
    });
    // On stdin (the default).
    for config in [positional, sh("cat")] {
        let (data, _) = run(runner(config), retrying(0), dataset("s", &[hostile])).await;
        assert_eq!(data.conversation[0].assistant, hostile);
    }
    // Substituted into a shell script, the query is run (the README's warning).
    let (data, _) = run(
        runner(sh("echo {query}")),
        retrying(0),
        dataset("s", &[hostile]),
    )
    .await;
    assert_eq!(data.conversation[0].assistant, "a\ninjected pwned");
}
