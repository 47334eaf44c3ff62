//! A suite's tokens and cost, added up from its records for the reports
//! (the summary JSON's `usage`, JUnit's properties, the console's and the
//! scoreboard's lines, the HTML report).

use serde_json::Value;

use crate::run::BatchRecord;
use crate::usage::{dollars, rounded, Spend};

/// A suite's tokens and cost, from its records: the runner's and the
/// judge's sides apart, each with the runs that reported usage.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SuiteUsage {
    /// What the runner calls used, and how many reported usage.
    pub runner: Option<(Spend, usize)>,
    /// What the judge calls used, and for how many runs.
    pub judge: Option<(Spend, usize)>,
}

impl SuiteUsage {
    /// The sum over every run of `records` (selected or not: an earlier
    /// turn run to keep a conversation intact was paid for too).
    #[cfg(test)]
    pub fn of(records: &[BatchRecord]) -> SuiteUsage {
        let mut usage = SuiteUsage::default();
        records.iter().for_each(|r| usage.add(r));
        usage
    }

    /// Adds what `record`'s runs spent.
    pub fn add(&mut self, record: &BatchRecord) {
        let add = |total: Option<(Spend, usize)>, spend: Option<Spend>| match (total, spend) {
            (total, None) => total,
            (None, Some(s)) => Some((s, 1)),
            (Some((t, n)), Some(s)) => Some((t.plus(s), n + 1)),
        };
        for run in &record.runs {
            self.runner = add(self.runner, run.usage);
            self.judge = add(self.judge, run.judge_usage);
        }
    }

    /// Whether any run reported usage.
    pub fn is_empty(&self) -> bool {
        self.runner.is_none() && self.judge.is_none()
    }

    /// The runner's and the judge's cost together, when either has one.
    pub fn cost_usd(&self) -> Option<f64> {
        let costs = [self.runner, self.judge].map(|side| side.and_then(|(s, _)| s.cost_usd));
        match costs {
            [None, None] => None,
            [a, b] => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
        }
    }

    /// The summary JSON's `usage` key: `{runner: {..., turns}, judge:
    /// {..., turns}, cost_usd}`, costs rounded to a billionth of a dollar.
    pub fn to_json(self) -> Value {
        let side = |side: Option<(Spend, usize)>| {
            side.map(|(spend, turns)| {
                let mut value = serde_json::json!({
                    "prompt_tokens": spend.prompt_tokens,
                    "completion_tokens": spend.completion_tokens,
                    "total_tokens": spend.total_tokens,
                    "turns": turns,
                });
                if let Some(cost) = spend.cost_usd {
                    value["cost_usd"] = rounded(cost).into();
                }
                value
            })
        };
        let mut value = serde_json::Map::new();
        for (key, spend) in [("runner", side(self.runner)), ("judge", side(self.judge))] {
            if let Some(spend) = spend {
                value.insert(key.into(), spend);
            }
        }
        if let Some(cost) = self.cost_usd() {
            value.insert("cost_usd".into(), rounded(cost).into());
        }
        Value::Object(value)
    }

    /// One line for a person: `runner 1,2 tokens (...) $0.000123; judge ...`.
    pub fn line(&self) -> String {
        let side = |name: &str, side: Option<(Spend, usize)>| {
            side.map(|(s, _)| {
                let cost = s.cost_usd.map(|c| format!(", {}", dollars(c)));
                format!(
                    "{name} {} tokens ({} in, {} out{})",
                    s.total_tokens,
                    s.prompt_tokens,
                    s.completion_tokens,
                    cost.unwrap_or_default()
                )
            })
        };
        let mut parts: Vec<String> = [side("runner", self.runner), side("judge", self.judge)]
            .into_iter()
            .flatten()
            .collect();
        if let Some(cost) = self.cost_usd() {
            parts.push(format!("cost {}", dollars(cost)));
        }
        parts.join("; ")
    }
}
