//! The verdict contract: what forge reads from a judge's message content.
//!
//! The content is a JSON object, alone, inside a ```` ```json ```` fence or
//! after (or around) prose. forge reads `score` (0..=1) and `reason`,
//! accepting Fair-Forge's `correctness_score` and `reasoning` as well, and
//! an optional boolean `pass`; other keys are ignored. The first object
//! holding `score`, `correctness_score` or `pass` is the verdict.

use serde_json::{Map, Value};

/// How many `{` of a reply are tried as the start of the verdict object.
const MAX_STARTS: usize = 1_000;

/// What a judge said about one answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Ruling {
    /// `score` (or `correctness_score`), in 0..=1.
    pub score: Option<f64>,
    /// `reason` (or `reasoning`); empty when the judge gave none.
    pub reason: String,
    /// `pass`, when the judge said.
    pub pass: Option<bool>,
}

/// The ruling in a judge's message content; the error says why there is
/// no readable one.
pub fn read(content: &str) -> Result<Ruling, String> {
    let Some(object) = verdict_object(content) else {
        return Err(
            "no JSON object with `score`, `correctness_score` or `pass` in the reply".to_owned(),
        );
    };
    ruling(&object)
}

/// The first JSON object of `content` that carries a verdict key: a fenced
/// block's, the whole content's, or one starting at some `{` of the prose.
fn verdict_object(content: &str) -> Option<Map<String, Value>> {
    let fenced = fences(content).filter_map(|block| parse_object(block.trim()));
    let whole = parse_object(content.trim());
    let embedded = content
        .match_indices('{')
        .take(MAX_STARTS)
        .filter_map(|(at, _)| first_value(&content[at..]));
    fenced
        .chain(whole)
        .chain(embedded)
        .find(|object| VERDICT_KEYS.iter().any(|key| object.contains_key(*key)))
}

/// The keys that make an object a verdict.
const VERDICT_KEYS: &[&str] = &["score", "correctness_score", "pass"];

/// The bodies of the ```` ``` ```` fences of `text` (a `json` tag dropped).
fn fences(text: &str) -> impl Iterator<Item = &str> {
    text.split("```")
        .skip(1)
        .step_by(2)
        .map(|block| block.strip_prefix("json").unwrap_or(block))
}

/// `text` as a JSON object, when it is one.
fn parse_object(text: &str) -> Option<Map<String, Value>> {
    match serde_json::from_str(text) {
        Ok(Value::Object(object)) => Some(object),
        _ => None,
    }
}

/// The JSON object at the start of `text`, whatever follows it.
fn first_value(text: &str) -> Option<Map<String, Value>> {
    let mut values = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    match values.next() {
        Some(Ok(Value::Object(object))) => Some(object),
        _ => None,
    }
}

/// The ruling of a verdict object, checked.
fn ruling(object: &Map<String, Value>) -> Result<Ruling, String> {
    let score = match object
        .get("score")
        .or_else(|| object.get("correctness_score"))
    {
        None | Some(Value::Null) => None,
        Some(value) => Some(score(value)?),
    };
    let pass = match object.get("pass") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(pass)) => Some(*pass),
        Some(other) => return Err(format!("`pass` is {other}, not true or false")),
    };
    if score.is_none() && pass.is_none() {
        return Err("the verdict has neither a `score` nor a `pass`".to_owned());
    }
    let reason = match object.get("reason").or_else(|| object.get("reasoning")) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(reason)) => reason.trim().to_owned(),
        Some(other) => other.to_string(),
    };
    Ok(Ruling {
        score,
        reason,
        pass,
    })
}

/// A score: a number (or a number written as a string) in 0..=1.
fn score(value: &Value) -> Result<f64, String> {
    let number = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match number {
        Some(score) if (0.0..=1.0).contains(&score) => Ok(score),
        Some(score) => Err(format!("the score {score} is outside 0..1")),
        None => Err(format!("the score {value} is not a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(content: &str) -> Ruling {
        read(content).unwrap_or_else(|e| panic!("{content:?}: {e}"))
    }

    #[test]
    fn plain_fenced_and_prose_replies() {
        let plain = ok(r#"{"score": 0.8, "reason": "close"}"#);
        assert_eq!(
            plain,
            Ruling {
                score: Some(0.8),
                reason: "close".into(),
                pass: None
            }
        );
        let fenced =
            ok("Thinking...\n```json\n{\"correctness_score\": 1, \"reasoning\": \"same\"}\n```\n");
        assert_eq!((fenced.score, fenced.reason.as_str()), (Some(1.0), "same"));
        let prose = ok("The answer {mostly} holds. {\"pass\": false, \"reason\": \"no\", \"extra\": [1]} Done.");
        assert_eq!((prose.pass, prose.score), (Some(false), None));
        // Other objects are skipped; the first verdict object wins.
        let two = ok(r#"{"note": 1} then {"score": "0.25"} and {"score": 0.9}"#);
        assert_eq!(two.score, Some(0.25));
    }

    #[test]
    fn unreadable_replies_say_why() {
        for (content, why) in [
            ("I think it is right.", "no JSON object"),
            (r#"{"verdict": "good"}"#, "no JSON object"),
            (r#"{"score": 7}"#, "outside 0..1"),
            (r#"{"score": -0.1}"#, "outside 0..1"),
            (r#"{"score": "high"}"#, "not a number"),
            (r#"{"pass": "yes"}"#, "not true or false"),
            (r#"{"score": null, "reason": "x"}"#, "neither"),
        ] {
            let error = read(content).expect_err(content);
            assert!(error.contains(why), "{content}: {error}");
        }
    }
}
