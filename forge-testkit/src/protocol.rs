//! The endpoints: Alquimia's infer and stream requests and OpenAI's chat
//! completions, with the error paths the query markers and the fault plan
//! drive, and the deterministic answers.

use std::convert::Infallible;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use hyper::{Response, StatusCode};
use serde_json::{json, Value};

use crate::judge::{self, Judge, JudgeReply, JudgeRequest};
use crate::server::{lock, Effects, PendingStream, State};
use crate::sse::{piecewise, sse_body};
use crate::{Fault, LoggedRequest};

/// The answer the server gives to Alquimia turn `turn` (1-based) of
/// `session_id` asking `query`.
pub fn alquimia_answer(query: &str, turn: usize, session_id: &str) -> String {
    format!("answer to '{query}' (turn {turn} of session {session_id})")
}

/// The answer the server gives to a chat-completions request whose last user
/// message asks `query` (the part after `Question: ` when the message has a
/// context prefix) and which holds `turn` user messages.
pub fn openai_answer(query: &str, turn: usize) -> String {
    format!("answer to '{query}' (turn {turn})")
}

/// The token usage the server reports for a chat-completions request
/// with body `request` answered with `answer`: (prompt tokens, completion
/// tokens), counting one token per whitespace-separated word of every
/// message's content, and of the answer. The reply's `usage` carries them
/// (`total_tokens` their sum), for the runner's turns and the judge's
/// verdicts alike.
pub fn openai_usage(request: &Value, answer: &str) -> (u64, u64) {
    let words = |text: &str| text.split_whitespace().count() as u64;
    let prompt = request
        .get("messages")
        .and_then(Value::as_array)
        .map(|messages| {
            messages
                .iter()
                .filter_map(|m| m.get("content").and_then(Value::as_str))
                .map(words)
                .sum()
        })
        .unwrap_or(0);
    (prompt, words(answer))
}

/// A response body.
pub(crate) type Body = BoxBody<Bytes, std::io::Error>;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

pub(crate) fn json_response(status: u16, value: &Value) -> Response<Body> {
    let mut response = Response::new(full(value.to_string()));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

pub(crate) fn error_response(status: u16, message: &str) -> Response<Body> {
    let mut response = json_response(
        status,
        &json!({"error": {"message": message, "code": status}}),
    );
    if matches!(status, 429 | 503) {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("7"));
    }
    response
}

/// The status of a `#NNN` marker in `query`.
fn status_marker(query: &str) -> Option<u16> {
    query.match_indices('#').find_map(|(i, _)| {
        let digits = query.get(i + 1..i + 4)?;
        let status: u16 = digits.parse().ok()?;
        let next = query[i + 4..].chars().next();
        ((400..=599).contains(&status) && !next.is_some_and(|c| c.is_ascii_digit()))
            .then_some(status)
    })
}

/// Answers the next `fail_next` turn-starting requests with the configured status.
fn injected_failure(state: &State) -> Option<Response<Body>> {
    state.turns_started.fetch_add(1, Ordering::Relaxed);
    let mut remaining = state.fail_remaining.load(Ordering::Relaxed);
    while remaining > 0 {
        match state.fail_remaining.compare_exchange(
            remaining,
            remaining - 1,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => {
                let mut response = error_response(state.fail_status, "injected failure");
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static("0"));
                return Some(response);
            }
            Err(now) => remaining = now,
        }
    }
    None
}

