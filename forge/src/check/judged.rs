//! What the judged checks (`answer_correctness`, `rubric`) share: the
//! [`Judged`] side of a check, and [`decide`], which asks the judge (once
//! per vote) and turns its rulings into a [`Verdict`]: the majority of the
//! votes, the mean score, the reason of a vote on the winning side. A judge
//! that gives no readable ruling, or keeps failing, fails the check.

use super::{Turn, Verdict};
use crate::judge::{Judge, Prompt, Ruling};

/// The judged side of a [`Check`](super::Check), decided by an LLM judge
/// once the turn's answer is known.
pub trait Judged: Send + Sync {
    /// What to ask the judge about `turn`.
    fn prompt(&self, turn: &Turn<'_>) -> Prompt;

    /// Whether one ruling passes the check; an error when the ruling lacks
    /// what the check needs.
    fn passes(&self, ruling: &Ruling) -> Result<bool, String>;

    /// Why the check failed, given the (mean) score and whether the judge
    /// ruled with `pass`: such as `score 0.40, below 0.7`.
    fn shortfall(&self, score: Option<f64>, ruled: bool) -> String;
}

/// The verdict of a judged check evaluated without a judge: a failure, never
/// a pass (the suite's loader rejects a judged check with no judge).
pub fn unjudged() -> Verdict {
    Verdict::new(
        false,
        "this check needs a judge, and none was asked".to_owned(),
    )
}

/// Asks `judge` about `turn` and decides `check`.
pub async fn decide(check: &dyn Judged, judge: &Judge, turn: &Turn<'_>) -> Verdict {
    let rulings = match judge.ask(&check.prompt(turn)).await {
        Ok(rulings) => rulings,
        Err(message) => return Verdict::new(false, message),
    };
    let mut votes = Vec::with_capacity(rulings.len());
    for ruling in &rulings {
        match check.passes(ruling) {
            Ok(pass) => votes.push(pass),
            Err(why) => {
                let message = format!("judge {} gave no usable verdict: {why}", judge.name());
                return Verdict::new(false, with_reason(message, &ruling.reason));
            }
        }
    }
    let passes = votes.iter().filter(|pass| **pass).count();
    let passed = passes * 2 > votes.len();
    let scores: Vec<f64> = rulings.iter().filter_map(|r| r.score).collect();
    let score = (!scores.is_empty()).then(|| scores.iter().sum::<f64>() / scores.len() as f64);
    let reason = rulings
        .iter()
        .zip(&votes)
        .find(|(_, pass)| **pass == passed)
        .map(|(ruling, _)| ruling.reason.clone())
        .unwrap_or_default();
    let ruled = rulings.iter().any(|r| r.pass.is_some());
    let mut shortfall = check.shortfall(score, ruled);
    if votes.len() > 1 {
        let failed = votes.len() - passes;
        shortfall = format!("{failed} of {} votes failed; {shortfall}", votes.len());
    }
    let detail = with_reason(format!("{shortfall} (judge {})", judge.name()), &reason);
    let mut verdict = Verdict::new(passed, detail);
    if let Some(score) = score {
        verdict = verdict.with_score(score);
    }
    verdict.with_reason(reason)
}

/// `message`, then `: reason` when there is one.
fn with_reason(message: String, reason: &str) -> String {
    if reason.is_empty() {
        message
    } else {
        format!("{message}: {reason}")
    }
}
