//! `<suite>.json`: the suite's results in the payload response format
//! (`success`, `datasets` with their answers, `summaries`, `total_datasets`),
//! which Fair-Forge's metrics read unchanged.

use std::path::Path;

use super::{redact, write_file, Reported};
use crate::error::ReportError;

/// Writes one suite's response JSON to `path`.
pub fn write(path: &Path, suite: &Reported<'_>) -> Result<(), ReportError> {
    let json = serde_json::to_string_pretty(&suite.result.response).map_err(|e| ReportError {
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
