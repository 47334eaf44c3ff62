//! Editor help and checking without running, through the real `forge`
//! binary: `forge schema` (the committed `suite.schema.json` is its output,
//! and every example suite is valid against it), `forge validate` (exit 0
//! or 2, located errors, nothing sent), and `forge serve` in a build
//! without the `serve` feature naming the feature.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use forge_testkit::TestServer;
use serde_json::Value;

fn forge(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_forge"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run forge")
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_owned()
}

fn schema() -> Value {
    let output = forge(&workspace(), &["schema"]);
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).expect("forge schema prints JSON")
}

#[test]
fn the_committed_schema_is_what_forge_schema_prints() {
    let path = workspace().join("suite.schema.json");
    let printed = String::from_utf8(forge(&workspace(), &["schema"]).stdout).expect("UTF-8");
    if std::env::var_os("FORGE_BLESS").is_some() {
        std::fs::write(&path, &printed).expect("bless suite.schema.json");
    }
    let committed = std::fs::read_to_string(&path).expect("suite.schema.json");
    assert!(
        committed == printed,
        "suite.schema.json is stale: run `cargo run -p forge-eval -- schema > suite.schema.json` (or FORGE_BLESS=1)"
    );
}

/// The YAML suites under `dir`, recursively (dataset files aside).
fn suites(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() && path.file_name() != Some("data".as_ref()) {
            suites(&path, found);
        } else if path.extension().is_some_and(|e| e == "yaml") {
            found.push(path);
        }
    }
}

#[test]
fn every_example_suite_is_valid_and_names_the_schema() {
    let validator = jsonschema::validator_for(&schema()).expect("a JSON Schema");
    let mut found = Vec::new();
    suites(&workspace().join("suites"), &mut found);
    assert!(found.len() >= 5, "{found:?}");
    for path in found {
        let text = std::fs::read_to_string(&path).expect("read suite");
        assert!(
            text.starts_with("# yaml-language-server: $schema=../suite.schema.json\n"),
            "{}: no schema line",
            path.display()
        );
        let value: Value = serde_yaml::from_str(&text).expect("YAML");
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
    }
}

const VALID: &str = "runner: {type: echo}\ndatasets:\n  - session_id: s\n    assistant_id: a\n    conversation:\n      - {qa_id: q1, query: hi, expect: {equals: hi}}\n";

#[tokio::test(flavor = "multi_thread")]
async fn validate_sends_nothing_and_exits_zero_when_all_is_well() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let live = format!(
        "runner: {{type: openai, base_url: '{}/v1', model: m, api_key: sk-test-0123456789}}\ndatasets:\n  - session_id: s\n    assistant_id: a\n    conversation:\n      - {{qa_id: q1, query: hi}}\n",
        server.url()
    );
    std::fs::create_dir_all(dir.path().join("suites/more")).expect("mkdir");
    std::fs::write(dir.path().join("suites/live.yaml"), live).expect("write");
    std::fs::write(dir.path().join("suites/more/echo.yaml"), VALID).expect("write");
    let output = forge(dir.path(), &["validate", "suites"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(
        stdout.contains("ok: suites/live.yaml (live): 1 dataset(s), 1 batch(es)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ok: suites/more/echo.yaml (echo)"),
        "{stdout}"
    );
    assert!(stdout.ends_with("2 valid, 0 invalid\n"), "{stdout}");
    assert!(server.requests().is_empty(), "validate sent a request");
    assert!(
        !dir.path().join("target").exists(),
        "validate wrote reports"
    );
    server.shutdown().await;
}

#[test]
fn validate_reports_every_mistake_located_and_exits_two() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("good.yaml"), VALID).expect("write");
    std::fs::write(
        dir.path().join("bad.yaml"),
        VALID.replace("{type: echo}", "{type: echo, templat: x}"),
    )
    .expect("write");
    std::fs::write(
        dir.path().join("worse.yaml"),
        VALID.replace("equals", "equal"),
    )
    .expect("write");
    let output = forge(
        dir.path(),
        &["validate", "good.yaml", "bad.yaml", "worse.yaml"],
    );
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "forge: bad.yaml:1:22: runner `echo`: unknown key `templat`, did you mean `template`?"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("forge: worse.yaml:6:41: datasets[0].conversation[0].expect: unknown key `equal`, did you mean `equals`?"), "{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.ends_with("1 valid, 2 invalid\n"), "{stdout}");
}

/// In a build without the `serve` feature (`cargo test -p forge-eval`,
/// which `.ci/run` runs too), `forge serve` says which feature it needs.
#[cfg(not(feature = "serve"))]
#[test]
fn serve_without_the_feature_names_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = forge(dir.path(), &["serve", "--bind", "127.0.0.1:0"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr
            .contains("it needs the `serve` feature (`cargo install forge-eval --features serve`"),
        "{stderr}"
    );
}
