//! The compiled harness prints what libtest prints where libtest-mimic
//! would not: `--format json` gives a failing test's text as written (not
//! `Error: "..."`), and `--show-output` shows passing batches' answers
//! (a `successes:` section, or the `stdout` of their `ok` events).

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const SUITE: &str = r#"name: out
runner: {type: echo}
datasets:
  - session_id: s
    assistant_id: bot
    conversation:
      - {qa_id: bad, query: 'say "hi"', expect: {equals: bye}}
      - {qa_id: good, query: fine, expect: {equals: fine}}
      - {qa_id: later, query: skipped, ignore: true}
"#;

fn harness(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_forge-harness"))
        .env("FORGE_SUITES_DIR", root.join("suites"))
        .env("FORGE_OUT_DIR", root.join("out"))
        .env_remove("FORGE_PARTITION")
        .env_remove("NEXTEST_EXECUTION_MODE")
        .args(args)
        .output()
        .expect("run the harness")
}

fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("suites")).expect("mkdir");
    std::fs::write(dir.path().join("suites/out.yaml"), SUITE).expect("write");
    dir
}

/// The JSON events the harness printed, one per line.
fn events(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
        .collect()
}

fn event<'a>(events: &'a [Value], name: &str, kind: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["name"] == name && e["event"] == kind)
        .unwrap_or_else(|| panic!("no {kind} event for {name}: {events:#?}"))
}

const FAILURE: &str = "check `equals` failed: expected \"bye\"\n     got \"say \\\"hi\\\"\"\n  differ at byte 0: expected \"bye\", got \"say \\\"hi\\\"\"\nanswer: say \"hi\"\n";

#[test]
fn json_failure_text_is_plain() {
    let dir = project();
    let output = harness(dir.path(), &["--format", "json", "-Z", "unstable-options"]);
    assert_eq!(output.status.code(), Some(101));
    let events = events(&output);
    assert_eq!(events[0]["type"], "suite");
    assert_eq!(events[0]["event"], "started");
    assert_eq!(events[0]["test_count"], 3);
    assert_eq!(event(&events, "out::s::bad", "failed")["stdout"], FAILURE);
    let good = event(&events, "out::s::good", "ok");
    assert!(good.get("stdout").is_none(), "{good}");
    event(&events, "out::s::later", "ignored");
    let end = events.last().expect("the suite's end");
    assert_eq!(
        (
            &end["event"],
            &end["passed"],
            &end["failed"],
            &end["ignored"]
        ),
        (&"failed".into(), &1.into(), &1.into(), &1.into()),
        "{end}"
    );
    assert_eq!(end["filtered_out"], 0);
}

#[test]
fn json_with_show_output_gives_the_passing_answers() {
    let dir = project();
    let args = [
        "--format",
        "json",
        "-Z",
        "unstable-options",
        "--show-output",
    ];
    let events = events(&harness(dir.path(), &args));
    assert_eq!(
        event(&events, "out::s::good", "ok")["stdout"],
        "answer: fine\n"
    );
    assert_eq!(event(&events, "out::s::bad", "failed")["stdout"], FAILURE);
}

#[test]
fn show_output_lists_the_successes_before_the_failures() {
    let dir = project();
    let output = harness(dir.path(), &["--show-output", "out::s::"]);
    assert_eq!(output.status.code(), Some(101));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let successes = "\nsuccesses:\n\n---- out::s::good stdout ----\nanswer: fine\n\n\nsuccesses:\n    out::s::good\n";
    let failures = format!(
        "\nfailures:\n\n---- out::s::bad stdout ----\n{FAILURE}\n\nfailures:\n    out::s::bad\n"
    );
    let (at_s, at_f) = (stdout.find(successes), stdout.find(&failures));
    assert!(at_s.is_some() && at_f.is_some() && at_s < at_f, "{stdout}");
    assert!(
        stdout.contains("test out::s::later ... ignored"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "test result: FAILED. 1 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out;"
        ),
        "{stdout}"
    );
}

#[test]
fn filters_count_as_libtest_counts_them() {
    let dir = project();
    let args = ["--format", "json", "-Z", "unstable-options", "good"];
    let output = harness(dir.path(), &args);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let events = events(&output);
    assert_eq!(events[0]["test_count"], 1);
    let end = events.last().expect("the suite's end");
    assert_eq!(
        (&end["event"], &end["filtered_out"]),
        (&"ok".into(), &2.into())
    );
}
