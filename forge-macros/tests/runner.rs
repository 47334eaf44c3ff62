//! Runners written with `#[forge_runner]`, one per accepted signature, built
//! through the registry from a suite-style mapping and run on a dataset.

// A renamed forge, for `crate = "..."`.
extern crate forge as my_forge;

use std::sync::atomic::{AtomicUsize, Ordering};

use forge::registry::{self, BuildContext};
use forge::{forge_runner, Batch, Dataset, Reply, RunError, Runner, Session, Summary};
use serde::Deserialize;
use serde_json::{json, Value};

/// `(&self, query: &str) -> Result<String, E>`, the name from the struct.
#[derive(Deserialize)]
struct WeatherBot {
    greeting: String,
    #[serde(default)]
    fail_on: Option<String>,
}

#[forge_runner]
impl WeatherBot {
    async fn answer(&self, query: &str) -> Result<String, std::io::Error> {
        if self.fail_on.as_deref() == Some(query) {
            return Err(std::io::Error::other(format!("no forecast for {query:?}")));
        }
        Ok(format!("{} Sunny in {query}.", self.greeting))
    }
}

/// `(&self, query: &str, batch: &Batch) -> Result<Reply, E>` with agentic data.
#[derive(Deserialize)]
struct ToolBot;

#[forge_runner(name = "tool-bot")]
impl ToolBot {
    async fn reply(&self, query: &str, batch: &Batch) -> Result<Reply, String> {
        let mut agentic = forge::Object::new();
        agentic.insert("tools_used".into(), json!(["search"]));
        agentic.insert("qa_id".into(), json!(batch.qa_id));
        Ok(Reply::text(query.to_uppercase()).with_agentic(agentic))
    }
}

/// `(&self, query: &str, session: &Session<'_>)`, `&str` in the `Ok`
/// (`Into<Reply>`), a one-argument `Result` alias.
#[derive(Deserialize)]
struct SessionBot {}

#[forge_runner(name = "session-bot")]
impl SessionBot {
    async fn answer(&self, _query: &str, session: &Session<'_>) -> std::io::Result<&'static str> {
        Ok(match session.history.len() {
            0 => "first",
            1 => "second",
            _ => "later",
        })
    }
}

/// `(&self, query: &str, batch: &Batch, session: &Session<'_>)`, returning
/// `forge::RunError` itself, which passes through unchanged.
#[derive(Deserialize)]
struct FullBot {
    #[serde(default)]
    calls: AtomicUsize,
}

#[forge_runner(name = "full-bot")]
impl FullBot {
    async fn call(
        &self,
        query: &str,
        batch: &Batch,
        session: &Session<'_>,
    ) -> Result<String, RunError> {
        // The first call of the run fails transiently; the suite's retry
        // policy decides what to do with it.
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(RunError::transient("busy, try again"));
        }
        Ok(format!("{}/{}/{query}", session.session_id, batch.qa_id))
    }
}

/// The renamed crate: `crate = "my_forge"`.
#[derive(Deserialize)]
struct Renamed {
    prefix: String,
}

#[my_forge::forge_runner(name = "renamed-bot", crate = "my_forge")]
impl Renamed {
    async fn answer(&self, query: &str) -> Result<String, std::fmt::Error> {
        Ok(format!("{}{query}", self.prefix))
    }
}

fn build(config: Value) -> std::sync::Arc<dyn Runner> {
    match registry::build(config, &BuildContext::default()) {
        Ok(runner) => runner,
        Err(err) => panic!("cannot build: {err}"),
    }
}

async fn run(config: Value, queries: &[&str]) -> (Dataset, Summary) {
    let runner = build(config);
    let mut dataset = Dataset::new("s1", "bot");
    for (i, query) in queries.iter().enumerate() {
        dataset
            .conversation
            .push(Batch::new(format!("q{}", i + 1), *query));
    }
    forge::Engine::new(runner).run_one(dataset).await
}

fn answers(dataset: &Dataset) -> Vec<&str> {
    dataset
        .conversation
        .iter()
        .map(|b| b.assistant.as_str())
        .collect()
}

