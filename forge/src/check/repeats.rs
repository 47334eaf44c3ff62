//! Repeats: Fair-Forge's pass@k and pass^k over the runs of a repeated
//! batch or dataset, a 95% Wilson interval on its pass rate, and the
//! `pass_pow_k: {k, min}` check that gates a repeated batch on pass^k.
//!
//! The formulas are Fair-Forge 3.0.0's (`fair_forge/metrics/agentic.py`),
//! with `n` runs of which `c` passed: pass@k = 1 - (1 - c/n)^k and pass^k =
//! (c/n)^k, exactly 0 when `c` is 0 and 1 when `c >= n` (Fair-Forge's
//! Bernoulli estimate: `k` is not bounded by `n`). The Wilson interval is
//! statsmodels' `proportion_confint(c, n, alpha=0.05, method="wilson")`.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{Check, Turn, Verdict};

/// Fair-Forge's `pass_at_k(n, c, k)`: the chance of at least one pass in
/// `k` attempts, `c` of `n` having passed.
pub fn pass_at_k(n: usize, c: usize, k: usize) -> f64 {
    if c == 0 {
        return 0.0;
    }
    if c >= n {
        return 1.0;
    }
    1.0 - (1.0 - c as f64 / n as f64).powf(k as f64)
}

/// Fair-Forge's `pass_pow_k(n, c, k)`: the chance that `k` attempts all
/// pass, `c` of `n` having passed.
pub fn pass_pow_k(n: usize, c: usize, k: usize) -> f64 {
    if c == 0 {
        return 0.0;
    }
    if c >= n {
        return 1.0;
    }
    (c as f64 / n as f64).powf(k as f64)
}

/// The 97.5% quantile of the standard normal (scipy's `norm.isf(0.025)`).
const Z_95: f64 = 1.959_963_984_540_054_5;

/// The 95% Wilson score interval of the pass rate `c / n` (`n > 0`), as
/// statsmodels computes it, clipped to 0..=1.
pub fn wilson_95(n: usize, c: usize) -> (f64, f64) {
    let nobs = n as f64;
    let q = c as f64 / nobs;
    let crit2 = Z_95 * Z_95;
    let denom = 1.0 + crit2 / nobs;
    let center = (q + crit2 / (2.0 * nobs)) / denom;
    let dist = Z_95 * (q * (1.0 - q) / nobs + crit2 / (4.0 * (nobs * nobs))).sqrt() / denom;
    (
        (center - dist).clamp(0.0, 1.0),
        (center + dist).clamp(0.0, 1.0),
    )
}

/// The statistics of `passes` out of `runs` (`runs > 0`), as the summary
/// JSON's `checks` gives them: `runs`, `passes`, `pass_rate`, its 95%
/// Wilson interval (`pass_rate_ci_low`, `pass_rate_ci_high`), and
/// `pass_at_k` / `pass_pow_k` for k = 1..=runs, keyed by k.
pub fn stats(runs: usize, passes: usize) -> Value {
    let (low, high) = wilson_95(runs, passes);
    let by_k = |f: fn(usize, usize, usize) -> f64| {
        (1..=runs)
            .map(|k| (k.to_string(), Value::from(f(runs, passes, k))))
            .collect::<Map<String, Value>>()
    };
    json!({
        "runs": runs,
        "passes": passes,
        "pass_rate": passes as f64 / runs as f64,
        "pass_rate_ci_low": low,
        "pass_rate_ci_high": high,
        "pass_at_k": by_k(pass_at_k),
        "pass_pow_k": by_k(pass_pow_k),
    })
}

/// `pass_pow_k: {k, min}`: a repeated batch passes only when pass^k of its
/// runs is at least `min` (on top of `pass_rate` / `min_passes`).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawPassPowK")]
pub struct PassPowK {
    /// How many runs in a row must pass.
    pub k: usize,
    /// The least pass^k, in 0..=1.
    pub min: f64,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawPassPowK {
    /// How many runs in a row must pass (at least 1).
    k: usize,
    /// The least pass^k, in 0..=1.
    min: f64,
}

super::schema_as!(PassPowK => RawPassPowK);

impl TryFrom<RawPassPowK> for PassPowK {
    type Error = String;

    fn try_from(raw: RawPassPowK) -> Result<Self, String> {
        if raw.k == 0 {
            return Err("pass_pow_k `k` must be at least 1".to_owned());
        }
        if !(0.0..=1.0).contains(&raw.min) {
            return Err(format!("pass_pow_k `min` {} is outside 0..=1", raw.min));
        }
        Ok(PassPowK {
            k: raw.k,
            min: raw.min,
        })
    }
}

impl Check for PassPowK {
    fn name(&self) -> &'static str {
        "pass_pow_k"
    }

    /// Not asked: the check judges a batch's runs together.
    fn evaluate(&self, _turn: &Turn<'_>) -> Verdict {
        Verdict::new(true, String::new())
    }

    fn over_runs(&self) -> bool {
        true
    }

