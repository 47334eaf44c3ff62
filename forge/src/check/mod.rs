//! Checks: what a batch's answer must satisfy, written as `expect:` on a
//! batch, a dataset or the suite (the narrower level wins, check by check).
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
//! | `max_tokens` | the runner reported the turn's tokens, at most this many in all |
//! | `similarity: 0.6` or `{metric: rouge_l, min: 0.6}` | similarity to `ground_truth_assistant` is at least `min` |
//! | `tool_correctness: 1.0` or `{min, weights}` | Fair-Forge's tool-correctness score of `agentic` against `ground_truth_agentic` is at least `min` |
//! | `pass_pow_k: {k, min}` | on a repeated batch: pass^k of its runs is at least `min` |
//! | `answer_correctness: 0.7` or `{min: 0.7}` | the judge's score of the answer against `ground_truth_assistant` (Fair-Forge's rubric) is at least `min` |
//! | `rubric: "criteria"` or `{criteria, min_score: 0.5}` | the judge rules that the answer meets the rubric (its `pass`, else score >= `min_score`) |
//!
//! Similarity metrics: `token_f1` (default; SQuAD's token-overlap F1 after
//! lower-casing and removing punctuation and articles) and `rouge_l`
//! (ROUGE-L F-measure: longest common token subsequence).
//!
//! The judged checks (`answer_correctness`, `rubric`) are decided by the
//! suite's LLM judge ([`crate::judge`]) once the turn's answer is known:
//! their [`Check::judged`] side says what to ask and how to read the
//! ruling; `judged.rs` holds what they share.
//!
//! Each check is a value implementing [`Check`]; one file per family
//! (`text.rs`, `json.rs`, `latency.rs`, `tokens.rs`, `similarity.rs`, `tool.rs`,
//! `repeats.rs`, `answer_correctness.rs`, `rubric.rs`). The checks of one
//! level are a [`Checks`], read from its `expect:` mapping and merged with
//! the outer levels' by [`Checks::or`].
//!
//! # Adding a check
//!
//! One new file (and its `mod` line) with a type that reads its YAML value
//! and implements [`Check`] (its `name` is its key), and one line in the
//! `registry!` below naming its key. The registry's order is the order of
//! the results in the reports; unknown keys, duplicate keys and the "did you
//! mean" suggestion come with it.
//!
//! ```ignore
//! // check/word_count.rs
//! #[derive(Debug, serde::Deserialize)]
//! #[serde(transparent)]
//! pub struct MaxWords(usize);
//!
//! impl Check for MaxWords {
//!     fn name(&self) -> &'static str {
//!         "max_words"
//!     }
//!     fn evaluate(&self, turn: &Turn<'_>) -> Verdict {
//!         let words = turn.answer.split_whitespace().count();
//!         Verdict::new(words <= self.0, format!("{words} words, more than {}", self.0))
//!     }
//! }
//!
//! // check/mod.rs
//! mod word_count;
//! registry! {
//!     // ...
//!     "max_words" => word_count::MaxWords,
//! }
//! ```

mod answer_correctness;
mod json;
mod judged;
mod latency;
mod level;
pub(crate) mod repeats;
mod rubric;
mod similarity;
mod text;
mod tokens;
mod tool;

use std::fmt::Debug;

use serde::{Deserialize, Serialize};

use crate::schema::{Batch, Object};
use crate::usage::Usage;

pub use judged::Judged;
pub use level::Checks;