#[tokio::test]
async fn query_only_with_config_fields() {
    let (dataset, summary) = run(
        json!({"type": "weather-bot", "greeting": "Hello!"}),
        &["Paris", "Lima"],
    )
    .await;
    assert_eq!(
        answers(&dataset),
        ["Hello! Sunny in Paris.", "Hello! Sunny in Lima."]
    );
    assert_eq!((summary.successes, summary.failures), (2, 0));
}

#[tokio::test]
async fn display_errors_become_error_answers() {
    let (dataset, summary) = run(
        json!({"type": "weather-bot", "greeting": "Hi", "fail_on": "Mars"}),
        &["Paris", "Mars", "Lima"],
    )
    .await;
    assert_eq!(
        answers(&dataset),
        [
            "Hi Sunny in Paris.",
            "[ERROR] no forecast for \"Mars\"",
            "Hi Sunny in Lima."
        ]
    );
    assert_eq!(
        dataset.conversation[1].observation.as_deref(),
        Some("no forecast for \"Mars\"")
    );
    assert_eq!((summary.successes, summary.failures), (2, 1));
}

#[tokio::test]
async fn batch_parameter_and_agentic_reply() {
    let (dataset, summary) = run(json!({"type": "tool-bot"}), &["hi"]).await;
    let batch = &dataset.conversation[0];
    assert_eq!(batch.assistant, "HI");
    let agentic = batch.agentic.as_ref().expect("agentic data");
    assert_eq!(agentic["tools_used"], json!(["search"]));
    assert_eq!(agentic["qa_id"], json!("q1"));
    assert_eq!(summary.successes, 1);
}

#[tokio::test]
async fn session_parameter_sees_history() {
    // No config at all: a null mapping is an empty one.
    let runner = build(json!({"type": "session-bot"}));
    let mut dataset = Dataset::new("s1", "bot");
    for i in 1..=3 {
        dataset
            .conversation
            .push(Batch::new(format!("q{i}"), "again?"));
    }
    let (dataset, _) = forge::Engine::new(runner).run_one(dataset).await;
    assert_eq!(answers(&dataset), ["first", "second", "later"]);
}

#[tokio::test]
async fn run_error_passes_through_unchanged() {
    let runner = build(json!({"type": "full-bot"}));
    let dataset = Dataset::new("s9", "bot");
    let batch = Batch::new("q7", "ping");
    let session = Session::of(&dataset, &[]);
    let err = runner
        .call(&batch, &session)
        .await
        .expect_err("first call fails");
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(err.message, "busy, try again");
    let reply = runner.call(&batch, &session).await.expect("second call");
    assert_eq!(reply.answer, "s9/q7/ping");
}

#[tokio::test]
async fn renamed_crate() {
    let (dataset, _) = run(json!({"type": "renamed-bot", "prefix": "> "}), &["x"]).await;
    assert_eq!(answers(&dataset), ["> x"]);
}

#[test]
fn config_errors_name_the_field() {
    let err = registry::build(
        json!({"type": "weather-bot", "greting": "Hi"}),
        &BuildContext::default(),
    )
    .err()
    .expect("misspelt key");
    assert_eq!(err.runner, "weather-bot");
    assert!(err.message.contains("greeting"), "{err}");

    let err = registry::build(json!({"type": "weather-bot"}), &BuildContext::default())
        .err()
        .expect("missing field");
    assert!(err.message.contains("missing field `greeting`"), "{err}");
}

#[test]
fn unknown_type_lists_the_macro_runners() {
    let err = registry::build(json!({"type": "weather-bott"}), &BuildContext::default())
        .err()
        .expect("unknown type");
    assert!(err.message.contains("did you mean `weather-bot`?"), "{err}");
    for name in [
        "weather-bot",
        "tool-bot",
        "session-bot",
        "full-bot",
        "renamed-bot",
        "echo",
    ] {
        assert!(err.message.contains(name), "{name} missing from: {err}");
    }
    assert!(registry::duplicates().is_empty());
}

#[test]
fn unit_struct_takes_no_configuration() {
    let err = registry::build(
        json!({"type": "tool-bot", "model": "x"}),
        &BuildContext::default(),
    )
    .err()
    .expect("keys for a unit struct");
    assert_eq!(
        err.to_string(),
        "runner `tool-bot`: takes no configuration, found `model`"
    );
}
