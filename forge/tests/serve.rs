//! `forge serve`: the payload API over HTTP, driven with reqwest against the
//! loopback Alquimia test server.
#![cfg(feature = "serve")]

use std::time::Duration;

use forge::serve::ServeConfig;
use forge_testkit::TestServer;
use serde_json::{json, Value};
use tokio::sync::oneshot;

mod support;
use support::ServeBinary;

const KEY: &str = "serve-key-7";

/// A server of `forge serve` on a free loopback port; stops when dropped.
struct Served {
    url: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Served {
    async fn start(config: ServeConfig) -> Served {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(forge::serve::serve(listener, config, async {
            let _ = stopped.await;
        }));
        Served {
            url,
            stop: Some(stop),
            task,
        }
    }

    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = (&mut self.task).await.expect("server task");
        result.expect("serve returns Ok");
    }
}

/// Two turns per session for the agent at `base_url`.
fn seed_payload(base_url: &str, sessions: &[&str]) -> Value {
    forge_testkit::data::seed_payload(
        sessions,
        &["What is the capital of France?", "And of Spain?"],
        forge_testkit::data::alquimia_config(base_url, KEY),
    )
}

/// The response with its timings zeroed.
fn without_timings(mut response: Value) -> Value {
    if let Some(summaries) = response["summaries"].as_array_mut() {
        for summary in summaries {
            summary["total_execution_time_ms"] = json!(0.0);
            summary["avg_batch_time_ms"] = json!(0.0);
        }
    }
    response
}

async fn post(url: &str, body: impl Into<reqwest::Body>, token: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(format!("{url}/run"))
        .header("content-type", "application/json")
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("request")
}

async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    (status, response.json().await.expect("JSON body"))
}

#[tokio::test]
async fn seed_payload_answers_what_payload_run_gives() {
    let agent = TestServer::builder().api_key(KEY).start().await;
    let reference_agent = TestServer::builder().api_key(KEY).start().await;
    let served = Served::start(ServeConfig::default()).await;

    let payload = seed_payload(&agent.url(), &["s1", "s2"]);
    let (status, body) = json_of(post(&served.url, payload.to_string(), None).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["total_datasets"], 2);
    assert_eq!(
        body["datasets"][0]["conversation"][0]["assistant"],
        forge_testkit::alquimia_answer("What is the capital of France?", 1, "s1")
    );
    assert_eq!(body["summaries"][1]["successes"], 2);
    assert_eq!(
        agent.turns("s2"),
        ["What is the capital of France?", "And of Spain?"]
    );
    assert!(!body.to_string().contains(KEY));

    let reference =
        forge::payload::run(&seed_payload(&reference_agent.url(), &["s1", "s2"]), 16).await;
    let reference = serde_json::to_value(&reference).expect("serialise");
    assert_eq!(without_timings(body), without_timings(reference));
    served.shutdown().await;
}

#[tokio::test]
async fn rejected_and_invalid_payloads_are_400() {
    let served = Served::start(ServeConfig::default()).await;
    let (status, body) = json_of(post(&served.url, r#"{"datasets": []}"#, None).await).await;
    assert_eq!(status, 400);
    assert_eq!(body["success"], false);
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("No datasets provided"),
        "{body}"
    );
    let expected = serde_json::to_value(forge::payload::run(&json!({"datasets": []}), 1).await)
        .expect("serialise");
    assert_eq!(body, expected);

    let (status, body) = json_of(post(&served.url, "{not json", None).await).await;
    assert_eq!(status, 400);
    assert_eq!(body["success"], false);
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .starts_with("Invalid JSON body"),
        "{body}"
    );
    served.shutdown().await;
}

