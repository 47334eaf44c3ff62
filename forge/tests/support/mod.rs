//! Helpers shared by the runner tests. Each test binary uses a part of it.
#![allow(dead_code)]

pub mod process;

use std::sync::Arc;
use std::time::Duration;

use forge::registry::{self, BuildContext};
use forge::testing::{LoggedRequest, TestServer};
use forge::{Backoff, Batch, Dataset, Policy, Runner};
use serde_json::{json, Value};

/// A dataset of session `session` whose turns `q1`, `q2`, ... ask `queries`.
pub fn dataset(session: &str, queries: &[&str]) -> Dataset {
    let mut dataset = Dataset::new(session, "bot");
    for (i, query) in queries.iter().enumerate() {
        dataset
            .conversation
            .push(Batch::new(format!("q{}", i + 1), *query));
    }
    dataset
}

/// `sessions` datasets `s1`, `s2`, ... of `turns` turns asking
/// `question T of sN`.
pub fn datasets(sessions: usize, turns: usize) -> Vec<Dataset> {
    (1..=sessions)
        .map(|s| {
            let queries: Vec<String> = (1..=turns)
                .map(|t| format!("question {t} of s{s}"))
                .collect();
            let queries: Vec<&str> = queries.iter().map(String::as_str).collect();
            dataset(&format!("s{s}"), &queries)
        })
        .collect()
}

/// A runner built from its `runner:` mapping.
pub fn build(config: Value) -> Arc<dyn Runner> {
    registry::build(config, &BuildContext::default()).expect("a valid runner")
}

/// The `alquimia` runner against the test server at `url` (agent `agent`,
/// channel `web`, the server's default key).
pub fn alquimia(url: &str) -> Arc<dyn Runner> {
    build(
        json!({"type": "alquimia", "base_url": url, "api_key": TestServer::DEFAULT_API_KEY,
                 "agent_id": "agent", "channel_id": "web"}),
    )
}

/// The `openai` runner against the test server at `url`, each turn on its own.
pub fn openai(url: &str) -> Arc<dyn Runner> {
    build(
        json!({"type": "openai", "base_url": format!("{url}/v1"), "api_key": TestServer::DEFAULT_API_KEY,
                 "model": "m", "history": false}),
    )
}

/// Whether a logged request is an Alquimia infer request.
pub fn is_infer(r: &LoggedRequest) -> bool {
    r.path.contains("/event/infer/")
}

/// Whether a logged request reads an Alquimia stream.
pub fn is_stream(r: &LoggedRequest) -> bool {
    r.path.contains("/event/stream/")
}

/// A per-attempt timeout, `retries` retries and backoff from 5 ms up to
/// `max_backoff`.
pub fn policy(timeout_ms: u64, retries: u32, max_backoff: Duration) -> Policy {
    Policy {
        timeout: Some(Duration::from_millis(timeout_ms)),
        retries,
        backoff: Backoff {
            initial: Duration::from_millis(5),
            max: max_backoff,
        },
        rate_limit: None,
    }
}

/// A 10 s timeout and `retries` quick retries.
pub fn retrying(retries: u32) -> Policy {
    Policy {
        timeout: Some(Duration::from_secs(10)),
        retries,
        backoff: Backoff {
            initial: Duration::from_millis(5),
            max: Duration::from_millis(50),
        },
        rate_limit: None,
    }
}

/// A loopback server answering every request with HTTP `status` and `body`
/// (`Connection: close`); returns its `http://127.0.0.1:PORT`.
pub async fn fixed_server(status: u16, body: Vec<u8>) -> String {
    let mut reply = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    reply.extend_from_slice(&body);
    capture_server(reply).await.0
}

/// A loopback server that reads each request (its head and the body its
/// `content-length` announces), records it as text, and answers with the
/// raw bytes of `reply`, then closes the connection. Its
/// `http://127.0.0.1:PORT` and the requests it received.
pub async fn capture_server(
    reply: Vec<u8>,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let reply = std::sync::Arc::new(reply);
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let requests = std::sync::Arc::clone(&log);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (reply, log) = (std::sync::Arc::clone(&reply), std::sync::Arc::clone(&log));
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    if request_complete(&request) {
                        break;
                    }
                }
                log.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&request).into_owned());
                let _ = stream.write_all(&reply).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (url, requests)
}

