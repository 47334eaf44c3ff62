//! Fisher's exact test, one-sided: is a repeated batch's pass count lower
//! now than in the baseline by more than chance?
//!
//! The 2x2 table is the baseline's runs (passed, failed) over the new run's
//! (passed, failed). With its margins fixed, the baseline's pass count is
//! hypergeometric; the p-value is the chance of the baseline passing at
//! least as often as it did, `P(X >= a)` (scipy's
//! `fisher_exact([[a, b], [c, d]], alternative="greater")`). It is computed
//! exactly, term by term, from log-factorials.

/// The one-sided p-value that the new pass rate (`new_passed` of
/// `new_runs`) is lower than the baseline's (`base_passed` of `base_runs`).
/// A pass count above its runs is taken as all runs passing.
pub fn p_value(base_passed: usize, base_runs: usize, new_passed: usize, new_runs: usize) -> f64 {
    let a = base_passed.min(base_runs);
    let c = new_passed.min(new_runs);
    let total = base_runs + new_runs;
    let passes = a + c;
    let ln_fact = log_factorials(total);
    let ln_choose = |n: usize, k: usize| ln_fact[n] - ln_fact[k] - ln_fact[n - k];
    let all = ln_choose(total, passes);
    // X = the baseline's passes: at most its runs and the passes in all;
    // at least a (and a is at least passes - new_runs, the other bound).
    let p: f64 = (a..=base_runs.min(passes))
        .map(|x| (ln_choose(base_runs, x) + ln_choose(new_runs, passes - x) - all).exp())
        .sum();
    p.clamp(0.0, 1.0)
}

/// `ln(k!)` for every `k` in `0..=n`.
fn log_factorials(n: usize) -> Vec<f64> {
    let mut table = Vec::with_capacity(n + 1);
    let mut sum = 0.0_f64;
    table.push(sum);
    for k in 1..=n {
        sum += (k as f64).ln();
        table.push(sum);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::p_value;

    /// `scipy.stats.fisher_exact([[a, n1 - a], [c, n2 - c]],
    /// alternative="greater").pvalue`, computed once with scipy 1.17.1:
    /// `(a, n1, c, n2, p)`.
    const SCIPY: [(usize, usize, usize, usize, f64); 15] = [
        (10, 10, 3, 10, 0.001547987616099071),
        (6, 6, 4, 6, 0.2272727272727273),
        (5, 5, 0, 5, 0.003968253968253969),
        (3, 3, 2, 3, 0.5),
        (10, 10, 9, 10, 0.5),
        (20, 20, 10, 20, 0.00021795989537925023),
        (7, 10, 2, 10, 0.03488925934746368),
        (100, 100, 90, 100, 0.0007710260627178504),
        (50, 60, 30, 60, 9.524997216198982e-05),
        (1, 1, 0, 1, 0.5),
        (4, 4, 0, 4, 0.014285714285714284),
        (8, 8, 5, 8, 0.10000000000000002),
        (30, 30, 25, 30, 0.026092774308652998),
        (200, 200, 150, 200, 2.6641291080050554e-17),
        (12, 15, 3, 20, 0.00016593609353680928),
    ];

    #[test]
    fn matches_scipy() {
        for (a, n1, c, n2, expected) in SCIPY {
            let p = p_value(a, n1, c, n2);
            assert!(
                (p - expected).abs() <= expected * 1e-9,
                "[[{a}, {}], [{c}, {}]]: {p} != {expected}",
                n1 - a,
                n2 - c
            );
        }
    }

    #[test]
    fn no_drop_is_never_significant() {
        assert_eq!(p_value(3, 3, 3, 3), 1.0);
        assert!(p_value(0, 5, 5, 5) > 0.99);
        assert_eq!(p_value(0, 0, 0, 0), 1.0);
        assert_eq!(p_value(1, 1, 0, 1), 0.5);
    }
}
