//! Tokens and cost: what the runner's and the judge's replies say they
//! used, what it cost at the suite's prices, and the suite's budget.
//!
//! ```yaml
//! price: {input_per_mtok: 0.15, output_per_mtok: 0.60}   # USD per million tokens, the runner's
//! budget: {max_cost_usd: 2.50}                           # stop sending new turns once spent
//! judge:
//!   model: gpt-4o-mini
//!   price: {input_per_mtok: 0.15, output_per_mtok: 0.60} # the judge's own
//! ```
//!
//! A reply's token counts ([`Usage`]) come from its `usage` object
//! (`prompt_tokens`, `completion_tokens`, `total_tokens`, or the
//! `input_tokens` / `output_tokens` some OpenAI-compatible servers send).
//! Each run of a batch records what its runner call and its judge calls
//! used ([`Spend`], with the cost when a price applies); the reports add
//! them up per suite (`report::tally`). A meter (`budget`) adds the cost up while
//! the suite runs and stops it once the budget is spent.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The tokens one reply (or several, added up) used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens of the request (`prompt_tokens`, or `input_tokens`).
    pub prompt_tokens: u64,
    /// Tokens of the answer (`completion_tokens`, or `output_tokens`).
    pub completion_tokens: u64,
    /// All of them (`total_tokens`, else the sum of the other two).
    pub total_tokens: u64,
}

impl Usage {
    /// Tokens in and out; the total is their sum.
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
        }
    }

    /// The `usage` of a chat-completions reply, when it has one with at
    /// least one token count (counts that are not whole numbers are left
    /// out).
    pub fn from_reply(reply: &Value) -> Option<Usage> {
        reply.get("usage").and_then(Usage::from_counts)
    }

    /// The token counts of a `usage` object (see [`Usage::from_reply`]).
    pub fn from_counts(usage: &Value) -> Option<Usage> {
        let count = |names: &[&str]| names.iter().find_map(|n| usage.get(*n)?.as_u64());
        let prompt = count(&["prompt_tokens", "input_tokens"]);
        let completion = count(&["completion_tokens", "output_tokens"]);
        let total = count(&["total_tokens"]);
        if prompt.is_none() && completion.is_none() && total.is_none() {
            return None;
        }
        let mut usage = Usage::new(prompt.unwrap_or(0), completion.unwrap_or(0));
        if let Some(total) = total {
            usage.total_tokens = total;
        }
        Some(usage)
    }

    /// Both counts added up.
    pub fn plus(self, other: Usage) -> Usage {
        Usage {
            prompt_tokens: self.prompt_tokens.saturating_add(other.prompt_tokens),
            completion_tokens: self
                .completion_tokens
                .saturating_add(other.completion_tokens),
            total_tokens: self.total_tokens.saturating_add(other.total_tokens),
        }
    }
}

/// `price: {input_per_mtok, output_per_mtok}`: USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// USD per million prompt tokens.
    pub input_per_mtok: f64,
    /// USD per million completion tokens.
    pub output_per_mtok: f64,
}

impl Price {
    /// The price, checked: both rates finite and not negative.
    pub fn check(self) -> Result<Price, String> {
        for (key, rate) in [
            ("input_per_mtok", self.input_per_mtok),
            ("output_per_mtok", self.output_per_mtok),
        ] {
            if !(rate.is_finite() && rate >= 0.0) {
                return Err(format!(
                    "`price.{key}` {rate} must be a number of USD per million tokens, 0 or more"
                ));
            }
        }
        Ok(self)
    }

    /// What `usage` costs, in USD.
    pub fn cost(&self, usage: &Usage) -> f64 {
        (usage.prompt_tokens as f64 * self.input_per_mtok
            + usage.completion_tokens as f64 * self.output_per_mtok)
            / 1_000_000.0
    }
}

/// `budget: {max_cost_usd}`: what a suite's run may spend.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// USD; once the runner's and the judge's cost reach it, no new turn is sent.
    pub max_cost_usd: f64,
}

