//! Expectations: checks on a batch's answer, written as `expect:` on a batch,
//! a dataset or the suite (the narrower level wins, check by check).
//!
//! | check | passes when |
//! | --- | --- |
//! | `contains: x` or `[x, y]` | the answer contains every string |
//! | `icontains` | the same, ignoring case |
//! | `not_contains` | the answer contains none of the strings |
//! | `equals` | the answer is exactly the string |
//! | `starts_with` | the answer starts with the string |
//! | `regex` | the regular expression matches somewhere in the answer |
//! | `is_json: true` or `is_json: {schema: {...}}` | the answer is JSON (valid against the JSON Schema) |
//! | `max_latency_ms` | the turn took at most this long |
//! | `similarity: 0.6` or `{metric: rouge_l, min: 0.6}` | similarity to `ground_truth_assistant` is at least `min` |
//!
//! Similarity metrics: `token_f1` (default; SQuAD's token-overlap F1 after
//! lower-casing and removing punctuation and articles) and `rouge_l`
//! (ROUGE-L F-measure: longest common token subsequence).

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One or several strings.
#[derive(Debug, Clone, PartialEq)]
pub struct Strings(pub Vec<String>);

impl<'de> Deserialize<'de> for Strings {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<String>),
        }
        Ok(match Raw::deserialize(d)? {
            Raw::One(s) => Strings(vec![s]),
            Raw::Many(v) => Strings(v),
        })
    }
}

/// A regular expression compiled when the suite loads.
#[derive(Debug, Clone)]
pub struct Pattern(pub regex::Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Pattern;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a regular expression")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Pattern, E> {
                regex::Regex::new(v)
                    .map(Pattern)
                    .map_err(|e| E::custom(format!("invalid regex: {e}")))
            }
        }
        d.deserialize_str(Visitor)
    }
}

/// `is_json`: `true`, or a JSON Schema the answer must satisfy.
#[derive(Debug, Clone)]
pub enum JsonCheck {
    /// Any JSON.
    Any,
    /// JSON valid against this schema.
    Schema(Arc<jsonschema::Validator>, Value),
}

impl PartialEq for JsonCheck {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (JsonCheck::Any, JsonCheck::Any) => true,
            (JsonCheck::Schema(_, a), JsonCheck::Schema(_, b)) => a == b,
            _ => false,
        }
    }
}

impl<'de> Deserialize<'de> for JsonCheck {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Flag(bool),
            Schema { schema: Value },
        }
        match Raw::deserialize(d)? {
            Raw::Flag(true) => Ok(JsonCheck::Any),
            Raw::Flag(false) => Err(serde::de::Error::custom(
                "`is_json: false` checks nothing: remove it",
            )),
            Raw::Schema { schema } => jsonschema::validator_for(&schema)
                .map(|v| JsonCheck::Schema(Arc::new(v), schema))
                .map_err(|e| serde::de::Error::custom(format!("invalid JSON Schema: {e}"))),
        }
    }
}

/// A similarity metric between an answer and the ground truth.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Token-overlap F1 (SQuAD).
    #[default]
    TokenF1,
    /// ROUGE-L F-measure.
    RougeL,
}

/// `similarity`: a minimum score against `ground_truth_assistant`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    /// The metric.
    pub metric: Metric,
    /// The minimum score, in 0..=1.
    pub min: f64,
}

impl<'de> Deserialize<'de> for Similarity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Min(f64),
            Full {
                #[serde(default)]
                metric: Metric,
                min: f64,
            },
        }
        let similarity = match Raw::deserialize(d)? {
            Raw::Min(min) => Similarity {
                metric: Metric::default(),
                min,
            },
            Raw::Full { metric, min } => Similarity { metric, min },
        };
        if !(0.0..=1.0).contains(&similarity.min) {
            return Err(serde::de::Error::custom(format!(
                "similarity threshold {} is outside 0..=1",
                similarity.min
            )));
        }
        Ok(similarity)
    }
}

/// The checks of one level (suite, dataset or batch).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Every string must appear.
    pub contains: Option<Strings>,
    /// Every string must appear, ignoring case.
    pub icontains: Option<Strings>,
    /// No string may appear.
    pub not_contains: Option<Strings>,
    /// The whole answer.
    pub equals: Option<String>,
    /// The answer's beginning.
    pub starts_with: Option<String>,
    /// A regular expression that must match.
    pub regex: Option<Pattern>,
    /// The answer must be JSON (valid against a schema).
    pub is_json: Option<JsonCheck>,
    /// The turn's time limit in milliseconds.
    pub max_latency_ms: Option<f64>,
    /// Minimum similarity to the ground truth.
    pub similarity: Option<Similarity>,
}

