//! Several systems side by side (`runners:`) under the compiled `cargo
//! test` harness (`forge-harness` on a fixture directory): the trials are
//! named `<suite>::<system>::<session>::<qa_id>`, libtest's filters select
//! a system, `FORGE_PARTITION` shards the systems' sessions (every batch
//! once), and the reports are one `<suite>.<system>.json` per system and
//! one `junit.xml` with a `<testsuite>` per system.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

/// Two offline systems: `plain` echoes, `loud` shouts; the check passes
/// only for `loud`.
const DUO: &str = "name: duo\nrunners:\n  - {name: plain, type: echo}\n  - {name: loud, type: echo, template: 'LOUD {query}'}\nexpect: {contains: LOUD}\ndatasets:\n  - session_id: s1\n    assistant_id: bot\n    conversation:\n      - {qa_id: q1, query: one}\n      - {qa_id: q2, query: two}\n  - session_id: s2\n    assistant_id: bot\n    conversation:\n      - {qa_id: q1, query: three}\n";

fn harness(root: &Path, out: &str, partition: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_forge-harness"))
        .env("FORGE_SUITES_DIR", root.join("suites"))
        .env("FORGE_OUT_DIR", root.join(out))
        .env("FORGE_PARTITION", partition)
        .env_remove("FORGE_REPLAY")
        .env_remove("FORGE_RECORD")
        .args(args)
        .output()
        .expect("run the harness")
}

/// The tests libtest printed with `outcome` ("ok", "FAILED").
fn tests(output: &Output, outcome: &str) -> BTreeSet<String> {
    forge_testkit::libtest::tests_with(&String::from_utf8_lossy(&output.stdout), outcome)
}

fn names(system: &str) -> BTreeSet<String> {
    ["s1::q1", "s1::q2", "s2::q1"]
        .iter()
        .map(|t| format!("duo::{system}::{t}"))
        .collect()
}

fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let suites = dir.path().join("suites");
    std::fs::create_dir_all(&suites).expect("suites dir");
    std::fs::write(suites.join("duo.yaml"), DUO).expect("write suite");
    dir
}

#[test]
fn each_system_is_a_set_of_trials_and_a_report_of_its_own() {
    let dir = fixture();
    let root = dir.path();
    let list = harness(root, "out", "", &["--list"]);
    let listed: BTreeSet<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter_map(|line| line.strip_suffix(": test").map(str::to_owned))
        .collect();
    assert_eq!(listed, &names("plain") | &names("loud"));

    let run = harness(root, "out", "", &[]);
    assert_eq!(run.status.code(), Some(101));
    assert_eq!(tests(&run, "ok"), names("loud"));
    assert_eq!(tests(&run, "FAILED"), names("plain"));
    let out = root.join("out");
    for system in ["plain", "loud"] {
        let text = std::fs::read_to_string(out.join(format!("duo.{system}.json"))).expect("report");
        let report: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        let tests: BTreeSet<String> = report["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .filter_map(|row| row["test"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(tests, names(system));
    }
    assert!(!out.join("duo.json").exists());
    let junit = std::fs::read_to_string(out.join("junit.xml")).expect("junit");
    assert!(
        junit.contains(
            "<testsuite name=\"duo::plain\" tests=\"3\" skipped=\"0\" errors=\"0\" failures=\"3\""
        ),
        "{junit}"
    );
    assert!(
        junit.contains(
            "<testsuite name=\"duo::loud\" tests=\"3\" skipped=\"0\" errors=\"0\" failures=\"0\""
        ),
        "{junit}"
    );
    assert!(
        junit.contains("<testcase name=\"s1::q1\" classname=\"duo::loud\""),
        "{junit}"
    );

    // A libtest filter selects one system: only its report is left.
    let run = harness(root, "out", "", &["::loud::"]);
    assert_eq!(run.status.code(), Some(0));
    assert_eq!(tests(&run, "ok"), names("loud"));
    assert!(out.join("duo.loud.json").is_file());
    assert!(!out.join("duo.plain.json").exists());
}

#[test]
fn shards_run_every_batch_of_every_system_once() {
    let dir = fixture();
    let root = dir.path();
    let mut ran = BTreeSet::new();
    let mut count = 0;
    for index in 1..=3 {
        let run = harness(
            root,
            &format!("shard-{index}"),
            &format!("count:{index}/3"),
            &[],
        );
        let shard = &tests(&run, "ok") | &tests(&run, "FAILED");
        count += shard.len();
        ran.extend(shard);
    }
    assert_eq!(count, 6, "no batch twice");
    assert_eq!(ran, &names("plain") | &names("loud"));
}
