//! `answer_correctness`: Fair-Forge's Agentic answer-correctness judgement.
//! The judge scores the answer against `ground_truth_assistant` with
//! Fair-Forge 3.0.0's strict rubric (`fair_forge/metrics/agentic.py`,
//! `_evaluate_answer_correctness`): factual accuracy first, precision
//! (typos and misspellings penalised), completeness; the check passes when
//! the score is at least `min` (Fair-Forge's `threshold`, 0.7 by default).
//!
//! The prompt is Fair-Forge's, sent as its `Judge` sends it without
//! structured output: the rubric with the answer and the ground truth,
//! followed by the JSON format it asks for (`correctness_score`,
//! `reasoning`), as the system message, and the query as the user message.

use serde::Deserialize;

use super::judged::{unjudged, Judged};
use super::{Check, Turn, Verdict};
use crate::judge::{Prompt, Ruling};
use crate::schema::Batch;

/// Fair-Forge's default threshold.
const DEFAULT_MIN: f64 = 0.7;

/// `answer_correctness: 0.7` or `{min: 0.7}`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnswerCorrectness {
    /// The lowest passing score, in 0..=1.
    pub min: f64,
}

/// A minimum score, or `{min}`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
enum Raw {
    Min(f64),
    Full(Full),
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Full {
    /// The lowest passing score, in 0..=1 (default 0.7).
    #[serde(default)]
    min: Option<f64>,
}

super::schema_as!(AnswerCorrectness => Raw);

impl<'de> Deserialize<'de> for AnswerCorrectness {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "`answer_correctness` takes a minimum score (0.7) or {min: 0.7}",
            )
        })?;
        let min = match raw {
            Raw::Min(min) => min,
            Raw::Full(full) => full.min.unwrap_or(DEFAULT_MIN),
        };
        if !(0.0..=1.0).contains(&min) {
            return Err(serde::de::Error::custom(format!(
                "answer_correctness minimum {min} is outside 0..=1"
            )));
        }
        Ok(AnswerCorrectness { min })
    }
}

impl Check for AnswerCorrectness {
    fn name(&self) -> &'static str {
        "answer_correctness"
    }

    fn evaluate(&self, _turn: &Turn<'_>) -> Verdict {
        unjudged()
    }

    fn validate(&self, batch: &Batch) -> Result<(), String> {
        if batch.ground_truth_assistant.trim().is_empty() {
            return Err(
                "`answer_correctness` needs a `ground_truth_assistant` to judge against".to_owned(),
            );
        }
        Ok(())
    }

    fn judged(&self) -> Option<&dyn Judged> {
        Some(self)
    }
}

impl Judged for AnswerCorrectness {
    fn prompt(&self, turn: &Turn<'_>) -> Prompt {
        Prompt {
            system: format!(
                "{HEAD}{}{MIDDLE}{}{TAIL}{FORMAT}",
                turn.answer, turn.ground_truth
            ),
            user: turn.query.to_owned(),
        }
    }

    fn passes(&self, ruling: &Ruling) -> Result<bool, String> {
        match ruling.score {
            Some(score) => Ok(score >= self.min),
            None => Err("it has no `score` (or `correctness_score`)".to_owned()),
        }
    }

    fn shortfall(&self, score: Option<f64>, _ruled: bool) -> String {
        match score {
            Some(score) => format!("score {score:.2}, below {}", self.min),
            None => format!("no score, {} needed", self.min),
        }
    }
}

/// Fair-Forge's rubric, up to the answer.
const HEAD: &str = r#"You are a STRICT evaluator. Your task is to determine if an agent's answer is correct compared to the ground truth.

**Agent's Answer:** "#;

/// Between the answer and the ground truth.
const MIDDLE: &str = "\n\n**Ground Truth:** ";

/// Fair-Forge's rubric, after the ground truth.
const TAIL: &str = r#"

Evaluate the correctness with STRICT criteria:

