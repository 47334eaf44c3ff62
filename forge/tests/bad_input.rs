//! Bad input of every kind gets a clear, located error or is written
//! safely: counts out of bounds, gates that pass nothing, characters XML
//! forbids, nested `${...}` defaults, environment values that look like
//! placeholders, and temporary report files left by a killed run.

use std::path::Path;
use std::process::{Command, Output};

use forge::Suite;
use serde_json::Value;

const DATASETS: &str = r#"
datasets:
  - session_id: s
    assistant_id: bot
    conversation:
      - {qa_id: q1, query: hello}
"#;

/// The load error of a suite whose head (before `datasets:`) is `head`.
fn load_error(head: &str) -> String {
    let text = format!("runner: {{type: echo}}\n{head}\n{DATASETS}");
    match Suite::parse(Path::new("s.yaml"), &text) {
        Ok(_) => panic!("loaded:\n{text}"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn counts_are_bounded_with_located_errors() {
    for (head, expected) in [
        (
            "repeat: 18446744073709551615",
            "s.yaml:2:1: `repeat` 18446744073709551615 is more than the most allowed, 10000",
        ),
        (
            "repeat: 100000000",
            "s.yaml:2:1: `repeat` 100000000 is more than the most allowed, 10000",
        ),
        (
            "concurrency: 0",
            "s.yaml:2:1: `concurrency` 0 is outside 1..=10000",
        ),
        (
            "concurrency: 1000000",
            "s.yaml:2:1: `concurrency` 1000000 is outside 1..=10000",
        ),
        (
            "retries: 1000",
            "s.yaml:2:1: `retries` 1000 is outside 0..=100",
        ),
    ] {
        assert_eq!(load_error(head), expected, "{head}");
    }
    // A dataset's own `repeat` is checked where it is written.
    let text = "runner: {type: echo}\ndatasets:\n  - session_id: s\n    assistant_id: bot\n    repeat: 20000\n    conversation:\n      - {qa_id: q1, query: hello}\n";
    let error = Suite::parse(Path::new("s.yaml"), text)
        .unwrap_err()
        .to_string();
    assert!(error.starts_with("s.yaml:3:"), "{error}");
    assert!(
        error.contains("`repeat` 20000 is more than the most allowed"),
        "{error}"
    );
    // The bounds themselves are accepted.
    let text = format!(
        "runner: {{type: echo}}\nrepeat: 10000\nconcurrency: 10000\nretries: 100\n{DATASETS}"
    );
    let suite = Suite::parse(Path::new("s.yaml"), &text).expect("bounds load");
    assert_eq!(suite.datasets[0].runs, 10_000);
}

#[test]
fn gates_that_pass_a_batch_whose_every_run_failed_are_rejected() {
    let error = load_error("repeat: 3\nmin_passes: 0");
    assert!(
        error.starts_with("s.yaml:3:1: `min_passes` must be at least 1"),
        "{error}"
    );
    for rate in ["0", "0.0", "-0.5", "1.5"] {
        let error = load_error(&format!("repeat: 3\npass_rate: {rate}"));
        assert!(
            error.starts_with("s.yaml:3:1: `pass_rate`"),
            "{rate}: {error}"
        );
        assert!(
            error.contains("outside 0 (excluded) to 1"),
            "{rate}: {error}"
        );
    }
    // The smallest real gate needs one passing run.
    let text = format!("runner: {{type: echo}}\nrepeat: 3\npass_rate: 0.01\n{DATASETS}");
    let suite = Suite::parse(Path::new("s.yaml"), &text).expect("loads");
    assert_eq!(suite.datasets[0].min_passes, 1);
}

#[test]
fn checks_with_unknown_keys_or_bad_values_get_located_errors() {
    let keys = "(expected one of `contains`, `icontains`, `not_contains`, `equals`, `starts_with`, `regex`, `is_json`, `max_latency_ms`, `max_tokens`, `similarity`, `tool_correctness`, `pass_pow_k`, `answer_correctness`, `rubric`)";
    for (head, expected) in [
        (
            "expect: {contains: a, regexx: b}",
            format!("s.yaml:2:23: expect: unknown key `regexx`, did you mean `regex`? {keys}"),
        ),
        (
            "expect: {contains: a, contains: b}",
            "s.yaml:2:9: expect: duplicate field `contains`".to_owned(),
        ),
        (
            "expect: {max_latency_ms: fast}",
            "s.yaml:2:26: expect.max_latency_ms: invalid type: string \"fast\", expected f64"
                .to_owned(),
        ),
        (
            "expect: 5",
            "s.yaml:2:9: expect: invalid type: integer `5`, expected struct Expect".to_owned(),
        ),
        (
            "expect: {similarity: 0.5}",
            "s.yaml:8:10: s::s::q1: `similarity` needs a `ground_truth_assistant` to compare with"
                .to_owned(),
        ),
    ] {
        assert_eq!(load_error(head), expected, "{head}");
    }
    // A batch's own checks are located where they are written.
    let text = "runner: {type: echo}\ndatasets:\n  - session_id: s\n    assistant_id: bot\n    conversation:\n      - qa_id: q1\n        query: hello\n        expect: {not_contain: x}\n";
    let error = Suite::parse(Path::new("s.yaml"), text)
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        format!("s.yaml:8:18: datasets[0].conversation[0].expect: unknown key `not_contain`, did you mean `not_contains`? {keys}")
    );
}

fn forge(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_forge"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run forge")
}

fn summary(out: &Path, suite: &str) -> Value {
    let text = std::fs::read_to_string(out.join(format!("{suite}.json"))).expect("summary");
    serde_json::from_str(&text).expect("summary JSON")
}

fn answers(summary: &Value) -> Vec<String> {
    summary["datasets"][0]["conversation"]
        .as_array()
        .expect("conversation")
        .iter()
        .map(|b| b["assistant"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn junit_stays_well_formed_when_answers_hold_characters_xml_forbids() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    // JSON can carry what YAML cannot: U+FFFE, U+FFFF and C0 controls.
    std::fs::write(
        dir.path().join("data.json"),
        r#"{"session_id": "s\ufffe", "assistant_id": "bot", "conversation": [
            {"qa_id": "q\u0001", "query": "a\ufffeb\uffffc\u0000d\u001be ok"}]}"#,
    )
    .expect("write data");
    std::fs::write(
        dir.path().join("xml.yaml"),
        "runner: {type: echo, template: \"{query}\"}\nexpect: {contains: never-there}\ndatasets:\n  - file: data.json\n",
    )
    .expect("write suite");
    let suite = dir.path().join("xml.yaml").display().to_string();
    let output = forge(&["run", &suite, "--out", &out.display().to_string()], &[]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let xml = std::fs::read_to_string(out.join("junit.xml")).expect("junit.xml");
    let doc = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("{e}:\n{xml}"));
    let case = doc
        .descendants()
        .find(|n| n.has_tag_name("testcase"))
        .expect("a testcase");
    assert_eq!(case.attribute("name"), Some("s\u{FFFD}::q\u{FFFD}"));
    let out_text = case
        .children()
        .find(|n| n.has_tag_name("system-out"))
        .and_then(|n| n.text())
        .expect("system-out");
    assert_eq!(out_text, "a\u{FFFD}b\u{FFFD}c\u{FFFD}d\u{FFFD}e ok");
    let failure = case
        .children()
        .find(|n| n.has_tag_name("failure"))
        .and_then(|n| n.attribute("message"))
        .expect("failure message");
    assert!(failure.contains("never-there"), "{failure}");
    // The Fair-Forge JSON keeps the answer exactly.
    assert_eq!(
        answers(&summary(&out, "xml")),
        ["a\u{FFFE}b\u{FFFF}c\u{0}d\u{1b}e ok"]
    );
}

#[test]
fn defaults_nest_and_environment_values_are_never_templates() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    std::fs::write(
        dir.path().join("env.yaml"),
        r#"
runner:
  type: echo
  template: "${FORGE_T_UNSET:-${FORGE_T_GREETING}} {query} ${FORGE_T_TRAP} ${FORGE_T_NONE:-${FORGE_T_NONE2:-d{turn}}}"
datasets:
  - session_id: s
    assistant_id: bot
    conversation:
      - {qa_id: q1, query: hello}
"#,
    )
    .expect("write suite");
    let suite = dir.path().join("env.yaml").display().to_string();
    let output = forge(
        &["run", &suite, "--out", &out.display().to_string()],
        &[
            ("FORGE_T_GREETING", "hi {session_id}"),
            ("FORGE_T_TRAP", "{query}{{turn}"),
        ],
    );
    assert!(output.status.success(), "{output:?}");
    // Values from the environment stay as they are; the suite's own
    // placeholders (in the template and in a default written in the suite)
    // are filled.
    assert_eq!(
        answers(&summary(&out, "env")),
        ["hi {session_id} hello {query}{{turn} d1"]
    );

    // The same for a local program's arguments.
    std::fs::write(
        dir.path().join("cmd.yaml"),
        r#"
runner: {type: command, program: printf, args: ["%s|%s", "${FORGE_T_TRAP}", "{query}"]}
datasets:
  - session_id: s
    assistant_id: bot
    conversation:
      - {qa_id: q1, query: hello}
"#,
    )
    .expect("write suite");
    let suite = dir.path().join("cmd.yaml").display().to_string();
    let output = forge(
        &["run", &suite, "--out", &out.display().to_string()],
        &[("FORGE_T_TRAP", "{query}")],
    );
    assert!(output.status.success(), "{output:?}");
    assert_eq!(answers(&summary(&out, "cmd")), ["{query}|hello"]);

    // A nested default whose innermost variable is unset and has no default
    // names that variable, located.
    std::fs::write(
        dir.path().join("unset.yaml"),
        "runner: {type: echo, template: \"${FORGE_T_A:-${FORGE_T_B}}\"}\n".to_owned() + DATASETS,
    )
    .expect("write suite");
    let suite = dir.path().join("unset.yaml").display().to_string();
    let output = forge(&["run", &suite, "--out", &out.display().to_string()], &[]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("unset.yaml:1:")
            && stderr.contains("environment variable FORGE_T_B is not set"),
        "{stderr}"
    );
}