impl Budget {
    /// The budget, checked: more than 0.
    pub fn check(self) -> Result<Budget, String> {
        let max = self.max_cost_usd;
        if !(max.is_finite() && max > 0.0) {
            return Err(format!(
                "`budget.max_cost_usd` {max} must be a number of USD more than 0"
            ));
        }
        Ok(self)
    }

    /// Why turns stop: `budget of $X spent`.
    pub fn reason(&self) -> String {
        format!("budget of ${} spent", self.max_cost_usd)
    }
}

/// What one run of a batch spent on one side (its runner call, or its
/// judge calls): the tokens, and their cost when a price applies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Spend {
    /// Tokens of the requests.
    pub prompt_tokens: u64,
    /// Tokens of the answers.
    pub completion_tokens: u64,
    /// All of them.
    pub total_tokens: u64,
    /// Their cost in USD, when a price applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

impl Spend {
    /// `usage` at `price` (the cost rounded to a billionth of a dollar).
    pub fn new(usage: Usage, price: Option<&Price>) -> Self {
        Spend {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            total_tokens: usage.total_tokens,
            cost_usd: price.map(|p| rounded(p.cost(&usage))),
        }
    }

    /// The tokens.
    pub fn usage(&self) -> Usage {
        Usage {
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            total_tokens: self.total_tokens,
        }
    }

    /// Both added up (the cost is known when either's is).
    pub fn plus(self, other: Spend) -> Spend {
        let usage = self.usage().plus(other.usage());
        let cost_usd = match (self.cost_usd, other.cost_usd) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
        };
        Spend {
            cost_usd,
            ..Spend::new(usage, None)
        }
    }
}

/// `cost` rounded to a billionth of a dollar (what float sums add below).
pub fn rounded(cost: f64) -> f64 {
    (cost * 1e9).round() / 1e9
}

/// `$0.000123`: a cost for a person.
pub fn dollars(cost: f64) -> String {
    format!("${cost:.6}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_both_namings_of_usage() {
        let openai =
            json!({"usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}});
        assert_eq!(Usage::from_reply(&openai), Some(Usage::new(12, 5)));
        let responses = json!({"usage": {"input_tokens": 3, "output_tokens": 4}});
        assert_eq!(Usage::from_reply(&responses), Some(Usage::new(3, 4)));
        let total_only = json!({"usage": {"total_tokens": 9}});
        assert_eq!(
            Usage::from_reply(&total_only).map(|u| u.total_tokens),
            Some(9)
        );
        for none in [
            json!({}),
            json!({"usage": null}),
            json!({"usage": {"prompt_tokens": -1}}),
        ] {
            assert_eq!(Usage::from_reply(&none), None, "{none}");
        }
    }

    #[test]
    fn prices_and_budgets() {
        let price = Price {
            input_per_mtok: 2.0,
            output_per_mtok: 10.0,
        };
        assert!((price.cost(&Usage::new(1_000, 100)) - 0.003).abs() < 1e-12);
        let bad = Price {
            input_per_mtok: -1.0,
            ..price
        };
        assert!(bad.check().unwrap_err().contains("input_per_mtok"));
        let budget = Budget { max_cost_usd: 0.01 };
        assert_eq!(budget.reason(), "budget of $0.01 spent");
        assert!(Budget { max_cost_usd: 0.0 }.check().is_err());
    }

    #[test]
    fn spends_add_up_with_their_costs() {
        let priced = Spend::new(
            Usage::new(10, 5),
            Some(&Price {
                input_per_mtok: 1e6,
                output_per_mtok: 0.0,
            }),
        );
        let free = Spend::new(Usage::new(1, 1), None);
        let sum = priced.plus(free);
        assert_eq!(sum.usage(), Usage::new(11, 6));
        assert_eq!(sum.cost_usd, Some(10.0));
        assert_eq!(free.plus(free).cost_usd, None);
    }
}
