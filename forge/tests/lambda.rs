//! The Lambda handler, invoked with API Gateway HTTP API (payload format 2.0)
//! events from `tests/fixtures/lambda/`, against the loopback Alquimia server.
#![cfg(feature = "lambda")]

use base64::Engine as _;
use forge::lambda::{handle, ApiGatewayV2httpRequest};
use forge_testkit::TestServer;
use serde_json::Value;

mod support;
use support::{assert_gateway_headers, gateway_answer, lambda_fixture};

const KEY: &str = "lambda-key-9";

/// The fixture `name`, with `${BASE_URL}` in its payload set to `base_url`.
fn event(name: &str, base_url: &str) -> Value {
    let mut event = lambda_fixture(name, base_url);
    if event["isBase64Encoded"] == true {
        let engine = base64::engine::general_purpose::STANDARD;
        let body = engine
            .decode(event["body"].as_str().expect("string body"))
            .expect("base64 body");
        let body = String::from_utf8(body)
            .expect("UTF-8")
            .replace("${BASE_URL}", base_url);
        event["body"] = Value::String(engine.encode(body));
    }
    event
}

/// The API Gateway fixture `name` (see [`event`]), checked to be what API
/// Gateway sends: an HTTP API event of payload format 2.0, a `POST` with a
/// body.
fn gateway_event(name: &str, base_url: &str) -> Value {
    let event = event(name, base_url);
    let request: ApiGatewayV2httpRequest =
        serde_json::from_value(event.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(request.version.as_deref(), Some("2.0"), "{name}");
    assert_eq!(request.request_context.http.method.as_str(), "POST");
    assert!(request.body.is_some(), "{name}");
    event
}

/// The response as the Lambda runtime sends it to API Gateway: the status,
/// the headers, and the body parsed as JSON.
async fn invoke(event: Value) -> (i64, Value, Value) {
    let response = serde_json::to_value(handle(event, 4).await).expect("serialise");
    gateway_answer(&response)
}

#[tokio::test]
async fn a_string_body_runs_the_payload() {
    let agent = TestServer::builder().api_key(KEY).start().await;
    let (status, headers, body) = invoke(gateway_event("string-body.json", &agent.url())).await;
    assert_eq!(status, 200, "{body}");
    assert_gateway_headers(&headers);
    assert_eq!(body["success"], true);
    assert_eq!(body["total_datasets"], 1);
    assert_eq!(
        body["datasets"][0]["conversation"][0]["assistant"],
        forge_testkit::alquimia_answer("What is the capital of France?", 1, "test-session-1")
    );
    assert_eq!(body["summaries"][0]["successes"], 1);
    assert_eq!(
        agent.requests()[0].authorization(),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert!(!body.to_string().contains(KEY));
}

#[tokio::test]
async fn a_base64_body_is_decoded() {
    let agent = TestServer::builder().api_key(KEY).start().await;
    let (status, headers, body) = invoke(gateway_event("base64-body.json", &agent.url())).await;
    assert_eq!(status, 200, "{body}");
    assert_gateway_headers(&headers);
    assert_eq!(body["summaries"][0]["successes"], 1);
    assert_eq!(agent.turns("test-session-1").len(), 1);
}

#[tokio::test]
async fn an_object_body_of_a_direct_invocation_runs() {
    let agent = TestServer::builder().api_key(KEY).start().await;
    let (status, headers, body) = invoke(event("object-body.json", &agent.url())).await;
    assert_eq!(status, 200, "{body}");
    assert_gateway_headers(&headers);
    assert_eq!(body["success"], true);
    assert_eq!(body["summaries"][0]["total_batches"], 1);
}

#[tokio::test]
async fn an_event_that_is_the_payload_itself_runs() {
    // `aws lambda invoke --payload file://payload.json`: no `body`, the
    // event is the payload.
    let agent = TestServer::builder().api_key(KEY).start().await;
    let direct = event("payload-event.json", &agent.url());
    assert!(direct.get("body").is_none() && direct.get("datasets").is_some());
    let (status, headers, body) = invoke(direct).await;
    assert_eq!(status, 200, "{body}");
    assert_gateway_headers(&headers);
    assert_eq!(body["success"], true, "{body}");
    assert_eq!(body["total_datasets"], 1);
    assert_eq!(body["summaries"][0]["successes"], 1);
    assert_eq!(agent.turns("test-session-1").len(), 1);

    // The same answer as the payload wrapped in `body`.
    let other = TestServer::builder().api_key(KEY).start().await;
    let wrapped = serde_json::json!({"body": event("payload-event.json", &other.url())});
    let (_, _, wrapped) = invoke(wrapped).await;
    assert_eq!(wrapped["datasets"], body["datasets"]);

    // A rejected payload as the event is rejected as such, not taken for an
    // empty one.
    let (status, _, body) = invoke(serde_json::json!({"datasets": [], "config": {}})).await;
    assert_eq!(status, 200);
    assert_eq!(body["success"], false);
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("`datasets` is empty"),
        "{body}"
    );
}

#[tokio::test]
async fn a_body_that_is_not_json_is_400() {
    let (status, headers, body) = invoke(gateway_event("invalid-json.json", "")).await;
    assert_eq!(status, 400);
    assert_gateway_headers(&headers);
    assert_eq!(body, serde_json::json!({"error": "Invalid JSON body"}));

    // Nor is bad base64.
    let mut bad = gateway_event("invalid-json.json", "");
    bad["isBase64Encoded"] = Value::Bool(true);
    bad["body"] = Value::String("%%% not base64".into());
    assert_eq!(invoke(bad).await.0, 400);
}

#[tokio::test]
async fn a_rejected_payload_is_200_with_success_false_like_the_seed() {
    let (status, headers, body) = invoke(gateway_event("rejected-payload.json", "")).await;
    assert_eq!(status, 200);
    assert_gateway_headers(&headers);
    assert_eq!(body["success"], false);
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("No datasets provided"),
        "{body}"
    );

    // An event with no body is an empty payload.
    let (status, _, body) = invoke(serde_json::json!({"version": "2.0"})).await;
    assert_eq!(status, 200);
    assert_eq!(body["success"], false);
}

#[test]
fn an_internal_failure_is_500_with_its_message() {
    // The run spawns its sessions on the Tokio runtime; polled by an
    // executor that is not Tokio's, it panics inside the run. The handler
    // catches the panic and answers it, as it would any internal failure.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let agent = runtime.block_on(TestServer::builder().api_key(KEY).start());
    let response =
        block_on_without_tokio(handle(gateway_event("string-body.json", &agent.url()), 4));
    let response = serde_json::to_value(response).expect("serialise");
    assert_eq!(response["statusCode"], 500, "{response}");
    assert_gateway_headers(&response["headers"]);
    let body: Value =
        serde_json::from_str(response["body"].as_str().expect("body is a string")).expect("JSON");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("internal error: "), "{body}");
    assert!(error.contains("Tokio"), "{body}");
    assert_eq!(body.as_object().map(|o| o.len()), Some(1), "{body}");
    // It failed before any turn was sent.
    assert!(agent.requests().is_empty());
}

/// Runs `future` to completion on this thread, outside any Tokio runtime.
fn block_on_without_tokio<F: std::future::Future>(future: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(output) => return output,
            Poll::Pending => std::thread::park(),
        }
    }
}
