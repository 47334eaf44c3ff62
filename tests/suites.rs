//! Runs every suite in `suites/` as `cargo test` cases, one per batch.
//!
//! It also defines two example custom runners: `weather-bot`, a
//! `#[forge_runner]` that `suites/custom-runner.yaml` selects by name, and
//! `transcript`, a hand-written [`forge::Runner`] that answers a whole
//! conversation in its own `run_dataset` (`suites/transcript.yaml`).

use serde::Deserialize;

/// A stand-in for an in-house agent: its fields come from the suite's
/// `runner:` mapping.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WeatherBot {
    greeting: String,
    #[serde(default = "default_city")]
    city: String,
}

fn default_city() -> String {
    "Paris".to_owned()
}

#[forge::forge_runner(name = "weather-bot")]
impl WeatherBot {
    async fn answer(
        &self,
        query: &str,
        session: &forge::Session<'_>,
    ) -> Result<forge::Reply, std::io::Error> {
        if query.trim().is_empty() {
            return Err(std::io::Error::other("empty question"));
        }
        let mut tools = forge::Object::new();
        tools.insert("tool".into(), "forecast".into());
        tools.insert("city".into(), self.city.clone().into());
        Ok(forge::Reply::text(format!(
            "{} It is sunny in {} today. (turn {} of {})",
            self.greeting,
            self.city,
            session.history.len() + 1,
            session.session_id
        ))
        .with_agentic(tools))
    }
}

/// A system that takes a whole conversation at once: its `run_dataset`
/// answers every turn itself, and its `call` refuses, so a suite's turns
/// pass only if the engine honours the override.
struct Transcript;

#[forge::async_trait]
impl forge::Runner for Transcript {
    async fn call(
        &self,
        _: &forge::Batch,
        _: &forge::Session<'_>,
    ) -> Result<forge::Reply, forge::RunError> {
        Err(forge::RunError::permanent(
            "transcript answers whole conversations only",
        ))
    }

    async fn run_dataset(
        &self,
        mut dataset: forge::Dataset,
        _turns: &forge::Turns<'_>,
    ) -> (forge::Dataset, forge::Summary) {
        // The turns up to the last selected one (all of them, unfiltered):
        // each answer may use the whole conversation before it.
        let total = dataset.conversation.len();
        let mut previous = String::from("nothing");
        for batch in dataset.conversation.iter_mut() {
            batch.assistant = format!("{} (after {previous})", batch.query);
            previous = batch.query.clone();
        }
        let summary = forge::Summary {
            session_id: dataset.session_id.clone(),
            total_batches: total,
            successes: total,
            failures: 0,
            total_execution_time_ms: 0.0,
            avg_batch_time_ms: 0.0,
        };
        (dataset, summary)
    }
}

forge::register_runner!("transcript", |_config, _context| Ok(std::sync::Arc::new(
    Transcript
)));

forge::harness!("suites");
