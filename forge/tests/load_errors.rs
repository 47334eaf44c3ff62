//! Mistakes in a suite are reported once, at load, at their own line and
//! column, by the real `forge` binary: a wrong key or value inside the
//! `runner:` mapping, a runner type only a test binary has, a misspelt
//! built-in type, a duplicate `qa_id`, a tab or a misindented line, a
//! variable set but empty. Nothing runs and nothing is written then.

use std::path::Path;
use std::process::{Command, Output};

const DATASETS: &str = "datasets:
  - session_id: s
    assistant_id: bot
    conversation:
      - {qa_id: q1, query: one}
      - {qa_id: q2, query: two}
      - {qa_id: q3, query: three}
";

/// Runs `forge run bad.yaml` on `text` in a fresh directory.
fn forge_run(text: &str, env: &[(&str, &str)]) -> (Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("bad.yaml"), text).expect("write suite");
    let output = Command::new(env!("CARGO_BIN_EXE_forge"))
        .current_dir(dir.path())
        .args(["run", "--quiet", "--out", "out", "bad.yaml"])
        .env_remove("FORGE_PARTITION")
        .envs(env.iter().copied())
        .output()
        .expect("run forge");
    (output, dir)
}

/// The one error line `forge run` printed for `text`, after checking that
/// it exited with 2 and reported the suite as a failing `bad::load` test
/// (`forge run` reports an unloadable suite in JUnit, as the harness does).
fn load_error(text: &str, env: &[(&str, &str)]) -> String {
    let (output, dir) = forge_run(text, env);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let junit =
        std::fs::read_to_string(dir.path().join("out").join("junit.xml")).expect("junit.xml");
    assert!(
        junit.contains("classname=\"bad\"") && junit.contains("name=\"load\""),
        "{junit}"
    );
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|line| !line.starts_with("forge: reports written to"))
        .collect();
    assert_eq!(errors.len(), 1, "one error, once:\n{stderr}");
    let error = errors[0]
        .trim_end()
        .strip_prefix("forge: ")
        .unwrap_or_else(|| panic!("{stderr}"))
        .to_owned();
    assert_junit_points_at(&junit, &error);
    error
}

/// The JUnit load case links to the file and line the error names.
fn assert_junit_points_at(junit: &str, error: &str) {
    let doc = roxmltree::Document::parse(junit).expect("junit.xml parses");
    let case = doc
        .descendants()
        .find(|n| n.has_tag_name("testcase") && n.attribute("name") == Some("load"))
        .expect("the load case");
    assert_eq!(case.attribute("file"), Some("bad.yaml"), "{junit}");
    let line = error
        .strip_prefix("bad.yaml:")
        .and_then(|rest| rest.split(':').next())
        .filter(|l| l.chars().all(|c| c.is_ascii_digit()));
    assert_eq!(case.attribute("line"), line, "{error}\n{junit}");
}

#[test]
fn a_wrong_key_or_value_in_the_runner_mapping_is_located_at_it() {
    let cases = [
        (
            "runner:\n  type: alquimia\n  base_url: http://127.0.0.1:9\n  api_key: sk-test-0123456789\n  agnet_id: a\n",
            "bad.yaml:5:3: runner `alquimia`: unknown key `agnet_id`, did you mean `agent_id`? (expected one of `base_url`, `api_key`, `agent_id`, `channel_id`, `api_version`, `retry_on`)",
        ),
        (
            "runner: {type: http, url: \"http://127.0.0.1:9/x\", timeout: soon}\n",
            "bad.yaml:1:60: runner `http`: `timeout`: invalid duration \"soon\": expected a number with a unit such as 30s or 250ms",
        ),
        (
            "runner:\n  type: http\n  url: http://127.0.0.1:9/x\n  headers:\n    X-Trace: [1, 2]\n",
            "bad.yaml:5:14: runner `http`: `headers.X-Trace` must be a string, a number or a boolean",
        ),
        (
            "runner:\n  type: command\n  program: sh\n  args:\n    - -c\n    - {script: 1}\n",
            "bad.yaml:6:7: runner `command`: `args[1]`: invalid type: map, expected a string",
        ),
        (
            "# the key is missing: the mapping is at fault\nrunner:\n  type: alquimia\n  base_url: http://127.0.0.1:9\n  api_key: sk-test-0123456789\n",
            "bad.yaml:2:1: runner `alquimia`: missing `agent_id`: the agent to test",
        ),
    ];
    for (runner, expected) in cases {
        let error = load_error(&format!("{runner}{DATASETS}"), &[]);
        assert_eq!(error, expected, "{runner}");
    }
}

#[test]
fn a_runner_type_of_a_test_binary_is_reported_once_at_its_type() {
    let error = load_error(
        &format!("runner:\n  type: weather-bot\n  greeting: hi\n{DATASETS}"),
        &[],
    );
    assert!(error.starts_with("bad.yaml:2:9: runner `weather-bot`: unknown runner type: this binary's types are alquimia, command, echo, http, openai, replay."), "{error}");
    assert!(
        error.contains("A `#[forge_runner]` (or `register_runner!`) type exists only in the binary that defines it: run this suite with that test target (`cargo test --test suites`), not with `forge run`"),
        "{error}"
    );
    // A misspelt built-in type gets the closest name instead.
    let error = load_error(&format!("runner: {{type: opena1}}\n{DATASETS}"), &[]);
    assert_eq!(
        error,
        "bad.yaml:1:16: runner `opena1`: unknown runner type (did you mean `openai`?); registered types: alquimia, command, echo, http, openai, replay"
    );
}

