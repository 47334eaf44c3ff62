//! The host's own keys (`ALQUIMIA_API_KEY`, `LLM_API_KEY`) never follow a
//! URL the caller of the payload API chose: `forge run --payload` and
//! `forge serve`, as real processes, against a capture listener playing the
//! attacker and the loopback test server playing the host's own agent.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use forge_testkit::TestServer;
use serde_json::{json, Value};
mod support;
#[cfg(feature = "serve")]
use support::ServeBinary;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const HOST_KEY: &str = "host-only-key-4242";

/// A listener that records every byte it is sent and answers 401: the
/// caller's own server, hoping to receive the host's key.
struct Capture {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Capture {
    async fn start() -> Capture {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buffer = [0u8; 4096];
                    let read = async {
                        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                            match stream.read(&mut buffer).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => request.extend_from_slice(&buffer[..n]),
                            }
                        }
                    };
                    let _ = tokio::time::timeout(Duration::from_secs(10), read).await;
                    log.lock().unwrap().extend_from_slice(&request);
                    let _ = stream
                        .write_all(
                            b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                });
            }
        });
        Capture { addr, seen }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn host(&self) -> String {
        self.addr.to_string()
    }

    fn received(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }
}

fn datasets() -> Value {
    forge_testkit::data::seed_datasets(&["s1"], &["What is the capital of France?"])
}

fn alquimia_payload(base_url: &str) -> Value {
    json!({
        "datasets": datasets(),
        "config": {"base_url": base_url, "agent_id": "agent-1", "channel_id": "web"}
    })
}

fn connector_payload(class_path: &str, base_url: &str) -> Value {
    json!({
        "datasets": datasets(),
        "connector": {"class_path": class_path, "params": {"model": "m", "base_url": base_url}}
    })
}

/// `forge run --payload -` with the host's environment `env`; its exit code
/// and the response it printed.
async fn run_payload(payload: &Value, env: &[(&str, &str)], args: &[&str]) -> (i32, Value) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_forge"));
    command
        .args(["run", "--payload", "-"])
        .args(args)
        .env_remove("ALQUIMIA_BASE_URL")
        .env_remove("ALQUIMIA_API_KEY")
        .env_remove("LLM_API_KEY")
        .env_remove("FORGE_ALLOWED_HOSTS")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn forge");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(payload.to_string().as_bytes())
        .await
        .expect("write payload");
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("forge finishes")
        .expect("forge output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let response = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code().unwrap_or(-1), response)
}

