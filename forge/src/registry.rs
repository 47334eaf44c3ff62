//! Runner types by name: the built-ins and every `#[forge_runner]`.
//!
//! A suite's `runner: {type: NAME, ...}` is looked up here; the rest of the
//! mapping is the runner's configuration.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ConfigError;
use crate::runner::Runner;

#[doc(hidden)]
/// A runner type that suites can name. Built-in runners and
/// `#[forge_runner]` structs register one with `inventory`.
pub struct RunnerType {
    /// The name suites use in `runner: {type: ...}`.
    pub name: &'static str,
    /// Builds the runner from the rest of the `runner:` mapping (a JSON object).
    pub build: BuildFn,
}

/// Builds a runner from its configuration (the `runner:` mapping without `type`).
#[doc(hidden)]
pub type BuildFn = fn(Value, &BuildContext) -> Result<Arc<dyn Runner>, ConfigError>;

/// What a runner may need to know about where it is configured.
#[derive(Debug, Clone, Default)]
pub struct BuildContext {
    /// The directory of the suite file; relative paths in a runner's
    /// configuration are relative to it. Empty for the payload API (the
    /// working directory).
    pub base_dir: PathBuf,
}

impl BuildContext {
    /// A context whose relative paths resolve against `base_dir`.
    pub fn new(base_dir: impl Into<PathBuf>) -> Self {
        BuildContext {
            base_dir: base_dir.into(),
        }
    }

    /// `path` resolved against the suite's directory.
    pub fn resolve(&self, path: impl AsRef<Path>) -> PathBuf {
        self.base_dir.join(path)
    }
}

inventory::collect!(RunnerType);

/// The registered runner type names, sorted.
pub fn names() -> Vec<&'static str> {
    let mut names: Vec<_> = inventory::iter::<RunnerType>
        .into_iter()
        .map(|t| t.name)
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Builds a runner from a `runner:` mapping: `{"type": NAME, ...config}`.
///
/// `redact: [..]` (extra strings to redact from every output, for any
/// runner type) is checked and taken out before the runner sees its
/// configuration; the suite adds its strings to its secrets.
pub fn build(mut config: Value, context: &BuildContext) -> Result<Arc<dyn Runner>, ConfigError> {
    let Some(map) = config.as_object_mut() else {
        return Err(ConfigError::new(
            "?",
            "the runner must be a mapping with a `type` key",
        ));
    };
    let name = match map.remove("type") {
        Some(Value::String(name)) => name,
        Some(_) => return Err(ConfigError::new("?", "`type` must be a string").at(["type"])),
        None => {
            return Err(ConfigError::new(
                "?",
                format!(
                    "the runner has no `type`; registered types: {}",
                    names().join(", ")
                ),
            ))
        }
    };
    match map.remove("redact") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {}
        Some(_) => {
            return Err(ConfigError::new(
                name,
                "`redact` must be a list of strings (values to redact from every output)",
            )
            .at(["redact"]))
        }
    }
    build_named(&name, config, context)
}

/// Builds the runner type `name` from its configuration.
pub fn build_named(
    name: &str,
    config: Value,
    context: &BuildContext,
) -> Result<Arc<dyn Runner>, ConfigError> {
    let mut found = inventory::iter::<RunnerType>
        .into_iter()
        .filter(|t| t.name == name);
    match (found.next(), found.next()) {
        (Some(runner_type), None) => (runner_type.build)(config, context),
        (Some(_), Some(_)) => Err(duplicate(name).at(["type"])),
        (None, _) => Err(unknown(name).at(["type"])),
    }
}

/// The error for a runner type no runner of this binary has: a misspelt
/// one gets the closest name; any other is most likely a `#[forge_runner]`
/// defined in a test binary, which only that binary knows.
fn unknown(name: &str) -> ConfigError {
    let names = names();
    let message = match closest(name, names.iter().copied()) {
        Some(close) => format!(
            "unknown runner type (did you mean `{close}`?); registered types: {}",
            names.join(", ")
        ),
        None => format!(
            "unknown runner type: this binary's types are {}. A `#[forge_runner]` (or \
             `register_runner!`) type exists only in the binary that defines it: run this \
             suite with that test target (`cargo test --test suites`), not with `forge run`",
            names.join(", ")
        ),
    };
    ConfigError::new(name, message)
}

/// The runner type names registered more than once, sorted: two
/// `#[forge_runner]`s with one name in different modules or crates, or one
/// named like a built-in runner. Building such a runner fails; a harness may
/// call this up front to report every clash at once.
pub fn duplicates() -> Vec<&'static str> {
    let mut all: Vec<_> = inventory::iter::<RunnerType>
        .into_iter()
        .map(|t| t.name)
        .collect();
    all.sort_unstable();
    let mut duplicates: Vec<_> = all
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| w[0])
        .collect();
    duplicates.dedup();
    duplicates
}