#[tokio::test]
async fn health_methods_and_paths() {
    let served = Served::start(ServeConfig {
        token: Some("tok".into()),
        ..Default::default()
    })
    .await;
    let client = reqwest::Client::new();
    // The health check needs no token.
    let (status, body) = json_of(
        client
            .get(format!("{}/health", served.url))
            .send()
            .await
            .expect("health"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["runs_in_flight"], 0);

    let response = client
        .get(format!("{}/run", served.url))
        .send()
        .await
        .expect("GET /run");
    assert_eq!(response.headers()["allow"], "POST");
    let (status, body) = json_of(response).await;
    assert_eq!((status, &body["success"]), (405, &json!(false)));

    let response = client
        .delete(format!("{}/health", served.url))
        .send()
        .await
        .expect("DELETE /health");
    assert_eq!(response.status().as_u16(), 405);

    let (status, _) = json_of(
        client
            .post(format!("{}/nowhere", served.url))
            .send()
            .await
            .expect("404"),
    )
    .await;
    assert_eq!(status, 404);
    served.shutdown().await;
}

#[test]
fn debug_output_hides_the_token() {
    let config = ServeConfig {
        token: Some("s3cret-serve-token".into()),
        ..Default::default()
    };
    let shown = format!("{config:?}");
    assert!(shown.contains("token"), "{shown}");
    assert!(!shown.contains("s3cret-serve-token"), "{shown}");
}

#[tokio::test]
async fn a_token_when_set_is_required() {
    let served = Served::start(ServeConfig {
        token: Some("s3cret-token".into()),
        ..Default::default()
    })
    .await;
    for token in [None, Some("wrong"), Some("s3cret-tokenX"), Some("")] {
        let response = post(&served.url, "{}", token).await;
        assert_eq!(
            response
                .headers()
                .get("www-authenticate")
                .map(|v| v.as_bytes()),
            Some(&b"Bearer"[..])
        );
        let (status, body) = json_of(response).await;
        assert_eq!(status, 401, "token {token:?}");
        assert_eq!(body["success"], false);
        assert!(!body.to_string().contains("s3cret"));
    }
    // The right token gets through to the payload API ({} has no datasets).
    let (status, body) = json_of(post(&served.url, "{}", Some("s3cret-token")).await).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap_or("").contains("No datasets"));
    served.shutdown().await;
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let served = Served::start(ServeConfig {
        max_body_bytes: 1024,
        ..Default::default()
    })
    .await;
    let big = format!(r#"{{"datasets": [], "pad": "{}"}}"#, "x".repeat(4096));
    let (status, body) = json_of(post(&served.url, big, None).await).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["success"], false);

    // Also without a Content-Length (chunked).
    let chunks: Vec<Result<String, std::io::Error>> = vec![Ok("{".into()), Ok(" ".repeat(2048))];
    let stream = futures_util::stream::iter(chunks);
    let (status, _) =
        json_of(post(&served.url, reqwest::Body::wrap_stream(stream), None).await).await;
    assert_eq!(status, 413);

    // Just under the limit is read (and rejected as a payload: 400).
    let small = format!(r#"{{"datasets": [], "pad": "{}"}}"#, "x".repeat(900));
    let (status, _) = json_of(post(&served.url, small, None).await).await;
    assert_eq!(status, 400);
    served.shutdown().await;
}

#[tokio::test]
async fn runs_beyond_the_limit_get_503_and_shutdown_waits_for_runs_in_flight() {
    let agent = TestServer::builder()
        .api_key(KEY)
        .latency(Duration::from_millis(800))
        .start()
        .await;
    let served = Served::start(ServeConfig {
        max_concurrent_runs: 1,
        ..Default::default()
    })
    .await;
    let url = served.url.clone();
    let payload = seed_payload(&agent.url(), &["slow"]).to_string();
    let first = tokio::spawn({
        let url = url.clone();
        let payload = payload.clone();
        async move { json_of(post(&url, payload, None).await).await }
    });
    wait_for_turns(&agent, 1).await;

    let response = post(
        &url,
        seed_payload(&agent.url(), &["other"]).to_string(),
        None,
    )
    .await;
    assert_eq!(response.headers()["retry-after"], "1");
    let (status, body) = json_of(response).await;
    assert_eq!(status, 503, "{body}");
    assert!(agent.turns("other").is_empty());
    let health: Value = reqwest::get(format!("{url}/health"))
        .await
        .expect("health")
        .json()
        .await
        .expect("JSON");
    assert_eq!(health["runs_in_flight"], 1);

    // Shutting down lets the run in flight finish.
    served.shutdown().await;
    let (status, body) = first.await.expect("first run");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["summaries"][0]["successes"], 2);
}

