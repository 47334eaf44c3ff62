//! `max_tokens`: a limit on the tokens the runner said a turn used.

use serde::Deserialize;

use super::{Check, Turn, Verdict};

/// `max_tokens: N`: the turn's `total_tokens`, as its runner reported them
/// (the `openai` runner reads the reply's `usage`; a custom runner gives
/// [`Reply::with_usage`](crate::Reply::with_usage)), is at most N. A turn
/// whose runner reported no usage fails: the limit cannot be known to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct MaxTokens(pub u64);

impl Check for MaxTokens {
    fn name(&self) -> &'static str {
        "max_tokens"
    }

    fn evaluate(&self, turn: &Turn<'_>) -> Verdict {
        let max = self.0;
        let Some(usage) = turn.usage else {
            return Verdict::new(
                false,
                format!(
                    "the runner reported no token usage for this turn, so the limit of {max} tokens cannot be checked"
                ),
            );
        };
        let total = usage.total_tokens;
        Verdict::new(
            total <= max,
            format!(
                "used {total} tokens ({} prompt + {} completion), more than {max}",
                usage.prompt_tokens, usage.completion_tokens
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::parse;
    use super::super::Turn;
    use crate::schema::Batch;
    use crate::usage::Usage;

    #[test]
    fn the_limit_is_inclusive_and_needs_usage() {
        let checks = parse("max_tokens: 20");
        let batch = Batch::new("q", "query");
        let turn = Turn::new(&batch, 1.0);
        let at = checks.evaluate(&turn.with_usage(Some(Usage::new(12, 8))));
        assert!(at[0].passed, "{at:?}");
        let over = checks.evaluate(&turn.with_usage(Some(Usage::new(12, 9))));
        assert_eq!(
            over[0].detail,
            "used 21 tokens (12 prompt + 9 completion), more than 20"
        );
        let unknown = checks.evaluate(&turn);
        assert!(!unknown[0].passed);
        assert!(
            unknown[0].detail.contains("reported no token usage"),
            "{unknown:?}"
        );
        assert!(serde_yaml::from_str::<crate::check::Checks>("max_tokens: -1").is_err());
    }
}
