//! The YAML shape of a suite file, as serde reads it. Unknown keys are
//! errors (with the closest valid key suggested by the loader); checks that
//! need several fields run in `TryFrom`, so serde_yaml attaches the position
//! of the offending mapping to their errors.

use serde::Deserialize;

use crate::check::Checks;
use crate::duration::DurationValue;
use crate::schema::{Batch, Dataset, Object};

/// A whole suite file.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "forge suite")]
#[schemars(extend("oneOf" = [{"required": ["runner"]}, {"required": ["runners"]}]))]
pub(crate) struct SuiteFile {
    /// The suite's name (default: the file's stem); test names start with it.
    #[serde(default)]
    pub name: Option<String>,
    /// The system under test: `type` and that runner's keys.
    #[serde(default)]
    #[schemars(schema_with = "super::json_schema::runner")]
    pub runner: Option<serde_yaml::Mapping>,
    /// Several named systems, side by side (see `suite::systems`): each a
    /// `name`, a runner's keys and its own `price`.
    #[serde(default)]
    #[schemars(schema_with = "super::json_schema::systems")]
    pub runners: Option<Vec<serde_yaml::Mapping>>,
    /// Sessions in flight at once (default 8).
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// Time allowed per turn.
    #[serde(default)]
    pub timeout: Option<DurationValue>,
    /// Retries of a turn that failed transiently.
    #[serde(default)]
    pub retries: Option<u32>,
    /// The wait between retries.
    #[serde(default)]
    pub backoff: Option<BackoffValue>,
    /// The most requests sent per unit of time.
    #[serde(default)]
    pub rate_limit: Option<RateValue>,
    /// The datasets: inline, or `file:` entries.
    #[serde(default)]
    pub datasets: Vec<DatasetEntry>,
    /// The checks of every turn (a dataset or batch overrides them, check by check).
    #[serde(default)]
    pub expect: Option<Checks>,
    /// Runs of each session (each batch passes by `pass_rate` or `min_passes`).
    #[serde(default)]
    pub repeat: Option<usize>,
    /// The share of a repeated batch's runs that must pass.
    #[serde(default)]
    pub pass_rate: Option<f64>,
    /// The runs of a repeated batch that must pass.
    #[serde(default)]
    pub min_passes: Option<usize>,
    /// The judge of judged checks (`answer_correctness`, `rubric`).
    #[serde(default)]
    #[schemars(with = "Option<crate::judge::JudgeConfig>")]
    pub judge: Option<serde_yaml::Mapping>,
    /// What the runner's tokens cost.
    #[serde(default)]
    pub price: Option<crate::usage::Price>,
    /// What a run may spend.
    #[serde(default)]
    pub budget: Option<crate::usage::Budget>,
}

impl SuiteFile {
    pub fn repeat(&self) -> RepeatSpec {
        RepeatSpec {
            repeat: self.repeat,
            pass_rate: self.pass_rate,
            min_passes: self.min_passes,
        }
    }
}

/// The most runs `repeat` may ask for: each run is a session of its own,
/// held in memory with its records until every run of a batch is in.
pub(crate) const MAX_REPEAT: usize = 10_000;

/// `repeat: N` with `pass_rate: 0.8` or `min_passes: 4`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RepeatSpec {
    pub repeat: Option<usize>,
    pub pass_rate: Option<f64>,
    pub min_passes: Option<usize>,
}

impl RepeatSpec {
    /// This level's settings, with `outer` filling what it leaves unset.
    pub fn or(self, outer: RepeatSpec) -> RepeatSpec {
        // The gate (`pass_rate` or `min_passes`) is one setting: a level that
        // names neither inherits the outer level's.
        let (pass_rate, min_passes) = if self.pass_rate.is_some() || self.min_passes.is_some() {
            (self.pass_rate, self.min_passes)
        } else {
            (outer.pass_rate, outer.min_passes)
        };
        RepeatSpec {
            repeat: self.repeat.or(outer.repeat),
            pass_rate,
            min_passes,
        }
    }

    /// The checks that hold whatever the other levels say.
    pub fn check_alone(self) -> Result<(), String> {
        match self.repeat {
            Some(0) => return Err("`repeat` must be at least 1".into()),
            Some(runs) if runs > MAX_REPEAT => {
                return Err(format!(
                    "`repeat` {runs} is more than the most allowed, {MAX_REPEAT}"
                ))
            }
            _ => {}
        }
        match (self.pass_rate, self.min_passes) {
            (Some(_), Some(_)) => Err("give `pass_rate` or `min_passes`, not both".into()),
            (Some(rate), None) if !(rate > 0.0 && rate <= 1.0) => Err(format!(
                "`pass_rate` {rate} is outside 0 (excluded) to 1: a gate of 0 passes a batch whose every run failed"
            )),
            (None, Some(0)) => Err(
                "`min_passes` must be at least 1: 0 passes a batch whose every run failed".into(),
            ),
            _ => Ok(()),
        }
    }

