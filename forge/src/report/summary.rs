//! `<suite>.json`: the suite's results in the payload response format
//! (`success`, `datasets` with their answers, `summaries`, `total_datasets`),
//! which Fair-Forge's metrics read unchanged. When the suite has expectations
//! or repeats, a `checks` key is added with each batch's check results.

use std::path::Path;

use serde::Serialize;

use super::{redact, write_file, Reported};
use crate::error::ReportError;
use crate::schema::Response;

/// The file's shape: the response, and forge's `checks` beside it.
#[derive(Serialize)]
struct SummaryFile<'a> {
    #[serde(flatten)]
    response: &'a Response,
    #[serde(skip_serializing_if = "Option::is_none")]
    checks: Option<serde_json::Value>,
}

/// Writes one suite's response JSON to `path`.
pub fn write(path: &Path, suite: &Reported<'_>) -> Result<(), ReportError> {
    let file = SummaryFile {
        response: &suite.result.response,
        checks: suite.result.checks(),
    };
    // Serialised straight to bytes: no intermediate JSON tree of the whole run.
    let mut bytes = Vec::with_capacity(256 * suite.result.records.len() + 1024);
    serde_json::to_writer_pretty(&mut bytes, &file).map_err(|e| ReportError {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    bytes.push(b'\n');
    // Secrets are redacted in their JSON-escaped form, as they appear here.
    let escaped: Vec<String> = suite
        .secrets
        .iter()
        .filter_map(|s| serde_json::to_string(s).ok())
        .map(|quoted| quoted[1..quoted.len() - 1].to_owned())
        .collect();
    let text = String::from_utf8_lossy(&bytes);
    if escaped.iter().any(|s| text.contains(s.as_str())) {
        return write_file(path, redact(&text, &escaped).as_bytes());
    }
    write_file(path, &bytes)
}
