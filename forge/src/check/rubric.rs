//! `rubric`: a free-form rubric judged against the query and the answer, as
//! promptfoo's `llm-rubric` and DeepEval's G-Eval do. The check passes on
//! the judge's `pass`, or, when the judge gives none, when its score is at
//! least `min_score` (0.5 by default).

use serde::Deserialize;

use super::judged::{unjudged, Judged};
use super::{Check, Turn, Verdict};
use crate::judge::{Prompt, Ruling};

/// The default `min_score`.
const DEFAULT_MIN_SCORE: f64 = 0.5;

/// `rubric: "criteria"` or `{criteria, min_score}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rubric {
    /// What the answer must do, in words.
    pub criteria: String,
    /// The lowest passing score when the judge gives no `pass`.
    pub min_score: f64,
}

/// The criteria, or `{criteria, min_score}`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
enum Raw {
    Criteria(String),
    Full(Full),
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Full {
    /// What the answer must do, in words.
    criteria: String,
    /// The lowest passing score when the judge gives no `pass` (default 0.5).
    #[serde(default)]
    min_score: Option<f64>,
}

super::schema_as!(Rubric => Raw);

impl<'de> Deserialize<'de> for Rubric {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "`rubric` takes the criteria as text, or {criteria: ..., min_score: 0.5}",
            )
        })?;
        let rubric = match raw {
            Raw::Criteria(criteria) => Rubric {
                criteria,
                min_score: DEFAULT_MIN_SCORE,
            },
            Raw::Full(full) => Rubric {
                criteria: full.criteria,
                min_score: full.min_score.unwrap_or(DEFAULT_MIN_SCORE),
            },
        };
        if rubric.criteria.trim().is_empty() {
            return Err(serde::de::Error::custom(
                "`rubric` criteria must not be empty",
            ));
        }
        if !(0.0..=1.0).contains(&rubric.min_score) {
            return Err(serde::de::Error::custom(format!(
                "rubric min_score {} is outside 0..=1",
                rubric.min_score
            )));
        }
        Ok(rubric)
    }
}

impl Check for Rubric {
    fn name(&self) -> &'static str {
        "rubric"
    }

    fn evaluate(&self, _turn: &Turn<'_>) -> Verdict {
        unjudged()
    }

    fn judged(&self) -> Option<&dyn Judged> {
        Some(self)
    }
}

impl Judged for Rubric {
    fn prompt(&self, turn: &Turn<'_>) -> Prompt {
        Prompt {
            system: SYSTEM.to_owned(),
            user: format!(
                "**Rubric:** {}\n\n**Question:** {}\n\n**Answer:** {}",
                self.criteria.trim(),
                turn.query,
                turn.answer
            ),
        }
    }

    fn passes(&self, ruling: &Ruling) -> Result<bool, String> {
        match (ruling.pass, ruling.score) {
            (Some(pass), _) => Ok(pass),
            (None, Some(score)) => Ok(score >= self.min_score),
            (None, None) => Err("it has neither `pass` nor `score`".to_owned()),
        }
    }

    fn shortfall(&self, score: Option<f64>, ruled: bool) -> String {
        match (ruled, score) {
            (true, Some(score)) => {
                format!("the judge ruled that the answer fails the rubric (score {score:.2})")
            }
            (true, None) => "the judge ruled that the answer fails the rubric".to_owned(),
            (false, Some(score)) => format!("score {score:.2}, below {}", self.min_score),
            (false, None) => format!("no score, {} needed", self.min_score),
        }
    }
}

/// The grader's instructions.
const SYSTEM: &str = r#"You are grading an AI assistant's answer against a rubric. Read the rubric, the question the assistant was asked and its answer. The answer passes when it meets every requirement of the rubric; judge only what the rubric asks.

Respond with ONLY a JSON object, with no other text:
{"reason": "<a brief explanation>", "pass": <true or false>, "score": <a number from 0.0 (meets none of the rubric) to 1.0 (meets all of it)>}
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Batch;

    #[test]
    fn reads_criteria_and_passes_on_pass_else_score() {
        let short: Rubric = serde_yaml::from_str("Is polite").expect("text");
        assert_eq!(short.min_score, 0.5);
        let full: Rubric =
            serde_yaml::from_str("{criteria: Names a city, min_score: 0.8}").expect("full");
        assert_eq!(full.min_score, 0.8);
        for bad in [
            "''",
            "{criteria: x, min_score: 3}",
            "{min_score: 0.5}",
            "{criteria: x, min: 1}",
        ] {
            assert!(serde_yaml::from_str::<Rubric>(bad).is_err(), "{bad}");
        }
        let ruling = |pass, score| Ruling {
            score,
            reason: String::new(),
            pass,
        };
        assert_eq!(full.passes(&ruling(Some(true), Some(0.1))), Ok(true));
        assert_eq!(full.passes(&ruling(Some(false), Some(0.9))), Ok(false));
        assert_eq!(full.passes(&ruling(None, Some(0.8))), Ok(true));
        assert_eq!(full.passes(&ruling(None, Some(0.79))), Ok(false));
        let mut batch = Batch::new("q", "Where is the Louvre?");
        batch.assistant = "In Paris.".into();
        let prompt = full.prompt(&Turn::new(&batch, 1.0));
        assert_eq!(
            prompt.user,
            "**Rubric:** Names a city\n\n**Question:** Where is the Louvre?\n\n**Answer:** In Paris."
        );
    }
}