async fn wait_for_turns(agent: &TestServer, count: usize) {
    for _ in 0..500 {
        if agent.turns_started() >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the agent never received {count} turns");
}

#[tokio::test]
async fn the_binary_reads_its_token_limits_and_warns_off_loopback() {
    // Reachable from other hosts without a token: a warning first.
    let open = ServeBinary::start(&["--bind", "0.0.0.0:0"], &[]).await;
    assert!(
        open.early
            .iter()
            .any(|l| l.starts_with("forge: warning: listening on 0.0.0.0:")
                && l.contains("without a token; set FORGE_SERVE_TOKEN")),
        "{:?}",
        open.early
    );
    drop(open);

    // FORGE_SERVE_TOKEN, --max-body and --concurrency, as the binary reads them.
    let agent = TestServer::builder()
        .api_key(KEY)
        .latency(Duration::from_millis(100))
        .start()
        .await;
    let token = "serve-token-77";
    let served = ServeBinary::start(
        &[
            "--bind",
            "127.0.0.1:0",
            "--max-body",
            "4000",
            "--concurrency",
            "1",
        ],
        &[("FORGE_SERVE_TOKEN", token)],
    )
    .await;
    assert!(served.early.is_empty(), "{:?}", served.early);
    let payload = seed_payload(&agent.url(), &["first", "second"]).to_string();
    assert!(payload.len() < 4000);
    let (status, _) = json_of(post(&served.url, payload.clone(), None).await).await;
    assert_eq!(status, 401);
    let (status, _) = json_of(post(&served.url, payload.clone(), Some("wrong")).await).await;
    assert_eq!(status, 401);
    let (status, _) = json_of(post(&served.url, "x".repeat(4001), Some(token)).await).await;
    assert_eq!(status, 413);
    let (status, body) = json_of(post(&served.url, payload, Some(token)).await).await;
    assert_eq!(status, 200, "{body}");
    // One session at a time: each session's turns reach the agent
    // together, never interleaved with the other session's.
    let sessions: Vec<String> = agent
        .requests()
        .iter()
        .filter(|r| r.path.contains("/event/infer/"))
        .filter_map(|r| r.session_id.clone())
        .collect();
    assert_eq!(sessions.len(), 4, "{sessions:?}");
    assert_eq!(sessions[0], sessions[1], "{sessions:?}");
    assert_eq!(sessions[2], sessions[3], "{sessions:?}");
    assert_ne!(sessions[0], sessions[2], "{sessions:?}");
}

#[tokio::test]
async fn the_binary_finishes_runs_in_flight_on_sigterm() {
    let agent = TestServer::builder()
        .api_key(KEY)
        .latency(Duration::from_millis(700))
        .start()
        .await;
    let served = ServeBinary::start(&["--bind", "127.0.0.1:0", "--max-runs", "2"], &[]).await;
    let url = served.url.clone();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let (status, _) = json_of(reqwest::get(format!("{url}/health")).await.expect("health")).await;
    assert_eq!(status, 200);

    let run = tokio::spawn({
        let payload = seed_payload(&agent.url(), &["during-shutdown"]).to_string();
        let url = url.clone();
        async move { json_of(post(&url, payload, None).await).await }
    });
    wait_for_turns(&agent, 1).await;
    served.process.signal("TERM");

    let (status, body) = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the run finishes")
        .expect("run task");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["summaries"][0]["successes"], 2);
    assert_eq!(agent.turns("during-shutdown").len(), 2);

    let (exit, _, stderr) = served.process.exit().await;
    assert_eq!(exit.code(), Some(0), "{stderr}");
    assert!(stderr.contains("stopping"), "{stderr}");
}

async fn runs_in_flight(url: &str) -> u64 {
    let health: Value = reqwest::get(format!("{url}/health"))
        .await
        .expect("health")
        .json()
        .await
        .expect("JSON");
    health["runs_in_flight"].as_u64().expect("runs_in_flight")
}

fn long_payload(base_url: &str, session: &str, turns: usize) -> Value {
    let queries: Vec<String> = (0..turns).map(|i| format!("Question {i}?")).collect();
    let queries: Vec<&str> = queries.iter().map(String::as_str).collect();
    forge_testkit::data::seed_payload(
        &[session],
        &queries,
        forge_testkit::data::alquimia_config(base_url, KEY),
    )
}

