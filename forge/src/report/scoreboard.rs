//! The scoreboard of a suite that compares several systems (`runners:`):
//! per system, its selected batches that passed and failed, the median
//! time of its turns and what it cost. `forge run` prints it at the end:
//!
//! ```text
//! forge: compare, system by system:
//!   small  2 passed  1 failed  p50 12 ms  cost $0.000042
//!   large  3 passed  0 failed  p50 80 ms
//! ```

use super::tally::SuiteUsage;
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
    /// The score of one system's report.
    pub fn of(suite: &SuiteReport) -> SystemScore {
        let selected = suite.records.iter().filter(|r| r.selected);
        let passed = selected.clone().filter(|r| r.passed).count();
        let mut times: Vec<f64> = selected
            .clone()
            .flat_map(|r| &r.runs)
            .map(|run| run.time_ms)
            .filter(|t| t.is_finite())
            .collect();
        times.sort_by(f64::total_cmp);
        SystemScore {
            system: suite.system.clone().unwrap_or_default(),
            passed,
            failed: selected.count() - passed,
            ignored: suite.records.iter().filter(|r| r.skipped).count(),
            p50_ms: median(&times),
            cost_usd: SuiteUsage::of(&suite.records).cost_usd(),
        }
    }
}

/// The nearest-rank median of sorted `times`.
fn median(times: &[f64]) -> Option<f64> {
    let rank = times.len().div_ceil(2);
    times.get(rank.checked_sub(1)?).copied()
}

/// The scoreboard of every suite of `suites` that compares two systems or
/// more: its name and one score per system, in the order of its `runners:`.
pub fn scoreboards(suites: &[SuiteReport]) -> Vec<(String, Vec<SystemScore>)> {
    let mut boards: Vec<(String, Vec<SystemScore>)> = Vec::new();
    for suite in suites.iter().filter(|s| s.system.is_some()) {
        let score = SystemScore::of(suite);
        match boards.last_mut() {
            Some((name, scores)) if *name == suite.name => scores.push(score),
            _ => boards.push((suite.name.clone(), vec![score])),
        }
    }
    boards.retain(|(_, scores)| scores.len() > 1);
    boards
}

/// The scoreboards as text, one line per system under a heading per suite.
pub fn lines(suites: &[SuiteReport]) -> Vec<String> {
    let mut lines = Vec::new();
    for (suite, scores) in scoreboards(suites) {
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
    use super::median;

    #[test]
    fn the_median_is_the_nearest_rank() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[5.0]), Some(5.0));
        assert_eq!(median(&[1.0, 9.0]), Some(1.0));
        assert_eq!(median(&[1.0, 2.0, 9.0]), Some(2.0));
        assert_eq!(median(&[1.0, 2.0, 3.0, 9.0]), Some(2.0));
    }
}
