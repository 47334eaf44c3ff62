//! Dataset files named by a suite's `file:` entries: Fair-Forge JSON (one
//! dataset or a list), JSONL (one dataset per line), or YAML (one dataset or
//! a list).

use std::path::Path;

use serde_json::Value;

use super::parse::yaml_error;
use crate::error::{DatasetError, Location, SuiteError};
use crate::schema::{datasets_from_value, Dataset};

/// The text of a file, an error naming it.
pub(super) fn read_text(path: &Path) -> Result<String, SuiteError> {
    std::fs::read_to_string(path).map_err(|source| SuiteError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Reads datasets from a file: Fair-Forge JSON (one dataset or a list),
/// JSONL (one dataset per line), or YAML (one dataset or a list), by its
/// extension (JSON when it is neither).
/// Also returns the 64-bit FNV-1a hash of the file's text (what the suite's
/// fingerprint takes of it: the file is read once).
pub(super) fn load_dataset_file(path: &Path) -> Result<(Vec<Dataset>, u64), SuiteError> {
    let text = read_text(path)?;
    let mut hash = crate::partition::Fnv1a::default();
    hash.update(text.as_bytes());
    parse_dataset_text(path, &text).map(|datasets| (datasets, hash.0))
}

/// The datasets of a dataset file's text, by its extension.
fn parse_dataset_text(path: &Path, text: &str) -> Result<Vec<Dataset>, SuiteError> {
    let label = path.display().to_string();
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match extension.as_str() {
        "jsonl" | "ndjson" => load_jsonl(path, &label, text),
        "yaml" | "yml" => {
            let value: Value = serde_yaml::from_str(text).map_err(|e| yaml_error(path, text, e))?;
            datasets_from_value(&label, &value)
                .map_err(|source| dataset_error(location(path, None, None), source))
        }
        _ => load_json(path, &label, text),
    }
}

/// A position in a dataset file.
fn location(path: &Path, line: Option<usize>, column: Option<usize>) -> Location {
    Location {
        file: path.to_owned(),
        line,
        column,
    }
}

fn dataset_error(location: Location, source: DatasetError) -> SuiteError {
    SuiteError::Dataset {
        location,
        source: Box::new(source),
    }
}

/// A JSONL file: one dataset per non-blank line.
fn load_jsonl(path: &Path, label: &str, text: &str) -> Result<Vec<Dataset>, SuiteError> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| jsonl_dataset(path, label, index + 1, line))
        .collect()
}

/// The dataset of JSONL line `number`.
pub(super) fn jsonl_dataset(
    path: &Path,
    label: &str,
    number: usize,
    line: &str,
) -> Result<Dataset, SuiteError> {
    let value: Value = serde_json::from_str(line).map_err(|e| SuiteError::Invalid {
        location: location(path, Some(number), Some(e.column())),
        message: format!("invalid JSON: {e}"),
    })?;
    Dataset::from_value(&format!("{label}:{number}"), &value)
        .map_err(|source| dataset_error(location(path, Some(number), None), source))
}

/// Element `index` of a JSON list of datasets (`None`: a file's one
/// dataset), whose text starts on line `first_line`.
pub(super) fn element_dataset(
    path: &Path,
    label: &str,
    index: Option<usize>,
    first_line: usize,
    text: &str,
) -> Result<Dataset, SuiteError> {
    let shift = |e: &serde_json::Error| {
        let line = first_line + e.line().saturating_sub(1);
        let column = if e.line() <= 1 {
            None
        } else {
            Some(e.column())
        };
        location(path, Some(line), column)
    };
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let dataset =
        serde_path_to_error::deserialize::<_, Dataset>(&mut deserializer).map_err(|err| {
            let at = shift(err.inner());
            match json_error(path, label, err) {
                SuiteError::Invalid { message, .. } => SuiteError::Invalid {
                    location: at,
                    message,
                },
                // The field as an eager load names it: from the list.
                SuiteError::Dataset { mut source, .. } => {
                    if let Some(index) = index {
                        source.field = match source.field.trim_start_matches('.') {
                            "" => format!("[{index}]"),
                            field => format!("[{index}].{field}"),
                        };
                    }
                    SuiteError::Dataset {
                        location: at,
                        source,
                    }
                }
                other => other,
            }
        })?;
    deserializer.end().map_err(|e| SuiteError::Invalid {
        location: shift(&e),
        message: format!("invalid JSON: {e}"),
    })?;
    dataset
        .validate(&format!("{label}[{}]", index.unwrap_or(0)))
        .map_err(|source| dataset_error(location(path, Some(first_line), None), source))?;
    Ok(dataset)
}

/// A Fair-Forge JSON file (one dataset or a list), deserialised straight
/// into datasets: no intermediate JSON tree, so large files stay cheap.
fn load_json(path: &Path, label: &str, text: &str) -> Result<Vec<Dataset>, SuiteError> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let parsed = if text.trim_start().starts_with('[') {
        serde_path_to_error::deserialize::<_, Vec<Dataset>>(&mut deserializer)
    } else {
        serde_path_to_error::deserialize::<_, Dataset>(&mut deserializer).map(|d| vec![d])
    };
    let datasets = parsed.map_err(|err| json_error(path, label, err))?;
    deserializer.end().map_err(|e| SuiteError::Invalid {
        location: location(path, Some(e.line()), Some(e.column())),
        message: format!("invalid JSON: {e}"),
    })?;
    for (index, dataset) in datasets.iter().enumerate() {
        dataset
            .validate(&format!("{label}[{index}]"))
            .map_err(|source| dataset_error(location(path, None, None), source))?;
    }
    Ok(datasets)
}

/// A JSON file that does not parse, or whose data does not fit Fair-Forge's
/// model (then the error names the field, as a path).
fn json_error(
    path: &Path,
    label: &str,
    err: serde_path_to_error::Error<serde_json::Error>,
) -> SuiteError {
    let path_text = err.path().to_string();
    let inner = err.into_inner();
    let at = location(path, Some(inner.line()), Some(inner.column()));
    if !inner.is_data() {
        return SuiteError::Invalid {
            location: at,
            message: format!("invalid JSON: {inner}"),
        };
    }
    let message = inner.to_string();
    let message = message
        .rsplit_once(" at line ")
        .map_or(message.as_str(), |(m, _)| m)
        .to_owned();
    let field = match crate::schema::missing_field(&message) {
        Some(missing) if path_text == "." => missing.to_owned(),
        Some(missing) => format!("{path_text}.{missing}"),
        None => path_text,
    };
    let source = DatasetError {
        dataset: label.to_owned(),
        field,
        message,
    };
    dataset_error(at, source)
}