/// Whether `request` holds a whole HTTP request: its head and the body its
/// `content-length` announces.
fn request_complete(request: &[u8]) -> bool {
    let text = String::from_utf8_lossy(request);
    let Some(end) = text.find("\r\n\r\n") else {
        return false;
    };
    let length = text[..end]
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    request.len() >= end + 4 + length
}

/// A running `forge serve` binary on a free loopback port (unless `args`
/// bind elsewhere), with the host's keys, token and allowed hosts unset
/// before `env` is applied.
pub struct ServeBinary {
    /// The process; killed when dropped.
    pub process: process::Spawned,
    /// `http://ADDR`, from its `forge: listening on` line.
    pub url: String,
    /// The stderr lines before that one (warnings).
    pub early: Vec<String>,
}

impl ServeBinary {
    /// Starts `forge serve ARGS` and waits until it listens.
    pub async fn start(args: &[&str], env: &[(&str, &str)]) -> ServeBinary {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_forge"));
        command.arg("serve");
        if !args.contains(&"--bind") {
            command.args(["--bind", "127.0.0.1:0"]);
        }
        command.args(args);
        for name in [
            "FORGE_SERVE_TOKEN",
            "ALQUIMIA_BASE_URL",
            "ALQUIMIA_API_KEY",
            "LLM_API_KEY",
            "FORGE_ALLOWED_HOSTS",
        ] {
            command.env_remove(name);
        }
        command.envs(env.iter().copied());
        let mut process = process::Spawned::start(command);
        let line = process.wait_for_line("forge: listening on ").await;
        let url = line
            .strip_prefix("forge: listening on ")
            .unwrap_or(&line)
            .to_owned();
        let early = process.seen[..process.seen.len() - 1].to_vec();
        ServeBinary {
            process,
            url,
            early,
        }
    }
}

/// The Lambda event fixture `name` of `tests/fixtures/lambda/`, with
/// `${BASE_URL}` set to `base_url`.
pub fn lambda_fixture(name: &str, base_url: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/lambda/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).expect("fixture");
    serde_json::from_str(&text.replace("${BASE_URL}", base_url)).expect("fixture is JSON")
}

/// The `statusCode`, `headers` and parsed `body` of a Lambda function's
/// answer to API Gateway.
pub fn gateway_answer(response: &Value) -> (i64, Value, Value) {
    let status = response["statusCode"].as_i64().expect("statusCode");
    let body = response["body"].as_str().expect("body is a string");
    let body = serde_json::from_str(body).expect("body is JSON");
    (status, response["headers"].clone(), body)
}

/// The headers every answer of the Lambda function carries.
pub fn assert_gateway_headers(headers: &Value) {
    assert_eq!(headers["content-type"], "application/json", "{headers}");
    assert_eq!(headers["access-control-allow-origin"], "*", "{headers}");
}

/// Datasets in Fair-Forge's format: one per session, asking `queries` in
/// turn (qa ids `q1`, `q2`, ...).
pub fn seed_datasets<S: AsRef<str>>(sessions: &[S], queries: &[&str]) -> Value {
    let datasets: Vec<Value> = sessions
        .iter()
        .map(|session| {
            let conversation: Vec<Value> = queries
                .iter()
                .enumerate()
                .map(|(i, query)| json!({"qa_id": format!("q{}", i + 1), "query": query, "assistant": ""}))
                .collect();
            json!({"session_id": session.as_ref(), "assistant_id": "target-assistant",
                   "language": "english", "context": "", "conversation": conversation})
        })
        .collect();
    Value::Array(datasets)
}

/// A request in the seed's payload format: [`seed_datasets`] with `config`.
pub fn seed_payload<S: AsRef<str>>(sessions: &[S], queries: &[&str], config: Value) -> Value {
    json!({"datasets": seed_datasets(sessions, queries), "config": config})
}

/// The payload's Alquimia `config` for the agent at `base_url` with `key`.
pub fn alquimia_config(base_url: &str, key: &str) -> Value {
    json!({"base_url": base_url, "api_key": key, "agent_id": "agent-1", "channel_id": "web"})
}
