//! The scoreboard of a suite that compares several systems (`runners:`):
//! per system, its selected batches that passed and failed, the median
//! time of its turns and what it cost. `forge run` prints it at the end:
//!
//! ```text
//! forge: compare, system by system:
//!   small  2 passed  1 failed  p50 12 ms  cost $0.000042
//!   large  3 passed  0 failed  p50 80 ms
//! ```

use super::SuiteReport;
use crate::usage::dollars;

/// One system's line of a scoreboard.
#[derive(Debug, Clone, PartialEq)]
pub struct SystemScore {
    /// The system's name.
    pub system: String,
    /// Its selected batches that passed.
    pub passed: usize,
    /// Its selected batches that failed.
    pub failed: usize,
    /// Its skipped (ignored) batches.
    pub ignored: usize,
    /// The median time of the runs of its selected batches, in ms (`None`
    /// when none ran).
    pub p50_ms: Option<f64>,
    /// What its runner and judge calls cost, when a price applies.
    pub cost_usd: Option<f64>,
}

impl SystemScore {
    /// The score of one system's report, the median time of its selected
    /// batches' runs `p50_ms` (their nearest-rank median).
    pub fn of(suite: &SuiteReport, p50_ms: Option<f64>) -> SystemScore {
        let tally = &suite.tally;
        SystemScore {
            system: suite.head.system.clone().unwrap_or_default(),
            passed: tally.passed,
            failed: tally.failed(),
            ignored: tally.skipped,
            p50_ms,
            cost_usd: tally.usage.cost_usd(),
        }
    }
}

/// The scoreboard of every suite of `suites` that compares two systems or
/// more: its name and one score per system, in the order of its `runners:`;
/// `p50_ms` gives each system's median time.
pub fn scoreboards(
    suites: &[SuiteReport],
    mut p50_ms: impl FnMut(&SuiteReport) -> Option<f64>,
) -> Vec<(String, Vec<SystemScore>)> {
    let mut boards: Vec<(String, Vec<SystemScore>)> = Vec::new();
    for suite in suites.iter().filter(|s| s.head.system.is_some()) {
        let score = SystemScore::of(suite, p50_ms(suite));
        let name = &suite.head.name;
        match boards.last_mut() {
            Some((board, scores)) if board == name => scores.push(score),
            _ => boards.push((name.clone(), vec![score])),
        }
    }
    boards.retain(|(_, scores)| scores.len() > 1);
    boards
}

/// The scoreboards as text, one line per system under a heading per suite.
pub fn lines(
    suites: &[SuiteReport],
    p50_ms: impl FnMut(&SuiteReport) -> Option<f64>,
) -> Vec<String> {
    let mut lines = Vec::new();
    for (suite, scores) in scoreboards(suites, p50_ms) {
        lines.push(format!("forge: {suite}, system by system:"));
        let width = scores.iter().map(|s| s.system.chars().count()).max();
        let width = width.unwrap_or(0);
        for score in scores {
            let mut line = format!(
                "  {:width$}  {} passed  {} failed",
                score.system, score.passed, score.failed
            );
            if score.ignored > 0 {
                line.push_str(&format!("  {} ignored", score.ignored));
            }
            match score.p50_ms {
                Some(ms) if ms < 10.0 => line.push_str(&format!("  p50 {ms:.1} ms")),
                Some(ms) => line.push_str(&format!("  p50 {ms:.0} ms")),
                None => line.push_str("  p50 -"),
            }
            if let Some(cost) = score.cost_usd {
                line.push_str(&format!("  cost {}", dollars(cost)));
            }
            lines.push(line);
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::lines;
    use crate::report::testing::{self, head};

    #[test]
    fn systems_of_a_suite_are_scored_from_their_tallies() {
        let mut sink = crate::report::Tee::new();
        let suites = testing::feed(
            &mut sink,
            vec![
                testing::suite(head("cmp", 0, Some("small")), 3, 4),
                testing::suite(head("cmp", 0, Some("large-one")), 1, 2),
                testing::suite(head("alone", 1, Some("only")), 1, 2),
            ],
        );
        let text = lines(&suites, |s| {
            (s.head.system.as_deref() == Some("small")).then_some(12.25)
        });
        assert_eq!(
            text,
            [
                "forge: cmp, system by system:",
                "  small      6 passed  2 failed  1 ignored  p50 12 ms",
                "  large-one  1 passed  1 failed  p50 -",
            ]
        );
    }
}
