//! Reading an invocation's answer back into each session's turns.
//!
//! The function answers like the seed's handler, `{statusCode, headers,
//! body}` with the payload API's response as the body's JSON text (and,
//! `forge-lambda` to a payload with `runner:`, its `requestId`, the one
//! named when the Invoke API's header has none). A
//! success gives each session its answered turns, each with the time,
//! attempts and usage the function measured (its response's `turns`; the
//! session's average turn time when it has none); a failed turn keeps the
//! batch as sent, with its `[ERROR]` message. Anything else (a function
//! error, another status, a rejected payload, an answer that is not the
//! expected JSON) fails the chunk's every turn with one message naming the
//! invocation's request id.

use serde_json::Value;

use super::invoke::{Failure, Invoked};
use crate::error::RunError;
use crate::runner::BatchOutcome;
use crate::schema::{Dataset, Response, RunResponse, TurnFacts};

/// The most characters of a function's error document quoted in a message.
const QUOTED: usize = 500;

/// A session's answer: its turns' outcomes, in order, and its wall time.
#[derive(Debug)]
pub(crate) struct Answered {
    pub outcomes: Vec<BatchOutcome>,
    pub total_ms: f64,
}

/// Every turn of `dataset` failed with `message`.
pub(crate) fn failed(dataset: Dataset, message: &str) -> Answered {
    let error = RunError::permanent(message);
    Answered {
        outcomes: dataset
            .conversation
            .into_iter()
            .map(|batch| BatchOutcome::failure(batch, error.clone(), 0.0))
            .collect(),
        total_ms: 0.0,
    }
}

