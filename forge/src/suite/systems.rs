//! The systems under test of a suite: its one `runner:`, or several named
//! ones side by side under `runners:`.
//!
//! ```yaml
//! runners:
//!   - name: small                  # letters, digits, `-` and `_`; unique
//!     type: openai                 # then the keys of a `runner:` mapping
//!     base_url: ${SMALL_URL}
//!     model: small-1
//!     price: {input_per_mtok: 0.1, output_per_mtok: 0.4}   # optional: this system's price
//!   - name: large
//!     type: openai
//!     base_url: ${LARGE_URL}
//!     model: large-2
//! ```
//!
//! Every dataset runs against each system. The suite loads as one
//! [`Suite`](super::Suite) per system (its [`system`](super::Suite::system)
//! set), in the order of the list: test names
//! `<suite>::<system>::<session>::<qa_id>`, reports `<suite>.<system>.json`.
//! A suite says `runner:` or `runners:`, not both, and not neither; every
//! mistake is a located load error.

use serde_yaml::{Mapping, Value};

use super::locate::Part;
use super::parse::{invalid, Source};
use crate::error::SuiteError;
use crate::usage::Price;

/// The most systems one suite may compare.
pub const MAX_SYSTEMS: usize = 64;

/// One system under test of a suite.
pub(super) struct System {
    /// Its name (`None`: the suite's one `runner:`).
    pub name: Option<String>,
    /// Its runner's mapping, without `name` and `price`.
    pub mapping: Mapping,
    /// Its own `price:`, checked.
    pub price: Option<Price>,
    /// Where its mapping is in the suite: `runner`, or `runners.<i>`.
    pub at: Vec<String>,
}

/// The suite's systems, in order: its `runner:`, or each of its `runners:`.
pub(super) fn systems(
    source: Source,
    runner: Option<Mapping>,
    runners: Option<Vec<Mapping>>,
) -> Result<Vec<System>, SuiteError> {
    let key = |name: &str| source.at_path(&[name.to_owned()], Part::Key);
    let entries = match (runner, runners) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                key("runners"),
                "give `runner:` (one system) or `runners:` (several, side by side), not both"
                    .to_owned(),
            ))
        }
        (None, None) => {
            return Err(invalid(
                source.at_path(&[], Part::Key),
                "missing `runner:`, the system under test (or `runners:`, a list of named systems to compare)"
                    .to_owned(),
            ))
        }
        (Some(mapping), None) => {
            return Ok(vec![System {
                name: None,
                mapping,
                price: None,
                at: vec!["runner".to_owned()],
            }])
        }
        (None, Some(entries)) => entries,
    };
    if entries.is_empty() || entries.len() > MAX_SYSTEMS {
        return Err(invalid(
            key("runners"),
            format!(
                "`runners` lists {} systems: list 1 to {MAX_SYSTEMS}, each `- name: ...` with its runner's keys",
                entries.len()
            ),
        ));
    }
    let mut systems: Vec<System> = Vec::with_capacity(entries.len());
    for (index, entry) in entries.into_iter().enumerate() {
        let system = named(source, index, entry)?;
        if systems.iter().any(|s| s.name == system.name) {
            return Err(invalid(
                source.at_path(&field(index, "name"), Part::Value),
                format!(
                    "duplicate system name {:?}: the names in `runners` are unique",
                    system.name.unwrap_or_default()
                ),
            ));
        }
        systems.push(system);
    }
    Ok(systems)
}

/// The path of `key` in entry `index` of `runners:`.
fn field(index: usize, key: &str) -> Vec<String> {
    vec!["runners".to_owned(), index.to_string(), key.to_owned()]
}

/// Entry `index` of `runners:`: its name (checked), its price, its runner.
fn named(source: Source, index: usize, mut entry: Mapping) -> Result<System, SuiteError> {
    let at = vec!["runners".to_owned(), index.to_string()];
    let name = match entry.remove("name") {
        Some(Value::String(name)) => name,
        None => {
            return Err(invalid(
                source.at_path(&at, Part::Value),
                "every entry of `runners` needs a `name:` (it becomes test names and report file names)"
                    .to_owned(),
            ))
        }
        Some(_) => {
            return Err(invalid(
                source.at_path(&field(index, "name"), Part::Value),
                "a system's `name` must be a string".to_owned(),
            ))
        }
    };
    let valid_char = |c: char| c.is_alphanumeric() || matches!(c, '-' | '_');
    if name.is_empty() || name.len() > 64 || !name.chars().all(valid_char) {
        return Err(invalid(
            source.at_path(&field(index, "name"), Part::Value),
            format!(
                "invalid system name {name:?}: use 1 to 64 letters, digits, `-` and `_` (it becomes test names and report file names)"
            ),
        ));
    }
    let price = entry
        .remove("price")
        .map(|value| {
            serde_yaml::from_value::<Price>(value)
                .map_err(|e| format!("invalid `price`: {e}"))
                .and_then(Price::check)
                .map_err(|message| {
                    invalid(source.at_path(&field(index, "price"), Part::Key), message)
                })
        })
        .transpose()?;
    Ok(System {
        name: Some(name),
        mapping: entry,
        price,
        at,
    })
}