    /// (runs, passes needed), checked.
    pub fn resolve(self) -> Result<(usize, usize), String> {
        self.check_alone()?;
        let runs = self.repeat.unwrap_or(1);
        let needed = match (self.pass_rate, self.min_passes) {
            (Some(rate), _) => ((rate * runs as f64) - 1e-9).ceil().max(1.0) as usize,
            (None, Some(min)) if min <= runs => min,
            (None, Some(min)) => {
                return Err(format!("`min_passes` {min} is more than `repeat` {runs}"))
            }
            (None, None) => runs,
        };
        Ok((runs, needed))
    }
}

/// The rates [`parse_rate`] reads, for editors (a unit test keeps the two
/// in step).
const RATE_PATTERN: &str =
    r"^\s*([0-9]+(\.[0-9]*)?|\.[0-9]+)\s*(/\s*(s|sec|second|m|min|minute|h|hour)\s*)?$";

/// `backoff: {initial: 250ms, max: 30s}`: either key may be left out.
#[derive(Debug, Clone, Copy, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BackoffValue {
    /// The first retry's wait.
    #[serde(default)]
    pub initial: Option<DurationValue>,
    /// The longest wait.
    #[serde(default)]
    pub max: Option<DurationValue>,
}

/// A request rate: `20/s`, `600/min`, `1000/h`, or a number of requests per
/// second (`0.5` is one every two seconds). Held as `count` per `period`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RateValue {
    pub count: u32,
    pub period: std::time::Duration,
}

impl schemars::JsonSchema for RateValue {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Rate".into()
    }

    /// What [`parse_rate`] and the visitor below accept.
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "`20/s`, `600/min`, `1000/h`, or requests per second",
            "anyOf": [
                {"type": "string", "pattern": RATE_PATTERN},
                {"type": "number", "exclusiveMinimum": 0},
            ],
        })
    }
}

