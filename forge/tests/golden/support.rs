//! The part of the golden tests shared by `forge/tests/golden.rs` (`forge
//! run`) and the root's `tests/golden_harness.rs` (the `cargo test`
//! harness): the fixture, the loopback server one of its suites runs
//! against, the normalisation of what varies from run to run, the
//! comparison with a readable diff, and blessing (`FORGE_BLESS=1`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use regex::Regex;
use serde_json::Value;

/// Set to `1` to rewrite the golden files with what the run produced.
pub const BLESS_ENV: &str = "FORGE_BLESS";

/// What replaces a run's timings and paths in the golden files.
pub const MS: &str = "\"<ms>\"";
/// What replaces a JUnit time in seconds.
pub const SECONDS: &str = "<s>";
/// What replaces the report directory of the run.
pub const OUT: &str = "<OUT>";

/// The key the loopback server expects, given to the `alquimia` suite
/// through `${GOLDEN_ALQUIMIA_KEY}`: it must show as `[REDACTED]`.
pub const SERVER_KEY: &str = "sk-golden-alquimia-key-0123456789";

/// The other secrets of the fixture: none may appear in any output.
pub const FIXTURE_SECRETS: [&str; 4] = [
    SERVER_KEY,
    "sk-golden-command-key-0123456789",
    "sk-golden-broken-key-0123456789",
    "internal-codename-7",
];

/// `forge/tests/golden`: `suites/` (the fixture, run from this directory so
/// paths in messages are relative) and `expected/` (the golden files).
pub struct Fixture {
    dir: PathBuf,
}

impl Fixture {
    /// The fixture at `dir`.
    pub fn at(dir: &str) -> Fixture {
        Fixture {
            dir: PathBuf::from(dir),
        }
    }

    /// The directory the binaries run in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The golden reports: one `<suite>.json` per suite and `junit.xml`.
    pub fn reports(&self) -> PathBuf {
        self.dir.join("expected").join("reports")
    }

    /// A golden console transcript.
    pub fn console(&self, name: &str) -> PathBuf {
        self.dir.join("expected").join(name)
    }
}

/// The loopback Alquimia server of the `alquimia` suite, on a runtime of
/// its own (the binaries under test are separate processes). The one place
/// the test kit is named.
pub struct Server {
    server: forge_testkit::TestServer,
    _runtime: tokio::runtime::Runtime,
}

impl Server {
    /// Starts the server: key [`SERVER_KEY`], and the turn asking
    /// `echo my key` answered with the Authorization header it got.
    pub fn start() -> Server {
        use forge_testkit::{Fault, FaultPlan, TestServer};
        let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
        let server = runtime.block_on(
            TestServer::builder()
                .api_key(SERVER_KEY)
                .fault_plan(FaultPlan::new(0).on_query("echo my key", Fault::EchoAuthorization))
                .start(),
        );
        Server {
            server,
            _runtime: runtime,
        }
    }