#[test]
fn a_duplicate_qa_id_points_at_the_duplicate() {
    let text = "runner: {type: echo}\ndatasets:\n  - session_id: s\n    assistant_id: bot\n    conversation:\n      - qa_id: q1\n        query: one\n      - qa_id: q2\n        query: two\n      - qa_id: q1\n        query: three\n";
    assert_eq!(
        load_error(text, &[]),
        "bad.yaml:10:16: invalid dataset session \"s\" (session_id \"s\"): field `conversation[2].qa_id`: duplicate qa_id \"q1\" within the dataset"
    );
    // In the second of two datasets with one session id and assistant (one
    // test name for two batches), at the second.
    let text = "runner: {type: echo}\ndatasets:\n  - session_id: s\n    assistant_id: bot\n    conversation: [{qa_id: q1, query: one}]\n  - session_id: s\n    assistant_id: bot\n    conversation: [{qa_id: q1, query: one}]\n";
    let error = load_error(text, &[]);
    assert!(
        error.starts_with("bad.yaml:8:21: duplicate test name bad::s@bot::q1"),
        "{error}"
    );
}

#[test]
fn tabs_and_bad_indentation_say_so() {
    let text = "runner:\n  type: echo\n\ttemplate: \"{query}\"\n";
    assert_eq!(
        load_error(&format!("{text}{DATASETS}"), &[]),
        "bad.yaml:3:1: tabs are not allowed for indentation: indent line 3 with spaces (YAML: found a tab character that violates indentation)"
    );
    let text = "runner: {type: echo}\ndatasets:\n\t- session_id: s\n";
    assert_eq!(
        load_error(text, &[]),
        "bad.yaml:3:1: tabs are not allowed for indentation: indent line 3 with spaces (YAML: found character that cannot start any token)"
    );
    let text = "runner:\n  type: echo\n template: \"{query}\"\n";
    assert_eq!(
        load_error(&format!("{text}{DATASETS}"), &[]),
        "bad.yaml:3:2: check the indentation of line 3 (YAML: did not find expected key)"
    );
    let text = "runner: {type: echo}\ndatasets:\n  - session_id: s\n    assistant_id: bot\n    conversation:\n      - qa_id: q1\n        query: one\n         expect: {contains: one}\n";
    assert_eq!(
        load_error(text, &[]),
        "bad.yaml:8:16: check the indentation of line 8 (YAML: mapping values are not allowed in this context)"
    );
}

#[test]
fn a_variable_set_but_empty_is_empty_not_unset() {
    let text =
        format!("runner:\n  type: echo\n  template: \"${{FORGE_T_EMPTY}} {{query}}\"\n{DATASETS}");
    assert_eq!(
        load_error(&text, &[("FORGE_T_EMPTY", "")]),
        "bad.yaml:3:14: environment variable FORGE_T_EMPTY is empty (set it to a value, or use ${FORGE_T_EMPTY:-default} for a default)"
    );
    let (output, _dir) = forge_run(&text, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("environment variable FORGE_T_EMPTY is not set"),
        "{stderr}"
    );
    // A default still covers an empty value.
    let text = format!(
        "runner: {{type: echo, template: \"${{FORGE_T_EMPTY:-hi}} {{query}}\"}}\n{DATASETS}"
    );
    let (output, dir) = forge_run(&text, &[("FORGE_T_EMPTY", "")]);
    assert!(output.status.success(), "{output:?}");
    assert!(Path::new(&dir.path().join("out/bad.json")).is_file());
}

#[test]
fn forge_run_finds_suites_in_subfolders_and_reports_broken_ones() {
    let dir = tempfile::tempdir().expect("temp dir");
    let suites = dir.path().join("suites");
    std::fs::create_dir_all(suites.join("smoke")).expect("mkdir");
    let echo = format!("runner: {{type: echo}}\n{DATASETS}");
    std::fs::write(suites.join("top.yaml"), &echo).expect("write");
    std::fs::write(suites.join("smoke/deep.yaml"), &echo).expect("write");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_forge"))
            .current_dir(dir.path())
            .args(["run", "--quiet", "--out", "out", "suites"])
            .env_remove("FORGE_PARTITION")
            .output()
            .expect("run forge")
    };
    let output = run();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).split(" in ").next(),
        Some("6 passed, 0 failed")
    );
    assert!(dir.path().join("out/deep.json").is_file());
    std::fs::write(
        suites.join("smoke/bad.yaml"),
        "runner: {type: echo}\ndatasets: 3\n",
    )
    .expect("write");
    let output = run();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("forge: suites/smoke/bad.yaml:2:"),
        "{stderr}"
    );
}