/// Declares the checks `expect:` accepts: `"key" => Type`, in the order of
/// their results. `Type` reads the key's value and implements [`Check`].
macro_rules! registry {
    ($($key:literal => $check:ty,)*) => {
        /// The keys `expect:` accepts, in the order of their results.
        const KEYS: &[&str] = &[$($key),*];

        /// Reads the value of the check at `KEYS[rank]` from `map`
        /// (`None` for a null value, which sets no check).
        fn next_check<'de, A: serde::de::MapAccess<'de>>(
            rank: usize,
            map: &mut A,
        ) -> Result<Option<std::sync::Arc<dyn Check>>, A::Error> {
            let key = KEYS.get(rank).copied();
            $(
                if key == Some($key) {
                    let check: Option<$check> = map.next_value()?;
                    return Ok(check.map(|c| std::sync::Arc::new(c) as std::sync::Arc<dyn Check>));
                }
            )*
            Err(serde::de::Error::custom("unregistered check"))
        }

        /// The JSON Schema of an `expect:` mapping: one optional property
        /// per check, from the type that reads it.
        fn expect_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
            let mut properties = serde_json::Map::new();
            $(
                properties.insert($key.to_owned(), g.subschema_for::<Option<$check>>().to_value());
            )*
            schemars::json_schema!({
                "type": "object",
                "properties": properties,
                "additionalProperties": false,
            })
        }
    };
}

/// The JSON Schema of a type that reads itself through another type
/// (`Raw`): the schema of that type, so the two cannot drift.
macro_rules! schema_as {
    ($ty:ty => $raw:ty) => {
        impl schemars::JsonSchema for $ty {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($ty).into()
            }

            fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
                <$raw as schemars::JsonSchema>::json_schema(g)
            }
        }
    };
}
pub(crate) use schema_as;

registry! {
    "contains" => text::Contains,
    "icontains" => text::IContains,
    "not_contains" => text::NotContains,
    "equals" => text::Equals,
    "starts_with" => text::StartsWith,
    "regex" => text::Regex,
    "is_json" => json::IsJson,
    "max_latency_ms" => latency::MaxLatencyMs,
    "max_tokens" => tokens::MaxTokens,
    "similarity" => similarity::Similarity,
    "tool_correctness" => tool::ToolCorrectness,
    "pass_pow_k" => repeats::PassPowK,
    "answer_correctness" => answer_correctness::AnswerCorrectness,
    "rubric" => rubric::Rubric,
}

/// One check on a turn, such as `contains: Paris`.
pub trait Check: Send + Sync + Debug {
    /// The check's name: its key under `expect:`.
    fn name(&self) -> &'static str;

    /// Judges one turn.
    fn evaluate(&self, turn: &Turn<'_>) -> Verdict;

    /// Whether the check can judge `batch` at all, asked when the suite
    /// loads; the error says what the batch lacks.
    fn validate(&self, batch: &Batch) -> Result<(), String> {
        let _ = batch;
        Ok(())
    }

    /// Whether the check judges a repeated batch's runs together
    /// ([`Check::evaluate_runs`]) instead of each turn.
    fn over_runs(&self) -> bool {
        false
    }

    /// Judges the runs of a batch together, `passes` of `runs` having
    /// passed (only asked of a check [`over_runs`](Check::over_runs)).
    fn evaluate_runs(&self, passes: usize, runs: usize) -> Verdict {
        let _ = (passes, runs);
        Verdict::new(true, String::new())
    }

    /// Whether the check can judge a batch that runs `runs` times
    /// (`repeat`), asked when the suite loads.
    fn validate_runs(&self, runs: usize) -> Result<(), String> {
        let _ = runs;
        Ok(())
    }

    /// The judged side of a check an LLM judge decides (`None` for the
    /// checks [`evaluate`](Check::evaluate) decides alone). A judged
    /// check's `evaluate` fails: it is never decided without its judge.
    fn judged(&self) -> Option<&dyn Judged> {
        None
    }
}

/// What a check sees of a turn that the runner answered.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Turn<'a> {
    /// The question (`query`).
    pub query: &'a str,
    /// The answer (`assistant`).
    pub answer: &'a str,
    /// The reference answer (`ground_truth_assistant`).
    pub ground_truth: &'a str,
    /// The turn's time in milliseconds.
    pub time_ms: f64,
    /// The batch's final `agentic` data (tools used, ...).
    pub agentic: Option<&'a Object>,
    /// The expected agentic data (`ground_truth_agentic`).
    pub ground_truth_agentic: Option<&'a Object>,
    /// The tokens the runner said the turn used.
    pub usage: Option<Usage>,
}

