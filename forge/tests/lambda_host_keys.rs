//! The Lambda function sends the host's `ALQUIMIA_API_KEY` only to the
//! host's own `ALQUIMIA_BASE_URL` and to the hosts of `FORGE_ALLOWED_HOSTS`.
//! (Its own test binary: it sets the process environment.)
#![cfg(feature = "lambda")]

use forge_testkit::TestServer;
use serde_json::{json, Value};

const HOST_KEY: &str = "lambda-host-key-77";

fn event(base_url: &str) -> Value {
    let payload = json!({
        "datasets": [{"session_id": "s1", "assistant_id": "bot", "conversation": [
            {"qa_id": "q1", "query": "What is the capital of France?", "assistant": ""}]}],
        "config": {"base_url": base_url, "agent_id": "agent-1", "channel_id": "web"}
    });
    json!({"body": payload.to_string(), "isBase64Encoded": false})
}

async fn invoke(base_url: &str) -> Value {
    let response =
        serde_json::to_value(forge::lambda::handle(event(base_url), 4).await).expect("serialise");
    assert_eq!(response["statusCode"], 200);
    serde_json::from_str(response["body"].as_str().expect("body")).expect("JSON body")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_host_key_goes_only_to_its_own_and_allowed_hosts() {
    let home = TestServer::builder().api_key(HOST_KEY).start().await;
    let other = TestServer::builder().api_key(HOST_KEY).start().await;
    std::env::set_var("ALQUIMIA_API_KEY", HOST_KEY);
    std::env::set_var("ALQUIMIA_BASE_URL", home.url());
    std::env::remove_var("FORGE_ALLOWED_HOSTS");

    let body = invoke(&other.url()).await;
    assert_eq!(body["success"], false, "{body}");
    let error = body["error"].as_str().unwrap_or("");
    assert!(
        error.contains("no API key is sent to 127.0.0.1:"),
        "{error}"
    );
    assert!(error.contains("FORGE_ALLOWED_HOSTS="), "{error}");
    assert!(other.requests().is_empty(), "the other host was contacted");

    let body = invoke(&home.url()).await;
    assert_eq!(body["summaries"][0]["successes"], 1, "{body}");

    std::env::set_var("FORGE_ALLOWED_HOSTS", other.addr().to_string());
    let body = invoke(&other.url()).await;
    assert_eq!(body["summaries"][0]["successes"], 1, "{body}");
    assert_eq!(
        other.requests()[0].authorization(),
        Some(&format!("Bearer {HOST_KEY}") as &str)
    );
}
