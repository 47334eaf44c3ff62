//! `similarity`: the answer's similarity to `ground_truth_assistant`, and
//! the metrics behind it: `token_f1` (SQuAD's token-overlap F1 after
//! lower-casing and removing punctuation and articles) and `rouge_l`
//! (ROUGE-L F-measure: longest common token subsequence).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{Check, Turn, Verdict};
use crate::schema::Batch;

/// A similarity metric between an answer and the ground truth.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Token-overlap F1 (SQuAD).
    #[default]
    TokenF1,
    /// ROUGE-L F-measure.
    RougeL,
}

impl Metric {
    /// The metric's name, as suites write it.
    pub fn name(self) -> &'static str {
        match self {
            Metric::TokenF1 => "token_f1",
            Metric::RougeL => "rouge_l",
        }
    }
}

/// `similarity`: a minimum score against `ground_truth_assistant`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    /// The metric.
    pub metric: Metric,
    /// The minimum score, in 0..=1.
    pub min: f64,
}

/// A minimum score, or `{metric, min}`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
enum Raw {
    Min(f64),
    Full {
        /// The metric (default `token_f1`).
        #[serde(default)]
        metric: Metric,
        /// The minimum score, in 0..=1.
        min: f64,
    },
}

super::schema_as!(Similarity => Raw);

impl<'de> Deserialize<'de> for Similarity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
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

impl Check for Similarity {
    fn name(&self) -> &'static str {
        "similarity"
    }

    fn evaluate(&self, turn: &Turn<'_>) -> Verdict {
        let ground_truth = turn.ground_truth;
        let score = score(self.metric, turn.answer, ground_truth);
        Verdict::new(
            score >= self.min,
            format!(
                "{} similarity to the ground truth is {score:.3}, below {} (ground truth: {ground_truth:?})",
                self.metric.name(),
                self.min
            ),
        )
        .with_score(score)
    }

    fn validate(&self, batch: &Batch) -> Result<(), String> {
        if batch.ground_truth_assistant.is_empty() {
            return Err("`similarity` needs a `ground_truth_assistant` to compare with".to_owned());
        }
        Ok(())
    }
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
    let overlap = match metric {
        Metric::TokenF1 => common_tokens(&a, &r),
        Metric::RougeL => lcs(&a, &r),
    };
    if overlap == 0 {
        return 0.0;
    }
    let precision = overlap as f64 / a.len() as f64;
    let recall = overlap as f64 / r.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

/// Lower-cased tokens, without punctuation and the articles a/an/the.
fn normalize(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty() && !matches!(*t, "a" | "an" | "the"))
        .map(str::to_owned)
        .collect()
}

/// The tokens `a` and `r` share, counted with multiplicity.
fn common_tokens(a: &[String], r: &[String]) -> usize {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for token in r {
        *counts.entry(token.as_str()).or_default() += 1;
    }
    let mut common = 0;
    for token in a {
        if let Some(count) = counts.get_mut(token.as_str()) {
            if *count > 0 {
                *count -= 1;
                common += 1;
            }
        }
    }
    common
}

/// The length of the longest common subsequence of `a` and `b`.
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
    use super::super::testing::run;
    use super::super::Checks;
    use super::*;

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
        // Repeated tokens count once per occurrence in the reference.
        let f1 = score(Metric::TokenF1, "paris paris", "paris");
        assert!((f1 - 2.0 / 3.0).abs() < 1e-9, "{f1}");
        assert_eq!(score(Metric::RougeL, "", "the"), 1.0);
        assert_eq!(score(Metric::RougeL, "x", ""), 0.0);
    }

    #[test]
    fn the_check_passes_at_its_threshold_and_fails_below() {
        let r = &run(
            "similarity: 1",
            "Paris is the capital",
            "the capital is Paris",
            0.0,
        )[0];
        assert!(r.passed && r.detail.is_empty(), "{r:?}");
        assert_eq!(r.score, Some(1.0));
        let r = &run(
            "similarity: {metric: rouge_l, min: 0.7}",
            "Paris capital France",
            "capital France Paris",
            0.0,
        )[0];
        assert!(!r.passed);
        assert_eq!(
            r.detail,
            r#"rouge_l similarity to the ground truth is 0.667, below 0.7 (ground truth: "capital France Paris")"#
        );
    }

    #[test]
    fn load_time_errors() {
        let err = serde_yaml::from_str::<Checks>("similarity: 3").expect_err("bad threshold");
        assert!(err.to_string().contains("outside 0..=1"), "{err}");
        let checks: Checks = serde_yaml::from_str("similarity: 0.5").expect("valid");
        let mut batch = Batch::new("q", "hi");
        let err = checks.validate(&batch, 1).expect_err("no ground truth");
        assert!(err.contains("needs a `ground_truth_assistant`"), "{err}");
        batch.ground_truth_assistant = "hello".to_owned();
        assert_eq!(checks.validate(&batch, 1), Ok(()));
    }
}