/// The error for a runner type name registered more than once.
fn duplicate(name: &str) -> ConfigError {
    ConfigError::new(
        name,
        format!(
            "runner name `{name}` registered twice (or more): two `#[forge_runner]`s share it, \
             or one is named like a built-in runner; rename one with `#[forge_runner(name = \"...\")]`"
        ),
    )
}

/// Deserializes a runner's configuration, naming the offending field in errors
/// and suggesting the closest valid key for a misspelt one.
pub fn config<T: DeserializeOwned>(runner: &str, config: Value) -> Result<T, ConfigError> {
    let config = if config.is_null() {
        Value::Object(Default::default())
    } else {
        config
    };
    serde_path_to_error::deserialize(config).map_err(|err| {
        let mut segments = segments(err.path());
        let inner = err.into_inner().to_string();
        // An unknown key's path may end with the key itself: the message
        // names it, the prefix names where it is.
        let mut at = segments.clone();
        match unknown_field(&inner) {
            Some(field) if segments.last().map(String::as_str) == Some(field) => {
                at.pop();
            }
            Some(field) => segments.push(field.to_owned()),
            None => {}
        }
        let message = with_suggestion(&inner);
        let error = if at.is_empty() {
            ConfigError::new(runner, message)
        } else {
            ConfigError::new(runner, format!("`{}`: {message}", dotted(&at)))
        };
        error.at(segments)
    })
}

/// A path as serde_path_to_error writes it: `headers.X-Key`, `args[2]`.
fn dotted(path: &[String]) -> String {
    let mut text = String::new();
    for segment in path {
        if segment.parse::<usize>().is_ok() {
            text.push_str(&format!("[{segment}]"));
        } else {
            if !text.is_empty() {
                text.push('.');
            }
            text.push_str(segment);
        }
    }
    text
}

/// A serde path as keys and indices (up to the first segment it cannot name).
fn segments(path: &serde_path_to_error::Path) -> Vec<String> {
    use serde_path_to_error::Segment;
    path.iter()
        .map_while(|segment| match segment {
            Segment::Seq { index } => Some(index.to_string()),
            Segment::Map { key } => Some(key.clone()),
            Segment::Enum { variant } => Some(variant.clone()),
            Segment::Unknown => None,
        })
        .collect()
}

/// The key of serde's "unknown field `x`, expected ..." message.
pub(crate) fn unknown_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("unknown field `")?
        .split_once('`')
        .map(|(field, _)| field)
}

/// The candidate closest to `word`, when one is close enough to be a typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// Adds "did you mean" to serde's "unknown field `x`, expected one of ..." messages.
pub(crate) fn with_suggestion(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.to_owned();
    };
    let Some((field, expected)) = rest.split_once('`') else {
        return message.to_owned();
    };
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect::<Vec<_>>();
    match closest(field, candidates.iter().copied()) {
        Some(best) => format!(
            "unknown key `{field}`, did you mean `{best}`? (expected one of {})",
            list(&candidates)
        ),
        None => format!(
            "unknown key `{field}`, expected one of {}",
            list(&candidates)
        ),
    }
}

fn list(candidates: &[&str]) -> String {
    candidates
        .iter()
        .map(|c| format!("`{c}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_closest_key() {
        let msg = with_suggestion(
            "unknown field `agnet_id`, expected one of `base_url`, `agent_id`, `api_key`",
        );
        assert!(msg.contains("did you mean `agent_id`?"), "{msg}");
        let msg = with_suggestion("unknown field `zzz`, expected `base_url` or `agent_id`");
        assert_eq!(
            msg,
            "unknown key `zzz`, expected one of `base_url`, `agent_id`"
        );
    }

    #[test]
    fn unknown_type_lists_registered_names() {
        let err = build(
            serde_json::json!({"type": "ecko"}),
            &BuildContext::default(),
        )
        .err()
        .expect("unknown type");
        assert!(err.message.contains("did you mean `echo`?"), "{err}");
        assert!(err.message.contains("alquimia"), "{err}");
    }

    #[test]
    fn redact_is_taken_out_for_every_runner_type() {
        let context = BuildContext::default();
        for runner in [
            serde_json::json!({"type": "echo", "redact": ["x1"]}),
            serde_json::json!({"type": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1", "redact": []}),
        ] {
            build(runner, &context).expect("redact is accepted");
        }
        let err = build(
            serde_json::json!({"type": "echo", "redact": "x1"}),
            &context,
        )
        .err()
        .expect("not a list");
        assert!(err.message.contains("list of strings"), "{err}");
    }
}