impl Expect {
    /// Checks of `self`, with `defaults` filling the checks `self` leaves unset.
    pub fn or(&self, defaults: &Expect) -> Expect {
        Expect {
            contains: self.contains.clone().or_else(|| defaults.contains.clone()),
            icontains: self
                .icontains
                .clone()
                .or_else(|| defaults.icontains.clone()),
            not_contains: self
                .not_contains
                .clone()
                .or_else(|| defaults.not_contains.clone()),
            equals: self.equals.clone().or_else(|| defaults.equals.clone()),
            starts_with: self
                .starts_with
                .clone()
                .or_else(|| defaults.starts_with.clone()),
            regex: self.regex.clone().or_else(|| defaults.regex.clone()),
            is_json: self.is_json.clone().or_else(|| defaults.is_json.clone()),
            max_latency_ms: self.max_latency_ms.or(defaults.max_latency_ms),
            similarity: self.similarity.or(defaults.similarity),
        }
    }

    /// Whether no check is set.
    pub fn is_empty(&self) -> bool {
        *self == Expect::default()
    }

    /// Runs every check on an answer that took `time_ms`.
    pub fn check(&self, answer: &str, ground_truth: &str, time_ms: f64) -> Vec<CheckResult> {
        let mut results = Vec::new();
        let mut push = |check: &str, passed: bool, detail: String| {
            results.push(CheckResult {
                check: check.to_owned(),
                passed,
                detail,
            });
        };
        if let Some(Strings(needles)) = &self.contains {
            let missing: Vec<_> = needles
                .iter()
                .filter(|n| !answer.contains(n.as_str()))
                .collect();
            push(
                "contains",
                missing.is_empty(),
                missing_detail("does not contain", &missing),
            );
        }
        if let Some(Strings(needles)) = &self.icontains {
            let lower = answer.to_lowercase();
            let missing: Vec<_> = needles
                .iter()
                .filter(|n| !lower.contains(&n.to_lowercase()))
                .collect();
            push(
                "icontains",
                missing.is_empty(),
                missing_detail("does not contain (ignoring case)", &missing),
            );
        }
        if let Some(Strings(needles)) = &self.not_contains {
            let found: Vec<_> = needles
                .iter()
                .filter(|n| answer.contains(n.as_str()))
                .collect();
            push(
                "not_contains",
                found.is_empty(),
                missing_detail("contains", &found),
            );
        }
        if let Some(expected) = &self.equals {
            let passed = answer == expected;
            push(
                "equals",
                passed,
                if passed {
                    String::new()
                } else {
                    diff(expected, answer)
                },
            );
        }
        if let Some(prefix) = &self.starts_with {
            push(
                "starts_with",
                answer.starts_with(prefix.as_str()),
                format!("expected the answer to start with {prefix:?}"),
            );
        }
        if let Some(Pattern(regex)) = &self.regex {
            push(
                "regex",
                regex.is_match(answer),
                format!("/{}/ does not match the answer", regex.as_str()),
            );
        }
        if let Some(check) = &self.is_json {
            let (passed, detail) = match serde_json::from_str::<Value>(answer) {
                Err(e) => (false, format!("the answer is not JSON: {e}")),
                Ok(value) => match check {
                    JsonCheck::Any => (true, String::new()),
                    JsonCheck::Schema(validator, _) => {
                        let errors: Vec<String> = validator
                            .iter_errors(&value)
                            .take(3)
                            .map(|e| format!("{} at {}", e, e.instance_path()))
                            .collect();
                        (
                            errors.is_empty(),
                            format!(
                                "the answer does not match the schema: {}",
                                errors.join("; ")
                            ),
                        )
                    }
                },
            };
            push("is_json", passed, detail);
        }
        if let Some(max) = self.max_latency_ms {
            push(
                "max_latency_ms",
                time_ms <= max,
                format!("took {time_ms:.0} ms, more than {max} ms"),
            );
        }
        if let Some(similarity) = self.similarity {
            let score = score(similarity.metric, answer, ground_truth);
            push(
                "similarity",
                score >= similarity.min,
                format!(
                    "{} similarity to the ground truth is {score:.3}, below {} (ground truth: {ground_truth:?})",
                    match similarity.metric {
                        Metric::TokenF1 => "token_f1",
                        Metric::RougeL => "rouge_l",
                    },
                    similarity.min
                ),
            );
        }
        for result in &mut results {
            if result.passed {
                result.detail.clear();
            }
        }
        results
    }
}

fn missing_detail(verb: &str, items: &[&String]) -> String {
    let list: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("the answer {verb} {}", list.join(", "))
}

/// A short diff of two strings: where they start to differ, with context.
fn diff(expected: &str, actual: &str) -> String {
    let at = expected
        .char_indices()
        .zip(actual.chars())
        .find(|((_, a), b)| a != b)
        .map(|((i, _), _)| i)
        .unwrap_or(expected.len().min(actual.len()));
    let window = |s: &str| {
        let start = s[..at.min(s.len())]
            .char_indices()
            .rev()
            .nth(15)
            .map_or(0, |(i, _)| i);
        let snippet: String = s[start..].chars().take(40).collect();
        if start > 0 {
            format!("…{snippet}")
        } else {
            snippet
        }
    };
    format!(
        "expected {expected:?}\n     got {actual:?}\n  differ at byte {at}: expected {:?}, got {:?}",
        window(expected),
        window(actual)
    )
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// The check's name, such as `contains`.
    pub check: String,
    /// Whether it held.
    pub passed: bool,
    /// Why it did not (empty when it passed).
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub detail: String,
}

