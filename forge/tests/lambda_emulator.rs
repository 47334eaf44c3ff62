//! The `forge-lambda` binary under the Lambda runtime emulator of
//! [cargo-lambda](https://www.cargo-lambda.info/), started as the README
//! says (`cargo lambda watch --features lambda`, which builds the function in
//! the workspace's target dir and runs it against its emulated Runtime API),
//! invoked over the emulator's Invoke API and with `cargo lambda invoke`,
//! against the loopback Alquimia server.
//!
//! Skipped, with a note on stderr, when `cargo-lambda` is not on `PATH`
//! (`pip install cargo-lambda`), so that `cargo test` passes on a fresh
//! machine; with `FORGE_REQUIRE_CARGO_LAMBDA=1` (as `.ci/run` sets) a missing
//! cargo-lambda fails the tests instead.
#![cfg(all(feature = "lambda", unix))]

use forge_testkit::{LoggedRequest, TestServer};
use serde_json::{json, Value};

mod support;
use support::{assert_gateway_headers, lambda_fixture};
#[path = "support/watch.rs"]
mod watch;
use watch::{Watch, DEADLINE, FIRST_INVOCATION};

const KEY: &str = "emulator-key-31";

#[tokio::test(flavor = "multi_thread")]
async fn the_readme_watch_command_answers_gateway_and_direct_events() {
    let agent = TestServer::builder().api_key(KEY).start().await;
    let Some(watch) = Watch::start(&[
        ("ALQUIMIA_BASE_URL", agent.url()),
        ("ALQUIMIA_API_KEY", KEY.to_owned()),
    ])
    .await
    else {
        return;
    };

    // The first invocation waits for the build: a body that is not JSON.
    let (status, headers, body) = watch
        .invoke(&lambda_fixture("invalid-json.json", ""), FIRST_INVOCATION)
        .await;
    assert_eq!(status, 400, "{body}");
    assert_gateway_headers(&headers);
    assert_eq!(body, json!({"error": "Invalid JSON body"}));

    // The README's `cargo lambda invoke --data-file`, with an API Gateway
    // event whose body is the payload as a JSON string, with its own URL
    // and key.
    let own = TestServer::builder().api_key("lambda-key-9").start().await;
    let (status, headers, body) = watch
        .invoke_cli(&lambda_fixture("string-body.json", &own.url()))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_gateway_headers(&headers);
    assert_eq!(body["success"], true, "{body}");
    assert_eq!(
        body["datasets"][0]["conversation"][0]["assistant"],
        forge_testkit::alquimia_answer("What is the capital of France?", 1, "test-session-1")
    );
    assert_eq!(body["summaries"][0]["successes"], 1, "{body}");
    assert_eq!(
        own.turns("test-session-1"),
        ["What is the capital of France?"]
    );
    assert!(agent.requests().is_empty());

    // A direct invocation whose event is the payload, with no URL nor key:
    // the function's ALQUIMIA_BASE_URL and ALQUIMIA_API_KEY (`--env-var`).
    let direct = payload(
        &["env-1", "env-2"],
        json!({"agent_id": "a", "channel_id": "c"}),
    );
    let (status, _, body) = watch.invoke(&direct, DEADLINE).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true, "{body}");
    assert_eq!(body["total_datasets"], 2, "{body}");
    for session in ["env-1", "env-2"] {
        assert_eq!(agent.turns(session).len(), 1, "{session}");
        let bearer = format!("Bearer {KEY}");
        assert_eq!(
            infers(&agent.requests(), session)[0].authorization(),
            Some(bearer.as_str())
        );
    }
    assert!(!body.to_string().contains(KEY), "{body}");

    watch.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_forge_concurrency_16_sessions_are_in_flight() {
    // Answers only when 16 turns wait together: a run with fewer sessions
    // in flight never finishes (the deadline fails it).
    let agent = TestServer::builder()
        .api_key(KEY)
        .answer_in_groups(16)
        .start()
        .await;
    let Some(watch) = Watch::start(&[]).await else {
        return;
    };
    watch.warm_up().await;
    let sessions = session_ids(32);
    let (status, _, body) = watch
        .invoke(&gateway(&payload(&sessions, config(&agent))), DEADLINE)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_successes(&body, 32);
    assert_at_most_in_flight(&agent.requests(), 16);
    watch.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn forge_concurrency_sets_the_sessions_in_flight() {
    // 20 is above the default: only a function that read FORGE_CONCURRENCY
    // has 20 turns waiting together.
    let agent = TestServer::builder()
        .api_key(KEY)
        .answer_in_groups(20)
        .start()
        .await;
    let Some(watch) = Watch::start(&[("FORGE_CONCURRENCY", "20".to_owned())]).await else {
        return;
    };
    watch.warm_up().await;
    let sessions = session_ids(40);
    let (status, _, body) = watch
        .invoke(&gateway(&payload(&sessions, config(&agent))), DEADLINE)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_successes(&body, 40);
    assert_at_most_in_flight(&agent.requests(), 20);
    watch.stop().await;
}

/// The API Gateway fixture with `payload` as its body, a JSON string.
fn gateway(payload: &Value) -> Value {
    let mut event = lambda_fixture("string-body.json", "");
    event["body"] = Value::String(payload.to_string());
    event
}

/// A payload of one one-turn dataset per session, with `config`.
fn payload<S: AsRef<str>>(sessions: &[S], config: Value) -> Value {
    forge_testkit::data::seed_payload(sessions, &["What is the capital of France?"], config)
}

fn session_ids(count: usize) -> Vec<String> {
    (1..=count).map(|i| format!("s{i}")).collect()
}

/// A config that sends the turns to `agent` with its key.
fn config(agent: &TestServer) -> Value {
    json!({"base_url": agent.url(), "api_key": KEY, "agent_id": "a", "channel_id": "c"})
}

fn assert_successes(body: &Value, sessions: usize) {
    assert_eq!(body["success"], true, "{body}");
    let summaries = body["summaries"].as_array().expect("summaries");
    assert_eq!(summaries.len(), sessions, "{body}");
    assert!(summaries.iter().all(|s| s["successes"] == 1), "{body}");
}

/// The infer requests of `session`.
fn infers<'a>(requests: &'a [LoggedRequest], session: &str) -> Vec<&'a LoggedRequest> {
    requests
        .iter()
        .filter(|r| r.path.contains("/event/infer/") && r.session_id.as_deref() == Some(session))
        .collect()
}

/// No more than `limit` sessions were in flight: a session's turn ends with
/// its stream request, so when the `k`-th turn started at least `k - limit`
/// stream requests had arrived.
fn assert_at_most_in_flight(requests: &[LoggedRequest], limit: usize) {
    let (mut started, mut streamed) = (0, 0);
    for request in requests {
        if request.path.contains("/event/stream/") {
            streamed += 1;
        } else if request.path.contains("/event/infer/") {
            started += 1;
            assert!(
                streamed + limit >= started,
                "turn {started} started when {streamed} had answered: more than {limit} sessions in flight"
            );
        }
    }
}