pub(crate) fn infer(
    state: &State,
    path: &str,
    body: Option<&Value>,
    authorized: bool,
    logged: &mut LoggedRequest,
    effects: &mut Effects,
) -> Response<Body> {
    let segments: Vec<&str> = path
        .split_once("/event/infer/")
        .map(|(_, rest)| rest.split('/').collect())
        .unwrap_or_default();
    if segments.len() != 2 || segments.iter().any(|s| s.is_empty()) {
        return error_response(404, "expected /event/infer/{channel}/{agent}");
    }
    let query = body.and_then(|b| b.get("query")).and_then(Value::as_str);
    let session = body
        .and_then(|b| b.get("session_id"))
        .and_then(Value::as_str);
    logged.query = query.map(str::to_owned);
    logged.session_id = session.map(str::to_owned);
    if let Some(failure) = injected_failure(state) {
        return failure;
    }
    if !authorized {
        return error_response(401, "invalid or missing API key");
    }
    let (Some(query), Some(session)) = (query, session) else {
        return error_response(422, "`query` and `session_id` are required strings");
    };
    if let Some(status) = status_marker(query) {
        return error_response(status, "requested by the query");
    }
    let (fault, attempt) = planned(state, session, query);
    if let Some(rejection) = rejection(fault, attempt, logged) {
        return rejection;
    }
    if let Some(redirect) = redirection(fault, attempt, logged) {
        return redirect;
    }
    if query.contains("#badjson") {
        return Response::new(full("this is not json"));
    }
    accept(state, session, query, (fault, attempt), logged, effects)
}

/// Records an accepted turn and creates the stream that will deliver its
/// answer; the infer reply.
fn accept(
    state: &State,
    session: &str,
    query: &str,
    (fault, attempt): (Option<Fault>, usize),
    logged: &mut LoggedRequest,
    effects: &mut Effects,
) -> Response<Body> {
    let turn = {
        let mut sessions = lock(&state.sessions);
        let turns = sessions.entry(session.to_owned()).or_default();
        turns.push(query.to_owned());
        turns.len()
    };
    if query.contains("#nostream") {
        return json_response(200, &json!({"status": "accepted"}));
    }
    let number = state.next_stream.fetch_add(1, Ordering::Relaxed);
    let id = format!("stream-{number}");
    let mut answer = if query.contains("#empty") {
        String::new()
    } else {
        alquimia_answer(query, turn, session)
    };
    echo_authorization(fault, logged, &mut answer);
    lock(&state.streams).insert(
        id.clone(),
        PendingStream {
            id: number,
            session_id: session.to_owned(),
            query: query.to_owned(),
            answer,
            drop: query.contains("#drop") && !query.contains("#dropfirst"),
            drop_first: query.contains("#dropfirst"),
            reads: 0,
            fault,
        },
    );
    logged.stream_id = Some(id.clone());
    if let Some(Fault::DelayInfer { delay, times }) = fault {
        if attempt <= times {
            effects.extra = delay;
            logged.fault = Some("delay infer".into());
        }
    }
    let mut response = json_response(200, &json!({"stream_id": id}));
    if let Some(Fault::CloseKeptAlive { .. }) = fault {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("keep-alive"));
    }
    response
}

/// Appends the request's `Authorization` to `answer` under
/// [`Fault::EchoAuthorization`].
fn echo_authorization(fault: Option<Fault>, logged: &mut LoggedRequest, answer: &mut String) {
    if fault == Some(Fault::EchoAuthorization) {
        let sent = logged.authorization().unwrap_or("nothing").to_owned();
        answer.push_str(&format!(" (you sent: {sent})"));
        logged.fault = Some("echo authorization".into());
    }
}

/// The planned fault of a turn and which attempt (1-based) this request is.
fn planned(state: &State, session: &str, query: &str) -> (Option<Fault>, usize) {
    let Some(plan) = &state.plan else {
        return (None, 1);
    };
    let attempt = {
        let mut attempts = lock(&state.attempts);
        let count = attempts
            .entry((session.to_owned(), query.to_owned()))
            .or_default();
        *count += 1;
        *count
    };
    (plan.fault(session, query), attempt)
}

/// The rejection a [`Fault::Reject`] asks for on this attempt.
fn rejection(
    fault: Option<Fault>,
    attempt: usize,
    logged: &mut LoggedRequest,
) -> Option<Response<Body>> {
    let Some(Fault::Reject {
        status,
        times,
        retry_after,
    }) = fault
    else {
        return None;
    };
    if attempt > times {
        return None;
    }
    logged.fault = Some(format!("reject {status}"));
    let mut response = error_response(status, "injected by the fault plan");
    if matches!(status, 429 | 503) {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(retry_after));
    }
    Some(response)
}