    fn evaluate_runs(&self, passes: usize, runs: usize) -> Verdict {
        let value = pass_pow_k(runs, passes, self.k);
        Verdict::new(
            value >= self.min,
            format!(
                "pass^{} is {value:.3} ({passes} of {runs} runs passed), below {}",
                self.k, self.min
            ),
        )
        .with_score(value)
    }

    fn validate_runs(&self, runs: usize) -> Result<(), String> {
        if runs < 2 {
            return Err(
                "`pass_pow_k` needs a repeated batch: set `repeat: N` (N > 1) on its dataset or the suite"
                    .to_owned(),
            );
        }
        if self.k > runs {
            return Err(format!(
                "`pass_pow_k` k {} is more than `repeat` {runs}",
                self.k
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::parse;
    use super::super::Checks;
    use super::*;
    use crate::schema::Batch;

    /// Fair-Forge's and statsmodels' own numbers (`forge/tests/golden/fair_forge/`).
    const GOLDEN: &str = include_str!("../../tests/golden/fair_forge/pass_k.json");

    /// pass@k and pass^k call the platform's `pow` (as CPython does), which
    /// may differ in the last bit between C libraries: 1e-12 absorbs that.
    /// On the machine that made the table they are equal; the Wilson
    /// interval (+, *, /, sqrt only) is exact.
    const POW_TOLERANCE: f64 = 1e-12;

    #[test]
    fn formulas_give_fair_forges_numbers() {
        let golden: Value = serde_json::from_str(GOLDEN).expect("golden JSON");
        let rows = golden["rows"].as_array().expect("rows");
        assert_eq!(rows.len(), 65);
        let number = |v: &Value| v.as_f64().expect("number");
        for row in rows {
            let n = row["n"].as_u64().expect("n") as usize;
            let c = row["c"].as_u64().expect("c") as usize;
            for (f, key) in [
                (pass_at_k as fn(usize, usize, usize) -> f64, "pass_at_k"),
                (pass_pow_k, "pass_pow_k"),
            ] {
                let values = row[key].as_array().expect("values");
                assert_eq!(values.len(), n + 2, "k runs past n too");
                for (i, value) in values.iter().enumerate() {
                    let ours = f(n, c, i + 1);
                    assert!(
                        (ours - number(value)).abs() <= POW_TOLERANCE,
                        "{key}({n}, {c}, {}) = {ours}, Fair-Forge {value}",
                        i + 1
                    );
                }
            }
            let (low, high) = wilson_95(n, c);
            assert_eq!(low, number(&row["wilson_low"]), "wilson low n={n} c={c}");
            assert_eq!(high, number(&row["wilson_high"]), "wilson high n={n} c={c}");
        }
    }

    #[test]
    fn stats_are_keyed_by_k() {
        let stats = stats(4, 3);
        assert_eq!(stats["runs"], 4);
        assert_eq!(stats["passes"], 3);
        assert_eq!(stats["pass_rate"], 0.75);
        let at: Vec<&str> = stats["pass_at_k"]
            .as_object()
            .expect("by k")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(at, ["1", "2", "3", "4"]);
        assert_eq!(stats["pass_pow_k"]["2"], 0.5625);
        assert_eq!(stats["pass_at_k"]["2"], 0.9375);
        assert!(stats["pass_rate_ci_low"].as_f64() < Some(0.75));
        assert!(stats["pass_rate_ci_high"].as_f64() > Some(0.75));
    }

    #[test]
    fn pass_pow_k_gates_the_runs_and_needs_a_repeat() {
        let checks = parse("pass_pow_k: {k: 2, min: 0.5}");
        let batch = Batch::new("q", "query");
        let err = checks.validate(&batch, 1).expect_err("not repeated");
        assert!(err.contains("needs a repeated batch"), "{err}");
        let err = parse("pass_pow_k: {k: 5, min: 0.5}")
            .validate(&batch, 4)
            .expect_err("k > N");
        assert_eq!(err, "`pass_pow_k` k 5 is more than `repeat` 4");
        assert_eq!(checks.validate(&batch, 4), Ok(()));

        // Not a check of each turn.
        assert!(checks.evaluate(&Turn::new(&batch, 0.0)).is_empty());
        let held = checks.evaluate_runs(3, 4);
        assert!(held[0].passed, "{held:?}");
        assert_eq!(held[0].score, Some(0.5625));
        let failed = checks.evaluate_runs(2, 4);
        assert!(!failed[0].passed);
        assert_eq!(
            failed[0].detail,
            "pass^2 is 0.250 (2 of 4 runs passed), below 0.5"
        );
        // Checks of each turn are not asked about runs.
        assert!(parse("contains: x").evaluate_runs(0, 4).is_empty());

        for (yaml, message) in [
            ("pass_pow_k: {k: 0, min: 0.5}", "`k` must be at least 1"),
            ("pass_pow_k: {k: 2, min: 1.5}", "`min` 1.5 is outside 0..=1"),
            ("pass_pow_k: {k: 2}", "missing field `min`"),
            ("pass_pow_k: 0.5", "invalid type"),
        ] {
            let err = serde_yaml::from_str::<Checks>(yaml).expect_err(yaml);
            assert!(err.to_string().contains(message), "{yaml}: {err}");
        }
    }
}
