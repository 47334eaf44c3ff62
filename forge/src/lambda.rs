//! The AWS Lambda function of the seed, behind API Gateway (feature `lambda`).
//!
//! [`handle`] takes an API Gateway HTTP API event (payload format 2.0), runs
//! the [payload API](crate::payload) on its JSON body and answers
//! `{statusCode, headers, body}`, as the seed's handler does:
//!
//! | case | statusCode | body |
//! | --- | --- | --- |
//! | the body is not JSON | 400 | `{"error": "Invalid JSON body"}` |
//! | the run failed internally (a panic) | 500 | `{"error": "<message>"}` |
//! | otherwise | 200 | the response, `{"success": true, ...}` or `{"success": false, "error": ...}` |
//!
//! A payload the API rejects is still a 200 with `{"success": false}`, like
//! the seed. The body may be a JSON string (API Gateway), base64-encoded
//! (`isBase64Encoded`), or already an object (a direct invocation such as
//! `aws lambda invoke`). An event with no `body` but with `datasets`,
//! `config`, `connector` or `runner` is itself the payload (a direct invocation with
//! the payload as the event); any other event with no body is an empty
//! payload.
//!
//! The host's `ALQUIMIA_API_KEY` / `LLM_API_KEY` go only to their own base
//! URL and to the hosts of `FORGE_ALLOWED_HOSTS` (read at each invocation;
//! see [`crate::payload`]).
//!
//! [`run`] serves the handler with the Lambda runtime; the `forge-lambda`
//! binary calls it.

use aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use aws_lambda_events::encodings::Body;
use aws_lambda_events::http::header::{HeaderValue, ACCESS_CONTROL_ALLOW_ORIGIN, CONTENT_TYPE};
use base64::Engine as _;
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::{json, Value};

pub use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
pub use lambda_runtime::Error;

/// Environment variable that sets the sessions run at once by one invocation
/// (default [`DEFAULT_CONCURRENCY`](crate::payload::DEFAULT_CONCURRENCY)).
pub const CONCURRENCY_ENV: &str = "FORGE_CONCURRENCY";

/// Answers one API Gateway HTTP API event, or a direct invocation whose
/// `body` is an object or whose event is the payload itself, with an API
/// Gateway response.
///
/// Never fails: every outcome, an internal failure included, is a response.
pub async fn handle(event: Value, concurrency: usize) -> ApiGatewayV2httpResponse {
    let Some(payload) = event_body(&event) else {
        return respond(400, &json!({"error": "Invalid JSON body"}));
    };
    match crate::payload::run_guarded(&payload, concurrency).await {
        Ok(response) => match serde_json::to_value(&response) {
            Ok(body) => respond(200, &body),
            Err(error) => respond(
                500,
                &json!({"error": format!("cannot serialise the response: {error}")}),
            ),
        },
        Err(error) => respond(500, &json!({ "error": error })),
    }
}

/// Serves [`handle`] with the Lambda runtime until the runtime stops.
///
/// Reads [`CONCURRENCY_ENV`] once at start.
pub async fn run() -> Result<(), Error> {
    let concurrency = std::env::var(CONCURRENCY_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(crate::payload::DEFAULT_CONCURRENCY);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        // A direct invocation from `forge run --lambda` (a payload with
        // forge's `runner:`) also gets the invocation's request id, which
        // Lambda's Invoke API gives in a header and an emulator may not.
        let forge_client = event.payload.get("runner").is_some();
        let request_id = event.context.request_id;
        let response = handle(event.payload, concurrency).await;
        let mut answer = serde_json::to_value(&response)?;
        if let (true, Some(envelope)) = (forge_client, answer.as_object_mut()) {
            envelope.insert("requestId".into(), Value::String(request_id));
        }
        Ok::<_, Error>(answer)
    }))
    .await
}

/// The payload in an event's `body`: a JSON string (base64-encoded when
/// `isBase64Encoded` is true), an object, or nothing: then the event itself
/// when it has a payload's keys, else an empty payload. `None` when the body
/// is not JSON.
fn event_body(event: &Value) -> Option<Value> {
    let base64 = event
        .get("isBase64Encoded")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    match event.get("body") {
        None | Some(Value::Null) if is_payload(event) => Some(event.clone()),
        None | Some(Value::Null) => Some(json!({})),
        Some(Value::String(text)) if base64 => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .ok()?;
            serde_json::from_slice(&bytes).ok()
        }
        Some(Value::String(text)) => serde_json::from_str(text).ok(),
        Some(other) => Some(other.clone()),
    }
}

/// Whether an event without a body is a payload: it has one of the
/// payload's keys.
fn is_payload(event: &Value) -> bool {
    ["datasets", "config", "connector", "runner"]
        .iter()
        .any(|key| event.get(key).is_some())
}

fn respond(status: i64, body: &Value) -> ApiGatewayV2httpResponse {
    let mut response = ApiGatewayV2httpResponse::default();
    response.status_code = status;
    response
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
        .headers
        .insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    response.body = Some(Body::Text(body.to_string()));
    response
}