#[tokio::test]
async fn a_client_that_disconnects_cancels_its_run_and_holds_the_slot_until_it_stops() {
    let latency = Duration::from_millis(600);
    let agent = TestServer::builder()
        .api_key(KEY)
        .latency(latency)
        .start()
        .await;
    let served = Served::start(ServeConfig {
        max_concurrent_runs: 1,
        ..Default::default()
    })
    .await;
    let url = served.url.clone();
    let client = tokio::spawn({
        let url = url.clone();
        let payload = long_payload(&agent.url(), "abandoned", 6).to_string();
        async move { post(&url, payload, None).await }
    });
    wait_for_turns(&agent, 1).await;
    // The client goes away while its first turn is in flight.
    client.abort();
    let _ = client.await;

    // The turn in flight finishes, and holds the slot while it does: the
    // slot is free no sooner than the server's latency after the turn
    // reached it (a sleep never ends early).
    let freed = tokio::time::timeout(Duration::from_secs(30), async {
        while runs_in_flight(&url).await != 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        agent.clock()
    })
    .await
    .expect("the slot is released once the run stops");
    let arrived = agent.requests()[0].at;
    assert!(
        freed - arrived >= latency,
        "released {:?} after the turn arrived, before it ended",
        freed - arrived
    );

    // The run has stopped: the turns it sent are all it will ever send.
    assert_eq!(agent.turns_started(), 1);
    assert_eq!(agent.turns("abandoned").len(), 1);

    // A new run is accepted.
    let (status, body) = json_of(
        post(
            &url,
            long_payload(&agent.url(), "next", 1).to_string(),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["summaries"][0]["successes"], 1);
    served.shutdown().await;
}

#[tokio::test]
async fn slow_bodies_hold_no_run_slot_and_time_out_with_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let agent = TestServer::builder().api_key(KEY).start().await;
    let served = Served::start(ServeConfig {
        max_concurrent_runs: 1,
        body_timeout: Duration::from_millis(700),
        ..Default::default()
    })
    .await;
    let addr = served.url.trim_start_matches("http://").to_string();
    // Two clients send their headers and a first byte of the body, then stall.
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut stream = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        stream
            .write_all(
                format!(
                    "POST /run HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
                )
                .as_bytes(),
            )
            .await
            .expect("write");
        stalled.push(stream);
    }
    assert_eq!(runs_in_flight(&served.url).await, 0);

    // Another run is still accepted.
    let (status, body) = json_of(
        post(
            &served.url,
            seed_payload(&agent.url(), &["meanwhile"]).to_string(),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["summaries"][0]["successes"], 2);

    // The stalled ones get 408 once the body time limit passes.
    for mut stream in stalled {
        let mut answer = Vec::new();
        let mut buffer = [0u8; 4096];
        tokio::time::timeout(Duration::from_secs(10), async {
            while !String::from_utf8_lossy(&answer).contains("\"success\":false") {
                let read = stream.read(&mut buffer).await.expect("read");
                if read == 0 {
                    break;
                }
                answer.extend_from_slice(&buffer[..read]);
            }
        })
        .await
        .expect("an answer within the time limit");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("not received within"), "{answer}");
    }
    served.shutdown().await;
}