/// The pid of a process that has exited.
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().expect("spawn true");
    let pid = child.id();
    child.wait().expect("wait");
    pid
}

#[test]
fn temporary_reports_of_a_killed_run_are_removed_by_the_next() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).expect("out dir");
    // What a run killed (kill -9) while writing leaves behind.
    let stale = [
        format!(".quickstart.json.forge-{}-0.tmp", dead_pid()),
        format!(".junit.xml.forge-{}-3.tmp", dead_pid()),
    ];
    for name in &stale {
        std::fs::write(out.join(name), "half a report").expect("write stale");
    }
    // A live writer's file (another run writing into the same directory).
    let mut live = Command::new("sleep")
        .arg("600")
        .spawn()
        .expect("spawn sleep");
    let live_name = format!(".junit.xml.forge-{}-0.tmp", live.id());
    std::fs::write(out.join(&live_name), "being written").expect("write live");
    let unrelated = ".notes.tmp";
    std::fs::write(out.join(unrelated), "mine").expect("write unrelated");

    let suite = concat!(env!("CARGO_MANIFEST_DIR"), "/../suites/quickstart.yaml");
    let output = forge(&["run", suite, "--out", &out.display().to_string()], &[]);
    let _ = live.kill();
    let _ = live.wait();
    assert!(output.status.success(), "{output:?}");

    let mut left: Vec<String> = std::fs::read_dir(&out)
        .expect("read out")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    let mut expected = vec![
        live_name,
        unrelated.to_owned(),
        ".forge-reports".to_owned(),
        "junit.xml".to_owned(),
        "parts".to_owned(),
        "quickstart.json".to_owned(),
        "report.html".to_owned(),
    ];
    expected.sort();
    assert_eq!(left, expected);
}
