//! The suites the benchmark writes: S sessions x T turns inline against the
//! test server, and large ones with their datasets in a JSONL file.

use std::io::Write;
use std::path::Path;

/// A suite's runner: the Alquimia test server at `url`, or the offline
/// `echo` runner.
pub enum Runner<'a> {
    Alquimia { url: &'a str },
    Echo,
}

/// A suite's YAML up to its `datasets:` key; no `concurrency:` key (the
/// default) without `concurrency`.
fn suite_header(name: &str, runner: &Runner, concurrency: Option<usize>) -> String {
    let runner = match runner {
        Runner::Alquimia { url } => format!(
            "runner:\n  type: alquimia\n  base_url: {url}\n  api_key: {}\n  agent_id: bench\n  channel_id: web\n",
            forge_testkit::TestServer::DEFAULT_API_KEY
        ),
        Runner::Echo => "runner:\n  type: echo\n".to_owned(),
    };
    let concurrency = concurrency
        .map(|c| format!("concurrency: {c}\n"))
        .unwrap_or_default();
    format!("name: {name}\n{runner}{concurrency}timeout: 60s\ndatasets:\n")
}

/// Writes an S x T suite with its datasets inline, against the server at `url`.
pub fn write_suite(
    path: &Path,
    url: &str,
    sessions: usize,
    turns: usize,
    concurrency: usize,
) -> Result<(), String> {
    let file = std::fs::File::create(path).map_err(|e| e.to_string())?;
    let mut out = std::io::BufWriter::new(file);
    let mut text = suite_header("bench", &Runner::Alquimia { url }, Some(concurrency));
    for s in 0..sessions {
        text.push_str(&format!(
            "  - session_id: s{s}\n    assistant_id: bench\n    conversation:\n"
        ));
        for t in 0..turns {
            text.push_str(&format!(
                "      - {{qa_id: q{t}, query: \"question {t} of session {s}\"}}\n"
            ));
        }
        if text.len() > 1 << 20 {
            out.write_all(text.as_bytes()).map_err(|e| e.to_string())?;
            text.clear();
        }
    }
    out.write_all(text.as_bytes()).map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())
}

/// Writes a suite at `path` (YAML) whose S x T datasets are in a
/// Fair-Forge JSONL file next to it (`- file: NAME.jsonl`), as real large
/// suites keep them.
pub fn write_jsonl_suite(
    path: &Path,
    runner: &Runner,
    sessions: usize,
    turns: usize,
    concurrency: Option<usize>,
) -> Result<(), String> {
    let data = path.with_extension("jsonl");
    let file = std::fs::File::create(&data).map_err(|e| e.to_string())?;
    let mut out = std::io::BufWriter::new(file);
    let mut line = String::new();
    for s in 0..sessions {
        line.clear();
        line.push_str(&format!(
            r#"{{"session_id":"s{s}","assistant_id":"bench","conversation":["#
        ));
        for t in 0..turns {
            let comma = if t + 1 < turns { "," } else { "" };
            line.push_str(&format!(
                r#"{{"qa_id":"q{t}","query":"question {t} of session {s}"}}{comma}"#
            ));
        }
        line.push_str("]}\n");
        out.write_all(line.as_bytes()).map_err(|e| e.to_string())?;
    }
    out.flush().map_err(|e| e.to_string())?;
    let file_name = data
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = path
        .file_stem()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "big".into());
    let text = suite_header(&name, runner, concurrency) + &format!("  - file: {file_name}\n");
    std::fs::write(path, text).map_err(|e| e.to_string())
}
