//! Helpers of forge's tests that use forge's own API (runners built from
//! their mapping, engine policies, the `forge` binary, Lambda fixtures).
//! The generic ones (the test server, processes, datasets, seed payloads)
//! are in `forge_testkit`. Each test binary uses a part of it.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use forge::registry::{self, BuildContext};
use forge::{Backoff, Policy, Runner};
use forge_testkit::process;
use forge_testkit::TestServer;
use serde_json::{json, Value};

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
