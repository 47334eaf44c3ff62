//! Helpers shared by the runner tests.

use std::time::Duration;

use forge::{Backoff, Batch, Dataset, Policy};

/// A dataset of session `session` whose turns `q1`, `q2`, ... ask `queries`.
pub fn dataset(session: &str, queries: &[&str]) -> Dataset {
    let mut dataset = Dataset::new(session, "bot");
    for (i, query) in queries.iter().enumerate() {
        dataset
            .conversation
            .push(Batch::new(format!("q{}", i + 1), *query));
    }
    dataset
}

/// A 10 s timeout and `retries` quick retries.
pub fn retrying(retries: u32) -> Policy {
    Policy {
        timeout: Some(Duration::from_secs(10)),
        retries,
        backoff: Backoff {
            initial: Duration::from_millis(5),
            max: Duration::from_millis(50),
        },
        rate_limit: None,
    }
}
