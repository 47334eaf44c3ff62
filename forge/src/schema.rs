//! Fair-Forge's data model: [`Batch`], [`Dataset`], [`Summary`] and the
//! payload [`Response`].
//!
//! Field names, order, defaults and nullability follow Fair-Forge's pydantic
//! models, so the JSON written here is read unchanged by its Python metrics.
//! Fields this model does not know are kept in `extra` and written back.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::DatasetError;

/// A JSON object, as used for `agentic`, `ground_truth_agentic` and `logprobs`.
pub type Object = Map<String, Value>;

fn empty_object() -> Option<Object> {
    Some(Object::new())
}

fn english() -> Option<String> {
    Some("english".to_owned())
}

/// One turn of a conversation: the query sent to the system under test and,
/// after the run, its answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// Identifier of the turn, unique within its dataset.
    pub qa_id: String,
    /// The question sent to the system under test.
    pub query: String,
    /// The answer; empty before the run, filled by the runner.
    #[serde(default)]
    pub assistant: String,
    /// The reference answer.
    #[serde(default)]
    pub ground_truth_assistant: String,
    /// Free-form notes; runner errors are appended here.
    #[serde(default)]
    pub observation: Option<String>,
    /// Extra data sent to the agent, and agentic data the agent returns.
    #[serde(default = "empty_object")]
    pub agentic: Option<Object>,
    /// The expected agentic data.
    #[serde(default = "empty_object")]
    pub ground_truth_agentic: Option<Object>,
    /// Token log-probabilities, when the system under test gives them.
    #[serde(default = "empty_object")]
    pub logprobs: Option<Object>,
    /// Weight of the turn in weighted metrics; must be `>= 0`.
    #[serde(default)]
    pub weight: Option<f64>,
    /// Fields this model does not know, carried through unchanged.
    #[serde(flatten)]
    pub extra: Object,
}

impl Batch {
    /// A batch with the given id and query and every other field at its default.
    pub fn new(qa_id: impl Into<String>, query: impl Into<String>) -> Self {
        Batch {
            qa_id: qa_id.into(),
            query: query.into(),
            assistant: String::new(),
            ground_truth_assistant: String::new(),
            observation: None,
            agentic: empty_object(),
            ground_truth_agentic: empty_object(),
            logprobs: empty_object(),
            weight: None,
            extra: Object::new(),
        }
    }

    /// Appends a line to `observation`, creating it when it is null.
    pub fn append_observation(&mut self, line: &str) {
        match &mut self.observation {
            Some(existing) if !existing.is_empty() => {
                existing.push('\n');
                existing.push_str(line);
            }
            _ => self.observation = Some(line.to_owned()),
        }
    }

    /// Records a failed turn as Fair-Forge does: `assistant` becomes
    /// `[ERROR] <message>` and the message is appended to `observation`.
    pub fn record_failure(&mut self, message: &str) {
        self.assistant = failed_answer(message);
        self.append_observation(message);
    }
}

/// Fair-Forge's `assistant` of a failed turn: `[ERROR] <message>`. The one
/// place forge writes that prefix.
pub fn failed_answer(message: &str) -> String {
    format!("[ERROR] {message}")
}

/// One session: a conversation whose turns run in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    /// Identifier of the session, sent to the system under test.
    pub session_id: String,
    /// Identifier of the assistant under test.
    pub assistant_id: String,
    /// Language of the conversation (default `"english"`, may be null).
    #[serde(default = "english")]
    pub language: Option<String>,
    /// Context of the conversation (a system prompt, a document, ...).
    #[serde(default)]
    pub context: String,
    /// The turns, in order.
    #[serde(default)]
    pub conversation: Vec<Batch>,
    /// Fields this model does not know, carried through unchanged.
    #[serde(flatten)]
    pub extra: Object,
}

impl Dataset {
    /// A dataset with the given ids, no turns, and every other field at its default.
    pub fn new(session_id: impl Into<String>, assistant_id: impl Into<String>) -> Self {
        Dataset {
            session_id: session_id.into(),
            assistant_id: assistant_id.into(),
            language: english(),
            context: String::new(),
            conversation: Vec::new(),
            extra: Object::new(),
        }
    }

    /// Reads one dataset from a JSON value and validates it.
    ///
    /// `label` names the dataset in errors (for example `datasets[2]` or a
    /// file name); the session id is added when the value has one.
    pub fn from_value(label: &str, value: &Value) -> Result<Dataset, DatasetError> {
        let session = value
            .get("session_id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let named = |field: String, message: String| DatasetError {
            dataset: dataset_label(label, session.as_deref()),
            field,
            message,
        };
        let dataset: Dataset = serde_path_to_error::deserialize(value).map_err(|err| {
            let path = err.path().to_string();
            let message = err.into_inner().to_string();
            let field = missing_field(&message)
                .map(|missing| {
                    if path == "." {
                        missing.to_owned()
                    } else {
                        format!("{path}.{missing}")
                    }
                })
                .unwrap_or(path);
            named(field, message)
        })?;
        dataset.validate(label)?;
        Ok(dataset)
    }