    /// The environment the `alquimia` suite reads its URL and key from.
    pub fn env(&self) -> [(&'static str, String); 2] {
        [
            ("GOLDEN_ALQUIMIA_URL", self.server.url()),
            ("GOLDEN_ALQUIMIA_KEY", SERVER_KEY.to_owned()),
        ]
    }
}

/// `program` set up to run the fixture: in its directory, with no key or
/// log filter of the host's environment (and the server's URL and key).
pub fn command(program: &str, fixture: &Fixture, server: Option<&Server>) -> Command {
    let mut command = Command::new(program);
    command.current_dir(fixture.dir());
    if let Some(server) = server {
        command.envs(server.env());
    }
    for var in [
        "ALQUIMIA_BASE_URL",
        "ALQUIMIA_API_KEY",
        "OPENAI_BASE_URL",
        "OPENAI_API_KEY",
        "LLM_API_KEY",
        "FORGE_LOG",
        "FORGE_OUT_DIR",
        "RUST_BACKTRACE",
    ] {
        command.env_remove(var);
    }
    command
}

/// A summary JSON with every timing replaced by [`MS`].
pub fn normalize_json(text: &str) -> String {
    let times = Regex::new(
        r#""(total_execution_time_ms|avg_batch_time_ms|time_ms)": -?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?"#,
    )
    .expect("regex");
    times
        .replace_all(text, format!(r#""$1": {MS}"#))
        .into_owned()
}

/// The data of `report.html` (its JSON elements; the page's shell, style
/// and script are not golden), pretty, with every timing replaced by
/// [`MS`]: each run's `ms` and each suite's `latency`.
pub fn normalize_html(text: &str) -> String {
    fn blank(value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (key, value) in map.iter_mut() {
                    match key.as_str() {
                        "ms" | "latency" if !value.is_null() => {
                            *value = Value::from(MS.trim_matches('"'))
                        }
                        _ => blank(value),
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(blank),
            _ => {}
        }
    }
    let mut data = Vec::new();
    for element in text.split("<script type=\"application/json\"").skip(1) {
        let body = &element[element.find('>').expect("the element's tag") + 1..];
        let json = &body[..body.find("</script>").expect("the element's end")];
        let mut value: Value = serde_json::from_str(json).expect("the element's JSON");
        blank(&mut value);
        data.push(value);
    }
    serde_json::to_string_pretty(&data).expect("JSON") + "\n"
}

/// The golden file of the report `name`: `report.html`'s data is kept as
/// `report.html.json`.
fn golden_name(name: &str) -> String {
    match name.ends_with(".html") {
        true => format!("{name}.json"),
        false => name.to_owned(),
    }
}

/// `junit.xml` with every `time` and `timestamp` attribute replaced.
pub fn normalize_junit(text: &str) -> String {
    let times = Regex::new(r#" (time|timestamp)="[^"]*""#).expect("regex");
    times
        .replace_all(text, format!(r#" $1="{SECONDS}""#))
        .into_owned()
}

/// Console text with the run's durations, its report directory and the
/// loopback server's port replaced.
pub fn normalize_console(text: &str, out: &Path) -> String {
    let text = text.replace(&out.display().to_string(), OUT);
    let seconds = Regex::new(r"\bin [0-9]+(\.[0-9]+)?s\b").expect("regex");
    let port = Regex::new(r"127\.0\.0\.1:[0-9]+").expect("regex");
    let text = seconds.replace_all(&text, format!("in {SECONDS}"));
    port.replace_all(&text, "127.0.0.1:<port>").into_owned()
}

/// stderr of `forge run` with its `FAILED` entries (a line and its
/// continuation lines) sorted: they are printed as batches finish, and the
/// suites run at once. Every other line keeps its place after them.
pub fn sort_failed(stderr: &str) -> String {
    let mut failed: Vec<String> = Vec::new();
    let mut rest: Vec<&str> = Vec::new();
    let mut in_failed = false;
    for line in stderr.lines() {
        if line.starts_with("FAILED ") {
            failed.push(line.to_owned());
            in_failed = true;
        } else if in_failed && !line.starts_with("forge: ") {
            if let Some(last) = failed.last_mut() {
                last.push('\n');
                last.push_str(line);
            }
        } else {
            in_failed = false;
            rest.push(line);
        }
    }
    failed.sort();
    let mut lines: Vec<&str> = failed.iter().map(String::as_str).collect();
    lines.extend(rest);
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// A console transcript: the command, its exit status, stdout and stderr.
pub fn transcript(command: &str, output: &Output, stdout: &str, stderr: &str) -> String {
    format!(
        "$ {command}\nexit status: {}\n--- stdout\n{stdout}--- stderr\n{stderr}",
        output
            .status
            .code()
            .map_or_else(|| "killed by a signal".to_owned(), |c| c.to_string())
    )
}

/// Whether this run rewrites the golden files.
pub fn blessing() -> bool {
    std::env::var(BLESS_ENV).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Compares `actual` with the golden file `path` (or, when blessing and
/// `may_bless`, writes it). `Err` is a readable unified diff.
pub fn compare(path: &Path, actual: &str, may_bless: bool) -> Result<(), String> {
    if may_bless && blessing() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create the golden directory");
        }
        std::fs::write(path, actual).expect("write a golden file");
        return Ok(());
    }
    let expected = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => {
            return Err(format!(
                "{}: cannot read the golden file ({error}); {BLESS_ENV}=1 writes it",
                path.display()
            ))
        }
    };
    if expected == actual {
        return Ok(());
    }
    let diff = similar::TextDiff::from_lines(expected.as_str(), actual)
        .unified_diff()
        .context_radius(3)
        .header(&format!("{} (golden)", path.display()), "this run")
        .to_string();
    Err(diff)
}

/// Panics with every mismatch at once, and `hint`: how to bless when the
/// change is meant.
pub fn assert_no_mismatch(mismatches: &[String], hint: &str) {
    if !mismatches.is_empty() {
        panic!(
            "{} golden file(s) differ from this run:\n\n{}\n\n{hint}",
            mismatches.len(),
            mismatches.join("\n")
        );
    }
}

/// The names of the files in `dir`, sorted (none when it does not exist),
/// but forge's list of the reports it wrote (`.forge-reports`).
pub fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().is_file() && e.file_name() != ".forge-reports")
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Compares the reports written into `out` with the golden reports, each
/// normalised; `may_bless` lets [`BLESS_ENV`] rewrite them (and remove the
/// golden reports of suites that no longer write one).
pub fn compare_reports(out: &Path, golden: &Path, may_bless: bool) -> Vec<String> {
    let mut mismatches = Vec::new();
    let written = file_names(out);
    let expected = file_names(golden);
    let golden_names: Vec<String> = written.iter().map(|n| golden_name(n)).collect();
    for stale in expected.iter().filter(|n| !golden_names.contains(n)) {
        if may_bless && blessing() {
            std::fs::remove_file(golden.join(stale)).expect("remove a stale golden report");
        } else {
            mismatches.push(format!("{stale}: a golden report this run did not write"));
        }
    }
    for name in &written {
        let text = std::fs::read_to_string(out.join(name)).expect("read a report");
        let normalized = if name.ends_with(".json") {
            normalize_json(&text)
        } else if name.ends_with(".html") {
            normalize_html(&text)
        } else {
            normalize_junit(&text)
        };
        if let Err(diff) = compare(&golden.join(golden_name(name)), &normalized, may_bless) {
            mismatches.push(diff);
        }
    }
    mismatches
}

/// Checks `text` (a whole output of the run) holds none of the fixture's
/// secrets; returns where one leaked.
pub fn leaks(label: &str, text: &str) -> Vec<String> {
    FIXTURE_SECRETS
        .iter()
        .filter(|secret| text.contains(*secret))
        .map(|secret| format!("{label}: the secret {secret:?} is not redacted"))
        .collect()
}

/// The fields of Fair-Forge's `Batch`, every one written.
const BATCH_FIELDS: [&str; 9] = [
    "qa_id",
    "query",
    "assistant",
    "ground_truth_assistant",
    "observation",
    "agentic",
    "ground_truth_agentic",
    "logprobs",
    "weight",
];

/// Fair-Forge's `Summary`, exactly these keys in this order.
const SUMMARY_KEYS: [&str; 6] = [
    "session_id",
    "total_batches",
    "successes",
    "failures",
    "total_execution_time_ms",
    "avg_batch_time_ms",
];

/// Where a summary JSON (as written, before normalising) departs from
/// what Fair-Forge's Python reads: the `RunResponse` (`success`,
/// `datasets`, `summaries`, `total_datasets`, and forge's `checks`) or the
/// error response, with its `Dataset`, `Batch` and `Summary` shapes.
pub fn fair_forge_problems(name: &str, report: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let mut problem = |what: String| problems.push(format!("{name}: {what}"));
    let keys: Vec<&str> = report
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    if report["success"] == Value::Bool(false) {
        if keys != ["success", "error"] || !report["error"].is_string() {
            problem(format!("an error response has the keys {keys:?}"));
        }
        return problems;
    }
    let top = ["success", "datasets", "summaries", "total_datasets"];
    if keys[..keys.len().min(4)] != top
        || keys.len() > 5
        || (keys.len() == 5 && keys[4] != "checks")
    {
        problem(format!("the response has the keys {keys:?}"));
    }
    let datasets = report["datasets"].as_array().cloned().unwrap_or_default();
    let summaries = report["summaries"].as_array().cloned().unwrap_or_default();
    if report["total_datasets"] != datasets.len() || summaries.len() != datasets.len() {
        problem("total_datasets, datasets and summaries disagree".to_owned());
    }
    for (dataset, summary) in datasets.iter().zip(&summaries) {
        for what in dataset_problems(dataset, summary) {
            problem(what);
        }
    }
    problems
}

/// Where one dataset and its summary depart from Fair-Forge's `Dataset`,
/// `Batch` and `Summary`.
fn dataset_problems(dataset: &Value, summary: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for key in [
        "session_id",
        "assistant_id",
        "language",
        "context",
        "conversation",
    ] {
        if dataset.get(key).is_none() {
            problems.push(format!("a dataset has no `{key}`"));
        }
    }
    let summary_keys: Vec<&str> = summary
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    if summary_keys != SUMMARY_KEYS
        || !summary["total_execution_time_ms"].is_f64()
        || !summary["avg_batch_time_ms"].is_f64()
    {
        problems.push(format!("a summary is {summary}"));
    }
    let batches = dataset["conversation"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if summary["session_id"] != dataset["session_id"] || summary["total_batches"] != batches.len() {
        problems.push(format!("the summary {summary} is not its dataset's"));
    }
    for batch in &batches {
        for field in BATCH_FIELDS {
            if batch.get(field).is_none() {
                problems.push(format!("batch {} has no `{field}`", batch["qa_id"]));
            }
        }
    }
    problems
}