impl<'de> Deserialize<'de> for RateValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = RateValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a request rate such as 20/s or 600/min")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RateValue, E> {
                parse_rate(v).map_err(E::custom)
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<RateValue, E> {
                rate(v, std::time::Duration::from_secs(1), &v.to_string()).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RateValue, E> {
                self.visit_f64(v as f64)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RateValue, E> {
                self.visit_f64(v as f64)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// `count` requests per `period`, checked.
fn rate(count: f64, period: std::time::Duration, text: &str) -> Result<RateValue, String> {
    if !(count.is_finite() && count > 0.0) {
        return Err(format!(
            "invalid rate {text:?}: expected a positive number of requests such as 20/s"
        ));
    }
    if count.fract() == 0.0 && count <= f64::from(u32::MAX) {
        return Ok(RateValue {
            count: count as u32,
            period,
        });
    }
    // A fractional count: one request every period / count.
    let every = std::time::Duration::try_from_secs_f64(period.as_secs_f64() / count)
        .map_err(|_| format!("invalid rate {text:?}"))?;
    if every.is_zero() {
        return Err(format!("invalid rate {text:?}: too high"));
    }
    Ok(RateValue {
        count: 1,
        period: every,
    })
}

/// Parses `20/s`, `600/min`, `1000/h` or a bare number per second.
pub(crate) fn parse_rate(text: &str) -> Result<RateValue, String> {
    let text = text.trim();
    let (number, unit) = text.split_once('/').unwrap_or((text, "s"));
    let count: f64 = number.trim().parse().map_err(|_| {
        format!(
            "invalid rate {text:?}: expected a number of requests per unit such as 20/s or 600/min"
        )
    })?;
    let period = match unit.trim() {
        "s" | "sec" | "second" => 1,
        "m" | "min" | "minute" => 60,
        "h" | "hour" => 3600,
        other => {
            return Err(format!(
                "invalid rate {text:?}: unknown unit {other:?} (expected s, min or h)"
            ))
        }
    };
    rate(count, std::time::Duration::from_secs(period), text)
}

/// One entry of `datasets:`: inline, or `file:`.
#[derive(Debug)]
pub(crate) enum DatasetEntry {
    File(FileEntry),
    Inline(InlineEntry),
}

/// `- file: data/more.json`, with what the suite says about its datasets.
#[derive(Debug)]
pub(crate) struct FileEntry {
    pub file: String,
    pub ignore: bool,
    pub expect: Option<Checks>,
    pub repeat: RepeatSpec,
    pub judge: Option<serde_yaml::Mapping>,
}

/// A dataset written in the suite, with what the suite says about it and
/// each of its batches.
#[derive(Debug)]
pub(crate) struct InlineEntry {
    pub dataset: Dataset,
    pub ignore: bool,
    pub expect: Option<Checks>,
    pub repeat: RepeatSpec,
    pub batches: Vec<BatchMeta>,
    pub judge: Option<serde_yaml::Mapping>,
}

/// What an inline batch says beyond Fair-Forge's fields.
#[derive(Debug, Default)]
pub(crate) struct BatchMeta {
    pub ignore: bool,
    pub expect: Option<Checks>,
}

/// A dataset entry as written: inline (`session_id`, `assistant_id`,
/// `conversation`) or `file:` (a JSON/JSONL/YAML dataset file).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "DatasetEntry")]
struct RawEntry {
    /// A dataset file (Fair-Forge JSON, JSONL or YAML), relative to the suite.
    #[serde(default)]
    file: Option<String>,
    /// The session's id (inline datasets).
    #[serde(default)]
    session_id: Option<String>,
    /// The id of the assistant under test (inline datasets).
    #[serde(default)]
    assistant_id: Option<String>,
    /// The session's language.
    #[serde(default, deserialize_with = "present")]
    #[schemars(with = "Option<String>")]
    language: Option<Option<String>>,
    /// Context sent with the session.
    #[serde(default)]
    context: Option<String>,
    /// The turns, in order.
    #[serde(default)]
    conversation: Option<Vec<SuiteBatch>>,
    /// Skip the dataset's batches (reported as ignored).
    #[serde(default)]
    ignore: bool,
    /// Checks of the dataset's turns.
    #[serde(default)]
    expect: Option<Checks>,
    /// Runs of each session of this dataset.
    #[serde(default)]
    repeat: Option<usize>,
    /// The share of a repeated batch's runs that must pass.
    #[serde(default)]
    pass_rate: Option<f64>,
    /// The runs of a repeated batch that must pass.
    #[serde(default)]
    min_passes: Option<usize>,
    /// This dataset's judge, key by key over the suite's.
    #[serde(default)]
    #[schemars(with = "Option<crate::judge::JudgeConfig>")]
    judge: Option<serde_yaml::Mapping>,
}

crate::check::schema_as!(DatasetEntry => RawEntry);

/// Distinguishes `language: null` (Some(None)) from an absent key (None).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

impl<'de> Deserialize<'de> for DatasetEntry {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = RawEntry::deserialize(deserializer)?;
        DatasetEntry::try_from(raw).map_err(serde::de::Error::custom)
    }
}

impl TryFrom<RawEntry> for DatasetEntry {
    type Error = String;

    fn try_from(mut raw: RawEntry) -> Result<Self, String> {
        let repeat = RepeatSpec {
            repeat: raw.repeat,
            pass_rate: raw.pass_rate,
            min_passes: raw.min_passes,
        };
        // Checked whole once merged with the suite's settings.
        repeat.check_alone()?;
        match raw.file.take() {
            Some(file) => FileEntry::from_raw(file, raw, repeat).map(DatasetEntry::File),
            None => InlineEntry::from_raw(raw, repeat).map(DatasetEntry::Inline),
        }
    }
}

impl RawEntry {
    /// The keys of an inline dataset that the entry sets.
    fn inline_keys(&self) -> Vec<&'static str> {
        [
            ("session_id", self.session_id.is_some()),
            ("assistant_id", self.assistant_id.is_some()),
            ("conversation", self.conversation.is_some()),
            ("context", self.context.is_some()),
            ("language", self.language.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect()
    }
}

impl FileEntry {
    /// A `file:` entry, which takes none of an inline dataset's keys.
    fn from_raw(file: String, raw: RawEntry, repeat: RepeatSpec) -> Result<Self, String> {
        let extra = raw.inline_keys();
        if !extra.is_empty() {
            return Err(format!(
                "a `file:` dataset entry takes only `file`, `ignore`, `expect`, `repeat` and `judge`; remove {}",
                extra
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Ok(FileEntry {
            file,
            ignore: raw.ignore,
            expect: raw.expect,
            repeat,
            judge: raw.judge,
        })
    }
}

impl InlineEntry {
    /// An inline dataset: `session_id` and `assistant_id` required.
    fn from_raw(raw: RawEntry, repeat: RepeatSpec) -> Result<Self, String> {
        let session_id = raw.session_id.ok_or(
            "missing field `session_id` (an inline dataset needs `session_id`, `assistant_id` and `conversation`; or use `file:`)",
        )?;
        let assistant_id = raw
            .assistant_id
            .ok_or("missing field `assistant_id` (the id of the assistant under test)")?;
        let mut dataset = Dataset::new(session_id, assistant_id);
        if let Some(language) = raw.language {
            dataset.language = language;
        }
        dataset.context = raw.context.unwrap_or_default();
        let (conversation, batches) = raw
            .conversation
            .unwrap_or_default()
            .into_iter()
            .map(SuiteBatch::split)
            .unzip();
        dataset.conversation = conversation;
        Ok(InlineEntry {
            dataset,
            ignore: raw.ignore,
            expect: raw.expect,
            repeat,
            batches,
            judge: raw.judge,
        })
    }
}

/// A batch written inline in a suite: Fair-Forge's fields plus `ignore`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Batch")]
pub(crate) struct SuiteBatch {
    /// The turn's id, unique in its dataset.
    qa_id: String,
    /// What is sent to the system under test.
    query: String,
    /// A recorded answer (the `replay` runner's default source).
    #[serde(default)]
    assistant: String,
    /// The expected answer (`similarity`, `answer_correctness`).
    #[serde(default)]
    ground_truth_assistant: String,
    /// Fair-Forge's `observation`.
    #[serde(default)]
    observation: Option<String>,
    /// Agentic data (tool calls, ...).
    #[serde(default, deserialize_with = "object")]
    #[schemars(with = "Option<Object>")]
    agentic: Option<Option<Object>>,
    /// The expected agentic data (`tool_correctness`).
    #[serde(default, deserialize_with = "object")]
    #[schemars(with = "Option<Object>")]
    ground_truth_agentic: Option<Option<Object>>,
    /// Fair-Forge's `logprobs`.
    #[serde(default, deserialize_with = "object")]
    #[schemars(with = "Option<Object>")]
    logprobs: Option<Option<Object>>,
    /// Fair-Forge's `weight`.
    #[serde(default)]
    weight: Option<f64>,
    /// Skip this batch (reported as ignored).
    #[serde(default)]
    ignore: bool,
    /// This turn's checks.
    #[serde(default)]
    expect: Option<Checks>,
}

fn object<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<Object>>, D::Error> {
    Option::<Object>::deserialize(d).map(Some)
}

impl SuiteBatch {
    fn split(mut self) -> (Batch, BatchMeta) {
        let meta = BatchMeta {
            ignore: self.ignore,
            expect: self.expect.take(),
        };
        (self.into_batch(), meta)
    }

    fn into_batch(self) -> Batch {
        let mut batch = Batch::new(self.qa_id, self.query);
        batch.assistant = self.assistant;
        batch.ground_truth_assistant = self.ground_truth_assistant;
        batch.observation = self.observation;
        if let Some(agentic) = self.agentic {
            batch.agentic = agentic;
        }
        if let Some(gt) = self.ground_truth_agentic {
            batch.ground_truth_agentic = gt;
        }
        if let Some(logprobs) = self.logprobs {
            batch.logprobs = logprobs;
        }
        batch.weight = self.weight;
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_rate, RateValue};
    use crate::duration::parse_duration;
    use std::time::Duration;

    #[test]
    fn rates() {
        let per = |count, secs| RateValue {
            count,
            period: Duration::from_secs(secs),
        };
        assert_eq!(parse_rate("20/s"), Ok(per(20, 1)));
        assert_eq!(parse_rate("600/min"), Ok(per(600, 60)));
        assert_eq!(parse_rate(" 5 / h "), Ok(per(5, 3600)));
        assert_eq!(parse_rate("3"), Ok(per(3, 1)));
        assert_eq!(
            parse_rate("0.5/s"),
            Ok(RateValue {
                count: 1,
                period: Duration::from_secs(2)
            })
        );
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("-1/s").is_err());
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("20/week").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn repeat_levels_merge() {
        use super::RepeatSpec;
        let suite = RepeatSpec {
            repeat: Some(3),
            pass_rate: Some(0.6),
            min_passes: None,
        };
        let only_repeat = RepeatSpec {
            repeat: Some(5),
            ..RepeatSpec::default()
        };
        assert_eq!(only_repeat.or(suite).resolve(), Ok((5, 3)));
        let only_gate = RepeatSpec {
            min_passes: Some(3),
            ..RepeatSpec::default()
        };
        let suite = RepeatSpec {
            repeat: Some(5),
            ..RepeatSpec::default()
        };
        assert_eq!(only_gate.or(suite).resolve(), Ok((5, 3)));
        assert!(only_gate.check_alone().is_ok());
        assert!(RepeatSpec::default().or(suite).resolve() == Ok((5, 5)));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3 weeks").is_err());
    }
}
