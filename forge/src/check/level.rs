//! [`Checks`]: the checks of one level (suite, dataset or batch), read from
//! its `expect:` mapping and merged with the outer levels'.

use std::fmt;
use std::sync::Arc;

use futures_util::future::join_all;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::{judged, next_check, Check, CheckResult, Turn, KEYS};
use crate::judge::Judge;
use crate::schema::Batch;

/// The checks of one level, in the order of their results.
#[derive(Debug, Clone, Default)]
pub struct Checks(Vec<Slot>);

/// A check and its key's place in the registry, which orders the results.
#[derive(Debug, Clone)]
struct Slot {
    rank: usize,
    check: Arc<dyn Check>,
}

impl Checks {
    /// The checks of `self`, with `defaults` filling the checks `self`
    /// leaves unset: the narrower level wins, check by check.
    pub fn or(&self, defaults: &Checks) -> Checks {
        let unset = defaults
            .0
            .iter()
            .filter(|d| self.0.iter().all(|s| s.rank != d.rank));
        let mut slots: Vec<Slot> = self.0.iter().chain(unset).cloned().collect();
        slots.sort_by_key(|slot| slot.rank);
        Checks(slots)
    }

    /// Whether no check is set.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The checks, in the order of their results.
    pub fn iter(&self) -> impl Iterator<Item = &dyn Check> {
        self.0.iter().map(|slot| slot.check.as_ref())
    }

    /// Runs every check of a turn on it.
    pub fn evaluate(&self, turn: &Turn<'_>) -> Vec<CheckResult> {
        self.iter()
            .filter(|check| !check.over_runs())
            .map(|check| CheckResult::new(check, check.evaluate(turn)))
            .collect()
    }

    /// Runs every check over a batch's runs on them: `passes` of `runs`
    /// passed (see [`Check::evaluate_runs`]).
    pub fn evaluate_runs(&self, passes: usize, runs: usize) -> Vec<CheckResult> {
        self.iter()
            .filter(|check| check.over_runs())
            .map(|check| CheckResult::new(check, check.evaluate_runs(passes, runs)))
            .collect()
    }

    /// Whether every check can judge `batch`, run `runs` times (see
    /// [`Check::validate`] and [`Check::validate_runs`]).
    pub fn validate(&self, batch: &Batch, runs: usize) -> Result<(), String> {
        self.iter().try_for_each(|check| {
            check.validate(batch)?;
            check.validate_runs(runs)
        })
    }

    /// The name of the first check that needs a judge, if any.
    pub fn judged(&self) -> Option<&'static str> {
        self.iter().find(|c| c.judged().is_some()).map(|c| c.name())
    }

    /// Runs every check on a turn, asking `judge` about the judged ones
    /// (all at once); the results in the same order as [`evaluate`](Self::evaluate)'s.
    pub async fn evaluate_judged(&self, turn: &Turn<'_>, judge: &Judge) -> Vec<CheckResult> {
        let results = self
            .iter()
            .filter(|check| !check.over_runs())
            .map(|check| async move {
                let verdict = match check.judged() {
                    Some(judged) => judged::decide(judged, judge, turn).await,
                    None => check.evaluate(turn),
                };
                CheckResult::new(check, verdict)
            });
        join_all(results).await
    }
}

impl schemars::JsonSchema for Checks {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Expect".into()
    }

    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        super::expect_schema(g)
    }
}

impl<'de> Deserialize<'de> for Checks {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_struct("Expect", KEYS, ChecksVisitor)
    }
}

struct ChecksVisitor;

impl<'de> Visitor<'de> for ChecksVisitor {
    type Value = Checks;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("struct Expect")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checks, A::Error> {
        let mut seen = Vec::new();
        let mut slots = Vec::new();
        while let Some(Key(rank)) = map.next_key()? {
            if seen.contains(&rank) {
                return Err(de::Error::duplicate_field(KEYS[rank]));
            }
            seen.push(rank);
            if let Some(check) = next_check(rank, &mut map)? {
                slots.push(Slot { rank, check });
            }
        }
        slots.sort_by_key(|slot| slot.rank);
        Ok(Checks(slots))
    }
}

