//! Runs every suite in `suites/` as `cargo test` cases, one per batch.
//!
//! It also defines an example custom runner, `weather-bot`, which
//! `suites/custom-runner.yaml` selects by name.

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

fn main() -> std::process::ExitCode {
    forge::harness::main("suites")
}