/// The similarity of `answer` to `reference` under `metric`, in 0..=1.
pub fn score(metric: Metric, answer: &str, reference: &str) -> f64 {
    let a = normalize(answer);
    let r = normalize(reference);
    if a.is_empty() || r.is_empty() {
        return if a.is_empty() && r.is_empty() {
            1.0
        } else {
            0.0
        };
    }
    let (overlap, a_len, r_len) = match metric {
        Metric::TokenF1 => {
            let mut counts: HashMap<&str, usize> = HashMap::new();
            for token in &r {
                *counts.entry(token.as_str()).or_default() += 1;
            }
            let mut common = 0;
            for token in &a {
                if let Some(count) = counts.get_mut(token.as_str()) {
                    if *count > 0 {
                        *count -= 1;
                        common += 1;
                    }
                }
            }
            (common, a.len(), r.len())
        }
        Metric::RougeL => (lcs(&a, &r), a.len(), r.len()),
    };
    if overlap == 0 {
        return 0.0;
    }
    let precision = overlap as f64 / a_len as f64;
    let recall = overlap as f64 / r_len as f64;
    2.0 * precision * recall / (precision + recall)
}

fn normalize(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty() && !matches!(*t, "a" | "an" | "the"))
        .map(str::to_owned)
        .collect()
}

fn lcs(a: &[String], b: &[String]) -> usize {
    let mut row = vec![0usize; b.len() + 1];
    for x in a {
        let mut diagonal = 0;
        for (j, y) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if x == y {
                diagonal + 1
            } else {
                above.max(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expect(yaml: &str) -> Expect {
        serde_yaml::from_str(yaml).expect("valid expect")
    }

    #[test]
    fn string_checks() {
        let e = expect("{contains: [Paris, France], not_contains: London, icontains: CAPITAL}");
        assert!(e
            .check("Paris is the capital of France", "", 1.0)
            .iter()
            .all(|r| r.passed));
        let results = e.check("Paris, London", "", 1.0);
        assert_eq!(results[0].detail, "the answer does not contain \"France\"");
        assert!(!results[1].passed && !results[2].passed);
    }

    #[test]
    fn equals_shows_a_short_diff() {
        let results = expect("equals: The answer is 42.").check("The answer is 41.", "", 1.0);
        assert!(!results[0].passed);
        assert!(
            results[0].detail.contains("differ at byte 15"),
            "{}",
            results[0].detail
        );
    }

    #[test]
    fn metrics() {
        assert_eq!(
            score(
                Metric::TokenF1,
                "Paris is the capital",
                "the capital is Paris"
            ),
            1.0
        );
        assert_eq!(score(Metric::TokenF1, "Rome", "Paris"), 0.0);
        let f1 = score(Metric::TokenF1, "Paris is nice", "Paris is the capital");
        assert!((f1 - 2.0 * (2.0 / 3.0) * (2.0 / 3.0) / (4.0 / 3.0)).abs() < 1e-9);
        // LCS of [paris capital france] and [capital france paris] is 2.
        let rouge = score(
            Metric::RougeL,
            "Paris capital France",
            "capital France Paris",
        );
        assert!((rouge - 2.0 / 3.0).abs() < 1e-9, "{rouge}");
    }

    #[test]
    fn load_time_errors() {
        let err = serde_yaml::from_str::<Expect>("regex: '(unclosed'").expect_err("bad regex");
        assert!(err.to_string().contains("invalid regex"), "{err}");
        let err = serde_yaml::from_str::<Expect>("is_json: {schema: {type: 12}}")
            .expect_err("bad schema");
        assert!(err.to_string().contains("invalid JSON Schema"), "{err}");
        let err = serde_yaml::from_str::<Expect>("similarity: 3").expect_err("bad threshold");
        assert!(err.to_string().contains("outside 0..=1"), "{err}");
    }

    #[test]
    fn json_schema() {
        let e = expect("is_json: {schema: {type: object, required: [city]}}");
        assert!(e.check(r#"{"city": "Paris"}"#, "", 0.0)[0].passed);
        let r = &e.check(r#"{"town": "Paris"}"#, "", 0.0)[0];
        assert!(!r.passed && r.detail.contains("city"), "{}", r.detail);
        assert!(!e.check("Paris", "", 0.0)[0].passed);
    }

    #[test]
    fn narrower_levels_win() {
        let suite = expect("{contains: a, max_latency_ms: 100}");
        let batch = expect("contains: b");
        let merged = batch.or(&suite);
        assert_eq!(merged.contains, Some(Strings(vec!["b".into()])));
        assert_eq!(merged.max_latency_ms, Some(100.0));
    }
}