fn error_of(response: &Value) -> &str {
    response["error"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_host_alquimia_key_goes_only_to_its_own_origin_or_allowed_hosts() {
    let home = TestServer::builder().api_key(HOST_KEY).start().await;
    let other = TestServer::builder().api_key(HOST_KEY).start().await;
    let attacker = Capture::start().await;
    let host_env = [
        ("ALQUIMIA_API_KEY", HOST_KEY),
        ("ALQUIMIA_BASE_URL", &home.url() as &str),
    ];

    // A caller-chosen URL without a key: rejected, nothing sent there.
    let (code, response) = run_payload(&alquimia_payload(&attacker.url()), &host_env, &[]).await;
    assert_eq!(code, 2, "{response}");
    assert_eq!(response["success"], false, "{response}");
    let error = error_of(&response);
    assert!(
        error.contains(&format!("no API key is sent to {}", attacker.host())),
        "{error}"
    );
    assert!(
        error.contains(&format!("--allow-host {}", attacker.host())),
        "{error}"
    );
    assert!(!error.contains(HOST_KEY), "{error}");
    assert!(
        !attacker.received().contains(HOST_KEY),
        "the caller's server got the host key: {}",
        attacker.received()
    );

    // The host's own base URL (named, or left out) gets the key.
    for payload in [
        alquimia_payload(&home.url()),
        json!({"datasets": datasets(), "config": {"agent_id": "agent-1", "channel_id": "web"}}),
    ] {
        let (code, response) = run_payload(&payload, &host_env, &[]).await;
        assert_eq!(code, 0, "{response}");
        assert_eq!(response["summaries"][0]["successes"], 1, "{response}");
    }

    // Another host, once the operator allows it: by flag or environment.
    let other_host = other.addr().to_string();
    let (code, response) = run_payload(
        &alquimia_payload(&other.url()),
        &host_env,
        &["--allow-host", &other_host],
    )
    .await;
    assert_eq!(code, 0, "{response}");
    assert_eq!(response["summaries"][0]["successes"], 1, "{response}");
    let mut allowed_env = host_env.to_vec();
    allowed_env.push(("FORGE_ALLOWED_HOSTS", "example.invalid, 127.0.0.1"));
    let (code, response) = run_payload(&alquimia_payload(&other.url()), &allowed_env, &[]).await;
    assert_eq!(code, 0, "{response}");
    assert_eq!(
        other.requests()[0].authorization(),
        Some(&format!("Bearer {HOST_KEY}") as &str)
    );
    assert!(!attacker.received().contains(HOST_KEY));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_host_llm_key_goes_only_to_the_connector_default_or_allowed_hosts() {
    let allowed = TestServer::builder().api_key(HOST_KEY).start().await;
    let attacker = Capture::start().await;
    let host_env = [("LLM_API_KEY", HOST_KEY)];
    let openai = "langchain_openai.chat_models.ChatOpenAI";

    let (code, response) =
        run_payload(&connector_payload(openai, &attacker.url()), &host_env, &[]).await;
    assert_eq!(code, 2, "{response}");
    let error = error_of(&response);
    assert!(
        error.contains(&format!("no API key is sent to {}", attacker.host()))
            && error.contains("LLM_API_KEY")
            && error.contains("https://api.openai.com/v1"),
        "{error}"
    );

    // Ollama needs no key: it runs, without the host's.
    let (code, response) = run_payload(
        &connector_payload("langchain_ollama.chat_models.ChatOllama", &attacker.url()),
        &host_env,
        &[],
    )
    .await;
    assert_eq!(code, 0, "{response}");
    let received = attacker.received();
    assert!(received.contains("POST /v1/chat/completions"), "{received}");
    assert!(
        !received.contains(HOST_KEY),
        "the caller's server got the host key: {received}"
    );

    // An allowed host gets it.
    let (code, response) = run_payload(
        &connector_payload(openai, &format!("{}/v1", allowed.url())),
        &host_env,
        &["--allow-host", &allowed.addr().to_string()],
    )
    .await;
    assert_eq!(code, 0, "{response}");
    assert_eq!(response["summaries"][0]["successes"], 1, "{response}");
}

#[cfg(feature = "serve")]
#[tokio::test(flavor = "multi_thread")]
async fn forge_serve_keeps_the_host_key_from_caller_urls_and_wants_json() {
    let home = TestServer::builder().api_key(HOST_KEY).start().await;
    let other = TestServer::builder().api_key(HOST_KEY).start().await;
    let attacker = Capture::start().await;
    let other_host = other.addr().to_string();
    let served = ServeBinary::start(
        &["--allow-host", &other_host],
        &[
            ("ALQUIMIA_API_KEY", HOST_KEY),
            ("ALQUIMIA_BASE_URL", &home.url()),
        ],
    )
    .await;
    let url = served.url.clone();
    let client = reqwest::Client::new();
    let post = |payload: Value, content_type: &'static str| {
        client
            .post(format!("{url}/run"))
            .header("content-type", content_type)
            .body(payload.to_string())
            .send()
    };

    let response = post(alquimia_payload(&attacker.url()), "application/json")
        .await
        .expect("POST /run");
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.expect("JSON");
    assert!(
        error_of(&body).contains(&format!("no API key is sent to {}", attacker.host())),
        "{body}"
    );
    assert!(!attacker.received().contains(HOST_KEY));

    // A browser's simple POST (text/plain, no preflight) is refused.
    let response = post(alquimia_payload(&home.url()), "text/plain")
        .await
        .expect("POST /run");
    assert_eq!(response.status().as_u16(), 415);
    assert!(home.requests().is_empty());

    for base_url in [home.url(), other.url()] {
        let response = post(
            alquimia_payload(&base_url),
            "application/json; charset=utf-8",
        )
        .await
        .expect("POST /run");
        assert_eq!(response.status().as_u16(), 200);
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(body["summaries"][0]["successes"], 1, "{body}");
    }
    assert!(attacker.received().is_empty());
}

/// A payload's `runner:` extension (what `forge run --lambda` sends): a
/// mapping without `api_key` makes the runner take the host's key from the
/// environment by itself, so a URL the payload wrote must be of an allowed
/// host, exactly as with an explicit `${VAR}`.
#[tokio::test(flavor = "multi_thread")]
async fn a_runner_payload_never_sends_the_host_key_to_a_url_it_wrote() {
    let attacker = Capture::start().await;
    let runner = |base_url: &str, key: Option<&str>| {
        let mut runner = json!({"type": "openai", "base_url": base_url, "model": "m"});
        if let Some(key) = key {
            runner["api_key"] = json!(key);
        }
        json!({"datasets": datasets(), "runner": runner})
    };
    let host_env = [
        ("OPENAI_API_KEY", HOST_KEY),
        ("FORGE_PAYLOAD_RUNNERS", "openai"),
    ];
    for payload in [
        runner(&attacker.url(), None),
        runner(&attacker.url(), Some("${OPENAI_API_KEY}")),
    ] {
        let (code, response) = run_payload(&payload, &host_env, &[]).await;
        assert_eq!(code, 2, "{response}");
        assert_eq!(response["success"], false, "{response}");
        assert!(error_of(&response).contains(&attacker.host()), "{response}");
    }
    assert_eq!(
        attacker.received(),
        "",
        "the host's key reached the payload's URL"
    );

    // The payload's own key goes where it says; and the host's key goes to
    // a host the operator allows.
    let (_, response) = run_payload(
        &runner(&attacker.url(), Some("sk-caller-own-99")),
        &host_env,
        &[],
    )
    .await;
    assert!(
        !error_of(&response).contains("does not allow"),
        "{response}"
    );
    assert!(attacker.received().contains("sk-caller-own-99"));
    assert!(!attacker.received().contains(HOST_KEY));
    let allowed = [
        ("OPENAI_API_KEY", HOST_KEY),
        ("FORGE_PAYLOAD_RUNNERS", "openai"),
        ("FORGE_ALLOWED_HOSTS", &attacker.host() as &str),
    ];
    let (_, response) = run_payload(&runner(&attacker.url(), None), &allowed, &[]).await;
    assert!(
        !error_of(&response).contains("does not allow"),
        "{response}"
    );
    assert!(
        attacker.received().contains(HOST_KEY),
        "allowed: the host's key goes there"
    );
}