    /// Checks the rules serde cannot: weights are finite and `>= 0`, and
    /// `qa_id`s are unique within the dataset.
    pub fn validate(&self, label: &str) -> Result<(), DatasetError> {
        let error = |field: String, message: String| DatasetError {
            dataset: dataset_label(label, Some(&self.session_id)),
            field,
            message,
        };
        let mut seen = HashSet::with_capacity(self.conversation.len());
        for (index, batch) in self.conversation.iter().enumerate() {
            if let Some(weight) = batch.weight {
                if !(weight >= 0.0 && weight.is_finite()) {
                    return Err(error(
                        format!("conversation[{index}].weight"),
                        format!("weight must be a number >= 0, got {weight}"),
                    ));
                }
            }
            if !seen.insert(batch.qa_id.as_str()) {
                return Err(error(
                    format!("conversation[{index}].qa_id"),
                    format!("duplicate qa_id {:?} within the dataset", batch.qa_id),
                ));
            }
        }
        Ok(())
    }
}

fn dataset_label(label: &str, session: Option<&str>) -> String {
    match session {
        Some(session) => format!("{label} (session_id {session:?})"),
        None => label.to_owned(),
    }
}

/// Extracts `x` from serde's "missing field `x`" message.
pub(crate) fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

/// Reads datasets from a JSON value holding one dataset or a list of them.
pub fn datasets_from_value(label: &str, value: &Value) -> Result<Vec<Dataset>, DatasetError> {
    match value {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(index, item)| Dataset::from_value(&format!("{label}[{index}]"), item))
            .collect(),
        Value::Object(_) => Ok(vec![Dataset::from_value(label, value)?]),
        other => Err(DatasetError {
            dataset: label.to_owned(),
            field: ".".to_owned(),
            message: format!(
                "expected a dataset object or a list of datasets, found {}",
                json_kind(other)
            ),
        }),
    }
}

/// A short name for the kind of a JSON value, for error messages.
pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The figures of one dataset's run, exactly Fair-Forge's summary keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The dataset's session id.
    pub session_id: String,
    /// Number of turns in the dataset.
    pub total_batches: usize,
    /// Turns whose runner call succeeded.
    pub successes: usize,
    /// Turns whose runner call failed.
    pub failures: usize,
    /// Wall time of the whole dataset, in milliseconds.
    pub total_execution_time_ms: f64,
    /// The turns' own times summed and divided by their count (0 with no turns).
    pub avg_batch_time_ms: f64,
}

/// The successful answer of the payload API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResponse {
    /// Always `true`.
    pub success: bool,
    /// The datasets with their answers filled in, in input order.
    pub datasets: Vec<Dataset>,
    /// One summary per dataset, in the same order.
    pub summaries: Vec<Summary>,
    /// Number of datasets.
    pub total_datasets: usize,
    /// forge's addition, only in the answer to a payload with a `runner:`
    /// (see [`crate::payload::extension`]): each dataset's turns' facts, in
    /// order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turns: Option<Vec<Vec<TurnFacts>>>,
}

/// What a remote run knows of a turn besides its answer: what a local run's
/// records show.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TurnFacts {
    /// Time spent on the turn, retries included, in milliseconds.
    pub time_ms: f64,
    /// How many times the turn was attempted.
    pub attempts: u32,
    /// The tokens the answering call used, when its runner said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<crate::usage::Usage>,
}

impl RunResponse {
    /// Builds the response from datasets and their summaries.
    pub fn new(results: Vec<(Dataset, Summary)>) -> Self {
        let (datasets, summaries): (Vec<_>, Vec<_>) = results.into_iter().unzip();
        RunResponse {
            success: true,
            total_datasets: datasets.len(),
            datasets,
            summaries,
            turns: None,
        }
    }
}

/// The answer of the payload API to a bad request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// Always `false`.
    pub success: bool,
    /// What was wrong with the request.
    pub error: String,
}

/// The payload API's response: `{"success": true, ...}` or
/// `{"success": false, "error": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Response {
    /// The run happened (individual batches may still have failed).
    Success(RunResponse),
    /// The request was rejected before any batch ran.
    Failure(ErrorResponse),
}

impl Response {
    /// A failure response carrying `error`.
    pub fn error(error: impl Into<String>) -> Self {
        Response::Failure(ErrorResponse {
            success: false,
            error: error.into(),
        })
    }

    /// Whether this is a success response.
    pub fn is_success(&self) -> bool {
        matches!(self, Response::Success(_))
    }
}