1. **Factual Accuracy** (most important): Is the core information factually correct?
2. **Precision**: Spelling errors, typos, or incorrect formatting should be penalized
3. **Completeness**: Does it answer what was asked?
4. **Format**: Natural language variations are acceptable ONLY if facts are perfect

IMPORTANT SCORING RULES:
- 1.0: Identical or perfectly correct with natural rephrasing (same facts, perfect spelling)
- 0.85-0.95: Correct facts with slightly more verbose explanation
- 0.65-0.75: Correct core fact BUT has typo/spelling error (e.g., "Poris" instead of "Paris")
- 0.5-0.65: Mostly correct but missing important details
- 0.3-0.5: Partially correct with significant errors
- 0.0-0.3: Wrong answer or completely incorrect

**Typo/Spelling Penalty**:
- Single character typo in short answer: MAX score 0.75
- Multiple typos: MAX score 0.5
- Wrong word entirely: score below 0.3

**Wrong Answer**: Factually incorrect information must score below 0.3

Examples:
- Q: "Capital of France?", A: "Paris", GT: "Paris" → 1.0 (perfect match)
- Q: "Capital of France?", A: "The capital of France is Paris", GT: "Paris" → 0.95 (correct, verbose)
- Q: "Capital of France?", A: "Poris", GT: "Paris" → 0.7 (TYPO PENALTY - core fact known but misspelled)
- Q: "Capital of France?", A: "Pariis", GT: "Paris" → 0.7 (TYPO PENALTY)
- Q: "Capital of France?", A: "Lyon", GT: "Paris" → 0.0 (completely wrong city)
- Q: "Capital of France?", A: "London", GT: "Paris" → 0.0 (wrong country)
"#;

/// The verdict format Fair-Forge's `Judge` appends to the system prompt
/// (from `AnswerCorrectnessOutput`'s JSON Schema).
const FORMAT: &str = r#"
After your reasoning, provide ONLY the final answer in the following JSON format:
```json
{
    "correctness_score": <number> // Correctness score (0.0-1.0)
    "reasoning": <string> // Brief explanation of the evaluation
}
```

Do not include any additional text after the JSON.
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testing::parse;

    #[test]
    fn the_prompt_is_fair_forges() {
        let mut batch = Batch::new("q", "Capital of France?");
        batch.assistant = "Poris".into();
        batch.ground_truth_assistant = "Paris".into();
        let check = AnswerCorrectness { min: 0.7 };
        let prompt = check.prompt(&Turn::new(&batch, 1.0));
        assert_eq!(prompt.user, "Capital of France?");
        assert!(prompt.system.starts_with("You are a STRICT evaluator."));
        assert!(prompt
            .system
            .contains("**Agent's Answer:** Poris\n\n**Ground Truth:** Paris\n\nEvaluate"));
        assert!(prompt
            .system
            .contains("- Single character typo in short answer: MAX score 0.75"));
        assert!(prompt.system.ends_with(
            "    \"reasoning\": <string> // Brief explanation of the evaluation\n}\n```\n\nDo not include any additional text after the JSON.\n"
        ));
    }

    #[test]
    fn reads_a_minimum_and_passes_at_it() {
        assert_eq!(parse("answer_correctness: 0.8").iter().count(), 1);
        for (yaml, min) in [("0.8", 0.8), ("{min: 0.9}", 0.9), ("{}", 0.7)] {
            let check: AnswerCorrectness = serde_yaml::from_str(yaml).expect(yaml);
            assert_eq!(check.min, min);
        }
        for bad in ["1.5", "{min: 2}", "{minimum: 0.5}", "yes"] {
            assert!(
                serde_yaml::from_str::<AnswerCorrectness>(bad).is_err(),
                "{bad}"
            );
        }
        let check = AnswerCorrectness { min: 0.7 };
        let ruling = |score| Ruling {
            score,
            reason: String::new(),
            pass: Some(true),
        };
        assert_eq!(check.passes(&ruling(Some(0.7))), Ok(true));
        assert_eq!(check.passes(&ruling(Some(0.69))), Ok(false));
        assert!(check.passes(&ruling(None)).is_err());
    }
}
