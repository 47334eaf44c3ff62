//! `<suite>.json`: the suite's results in the payload response format
//! (`success`, `datasets` with their answers, `summaries`, `total_datasets`),
//! which Fair-Forge's metrics read unchanged. When the suite has expectations
//! or repeats, a `checks` key is added with each batch's check results.

use std::path::Path;

use super::{redact, write_file, Reported};
use crate::error::ReportError;

/// Writes one suite's response JSON to `path`.
pub fn write(path: &Path, suite: &Reported<'_>) -> Result<(), ReportError> {
    let mut value = serde_json::to_value(&suite.result.response).map_err(|e| ReportError {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    // forge's per-batch check results ride along under a key of their own;
    // Fair-Forge's fields are untouched.
    if let (Some(checks), Some(object)) = (suite.result.checks(), value.as_object_mut()) {
        object.insert("checks".to_owned(), checks);
    }
    let json = serde_json::to_string_pretty(&value).map_err(|e| ReportError {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    // Secrets are redacted in their JSON-escaped form, as they appear here.
    let escaped: Vec<String> = suite
        .secrets
        .iter()
        .filter_map(|s| serde_json::to_string(s).ok())
        .map(|quoted| quoted[1..quoted.len() - 1].to_owned())
        .collect();
    let mut json = redact(&json, &escaped);
    json.push('\n');
    write_file(path, json.as_bytes())
}