/// The redirect a [`Fault::Redirect`] asks for on this attempt: to the same
/// path and query, on another server or on this one.
fn redirection(
    fault: Option<Fault>,
    attempt: usize,
    logged: &mut LoggedRequest,
) -> Option<Response<Body>> {
    let Some(Fault::Redirect { status, to, times }) = fault else {
        return None;
    };
    if attempt > times {
        return None;
    }
    logged.fault = Some(format!("redirect {status}"));
    let mut target = match to {
        Some(addr) => format!("http://{addr}{}", logged.path),
        None => logged.path.clone(),
    };
    if let Some(query) = &logged.query_string {
        target = format!("{target}?{query}");
    }
    let mut response = error_response(status, "moved");
    if let Ok(location) = HeaderValue::from_str(&target) {
        response.headers_mut().insert(LOCATION, location);
    }
    Some(response)
}

/// The stream's response, and whether it delivers a turn (so the latency applies).
pub(crate) fn stream(
    state: &State,
    path: &str,
    authorized: bool,
    logged: &mut LoggedRequest,
    effects: &mut Effects,
) -> (Response<Body>, bool) {
    if !authorized {
        return (error_response(401, "invalid or missing API key"), false);
    }
    let id = path
        .split_once("/event/stream/")
        .map(|(_, id)| id)
        .unwrap_or_default();
    let (number, answer, drop, fault) = {
        let mut streams = lock(&state.streams);
        let Some(pending) = streams.get_mut(id) else {
            return (error_response(404, "no such stream"), false);
        };
        pending.reads += 1;
        logged.session_id = Some(pending.session_id.clone());
        logged.query = Some(pending.query.clone());
        logged.stream_id = Some(id.to_owned());
        let mut drop = pending.drop || (pending.drop_first && pending.reads == 1);
        let mut keep = drop;
        match pending.fault {
            Some(Fault::DropStream { times }) if pending.reads <= times => {
                drop = true;
                keep = true;
                logged.fault = Some("drop".into());
            }
            Some(Fault::Delay { delay, times }) if pending.reads <= times => {
                effects.extra = delay;
                keep = true;
                logged.fault = Some("delay".into());
            }
            Some(Fault::CloseKeptAlive { times }) if pending.reads <= times => {
                effects.close = true;
                keep = true;
                logged.fault = Some("close".into());
            }
            Some(Fault::KeepAlives { answer: false, .. }) => {
                // No answer: a retry re-attaches and gets the same.
                keep = true;
                logged.fault = Some("keep-alives".into());
            }
            Some(Fault::KeepAlives { .. }) => logged.fault = Some("keep-alives".into()),
            Some(Fault::HugeLines { .. }) => logged.fault = Some("huge lines".into()),
            _ => {}
        }
        let answer = pending.answer.clone();
        let (number, fault) = (pending.id, pending.fault);
        if !keep {
            streams.remove(id);
        }
        (number, answer, drop, fault)
    };
    let mut response = Response::new(piecewise(sse_body(number, &answer, fault, drop)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    (response, true)
}

/// The question of a user message: the part after `Question: ` when it has
/// a context prefix.
fn question(content: &str) -> &str {
    match content.strip_prefix("Context:\n") {
        Some(rest) => rest
            .rsplit_once("\n\nQuestion: ")
            .map(|(_, q)| q)
            .unwrap_or(content),
        None => content,
    }
}

/// The chat reply, and whether it answers a turn (so the latency applies).
pub(crate) fn chat(
    state: &State,
    body: Option<&Value>,
    authorized: bool,
    logged: &mut LoggedRequest,
    effects: &mut Effects,
) -> (Response<Body>, bool) {
    let user = user_messages(body);
    let query = user.last().map(|c| question(c).to_owned());
    logged.query = query.clone();
    if let Some(failure) = injected_failure(state) {
        return (failure, false);
    }
    if !authorized {
        return (error_response(401, "Incorrect API key provided"), false);
    }
    let Some(query) = query else {
        return (
            error_response(400, "`messages` must hold a user message"),
            false,
        );
    };
    if let Some(status) = status_marker(&query) {
        return (error_response(status, "requested by the query"), false);
    }
    let (fault, attempt) = planned(state, "", &query);
    if let Some(rejection) = rejection(fault, attempt, logged) {
        return (rejection, false);
    }
    if let Some(redirect) = redirection(fault, attempt, logged) {
        return (redirect, false);
    }
    if let Some(Fault::Delay { delay, times }) = fault {
        if attempt <= times {
            effects.extra = delay;
            logged.fault = Some("delay".into());
        }
    }
    if query.contains("#badjson") {
        return (Response::new(full("{\"choices\": [")), true);
    }
    let mut answer = if query.contains("#empty") {
        String::new()
    } else {
        openai_answer(&query, user.len())
    };
    echo_authorization(fault, logged, &mut answer);
    (completion(&query, answer, body), true)
}

/// The reply of the server acting as a judge: after the key check and the
/// injected failures, what the test's judge rules.
pub(crate) fn judged(
    state: &State,
    judge: &Judge,
    body: Option<&Value>,
    authorized: bool,
    logged: &mut LoggedRequest,
) -> Response<Body> {
    let (system, user) = judge::messages(body);
    logged.query = Some(user.clone());
    if let Some(failure) = injected_failure(state) {
        return failure;
    }
    if !authorized {
        return error_response(401, "Incorrect API key provided");
    }
    let request = JudgeRequest {
        call: state.judge_calls.fetch_add(1, Ordering::Relaxed) + 1,
        system,
        user,
        body: body.cloned().unwrap_or(Value::Null),
    };
    match judge.rule(&request) {
        JudgeReply::Content(content) => completion("", content, body),
        JudgeReply::Status(status) => {
            let mut response = error_response(status, "the judge failed");
            if matches!(status, 429 | 503) {
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static("0"));
            }
            response
        }
    }
}

/// The contents of the user messages of a chat request, in order.
fn user_messages(body: Option<&Value>) -> Vec<&str> {
    body.and_then(|b| b.get("messages"))
        .and_then(Value::as_array)
        .map(|m| {
            m.iter()
                .filter(|m| m.get("role").and_then(Value::as_str) == Some("user"))
                .filter_map(|m| m.get("content").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default()
}

/// The chat-completions reply carrying `answer` to `query`.
fn completion(query: &str, answer: String, body: Option<&Value>) -> Response<Body> {
    let mut choice = json!({
        "index": 0,
        "message": {"role": "assistant", "content": answer},
        "finish_reason": "stop",
    });
    if query.contains("#logprobs") {
        choice["logprobs"] = json!({"content": [{"token": "answer", "logprob": -0.01}]});
    }
    let model = body
        .and_then(|b| b.get("model"))
        .cloned()
        .unwrap_or(Value::Null);
    let (prompt, completion) = openai_usage(body.unwrap_or(&Value::Null), &answer_of(&choice));
    let usage = if query.contains("#input_tokens") {
        json!({"input_tokens": prompt, "output_tokens": completion})
    } else {
        json!({
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        })
    };
    let mut reply = json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": model,
        "choices": [choice],
    });
    if !query.contains("#nousage") {
        reply["usage"] = usage;
    }
    json_response(200, &reply)
}

/// The message content of a reply's choice.
fn answer_of(choice: &Value) -> String {
    choice
        .pointer("/message/content")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_and_questions() {
        assert_eq!(status_marker("boom #500"), Some(500));
        assert_eq!(status_marker("#4291"), None);
        assert_eq!(status_marker("#200 #401"), Some(401));
        assert_eq!(status_marker("#nostream"), None);
        assert_eq!(question("Context:\nc\n\nQuestion: q"), "q");
    }

    #[test]
    fn usage_counts_words() {
        let request = json!({"messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "what  is\nthis?"},
        ]});
        assert_eq!(openai_usage(&request, "an answer"), (5, 2));
        assert_eq!(openai_usage(&Value::Null, ""), (0, 0));
    }
}