/// Each sent dataset's answer, in order, or why the invocation failed.
pub(crate) fn split(
    sent: Vec<Dataset>,
    result: Result<Invoked, Failure>,
) -> Result<Vec<Answered>, String> {
    let invoked = result.map_err(|f| failure(f.request_id.as_deref(), &f.message))?;
    let envelope_id = envelope_request_id(&invoked.body);
    let id = invoked.request_id.as_deref().or(envelope_id.as_deref());
    let response = read(&invoked).map_err(|reason| failure(id, &reason))?;
    if response.datasets.len() != sent.len() || response.summaries.len() != sent.len() {
        return Err(failure(
            id,
            &format!(
                "it answered {} dataset(s) for {} sent",
                response.datasets.len(),
                sent.len()
            ),
        ));
    }
    let facts = response.turns.unwrap_or_default();
    let answered = sent
        .into_iter()
        .zip(response.datasets)
        .zip(response.summaries)
        .enumerate()
        .map(|(k, ((sent, got), summary))| {
            let facts = facts.get(k).map(Vec::as_slice).unwrap_or_default();
            session(sent, got, summary, facts).map_err(|reason| failure(id, &reason))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(answered)
}

/// The request id `forge-lambda` puts beside its answer (`requestId`), for
/// an Invoke API that gave none in its header (an emulator).
fn envelope_request_id(body: &[u8]) -> Option<String> {
    let answer: Value = serde_json::from_slice(body).ok()?;
    answer.get("requestId")?.as_str().map(str::to_owned)
}

/// `Lambda invocation <id> failed: <reason>`.
fn failure(request_id: Option<&str>, reason: &str) -> String {
    match request_id {
        Some(id) => format!("Lambda invocation {id} failed: {reason}"),
        None => format!("Lambda invocation failed (no request id): {reason}"),
    }
}

/// The payload API's success response in an invocation's answer.
fn read(invoked: &Invoked) -> Result<RunResponse, String> {
    let text = String::from_utf8_lossy(&invoked.body);
    if let Some(kind) = &invoked.function_error {
        return Err(format!("function error ({kind}): {}", quote(&text)));
    }
    let answer: Value = serde_json::from_str(&text)
        .map_err(|e| format!("its answer is not JSON ({e}): {}", quote(&text)))?;
    let status = answer.get("statusCode").and_then(Value::as_i64);
    let body = match answer.get("body") {
        Some(Value::String(body)) => serde_json::from_str::<Value>(body)
            .map_err(|e| format!("its answer's body is not JSON ({e}): {}", quote(body)))?,
        Some(body) => body.clone(),
        None => answer.clone(),
    };
    if let Some(status) = status.filter(|s| *s != 200) {
        let error = body.get("error").and_then(Value::as_str).unwrap_or("");
        return Err(format!("the function answered {status}: {}", quote(error)));
    }
    match serde_json::from_value::<Response>(body) {
        Ok(Response::Success(response)) => Ok(response),
        Ok(Response::Failure(rejected)) => Err(format!(
            "the function rejected the payload: {}",
            rejected.error
        )),
        Err(e) => Err(format!("its answer is not the payload API's response: {e}")),
    }
}

/// One session's answered turns, checked against what was sent.
fn session(
    sent: Dataset,
    got: Dataset,
    summary: crate::Summary,
    facts: &[TurnFacts],
) -> Result<Answered, String> {
    if got.session_id != sent.session_id || got.conversation.len() != sent.conversation.len() {
        return Err(format!(
            "it answered session {:?} with {} turn(s) for session {:?} with {}",
            got.session_id,
            got.conversation.len(),
            sent.session_id,
            sent.conversation.len()
        ));
    }
    let outcomes = sent
        .conversation
        .into_iter()
        .zip(got.conversation)
        .enumerate()
        .map(|(t, (asked, answered))| {
            let fact = facts.get(t).copied().unwrap_or(TurnFacts {
                time_ms: summary.avg_batch_time_ms,
                attempts: 1,
                usage: None,
            });
            let mut outcome = match answered.assistant.strip_prefix("[ERROR] ") {
                Some(message) => {
                    BatchOutcome::failure(asked, RunError::permanent(message), fact.time_ms)
                }
                None => BatchOutcome::success(answered, fact.time_ms),
            };
            outcome.attempts = fact.attempts.max(1);
            outcome.usage = fact.usage;
            outcome
        })
        .collect();
    Ok(Answered {
        outcomes,
        total_ms: summary.total_execution_time_ms,
    })
}

/// `text`, cut to [`QUOTED`] characters.
fn quote(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(QUOTED) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sent() -> Vec<Dataset> {
        let mut dataset = Dataset::new("s1", "a");
        dataset.conversation.push(crate::Batch::new("q1", "hi"));
        dataset.conversation.push(crate::Batch::new("q2", "bye"));
        vec![dataset]
    }

    fn invoked(body: Value, function_error: Option<&str>) -> Result<Invoked, Failure> {
        Ok(Invoked {
            request_id: Some("req-7".into()),
            function_error: function_error.map(str::to_owned),
            body: body.to_string().into_bytes(),
        })
    }

    #[test]
    fn answers_keep_each_turns_facts_and_failed_turns_as_sent() {
        let body = json!({
            "success": true, "total_datasets": 1,
            "datasets": [{"session_id": "s1", "assistant_id": "a", "context": "", "conversation": [
                {"qa_id": "q1", "query": "hi", "assistant": "hello", "ground_truth_assistant": ""},
                {"qa_id": "q2", "query": "bye", "assistant": "[ERROR] boom", "observation": "boom", "ground_truth_assistant": ""}
            ]}],
            "summaries": [{"session_id": "s1", "total_batches": 2, "successes": 1, "failures": 1,
                           "total_execution_time_ms": 9.0, "avg_batch_time_ms": 4.0}],
            "turns": [[{"time_ms": 3.0, "attempts": 2, "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}},
                       {"time_ms": 5.0, "attempts": 1}]]
        });
        let gateway = json!({"statusCode": 200, "body": body.to_string()});
        let answered = split(sent(), invoked(gateway, None)).expect("answered");
        let turns = &answered[0].outcomes;
        assert_eq!(turns[0].batch.assistant, "hello");
        assert_eq!((turns[0].time_ms, turns[0].attempts), (3.0, 2));
        assert_eq!(turns[0].usage.map(|u| u.total_tokens), Some(3));
        assert_eq!(
            turns[1].error.as_ref().map(|e| e.message.as_str()),
            Some("boom")
        );
        assert_eq!(turns[1].batch.assistant, "", "the batch as sent");
        assert_eq!(answered[0].total_ms, 9.0);
    }

    #[test]
    fn failures_name_the_request_id() {
        let cases = [
            (
                json!({"errorMessage": "Task timed out"}),
                Some("Unhandled"),
                "function error (Unhandled)",
            ),
            (
                json!({"statusCode": 500, "body": "{\"error\": \"internal error: x\"}"}),
                None,
                "answered 500",
            ),
            (
                json!({"statusCode": 200, "body": "{\"success\": false, \"error\": \"no\"}"}),
                None,
                "rejected the payload: no",
            ),
            (
                json!({"statusCode": 200, "body": "{\"success\": true}"}),
                None,
                "not the payload API's response",
            ),
        ];
        for (body, function_error, expected) in cases {
            let error = split(sent(), invoked(body, function_error)).expect_err("failed");
            assert!(
                error.starts_with("Lambda invocation req-7 failed: "),
                "{error}"
            );
            assert!(error.contains(expected), "{error}");
        }
        let envelope = Ok(Invoked {
            request_id: None,
            function_error: None,
            body: json!({"statusCode": 500, "body": "{}", "requestId": "req-9"})
                .to_string()
                .into_bytes(),
        });
        let error = split(sent(), envelope).expect_err("failed");
        assert!(
            error.starts_with("Lambda invocation req-9 failed: "),
            "{error}"
        );
        let not_json = Ok(Invoked {
            request_id: None,
            function_error: None,
            body: b"<html>".to_vec(),
        });
        let error = split(sent(), not_json).expect_err("failed");
        assert!(
            error.contains("no request id") && error.contains("not JSON"),
            "{error}"
        );
    }
}