/// A key of `expect:`, as its place in the registry. Read on its own so
/// that an unknown key's error carries the key's position.
struct Key(usize);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_identifier(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("field identifier")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
        KEYS.iter()
            .position(|known| *known == key)
            .map(Key)
            .ok_or_else(|| E::unknown_field(key, KEYS))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{parse, run};
    use super::*;

    fn names(checks: &Checks) -> Vec<&'static str> {
        checks.iter().map(|c| c.name()).collect()
    }

    #[test]
    fn narrower_levels_win_check_by_check() {
        let suite = parse("{contains: a, max_latency_ms: 100}");
        let dataset = parse("{not_contains: z, contains: c}");
        let batch = parse("contains: b");
        let merged = batch.or(&dataset.or(&suite));
        assert_eq!(
            names(&merged),
            ["contains", "not_contains", "max_latency_ms"]
        );
        // The batch's `contains: b` won over the dataset's and the suite's.
        let results = run_merged(&merged, "b z", 50.0);
        assert_eq!(
            results.iter().map(|r| r.passed).collect::<Vec<_>>(),
            [true, false, true]
        );
        let results = run_merged(&merged, "a c", 150.0);
        assert!(!results[0].passed, "{results:?}");
        assert!(!results[2].passed, "{results:?}");
    }

    fn run_merged(checks: &Checks, answer: &str, time_ms: f64) -> Vec<CheckResult> {
        let mut batch = Batch::new("q", "query");
        batch.assistant = answer.to_owned();
        checks.evaluate(&Turn::new(&batch, time_ms))
    }

    #[test]
    fn an_empty_level_inherits_everything_and_adds_nothing() {
        let suite = parse("{equals: x, similarity: 0.5}");
        let merged = Checks::default().or(&suite);
        assert_eq!(names(&merged), ["equals", "similarity"]);
        assert!(Checks::default().or(&Checks::default()).is_empty());
        assert_eq!(names(&suite.or(&Checks::default())), names(&suite));
    }

    #[test]
    fn results_follow_the_registry_not_the_yaml() {
        let yaml = "{rubric: x, answer_correctness: 0.5, similarity: 0.1, max_latency_ms: 9, max_tokens: 5, \
                    is_json: true, regex: x, starts_with: x, equals: x, not_contains: y, \
                    icontains: x, contains: x}";
        let results = run(yaml, "x", "x", 1.0);
        let checks: Vec<&str> = results.iter().map(|r| r.check.as_str()).collect();
        // Every registered key but those needing agentic data or repeats,
        // each named as its check names itself.
        let keys: Vec<&str> = KEYS
            .iter()
            .copied()
            .filter(|k| !["tool_correctness", "pass_pow_k"].contains(k))
            .collect();
        assert_eq!(checks, keys);
    }

    #[test]
    fn keys_are_checked_when_read() {
        let err = serde_yaml::from_str::<Checks>("contians: x").expect_err("unknown key");
        assert!(
            err.to_string()
                .starts_with("unknown field `contians`, expected one of `contains`, "),
            "{err}"
        );
        let err =
            serde_yaml::from_str::<Checks>("{equals: a, equals: b}").expect_err("duplicate key");
        assert!(
            err.to_string().contains("duplicate field `equals`"),
            "{err}"
        );
        // A null value sets no check.
        assert!(parse("contains: null").is_empty());
    }

    #[test]
    fn a_failed_check_says_why_a_passed_one_says_nothing() {
        let results = run("{contains: x, equals: y}", "x", "", 0.0);
        assert!(results[0].passed && results[0].detail.is_empty());
        assert!(!results[1].passed && !results[1].detail.is_empty());
        let json = serde_json::to_string(&results).expect("serialise");
        assert_eq!(
            json,
            r#"[{"check":"contains","passed":true},{"check":"equals","passed":false,"detail":"expected \"y\"\n     got \"x\"\n  differ at byte 0: expected \"y\", got \"x\""}]"#
        );
    }
}
