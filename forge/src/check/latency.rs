//! `max_latency_ms`: a limit on the turn's time.

use serde::Deserialize;

use super::{Check, Turn, Verdict};

/// `max_latency_ms`: the turn took at most this many milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct MaxLatencyMs(pub f64);

impl Check for MaxLatencyMs {
    fn name(&self) -> &'static str {
        "max_latency_ms"
    }

    fn evaluate(&self, turn: &Turn<'_>) -> Verdict {
        let (time_ms, max) = (turn.time_ms, self.0);
        Verdict::new(
            time_ms <= max,
            format!("took {time_ms:.0} ms, more than {max} ms"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::run;

    #[test]
    fn the_limit_is_inclusive() {
        assert!(run("max_latency_ms: 100", "", "", 100.0)[0].passed);
        let r = &run("max_latency_ms: 100", "", "", 100.4)[0];
        assert!(!r.passed);
        assert_eq!(r.detail, "took 100 ms, more than 100 ms");
        let r = &run("max_latency_ms: 0.5", "", "", 12.0)[0];
        assert_eq!(r.detail, "took 12 ms, more than 0.5 ms");
    }
}
