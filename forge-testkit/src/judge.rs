//! The test server as an LLM judge: with
//! [`TestServerBuilder::judge`](crate::TestServerBuilder::judge), its
//! `POST /chat/completions` (under
//! any prefix) answers each request with what the test's [`Judge`] rules:
//! a message content (a verdict, prose around one, a fenced one, none) or
//! an HTTP status. Requests are checked for the server's key and logged like
//! any other (body and headers), so a test can assert what the prompt
//! carried and where the key went; [`TestServerBuilder::fail_next`](crate::TestServerBuilder::fail_next)
//! fails the first requests with a status, for retries.
//!
//! ```
//! use forge_testkit::judge::{verdict, Judge, JudgeReply};
//!
//! // 1.0 when the answer holds the ground truth, else 0.0.
//! let judge = Judge::ground_truth();
//! // A scripted judge: prose around a verdict, then a fenced one.
//! let scripted = Judge::scripted(vec![
//!     JudgeReply::content(format!("Let me see. {} Done.", verdict(0.9, "fine"))),
//!     JudgeReply::content(format!("```json\n{}\n```", verdict(0.2, "wrong"))),
//! ]);
//! # let _ = (judge, scripted);
//! ```

use std::sync::Arc;

use serde_json::{json, Value};

/// One request the judge is asked to rule on.
#[derive(Debug, Clone)]
pub struct JudgeRequest {
    /// The request's number on this server (1-based, in arrival order).
    pub call: usize,
    /// The system message (empty without one).
    pub system: String,
    /// The last user message (empty without one).
    pub user: String,
    /// The whole request body.
    pub body: Value,
}

impl JudgeRequest {
    /// The text of the prompt's section `**{name}:** ...` (in the system
    /// message, else the user message), up to the next blank line.
    pub fn section(&self, name: &str) -> Option<&str> {
        let marker = format!("**{name}:** ");
        [&self.system, &self.user].into_iter().find_map(|text| {
            let start = text.find(&marker)? + marker.len();
            let rest = &text[start..];
            Some(rest.split("\n\n").next().unwrap_or(rest))
        })
    }
}

/// What the judge answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JudgeReply {
    /// A chat completion whose message content is this text.
    Content(String),
    /// An HTTP error with this status (`Retry-After: 0` for 429 and 503).
    Status(u16),
}

impl JudgeReply {
    /// A reply whose content is `text`.
    pub fn content(text: impl Into<String>) -> Self {
        JudgeReply::Content(text.into())
    }
}

/// A verdict object as forge's contract reads it: `{"score": .., "reason": ..}`.
pub fn verdict(score: f64, reason: &str) -> String {
    json!({"score": score, "reason": reason}).to_string()
}

type Rule = dyn Fn(&JudgeRequest) -> JudgeReply + Send + Sync;

/// How the test server rules: a function of the request, chosen by the test.
#[derive(Clone)]
pub struct Judge(Arc<Rule>);

impl std::fmt::Debug for Judge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Judge(..)")
    }
}

impl Judge {
    /// A judge ruling with `rule`.
    pub fn new(rule: impl Fn(&JudgeRequest) -> JudgeReply + Send + Sync + 'static) -> Self {
        Judge(Arc::new(rule))
    }

    /// Answer correctness by containment: score 1.0 when the prompt's
    /// `Agent's Answer` section contains its `Ground Truth` section
    /// (ignoring case), else 0.0; a prompt with neither section gets a
    /// reply with no verdict.
    pub fn ground_truth() -> Self {
        Judge::new(|request| {
            let (Some(answer), Some(truth)) = (
                request.section("Agent's Answer"),
                request.section("Ground Truth"),
            ) else {
                return JudgeReply::content("I cannot find an answer to judge.");
            };
            let holds = answer.to_lowercase().contains(&truth.trim().to_lowercase());
            let reason = if holds {
                format!("the answer states {truth}")
            } else {
                format!("the answer does not state {truth}")
            };
            JudgeReply::Content(verdict(if holds { 1.0 } else { 0.0 }, &reason))
        })
    }

    /// The n-th request gets the n-th reply; the last is repeated.
    pub fn scripted(replies: Vec<JudgeReply>) -> Self {
        Judge::new(move |request| {
            let index = request
                .call
                .saturating_sub(1)
                .min(replies.len().saturating_sub(1));
            replies
                .get(index)
                .cloned()
                .unwrap_or(JudgeReply::Status(500))
        })
    }

    /// The reply to `request`.
    pub fn rule(&self, request: &JudgeRequest) -> JudgeReply {
        (self.0)(request)
    }
}

/// The system message and the last user message of a chat request.
pub(crate) fn messages(body: Option<&Value>) -> (String, String) {
    let messages = body
        .and_then(|b| b.get("messages"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let last = |role: &str| {
        messages
            .iter()
            .rev()
            .find(|m| m.get("role").and_then(Value::as_str) == Some(role))
            .and_then(|m| m.get("content"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    (last("system"), last("user"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(call: usize, system: &str, user: &str) -> JudgeRequest {
        JudgeRequest {
            call,
            system: system.into(),
            user: user.into(),
            body: Value::Null,
        }
    }

    #[test]
    fn rules() {
        let judge = Judge::ground_truth();
        let prompt = "x\n\n**Agent's Answer:** It is Paris.\n\n**Ground Truth:** paris\n\nEvaluate";
        let JudgeReply::Content(content) = judge.rule(&request(1, prompt, "q")) else {
            panic!("a verdict");
        };
        assert!(content.contains("\"score\":1.0"), "{content}");
        let wrong = prompt.replace("Paris.", "Lyon.");
        let JudgeReply::Content(content) = judge.rule(&request(1, &wrong, "q")) else {
            panic!("a verdict");
        };
        assert!(content.contains("\"score\":0.0"), "{content}");
        let script = Judge::scripted(vec![JudgeReply::Status(503), JudgeReply::content("ok")]);
        assert_eq!(script.rule(&request(1, "", "")), JudgeReply::Status(503));
        assert_eq!(script.rule(&request(3, "", "")), JudgeReply::content("ok"));
    }
}