#[tokio::test]
async fn post_run_needs_a_json_content_type() {
    let agent = TestServer::builder().api_key(KEY).start().await;
    let served = Served::start(ServeConfig::default()).await;
    let client = reqwest::Client::new();
    let payload = seed_payload(&agent.url(), &["s1"]).to_string();
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut request = client
            .post(format!("{}/run", served.url))
            .body(payload.clone());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let (status, body) = json_of(request.send().await.expect("POST /run")).await;
        assert_eq!(status, 415, "{content_type:?}: {body}");
        assert_eq!(body["success"], false);
        assert!(
            body["error"]
                .as_str()
                .unwrap_or("")
                .contains("application/json"),
            "{body}"
        );
    }
    assert!(agent.requests().is_empty(), "a run started without JSON");
    let (status, body) = json_of(
        client
            .post(format!("{}/run", served.url))
            .header("content-type", "Application/JSON; charset=utf-8")
            .body(payload)
            .send()
            .await
            .expect("POST /run"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    served.shutdown().await;
}

#[tokio::test]
async fn a_run_past_max_answer_bytes_fails_its_later_turns_and_stays_valid() {
    let agent = TestServer::builder().without_auth().start().await;
    let served = Served::start(ServeConfig {
        max_answer_bytes: 2500,
        ..Default::default()
    })
    .await;
    // Each answer repeats its 1000-byte question: two fit, the third does not.
    let conversation: Vec<Value> = (0..5)
        .map(|i| json!({"qa_id": format!("q{i}"), "query": format!("{i}{}", "x".repeat(999)), "assistant": ""}))
        .collect();
    let payload = json!({
        "datasets": [{"session_id": "big", "assistant_id": "bot", "conversation": conversation}],
        "connector": {"class_path": "langchain_ollama.chat_models.ChatOllama",
                      "params": {"model": "m", "api_key": "k", "base_url": agent.url()}}
    });
    let (status, body) = json_of(post(&served.url, payload.to_string(), None).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["summaries"][0]["successes"], 2, "{body}");
    assert_eq!(body["summaries"][0]["failures"], 3, "{body}");
    let answers: Vec<&str> = body["datasets"][0]["conversation"]
        .as_array()
        .expect("conversation")
        .iter()
        .map(|b| b["assistant"].as_str().unwrap_or(""))
        .collect();
    assert!(answers[1].starts_with("answer to '1x"), "{}", answers[1]);
    for answer in &answers[2..] {
        assert!(
            answer.starts_with("[ERROR]") && answer.contains("--max-answer-bytes"),
            "{answer}"
        );
    }
    // The turns past the cap are not even sent.
    assert_eq!(agent.turns_started(), 3);
    served.shutdown().await;
}

/// Reads until the peer closes the connection; what it sent.
async fn read_to_close(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut seen = Vec::new();
    let mut buffer = [0u8; 1024];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return seen,
            Ok(n) => seen.extend_from_slice(&buffer[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn partial_headers_and_idle_connections_are_closed_and_health_answers() {
    use tokio::io::AsyncWriteExt;
    let served = Served::start(ServeConfig {
        header_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        max_connections: 64,
        ..Default::default()
    })
    .await;
    let addr = served.url.trim_start_matches("http://").to_string();
    let mut partial = Vec::new();
    for _ in 0..500 {
        let mut stream = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: forge\r\n")
            .await
            .expect("write");
        partial.push(stream);
    }
    // The health check gets through while they hold their sockets.
    let health = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client")
        .get(format!("{}/health", served.url))
        .send()
        .await
        .expect("health answers");
    assert_eq!(health.status().as_u16(), 200);
    // Every partial request's connection is closed, unanswered.
    let closed = futures_util::future::join_all(
        partial
            .iter_mut()
            .map(|stream| async move { read_to_close(stream).await }),
    );
    let answers = tokio::time::timeout(Duration::from_secs(120), closed)
        .await
        .expect("partial requests are cut off");
    assert!(answers.iter().all(Vec::is_empty));

    // An idle keep-alive connection is closed too, after its answer.
    let mut idle = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: forge\r\n\r\n")
        .await
        .expect("write");
    let answer = tokio::time::timeout(Duration::from_secs(120), read_to_close(&mut idle))
        .await
        .expect("the idle connection is closed");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"status\":\"ok\""), "{answer}");
    served.shutdown().await;
}

#[tokio::test]
async fn sigterm_closes_idle_connections_at_once() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Timeouts far longer than the wait below: only the shutdown may close
    // these connections in time.
    let served = ServeBinary::start(
        &[
            "--bind",
            "127.0.0.1:0",
            "--header-timeout",
            "600s",
            "--idle-timeout",
            "600s",
        ],
        &[],
    )
    .await;
    let url = served.url.clone();
    let addr = url.trim_start_matches("http://").to_string();
    // A keep-alive connection after one answered request, one that never
    // sent a byte, one halfway through its headers.
    let mut kept = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: forge\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    while !String::from_utf8_lossy(&answer).contains("max_concurrent_runs") {
        let read = kept.read(&mut buffer).await.expect("read");
        assert!(read > 0, "closed before answering");
        answer.extend_from_slice(&buffer[..read]);
    }
    let _silent = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let mut partial = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    partial
        .write_all(b"POST /run HTTP/1.1\r\nHost: forge\r\n")
        .await
        .expect("write");
    // The server has taken all three (its health check answers behind them).
    let (status, _) = json_of(reqwest::get(format!("{url}/health")).await.expect("health")).await;
    assert_eq!(status, 200);

    served.process.signal("TERM");
    // Its idle clients stay connected: the process exits anyway.
    let (exit, _, _) = served.process.exit().await;
    assert_eq!(exit.code(), Some(0));
    assert!(read_to_close(&mut kept).await.is_empty());
}
