//! Runners that need no network: `echo` and `replay`.
//!
//! They make the README's first command work on a fresh machine and let a
//! suite be checked (expectations, reports) before a real agent exists.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::template::{fill, placeholder};
use crate::error::{ConfigError, RunError};
use crate::registry::{self, BuildContext, RunnerType};
use crate::runner::{Reply, Runner, Session};
use crate::schema::Batch;

/// `type: echo` — answers with the query, or with a template.
///
/// `template` may use the placeholders of `template`
/// (`{query}`, `{session_id}`, `{turn}`, ...). `delay_ms` waits before
/// answering, to simulate latency.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Echo {
    /// The answer template (default `{query}`).
    #[serde(default)]
    pub template: Option<String>,
    /// Simulated latency per turn, in milliseconds.
    #[serde(default)]
    pub delay_ms: u64,
}

#[async_trait::async_trait]
impl Runner for Echo {
    async fn call(&self, batch: &Batch, session: &Session<'_>) -> Result<Reply, RunError> {
        if self.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.delay_ms)).await;
        }
        let answer = match &self.template {
            None => batch.query.clone(),
            Some(template) => fill(template, |name| placeholder(name, batch, session)),
        };
        Ok(Reply::text(answer))
    }
}

/// Where `replay` takes its answers from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReplaySource {
    /// The batch's recorded `assistant` (a Fair-Forge dataset with answers).
    #[default]
    Assistant,
    /// The batch's `ground_truth_assistant`.
    GroundTruth,
}

/// `type: replay` — answers with recorded answers: the batch's own
/// `assistant` (default), its `ground_truth_assistant`, or the `answers`
/// mapping / `file` (a JSON object of `qa_id` to answer). A turn with no
/// recorded answer fails.
#[derive(Debug, Clone, Default)]
pub struct Replay {
    source: ReplaySource,
    answers: HashMap<String, String>,
}

/// The `replay` runner's configuration, as written in a suite.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReplayConfig {
    /// Where answers come from: `assistant` (default) or `ground_truth`.
    #[serde(default)]
    source: ReplaySource,
    /// Answers by `qa_id`.
    #[serde(default)]
    answers: HashMap<String, String>,
    /// A JSON file of answers by `qa_id`, relative to the suite file.
    #[serde(default)]
    file: Option<PathBuf>,
}

impl Replay {
    /// Replays from `source`, with `answers` (by `qa_id`) taking precedence.
    pub fn new(source: ReplaySource, answers: HashMap<String, String>) -> Self {
        Replay { source, answers }
    }
}

#[async_trait::async_trait]
impl Runner for Replay {
    async fn call(&self, batch: &Batch, _session: &Session<'_>) -> Result<Reply, RunError> {
        let answer = self
            .answers
            .get(&batch.qa_id)
            .map(String::as_str)
            .unwrap_or(match self.source {
                ReplaySource::Assistant => &batch.assistant,
                ReplaySource::GroundTruth => &batch.ground_truth_assistant,
            });
        if answer.is_empty() {
            return Err(RunError::permanent(format!(
                "no recorded answer for qa_id {:?}",
                batch.qa_id
            )));
        }
        Ok(Reply::text(answer))
    }
}

fn build_echo(config: Value, _: &BuildContext) -> Result<Arc<dyn Runner>, ConfigError> {
    Ok(Arc::new(registry::config::<Echo>("echo", config)?))
}

fn build_replay(config: Value, context: &BuildContext) -> Result<Arc<dyn Runner>, ConfigError> {
    let config: ReplayConfig = registry::config("replay", config)?;
    let mut answers = HashMap::new();
    if let Some(file) = &config.file {
        let file = &context.resolve(file);
        let text = std::fs::read_to_string(file).map_err(|e| {
            ConfigError::new("replay", format!("cannot read {}: {e}", file.display()))
        })?;
        answers = serde_json::from_str(&text).map_err(|e| {
            ConfigError::new(
                "replay",
                format!(
                    "{}: expected a JSON object of qa_id to answer: {e}",
                    file.display()
                ),
            )
        })?;
    }
    answers.extend(config.answers);
    Ok(Arc::new(Replay::new(config.source, answers)))
}

inventory::submit! { RunnerType { name: "echo", build: build_echo } }
inventory::submit! { RunnerType { name: "replay", build: build_replay } }