impl<'a> Turn<'a> {
    /// The view of `batch`, answered in `time_ms`.
    pub fn new(batch: &'a Batch, time_ms: f64) -> Self {
        Turn {
            query: &batch.query,
            answer: &batch.assistant,
            ground_truth: &batch.ground_truth_assistant,
            time_ms,
            agentic: batch.agentic.as_ref(),
            ground_truth_agentic: batch.ground_truth_agentic.as_ref(),
            usage: None,
        }
    }

    /// This view, with the tokens the runner said the turn used.
    pub fn with_usage(self, usage: Option<Usage>) -> Self {
        Turn { usage, ..self }
    }
}

/// A check's judgement of one turn.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Whether the check held.
    pub passed: bool,
    /// A score behind the verdict, when the check computes one.
    pub score: Option<f64>,
    /// Why the check did not hold (dropped when it passed).
    pub detail: String,
    /// The reason behind the score (a judge's, say), kept also when the
    /// check passed.
    pub reason: Option<String>,
    /// The parts of the score, by name, when the check has several.
    pub scores: Option<Object>,
}

impl Verdict {
    /// A verdict without a score; `detail` says why it failed.
    pub fn new(passed: bool, detail: String) -> Self {
        Verdict {
            passed,
            score: None,
            detail,
            reason: None,
            scores: None,
        }
    }

    /// This verdict with the reason behind its score.
    pub fn with_reason(self, reason: String) -> Self {
        Verdict {
            reason: Some(reason),
            ..self
        }
    }

    /// This verdict with the parts of its score.
    pub fn with_scores(self, scores: Object) -> Self {
        Verdict {
            scores: Some(scores),
            ..self
        }
    }

    /// This verdict with a score.
    pub fn with_score(self, score: f64) -> Self {
        Verdict {
            score: Some(score),
            ..self
        }
    }
}

/// The result of one check, as the summary JSON's `checks` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// The check's name, such as `contains`.
    pub check: String,
    /// Whether it held.
    pub passed: bool,
    /// Why it did not (empty when it passed).
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub detail: String,
    /// The check's score, when it computes one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub score: Option<f64>,
    /// The parts of the score, when the check has several
    /// (`tool_correctness`: Fair-Forge's field names).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub scores: Option<Object>,
    /// The reason behind the score, when the check gives one (a judge's).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
}

impl CheckResult {
    /// The result of `check`, whose verdict is `verdict`.
    pub(crate) fn new(check: &dyn Check, verdict: Verdict) -> Self {
        CheckResult {
            check: check.name().to_owned(),
            passed: verdict.passed,
            detail: if verdict.passed {
                String::new()
            } else {
                verdict.detail
            },
            score: verdict.score,
            scores: verdict.scores,
            reason: verdict.reason,
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers for the families' unit tests.
    use super::*;

    /// Reads one check from its YAML `key: value`.
    pub fn parse(yaml: &str) -> Checks {
        serde_yaml::from_str(yaml).expect("valid checks")
    }

    /// The results of `yaml`'s checks on `answer` (with `ground_truth`, in `time_ms`).
    pub fn run(yaml: &str, answer: &str, ground_truth: &str, time_ms: f64) -> Vec<CheckResult> {
        let mut batch = Batch::new("q", "query");
        batch.assistant = answer.to_owned();
        batch.ground_truth_assistant = ground_truth.to_owned();
        parse(yaml).evaluate(&Turn::new(&batch, time_ms))
    }

    /// The one result of `yaml`'s single check on `answer`.
    pub fn one(yaml: &str, answer: &str) -> CheckResult {
        let mut results = run(yaml, answer, "", 0.0);
        assert_eq!(results.len(), 1, "{results:?}");
        results.remove(0)
    }
}
